"""The whole app as one gr.Blocks: header, shared settings, one module per tab, wiring that spans
tabs (model pair -> sampling defaults, the API snippet)."""

from __future__ import annotations

from dataclasses import dataclass, field

import gradio as gr

from . import components as ui
from . import zerogpu
from .api_help import api_help, api_help_for
from .history import HistoryStore
from .regenerate import RegeneratePanel
from .server import SERVER, ZERO_GPU, Limits, StartupModel, startup_model
from .settings import SettingsPanel, settings_panel
from .tabs import distill, history, image, multi, style


@dataclass
class BuildContext:
    """What the tab modules share while the layout is built."""

    demo: gr.Blocks
    start: StartupModel
    settings: SettingsPanel
    history: HistoryStore
    toys: list[str]
    photos: list[str]
    styles: list[str]
    toy_styles: list[str]
    panels: list[RegeneratePanel] = field(default_factory=list)
    tabs: gr.Tabs | None = None
    prompt: gr.Textbox | None = None  # Image → Prompt's prompt (History sends prompts there)

    @property
    def model_value(self) -> str:
        return self.start.pair

    @property
    def offline(self) -> bool:
        return self.start.pair == "toy"

    def share_button(self) -> None:
        gr.DeepLinkButton("🔗 Share this result (copies a link)", copied_value="🔗 Link copied", size="sm")


def build_demo(offline_demo: bool | None = None, start: StartupModel | None = None) -> gr.Blocks:
    """Build the whole app. `offline_demo` defaults to the server setting; without it the default
    pair is probed once (cached or downloadable?) and the toy world is used when it is neither.
    The server's per-request caps are read from the environment now (server.Limits.from_env)."""
    SERVER.limits = Limits.from_env(SERVER.allowed_models)
    ui.LAUNCH_KWARGS["max_file_size"] = f"{SERVER.limits.max_file_mb}mb"
    start = start or startup_model(offline_demo)
    if ZERO_GPU:  # the start-up pair on `cuda` at import: packed once, restored fast in each GPU worker
        zerogpu.preload(start.pair)
    toys = ui.toy_examples()
    # Uploads and results in gradio's cache are removed after a day (checked every hour).
    with gr.Blocks(title="pez — image to prompt", delete_cache=(3600, 86400)) as demo:
        ui.header(start)
        ctx = BuildContext(
            demo=demo,
            start=start,
            settings=settings_panel(start.pair),
            history=HistoryStore(),
            toys=toys,
            photos=ui.photo_examples(),
            styles=ui.style_examples(),
            toy_styles=ui.toy_style_examples() if toys else [],
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
    # api_open=False: a queued endpoint is reached only through the queue (and its one GPU slot),
    # never by POST /gradio_api/run/<name> around it.
    demo.queue(max_size=SERVER.queue_size, default_concurrency_limit=SERVER.gpu_concurrency, api_open=False)
    demo.pez_start = start  # what the banner says, for tests and the launcher's log
    return demo
