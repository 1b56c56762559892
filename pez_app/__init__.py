"""pez's Gradio app as a small package (the core, `pez/`, never imports it).

    server.py      how this server runs: ServerSettings (PEZ_* and the flags, read once when the
                   app is built) and Limits, friendly errors, the start-up model
    pipeline.py    the request path every search, regeneration and score takes: check, admit (the
                   Gate: where per-caller budgets go), clock (the run's time budget), GPU, load,
                   run, stream, finish, errors; and the search tabs' Run/Stop wiring
    settings.py    the shared search settings, generated from pez.config's field metadata
    progress.py    a run's progress as UI values (status line, loss plot, candidates, run record)
                   and RunControl, one tab's Run/Stop state
    inputs.py      the input components every caller reaches (images, model, numbers): what each
                   accepts, one message naming the field for anything else
    components.py  widgets and look: CSS/theme, image drop zones, run/stop buttons, progress
                   outputs, examples, banner
    regenerate.py  the one regenerate panel every tab uses, and what a regeneration draws
    zerogpu.py     ZeroGPU: preloading, the GPU seconds each request reserves, its errors reworded
    downloads.py   weight downloads' bytes / total for the status line
    history.py     History in the browser (merged across tabs), its rows and export
    api_help.py    the in-app "Use it from Python" snippet
    tabs/          one module per tab: its inputs -> a pipeline Job (a Search spec), its layout
    layout.py      build_demo(settings): the header, settings and tabs as one gr.Blocks; the demo
                   carries what it was built with as `demo.pez` (App: settings, pipeline, endpoints)

`app.py` at the repository root is the entry point (module-level `demo`, CLI flags, launch).
"""

import importlib

# The public names and their modules, imported on first use (PEP 562) so that `python -m pez_app`
# starts without gradio and can say what to install (pez_app/__main__.py).
_EXPORTS = {
    "CSS": "components",
    "LAUNCH_KWARGS": "components",
    "THEME": "components",
    "App": "layout",
    "build_demo": "layout",
    "Admission": "pipeline",
    "Gate": "pipeline",
    "OpenGate": "pipeline",
    "Pipeline": "pipeline",
    "Ticket": "pipeline",
    "Limits": "server",
    "ServerSettings": "server",
    "StartupModel": "server",
    "startup_model": "server",
}


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


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
