"""The end-to-end tier: full-size replicas, a real browser, load, downloads, the CLI and scripts in
real processes. `python -m pytest tests/e2e` (or `-m e2e`).

Marks every test collected under this folder `e2e` (markers are registered in pyproject.toml).
"""

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.e2e)
