"""The FLUX.1-schnell replica (pez.testing.flux_replica) and the pair "flux-schnell" regenerating with it
(pez.generate, with Flux's differences in pez.generate.flux).

Fast and offline: the small replica (published layout and configs, reduced widths) is written
once per module and loaded by diffusers' FluxPipeline from the hub cache layout, as the real
weights would be; full-size parameter counts and shards are checked on the meta device. The
full-size replica (33.7 GB in bf16) runs on a GPU only (bench/gpu_check.py). The same loading in a
fresh process with HF_HOME pointing at the replica is tests/e2e/test_replica.py's.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from pez.config import GenerateConfig
from pez.errors import ConfigError
from pez.generate import flux as flux_path
from pez.generate import generate, load_generator, resolve_settings
from pez.models import get_pair
from pez.testing import flux_replica as F

SMALL_RUN = GenerateConfig(steps=2, width=64, height=64)
FLUX = get_pair("flux-schnell")


@pytest.fixture(scope="module")
def replica_root(tmp_path_factory):
    return F.build_flux_replica(tmp_path_factory.mktemp("flux"), "small")


@pytest.fixture(scope="module")
def pipe(replica_root):
    from diffusers import FluxPipeline

    pipe = FluxPipeline.from_pretrained(F.FLUX_REPO, cache_dir=replica_root / "hub", local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run(pipe, prompt="a lighthouse at dusk", **changes):
    return generate(FLUX, prompt, dataclasses.replace(SMALL_RUN, **changes), pipeline=pipe, score=False)


# ---------------------------------------------------------------------------------------------
# Configs and layout


def test_full_size_parameter_counts_are_the_published_sizes():
    counts = F.parameter_counts(F.FULL)
    assert counts["transformer"] == 11_891_178_560  # FLUX.1 transformer 11.9B
    assert counts["text_encoder_2"] == 4_762_310_656  # T5-XXL v1.1 encoder 4.76B
    assert counts["text_encoder"] == 123_060_480  # CLIP ViT-L/14 text 123M
    assert counts["vae"] == 83_819_683  # 16-channel VAE 83.8M


def test_full_size_shards_fit_the_published_shard_sizes():
    """3 transformer shards under diffusers' 10 GB and 2 T5 shards under transformers' 5 GB (bf16)."""
    for comp in F.components(F.FULL):
        if comp.folder not in F.SHARDS:
            continue
        shapes = F.saved_shapes(F.meta_module(comp))
        plan = F.shard_plan(shapes, F.SHARDS[comp.folder], 2)
        sizes = [2 * sum(int(np.prod(shapes[n])) for n in names) for names in plan]
        limit = 10e9 if comp.library == "diffusers" else 5e9
        assert len(plan) == F.SHARDS[comp.folder] and max(sizes) < limit, (comp.folder, sizes)
        assert [n for names in plan for n in names] == list(shapes)  # every tensor once, in order
    t5 = F.saved_shapes(F.meta_module(F.components(F.FULL)[3]))
    assert "shared.weight" in t5 and "encoder.embed_tokens.weight" not in t5  # tied: stored once


def test_small_replica_has_the_published_file_layout(replica_root):
    snap = F.snapshot_path(replica_root)
    files = {str(p.relative_to(snap)) for p in snap.rglob("*") if p.is_file()}
    shards = [f"transformer/diffusion_pytorch_model-0000{k}-of-00003.safetensors" for k in (1, 2, 3)]
    shards += [f"text_encoder_2/model-0000{k}-of-00002.safetensors" for k in (1, 2)]
    assert files == {
        "model_index.json",
        "scheduler/scheduler_config.json",
        "text_encoder/config.json",
        "text_encoder/model.safetensors",
        "text_encoder_2/config.json",
        "text_encoder_2/model.safetensors.index.json",
        "tokenizer/merges.txt",
        "tokenizer/special_tokens_map.json",
        "tokenizer/tokenizer_config.json",
        "tokenizer/vocab.json",
        "tokenizer_2/special_tokens_map.json",
        "tokenizer_2/tokenizer.json",  # the published repo also has spiece.model (SentencePiece)
        "tokenizer_2/tokenizer_config.json",
        "transformer/config.json",
        "transformer/diffusion_pytorch_model.safetensors.index.json",
        "vae/config.json",
        "vae/diffusion_pytorch_model.safetensors",
        *shards,
    }
    index = json.loads((snap / "transformer/diffusion_pytorch_model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == {s.split("/")[1] for s in shards[:3]}
    model_index = json.loads((snap / "model_index.json").read_text())
    assert model_index["_class_name"] == "FluxPipeline"
    assert model_index["tokenizer_2"] == ["transformers", "T5TokenizerFast"]


def test_t5_tokenizer_has_t5s_layout_and_needs_no_sentencepiece(replica_root):
    from transformers import T5TokenizerFast

    tok = T5TokenizerFast.from_pretrained(F.snapshot_path(replica_root) / "tokenizer_2")
    assert len(tok) == 32100 and tok.model_max_length == 512
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    assert tok.convert_tokens_to_ids(["<extra_id_99>", "<extra_id_0>"]) == [32000, 32099]
    for text in ["a photo of a cat", "Stunning oil-painting, 8K, trending on ArtStation!", "x=3; y<4 [ok]"]:
        ids = tok(text).input_ids
        assert ids[-1] == 1 and tok.unk_token_id not in ids, (text, ids)
        assert tok.decode(ids, skip_special_tokens=True) == text
    assert len(tok("a photo of a cat").input_ids) == 6  # whole words are single pieces


def test_clip_tokenizer_gives_open_clips_ids(pipe):
    import open_clip

    ref = open_clip.get_tokenizer("ViT-L-14")
    for text in ["a photo of a cat", "trending on artstation, 8k"]:
        ids = pipe.tokenizer(text).input_ids
        assert ids == ref([text])[0].tolist()[: len(ids)]
    assert pipe.tokenizer.pad_token_id == ref.eot_token_id  # openai's CLIP tokenizer pads with EOT


# ---------------------------------------------------------------------------------------------
# Loading and generating


def test_pipeline_loads_offline_from_the_hub_cache(pipe):
    assert type(pipe).__name__ == "FluxPipeline"
    assert type(pipe.transformer).__name__ == "FluxTransformer2DModel" and not pipe.transformer.config.guidance_embeds
    assert type(pipe.text_encoder_2).__name__ == "T5EncoderModel"
    assert type(pipe.scheduler).__name__ == "FlowMatchEulerDiscreteScheduler"
    assert pipe.vae.config.latent_channels == 16 and pipe.vae.config.shift_factor == pytest.approx(0.1159)


def test_generates_seeded_images_and_feeds_the_prompt_to_both_encoders(pipe):
    import open_clip

    seen = {}
    hooks = [
        enc.register_forward_pre_hook(
            lambda m, a, k, n=name: seen.update({n: (a[0] if a else k["input_ids"])}), with_kwargs=True
        )
        for name, enc in (("clip", pipe.text_encoder), ("t5", pipe.text_encoder_2))
    ]
    try:
        out = run(pipe, "a lighthouse at dusk", num_images=2, seed=5)
    finally:
        for h in hooks:
            h.remove()
    assert [im.size for im in out.images] == [(64, 64)] * 2 and out.seeds == [5, 6] and out.steps_done == 2
    clip_ids = open_clip.get_tokenizer("ViT-L-14")(["a lighthouse at dusk"])[0]
    n = clip_ids.tolist().index(49407) + 1  # open_clip pads with 0 after EOT, openai's tokenizer with EOT
    assert seen["clip"].shape == (1, 77) and seen["clip"][0, :n].tolist() == clip_ids[:n].tolist()
    assert (seen["clip"][0, n:] == 49407).all()
    t5_ids = pipe.tokenizer_2("a lighthouse at dusk").input_ids
    assert seen["t5"].shape == (1, 256) and seen["t5"][0, : len(t5_ids)].tolist() == t5_ids
    assert (seen["t5"][0, len(t5_ids) :] == pipe.tokenizer_2.pad_token_id).all()
    alone = run(pipe, "a lighthouse at dusk", seed=6)  # image k is reproduced by seed + k alone
    assert np.abs(np.asarray(alone.images[0], dtype=int) - np.asarray(out.images[1], dtype=int)).max() <= 1


def test_the_pairs_loader_reads_a_local_folder_and_scores(replica_root):
    import pez
    from pez.generate import clear_generators

    source = str(F.snapshot_path(replica_root))
    gen = load_generator(FLUX, "cpu", source=source)
    try:
        assert type(gen.pipeline).__name__ == "FluxPipeline" and gen.pipeline.text_encoder.dtype == torch.float32
        assert load_generator(FLUX, "cpu", source=source) is gen  # cached
        clip = pez.load_clip("random:tiny", device="cpu")
        target = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
        out = generate(FLUX, "a red circle", SMALL_RUN, pipeline=gen, clip=clip, targets=[target])
        assert len(out.text_scores) == 1 and -1 <= out.text_scores[0] <= 1 and len(out.image_scores) == 1
        with pytest.raises(ConfigError, match="Flux pipeline"):  # an SD folder is not a Flux one
            from pez.testing.tiny_sd import tiny_pipeline

            sd = replica_root / "sd"
            tiny_pipeline().save_pretrained(sd)
            load_generator(FLUX, "cpu", source=str(sd))
    finally:
        clear_generators()


def test_settings_follow_the_pair_and_flux_rules():
    s = resolve_settings(FLUX)
    assert (s.steps, s.guidance, s.width, s.height) == (4, 0.0, 1024, 1024)
    with pytest.raises(ConfigError, match="multiple of 16"):
        resolve_settings(FLUX, GenerateConfig(width=72))
    kwargs = flux_path.call_kwargs("a cat", resolve_settings(FLUX, GenerateConfig(negative_prompt="blur")))
    assert (
        kwargs["negative_prompt"] is None and kwargs["true_cfg_scale"] == 1.0 and kwargs["max_sequence_length"] == 256
    )
    kwargs = flux_path.call_kwargs(
        "a cat", resolve_settings(FLUX, GenerateConfig(negative_prompt="blur", guidance=3.0))
    )
    assert kwargs["negative_prompt"] == "blur" and kwargs["true_cfg_scale"] == 3.0 and kwargs["guidance_scale"] == 0.0


def test_warnings_and_true_guidance_run(pipe):
    out = run(pipe, negative_prompt="blurry")
    assert any("no effect" in w for w in out.warnings)
    out = run(pipe, negative_prompt="blurry", guidance=2.0)
    assert not out.warnings and len(out.images) == 1
    out = run(pipe, " ".join(["lighthouse"] * 90))
    assert any("CLIP encoder reads only the first 75" in w for w in out.warnings)


def test_stop_keeps_the_partial_image(pipe):
    four = dataclasses.replace(SMALL_RUN, steps=4)
    out = generate(FLUX, "a cat", four, pipeline=pipe, score=False, should_stop=lambda: True)
    assert out.stopped and out.images == []
    calls = []
    out = generate(
        FLUX, "a cat", four, pipeline=pipe, score=False, callback=calls.append, should_stop=lambda: len(calls) >= 2
    )
    assert out.stopped and out.steps_done == 2 and len(out.images) == 1 and "partly denoised" in out.warnings[-1]


def test_the_replica_command_writes_every_clip_and_the_flux_repo(tmp_path, monkeypatch):
    """`python -m pez replica DIR --pairs flux-schnell sdxl --size small`: Flux's repo at the small size
    and every CLIP of each pair (both of SDXL's); the full-size CLIPs are only recorded here."""
    from pez import cli
    from pez.testing import replica

    clips, generators = [], []
    monkeypatch.setattr(replica, "write_clip_repo", lambda hub, spec, dtype, values: clips.append(spec))
    monkeypatch.setattr(replica, "write_generator_repo", lambda hub, repo, dtype, values: generators.append(repo))
    assert cli.run(["replica", str(tmp_path), "--pairs", "flux-schnell", "sdxl", "--size", "small"]) == 0
    assert clips == ["ViT-L-14/openai", "ViT-bigG-14/laion2b_s39b_b160k"]  # ViT-L-14 once for both pairs
    assert generators == ["stabilityai/stable-diffusion-xl-base-1.0"]
    snap = F.snapshot_path(tmp_path)
    config = json.loads((snap / "transformer" / "config.json").read_text())
    assert config["num_layers"] == 1
    assert json.loads((snap / "model_index.json").read_text())["_class_name"] == "FluxPipeline"
    with pytest.raises(SystemExit):
        cli.run(["replica", str(tmp_path), "--pairs", "flux-schnell", "--size", "tiny"])


def test_flux_defaults_to_bf16_on_cuda_and_other_pairs_keep_fp16():
    """T5 v1.1 overflows in fp16: with no dtype given, Flux loads in bf16 on CUDA (its published
    dtype), the SD pairs in fp16, everything in fp32 on a CPU; an explicit dtype wins."""
    from pez.generate.pipeline import _dtype

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert _dtype(None, cuda, get_pair("flux-schnell")) == torch.bfloat16
    assert _dtype(None, cuda, get_pair("sdxl")) == torch.float16
    assert _dtype(None, cpu, get_pair("flux-schnell")) == torch.float32
    assert _dtype("fp32", cuda, get_pair("flux-schnell")) == torch.float32
