"""Issue 23, in process: the budget settings (PEZ_*), what build_demo wires, the default gate, the
request's decode check and the messages, each checked on its own (the outsider's view is in
test_budgets.py)."""

from __future__ import annotations

import io
from types import SimpleNamespace

import gradio as gr
import pytest
from PIL import Image

import pez
from pez_app import pipeline, server
from pez_app.guard import BodyLimit, DiskBudget, QueueStreamGuard
from pez_app.layout import CACHE_RETENTION, build_demo
from pez_app.main import GRADIO_NOTES, _Reworded
from pez_app.pipeline import Admission, CallerGate, found_nothing, own_control
from pez_app.progress import RunControl


def test_budget_settings_from_the_environment():
    s = server.ServerSettings.from_env({})
    assert (s.limits.max_jobs, s.limits.max_body_mb, s.limits.max_decode_mp) == (2, 64, 160)
    assert (s.trusted_proxies, s.sessions, s.disk_mb) == (0, 1000, 256)
    env = {
        "PEZ_MAX_JOBS_PER_CALLER": "3",
        "PEZ_MAX_BODY_MB": "16",
        "PEZ_MAX_DECODE_MP": "80",
        "PEZ_TRUSTED_PROXIES": "1",
        "PEZ_SESSIONS": "50",
        "PEZ_DISK_MB": "10",
    }
    s = server.ServerSettings.from_env(env)
    assert (s.limits.max_jobs, s.limits.max_body_mb, s.limits.max_decode_mp) == (3, 16, 80)
    assert (s.trusted_proxies, s.sessions, s.disk_mb) == (1, 50, 10)


@pytest.mark.parametrize(
    "name, raw", [("PEZ_MAX_JOBS_PER_CALLER", "0"), ("PEZ_TRUSTED_PROXIES", "-1"), ("PEZ_SESSIONS", "x")]
)
def test_a_mistyped_budget_setting_names_the_variable(name, raw):
    with pytest.raises(pez.ConfigError, match=name):
        server.ServerSettings.from_env({name: raw})


def test_the_cpu_space_decodes_less_per_request_unless_set():
    full = server.ServerSettings.from_env({}).limits.decode_budget()
    space = server.ServerSettings.from_env({"PEZ_CPU_SPACE": "1"}).limits.decode_budget()
    assert space.request_pixels == server.CPU_SPACE_DECODE_MP * 1_000_000 < full.request_pixels
    assert space.request_bytes < full.request_bytes and space.image_bytes <= full.image_bytes
    both = {"PEZ_CPU_SPACE": "1", "PEZ_MAX_DECODE_MP": "100"}
    assert server.ServerSettings.from_env(both).limits.decode_budget().request_pixels == 100_000_000


@pytest.fixture(scope="module")
def demo():
    limits = server.Limits(max_decode_mp=server.CPU_SPACE_DECODE_MP)  # as PEZ_CPU_SPACE sets it
    return build_demo(server.ServerSettings(offline_demo=True, limits=limits, ui_interval=0))


def test_build_demo_wires_the_budgets(demo):
    launch = demo.pez.launch_kwargs
    kinds = [m.cls for m in launch["app_kwargs"]["middleware"]]
    assert BodyLimit in kinds and QueueStreamGuard in kinds
    body = next(m for m in launch["app_kwargs"]["middleware"] if m.cls is BodyLimit)
    assert body.kwargs["max_bytes"] == demo.pez.settings.limits.max_body_mb << 20
    assert launch["state_session_capacity"] == demo.pez.settings.sessions
    assert demo.delete_cache == CACHE_RETENTION
    assert isinstance(demo.pez.disk, DiskBudget) and demo.pez.disk.max_bytes == demo.pez.settings.disk_mb << 20
    assert getattr(demo._queue.push, "_pez_capped", False)
    assert isinstance(demo.pez.pipeline.gate, CallerGate)
    unqueued = [f.fn for f in demo.fns.values() if not f.queue and f.fn is not None]
    assert unqueued and all(getattr(fn, "_pez_bounded", False) for fn in unqueued)


def test_the_decode_check_refuses_a_request_before_decoding(demo, monkeypatch):
    big = io.BytesIO()
    Image.new("L", (6000, 6000)).save(big, format="PNG")  # 36 MP: one fits the CPU Space's 40
    data = big.getvalue()
    monkeypatch.setattr(pez.images, "_decode", lambda *a, **k: pytest.fail("an image was decoded"))
    demo.pez.pipeline.check_images({"image": data})  # within budget
    with pytest.raises(pez.InvalidImageError, match="too much to decode"):
        demo.pez.pipeline.check_images({"image": data, "negative_images": [data]})
    with pytest.raises(pez.InvalidImageError, match="too much to decode"):
        demo.pez.pipeline.check_images({"images": [data, data]})


def admission(session: str | None, client: str | None = None, mcp: bool = False) -> Admission:
    return Admission("invert", "search", "toy", session, client, mcp, 1, 10.0)


def test_the_default_gate_caps_runs_per_session_and_gives_places_back():
    gate = CallerGate(max_jobs=2)
    tickets = [gate.admit(admission("a")), gate.admit(admission("a"))]
    with pytest.raises(gr.Error, match="at most 2"):
        gate.admit(admission("a"))
    gate.admit(admission("b")).release()  # another session is not held back
    tickets[0].release()
    tickets[0].release()  # once only
    gate.admit(admission("a"))
    # MCP calls share one gradio session: never keyed by it (by address only, behind a trusted proxy)
    for _ in range(5):
        gate.admit(admission("a", mcp=True))
    by_address = CallerGate(max_jobs=1, by_address=True)
    by_address.admit(admission("x", "1.2.3.4"))
    with pytest.raises(gr.Error):
        by_address.admit(admission("fresh-session", "1.2.3.4"))


def test_every_mcp_call_gets_its_own_run_control():
    tab = RunControl()
    mcp = SimpleNamespace(headers={"x-gradio-user": "mcp"})
    browser = SimpleNamespace(headers={})
    assert own_control(tab, browser) is tab
    assert own_control(tab, mcp) is not tab and own_control(tab, mcp) is not own_control(tab, mcp)
    assert isinstance(own_control(None, None), RunControl)


def test_a_run_that_found_nothing_says_so():
    text = "Done after 0 steps (time budget: 0.0001 s) · hint: the time budget was too short"
    assert found_nothing("", False, text).startswith(pipeline.NOTHING_FOUND)
    assert found_nothing("a prompt", False, text) == text
    assert found_nothing("", True, text) == text  # stopped: its own status says so


def test_gradio_start_up_advice_names_the_flag():
    out = io.StringIO()
    stream = _Reworded(out, GRADIO_NOTES)
    stream.write("* To create a public link, set `share=True` in `launch()`.\n")
    assert "--share" in out.getvalue() and "share=True" not in out.getvalue()
