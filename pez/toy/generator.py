"""The toy world's "generator" (a prompt -> renders of the colour and shape it names) and the
app's example images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ConfigError
from .clip import ASSETS_DIR
from .world import COLOURS, DEFAULT_SIZE, EVAL_SEED_BASE, SHAPES, find_words, render


def toy_generate(prompt: str, seed: int = 0, num_images: int = 1, size: int = DEFAULT_SIZE) -> list[Image.Image]:
    """The toy world's "generator": draws the first colour and shape the prompt names.

    Image k uses seed + k. A colour or shape the prompt does not name is picked at random
    (from the same seed), so every prompt gives an image.
    """
    if not isinstance(prompt, str):
        raise ConfigError(f"prompt: expected a string, received {type(prompt).__name__}")
    if num_images < 1 or size < 8:
        raise ConfigError(f"toy_generate: expected num_images >= 1 and size >= 8, received {num_images}, {size}")
    colour, shape = find_words(prompt)
    images = []
    for k in range(num_images):
        pick = np.random.default_rng([seed + k, 1])  # independent of render's own stream
        c = colour or COLOURS[pick.integers(len(COLOURS))]
        s = shape or SHAPES[pick.integers(len(SHAPES))]
        images.append(render(c, s, seed + k, size))
    return images


# ---------------------------------------------------------------------------------------------
# The app's example images

EXAMPLES_DIR = ASSETS_DIR.parent / "examples"
EXAMPLES: tuple[tuple[str, str], ...] = (
    ("red", "circle"),
    ("blue", "star"),
    ("green", "triangle"),
    ("yellow", "heart"),
    ("purple", "square"),
    ("orange", "cross"),
)


def write_examples(out_dir: str | Path = EXAMPLES_DIR) -> list[Path]:
    """Render the app's example images (held-out seeds) as toy_{colour}_{shape}.png."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (colour, shape) in enumerate(EXAMPLES):
        path = out / f"toy_{colour}_{shape}.png"
        render(colour, shape, EVAL_SEED_BASE + 900_000 + i).save(path)
        paths.append(path)
    return paths


__all__ = ["EXAMPLES", "EXAMPLES_DIR", "toy_generate", "write_examples"]
