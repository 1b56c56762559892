"""ZeroGPU in-process: the Space's front matter (read by huggingface_hub's own parser), the GPU
durations each handler reserves, the rewording of the spaces package's errors, and the real
`spaces.GPU` decorator off Spaces (a pass-through). What happens under SPACES_ZERO_GPU=1, in GPU
worker processes, is tests/e2e/test_zerogpu.py."""

from __future__ import annotations

import inspect
from pathlib import Path

import gradio as gr
import pytest

import pez
from pez.engine import accel
from pez_app import pipeline, server, zerogpu
from pez_app.regenerate import Draw

ROOT = Path(__file__).resolve().parents[2]


def pinned(name: str) -> str:
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        spec = line.split("#")[0].strip()
        if spec.split("==")[0].split("[")[0].strip().lower() == name:
            return spec.split("==")[1].strip()
    raise AssertionError(f"{name} is not pinned in requirements.txt")


def test_front_matter_is_a_space_config_zero_gpu_accepts():
    from huggingface_hub import SpaceHardware
    from huggingface_hub.repocard import SpaceCard

    card = SpaceCard.load(ROOT / "README.md").data
    assert card.sdk == "gradio" and card.sdk_version == pinned("gradio")  # the version the Space installs
    assert card.python_version in ("3.10", "3.12")  # the Pythons ZeroGPU runs
    classifiers = __import__("tomllib").loads((ROOT / "pyproject.toml").read_text())["project"]["classifiers"]
    assert f"Programming Language :: Python :: {card.python_version}" in classifiers
    assert (ROOT / card.app_file).is_file()
    assert card.suggested_hardware in {h.value for h in SpaceHardware}
    preload = [entry.split()[0] for entry in card.to_dict()["preload_from_hub"]]
    default = pez.get_pair(pez.DEFAULT_PAIR)
    assert default.generator in preload and any("CLIP-ViT-H-14" in repo for repo in preload)
    torch_major, torch_minor = (int(x) for x in pinned("torch").split(".")[:2])
    assert (torch_major, torch_minor) >= (2, 8)  # ZeroGPU needs PyTorch 2.8 or later


def test_spaces_decorator_is_a_pass_through_off_spaces():
    """The real spaces package, off Spaces: handlers stay themselves (generators stay generators)."""
    spaces = pytest.importorskip("spaces")
    assert server.spaces is spaces and not server.ZERO_GPU

    def stream(x):
        yield x

    assert pipeline.on_gpu(stream, zerogpu.search_seconds) is stream
    gpu = pipeline.Pipeline(server.ServerSettings(), "toy", {}).gpu
    assert inspect.isgeneratorfunction(gpu(stream, zerogpu.search_seconds))
    assert not inspect.isgeneratorfunction(gpu(lambda x: x, zerogpu.generate_seconds))


def test_search_duration_follows_the_request(monkeypatch, tmp_path):
    monkeypatch.setattr(zerogpu, "PRELOADED", {"sd-turbo"})
    img = tmp_path / "a.png"
    img.write_bytes(b"x")

    def secs(model="sd-turbo", own=(str(img), None, "", 1.0), per_image=False, **kw):
        return zerogpu.search_seconds(own, model, pez.InvertConfig(**kw), cap=120, per_image=per_image)

    short, long = secs(steps=100, refine_steps=0), secs(steps=1000, refine_steps=0)
    assert zerogpu.MIN_SECONDS <= short < long <= 120
    assert secs(steps=1000, refine_steps=0, candidates=8) > long
    assert secs(steps=1000, refine_steps=50) > long
    assert secs(model="ViT-L-14/openai", steps=1000, refine_steps=0) < long  # 12 text layers, not 24
    assert secs(steps=10_000, refine_steps=0) == 120  # capped: never a visitor's whole quota beyond the cap
    # concatenate: one search per image, each within its share of the run's budget
    three = (str(img), str(img), str(img))
    one_search = secs(own=three, steps=300, refine_steps=0)
    assert secs(own=three, per_image=True, steps=300, refine_steps=0) > 2 * one_search - zerogpu.START_SECONDS * 2
    budgeted = secs(own=three, per_image=True, steps=10_000, refine_steps=0, time_budget=10.0)  # 10 s per image
    assert budgeted == zerogpu._clamp(zerogpu.START_SECONDS + 3 * 10.0 + 3 * zerogpu.IMAGE_SECONDS, 120)
    assert zerogpu.search_seconds((str(img),), "sd-turbo", pez.InvertConfig(steps=10_000), cap=30) == 30
    monkeypatch.setattr(zerogpu, "ZERO_GPU", True)
    assert (
        secs(model="sd-1.5", steps=100, refine_steps=0) > short + zerogpu.LOAD_SECONDS
    )  # not preloaded: loads in the call
    assert zerogpu.loads_in_call("sd-1.5") and not zerogpu.loads_in_call("sd-turbo")
    assert "sd-turbo" in zerogpu.loading_note("sd-1.5")
    assert zerogpu._image_count((str(img), [(str(img), "c"), str(img)], "a text", 1.0)) == 3


def test_generation_and_score_durations():
    one = zerogpu.generate_seconds([[Draw("a cat")]], "sd-2.1-base", pez.GenerateConfig(num_images=1))
    four = zerogpu.generate_seconds([[Draw("a cat")], [Draw("a dog")]], "sd-2.1-base", pez.GenerateConfig(num_images=2))
    turbo = zerogpu.generate_seconds([[Draw("a cat")]], "sd-turbo", pez.GenerateConfig(num_images=1))
    assert zerogpu.MIN_SECONDS <= turbo <= one < four <= 120
    assert zerogpu.generate_seconds([[Draw("x")]], "no-such-pair", pez.GenerateConfig()) == zerogpu.MIN_SECONDS
    assert zerogpu.MIN_SECONDS <= zerogpu.score_seconds("a cat", None, "sd-turbo") <= 120


@pytest.mark.parametrize(
    "title, message, expect",
    [
        ("ZeroGPU quota exceeded", "You have exceeded your free ZeroGPU quota (60s requested vs. 7s left).", "used up"),
        (
            "ZeroGPU illegal duration",
            "The requested GPU duration (300s) is larger than the maximum allowed",
            "fewer steps",
        ),
        ("ZeroGPU queue timeout", "No GPU was available after 60s.", "try again"),
        ("ZeroGPU client error", "No GPU was available", "try again"),
        ("ZeroGPU worker error", "GPU task aborted", "aborted"),
        ("ZeroGPU worker error", "RuntimeError", "GPU worker failed"),
    ],
)
def test_zero_gpu_errors_are_explained(title, message, expect):
    err = zerogpu.explain(gr.Error(message, title=title), seconds=42)
    assert isinstance(err, gr.Error) and err.title == title
    assert expect in str(err.message) and (message.rstrip(".") in str(err.message) or "aborted" in expect)
    assert zerogpu.is_abort(gr.Error("GPU task aborted", title="ZeroGPU worker error"))
    other = gr.Error("Prompt length: expected ...", title="Please check the input")
    assert zerogpu.explain(other) is other


def test_compile_is_off_on_zero_gpu(monkeypatch):
    import torch

    monkeypatch.setenv("PEZ_COMPILE", "1")
    assert accel.compile_enabled(torch.device("cuda"))
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    assert accel.on_zero_gpu() and not accel.compile_enabled(torch.device("cuda"))
