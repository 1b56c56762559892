"""The app tier: the Gradio app's handlers, its named endpoints through gradio_client on an in-process
server, and MCP. `python -m pytest tests/app` (or `-m app`).

Every test collected under this folder is marked `app` (markers are registered in pyproject.toml).
"""

from ..conftest import mark_folder

pytest_collection_modifyitems = mark_folder(__file__, "app")
