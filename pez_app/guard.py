"""Budgets one caller cannot exceed: jobs per caller, bytes per request body, bytes on disk.

Small building blocks, each testable without a browser, for the one request pipeline to call:

- `caller_keys(request)`: who is calling (the session, and the client's address where known).
- `CallerBudget`: at most N jobs at once per caller key, thread-safe, released on any exit
  (a `Ticket` is a context manager); for handlers that run outside gradio's queue.
- `install_queue_cap(demo, max_jobs)`: the same cap on gradio's queue, checked when a job joins
  (before it takes a queue place), counted from gradio's own list of queued and running events (so
  a job that finishes, fails, is cancelled or whose caller goes away stops counting without any
  bookkeeping of ours), and a fair order: each caller's k-th job waits behind every other caller's
  earlier ones (round robin), instead of gradio's first-come order.
- `BodyLimit` / `install_body_limit` / `body_limit_kwargs`: an ASGI middleware refusing request
  bodies over a size with 413, by Content-Length and by counting streamed (chunked) bytes, on every
  route (queued or not, the upload route, MCP).
- `DiskBudget`: caller bytes written only under one folder capped in bytes, files and age; images
  verified before anything is written; `cleanup()` for a timer.
- `DeepLinks` / `DeepLinkGuard`: gradio's share links on disk, bounded in bytes, count, age and
  links per caller (its route writes one file per link and nothing removes them).
- `drop_idle_sessions(demo, idle_seconds)`: per-session memory gradio keeps (see SESSION_NOTES).

What gradio 6.31 does not offer, and the mitigation used here (details in each docstring):
- No per-caller limit or ordering hook in its queue (gradio/queueing.py: one FIFO list per
  concurrency id, `max_size` for all callers together). install_queue_cap wraps the queue's
  `push` on the instance; it reads private attributes (`demo._queue`, `event_queue_per_concurrency_id`,
  `active_jobs`), which tests/app/test_guard_gradio.py checks against the installed gradio.
- No request-body limit (only `max_file_size` on its upload route, checked while the file is
  streamed to disk): BodyLimit through launch's `app_kwargs={"middleware": [...]}`.
- `gr.Request.client.host` is the socket's peer: behind a proxy (a Space), the proxy's address,
  unless uvicorn's proxy-header rewrite trusts it (gradio leaves uvicorn's default:
  FORWARDED_ALLOW_IPS, 127.0.0.1 only). `caller_keys(trusted_proxies=n)` reads the client from
  X-Forwarded-For, n hops from its right end (entries left of that are the caller's to forge).
"""

from __future__ import annotations

import io
import os
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pez.errors import quote_value

# ---------------------------------------------------------------------------------------------
# Who is calling


def client_address(request: Any, trusted_proxies: int = 0) -> str | None:
    """The caller's address: with `trusted_proxies` = n > 0 proxies in front of the server, the n-th
    entry of X-Forwarded-For from its right (the one the outermost trusted proxy appended; the
    caller may forge anything left of it), else X-Real-IP when n > 0 and no X-Forwarded-For, else
    the socket's peer (`request.client.host`). None when none is known (an in-process call)."""
    headers = _headers(request)
    if trusted_proxies > 0:
        hops = [h.strip() for h in headers.get("x-forwarded-for", "").split(",") if h.strip()]
        if hops:
            return hops[-min(trusted_proxies, len(hops))]
        if headers.get("x-real-ip", "").strip():
            return headers["x-real-ip"].strip()
    client = getattr(request, "client", None)
    host = getattr(client, "host", None) if client is not None else None
    return str(host) if host else None


def caller_keys(request: Any, trusted_proxies: int = 0, by_address: bool = True) -> tuple[str, ...]:
    """The keys a caller's jobs count against: "session:<hash>" and "addr:<address>", as known
    (the address only `by_address`: behind a proxy no one trusts, every caller has the proxy's).
    `request` is a gr.Request, a starlette Request or anything with `session_hash`, `headers`
    and `client.host`."""
    keys = []
    session = getattr(request, "session_hash", None)
    if session and not _from_mcp(request):
        keys.append(f"session:{session}")
    address = client_address(request, trusted_proxies) if by_address else None
    if address:
        keys.append(f"addr:{address}")
    return tuple(keys)


def _from_mcp(request: Any) -> bool:
    """A job gradio's MCP server queued for an MCP caller: it joins through one gradio_client
    shared by every MCP caller (one session id for all; header x-gradio-user: mcp) and forwards the
    caller's own headers, so only the address (X-Forwarded-For behind a trusted proxy) tells MCP
    callers apart. Forging the header only drops the session key; the address still counts."""
    return _headers(request).get("x-gradio-user") == "mcp"


def _headers(request: Any) -> Mapping[str, str]:
    try:
        raw = getattr(request, "headers", None) or {}
    except AttributeError:  # a gr.Request without a request behind it
        raw = {}
    return {str(k).lower(): str(v) for k, v in dict(raw).items()}


# ---------------------------------------------------------------------------------------------
# Jobs per caller


class BudgetExceeded(Exception):
    """A caller is over a budget; the message is ready for gr.Error (names the limit)."""


class Ticket:
    """One admitted job; release() (or leaving the `with`) gives its place back, once."""

    def __init__(self, budget: CallerBudget, keys: tuple[str, ...]):
        self._budget, self.keys, self._released = budget, keys, False

    def release(self) -> None:
        self._budget._release(self)

    def __enter__(self) -> Ticket:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class CallerBudget:
    """At most `max_jobs` jobs at once per caller key (each of a caller's keys counts on its
    own: a fresh session id from the same address still counts against the address). Thread-safe.

        with budget.admit(caller_keys(request)):   # raises BudgetExceeded when over
            ...the work...
    """

    def __init__(self, max_jobs: int, what: str = "jobs"):
        if max_jobs < 1:
            raise ValueError(f"max_jobs: expected at least 1, received {max_jobs}")
        self.max_jobs, self.what = max_jobs, what
        self._held: Counter[str] = Counter()
        self._lock = threading.Lock()

    def admit(self, keys: Iterable[str], also: Mapping[str, int] | None = None) -> Ticket:
        """A ticket for one more job of the caller with `keys`, or BudgetExceeded. `also`: jobs per
        key counted elsewhere (e.g. gradio's queue) added to this budget's own."""
        keys = tuple(dict.fromkeys(keys))
        with self._lock:
            for key in keys:
                held = self._held[key] + (also or {}).get(key, 0)
                if held >= self.max_jobs:
                    raise BudgetExceeded(self.refusal(held))
            self._held.update(keys)
        return Ticket(self, keys)

    def refusal(self, held: int) -> str:
        return (
            f"Too many {self.what} at once: you have {held} queued or running (at most {self.max_jobs} "
            f"per visitor on this server). Wait for one to finish, or stop one, then try again."
        )

    def held(self, key: str) -> int:
        with self._lock:
            return self._held[key]

    def _release(self, ticket: Ticket) -> None:
        with self._lock:
            if ticket._released:
                return
            ticket._released = True
            self._held.subtract(ticket.keys)
            for key in ticket.keys:
                if self._held[key] <= 0:
                    del self._held[key]


# ---------------------------------------------------------------------------------------------
# The same cap on gradio's queue, with a fair order


def event_keys(event: Any, trusted_proxies: int = 0, by_address: bool = True) -> tuple[str, ...]:
    """caller_keys of a gradio queue Event (its session hash and the request it joined with)."""
    request = getattr(event, "request", None)
    session = getattr(event, "session_hash", None)
    keys = [f"session:{session}"] if session and not _from_mcp(request) else []
    address = client_address(request, trusted_proxies) if request is not None and by_address else None
    return tuple(keys + ([f"addr:{address}"] if address else []))


def fair_order(events: list, key: Callable[[Any], str], running: Mapping[str, int] | None = None) -> list:
    """`events` (in arrival order) reordered round robin by caller: a caller's k-th waiting job
    (counting its running ones first) goes behind every other caller's jobs of lower rounds;
    arrival order within a round and within a caller. Stable, O(n log n)."""
    seen: Counter[str] = Counter(running or {})
    rounds = []
    for i, e in enumerate(events):
        k = key(e)
        rounds.append((seen[k], i))
        seen[k] += 1
    return [events[i] for _, i in sorted(rounds)]


def queued_per_key(queue: Any, trusted_proxies: int = 0, by_address: bool = True) -> tuple[Counter[str], Counter[str]]:
    """(queued, running) jobs per caller key in a gradio Queue (gradio 6.31 internals:
    `event_queue_per_concurrency_id[...].queue` lists, `active_jobs` slots)."""
    queued: Counter[str] = Counter()
    running: Counter[str] = Counter()
    for event_queue in list(queue.event_queue_per_concurrency_id.values()):
        for event in list(event_queue.queue):
            queued.update(event_keys(event, trusted_proxies, by_address))
    for jobs in list(queue.active_jobs):
        for event in jobs or ():
            running.update(event_keys(event, trusted_proxies, by_address))
    return queued, running


def install_queue_cap(
    demo: Any, max_jobs: int, trusted_proxies: int = 0, fair: bool = True, by_address: bool = True
) -> CallerBudget:
    """Cap each caller at `max_jobs` queued+running jobs in `demo`'s gradio queue, refusing a join
    beyond it with HTTP 429 and the refusal as its detail (gradio's browser client shows the detail
    of any refusal but a 503, which it words "This application is currently busy"; gradio_client
    raises httpx.HTTPStatusError for it, the detail in the response), and with
    `fair`, keep each queue in round-robin order by caller. Call after `demo.queue(...)` and before
    or after launch. Returns the CallerBudget whose message and limit are used.

    Sound without locks: gradio's join awaits `Queue.push`, which (for an event without a
    `validator`) runs from its size check to appending the event without yielding to the event
    loop; this check runs just before, on the same loop, so two joins cannot both pass on a stale
    count. An event with a validator yields in between: such events should not be capped here."""
    queue = demo._queue
    budget = CallerBudget(max_jobs)
    original = queue.push
    if getattr(original, "_pez_capped", False):
        raise RuntimeError("install_queue_cap: this demo's queue is capped already")

    async def push(body, request, username):
        probe = _Probe(getattr(body, "session_hash", None), request)
        queued, running = queued_per_key(queue, trusted_proxies, by_address)
        held = queued + running
        for key in event_keys(probe, trusted_proxies, by_address):
            if held[key] >= max_jobs:
                from fastapi import HTTPException

                raise HTTPException(status_code=429, detail=budget.refusal(held[key]))
        result = await original(body, request, username)
        if fair and result[0]:
            _reorder(queue, trusted_proxies, by_address)
        return result

    push._pez_capped = True  # type: ignore[attr-defined]
    queue.push = push
    return budget


def bound_unqueued(demo: Any, max_jobs: int, trusted_proxies: int = 0, by_address: bool = True) -> CallerBudget:
    """Cap each caller at `max_jobs` un-queued handlers (queue=False: UI events such as the style
    preview and the upload checks, which anyone can post to) running at once; a surplus call is
    refused at once (gr.Error naming the limit) instead of taking one more of the server's worker
    threads. The caller (session; address when `by_address`) is read from the request gradio
    keeps in its context while a handler runs (gradio 6.31: gradio.context.LocalContext.request).
    Call after the demo is built (its `fns`); handlers run by the browser only (js) stay as they are."""
    import inspect

    budget = CallerBudget(max_jobs, "requests")
    for block_fn in list(demo.fns.values()):
        fn = getattr(block_fn, "fn", None)
        if block_fn.queue or fn is None or getattr(fn, "_pez_bounded", False) or inspect.iscoroutinefunction(fn):
            continue
        block_fn.fn = _bounded(fn, budget, trusted_proxies, by_address)
    return budget


def _bounded(fn: Callable, budget: CallerBudget, trusted_proxies: int, by_address: bool) -> Callable:
    import functools
    import inspect

    def ticket():
        import gradio as gr
        from gradio.context import LocalContext

        request = LocalContext.request.get()
        try:
            return budget.admit(caller_keys(request, trusted_proxies, by_address) if request is not None else ())
        except BudgetExceeded as e:
            raise gr.Error(str(e), title="Too many requests at once", print_exception=False) from None

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def stream(*args, **kwargs):
            with ticket():
                yield from fn(*args, **kwargs)

        wrapped = stream
    else:

        @functools.wraps(fn)
        def call(*args, **kwargs):
            with ticket():
                return fn(*args, **kwargs)

        wrapped = call
    wrapped._pez_bounded = True  # type: ignore[attr-defined]
    return wrapped


def hide_etas(demo: Any) -> None:
    """Send queue positions without gradio's time estimates. gradio 6.31 estimates a waiting job's
    ETA from the average duration of past runs of the same endpoint, which says nothing of a pez
    run (its time is the caller's budget, up to the server's limit, and differs run to run): a
    caller waited a whole run limit told "ETA 0". With the fair order the rank is true (re-sent
    after every reorder); the time is left out (rank_eta and eta None: the browser then shows the
    rank alone). Wraps `demo._queue.send_message` on the instance (gradio internals: Queue,
    EstimationMessage, ProcessStartsMessage; tests/app/test_guard_gradio.py checks they exist)."""
    from gradio.server_messages import EstimationMessage, ProcessStartsMessage

    queue = demo._queue
    original = queue.send_message
    if getattr(original, "_pez_no_eta", False):
        return

    def send_message(event, message):
        if isinstance(message, EstimationMessage):
            message.rank_eta = None
        elif isinstance(message, ProcessStartsMessage):
            message.eta = None
        return original(event, message)

    send_message._pez_no_eta = True  # type: ignore[attr-defined]
    queue.send_message = send_message


@dataclass
class _Probe:  # the shape of a gradio Event, for a join not yet one
    session_hash: str | None
    request: Any


def _fairness_key(trusted_proxies: int, by_address: bool = True) -> Callable[[Any], str]:
    def key(event: Any) -> str:
        keys = event_keys(event, trusted_proxies, by_address)
        return next((k for k in keys if k.startswith("addr:")), keys[0] if keys else "")

    return key


def _reorder(queue: Any, trusted_proxies: int, by_address: bool = True) -> None:
    key = _fairness_key(trusted_proxies, by_address)
    running: Counter[str] = Counter()
    for jobs in list(queue.active_jobs):
        running.update(key(e) for e in jobs or ())
    for concurrency_id, event_queue in list(queue.event_queue_per_concurrency_id.items()):
        if len(event_queue.queue) > 1:
            order = fair_order(list(event_queue.queue), key, running)
            if order != event_queue.queue:
                event_queue.queue[:] = order  # in place: gradio holds this list
                queue.broadcast_estimations(concurrency_id)  # everyone's rank, as now ordered


# ---------------------------------------------------------------------------------------------
# Request bodies


class BodyTooLarge(Exception):
    """Raised into the app from `receive` when a streamed body passes the limit."""


class BodyLimit:
    """ASGI middleware: 413 for any HTTP request whose body exceeds `max_bytes`, refused from its
    Content-Length before a byte is read, or (chunked, or a lying length) once the bytes the app
    has read pass the limit; the app never holds more than `max_bytes` + one chunk of it."""

    def __init__(self, app: Callable, max_bytes: int):
        self.app, self.max_bytes = app, int(max_bytes)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None:
            try:
                too_big = int(length) > self.max_bytes
            except ValueError:
                too_big = False  # the server refuses a malformed length itself
            if too_big:
                return await self._refuse(send, int(length))
        seen, started, exceeded = 0, False, False

        async def counted_receive():
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    exceeded = True
                    raise BodyTooLarge()
            return message

        async def watched_send(message):
            nonlocal started
            if exceeded:  # the app answered the error it got from receive (FastAPI: 400): ours instead
                if not started:
                    started = True
                    await self._refuse(send, seen)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(send, seen)

    async def _refuse(self, send, size: int) -> None:
        body = (
            f'{{"detail": "Request body too large: at least {size:,} bytes, at most {self.max_bytes:,} '
            f'on this server."}}'
        ).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers + [(b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


class QueueStreamGuard:
    """ASGI middleware: a request for the queue's event stream (GET .../queue/data) naming a
    session with nothing queued is answered 404 at once. gradio 6.31 starts the stream and then
    raises its 404 inside it (two tracebacks in the log per request: 20 requests, 115 KB); the
    check is gradio's own (Queue.pending_messages_per_session), made before the stream starts."""

    def __init__(self, app: Callable, blocks: Any):
        self.app, self.blocks = app, blocks

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope.get("method") == "GET" and scope.get("path", "").endswith("/queue/data"):
            from urllib.parse import parse_qs

            query = parse_qs((scope.get("query_string") or b"").decode(errors="replace"))
            session = (query.get("session_hash") or [""])[0]
            queue = getattr(self.blocks, "_queue", None)
            pending = getattr(queue, "pending_messages_per_session", None)
            if pending is not None and session not in pending:
                body = b'{"detail": "Nothing is queued for this session."}'
                headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
                await send({"type": "http.response.start", "status": 404, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def install_body_limit(app: Any, max_bytes: int) -> Any:
    """Add BodyLimit to a Starlette/FastAPI app that has not started serving (e.g. one passed to
    gr.mount_gradio_app). For `demo.launch`, pass `body_limit_kwargs(...)` as its `app_kwargs`:
    gradio builds its app inside launch, too late for add_middleware."""
    app.add_middleware(BodyLimit, max_bytes=max_bytes)
    return app


def body_limit_kwargs(
    max_bytes: int,
    app_kwargs: dict | None = None,
    blocks: Any = None,
    links: DeepLinks | None = None,
    trusted_proxies: int = 0,
    by_address: bool = True,
) -> dict:
    """`app_kwargs` for `demo.launch(app_kwargs=...)` adding BodyLimit (gradio 6.31 passes them to
    its FastAPI app; the middleware then wraps every route, the MCP server's included), given
    the demo as `blocks`, QueueStreamGuard and McpPlainText, and given `links`, DeepLinkGuard."""
    from starlette.middleware import Middleware

    out = dict(app_kwargs or {})
    extra = [Middleware(BodyLimit, max_bytes=max_bytes)]
    if blocks is not None:
        extra.append(Middleware(QueueStreamGuard, blocks=blocks))
        extra.append(Middleware(McpPlainText, blocks=blocks))
    if links is not None:
        extra.append(Middleware(DeepLinkGuard, links=links, trusted_proxies=trusted_proxies, by_address=by_address))
    out["middleware"] = [*out.get("middleware", []), *extra]
    return out


# ---------------------------------------------------------------------------------------------
# Bytes on disk


def evict(
    entries: list[tuple[float, int, Any]],
    now: float,
    caps: tuple[float, int, int],
    remove: Callable[[Any], None],
    room: tuple[int, int] = (0, 0),
) -> int:
    """The shared eviction rule of DiskBudget and DeepLinks: `entries` are (time written, bytes,
    item), oldest first; each expired item (older than caps' max age) is removed, then the oldest
    while the total bytes or items, plus `room` (bytes, items) to keep free, are over the caps'
    (max bytes, max items). Returns how many were removed."""
    max_age, max_bytes, max_items = caps
    total, count, removed = sum(e[1] for e in entries), len(entries), 0
    for mtime, size, item in entries:
        over = total + room[0] > max_bytes or count + room[1] > max_items
        if not (now - mtime > max_age or over):
            continue
        remove(item)
        removed, total, count = removed + 1, total - size, count - 1
    return removed


class DiskBudget:
    """Caller bytes on disk only under `folder`, at most `max_bytes` and `max_files` in all, each
    file removed `max_age` seconds after it was written. Writing makes room by removing the expired
    files and then the oldest ones; a single file over `max_file_bytes` is refused. Images are
    verified (pez.images.check_image on the bytes) before anything is written and stored under the
    suffix of their real format, never a name the caller chose. Thread-safe within a process."""

    def __init__(
        self,
        folder: str | os.PathLike,
        max_bytes: int,
        max_files: int,
        max_age: float,
        max_file_bytes: int | None = None,
    ):
        self.folder = Path(folder)
        self.max_bytes, self.max_files, self.max_age = int(max_bytes), int(max_files), float(max_age)
        self.max_file_bytes = int(max_file_bytes or max_bytes)
        self._lock = threading.Lock()

    def write_image(self, data: bytes, label: str = "image") -> Path:
        """Store `data` if it is an image pez can read (InvalidImageError otherwise, nothing written)."""
        from PIL import Image

        import pez

        self._check_size(data, label)
        pez.images.check_image(io.BytesIO(data), name=label)
        with Image.open(io.BytesIO(data)) as img:
            suffix = "." + (img.format or "img").lower()
        return self._store(data, suffix)

    def write_bytes(self, data: bytes, suffix: str, prefix: str = "") -> Path:
        """Store bytes the app produced itself (an export); `suffix` and `prefix` (letters, digits,
        '-', the start of the file's name, e.g. for a download) are the app's."""
        self._check_size(data, "file")
        return self._store(data, suffix, prefix)

    def cleanup(self, now: float | None = None) -> int:
        """Remove expired files, then the oldest until within the caps; return how many went."""
        with self._lock:
            return self._cleanup(0, now)

    def files(self) -> list[Path]:
        return sorted(p for p in self.folder.glob("*") if p.is_file() and not p.name.startswith("."))

    def _check_size(self, data: bytes, label: str) -> None:
        if len(data) > self.max_file_bytes:
            import pez

            raise pez.ConfigError(f"{label}: expected at most {self.max_file_bytes:,} bytes, received {len(data):,}")

    def _store(self, data: bytes, suffix: str, prefix: str = "") -> Path:
        if not suffix.startswith(".") or not suffix[1:].isalnum():
            raise ValueError(f"suffix: expected '.' and letters or digits, received {quote_value(suffix)}")
        if prefix and not prefix.replace("-", "").isalnum():
            raise ValueError(f"prefix: expected letters, digits or '-', received {quote_value(prefix)}")
        with self._lock:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._cleanup(len(data))
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            path = self.folder / f"{prefix}{uuid.uuid4().hex}{suffix}"
            os.replace(tmp, path)
            return path

    def _cleanup(self, incoming: int, now: float | None = None) -> int:
        """Make room for `incoming` more bytes and one more file (0: just keep within the caps)."""
        if not self.folder.is_dir():
            return 0
        now = time.time() if now is None else now
        entries = []
        for p in self.folder.iterdir():
            try:
                st = p.stat()
            except FileNotFoundError:
                continue
            if p.is_file():
                entries.append((st.st_mtime, st.st_size, p))
        entries.sort()
        room = (incoming, 1 if incoming else 0)  # the bytes and file about to be written
        caps = (self.max_age, self.max_bytes, self.max_files)
        return evict(entries, now, caps, lambda p: p.unlink(missing_ok=True), room)


# ---------------------------------------------------------------------------------------------
# Browser-only events posted by scripts

MALFORMED_UI_REQUEST = (
    "This request does not match what this page sends (a browser-only event called with other values). "
    "Reload the page and try again."
)


def quiet_ui_errors(demo: Any, log: Any = None) -> None:
    """A browser-only event (api_visibility private or undocumented, e.g. gr.Examples' own, or a
    js-only one with no Python function) posted by a script with values the page never sends gets
    MALFORMED_UI_REQUEST (gr.Error, no
    traceback) and one warning line in the log (the handler, the error's type and a cut message),
    instead of gradio's printed traceback per request (gradio 6.31 routes.predict prints any
    exception but a gr.Error; a probe's 300 such posts wrote 90 tracebacks). A gr.Error the handler
    raised itself passes as it is; public API endpoints are untouched (their handlers make their
    own messages). Wraps `demo.process_api` on the instance."""
    import logging

    import gradio as gr

    log = log or logging.getLogger("pez_app.guard")
    original = demo.process_api
    if getattr(original, "_pez_quiet", False):
        return

    async def process_api(block_fn, *args, **kwargs):
        fn = demo.fns[block_fn] if isinstance(block_fn, int) else block_fn
        try:
            return await original(block_fn, *args, **kwargs)
        except gr.Error:
            raise
        except Exception as e:
            if getattr(fn, "api_visibility", "public") == "public" and getattr(fn, "fn", None) is not None:
                raise
            name = getattr(getattr(fn, "fn", None), "__name__", None) or f"js-only event {getattr(fn, 'id', '?')}"
            log.warning("refused a malformed request to %s: %s: %.200s", name, type(e).__name__, e)
            raise gr.Error(MALFORMED_UI_REQUEST, title="Invalid request", print_exception=False) from None

    process_api._pez_quiet = True  # type: ignore[attr-defined]
    demo.process_api = process_api


# ---------------------------------------------------------------------------------------------
# MCP tools' results as plain text


def plain_outputs(data: Any) -> list:
    """An endpoint's outputs as gradio's MCP server holds them -> what an assistant should read:
    texts and numbers (empty ones dropped), files and gallery images (gradio turns those into
    image content), one item each; None, tables and plots dropped (their rows are the UI's). gradio
    6.31 hands a queued tool's whole result over as one item (its str() was the tool's text: a
    Python tuple repr with None and a dict), an un-queued one's as one item per output."""
    out: list = []

    def walk(value: Any) -> None:
        if value is None:
            return
        if isinstance(value, str):
            if value.strip():
                out.append(value)
        elif isinstance(value, (int, float)):
            out.append(value)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)
        elif isinstance(value, dict):
            if "path" in value or "url" in value:  # a file (FileData)
                out.append(value)
            elif "image" in value:  # a gallery item: {"image": file, "caption": text}
                walk(value.get("image"))
                walk(value.get("caption"))
            # anything else (a Dataframe's headers/data, a plot) is the UI's

    walk(data)
    return out


class McpPlainText:
    """ASGI middleware that, on the first request to gradio's MCP server, makes its tools' results
    plain (plain_outputs) by wrapping `blocks.mcp_server_obj.postprocess_output_data` on the
    instance (gradio 6.31 creates that object while it builds its app, so not before launch; it
    offers no per-tool output formatting: it str()s every output). gradio_client callers and the
    browser are untouched: only what the MCP server sends is changed."""

    def __init__(self, app: Callable, blocks: Any):
        self.app, self.blocks = app, blocks

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and "/gradio_api/mcp" in scope.get("path", ""):
            plain_mcp_outputs(self.blocks)
        await self.app(scope, receive, send)


def plain_mcp_outputs(blocks: Any) -> bool:
    """Wrap the MCP server's output formatting of `blocks` (once); False while it has none."""
    server = getattr(blocks, "mcp_server_obj", None)
    if server is None:
        return False
    original = server.postprocess_output_data
    if getattr(original, "_pez_plain", False):
        return True

    def postprocess_output_data(data, root_url):
        return original(plain_outputs(data), root_url)

    postprocess_output_data._pez_plain = True  # type: ignore[attr-defined]
    server.postprocess_output_data = postprocess_output_data
    return True


# ---------------------------------------------------------------------------------------------
# Share links (gradio's deep links) on disk


class DeepLinks:
    """gradio 6.31's share links on disk, bounded. Its route GET /gradio_api/deep_link?session_hash=
    writes the session's whole component state to `<upload folder>/deep_links/<id>/state.json`
    (id: a hash of the content) and nothing ever removes one (not even delete_cache: they are not
    among the Blocks' temp files); a page opened with ?deep_link=<id> reads it back. Here: at most
    `max_links` links and `max_bytes` in all (the oldest go first), each removed `max_age` s after
    it was last written, one link over `max_link_bytes` removed at once (refused), and at most
    `per_caller` live links per caller key (refused beyond; a caller's links that expired or were
    removed stop counting). `cleanup()` for a timer; DeepLinkGuard applies it to the route."""

    def __init__(
        self,
        folder: str | os.PathLike,
        max_bytes: int,
        max_links: int,
        max_age: float,
        max_link_bytes: int | None = None,
        per_caller: int = 20,
    ):
        self.folder = Path(folder)
        self.max_bytes, self.max_links, self.max_age = int(max_bytes), int(max_links), float(max_age)
        self.max_link_bytes = min(int(max_link_bytes or max_bytes), self.max_bytes)
        self.per_caller = int(per_caller)
        self._made: dict[str, list[str]] = {}  # caller key -> its link ids (live ones count)
        self._lock = threading.Lock()

    def links(self) -> list[tuple[float, int, str]]:
        """(time last written, bytes, id) of every link on disk, oldest first."""
        out = []
        if not self.folder.is_dir():
            return out
        for d in self.folder.iterdir():
            try:
                st = (d / "state.json").stat()
            except (FileNotFoundError, NotADirectoryError):
                continue
            out.append((st.st_mtime, st.st_size, d.name))
        return sorted(out)

    def admit(self, keys: Iterable[str]) -> None:
        """BudgetExceeded when any of the caller's keys already has `per_caller` live links."""
        with self._lock:
            live = {name for _, _, name in self.links()}
            for key in keys:
                mine = [i for i in self._made.get(key, []) if i in live]
                self._made[key] = mine
                if len(mine) >= self.per_caller:
                    raise BudgetExceeded(
                        f"Too many share links: you have {len(mine)} (at most {self.per_caller} per visitor on "
                        f"this server; each is kept {self.max_age / 86400:g} days). Share again later."
                    )

    def made(self, keys: Iterable[str], link_id: str) -> str | None:
        """Account for the link `link_id` gradio just wrote for the caller: None when kept, else the
        refusal (it was removed: larger than `max_link_bytes`). Then the caps are applied."""
        with self._lock:
            path = self.folder / link_id / "state.json"
            try:
                size = path.stat().st_size
            except OSError:
                return None
            if size > self.max_link_bytes:
                self._remove(link_id)
                return (
                    f"This page is too large to share: {size:,} bytes, at most {self.max_link_bytes:,} "
                    f"on this server. Remove some images or results, then share again."
                )
            for key in keys:
                mine = self._made.setdefault(key, [])
                if link_id not in mine:
                    mine.append(link_id)
            self._cleanup(keep=link_id)
            return None

    def cleanup(self, now: float | None = None) -> int:
        """Remove expired links, then the oldest until within the caps; return how many went."""
        with self._lock:
            removed = self._cleanup(now=now)
            live = {name for _, _, name in self.links()}
            for key in list(self._made):
                self._made[key] = [i for i in self._made[key] if i in live]
                if not self._made[key]:
                    del self._made[key]
            return removed

    def _cleanup(self, now: float | None = None, keep: str | None = None) -> int:
        now = time.time() if now is None else now
        links = self.links()
        entries, kept = [e for e in links if e[2] != keep], [e for e in links if e[2] == keep]
        room = (sum(e[1] for e in kept), len(kept))  # the link just made stays, and counts
        return evict(entries, now, (self.max_age, self.max_bytes, self.max_links), self._remove, room)

    def _remove(self, link_id: str) -> None:
        import shutil

        shutil.rmtree(self.folder / link_id, ignore_errors=True)


class DeepLinkGuard:
    """ASGI middleware for gradio's share-link route (GET .../gradio_api/deep_link): a caller (the
    session it names; the address with `by_address`) at its DeepLinks.per_caller is refused 429
    before gradio writes anything; a link gradio wrote is accounted for (DeepLinks.made), and one
    over the per-link size is removed and refused 413. The route itself stays gradio's (its login
    check, its file format). Refusals are JSON with a `detail`, as gradio's own."""

    def __init__(self, app: Callable, links: DeepLinks, trusted_proxies: int = 0, by_address: bool = True):
        self.app, self.links = app, links
        self.trusted_proxies, self.by_address = trusted_proxies, by_address

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if scope["type"] != "http" or scope.get("method") != "GET" or not path.endswith("/gradio_api/deep_link"):
            return await self.app(scope, receive, send)
        from urllib.parse import parse_qs

        from starlette.requests import Request

        query = parse_qs((scope.get("query_string") or b"").decode(errors="replace"))
        probe = _Probe((query.get("session_hash") or [""])[0] or None, Request(scope))
        keys = event_keys(probe, self.trusted_proxies, self.by_address)
        try:
            self.links.admit(keys)
        except BudgetExceeded as e:
            return await _json_reply(send, 429, str(e))
        start: dict = {}
        body = bytearray()

        async def held_send(message):  # the reply (a short JSON string) is held until accounted for
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                body.extend(message.get("body", b""))

        await self.app(scope, receive, held_send)
        if start.get("status") == 200:
            import json

            try:
                link_id = json.loads(bytes(body) or b'""')
            except ValueError:
                link_id = ""
            if isinstance(link_id, str) and link_id and "/" not in link_id and not link_id.startswith("."):
                refusal = self.links.made(keys, link_id)
                if refusal:
                    return await _json_reply(send, 413, refusal)
        await send(
            {**start, "type": "http.response.start"} if start else {"type": "http.response.start", "status": 500}
        )
        await send({"type": "http.response.body", "body": bytes(body)})


async def _json_reply(send, status: int, detail: str) -> None:
    import json

    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# ---------------------------------------------------------------------------------------------
# Gradio's own routes

GRADIO_SETTINGS = """\
What gradio 6.31's own routes do, and the least pez needs (set by the app at launch):
- Upload route (/gradio_api/upload): any caller may post files, written to GRADIO_TEMP_DIR before
  any handler sees them. launch(max_file_size=...) (pez already sets PEZ_MAX_FILE_MB, 20 MB)
  refuses one file over it while it streams (413), per file: the number of files in one request
  is unbounded, so BodyLimit must cap the whole body (launch(app_kwargs=body_limit_kwargs(n))).
  n: what one request legitimately needs, e.g. 64 MiB (images as data: URLs are 4/3 of their
  bytes; MAX_IMAGES x 20 MB = 640 MB would be no bound worth having).
- Cache retention: uploads and files that handlers return stay in GRADIO_TEMP_DIR for good with
  the default delete_cache=None (not even removed at shutdown). gr.Blocks(delete_cache=(frequency,
  age)) removes them every `frequency` s once older than `age` s, and all at shutdown: e.g. (600,
  3600). Files the app writes itself (share links, exports, upload checks) go through DiskBudget.
- Session state: launch(state_session_capacity=N) (default 10,000; ~330 KB each for pez) and
  gr.State(time_to_live=...); see SESSION_NOTES.
- Queue: demo.queue(max_size=...) bounds all callers together (pez: PEZ_QUEUE_SIZE, api_open=False
  already); install_queue_cap adds the per-caller cap and the fair order.
- MCP (launch(mcp_server=True)): a stateless streamable-HTTP manager (no per-MCP-session memory);
  queued tools go through one gradio_client shared by all MCP callers (one session id), carrying each
  caller's headers; un-queued tools run in a fresh SessionState per call. So per-caller limits on MCP
  work by address only (behind a trusted proxy); without one, MCP callers share one budget.
"""


# ---------------------------------------------------------------------------------------------
# Per-session memory

SESSION_NOTES = """\
How gradio 6.31 keeps per-session memory, and how to bound it (gradio/state_holder.py):
- Every session id that calls a handler gets a SessionState: a copy of the demo's config and one
  config dict per component (~330 KB for pez's layout), plus gr.State values. They live in an LRU
  OrderedDict of `state_session_capacity` entries (launch parameter, default 10,000); nothing else
  removes a SessionState (a closed or idle session keeps its entry until evicted).
- gr.State(time_to_live=s, delete_callback=f): a State value is deleted (f called) s seconds after
  it was last set, checked every second by a background task; after the browser closes the session
  (heartbeat lost), values expire after 3,600 s (SessionState.STATE_TTL_WHEN_CLOSED, fixed).
  Only State values go; the session's config copy stays.
- Bound: launch(state_session_capacity=N) caps memory at about N x 330 KB plus State values
  (each bounded by the app: no large inputs in State; give every gr.State a time_to_live).
  Eviction is LRU: a flood of fresh session ids evicts the oldest idle sessions' state, which
  those visitors then lose (their page keeps working; gr.State resets to its default).
- drop_idle_sessions(demo, idle_seconds) removes SessionStates idle longer than that (reads
  gradio internals: state_holder.session_data and time_last_used), for a periodic timer.
"""


def drop_idle_sessions(demo: Any, idle_seconds: float, now: float | None = None) -> int:
    """Remove the per-session state gradio keeps for sessions unused for `idle_seconds` (their
    gr.State delete_callbacks run first); return how many went. Gradio 6.31 internals
    (Blocks.state_holder: StateHolder.session_data, time_last_used, lock). See SESSION_NOTES."""
    import datetime

    holder = demo.state_holder
    now_dt = datetime.datetime.fromtimestamp(time.time() if now is None else now)
    with holder.lock:
        idle = [
            s
            for s, last in list(holder.time_last_used.items())
            if (now_dt - last).total_seconds() > idle_seconds and s in holder.session_data
        ]
    for session in idle:
        holder.delete_state(session)  # gr.State values, with their delete_callback
        with holder.lock:
            holder.session_data.pop(session, None)
            holder.time_last_used.pop(session, None)
    return len(idle)


__all__ = [
    "GRADIO_SETTINGS",
    "SESSION_NOTES",
    "BodyLimit",
    "BodyTooLarge",
    "BudgetExceeded",
    "McpPlainText",
    "QueueStreamGuard",
    "CallerBudget",
    "DeepLinkGuard",
    "DeepLinks",
    "DiskBudget",
    "Ticket",
    "body_limit_kwargs",
    "bound_unqueued",
    "caller_keys",
    "client_address",
    "drop_idle_sessions",
    "event_keys",
    "fair_order",
    "hide_etas",
    "install_body_limit",
    "install_queue_cap",
    "plain_mcp_outputs",
    "plain_outputs",
    "queued_per_key",
    "quiet_ui_errors",
]
