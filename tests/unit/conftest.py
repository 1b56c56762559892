"""The fast tier: the engine, config, vocabulary, generation, toy world, CLI parsing and batch runs
in-process, on tiny random or toy models. `python -m pytest tests/unit` (or `-m unit`).

Marks every test collected under this folder `unit` (markers are registered in pyproject.toml).
"""

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.unit)
