"""pez_app.guard's building blocks without a server: caller keys, the per-caller job budget, the
fair order, the request-body limit on a plain Starlette app, the disk budget."""

import io
import os
import threading
import time
from types import SimpleNamespace

import pytest
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

import pez
from pez_app.guard import (
    BudgetExceeded,
    CallerBudget,
    DiskBudget,
    body_limit_kwargs,
    caller_keys,
    client_address,
    fair_order,
    install_body_limit,
)


def req(host="10.0.0.1", session="s1", **headers):
    return SimpleNamespace(client=SimpleNamespace(host=host), session_hash=session, headers=headers)


# --- who is calling ------------------------------------------------------------------------------


def test_caller_keys_and_proxies():
    assert caller_keys(req()) == ("session:s1", "addr:10.0.0.1")
    forged = req(host="10.9.9.9", **{"X-Forwarded-For": "6.6.6.6, 1.2.3.4"})
    assert client_address(forged) == "10.9.9.9"  # no proxy trusted: the peer, headers ignored
    assert client_address(forged, trusted_proxies=1) == "1.2.3.4"  # what our one proxy appended
    assert client_address(forged, trusted_proxies=2) == "6.6.6.6"
    assert client_address(req(host="10.9.9.9", **{"x-real-ip": "5.5.5.5"}), trusted_proxies=1) == "5.5.5.5"
    assert caller_keys(SimpleNamespace(session_hash=None, client=None, headers={})) == ()


# --- jobs per caller -----------------------------------------------------------------------------


def test_a_caller_gets_at_most_n_jobs_and_others_are_unaffected():
    budget = CallerBudget(2)
    a1, a2 = budget.admit(["session:a", "addr:1"]), budget.admit(["session:a", "addr:1"])
    with pytest.raises(BudgetExceeded, match=r"at most 2 per visitor"):
        budget.admit(["session:a", "addr:1"])
    with pytest.raises(BudgetExceeded):  # a fresh session from the same address
        budget.admit(["session:new", "addr:1"])
    with budget.admit(["session:b", "addr:2"]):
        assert budget.held("addr:2") == 1
    assert budget.held("addr:2") == 0
    a1.release()
    a1.release()  # once only
    assert budget.held("addr:1") == 1
    a3 = budget.admit(["session:a", "addr:1"])
    with pytest.raises(BudgetExceeded, match="you have 2 queued or running"):
        budget.admit(["session:a"], also={"session:a": 0})
    a2.release(), a3.release()
    assert budget.held("session:a") == 0


def test_released_on_error():
    budget = CallerBudget(1)
    with pytest.raises(RuntimeError), budget.admit(["k"]):
        raise RuntimeError("the job failed")
    budget.admit(["k"]).release()  # the place came back


def test_thread_safe():
    budget, admitted, barrier = CallerBudget(3), [], threading.Barrier(16)

    def worker():
        barrier.wait()
        try:
            admitted.append(budget.admit(["same"]))
        except BudgetExceeded:
            pass

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(admitted) == 3 and budget.held("same") == 3


def test_fair_order_is_round_robin():
    events = ["a1", "a2", "a3", "a4", "b1", "c1", "b2"]
    assert fair_order(events, key=lambda e: e[0]) == ["a1", "b1", "c1", "a2", "b2", "a3", "a4"]
    # a caller already running one job waits its turn behind those running none
    assert fair_order(["a2", "b1"], key=lambda e: e[0], running={"a": 1}) == ["b1", "a2"]


# --- request bodies ------------------------------------------------------------------------------


def _app(limit: int) -> Starlette:
    async def echo(request: Request):
        return JSONResponse({"n": len(await request.body())})

    async def stream(request: Request):
        n = 0
        async for chunk in request.stream():
            n += len(chunk)
        return JSONResponse({"n": n})

    app = Starlette(routes=[Route("/echo", echo, methods=["POST"]), Route("/stream", stream, methods=["POST"])])
    return install_body_limit(app, limit)


def test_body_limit_by_length_and_by_counted_chunks():
    client = TestClient(_app(1000))
    assert client.post("/echo", content=b"x" * 1000).json() == {"n": 1000}
    r = client.post("/echo", content=b"x" * 1001)
    assert r.status_code == 413 and "at most 1,000" in r.json()["detail"]

    def chunks(n, size=300):  # no Content-Length: chunked transfer
        for _ in range(n):
            yield b"y" * size

    assert client.post("/stream", content=chunks(3)).json() == {"n": 900}
    for path in ("/stream", "/echo"):
        r = client.post(path, content=chunks(4))
        assert r.status_code == 413, path
    assert client.get("/echo").status_code == 405  # other requests pass through untouched


def test_body_limit_kwargs_adds_the_middleware():
    kwargs = body_limit_kwargs(10, {"docs_url": None})
    assert kwargs["docs_url"] is None and kwargs["middleware"][0].kwargs == {"max_bytes": 10}


# --- bytes on disk -------------------------------------------------------------------------------


def _png(colour=(200, 10, 10), size=(32, 32)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


def test_disk_budget_refuses_non_images_before_writing(tmp_path):
    disk = DiskBudget(tmp_path / "d", max_bytes=10_000, max_files=3, max_age=60)
    for payload in (b"<html><script>alert(1)</script></html>", b'<svg xmlns="http://www.w3.org/2000/svg"/>', b""):
        with pytest.raises(pez.InvalidImageError):
            disk.write_image(payload, "upload")
    assert not (tmp_path / "d").exists() or disk.files() == []
    path = disk.write_image(_png(), "upload.html")
    assert path.suffix == ".png" and path.read_bytes() == _png()  # the real format's suffix


def test_disk_budget_caps_count_bytes_and_age(tmp_path):
    png = _png()
    disk = DiskBudget(tmp_path, max_bytes=3 * len(png) + 10, max_files=5, max_age=60)
    paths = [disk.write_image(png) for _ in range(4)]
    assert len(disk.files()) == 3 and not paths[0].exists()  # bytes cap: the oldest went
    disk.max_bytes, disk.max_files = 10**6, 2
    disk.write_bytes(b'{"a": 1}', ".json")
    assert len(disk.files()) == 2
    with pytest.raises(pez.ConfigError, match="at most"):
        DiskBudget(tmp_path, max_bytes=100, max_files=5, max_age=60).write_bytes(b"z" * 101, ".json")
    old = time.time() - 120
    for p in disk.files():
        os.utime(p, (old, old))
    assert disk.cleanup() == 2 and disk.files() == []
    with pytest.raises(ValueError):
        disk.write_bytes(b"x", "/../../evil.html")


def test_mcp_jobs_count_by_address_not_their_shared_session():
    mcp = req(host="127.0.0.1", session="shared-mcp", **{"x-gradio-user": "mcp", "x-forwarded-for": "7.7.7.7"})
    assert caller_keys(mcp) == ("addr:127.0.0.1",)
    assert caller_keys(mcp, trusted_proxies=1) == ("addr:7.7.7.7",)
