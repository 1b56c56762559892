"""The fast tier: the engine, config, vocabulary, generation, toy world, CLI parsing and batch runs
in-process, on tiny random or toy models. `python -m pytest tests/unit` (or `-m unit`).

Every test collected under this folder is marked `unit` (markers are registered in pyproject.toml).
"""

import pez

from ..conftest import mark_folder

# The plain PEZ search, a few fast steps (no refinement or pruning after it; the custom style so
# the readable style's vocabulary and pruning are not applied): test_engine and test_polish.
PLAIN_SEARCH = pez.InvertConfig(
    prompt_len=4,
    steps=12,
    report_every=4,
    candidates=2,
    seed=0,
    refine_steps=0,
    prune_tolerance=0,
    prompt_style="custom",
)

pytest_collection_modifyitems = mark_folder(__file__, "unit")
