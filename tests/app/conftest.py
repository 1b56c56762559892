"""The app tier: the Gradio app's handlers, its named endpoints through gradio_client on an in-process
server, and MCP. `python -m pytest tests/app` (or `-m app`).

Every test collected under this folder is marked `app` (markers are registered in pyproject.toml).
"""

import pytest

from ..conftest import mark_folder
from ..public_server import PUBLIC_ENV, start_server

pytest_collection_modifyitems = mark_folder(__file__, "app")


@pytest.fixture(scope="package")
def public_server(tmp_path_factory):
    """`python app.py --offline-demo` in a subprocess with PUBLIC_ENV: one for the public API and
    MCP tests (test_public_api.py, test_public_mcp.py), stopped when this folder's tests end."""
    srv = start_server(tmp_path_factory.mktemp("public"), PUBLIC_ENV)
    yield srv
    srv.stop()
