"""pez_app.guard against a real gradio 6.31 server on loopback: the body limit on gradio's own
routes (upload, run, queue join) and the per-caller queue cap with its fair order, sent as raw HTTP
the way an outsider would. Also checks that the gradio internals guard.py reads still exist."""

import threading
import time
import uuid
from pathlib import Path

import gradio as gr
import httpx
import pytest

from pez_app.guard import SESSION_NOTES, body_limit_kwargs, bound_unqueued, drop_idle_sessions, install_queue_cap

LIMIT = 1 << 20  # 1 MiB


def rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    pytest.skip("no /proc/self/status")


def wait_until(cond, what: str, limit: float = 30.0) -> None:
    """Poll (not a timing assertion: the limit only ends a hung test)."""
    end = time.monotonic() + limit
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


@pytest.fixture(scope="module")
def server():
    gate = threading.Event()

    def slow(x):
        gate.wait(30)
        return x

    with gr.Blocks() as demo:
        box = gr.Textbox()
        out = gr.Textbox()
        box.submit(slow, box, out, api_name="slow", concurrency_limit=1)
        gr.Button().click(lambda x: x, box, out, api_name="echo", queue=False)
    demo.queue(max_size=64)
    budget = install_queue_cap(demo, max_jobs=2, trusted_proxies=1)
    _, url, _ = demo.launch(
        prevent_thread_lock=True, server_name="127.0.0.1", app_kwargs=body_limit_kwargs(LIMIT), quiet=True
    )
    yield demo, url.rstrip("/") + "/gradio_api", gate, budget
    gate.set()
    demo.close()


def test_gradio_internals_read_by_guard_exist(server):
    demo = server[0]
    q = demo._queue
    assert hasattr(q, "event_queue_per_concurrency_id") and hasattr(q, "active_jobs")
    assert callable(q.broadcast_estimations) and callable(q.send_message)
    from gradio.server_messages import EstimationMessage, ProcessStartsMessage

    assert "rank_eta" in EstimationMessage.model_fields and "eta" in ProcessStartsMessage.model_fields
    assert hasattr(q, "pending_messages_per_session")  # QueueStreamGuard
    holder = demo.state_holder
    assert hasattr(holder, "session_data") and hasattr(holder, "time_last_used") and hasattr(holder, "lock")
    assert holder.capacity == 10_000 and "state_session_capacity" in SESSION_NOTES


MIB = b"\0" * (1 << 20)


def body(head: bytes = b"", mib: int = 64):
    """A request body streamed from one reused 1 MiB block: the client never holds it whole."""
    yield head
    for _ in range(mib):
        yield MIB


PART = b'--x\r\nContent-Disposition: form-data; name="files"; filename="x.png"\r\nContent-Type: image/png\r\n\r\n'
MULTIPART = {"content-type": "multipart/form-data; boundary=x"}
JSON = {"content-type": "application/json"}


def test_oversized_bodies_get_413_on_every_route(server):
    api = server[1]
    with httpx.Client(timeout=30) as http:
        r = http.post(f"{api}/upload", files={"files": ("x.png", MIB * 2, "image/png")})
        assert r.status_code == 413, r.text[:200]
        assert "at most 1,048,576" in r.json()["detail"]
        for route in ("/run/echo", "/queue/join", "/call/echo", "/upload"):  # by Content-Length
            assert http.post(api + route, content=MIB * 2, headers=JSON).status_code == 413, route
        # chunked (no Content-Length): refused once 1 MiB has been read
        assert http.post(f"{api}/upload", content=body(PART), headers=MULTIPART).status_code == 413
        assert http.post(f"{api}/run/echo", content=body(b'{"data": ["'), headers=JSON).status_code == 413
        ok = http.post(f"{api}/run/echo", json={"data": ["hi"]})
        assert ok.status_code == 200 and ok.json()["data"] == ["hi"]


def test_refused_bodies_leave_no_memory_behind(server):
    api = server[1]
    with httpx.Client(timeout=30) as http:
        http.post(f"{api}/run/echo", json={"data": ["warm up"]})
        before = rss()
        for _ in range(4):  # 4 x 2 x 64 MiB sent
            assert http.post(f"{api}/upload", content=body(PART), headers=MULTIPART).status_code == 413
            assert http.post(f"{api}/run/echo", content=body(b'{"data": ["'), headers=JSON).status_code == 413
    assert rss() - before < 32 << 20  # generous; one request's body is 64 MiB


def _join(http, api, session, address):
    return http.post(
        f"{api}/queue/join",
        json={"data": [session], "fn_index": 0, "session_hash": session, "trigger_id": None},
        headers={"x-forwarded-for": address},
    )


def test_queue_cap_per_caller_and_fair_order(server):
    demo, api, gate, budget = server
    gate.clear()
    q = demo._queue
    with httpx.Client(timeout=30) as http:
        assert _join(http, api, "a1", "1.1.1.1").status_code == 200
        wait_until(lambda: q.get_active_worker_count() == 1, "the first job to start")
        assert _join(http, api, "a2", "1.1.1.1").status_code == 200
        refused = _join(http, api, "a3", "1.1.1.1")  # a third job of the same address
        assert refused.status_code == 429 and "at most 2 per visitor" in refused.json()["detail"]
        assert _join(http, api, "b1", "2.2.2.2").status_code == 200  # another caller is not blocked
        queued = [e.session_hash for eq in q.event_queue_per_concurrency_id.values() for e in eq.queue]
        assert queued == ["b1", "a2"]  # B's first job ahead of A's second (A has one running)
        gate.set()
        wait_until(lambda: len(q) == 0 and q.get_active_worker_count() == 0, "the queue to drain")
        assert _join(http, api, "a4", "1.1.1.1").status_code == 200  # places given back by gradio itself
        wait_until(lambda: len(q) == 0 and q.get_active_worker_count() == 0, "the last job")


def test_drop_idle_sessions(server):
    demo = server[0]
    holder = demo.state_holder
    holder["idle-one"], holder["fresh-one"]  # noqa: B018 - creating two sessions' state
    old = time.time() + 3600  # "now" an hour later: both idle
    assert drop_idle_sessions(demo, idle_seconds=60, now=old) >= 2
    assert "idle-one" not in holder and "fresh-one" not in holder
    holder["fresh-two"]  # noqa: B018
    assert drop_idle_sessions(demo, idle_seconds=60) == 0 and "fresh-two" in holder


def test_unqueued_handlers_are_bounded_per_caller():
    """bound_unqueued: a caller's surplus un-queued calls (a UI event anyone can post to) are
    refused with the limit named, instead of taking more of the server's threads; another
    caller's call still runs; places are given back when the calls end."""
    release, entered = threading.Event(), threading.Semaphore(0)

    def hold(x):
        entered.release()
        release.wait(30)
        return x

    with gr.Blocks() as demo:
        box, out = gr.Textbox(), gr.Textbox()
        box.submit(hold, box, out, api_name="hold", queue=False)
    demo.queue()
    bound_unqueued(demo, max_jobs=2, trusted_proxies=1)  # callers told apart by X-Forwarded-For
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    api = url.rstrip("/") + "/gradio_api"

    def post(session):
        body = {"fn_index": 0, "data": [session], "session_hash": uuid.uuid4().hex}  # fresh ids: the address counts
        return httpx.post(f"{api}/run/predict", json=body, headers={"x-forwarded-for": session}, timeout=40)

    try:
        results: list = []
        threads = [threading.Thread(target=lambda: results.append(post("1.1.1.1"))) for _ in range(2)]
        for t in threads:
            t.start()
        for _ in range(2):
            assert entered.acquire(timeout=30), "a held call did not start"
        refused = post("1.1.1.1")
        assert refused.status_code != 200 or "error" in refused.json()
        assert "Too many requests at once" in refused.text and "at most 2" in refused.text, refused.text
        other = threading.Thread(target=lambda: results.append(post("2.2.2.2")))
        other.start()
        assert entered.acquire(timeout=30), "another caller's call was refused too"
        release.set()
        for t in (*threads, other):
            t.join(40)
        assert [r.status_code for r in results] == [200, 200, 200]
        release.clear()
        threading.Timer(0.5, release.set).start()
        assert post("1.1.1.1").json()["data"] == ["1.1.1.1"]  # its places were given back
    finally:
        release.set()
        demo.close()
