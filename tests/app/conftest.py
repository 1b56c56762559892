"""The app tier: the Gradio app's handlers, its named endpoints through gradio_client on an in-process
server, and MCP. `python -m pytest tests/app` (or `-m app`).

Marks every test collected under this folder `app` (markers are registered in pyproject.toml).
"""

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.app)
