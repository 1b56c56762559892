"""pez's Gradio app as a small package (the core, `pez/`, never imports it).

    server.py      how this server runs: settings and per-request limits, ZeroGPU, friendly errors,
                   the start-up model
    settings.py    the shared search settings, generated from pez.config's field metadata
    progress.py    a run's progress as UI values (status line, loss plot, candidates, run record)
                   and RunControl, one tab's Run/Stop state
    inputs.py      the input components every caller reaches (images, model, numbers): what each
                   accepts, one message naming the field for anything else
    components.py  shared pieces: CSS/theme, image drop zones, run/stop, the search handler factory
                   and its wiring, examples, banner
    regenerate.py  the one regenerate panel every tab uses, and the regenerate handler factory
    downloads.py   weight downloads' bytes / total for the status line
    history.py     History in the browser (merged across tabs), its rows and export
    api_help.py    the in-app "Use it from Python" snippet
    tabs/          one module per tab (layout and handlers): image, multi, style, distill, history
    layout.py      build_demo(): the header, settings and tabs as one gr.Blocks

`app.py` at the repository root is the entry point (module-level `demo`, CLI flags, launch).
"""

from .components import CSS, LAUNCH_KWARGS, THEME
from .layout import App, build_demo
from .pipeline import Admission, Gate, OpenGate, Pipeline, Ticket
from .server import Limits, ServerSettings, StartupModel, startup_model

__all__ = [
    "CSS",
    "LAUNCH_KWARGS",
    "THEME",
    "Admission",
    "App",
    "Gate",
    "Limits",
    "OpenGate",
    "Pipeline",
    "ServerSettings",
    "StartupModel",
    "Ticket",
    "build_demo",
    "startup_model",
]
