"""The end-to-end tier: full-size replicas, a real browser, load, downloads, the CLI and scripts in
real processes. `python -m pytest tests/e2e` (or `-m e2e`).

Every test collected under this folder is marked `e2e` (markers are registered in pyproject.toml).
"""

from ..conftest import mark_folder

pytest_collection_modifyitems = mark_folder(__file__, "e2e")
