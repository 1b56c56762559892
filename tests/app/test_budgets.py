"""Issue 23, black-box: one caller cannot take over a public CPU Space.

`python app.py --offline-demo` runs in a subprocess on loopback as a free CPU Space would
(PEZ_CPU_SPACE=1) with small budgets set the way an operator sets them (PEZ_MAX_JOBS_PER_CALLER,
PEZ_MAX_BODY_MB, PEZ_SESSIONS, PEZ_DISK_MB, GRADIO_TEMP_DIR); the tests call it only through
gradio_client and raw HTTP and measure what the server holds (its RSS from /proc, its files on
disk, its log) before and after. No assertion is on wall-clock time: limits only end a hung test.
"""

from __future__ import annotations

import base64
import io
import json
import time
import uuid
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from ..public_server import ROOT, call, start_server

TOYS = sorted(str(p) for p in (ROOT / "assets" / "examples").glob("toy_*.png"))
MAX_JOBS, BODY_MB, SESSIONS, DISK_MB, RUN_SECONDS = 2, 8, 20, 1, 4
SHARE_LINKS, SHARE_MB = 10, 64
FAST = dict(model="toy", prompt_len=3, steps=3, candidates=1, seed=0, refine_steps=0, patience=0)
RUNNING = ("PROCESSING", "ITERATING", "PROGRESS")  # gradio_client's statuses of a started job
LONG = {**FAST, "steps": 5000, "time_budget": 0}  # ends at the server's limit (RUN_SECONDS)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("budgets")
    env = {
        "PEZ_CPU_SPACE": "1",  # the decode budget: 40 megapixels a request
        "PEZ_MAX_JOBS_PER_CALLER": str(MAX_JOBS),
        "PEZ_MAX_BODY_MB": str(BODY_MB),
        "PEZ_SESSIONS": str(SESSIONS),
        "PEZ_DISK_MB": str(DISK_MB),
        "PEZ_MAX_RUN_SECONDS": str(RUN_SECONDS),
        "PEZ_MAX_STEPS": "5000",
        "GRADIO_TEMP_DIR": str(root / "gradio"),
        "PEZ_SHARE_LINKS": str(SHARE_LINKS),
        "PEZ_SHARE_MB": str(SHARE_MB),
    }
    srv = start_server(root, env)
    srv.temp = root / "gradio"
    yield srv
    srv.stop()


@pytest.fixture
def log_mark(server) -> int:
    return server.mark()


def wait_until(cond, what: str, limit: float = 60.0) -> None:
    """Poll (the limit only ends a hung test; nothing is asserted about time)."""
    end = time.monotonic() + limit
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


# ---------------------------------------------------------------------------------------------
# Raw HTTP, as the browser speaks it


def endpoint(server, api_name: str) -> tuple[int, list[dict]]:
    config = httpx.get(server.url + "config").json()
    comps = {c["id"]: c for c in config["components"]}
    dep = next(d for d in config["dependencies"] if d.get("api_name") == api_name)
    return dep["id"], [comps[i] for i in dep["inputs"]]


def payload(server, api_name: str, values: dict) -> tuple[int, list]:
    """The `data` list of a join: `values` by elem_id, label or type; the rest the page's defaults."""
    fn, comps = endpoint(server, api_name)
    data = []
    for c in comps:
        props = c.get("props", {})
        key = next((k for k in (props.get("elem_id"), props.get("label"), c.get("type")) if k in values), None)
        data.append(values[key] if key else props.get("value"))
    return fn, data


def join(server, api_name: str, values: dict, session: str | None = None) -> tuple[httpx.Response, str]:
    session = session or uuid.uuid4().hex[:10]
    fn, data = payload(server, api_name, values)
    body = {"data": data, "fn_index": fn, "session_hash": session, "event_data": None, "trigger_id": None}
    return httpx.post(server.url + "gradio_api/queue/join", json=body, timeout=30), session


def listen(server, session: str, limit: float = 60) -> dict:
    """The session's event stream until its job completes: the last message."""
    last: dict = {}
    with httpx.stream(
        "GET", server.url + "gradio_api/queue/data", params={"session_hash": session}, timeout=limit
    ) as r:
        for line in r.iter_lines():
            if line.startswith("data:"):
                last = json.loads(line[5:])
                if last.get("msg") in ("process_completed", "close_stream", "unexpected_error"):
                    break
    return last


def upload(server, path: str) -> dict:
    files = [("files", open(path, "rb"))]
    name = httpx.post(server.url + "gradio_api/upload", files=files, timeout=30).json()[0]
    return {"path": name, "meta": {"_type": "gradio.FileData"}}


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def png(side: int, seed: int = 0, mode: str = "RGB") -> bytes:
    """A PNG of noise (so it does not compress away)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    channels = 3 if mode == "RGB" else 1
    arr = rng.integers(0, 256, (side, side, channels) if channels > 1 else (side, side), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def files_under(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []
    return len(files), sum(p.stat().st_size for p in files)


# ---------------------------------------------------------------------------------------------
# 1. Per caller: a few jobs at once, in turn


def test_a_flood_of_joins_from_one_session_is_refused_beyond_the_cap(server, log_mark):
    """Before issue 23: one session's 34 joins took 32 queue places and everyone else got 503."""
    image = upload(server, TOYS[0])
    session = uuid.uuid4().hex[:10]
    replies = [join(server, "invert", {"image-input": image, "Steps": 5000}, session)[0] for _ in range(6)]
    try:
        codes = [r.status_code for r in replies]
        assert codes.count(200) == MAX_JOBS and codes.count(429) == 6 - MAX_JOBS, codes
        refusal = next(r for r in replies if r.status_code == 429).json()["detail"]
        assert "Too many" in refusal and f"at most {MAX_JOBS}" in refusal, refusal
        other, other_session = join(server, "invert", {"image-input": image, "Steps": 3})
        assert other.status_code == 200, f"another caller was refused too: {other.text}"
        assert listen(server, other_session).get("success"), "the other caller's job did not complete"
    finally:
        listen(server, session, limit=3 * RUN_SECONDS + 30)  # the flooder's jobs end at the run limit
    server.assert_quiet(log_mark)


def test_a_callers_second_job_waits_behind_another_callers_first(server):
    """Before issue 23: B's 5-step job waited behind all of A's (first come, first served)."""
    a, b = Client(server.url, verbose=False), Client(server.url, verbose=False)
    a1 = a.submit(handle_file(TOYS[0]), **LONG, api_name="/invert")
    wait_until(lambda: a1.status().code.name in RUNNING, "A's first job to start")
    a2 = a.submit(handle_file(TOYS[0]), **LONG, api_name="/invert")
    wait_until(lambda: a2.status().code.name in ("IN_QUEUE", *RUNNING), "A's second job to join")
    b1 = b.submit(handle_file(TOYS[1]), **FAST, api_name="/invert")
    finished = []
    wait_until(
        lambda: finished.extend(j for j in (a1, a2, b1) if j.done() and j not in finished) or len(finished) == 3,
        "all three jobs",
        limit=3 * RUN_SECONDS + 60,
    )
    assert finished.index(b1) < finished.index(a2), "B's job ran after A's second one"
    for j in (a1, a2, b1):
        assert j.result()[0], "a job found no prompt"


def test_a_waiting_caller_is_told_its_rank_without_a_made_up_eta(server):
    """Before issue 23: B waited the whole run limit while the queue said "rank 0, ETA 0"."""
    image = upload(server, TOYS[0])
    _, seed = join(server, "invert", {"image-input": image, "Steps": 3})  # gradio then has an average time
    assert listen(server, seed).get("success")
    _, a = join(server, "invert", {"image-input": image, "Steps": 5000})
    reply, b = join(server, "invert", {"image-input": image, "Steps": 3})
    assert reply.status_code == 200
    messages = []
    with httpx.stream("GET", server.url + "gradio_api/queue/data", params={"session_hash": b}, timeout=60) as r:
        for line in r.iter_lines():
            if line.startswith("data:"):
                messages.append(json.loads(line[5:]))
                if messages[-1].get("msg") == "process_completed":
                    break
    listen(server, a)
    estimates = [m for m in messages if m.get("msg") == "estimation"]
    assert estimates and all(m["rank"] is not None and m.get("rank_eta") is None for m in estimates), estimates
    starts = [m for m in messages if m.get("msg") == "process_starts"]
    assert starts and all(m.get("eta") is None for m in starts), starts
    assert messages[-1].get("success"), messages[-1]


# ---------------------------------------------------------------------------------------------
# 2. Per request: decoding counted before it happens; memory given back


def test_a_request_too_costly_to_decode_is_refused_before_any_decode(server, log_mark, tmp_path):
    """Before issue 23: 32 x the same 6320x6320 PNG took 46 s "loading" and RSS 1.2 -> 6.0 GB."""
    big = tmp_path / "big.png"
    Image.new("L", (6320, 6320), 128).save(big, optimize=True)  # 40 MP, a few KB
    image = upload(server, str(big))
    before = server.rss_mb()
    reply, session = join(server, "invert_multi", {"gallery": [{"image": image, "caption": None}] * 8})
    assert reply.status_code == 200, reply.text
    last = listen(server, session)
    after = server.rss_mb()
    message = (last.get("output") or {}).get("error") or ""
    assert not last.get("success") and "too much to decode" in message and "megapixels" in message, last
    assert after - before < 150, f"RSS grew {after - before:.0f} MiB refusing the request"
    server.assert_quiet(log_mark)


def test_memory_returns_after_a_finished_call(server, tmp_path):
    """Before issue 23: RSS stayed at its peak after big decodes (measured after, not only the peak)."""
    photo = tmp_path / "photo.png"
    Image.linear_gradient("L").resize((6000, 6000)).convert("RGB").save(photo)  # 36 MP: ~108 MB decoded
    client = Client(server.url, verbose=False)
    assert call(client, handle_file(str(photo)), **FAST, api_name="/invert").error is None  # warm: model loaded
    before = server.rss_mb()
    for _ in range(3):
        out = call(client, handle_file(str(photo)), **FAST, api_name="/invert")
        assert out.error is None, out
    after = server.rss_mb()
    assert after - before < 120, f"RSS grew {after - before:.0f} MiB over three finished calls"


# ---------------------------------------------------------------------------------------------
# 3. A body limit on every route


@pytest.mark.parametrize(
    "route", ["gradio_api/upload", "gradio_api/queue/join", "gradio_api/run/predict", "gradio_api/mcp/"]
)
def test_a_body_over_the_limit_is_refused_on_every_route(server, route, log_mark):
    """Before issue 23: the style preview took a 200 MB body (+1.4 GB), the upload route 1 GiB in 12 s."""
    size = (BODY_MB + 1) << 20
    before = server.rss_mb()
    r = httpx.post(server.url + route, content=b"x" * size, headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code == 413 and "too large" in r.text, (r.status_code, r.text[:200])

    def chunks():  # no Content-Length: counted as it streams
        if route.endswith("upload"):  # a well-formed start, so the route reads on
            yield b'--pez\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n\r\n'
        for _ in range(BODY_MB + 1):
            yield b"x" * (1 << 20)

    kind = "multipart/form-data; boundary=pez" if route.endswith("upload") else "application/json"
    r = httpx.post(server.url + route, content=chunks(), headers={"content-type": kind}, timeout=60)
    assert r.status_code == 413, (r.status_code, r.text[:200])
    assert server.rss_mb() - before < 100
    server.assert_quiet(log_mark)


# ---------------------------------------------------------------------------------------------
# 4. Sessions: what gradio keeps per session is capped


def test_fresh_session_ids_do_not_grow_the_server_without_bound(server):
    """Before issue 23: 2,000 cheap calls with fresh session ids grew RSS by 640 MB (~329 KB each)."""
    config = httpx.get(server.url + "config").json()
    styled = {c["id"] for c in config["components"] if c["props"].get("elem_id") == "style-styled"}
    fn = next(d["id"] for d in config["dependencies"] if styled & set(d["outputs"]))

    def calls(n):
        with httpx.Client(timeout=30) as http:
            for _ in range(n):
                body = {
                    "fn_index": fn,
                    "data": ["red", "a circle", "{subject}, {style}"],
                    "session_hash": uuid.uuid4().hex,
                }
                assert http.post(server.url + "gradio_api/run/predict", json=body).status_code == 200

    calls(SESSIONS * 2)  # the capacity is full from here on
    before = server.rss_mb()
    calls(600)  # ~200 MB kept without a cap
    grown = server.rss_mb() - before
    assert grown < 60, f"RSS grew {grown:.0f} MiB over 600 fresh sessions (cap {SESSIONS})"


# ---------------------------------------------------------------------------------------------
# 5. Disk: only images, within a budget


def test_a_data_url_that_is_not_an_image_is_refused_and_never_written(server, log_mark):
    """Before issue 23: HTML and SVG data URLs were written first and served from the app's origin."""
    before = files_under(server.temp)
    for mime, body in (("text/html", b"<script>alert(1)</script>"), ("image/svg+xml", b"<svg onload=alert(1)/>")):
        reply, session = join(server, "invert", {"image-input": data_url(body, mime), "Steps": 3})
        assert reply.status_code == 200
        last = listen(server, session)
        assert "not an image" in ((last.get("output") or {}).get("error") or ""), last
    assert files_under(server.temp)[0] == before[0], "a refused data: URL left a file"
    server.assert_quiet(log_mark)


def test_data_urls_stay_within_the_disk_budget(server):
    """Before issue 23: 32 x 1 MB data URLs a request, written for good (161 MB in 5 s from one client)."""
    images = [data_url(png(200, seed=i)) for i in range(12)]  # ~120 KB each: 1.4 MB together
    for k in range(3):
        reply, session = join(server, "invert_multi", {"gallery": images, "Steps": 1})
        assert reply.status_code == 200
        listen(server, session)
    pez_folders = [p for p in server.temp.glob("**/pez-*") if p.is_dir()]
    assert pez_folders, "the data: URLs were not written into the server's disk budget"
    count, total = files_under(pez_folders[0])
    assert 0 < total <= DISK_MB << 20, f"{count} files, {total:,} bytes (budget {DISK_MB} MB)"


def ui_event(server, output: str, js: bool = False) -> tuple[int, list[dict]]:
    """A browser-only event by one of its outputs' elem_id or label: (fn index, its inputs)."""
    config = httpx.get(server.url + "config").json()
    comps = {c["id"]: c for c in config["components"]}

    def names(i):
        props = comps[i].get("props", {})
        return {props.get("elem_id"), props.get("label")}

    for d in config["dependencies"]:
        if any(output in names(i) for i in d["outputs"]) and bool(d.get("js")) == js and d.get("backend_fn", True):
            return d["id"], [comps[i] for i in d["inputs"]]
    raise AssertionError(f"no event writes {output!r}")


def predict(server, fn: int, data: list, session: str | None = None) -> httpx.Response:
    body = {"fn_index": fn, "data": data, "session_hash": session or uuid.uuid4().hex[:10]}
    return httpx.post(server.url + "gradio_api/run/predict", json=body, timeout=60)


def record(n: int, prompt: str = "a red circle") -> dict:
    return {"id": f"r{n}", "prompt": prompt, "score": 0.3, "mode": "image", "model": "toy", "settings": {}}


def test_history_export_writes_one_file_in_the_disk_budget(server, log_mark):
    """Before issue 23: each export wrote its own copy in a temp folder of its own, and gradio a second."""
    fn, _ = ui_event(server, "Export")
    before = files_under(server.temp)
    served = []
    for k in range(8):
        r = predict(server, fn, [[record(i, f"prompt {k}") for i in range(20)]])
        assert r.status_code == 200, r.text[:300]
        out = r.json()["data"][0]
        served.append(Path(out["value"]["path"] if "value" in out else out["path"]))
    after = files_under(server.temp)
    assert after[0] - before[0] <= 8, f"{after[0] - before[0]} files for 8 exports"
    folders = {p.parent for p in served}
    assert len(folders) == 1 and next(iter(folders)).name.startswith("pez-"), folders
    count, total = files_under(next(iter(folders)))
    assert total <= DISK_MB << 20, f"{count} files, {total:,} bytes (budget {DISK_MB} MB)"
    # a crafted record of any size is refused by name, and nothing is written for it
    before = files_under(server.temp)
    r = predict(server, fn, [[record(0, "x" * (3 << 20))]])
    assert "history: expected at most" in r.text, r.text[:300]
    assert files_under(server.temp)[0] == before[0]
    server.assert_quiet(log_mark)


def test_the_style_preview_refuses_long_texts_before_any_work(server, log_mark):
    """Before issue 23: the preview (not queued) took any style and subjects: a 1 MB style and a 1 MB
    subject came back as a 2 MB preview (the body limit was the only bound)."""
    fn, comps = ui_event(server, "style-styled")
    assert len(comps) == 3  # prompt (the style), subjects, template
    big = "x" * (1 << 20)
    rss = server.rss_mb()
    for data, field in (
        ([big, "a circle", "{subject} in the style of {style}"], "style"),
        (["red", big, "{subject} in the style of {style}"], "subjects"),
        (["red", "a circle", "{style}" * 400], "template"),
        (["red", "a\n" * 500, "{subject} in the style of {style}"], "subjects"),
    ):
        r = predict(server, fn, data)
        assert r.status_code == 200, r.text[:300]
        shown = r.json()["data"][0]
        shown = shown.get("value", shown) if isinstance(shown, dict) else shown
        assert shown.startswith("⚠️") and f"{field}:" in shown and len(shown) < 400, shown[:300]
    ok = predict(server, fn, ["red", "a circle\na heart", "{subject} in the style of {style}"]).json()["data"][0]
    assert "a heart in the style of red" in str(ok)
    assert server.rss_mb() - rss < 100, f"RSS {rss:.0f} -> {server.rss_mb():.0f} MiB"
    server.assert_quiet(log_mark)


def share_event(server) -> tuple[int, list[dict]]:
    """The Style tab's Share: its first step sends the tab's inputs back to themselves (the server's
    copy of the session, which gradio's deep link saves, then holds them)."""
    return ui_event(server, "style-share")


def make_link(server, session: str) -> httpx.Response:
    return httpx.get(server.url + "gradio_api/deep_link", params={"session_hash": session}, timeout=60)


def test_share_links_stay_within_their_budget_on_disk(server, log_mark):
    """Before issue 23: each link wrote the session's whole state for good (50 links: 108 MB)."""
    fn, comps = share_event(server)
    links = server.temp / "deep_links"
    before = files_under(links)
    ids = []
    for i in range(50):
        session = uuid.uuid4().hex[:10]
        data = [None if c.get("type") == "gallery" else f"subject {i}" for c in comps]
        assert predict(server, fn, data, session).status_code == 200
        r = make_link(server, session)
        assert r.status_code == 200 and r.json(), r.text[:200]
        ids.append(r.json())
    count, total = files_under(links)
    print(f"50 share links: {count} on disk, {total:,} bytes (before: {before[0]} files, {before[1]:,} bytes)")
    assert count <= SHARE_LINKS and total <= SHARE_MB << 20, (count, total)
    state = httpx.get(server.url + "config", params={"deep_link": ids[-1]}).json().get("deep_link_state")
    assert state == "valid", "the newest link does not open"
    server.assert_quiet(log_mark)


def test_one_caller_gets_a_few_share_links_then_a_named_refusal(server, log_mark):
    """Before issue 23: one session could make any number of links (each a file of its state)."""
    fn, comps = share_event(server)
    session, codes = uuid.uuid4().hex[:10], []
    for i in range(24):  # each a different page state: a different link
        data = [None if c.get("type") == "gallery" else f"a subject {i}" for c in comps]
        predict(server, fn, data, session)
        codes.append(make_link(server, session))
    refused = [r for r in codes if r.status_code != 200]
    assert refused and all(r.status_code == 429 for r in refused), [r.status_code for r in codes]
    assert "share links" in refused[0].json()["detail"], refused[0].text
    per_caller = min(20, SHARE_LINKS // 4)  # layout.SHARE_LINKS_PER_CALLER, a quarter of all at most
    assert sum(r.status_code == 200 for r in codes) == per_caller, [r.status_code for r in codes]
    server.assert_quiet(log_mark)


def test_browser_only_events_with_hostile_values_write_no_tracebacks(server, log_mark):
    """Before: scripts posting values the page never sends to browser-only events (a list of dicts,
    a server path, a format string) got gradio's generic error and printed 90 tracebacks
    (scripts/probe_public.py); now a message and one log line each."""
    config = httpx.get(server.url + "config").json()
    deps = [d for d in config["dependencies"] if d.get("api_visibility", "public") != "public"][:40]
    assert deps
    for d in deps:
        r = predict(server, d["id"], [[{"x": "y" * 100}] * 50] * len(d["inputs"]))
        assert r.status_code in (200, 500), r.text[:200]
        if r.status_code == 500:
            assert r.json().get("error"), r.text[:200]
    server.assert_quiet(log_mark)


# ---------------------------------------------------------------------------------------------
# 8. Smaller findings


def test_a_server_path_as_an_image_gets_a_message_not_an_empty_error(server, log_mark):
    """Before issue 23: `{"error": null}` and a traceback in the log."""
    reply, session = join(
        server, "invert", {"image-input": {"path": "/etc/hosts", "meta": {"_type": "gradio.FileData"}}}
    )
    assert reply.status_code == 200
    error = (listen(server, session).get("output") or {}).get("error")
    assert error and "uploaded" in error and "/etc/hosts" not in error, error
    server.assert_quiet(log_mark)


def test_streams_for_unknown_sessions_write_no_tracebacks(server, log_mark):
    """Before issue 23: 20 such requests wrote 40 tracebacks (115 KB) to the log."""
    for i in range(20):
        r = httpx.get(server.url + "gradio_api/queue/data", params={"session_hash": f"nobody-{i}"}, timeout=10)
        assert r.status_code == 404, r.status_code
    assert len(server.log_since(log_mark)) < 20 * 300, "the log grew by more than a line a request"
    server.assert_quiet(log_mark)


def test_a_budget_too_short_for_one_step_says_it_found_nothing(server):
    """Before issue 23: `time_budget 0.0001` returned an empty prompt under a "Done" status."""
    out = call(
        Client(server.url, verbose=False),
        handle_file(TOYS[0]),
        **{**FAST, "steps": 3000, "time_budget": 0.0001},
        api_name="/invert",
    )
    prompt, status = out.value[0], out.value[1]
    if prompt:  # the machine was fast enough for a step: nothing to say
        pytest.skip("a step fit in the budget")
    assert status.startswith("Found no prompt") and "too short" in status, status


def test_gradio_start_up_notes_name_pez_flags(server):
    """Issue 24 item 13: gradio's "set share=True in launch()" and its gr.State-in-MCP warning."""
    log = server.log_since(0)
    assert "share=True" not in log and "--share" in log, log[-1500:]
    assert "gr.State input" not in log
