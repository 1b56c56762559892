"""Load: eight concurrent sessions against the app (scripts/load_test.py, gradio_client on an
in-process server bound to 127.0.0.1), each getting its own result."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODEL = "random:tiny"


def load_script():
    spec = importlib.util.spec_from_file_location("load_test", ROOT / "scripts" / "load_test.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_eight_concurrent_sessions_each_get_their_own_result():
    report = load_script().run_load_test(
        sessions=8, steps=200, prompt_len=4, model=MODEL, timeout=150
    )  # long enough to stream
    assert report.ok, report.table()
    assert len({s.final for s in report.sessions}) >= 6  # distinct images -> (mostly) distinct prompts
    assert any(len(s.prompts) > 2 for s in report.sessions), "no session saw a live update"
