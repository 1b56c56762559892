"""Starting the app where gradio is not installed (issue 24): `pez app` and `python -m pez_app`
both say what to install, in one line and without a traceback. Before: `python -m pez_app`
printed a ModuleNotFoundError traceback. Run in a subprocess in which gradio cannot be imported."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# `import gradio` raises ModuleNotFoundError(name="gradio") when sys.modules holds None for it
NO_GRADIO = "import sys, runpy; sys.modules['gradio'] = None; sys.argv = ['x', *sys.argv[1:]]; "


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("python -m pez_app", NO_GRADIO + "runpy.run_module('pez_app', run_name='__main__', alter_sys=True)"),
        ("pez app", NO_GRADIO + "from pez.cli import main; sys.argv[1:1] = ['app']; main()"),
    ],
)
def test_the_app_without_gradio_says_what_to_install(name, code):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", code, "--offline-demo"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120
    )
    err = done.stderr.strip()
    assert done.returncode == 2, f"{name}: exit {done.returncode}: {err[-1500:]}"
    assert "Traceback" not in err and len(err.splitlines()) == 1, f"{name}: {err[-1500:]}"
    assert err.startswith("error: ") and "gradio" in err and "pip install" in err, f"{name}: {err}"
