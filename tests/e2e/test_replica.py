"""Full-size replicas: the configs are the published ones, and the product runs on them.

Fast part: parameter counts on the meta device against the published sizes, tokenizers against
open_clip, scheduler configs. End to end: the default pair's replica is built once per session
(fp16 files, ~4.3 GB in a temp folder; or reused from PEZ_REPLICA_HOME) and the unchanged CLI,
Python API and app run on it in subprocesses with HF_HOME=replica HF_HUB_OFFLINE=1, like a user's
machine with the weights cached. Other pairs end to end are slow tests (RUN_SLOW=1).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pez.models import PAIRS
from pez.testing import replica

from ..conftest import noise_image

ROOT = Path(__file__).resolve().parents[2]
SD2 = "stabilityai/sd-turbo"
SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"
SDXL = "stabilityai/stable-diffusion-xl-base-1.0"


def _components(generator: str) -> dict[str, int]:
    return {c.folder: replica.count_parameters(replica.meta_model(c)) for c in replica.repo_plan(generator).components}


# ---------------------------------------------------------------------------------------------
# The configs are the real ones


def test_clip_parameter_counts_are_the_published_sizes():
    assert replica.count_parameters(replica.meta_clip("ViT-H-14")) == 986_109_441  # 986.1M
    assert round(replica.count_parameters(replica.meta_clip("ViT-L-14")) / 1e6, 1) == 427.6
    assert round(replica.count_parameters(replica.meta_clip("ViT-bigG-14")) / 1e9, 2) == 2.54


def test_generator_parameter_counts_are_the_published_sizes():
    sd2, sd15, sdxl = _components(SD2), _components(SD15), _components(SDXL)
    assert sd2["unet"] == 865_910_724  # SD 2.x UNet 865.9M
    assert sd15["unet"] == 859_520_964  # SD 1.5 UNet 859.5M
    assert sd2["vae"] == sd15["vae"] == sdxl["vae"] == 83_653_863  # SD VAE 83.7M
    assert sdxl["unet"] == 2_567_463_684  # SDXL UNet 2.567B
    assert sd2["text_encoder"] == 340_387_840  # OpenCLIP-H text, 23 of its 24 layers
    assert sd15["text_encoder"] == sdxl["text_encoder"] == 123_060_480  # CLIP ViT-L/14 text
    assert sdxl["text_encoder_2"] == 694_659_840  # OpenCLIP bigG text + projection
    assert round(sd15["safety_checker"] / 1e6) == 304  # CLIP ViT-L/14 vision + concept embeddings


def test_every_pair_with_a_generator_has_a_layout():
    for name in replica.REPLICA_PAIRS:
        if PAIRS[name].kind == "flux":  # its own module: pez.testing.flux_replica (tests/unit/test_flux.py)
            continue
        plan = replica.repo_plan(PAIRS[name].generator)
        assert {"unet", "vae", "text_encoder"} <= {c.folder for c in plan.components}


@pytest.mark.parametrize(
    ("generator", "cls", "first_timestep"),
    [
        (SD2, "EulerDiscreteScheduler", 999),  # trailing spacing: one step starts at t=999
        ("stabilityai/stable-diffusion-2-1-base", "PNDMScheduler", None),
        (SD15, "PNDMScheduler", None),
        (SDXL, "EulerDiscreteScheduler", 1),  # leading spacing + steps_offset 1
        ("stabilityai/sdxl-turbo", "EulerAncestralDiscreteScheduler", 999),
    ],
)
def test_scheduler_configs_load_into_the_published_classes(tmp_path, generator, cls, first_timestep):
    import diffusers

    name, config = replica.SCHEDULERS[generator]
    (tmp_path / "scheduler_config.json").write_text(json.dumps({"_class_name": name, **config}))
    sched = getattr(diffusers, cls).from_pretrained(tmp_path)
    assert type(sched).__name__ == cls
    if first_timestep is not None:
        sched.set_timesteps(1)
        assert int(sched.timesteps[0]) == first_timestep


@pytest.mark.parametrize(("pad", "pad_id"), [("!", 0), (replica.EOT, 49407)])
def test_tokenizer_ids_equal_open_clips(tmp_path, pad, pad_id):
    import open_clip
    from transformers import CLIPTokenizer

    replica.write_tokenizer(tmp_path, pad)
    tok = CLIPTokenizer.from_pretrained(tmp_path)
    ref = open_clip.get_tokenizer("ViT-H-14")
    # (no "!" in the prompts: where "!" is the pad token, transformers treats it as a special token
    # and splits "!!" into two, as the published SD 2.x tokenizer config does too)
    prompts = ["a photo of a cat", "Stunning oil-painting, 8k, trending on artstation", "naïve café: 3 dogs & a bird?"]
    for text in prompts:
        ids = tok(text, padding="max_length", max_length=77).input_ids
        want = ref([text])[0].tolist()
        n = want.index(ref.eot_token_id) + 1
        assert ids[:n] == want[:n]
        assert set(ids[n:]) == {pad_id}  # SD 2.x / bigG tokenizers pad with "!", SD 1.x with EOT
    assert tok.pad_token_id == pad_id


def test_safetensors_writer_streams_sensible_values(tmp_path):
    from safetensors.torch import load_file

    shapes = {"a.weight": (64, 32), "ln.weight": (32,), "ln.bias": (32,), "emb": (5, 32, 3, 3), "logit_scale": ()}
    replica.write_safetensors(tmp_path / "m.safetensors", shapes, replica.ValueSource(0), torch.float16)
    got = load_file(tmp_path / "m.safetensors")
    assert {k: tuple(v.shape) for k, v in got.items()} == shapes and got["a.weight"].dtype == torch.float16
    assert torch.isfinite(got["a.weight"].float()).all() and abs(got["a.weight"].float().std() - 32**-0.5) < 0.03
    assert (got["ln.weight"] == 1).all() and (got["ln.bias"] == 0).all()
    assert len({tuple(r.tolist()) for r in got["a.weight"]}) == 64  # rows differ


# ---------------------------------------------------------------------------------------------
# The product on the default pair's replica


@pytest.fixture(scope="session")
def replica_home():
    """The sd-turbo replica, built once per session and deleted after it (4.3 GB; pytest would
    keep three sessions' temp folders). PEZ_REPLICA_HOME reuses and keeps a built one."""
    import shutil
    import tempfile

    given = os.environ.get("PEZ_REPLICA_HOME")
    root = Path(given) if given else Path(tempfile.mkdtemp(prefix="pez-replica-"))
    try:
        yield replica.build_replica(root, ["sd-turbo"], dtype="fp16")
    finally:
        if not given:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def image_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("img") / "target.png"
    noise_image(0, 96).save(path)
    return str(path)


def _run(home: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"}
    env.pop("HF_HUB_CACHE", None)
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


# A few search steps and refinement rounds: every phase runs at full size, in CI-sized time.
FAST = ["--steps", "2", "--prompt-len", "4", "--candidates", "1", "--refine-steps", "3", "--device", "cpu", "-q"]


@pytest.fixture(autouse=True, scope="module")
def _free_models():
    """Free the full-size models this module loads, and only those: other tests hold models
    from the cache (the session's tiny CLIP) and check they stay cached."""
    from pez.models import clip

    before = dict(clip._CACHE)
    yield
    from pez.generate import clear_generators

    with clip._CACHE_LOCK:
        clip._CACHE.clear()
        clip._CACHE.update(before)
    clear_generators()


def test_cli_invert_and_batch_at_full_size(replica_home, image_file, tmp_path):
    done = _run(replica_home, sys.executable, "-m", "pez", "invert", image_file, *FAST, "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    assert out["prompt"].strip() and out["model"] == "ViT-H-14/laion2b_s32b_b79k" and out["steps_run"] == 2

    jsonl = tmp_path / "out.jsonl"
    done = _run(replica_home, sys.executable, "-m", "pez", "batch", image_file, "--out", str(jsonl), *FAST)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["prompt"].strip()


def test_cli_generate_at_full_size(replica_home, tmp_path):
    from PIL import Image

    args = [
        "generate",
        "a lighthouse at dusk",
        "--seed",
        "3",
        "--out",
        str(tmp_path),
        "--device",
        "cpu",
        "--json",
        "-q",
    ]
    done = _run(replica_home, sys.executable, "-m", "pez", *args, "--size", "256")
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    [img] = out["images"]
    assert img["seed"] == 3 and Path(img["path"]).name == "sd-turbo-seed3.png" and -1 <= img["text_score"] <= 1
    with Image.open(img["path"]) as im:
        assert im.size == (256, 256)


def test_flux_small_replica_through_the_cli(tmp_path_factory, tmp_path):
    """FLUX.1-schnell's small replica (the published files and configs, reduced widths) in a fresh
    process with HF_HOME=replica HF_HUB_OFFLINE=1: the unchanged CLI loads it with the product's own
    loader (hub cache, FluxPipeline) and draws a 64x64 image; a side Flux cannot draw is one line."""
    from pez.testing.flux_replica import build_flux_replica

    home = build_flux_replica(tmp_path_factory.mktemp("flux"), "small")
    args = ["generate", "a lighthouse at dusk", "--model", "flux-schnell", "--steps", "1", "--no-score"]
    args += ["--out", str(tmp_path), "--device", "cpu", "--json", "-q"]
    done = _run(home, sys.executable, "-m", "pez", *args, "--size", "64")
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    assert out["pair"] == "flux-schnell" and out["settings"]["guidance"] == 0.0
    [img] = out["images"]
    assert Path(img["path"]).name == "flux-schnell-seed0.png"
    done = _run(home, sys.executable, "-m", "pez", *args, "--size", "72")
    assert done.returncode == 2 and "multiple of 16 for Flux" in done.stderr and "Traceback" not in done.stderr


def test_cli_generate_errors_are_one_line(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    done = _run(empty, sys.executable, "-m", "pez", "generate", "a cat", "--out", str(tmp_path), "-q")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Could not load" in done.stderr
    done = _run(empty, sys.executable, "-m", "pez", "generate", "a cat", "--steps", "0", "-q")
    assert done.returncode == 2 and "steps" in done.stderr and "Traceback" not in done.stderr


def test_python_api_and_app_at_full_size(replica_home, image_file):
    """pez.invert / pez.regenerate, then the app's /invert and /regenerate (one 512x512 image)."""
    done = _run(replica_home, sys.executable, "-m", "tests.e2e.replica_e2e", "sd-turbo", image_file)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("E2E "))
    out = json.loads(line[4:])
    api, ui = out["api"], out["app"]
    assert api["available"] == [True, True, []]  # pair_availability sees the replica as cached
    assert api["prompt"].strip() and api["model"] == "ViT-H-14/laion2b_s32b_b79k" and api["image_size"] == [256, 256]
    assert api["shared_text_encoder"]  # SD-Turbo's text encoder is ViT-H-14's text tower: one copy
    assert isinstance(ui["prompt"], str) and ui["prompt"].strip()
    assert ui["image_size"] == [512, 512]  # the pair's default size


@pytest.mark.slow
@pytest.mark.parametrize("pair", ["sd-2.1-base", "sd-1.5", "sdxl-turbo", "sdxl"])
def test_other_pairs_end_to_end(pair, tmp_path_factory, image_file):
    home = Path(os.environ.get("PEZ_REPLICA_HOME") or tmp_path_factory.mktemp(f"replica-{pair}"))
    replica.build_replica(home, [pair], dtype="fp16")
    done = _run(home, sys.executable, "-m", "tests.e2e.replica_e2e", pair, image_file, "--no-app", timeout=3000)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(next(x for x in done.stdout.splitlines() if x.startswith("E2E "))[4:])["api"]
    assert out["available"][:2] == [True, True] and out["prompt"].strip() and out["image_size"] == [256, 256]


def test_a_large_vision_tower_stays_on_the_cpu_during_the_search(images):
    """On CUDA the vision tower of a big CLIP is kept on the CPU and visits the device only to
    encode images (checked here with the meta device standing in for the accelerator)."""
    import open_clip

    from pez.config import VISION_OFFLOAD_BYTES
    from pez.engine.features import image_features
    from pez.models.clip import LoadedClip, _to_device, _vision_bytes, parse_clip_spec
    from pez.testing.tiny_clip import TINY_CONFIG

    assert _vision_bytes(replica.meta_clip("ViT-bigG-14"), "fp16") > VISION_OFFLOAD_BYTES
    assert _vision_bytes(replica.meta_clip("ViT-L-14"), "fp16") < VISION_OFFLOAD_BYTES
    model = open_clip.model.CLIP(**TINY_CONFIG)
    _to_device(model, torch.device("meta"), keep_vision_on_cpu=True)
    assert model.token_embedding.weight.is_meta and model.positional_embedding.is_meta
    assert not any(p.is_meta for p in model.visual.parameters())

    model = open_clip.model.CLIP(**TINY_CONFIG).eval()
    preprocess = open_clip.image_transform(TINY_CONFIG["vision_cfg"]["image_size"], is_train=False)
    tok = open_clip.get_tokenizer("ViT-B-32")
    plain = LoadedClip(model, tok, preprocess, parse_clip_spec("random:tiny"), torch.device("cpu"), "fp32")
    offloaded = LoadedClip(model, tok, preprocess, plain.spec, torch.device("cpu"), "fp32", vision_offloaded=True)
    assert torch.allclose(image_features(offloaded, images), image_features(plain, images))
    assert next(model.visual.parameters()).device.type == "cpu"


@pytest.mark.slow
def test_openai_clip_loads_with_quick_gelu(tmp_path, monkeypatch):
    """ViT-L-14/openai (SD 1.x's CLIP) was trained with QuickGELU; open_clip only warns unless told."""
    from huggingface_hub import constants

    from pez.models.clip import _load_open_clip, parse_clip_spec

    replica.write_clip_repo(tmp_path / "hub", "ViT-L-14/openai", "fp16", replica.ValueSource(0))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    model, _, _ = _load_open_clip(parse_clip_spec("ViT-L-14/openai"), torch.device("cpu"), "fp32")
    act = model.transformer.resblocks[0].mlp.gelu
    assert type(act).__name__ == "QuickGELU"


def test_cli_replica_rejects_bad_pairs_and_dtypes(tmp_path, capsys):
    from pez import cli

    assert cli.run(["replica", str(tmp_path), "--pairs", "toy"]) == 2
    assert "loads nothing from the hub" in capsys.readouterr().err
    assert cli.run(["replica", str(tmp_path), "--pairs", "nope"]) == 2
    assert "expected one of" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.run(["replica", str(tmp_path), "--dtype", "int8"])
    assert not list(tmp_path.iterdir())  # nothing written


def test_generator_loader_tries_the_cached_variant_first(tmp_path, monkeypatch):
    """Only fp16 files on a CPU (fp32 first by default): no failed full-precision load first."""
    import diffusers

    from pez.generate import pipeline as G

    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "diffusion_pytorch_model.fp16.safetensors").write_bytes(b"")
    tried = []

    class FakeAuto:
        @staticmethod
        def from_pretrained(source, dtype, variant, local_files_only):
            tried.append(variant)
            return "pipeline"

    monkeypatch.setattr(diffusers, "AutoPipelineForText2Image", FakeAuto)
    assert G._try_variants(str(tmp_path), torch.float32, local_only=True) == "pipeline" and tried == ["fp16"]
    tried.clear()
    (tmp_path / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"")
    assert G._try_variants(str(tmp_path), torch.float32, local_only=True) == "pipeline" and tried == [None]
