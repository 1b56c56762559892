"""The request pipeline: every search, regeneration and score of the app passes through here.

One request, in order (`Pipeline.search`; regenerations and the score take the same steps):

    1. bind     the call's values to the endpoint's signature (built with the demo: the API and
                MCP defaults are the panel's)
    2. check    the server's caps, the settings (one InvertConfig), the tab's inputs (Search.prepare):
                a bad value is refused here, before any GPU time is reserved or a model is loaded;
                the images' decode cost from their headers (check_images: PEZ_MAX_DECODE_MP)
    3. admit    the Gate: may this caller run this now? (Admission -> Ticket; released at the end;
                default CallerGate: PEZ_MAX_JOBS_PER_CALLER, as the queue's cap in guard.py)
    4. clock    the user's time budget as asked, and the server's limit as the engine's time limit
                (InvertConfig.time_limit: a cap, not a plan, so a seeded run well within it is
                reproducible, and a run that reaches it ends there with its polish); concatenate's
                budget and limit are for the whole run, split across its images
    5. GPU      the work runs on the GPU (spaces.GPU on ZeroGPU, for a duration from the request;
                counted in the model slots while it runs)
    6. load     the model, with the status line saying so (bytes / total while weights download)
    7. run      the engine's stream (Search.prepare's Job), polled for Stop
    8. stream   reports -> UI values (a View), throttled (Throttle: injectable; 0 in tests)
    9. finish   the run record kept in the tab's RunControl (History and Stop read it there), the
                final status (the time limit said where it ended the run)
   10. errors   any exception -> one gr.Error (server.as_gr_error), its message left for the tab

The event wiring of the search tabs (Run -> "Starting…" -> the streamed handler -> History, Stop)
is here too (`wire_search`, `stop_run`); the widgets and the look are in components.py.

On ZeroGPU the GPU part runs in a worker process that gets copies of its arguments: it cannot see
a Stop pressed later and what it writes into them never comes back, so the record, Stop and the
final status are kept here in the main process (pez_app.zerogpu).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import gradio as gr

import pez

from . import progress as prog
from . import zerogpu
from .downloads import load_with_progress
from .guard import BudgetExceeded, CallerBudget, client_address
from .inputs import is_mcp_call, queue_full
from .server import ZERO_GPU, ServerSettings, as_gr_error, friendly_errors, spaces, user_error
from .settings import check_caps, make_config, setting_params, settings_doc

NOTHING_TO_SCORE = "Nothing to score: {what}."  # the score's answer to an empty prompt or no image
QUICK = {"queue": False, "api_visibility": "private"}  # UI-only events: outside the queue, off the API
IMAGE_PARAMS = ("image", "images", "negative_images")  # the endpoints' image parameters (pez_app.inputs)


# ---------------------------------------------------------------------------------------------
# 3. Admission: the one place every request passes before its work (per-caller budgets go here)


@dataclass(frozen=True)
class Admission:
    """What the gate knows of one request once its inputs are checked, before any work."""

    endpoint: str  # the API name: "invert", "concatenate", "regenerate_style", "score", ...
    kind: str  # "search" | "regenerate" | "score"
    model: str  # the checked model (pair or CLIP spec)
    session: str | None  # gradio's session hash (None: called in-process)
    client: str | None  # the client's address as gradio sees it (request.client.host)
    mcp: bool  # called by gradio's MCP server
    images: int  # target images in the request (already decoded-checked by the inputs)
    seconds: float  # the most seconds the work may take once its model is loaded (its time budget)


class Ticket(Protocol):
    """An admitted request's hold on the gate; `release()` is called once, when the request ends
    (finished, failed, stopped or cancelled)."""

    def release(self) -> None: ...


class Gate(Protocol):
    """Admission: `admit` returns a Ticket, or raises a gr.Error (server.user_error) whose message
    the caller sees (e.g. "you have 2 runs waiting"), and the request ends there: nothing loaded,
    no GPU time reserved, the tab's status shows the message. It is called once per request, in
    the handler's thread, when gradio's queue has started the job and its inputs are checked; it
    must be thread-safe and quick. The Ticket's `release()` is called exactly once, when the
    request ends however it ends (done, error, Stop, a cancelled or closed stream). Jobs still
    waiting in gradio's queue have not reached the gate (a per-caller queue cap needs gradio's
    queue, or a check at the browser's un-queued Run click). Pass one to build_demo(gate=...)."""

    def admit(self, request: Admission) -> Ticket: ...


class _NoHold:
    def release(self) -> None:
        pass


class OpenGate:
    """A gate that admits every request (the queue's size and concurrency bound the rest)."""

    def admit(self, request: Admission) -> Ticket:
        return _NoHold()


class CallerGate:
    """The default gate: at most `max_jobs` requests at once per caller (its session, and its
    address when `by_address`: a server whose callers' addresses can be told apart, directly or
    behind PEZ_TRUSTED_PROXIES proxies), across all endpoints. gradio's queue refuses a caller's
    surplus joins before they wait (guard.install_queue_cap, same limit); this gate also holds
    for calls that do not come through the queue (in-process, un-queued MCP tools)."""

    def __init__(self, max_jobs: int, by_address: bool = False):
        self.budget, self.by_address = CallerBudget(max_jobs, "runs"), by_address

    def keys(self, request: Admission) -> tuple[str, ...]:
        keys = [f"session:{request.session}"] if request.session and not request.mcp else []
        if self.by_address and request.client:
            keys.append(f"addr:{request.client}")
        return tuple(keys)

    def admit(self, request: Admission) -> Ticket:
        try:
            return self.budget.admit(self.keys(request))
        except BudgetExceeded as e:
            raise user_error(str(e), "Too many runs at once") from None


# ---------------------------------------------------------------------------------------------
# 4-5. The clock and the GPU


class Deadline:
    """The server's time limit of one request as a should_stop, for work the engine's planner does
    not plan (regenerations) and as the backstop of a search (which ends by its planned budget):
    its clock starts once the model is loaded (`begin`; else at the first poll): decoding the
    images counts, neither the queue nor a first download does. `hit`: whether it stopped the work."""

    def __init__(self, seconds: float, limit: float | None = None):
        self.seconds = seconds
        self.limit = seconds if limit is None else limit  # the server's limit, as the note names it
        self.start: float | None = None
        self.hit = False

    def __call__(self) -> bool:
        now = time.monotonic()
        if self.start is None:
            self.start = now
        self.hit = self.hit or now - self.start >= self.seconds
        return self.hit

    def begin(self) -> None:
        """Start the clock now (once the model is loaded: decoding the images then counts)."""
        if self.start is None:
            self.start = time.monotonic()

    def note(self) -> str:
        return f"the server's time limit ({self.limit:g} s)"


# A search ends by its planned budget (the limit at most); the backstop stops one that overruns it
# (a polish round that took far longer than measured): this much later.
BACKSTOP_FACTOR, BACKSTOP_SECONDS = 1.25, 5.0


def run_budget(config: pez.InvertConfig, limit: float, searches: int = 1) -> tuple[pez.InvertConfig, bool]:
    """The config the engine gets: the user's time budget as asked, and the server's limit as the
    engine's time limit (a cap, not a plan: a run that ends before it stays reproducible), both
    for the whole request (split evenly across `searches`, e.g. concatenate's images). Also
    whether the server's limit is shorter than the user's budget (the engine's result says,
    in stats["limited"], whether it ended the run)."""
    n = max(searches, 1)
    wanted = config.time_budget if config.time_budget > 0 else math.inf
    limited = limit < wanted
    capped = dataclasses.replace(config, time_budget=config.time_budget / n, time_limit=limit / n if limit > 0 else 0.0)
    return capped, limited


class ModelSlots:
    """Counts the handlers running a model, so the UI can say "waiting" only when a run waits."""

    def __init__(self, capacity: int):
        self.capacity, self.active, self._lock = capacity, 0, threading.Lock()

    def enter(self) -> None:
        with self._lock:
            self.active += 1

    def leave(self) -> None:
        with self._lock:
            self.active -= 1

    def busy(self) -> bool:
        return self.active >= self.capacity

    def hold(self, fn: Callable) -> Callable:
        """Wrap a model handler (plain or generator) so it is counted while it runs."""
        if inspect.isgeneratorfunction(fn):

            @functools.wraps(fn)
            def stream(*args, **kwargs):
                self.enter()
                try:
                    yield from fn(*args, **kwargs)
                finally:
                    self.leave()

            return stream

        @functools.wraps(fn)
        def call(*args, **kwargs):
            self.enter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.leave()

        return call


def on_gpu(fn: Callable, duration: Callable[..., int] | int) -> Callable:
    """Run `fn` on a ZeroGPU device when the `spaces` package is importable (a no-op off Spaces).
    `duration`: seconds to reserve, or a callable given fn's own arguments (pez_app.zerogpu)."""
    if spaces is None:
        return fn
    return spaces.GPU(duration=duration)(fn)


# ---------------------------------------------------------------------------------------------
# 7-8. A search's work and how its reports become UI values


@dataclass
class Job:
    """What one search runs, from the tab's checked inputs (Search.prepare): how to start the
    engine's stream on the loaded CLIP, and what the run record and status add."""

    mode: str  # the record's mode ("image − negatives", "multi", ...)
    start: Callable[[Any, pez.InvertConfig, Callable[[], bool]], Iterator]  # (clip, config, should_stop) -> reports
    images: int = 1  # target images (concatenate runs one search per image)
    # A check of the inputs against the loaded CLIP; returns the settings it changes for the run
    # (distill's capped length), which the record keeps instead of those asked, or None.
    check: Callable[[Any], dict | None] | None = None
    note: Callable[[Any, Any], str] | None = None  # (clip, result) -> what the final status adds
    record: dict = field(default_factory=dict)  # what the run record adds
    view: str = "inversion"  # how reports become UI values: "inversion" | "concatenate"


class Throttle:
    """At most one UI update per `interval` seconds (0: every report)."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic):
        self.interval, self.clock, self.last = interval, clock, -math.inf

    def ready(self) -> bool:
        now = self.clock()
        if self.interval > 0 and now - self.last < self.interval:
            return False
        self.last = now
        return True


class InversionView:
    """StepReports of one search -> (prompt, status, plot, candidates, record fields)."""

    def __init__(self, job: Job, config: pez.InvertConfig):
        self.job, self.config = job, config
        # Both series from the start: the plot fixes its series on the first data it draws.
        self.rows, self.seen, self.smooth = [(0, math.nan, prog.LOSS), (0, math.nan, prog.BEST)], {}, prog.Smoother()

    def add(self, rep: pez.StepReport) -> None:
        self.rows += prog.step_rows(rep, self.smooth, self.rows)
        if math.isfinite(rep.best_score):
            self.seen[rep.best_prompt] = rep.best_score

    def live(self, rep: pez.StepReport) -> tuple:
        cands = prog.candidate_rows(prog.top_seen(self.seen, self.config.top_k))
        record = {"prompt": rep.best_prompt, "score": prog.finite(rep.best_score), "steps_run": rep.step}
        return rep.best_prompt, prog.progress_text(rep), prog.plot_frame(self.rows), cands, record

    def final(self, res: pez.InversionResult, clip, waited: float, limit: str) -> tuple:
        note = self.job.note(clip, res) if self.job.note and res.steps_run else ""
        text = found_nothing(res.prompt, res.stopped, prog.result_text(res, note, waited, limit))
        record = {"prompt": res.prompt, "score": prog.finite(res.score), "steps_run": res.steps_run}
        record.update(done=True, stopped=res.stopped)
        plot = prog.plot_frame(prog.final_rows(res, self.rows))
        return res.prompt, text, plot, prog.candidate_rows([(p.prompt, p.score) for p in res.top_k]), record


class ConcatenationView:
    """ConcatReports (one search per image, then the join) -> the same five values."""

    def __init__(self, job: Job, config: pez.InvertConfig):
        self.job, self.config = job, config
        # One empty point per image up front: the plot fixes its series on the first data it draws.
        self.rows = [(0, math.nan, f"image {k + 1}") for k in range(job.images)]

    def add(self, rep) -> None:
        self.rows += prog.concat_rows(rep, self.rows)

    def live(self, rep) -> tuple:
        r = rep.report
        joined = pez.join_prompts(rep.prompts + [r.best_prompt])
        parts = [[i + 1, p, ""] for i, p in enumerate(rep.prompts)]
        parts.append([rep.index + 1, r.best_prompt, f"running… {prog.fmt_score(r.best_score)}"])
        status = prog.progress_text(r, f"Image {rep.index + 1} of {rep.total} · ")
        record = {"prompt": joined, "steps_run": rep.index * self.config.steps + r.step}
        return joined, status, prog.plot_frame(self.rows), parts, record

    def final(self, res, clip, waited: float, limit: str) -> tuple:
        parts = [[i + 1, p.prompt, prog.fmt_score(p.score)] for i, p in enumerate(res.parts)]
        text = prog.concat_text(res, self.job.images, self.job.note(clip, res) if self.job.note else "")
        text = found_nothing(res.prompt, res.stopped, text)
        if limit and any(p.stats.get("limited") for p in res.parts):
            text += f" · ended at {limit}"
        record = {"prompt": res.prompt, "score": prog.finite(res.score), "done": True, "stopped": res.stopped}
        record["steps_run"] = sum(p.steps_run for p in res.parts)
        return res.prompt, text, prog.plot_frame(self.rows), parts, record


VIEWS = {"inversion": InversionView, "concatenate": ConcatenationView}
NOTHING_FOUND = "Found no prompt: the search ended before its first step"


def found_nothing(prompt: str, stopped: bool, text: str) -> str:
    """A run that ended with no prompt (a time budget too short for one step) says so first,
    instead of "Done" next to an empty prompt (the engine's hint, in `text`, says what to change)."""
    if prompt or stopped:
        return text
    return f"{NOTHING_FOUND} · {text}"


def stream_job(
    job: Job,
    model: str,
    config: pez.InvertConfig,
    load: Callable[[str], Any],
    should_stop: Callable[[], bool],
    throttle: Throttle,
    limit: str = "",
    loaded: Callable[[], None] | None = None,
) -> Iterator[tuple]:
    """6-9: load the model (saying so), run the job's stream and turn its reports into UI values
    (throttled; the last one always). Yields (prompt, status, plot, candidates, record fields)."""
    waited_from = time.monotonic()
    yield "", f"Loading {model}…", None, [], {}
    clip = None
    for item in load_with_progress(lambda: load(model), model):
        if isinstance(item, str):  # "Loading … (n s)", or bytes / total while a download moves
            yield "", item, None, [], {}
        else:
            clip = item
    if loaded is not None:  # the run's clock: from here, decoding the images counts
        loaded()
    used = (job.check(clip) or {}) if job.check else {}
    extra = {"settings": used} if used else {}  # the record's settings as run (pipeline's work merges them)
    view, rep = VIEWS[job.view](job, config), None
    stream = job.start(clip, config, should_stop)
    try:
        for rep in stream:
            if rep.done:
                break
            view.add(rep)
            if throttle.ready():
                *values, fields = view.live(rep)
                yield (*values, {**fields, **extra})
    finally:
        stream.close()
    *values, fields = view.final(rep.result, clip, time.monotonic() - waited_from, limit)
    yield (*values, {**fields, **extra})


# ---------------------------------------------------------------------------------------------
# The endpoints


@dataclass(frozen=True)
class Search:
    """One search endpoint, as a tab declares it: `prepare(*own, model=, config=)` checks the tab's
    own inputs (cheap: no model) and returns the Job; its signature gives the endpoint's own
    parameters (those without a default first, then those with one)."""

    name: str  # the API name and the handler's name
    prepare: Callable[..., Job]
    description: str
    args_doc: str
    per_image: bool = False  # one search per target image (concatenate): budget and GPU time per image


class Pipeline:
    """The endpoint factory of one demo: every handler it makes passes the steps in the module
    docstring, with this server's settings, gate and model slots."""

    def __init__(self, settings: ServerSettings, model_value: str, defaults: dict, gate: Gate | None = None):
        self.settings = settings
        self.model_value = model_value  # the start-up pair: the handlers' default model
        self.defaults = defaults  # the app's search defaults (settings.app_defaults): the panel's
        limits = settings.limits
        self.gate: Gate = gate or CallerGate(limits.max_jobs, by_address=settings.trusted_proxies > 0)
        self.decode_budget = limits.decode_budget()
        self.slots = ModelSlots(settings.gpu_concurrency)
        self.throttle = lambda: Throttle(settings.ui_interval)
        self.load_model: Callable[[str], Any] = settings.load_model  # replaceable (tests: a slow download)
        self.endpoints: dict[str, Callable] = {}
        self._draw: Callable | None = None

    # -- shared steps --------------------------------------------------------------------------

    def gpu_options(self) -> dict:
        return {"concurrency_id": "gpu", "concurrency_limit": self.settings.gpu_concurrency}

    def gpu(self, fn: Callable, duration: Callable[..., int]) -> Callable:
        """5: `fn` counted in the model slots, on a ZeroGPU device for `duration`, capped by the
        server's PEZ_GPU_SECONDS."""
        cap = self.settings.gpu_seconds
        return self.slots.hold(on_gpu(fn, functools.partial(duration, cap=cap)))

    def check_images(self, arguments: dict) -> None:
        """2: every image of the request (IMAGE_PARAMS) checked from its header against this
        server's decode budget (PEZ_MAX_DECODE_MP: pixels and bytes of all images together), so a
        request too costly to decode, or a decompression bomb anywhere in a list, is refused
        before anything is decoded, admitted or loaded."""
        sources = []
        for name in IMAGE_PARAMS:
            value = arguments.get(name)
            if value is None:
                continue
            items = value if isinstance(value, (list, tuple)) else [value]
            sources += [i[0] if isinstance(i, (tuple, list)) else i for i in items]
        if sources:
            pez.images.check_request(sources, self.decode_budget, limit=len(sources))

    def admit(self, endpoint: str, kind: str, model: str, request, images: int) -> Ticket:
        """3: ask the gate."""
        client = client_address(request, self.settings.trusted_proxies) if request is not None else None
        return self.gate.admit(
            Admission(
                endpoint=endpoint,
                kind=kind,
                model=model,
                session=getattr(request, "session_hash", None),
                client=client,
                mcp=is_mcp_call(request),
                images=images,
                seconds=self.settings.limits.max_run_seconds,
            )
        )

    def _register(self, name: str, handler: Callable, sig: inspect.Signature, doc: str, tool: str) -> Callable:
        """Name the handler for gradio: `tool` (the function's name: the MCP tool's), its signature
        and docstring (the API's and MCP's parameters and description); keep it as endpoints[name]."""
        P = inspect.Parameter
        handler.__name__ = handler.__qualname__ = tool
        handler.__signature__ = sig
        handler.__annotations__ = {p.name: p.annotation for p in sig.parameters.values() if p.annotation is not P.empty}
        handler.__doc__ = doc
        self.endpoints[name] = handler
        return handler

    # -- searches ------------------------------------------------------------------------------

    def search(self, spec: Search) -> Callable:
        """The streamed handler of one search: gradio takes its name, signature and docstring for
        the API and the MCP tool. Parameters, in order: the spec's own without a default, one per
        shared setting (typed, with this demo's defaults), the spec's own with a default, then
        `control` (the tab's RunControl; API callers have none) and gradio's request. Yields
        (prompt, status, plot, candidates); the record goes to the control."""
        P = inspect.Parameter
        own = [p for p in inspect.signature(spec.prepare).parameters.values() if p.kind == P.POSITIONAL_OR_KEYWORD]
        leading, trailing = [p for p in own if p.default is P.empty], [p for p in own if p.default is not P.empty]
        control = P("control", P.POSITIONAL_OR_KEYWORD, default=None, annotation=prog.RunControl | None)
        request = P("request", P.POSITIONAL_OR_KEYWORD, default=None, annotation=gr.Request | None)
        params = setting_params(self.model_value, self.defaults)
        sig = inspect.Signature([*leading, *params, *trailing, control, request])
        limit = self.settings.limits.max_run_seconds
        searches_of = (lambda job: job.images) if spec.per_image else (lambda job: 1)

        def work(own_values: tuple, model: str, config: pez.InvertConfig, run: prog.RunControl, asked: dict):
            """5-9, on the GPU (a worker process on ZeroGPU). `asked`: the user's time budget (what
            the record keeps) and the note of the server's limit when it is the binding one."""
            job = spec.prepare(*own_values, model=model, config=config)
            record = prog.new_record(job.mode, model, config, **job.record)
            record["settings"]["time_budget"] = asked["time_budget"]
            stop = _either(run.should_stop(), run.deadline)  # no backstop in a ZeroGPU worker: kept here
            limited = asked["limited"]
            begin = run.deadline.begin if run.deadline is not None else None
            steps = stream_job(job, model, config, self.load_model, stop, self.throttle(), limited, begin)
            for *values, fields in steps:
                if "settings" in fields:  # what the job changed once the CLIP was loaded
                    fields = {**fields, "settings": {**record["settings"], **fields["settings"]}}
                record = {**record, **fields}
                yield (*values, record)

        duration, cap = functools.partial(zerogpu.search_seconds, per_image=spec.per_image), self.settings.gpu_seconds
        on_device = self.gpu(work, duration)

        def handler(*args, **kwargs):
            a = sig.bind(*args, **kwargs)  # 1
            a.apply_defaults()
            run = own_control(a.arguments["control"], a.arguments["request"])
            run.started = True
            ticket = None
            try:
                if run.stop_at >= run.clicked_at > 0.0:  # Stop pressed while it waited in the queue
                    yield gr.skip(), prog.STOPPED_BEFORE, gr.skip(), gr.skip()  # what Stop said stays
                    return
                check_caps(a.arguments, self.settings.limits)  # 2
                model = self.settings.check_model(a.arguments["model"])
                asked = make_config(a.arguments)
                own_values = tuple(a.arguments[p.name] for p in own)
                job = spec.prepare(*own_values, model=model, config=asked)
                self.check_images(a.arguments)
                ticket = self.admit(spec.name, "search", model, a.arguments["request"], job.images)  # 3
                config, limited = run_budget(asked, limit, searches_of(job))  # 4
                run.deadline = Deadline(limit * BACKSTOP_FACTOR + BACKSTOP_SECONDS, limit)
                note = f"the server's time limit ({limit:g} s)" if limited else ""
                asked = {"time_budget": asked.time_budget, "limited": note}
                request = (own_values, model, config, run, asked)
                yield from self._stream(
                    on_device, functools.partial(duration, cap=cap), request, a.arguments["request"]
                )
            except Exception as e:  # 10
                err = as_gr_error(e)
                run.error = err.message
            else:
                return
            finally:
                run.armed = run.started = False
                if ticket is not None:
                    ticket.release()
                pez.images.release_memory()  # what decoding took goes back to the system
            raise err  # outside the except: the error keeps no reference to the failure's frames

        doc = (
            f"{spec.description}\n\nArgs:\n{spec.args_doc}\n{settings_doc()}\n"
            "Returns:\n    the best prompt, a plain-text status line, the loss curve and the candidates table "
            "(streamed: each update improves on the last)"
        )
        return self._register(spec.name, handler, sig, doc, spec.prepare.__name__.lstrip("_"))

    def _stream(self, on_device: Callable, seconds: Callable[..., int], request: tuple, gr_request):
        """8-9 in the main process: keep each record in the run's control, say where the server's
        limit ended the run; on ZeroGPU, Stop and the backstop end the worker's stream here and an
        aborted GPU run ends as a stopped one, keeping the best prompt."""
        run, to_assistant = request[3], is_mcp_call(gr_request)
        stop = _either(run.should_stop(), run.deadline)
        if zerogpu.loads_in_call(request[1]):
            yield "", zerogpu.loading_note(request[1]), None, []
        # On ZeroGPU the worker gets a copy without the backstop: it is kept here, like Stop.
        worker = dataclasses.replace(run, deadline=None) if ZERO_GPU else run
        request = (*request[:3], worker, *request[4:])
        for values in _stream_on_gpu(on_device, seconds, request, run, stop):
            values = list(values)
            if run.record.get("done") and run.deadline.hit:
                values[1] = prog.time_limited(values[1], run.deadline.note())
            if to_assistant:
                values[2] = None  # the loss curve's rows are noise to an assistant
            yield tuple(values)

    # -- regenerations and the score -----------------------------------------------------------

    def draw_on_gpu(self) -> Callable:
        """The regenerations' one GPU function (pez_app.regenerate.draw_all), made once per demo."""
        if self._draw is None:
            from . import regenerate as regen

            settings = self.settings

            def draw(galleries: list, model: str, cfg: pez.GenerateConfig, progress=None):
                # the server's time limit, counted in the GPU worker where the draws run
                deadline = Deadline(settings.limits.max_run_seconds)
                return regen.draw_all(settings, galleries, model, cfg, deadline, progress)

            self._draw = self.gpu(draw, zerogpu.generate_seconds)
        return self._draw

    def regenerate(self, plan: Callable, description: str, args_doc: str, name: str) -> Callable:
        """The handler of one tab's Regenerate (pez_app.regenerate builds the signature's
        generation part and does the drawing): bind, check, admit, GPU, finish, errors."""
        from . import regenerate as regen

        P = inspect.Parameter
        own = list(inspect.signature(plan).parameters.values())
        control = P("control", P.POSITIONAL_OR_KEYWORD, default=None, annotation=prog.RunControl | None)
        progress = P("progress", P.POSITIONAL_OR_KEYWORD, default=gr.Progress(track_tqdm=True))
        request = P("request", P.POSITIONAL_OR_KEYWORD, default=None, annotation=gr.Request | None)
        sig = inspect.Signature([*own, *regen.generation_params(), control, progress, request])
        draw = self.draw_on_gpu()

        def handler(*args, **kwargs):
            a = sig.bind(*args, **kwargs)  # 1
            a.apply_defaults()
            run = own_control(a.arguments["control"], a.arguments["request"])
            run.regen_error = ""
            ticket = None
            try:
                model = self.settings.check_model(a.arguments["model"])  # 2
                cfg = regen.gen_config(*(a.arguments[n] for n in regen.GENERATION))
                galleries = plan(*(a.arguments[p.name] for p in own))
                self.check_images(a.arguments)
                images = sum(len(d.targets or []) for draws in galleries for d in draws)
                ticket = self.admit(name, "regenerate", model, a.arguments["request"], images)  # 3
                duration = functools.partial(zerogpu.generate_seconds, cap=self.settings.gpu_seconds)
                results, stopped = zerogpu.call_on_gpu(draw, duration, galleries, model, cfg, a.arguments["progress"])
                return regen.finish(galleries, results, stopped)
            except Exception as e:  # 10
                err = as_gr_error(e)
                run.regen_error = err.message
            finally:
                if ticket is not None:
                    ticket.release()
                pez.images.release_memory()
            raise err  # outside the except: the error keeps no reference to the failure's frames

        return self._register(name, handler, sig, regen.handler_doc(description, args_doc), plan.__name__.lstrip("_"))

    def score(self, fn: Callable, name: str) -> Callable:
        """A plain model call (the score): `fn(server settings, *args)` with its model checked,
        admitted, on the GPU; `fn`'s docstring and signature (without the settings) are the API's."""
        P = inspect.Parameter
        request = P("request", P.POSITIONAL_OR_KEYWORD, default=None, annotation=gr.Request | None)
        sig = inspect.signature(fn)
        sig = sig.replace(parameters=[*list(sig.parameters.values())[1:], request])
        settings = self.settings

        def on_gpu_fn(prompt: str, image, model: str):
            return fn(settings, prompt, image, model)

        on_device = self.gpu(on_gpu_fn, zerogpu.score_seconds)

        def handler(prompt, image, model, request=None):
            # The user's obvious slips are the answer, not an error toast: pressing Score again
            # stacked "Error (3)" toasts and a red Error pill over the score (issue 24).
            if not prompt or not str(prompt).strip():
                return NOTHING_TO_SCORE.format(what="the prompt is empty (find or type one first)")
            if image is None:
                return NOTHING_TO_SCORE.format(what="add the target image first")
            model = self.settings.check_model(model)  # refused before any GPU time is reserved
            self.check_images({"image": image})
            ticket = self.admit(name, "score", model, request, 1)
            try:
                duration = functools.partial(zerogpu.score_seconds, cap=self.settings.gpu_seconds)
                return zerogpu.call_on_gpu(on_device, duration, prompt, image, model)
            finally:
                ticket.release()
                pez.images.release_memory()

        handler = friendly_errors(handler)
        return self._register(name, handler, sig, fn.__doc__, fn.__name__)


def own_control(control: prog.RunControl | None, request) -> prog.RunControl:
    """The run's control: the tab's (its Stop, its record), or a fresh one for an API caller and
    for every MCP call. gradio's MCP server calls every tool through one client session shared by
    all MCP callers, so the session's control (gr.State) would be one for all of them: one caller's
    time limit or error would read as another's (issue 23). MCP callers have no Stop button."""
    if control is None or is_mcp_call(request):
        return prog.RunControl()
    return control


def _either(a: Callable[[], bool], b: Callable[[], bool] | None) -> Callable[[], bool]:
    return a if b is None else (lambda: a() or b())


def _stream_on_gpu(
    on_device: Callable, seconds: Callable[..., int], request: tuple, run: prog.RunControl, stop: Callable[[], bool]
) -> Iterator:
    """Stream the GPU part's updates, keeping each record in the run's control. On ZeroGPU (where
    the worker sees neither Stop nor this control) Stop or the backstop ends the worker's stream
    here and an aborted GPU run ends as a stopped one; all keep the best prompt so far."""
    values = None
    stream = on_device(*request)
    try:
        for *values, record in stream:
            run.record = record
            yield tuple(values)
            if ZERO_GPU and stop():
                stream.close()  # spaces tells the worker to stop at its next update
                yield _stopped(values, run, "")
                return
    except gr.Error as e:
        reserved = seconds(*request) if ZERO_GPU else None
        if not (ZERO_GPU and zerogpu.is_abort(e) and values and run.record and run.record.get("prompt")):
            zerogpu.reraise(e, reserved)
        yield _stopped(values, run, f": the GPU run was aborted ({reserved} s reserved)")


def _stopped(values: list, run: prog.RunControl, why: str) -> tuple:
    """The last update of a run ended in the main process: its best prompt, a Stopped status."""
    record = run.record = {**run.record, "done": True, "stopped": True}
    text = f"Stopped at step {record['steps_run']}{why} — best prompt kept (score {prog.fmt_score(record['score'])})"
    return values[0], text, *values[2:]


# ---------------------------------------------------------------------------------------------
# The search tabs' events


def wire_search(
    ctx,
    buttons: list[gr.Button],
    fns: list[Callable],
    inputs: list,
    outputs: list,
    api_names: list[str],
    stop_btn: gr.Button,
) -> tuple[list, gr.State]:
    """Run button(s) -> status ("Starting…", or "Waiting…" while another run holds the model) ->
    streamed search -> History; Stop ends the tab's run; a failure leaves the error in the status
    line. Returns the search events and the tab's control (its Regenerate reads it). Call it inside
    the tab's `with gr.Tab` block: a gr.State directly under gr.Tabs makes the browser list tab
    buttons twice."""
    pipeline: Pipeline = ctx.pipeline
    control = gr.State(prog.RunControl())  # per tab and session; also holds the run record
    status = outputs[1]
    events = []

    def arm(control: prog.RunControl) -> str:
        return prog.arm_run(control, pipeline.slots.busy())

    def failed(control: prog.RunControl) -> str:
        return prog.error_status(control, busy=queue_full(ctx.demo))

    for button, fn, api_name in zip(buttons, fns, api_names, strict=True):
        evt = button.click(arm, control, status, **QUICK).then(
            fn,
            [*inputs, control],
            outputs,
            api_name=api_name,
            show_progress="full",
            show_progress_on=[outputs[2]],  # gradio's queue overlay over the plot, not over the prompt
            **pipeline.gpu_options(),
        )
        evt.failure(failed, control, status, **QUICK)
        ctx.history.save(evt, control)
        events.append(evt)
    stop_evt = stop_btn.click(stop_run, [control], [status], **QUICK)
    ctx.history.save(stop_evt, control)
    return events, control


def stop_run(control: prog.RunControl):
    """Stop: ask the run to end (it keeps its best prompt); History gets the best so far at once."""
    control.stop_at = time.monotonic()
    if control.armed and not control.started:
        return prog.STOPPED_BEFORE
    return gr.skip()  # a running search ends by itself and reports "Stopped after …"


__all__ = [
    "Admission",
    "Deadline",
    "Gate",
    "Job",
    "ModelSlots",
    "OpenGate",
    "Pipeline",
    "Search",
    "Throttle",
    "Ticket",
    "run_budget",
    "stop_run",
    "wire_search",
]
