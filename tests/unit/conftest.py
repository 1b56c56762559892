"""The fast tier: the engine, config, vocabulary, generation, toy world, CLI parsing and batch runs
in-process, on tiny random or toy models. `python -m pytest tests/unit` (or `-m unit`).

Every test collected under this folder is marked `unit` (markers are registered in pyproject.toml).
"""

from ..conftest import mark_folder

pytest_collection_modifyitems = mark_folder(__file__, "unit")
