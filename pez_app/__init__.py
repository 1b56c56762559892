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

import importlib

# The public names and their modules, imported on first use (PEP 562) so that `python -m pez_app`
# starts without gradio and can say what to install (pez_app/__main__.py).
_EXPORTS = {
    "CSS": "components",
    "LAUNCH_KWARGS": "components",
    "THEME": "components",
    "build_demo": "layout",
    "SERVER": "server",
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


__all__ = ["CSS", "LAUNCH_KWARGS", "SERVER", "THEME", "ServerSettings", "StartupModel", "build_demo", "startup_model"]
