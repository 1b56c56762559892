"""Tests of regeneration (pez.generate) with the tiny random SD pipeline (pez.testing.tiny_sd), on CPU.

Fast and offline: a seeded tiny pipeline stands in for the real generators, `random:tiny` for
the real CLIP. Tests that need real weights or a GPU are marked slow (RUN_SLOW=1).
"""

from __future__ import annotations

import dataclasses
import os
import threading

import numpy as np
import pytest
import torch

import pez
from pez import toy
from pez.config import MAX_IMAGES, MAX_TEXT_CHARS, ConfigError, GenerateConfig
from pez.errors import WeightsNotFoundError
from pez.generate import GenerationStep, generate, load_generator, score_images
from pez.models import get_pair

SLOW = pytest.mark.skipif(os.environ.get("RUN_SLOW") != "1", reason="slow: set RUN_SLOW=1 to run")
PAIR = "sd-2.1-base"  # any SD pair: the injected tiny pipeline replaces its generator
SMALL = GenerateConfig(steps=3, guidance=5.0, width=64, height=64)


@pytest.fixture(scope="module")
def pipe():
    from pez.testing.tiny_sd import tiny_pipeline

    return tiny_pipeline(seed=0)


@pytest.fixture(scope="module")
def clip():
    return pez.load_clip("random:tiny", device="cpu")


def run(pipe, prompt="a red circle", **changes):
    """Generate with the tiny pipeline, no scoring, SMALL settings with `changes`."""
    return generate(PAIR, prompt, dataclasses.replace(SMALL, **changes), pipeline=pipe, score=False)


def pixels(image) -> np.ndarray:
    return np.asarray(image).astype(np.int16)


def max_diff(a, b) -> int:
    return int(np.abs(pixels(a) - pixels(b)).max())


# ---------------------------------------------------------------------------------------------
# The tiny pipeline


def test_tiny_tokenizer_ids_match_open_clip():
    import open_clip

    from pez.testing.tiny_sd import tiny_tokenizer

    ours, theirs = tiny_tokenizer(), open_clip.get_tokenizer("ViT-B-32")
    prompts = ["a photo of a cat", "Hello, World! it's 3:45pm", "trending on artstation, 8k, café naïve", "🙂 emoji"]
    for prompt in prompts:
        ids = ours(prompt).input_ids
        ref = theirs([prompt])[0].tolist()
        assert ids == ref[: len(ids)], prompt
        assert ids[-1] == theirs.eot_token_id and ids[0] == theirs.sot_token_id
    assert len(ours) == 49408


def test_tiny_pipeline_is_small_and_seeded(pipe):
    out = run(pipe, num_images=1)
    parameters = sum(p.numel() for m in (pipe.unet, pipe.vae, pipe.text_encoder) for p in m.parameters())
    assert parameters < 2_000_000, f"the tiny pipeline has {parameters:,} parameters"  # fast on any CPU
    from pez.testing.tiny_sd import tiny_pipeline

    other = generate(PAIR, "a red circle", dataclasses.replace(SMALL), pipeline=tiny_pipeline(seed=0), score=False)
    assert max_diff(out.images[0], other.images[0]) == 0  # same weight seed, same image


def test_tiny_pipeline_euler_one_step_and_bad_scheduler():
    from pez.testing.tiny_sd import tiny_pipeline

    out = generate(
        "sd-turbo", "a cat", GenerateConfig(width=64, height=64), pipeline=tiny_pipeline(scheduler="euler"), score=False
    )
    assert out.steps_done == 1 and out.images[0].size == (64, 64)
    with pytest.raises(ConfigError, match="scheduler: expected 'dpm-multistep' or 'euler', received 'ddim'"):
        tiny_pipeline(scheduler="ddim")


# ---------------------------------------------------------------------------------------------
# Shapes, seeds, negative prompt


def test_shapes_and_reported_settings(pipe):
    out = run(pipe, num_images=2, seed=11, width=72, height=64)
    assert [im.size for im in out.images] == [(72, 64)] * 2
    assert out.seeds == [11, 12] and out.steps_done == 3 and not out.stopped
    assert out.settings.steps == 3 and out.settings.guidance == 5.0
    assert out.text_scores is None and out.image_scores is None and out.warnings == []


def test_image_k_of_seed_s_is_image_0_of_seed_s_plus_k(pipe):
    batch = run(pipe, num_images=3, seed=5)
    alone = run(pipe, num_images=1, seed=7)
    again = run(pipe, num_images=3, seed=5)
    assert max_diff(batch.images[2], alone.images[0]) <= 2  # batching may change float rounding
    assert all(max_diff(a, b) == 0 for a, b in zip(batch.images, again.images))
    assert max_diff(batch.images[0], batch.images[1]) > 10  # different seeds, different images


def test_pair_defaults_fill_unset_settings(pipe):
    out = generate("sd-turbo", "a red circle", GenerateConfig(width=64, height=64), pipeline=pipe, score=False)
    turbo = get_pair("sd-turbo")
    assert (out.settings.steps, out.settings.guidance) == (turbo.steps, turbo.guidance)


def test_negative_prompt_changes_output_with_guidance(pipe):
    plain = run(pipe, guidance=5.0)
    negative = run(pipe, guidance=5.0, negative_prompt="blue square")
    assert max_diff(plain.images[0], negative.images[0]) > 0
    assert negative.warnings == []


def test_negative_prompt_warns_at_guidance_0(pipe):
    plain = run(pipe, guidance=0.0)
    negative = run(pipe, guidance=0.0, negative_prompt="blue square")
    assert any("negative prompt has no effect at guidance 0" in w for w in negative.warnings)
    assert max_diff(plain.images[0], negative.images[0]) == 0  # ignored, as the warning says


def test_overlong_prompt_warns(pipe):
    out = run(pipe, prompt=" ".join(["cat"] * 100), steps=1)
    assert any("reads only the first 75" in w for w in out.warnings)


# ---------------------------------------------------------------------------------------------
# Progress and stop


def test_callback_reports_every_step(pipe):
    steps: list[GenerationStep] = []
    generate(PAIR, "a cat", dataclasses.replace(SMALL, steps=4), pipeline=pipe, score=False, callback=steps.append)
    assert [(s.step, s.total) for s in steps] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert all(b.seconds >= a.seconds for a, b in zip(steps, steps[1:]))


def test_should_stop_ends_early_and_keeps_images(pipe):
    steps: list[GenerationStep] = []
    out = generate(
        PAIR,
        "a cat",
        dataclasses.replace(SMALL, steps=6, num_images=2),
        pipeline=pipe,
        score=False,
        callback=steps.append,
        should_stop=lambda: len(steps) >= 2,
    )
    assert out.stopped and out.steps_done == 2 and len(steps) == 2
    assert len(out.images) == 2 and out.images[0].size == (64, 64)
    assert any("stopped after 2 of 6 steps" in w for w in out.warnings)


def test_stop_before_start_returns_nothing(pipe):
    out = generate(PAIR, "a cat", SMALL, pipeline=pipe, score=False, should_stop=lambda: True)
    assert out.stopped and out.images == [] and out.seeds == [] and out.steps_done == 0


def test_concurrent_calls_on_one_pipeline(pipe):
    expected = run(pipe, steps=2, seed=3).images[0]
    results = [None] * 3

    def worker(k):
        results[k] = run(pipe, steps=2, seed=3).images[0]

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(max_diff(r, expected) == 0 for r in results)


# ---------------------------------------------------------------------------------------------
# Scoring


def test_scores_against_targets_and_prompt(pipe, clip):
    first = run(pipe, num_images=1, seed=0).images[0]
    other = pez.load_image(np.full((48, 48, 3), 200, np.uint8))
    config = dataclasses.replace(SMALL, num_images=2)
    out = generate(PAIR, "a red circle", config, pipeline=pipe, clip=clip, targets=[first, other])
    assert len(out.image_score_matrix) == 2 and all(len(row) == 2 for row in out.image_score_matrix)
    assert out.image_score_matrix[0][0] == pytest.approx(1.0, abs=1e-4)  # image 0 is target 0
    assert out.image_scores == pytest.approx([np.mean(row) for row in out.image_score_matrix])
    text = (pez.image_features(clip, out.images) @ pez.text_features(clip, ["a red circle"]).T)[:, 0]
    assert out.text_scores == pytest.approx(text.tolist(), abs=1e-5)
    assert out.best in (0, 1) and out.score_seconds > 0


def test_targets_as_features_match_targets_as_images(pipe, clip):
    targets = [pez.load_image(np.full((40, 40, 3), v, np.uint8)) for v in (30, 220)]
    images = run(pipe, num_images=2).images
    by_image = score_images(clip, images, "a cat", targets)
    by_feature = score_images(clip, images, "a cat", pez.image_features(clip, targets))
    assert np.allclose(by_image.matrix, by_feature.matrix, atol=1e-5)
    assert score_images(clip, images, None, None).text is None


# ---------------------------------------------------------------------------------------------
# Validation: ConfigError saying expected vs received, before any generation


class NeverCalled:
    """A pipeline that fails the test if validation lets a bad input through."""

    def __call__(self, *args, **kwargs):
        raise AssertionError("the pipeline ran although the inputs were invalid")


@pytest.mark.parametrize(
    "changes, needle",
    [
        ({"width": 100}, "width: expected a multiple of 8, received 100"),
        ({"height": 32}, "height: expected a value in [64, 2048], received 32"),
        ({"steps": 0}, "steps: expected a value in [1, 100], received 0"),
        ({"steps": 2.5}, "steps: expected an integer, received 2.5"),
        ({"num_images": 9}, "num_images: expected a value in [1, 8], received 9"),
        ({"seed": -1}, "seed: expected a value in [0, 2147483647], received -1"),
        ({"guidance": -1.0}, "guidance: expected a value in [0.0, 30.0], received -1.0"),
        ({"negative_prompt": None}, "negative_prompt: expected text, received None"),
        ({"negative_prompt": "x" * (MAX_TEXT_CHARS + 1)}, f"expected at most {MAX_TEXT_CHARS} characters"),
    ],
)
def test_invalid_settings(changes, needle, clip):
    with pytest.raises(ConfigError) as info:
        generate(PAIR, "a cat", dataclasses.replace(SMALL, **changes), pipeline=NeverCalled(), clip=clip)
    assert needle in str(info.value)


@pytest.mark.parametrize(
    "pair, prompt, needle",
    [
        ("nope", "a cat", "model pair: expected one of"),
        (PAIR, "", "prompt: expected non-empty text, received ''"),
        (PAIR, "   ", "prompt: expected non-empty text"),
        (PAIR, None, "prompt: expected non-empty text, received None"),
        (PAIR, "x" * (MAX_TEXT_CHARS + 1), f"prompt: expected at most {MAX_TEXT_CHARS} characters"),
    ],
)
def test_invalid_pair_or_prompt(pair, prompt, needle, clip):
    with pytest.raises(ConfigError) as info:
        generate(pair, prompt, SMALL, pipeline=NeverCalled(), clip=clip)
    assert needle in str(info.value)


def test_invalid_targets_fail_before_generation(clip):
    with pytest.raises(ConfigError, match=f"expected at most {MAX_IMAGES} images"):
        generate(PAIR, "a cat", SMALL, pipeline=NeverCalled(), clip=clip, targets=[np.zeros((8, 8, 3))] * 33)
    with pytest.raises(ConfigError, match="expected features of width"):
        generate(PAIR, "a cat", SMALL, pipeline=NeverCalled(), clip=clip, targets=torch.randn(2, 7))
    with pytest.raises(pez.InvalidImageError):
        generate(PAIR, "a cat", SMALL, pipeline=NeverCalled(), clip=clip, targets=["/no/such/image.png"])


def test_toy_size_must_be_square(clip):
    with pytest.raises(ConfigError, match="square"):
        generate("toy", "a red circle", GenerateConfig(width=64, height=72), clip=clip)


# ---------------------------------------------------------------------------------------------
# Loading: missing weights, local folders, the cache


def test_missing_weights_fail_fast_with_instructions(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pair = get_pair("sd-turbo")
    from diffusers import AutoPipelineForText2Image

    tries = []  # fail fast: offline, every try reads the local cache only (no download, no retries)
    real = AutoPipelineForText2Image.from_pretrained

    def recorded(*args, **kwargs):
        tries.append(kwargs.get("local_files_only"))
        return real(*args, **kwargs)

    monkeypatch.setattr(AutoPipelineForText2Image, "from_pretrained", recorded)
    with pytest.raises(WeightsNotFoundError) as info:
        load_generator(pair, device="cpu", source=pair.generator + "-not-cached")
    with pytest.raises(WeightsNotFoundError):
        generate(pair, "a cat", score=False, device="cpu")
    assert tries and all(local is True for local in tries), tries
    message = str(info.value)
    assert "stabilityai/sd-turbo-not-cached" in message and "HF_HUB_OFFLINE" in message
    assert "hf download" in message and "local diffusers folder" in message and "'toy'" in message


def test_missing_local_folder(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="not found"):
        load_generator(PAIR, device="cpu", source=str(tmp_path / "nothing"))
    with pytest.raises(WeightsNotFoundError, match="expected model_index.json"):
        load_generator(PAIR, device="cpu", source=str(tmp_path))


def test_local_folder_loads_once_and_generates(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "tiny")
    pair = dataclasses.replace(get_pair(PAIR), generator=str(tmp_path / "tiny"))
    loaded = load_generator(pair, device="cpu")
    assert load_generator(pair, device="cpu") is loaded  # cached
    assert type(loaded.pipeline.scheduler).__name__ == "DPMSolverMultistepScheduler"
    out = generate(pair, "a cat", dataclasses.replace(SMALL, seed=4), score=False, device="cpu")
    assert max_diff(out.images[0], run(pipe, prompt="a cat", seed=4).images[0]) == 0
    from pez.generate import clear_generators

    clear_generators()


# ---------------------------------------------------------------------------------------------
# The toy pair


def test_toy_pair_draws_without_diffusers(clip):
    steps: list[GenerationStep] = []
    out = generate("toy", "a red circle", GenerateConfig(num_images=2, seed=3), clip=clip, callback=steps.append)
    assert len(out.images) == 2 and out.images[0].size == (64, 64) and out.seeds == [3, 4]
    assert len(out.text_scores) == 2 and [(s.step, s.total) for s in steps] == [(1, 2), (2, 2)]
    alone = generate("toy", "a red circle", GenerateConfig(num_images=1, seed=4), score=False)
    assert max_diff(out.images[1], alone.images[0]) == 0
    negative = generate("toy", "a red circle", GenerateConfig(negative_prompt="blue"), score=False)
    assert any("toy generator" in w for w in negative.warnings)
    stopped = generate(
        "toy",
        "a red circle",
        GenerateConfig(num_images=3),
        score=False,
        should_stop=lambda: bool(steps[2:]),
        callback=steps.append,
    )
    assert stopped.stopped and len(stopped.images) == 1


def test_toy_pair_scored_with_toy_clip():
    toy_clip = pez.load_clip("toy", device="cpu")  # ships in assets/
    target = toy.render("red", "circle", seed=99)
    good = generate("toy", "a red circle", GenerateConfig(num_images=2), targets=[target], device="cpu")
    bad = generate("toy", "a blue star", GenerateConfig(num_images=2), clip=toy_clip, targets=[target])
    assert np.mean(good.image_scores) > np.mean(bad.image_scores)  # the toy CLIP sees shape and colour


# ---------------------------------------------------------------------------------------------
# Real weights on a GPU (RUN_SLOW=1)


@pytest.mark.slow
@SLOW
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_sd_turbo_on_gpu():
    try:
        out = generate("sd-turbo", "a photo of a red fox in the snow", GenerateConfig(num_images=2), device="cuda")
    except WeightsNotFoundError as e:
        pytest.skip(str(e))
    assert [im.size for im in out.images] == [(512, 512)] * 2 and len(out.text_scores) == 2
    assert min(out.text_scores) > 0.2  # a real image of the prompt
