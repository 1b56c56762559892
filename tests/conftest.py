"""Shared fixtures of every tier: tiny random models with the real tokenizer, synthetic images.

The tiers are folders, each marking its tests (unit, app, e2e; see their conftest.py):

    tests/unit   fast: engine, config, vocabulary, CLI parsing... on tiny and toy models
    tests/app    the Gradio app: handlers, gradio_client, MCP
    tests/e2e    end to end: replicas, browser, load, downloads, real processes

`python -m pytest` runs them all (CI); `python -m pytest tests/unit` the fast tier. Tests that need
real weights, a GPU or minutes of CPU are marked `slow` and skipped unless RUN_SLOW=1.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import pez.testing  # noqa: F401  registers the fixtures "random:tiny" and "random:tiny-wide" with the loader

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # model hubs are unreachable in tests


def mark_folder(conftest: str, marker: str):
    """The collection hook of a tier's conftest: marks every test under its folder `marker`."""
    folder = Path(conftest).parent

    def pytest_collection_modifyitems(config, items):
        for item in items:
            if folder in Path(item.path).parents:
                item.add_marker(getattr(pytest.mark, marker))

    return pytest_collection_modifyitems


def pytest_collection_modifyitems(config, items):
    if os.environ.get("RUN_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: set RUN_SLOW=1 to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """One torch thread: on two cores shared with subprocesses (CLI, servers, accelerate ranks)
    two intra-op threads fighting for them are many times slower than one."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_clip():
    """A 2-layer random CLIP with the real 49,408-token BPE vocabulary (seeded)."""
    import pez

    return pez.load_clip("random:tiny", device="cpu")


def noise_image(seed: int, size: int = 48) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


@pytest.fixture
def images():
    return [noise_image(i) for i in range(3)]


def fail_once(monkeypatch, exc: BaseException) -> list:
    """The next text-encoder forward pass raises `exc`; later ones work. Returns the call log."""
    from pez.engine.tower import PromptEncoder

    real, calls = PromptEncoder.encode_prompt_embeddings, []

    def flaky(self, prompt):
        calls.append(1)
        if len(calls) == 1:
            raise exc
        return real(self, prompt)

    monkeypatch.setattr(PromptEncoder, "encode_prompt_embeddings", flaky)
    return calls
