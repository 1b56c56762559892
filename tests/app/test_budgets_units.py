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
from pez_app.guard import (
    BodyLimit,
    BudgetExceeded,
    DeepLinkGuard,
    DeepLinks,
    DiskBudget,
    McpPlainText,
    QueueStreamGuard,
    plain_outputs,
)
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
    assert BodyLimit in kinds and QueueStreamGuard in kinds and DeepLinkGuard in kinds and McpPlainText in kinds
    assert isinstance(demo.pez.links, DeepLinks) and demo.pez.links.folder.name == "deep_links"
    assert demo.pez.links.max_links == demo.pez.settings.share_links
    assert getattr(demo.process_api, "_pez_quiet", False)
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


def _link(folder, name: str, size: int, mtime: float) -> None:
    import os

    (folder / name).mkdir(parents=True)
    (folder / name / "state.json").write_bytes(b"x" * size)
    os.utime(folder / name / "state.json", (mtime, mtime))


def test_share_links_expire_and_stay_within_their_caps(tmp_path):
    links = DeepLinks(tmp_path / "deep_links", max_bytes=1000, max_links=3, max_age=100, max_link_bytes=600)
    for i, age in enumerate([500, 50, 40, 30, 20]):  # the first expired; five is two over the count
        _link(links.folder, f"l{i}", 100, 1_000_000 - age)
    assert links.cleanup(now=1_000_000) == 2
    assert [name for _, _, name in links.links()] == ["l2", "l3", "l4"]
    assert links.cleanup(now=1_000_000 + 1000) == 3 and links.links() == []  # all expired


def test_a_share_link_over_its_size_is_removed_and_refused(tmp_path):
    links = DeepLinks(tmp_path / "deep_links", max_bytes=10_000, max_links=10, max_age=100, max_link_bytes=600)
    _link(links.folder, "big", 700, 1_000_000)
    refusal = links.made(["session:a"], "big")
    assert refusal and "too large to share" in refusal and "700" in refusal
    assert not (links.folder / "big").exists()


def test_share_links_per_caller_count_only_live_links(tmp_path):
    import time

    links = DeepLinks(tmp_path / "deep_links", max_bytes=10_000, max_links=10, max_age=3600, per_caller=2)
    for name in ("a", "b"):
        _link(links.folder, name, 10, time.time())
        links.admit(["session:s"])
        assert links.made(["session:s"], name) is None
    with pytest.raises(BudgetExceeded, match="at most 2"):
        links.admit(["session:s"])
    links.admit(["session:other"])  # another caller is not counted against
    import shutil

    shutil.rmtree(links.folder / "a")  # removed (expired or pushed out): no longer counts
    links.admit(["session:s"])


def test_mcp_results_are_plain_texts_files_kept():
    cands = {"headers": ["#", "prompt", "score"], "data": [[1, "a b", 0.3]]}
    assert plain_outputs([("a red circle", "Done · best score 0.31", None, cands)]) == [
        "a red circle",
        "Done · best score 0.31",
    ]
    image = {"path": "/tmp/x.png", "url": "http://h/x.png", "meta": {"_type": "gradio.FileData"}}
    assert plain_outputs([[{"image": image, "caption": "seed 0"}], "Generated 1"]) == [image, "seed 0", "Generated 1"]
    assert plain_outputs(["", 0.31]) == [0.31]
