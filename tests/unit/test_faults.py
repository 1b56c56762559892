"""Faults in the core: a failing run leaves the cached model usable and unchanged, out of memory
says what to change, stopping keeps the best prompt (the same through the app: tests/app)."""

from __future__ import annotations

import math

import pytest
import torch

import pez
from pez.errors import OOM_HINT, describe_error

from ..conftest import fail_once, noise_image

MODEL = "random:tiny"
FAST = pez.InvertConfig(prompt_len=4, steps=12, report_every=3, refine_steps=0, prune_tolerance=0)  # plain search


def test_a_runtime_error_mid_run_leaves_the_model_usable(tiny_clip, monkeypatch):
    img = noise_image(3)
    clean = pez.invert([img], tiny_clip, FAST)
    fail_once(monkeypatch, RuntimeError("CUDA error: an illegal memory access was encountered"))
    with pytest.raises(RuntimeError, match="illegal memory access"):
        pez.invert([img], tiny_clip, FAST)
    assert pez.load_clip(MODEL, device="cpu") is tiny_clip  # the cache keeps the same model
    again = pez.invert([img], tiny_clip, FAST)
    assert (again.prompt, again.score) == (clean.prompt, clean.score)  # nothing was left half-changed


def test_out_of_memory_message_suggests_what_to_change(tiny_clip, monkeypatch):
    fail_once(monkeypatch, torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"))
    with pytest.raises(torch.cuda.OutOfMemoryError) as e:
        pez.invert([noise_image(0)], tiny_clip, FAST)
    msg = describe_error(e.value)  # what the batch runner (and the CLI's batch) report
    assert msg == OOM_HINT
    assert "fewer candidates" in msg and "shorter prompt" in msg and "smaller model" in msg
    assert pez.invert([noise_image(0)], tiny_clip, FAST).prompt  # and the next run works


def test_stop_mid_run_keeps_the_best_prompt(tiny_clip):
    img, config = noise_image(4), FAST.replace(steps=200)
    calls = [0]

    def stop_after_7_steps():
        calls[0] += 1
        return calls[0] > 7

    res = pez.invert([img], tiny_clip, config, should_stop=stop_after_7_steps)
    assert res.stopped and res.steps_run == 7 and res.prompt and math.isfinite(res.score)
    short = pez.invert([img], tiny_clip, config.replace(steps=7))  # the same 7 steps, run to the end
    assert (res.prompt, res.score) == (short.prompt, short.score)

    stream = pez.invert_stream([img], tiny_clip, config)  # closing the stream also ends the run
    first = next(rep for rep in stream if rep.step == config.report_every)
    stream.close()
    assert first.best_prompt and first.step == config.report_every


def test_a_failed_load_keeps_nothing_it_built(tmp_path):
    """A load that fails after the architecture is built (weights that are not weights) must not keep
    the half-built model alive through the exception (gradio keeps raised errors a while)."""
    import gc

    import open_clip

    def models() -> int:
        gc.collect()
        return sum(isinstance(o, open_clip.model.CLIP) for o in gc.get_objects())

    bad = tmp_path / "weights.bin"
    bad.write_bytes(b"not weights")
    before = models()
    with pytest.raises(Exception) as failed:  # noqa: B017 - whatever torch.load raises
        pez.load_clip(f"ViT-S-16@{bad}", device="cpu")
    assert failed.value is not None  # the error is kept, as a server keeps it
    assert models() == before, "the half-built CLIP is still alive"
