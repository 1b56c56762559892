"""The whole app as one gr.Blocks: header, shared settings, one module per tab, wiring that spans
tabs (model pair -> sampling defaults, the API snippet)."""

from __future__ import annotations

import dataclasses
import threading
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from . import components as ui
from . import resilience, zerogpu
from .api_help import api_help, api_help_for
from .guard import (
    DeepLinks,
    DiskBudget,
    body_limit_kwargs,
    bound_unqueued,
    drop_idle_sessions,
    hide_etas,
    install_queue_cap,
    quiet_ui_errors,
)
from .history import HistoryStore
from .inputs import ImageList, TargetImage, limit_uploads, refuse_server_paths
from .pipeline import Gate, Pipeline
from .regenerate import RegeneratePanel
from .server import ZERO_GPU, ServerSettings, StartupModel, startup_model
from .settings import SettingsPanel, app_defaults, settings_panel
from .tabs import distill, history, image, multi, style


@dataclass
class App:
    """What one built demo carries (`demo.pez`): the settings it was built with, its start-up
    model, its request pipeline (handlers by API name: `endpoints`) and its launch arguments.
    Nothing of it lives in a module global, so two demos in one process never share it."""

    settings: ServerSettings
    start: StartupModel
    pipeline: Pipeline
    launch_kwargs: dict[str, Any]
    disk: DiskBudget | None = None  # caller bytes this server writes (data: URLs; exports may too)
    links: DeepLinks | None = None  # gradio's share links on disk, bounded

    @property
    def endpoints(self) -> dict[str, Callable]:
        return self.pipeline.endpoints


@dataclass
class BuildContext:
    """What the tab modules share while the layout is built."""

    demo: gr.Blocks
    start: StartupModel
    pipeline: Pipeline
    defaults: dict  # the app's search defaults (settings.app_defaults): the panel's and the handlers'
    settings: SettingsPanel
    history: HistoryStore
    toys: list[str]
    photos: list[str]
    styles: list[str]
    toy_styles: list[str]
    disk: DiskBudget | None = None  # where handlers write caller bytes (exports): bounded, expiring
    panels: list[RegeneratePanel] = field(default_factory=list)
    tabs: gr.Tabs | None = None
    prompt: gr.Textbox | None = None  # Image → Prompt's prompt (History sends prompts there)

    @property
    def model_value(self) -> str:
        return self.start.pair

    @property
    def offline(self) -> bool:
        return self.start.pair == "toy"


def build_demo(
    settings: ServerSettings | None = None,
    offline_demo: bool | None = None,
    start: StartupModel | None = None,
    gate: Gate | None = None,
) -> gr.Blocks:
    """Build the whole app. `settings`: the server's (default: ServerSettings.from_env(), read
    now: a mistyped PEZ_* is a ConfigError naming it); `offline_demo` overrides theirs; without it
    the default pair is probed once (cached or downloadable?) and the toy world is used when it is
    neither. `gate`: the pipeline's admission (default: pipeline.OpenGate). The demo carries what
    it was built with as `demo.pez` (App)."""
    settings = settings or ServerSettings.from_env()
    if offline_demo is not None:
        settings = dataclasses.replace(settings, offline_demo=offline_demo)
    start = start or startup_model(settings.offline_demo, settings.probe_seconds)
    if ZERO_GPU:  # the start-up pair on `cuda` at import: packed once, restored fast in each GPU worker
        zerogpu.preload(start.pair, settings)
    defaults = app_defaults(settings)
    pipeline = Pipeline(settings, start.pair, defaults, gate)
    toys = ui.toy_examples()
    disk = server_disk(settings)
    # Uploads and results in gradio's cache are removed after an hour (checked every 10 minutes).
    with gr.Blocks(title="pez — image to prompt", delete_cache=CACHE_RETENTION) as demo:
        ui.header(start)
        ctx = BuildContext(
            demo=demo,
            start=start,
            pipeline=pipeline,
            defaults=defaults,
            settings=settings_panel(start.pair, settings, defaults),
            history=HistoryStore(),
            toys=toys,
            photos=ui.photo_examples(),
            styles=ui.style_examples(),
            toy_styles=ui.toy_style_examples() if toys else [],
            disk=disk,
        )
        with gr.Tabs(elem_id="tabs") as tabs:
            ctx.tabs = tabs
            for tab in (image, multi, style, distill, history):
                tab.build(ctx)

        with gr.Accordion("Use it from Python (gradio_client) or as MCP tools", open=False):
            snippet = gr.Markdown(api_help(model=start.pair))

        def snippet_for(request: gr.Request):
            return api_help_for(request, start.pair)

        demo.load(snippet_for, None, snippet, **ui.QUICK)

        # Model pair -> that pair's sampling defaults in every regenerate panel.
        outs = [c for p in ctx.panels for c in (p.steps, p.guidance)]
        ctx.settings.model.change(
            lambda m: [u for p in ctx.panels for u in p.pair_defaults(m)], ctx.settings.model, outs, **ui.QUICK
        )
    limits = settings.limits
    for block in demo.blocks.values():  # every image input held to this server's PEZ_MAX_FILE_MB
        if isinstance(block, (TargetImage, ImageList)):
            limit_uploads(block, limits.max_file_mb, disk)
    refuse_server_paths(demo)
    # api_open=False: a queued endpoint is reached only through the queue (and its one GPU slot),
    # never by POST /gradio_api/run/<name> around it.
    demo.queue(max_size=settings.queue_size, default_concurrency_limit=settings.gpu_concurrency, api_open=False)
    # Per caller: at most PEZ_MAX_JOBS_PER_CALLER queued + running jobs (429 beyond), taken in turn
    # (round robin by caller); un-queued UI handlers a few at once.
    by_address = settings.trusted_proxies > 0
    install_queue_cap(demo, limits.max_jobs, settings.trusted_proxies, by_address=by_address)
    bound_unqueued(demo, UNQUEUED_PER_CALLER, settings.trusted_proxies, by_address=by_address)
    hide_etas(demo)  # a rank is true; gradio's time estimate is not (guard.hide_etas)
    quiet_ui_errors(demo)  # a script's malformed browser-only event: a message, one log line
    links = share_links(settings)
    launch = {
        **ui.LAUNCH_KWARGS,
        "max_file_size": f"{limits.max_file_mb}mb",  # one uploaded file
        # any body, every route; share links bounded (guard.DeepLinks)
        "app_kwargs": body_limit_kwargs(
            limits.max_body_mb << 20,
            blocks=demo,
            links=links,
            trusted_proxies=settings.trusted_proxies,
            by_address=by_address,
        ),
        "state_session_capacity": settings.sessions,  # sessions whose state gradio keeps (LRU)
        "head": resilience.HEAD,  # a run survives losing the server, in the browser
    }
    demo.pez = App(settings, start, pipeline, launch, disk, links)
    housekeeping(demo, disk, links)
    return demo


CACHE_RETENTION = (600, 3600)  # gradio's delete_cache: (check every s, remove files older than s)
UNQUEUED_PER_CALLER = 8  # un-queued UI handlers (previews, upload checks) running at once per caller
SESSION_IDLE_SECONDS = 3 * 3600  # a session unused this long loses its state (guard.SESSION_NOTES)
HOUSEKEEPING_SECONDS = 600.0
SHARE_LINK_DAYS = 7  # a share link is removed this long after it was made
SHARE_LINKS_PER_CALLER = 20  # live share links per caller (session; address behind a trusted proxy)
SHARE_LINK_MAX_MB = 16  # one share link (the page's state as gradio saves it)


def share_links(settings: ServerSettings) -> DeepLinks:
    """gradio's share links on disk (<upload folder>/deep_links), bounded: PEZ_SHARE_LINKS links and
    PEZ_SHARE_MB in all, SHARE_LINKS_PER_CALLER each (a quarter of all at most: one caller cannot
    push every other caller's links out), SHARE_LINK_DAYS old at most."""
    from gradio.utils import get_upload_folder

    return DeepLinks(
        Path(get_upload_folder()) / "deep_links",
        settings.share_mb << 20,
        settings.share_links,
        max_age=SHARE_LINK_DAYS * 86400,
        max_link_bytes=SHARE_LINK_MAX_MB << 20,
        per_caller=min(SHARE_LINKS_PER_CALLER, max(1, settings.share_links // 4)),  # a quarter at most
    )


def server_disk(settings: ServerSettings) -> DiskBudget:
    """The folder caller bytes go to (data: URLs; exports may use it too: demo.pez.disk), inside
    gradio's cache folder (so gradio may serve what it holds: only verified images and the app's
    own files), at most PEZ_DISK_MB in all, each file kept an hour at most."""
    from gradio.utils import get_upload_folder

    folder = Path(get_upload_folder()) / f"pez-{uuid.uuid4().hex[:12]}"
    limits = settings.limits
    return DiskBudget(
        folder,
        settings.disk_mb << 20,
        max_files=4096,
        max_age=CACHE_RETENTION[1],
        max_file_bytes=limits.max_file_mb << 20,
    )


def housekeeping(
    demo: gr.Blocks, disk: DiskBudget, links: DeepLinks | None = None, every: float = HOUSEKEEPING_SECONDS
) -> threading.Thread:
    """A daemon thread that, every `every` s while `demo` exists, removes expired caller files and
    share links, and the state of sessions idle for SESSION_IDLE_SECONDS (gradio keeps all until
    evicted)."""
    ref = weakref.ref(demo)
    stop = threading.Event()

    def loop():
        while not stop.wait(every):
            blocks = ref()
            if blocks is None:
                return
            disk.cleanup()
            if links is not None:
                links.cleanup()
            drop_idle_sessions(blocks, SESSION_IDLE_SECONDS)
            del blocks

    thread = threading.Thread(target=loop, name="pez-housekeeping", daemon=True)
    thread.start()
    return thread
