"""Faults through the app's named endpoints (gradio_client on an in-process server bound to
127.0.0.1): a failing run is a clear message and the next run works; a cancelled run frees the
worker and keeps the streamed best prompt."""

from __future__ import annotations

import time

import pytest
import torch

import app

from ..conftest import fail_once, noise_image

MODEL = "random:tiny"


@pytest.fixture(scope="module")
def client():
    from gradio_client import Client

    with pytest.MonkeyPatch.context() as env:
        env.setenv("PEZ_EXTRA_MODELS", MODEL)  # the operator offers the tiny CLIP (server.Limits)
        demo = app.build_demo()
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, server_name="127.0.0.1")
    try:
        client = Client(url, verbose=False)
        client.demo = demo  # its model slots: whether a run still holds the model
        yield client
    finally:
        demo.close()


@pytest.fixture(scope="module")
def image_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("img") / "target.png"
    noise_image(5).save(path)
    return str(path)


# Same prompt for the same seed: no time budget of the user's (the app's default on a CPU is one), and
# no polish, which the server's limit (every run's time budget, pipeline.run_budget) would time.
SETTINGS = dict(model=MODEL, prompt_len=4, steps=12, candidates=1, seed=0, time_budget=0.0, refine_steps=0)


def invert(client, image_file, **changes):
    from gradio_client import handle_file

    return client.predict(handle_file(image_file), **{**SETTINGS, **changes}, api_name="/invert")


def test_app_runtime_error_is_a_clear_message_and_the_next_run_works(client, image_file, monkeypatch):
    clean = invert(client, image_file)[0]
    fail_once(monkeypatch, RuntimeError("simulated device failure"))
    with pytest.raises(Exception) as e:
        invert(client, image_file)
    assert type(e.value).__name__ == "AppError" and "simulated device failure" in str(e.value)
    assert invert(client, image_file)[0] == clean


def test_app_out_of_memory_is_a_clear_message(client, image_file, monkeypatch):
    fail_once(monkeypatch, torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"))
    with pytest.raises(Exception) as e:
        invert(client, image_file)
    msg = str(e.value)
    assert "out of" in msg.lower() and "memory" in msg.lower()
    assert "shorter prompt" in msg and "smaller model" in msg
    assert invert(client, image_file)[0]


def test_app_cancel_keeps_the_streamed_best_and_frees_the_worker(client, image_file):
    """What an API user's Stop is: cancel the job. The run must end, not hold the queue."""
    from gradio_client import handle_file

    job = client.submit(handle_file(image_file), **{**SETTINGS, "steps": 3000}, api_name="/invert")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(isinstance(o[0], str) and o[0] for o in job.outputs()):
        time.sleep(0.05)
    job.cancel()
    best = [o[0] for o in job.outputs() if isinstance(o[0], str) and o[0]]
    assert best, "no best prompt was streamed before the cancel"
    slots = client.demo.pez.pipeline.slots
    deadline = time.monotonic() + 120  # liveness only: the cancelled 3,000-step run ends at once
    while slots.active and time.monotonic() < deadline:
        time.sleep(0.05)
    assert slots.active == 0, "the cancelled run still holds the model"
    assert invert(client, image_file, steps=2)[0]
