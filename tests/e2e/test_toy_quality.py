"""PEZ end to end against the shipped toy CLIP, where the right prompt of every image is known.

A few held-out renders are inverted with a short run (prompt length 4, 300 steps, 4 candidate
prompts). Most must reach at least the true caption's score, and most must name the right
colour and shape. bench/quality.py measures the same on more images.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

import pez
from pez import toy

pytestmark = pytest.mark.skipif(
    not (toy.ASSETS_DIR / toy.WEIGHTS_FILE).is_file(), reason="toy CLIP not built (python -m pez.toy train)"
)

CASES = [("red", "circle"), ("blue", "star"), ("yellow", "triangle")]
SEED_BASE = toy.EVAL_SEED_BASE + 700_000  # held out: training never uses seeds this high


@pytest.fixture(scope="module")
def inversions(one_thread):
    """(colour, shape, true caption's score, result) for each case."""
    clip = pez.load_clip("toy", device="cpu")
    config = pez.InvertConfig(prompt_len=4, steps=300, candidates=4, seed=0)
    out = []
    for i, (colour, shape) in enumerate(CASES):
        image = toy.render(colour, shape, SEED_BASE + i)
        truth = pez.score_texts(clip, [toy.caption(colour, shape)], [image])[0]
        out.append((colour, shape, truth, pez.invert([image], model=clip, config=config)))
    return out


def test_pez_scores_at_least_the_true_caption(inversions):
    report = [(toy.caption(c, s), round(t, 3), r.prompt, round(r.score, 3)) for c, s, t, r in inversions]
    assert sum(r.score >= t for _, _, t, r in inversions) >= 2, report


def test_pez_names_the_colour_and_shape(inversions):
    report = [(toy.caption(c, s), r.prompt) for c, s, _, r in inversions]
    found = [toy.words_in(r.prompt) for _, _, _, r in inversions]
    right = [c in colours and s in shapes for (c, s, _, _), (colours, shapes) in zip(inversions, found)]
    assert sum(right) >= 2, report
