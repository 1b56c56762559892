"""Load and faults: concurrent sessions stay apart, a failing run leaves everything usable, out of
memory says what to change, stopping keeps the best prompt.

The app is driven only through its named endpoints (gradio_client on an in-process server bound
to 127.0.0.1); the app cases skip cleanly while app.py is not importable."""

from __future__ import annotations

import importlib.util
import math
import sys
import time
from pathlib import Path

import pytest
import torch

import pez
from pez.engine.tower import PromptEncoder
from pez.errors import OOM_HINT, describe_error

from .conftest import noise_image

ROOT = Path(__file__).resolve().parent.parent
MODEL = "random:tiny"
FAST = pez.InvertConfig(prompt_len=4, steps=12, report_every=3, refine_steps=0, prune_tolerance=0)  # plain search


def load_script():
    spec = importlib.util.spec_from_file_location("load_test", ROOT / "scripts" / "load_test.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def fail_once(monkeypatch, exc: BaseException) -> list:
    """The next text-encoder forward pass raises `exc`; later ones work. Returns the call log."""
    real, calls = PromptEncoder.encode_prompt_embeddings, []

    def flaky(self, prompt):
        calls.append(1)
        if len(calls) == 1:
            raise exc
        return real(self, prompt)

    monkeypatch.setattr(PromptEncoder, "encode_prompt_embeddings", flaky)
    return calls


# ---------------------------------------------------------------------------------------------
# Load: 8 concurrent sessions


def test_eight_concurrent_sessions_each_get_their_own_result():
    pytest.importorskip("gradio_client")
    try:
        import app  # noqa: F401
    except Exception as e:
        pytest.skip(f"app.py not importable: {type(e).__name__}: {e}")
    report = load_script().run_load_test(
        sessions=8, steps=200, prompt_len=4, model=MODEL, timeout=150
    )  # long enough to stream
    assert report.ok, report.table()
    assert len({s.final for s in report.sessions}) >= 6  # distinct images -> (mostly) distinct prompts
    assert any(len(s.prompts) > 2 for s in report.sessions), "no session saw a live update"
    assert report.wall < 150


# ---------------------------------------------------------------------------------------------
# Faults in the core


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
    first = next(stream)
    stream.close()
    assert first.best_prompt and first.step == config.report_every


# ---------------------------------------------------------------------------------------------
# Faults through the app's endpoints


@pytest.fixture(scope="module")
def client():
    try:
        from gradio_client import Client

        import app
    except Exception as e:
        pytest.skip(f"app.py not importable: {type(e).__name__}: {e}")
    demo = app.build_demo()
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, server_name="127.0.0.1")
    try:
        c = Client(url, verbose=False)
        names = {n.lstrip("/") for n in c.view_api(return_format="dict", print_info=False)["named_endpoints"]}
        if "invert" not in names:
            pytest.skip("app.py has no /invert endpoint yet")
        yield c
    finally:
        demo.close()


@pytest.fixture(scope="module")
def image_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("img") / "target.png"
    noise_image(5).save(path)
    return str(path)


SETTINGS = dict(model=MODEL, prompt_len=4, steps=12, candidates=1, seed=0)


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

    job = client.submit(handle_file(image_file), **{**SETTINGS, "steps": 10_000}, api_name="/invert")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(isinstance(o[0], str) and o[0] for o in job.outputs()):
        time.sleep(0.05)
    job.cancel()
    best = [o[0] for o in job.outputs() if isinstance(o[0], str) and o[0]]
    assert best, "no best prompt was streamed before the cancel"
    start = time.monotonic()
    assert invert(client, image_file, steps=2)[0]  # queued behind the cancelled run if it still ran
    assert time.monotonic() - start < 30
