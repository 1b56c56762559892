"""The layering, read from the source by scripts/import_graph.py: no import cycle, the core never
imports the app, and the core's library never imports the test fixtures."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_script():
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "scripts" / "import_graph.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_import_cycle_and_no_import_against_the_layers(capsys):
    assert load_script().main() == 0, capsys.readouterr().out


def test_the_graph_sees_a_cycle_and_an_upward_import():
    """Guard: the checks can fail (a cycle and an import of the app are found in a made-up graph)."""
    script = load_script()
    assert script.cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
    known = script.modules()
    assert script.imports("pez_app.main", known["pez_app.main"], known) >= {"pez_app.server", "pez_app.layout"}
