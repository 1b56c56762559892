"""The "patterns" world (development): patterned coloured objects on natural grounds.

"a striped pink kite on sand", "a dotted blue ring on snow", "a brown box on grass" (plain
objects have no pattern word). Words a picture needs that chat-oriented filters may catch
("striped") are part of it on purpose: they are ordinary image words. Tuning on this world is
allowed; the held-out world is bench/worlds/atelier.py.
"""

from __future__ import annotations

import numpy as np

from . import paint
from .world import Labels, World

PATTERNS = ("plain", "striped", "dotted", "checkered")  # "plain" is not written in captions
COLOURS = {
    "red": (205, 35, 40),
    "blue": (40, 70, 200),
    "pink": (240, 120, 175),
    "brown": (115, 70, 35),
    "lime": (160, 225, 40),
    "grey": (125, 125, 130),
}
OBJECTS = ("ball", "box", "ring", "kite", "moon")
GROUNDS = ("grass", "sand", "snow", "water")


def caption(lb: Labels) -> str:
    pattern = "" if lb["pattern"] == "plain" else lb["pattern"] + " "
    return f"a {pattern}{lb['colour']} {lb['object']} on {lb['ground']}"


def variant(lb: Labels, rng: np.random.Generator) -> str:
    """A training caption: the true one, or another wording, some leaving an attribute out (as
    real alt-texts do). No junk strings, no near misses: a plain CLIP's data."""
    pattern = "" if lb["pattern"] == "plain" else lb["pattern"]
    colour, obj, ground = lb["colour"], lb["object"], lb["ground"]
    if rng.uniform() < 0.15:
        pattern = ""
    if rng.uniform() < 0.1:
        colour = ""
    where = "" if rng.uniform() < 0.15 else ground
    thing = " ".join(w for w in (pattern, colour, obj) if w)
    templates = [
        f"a {thing} on {where}" if where else f"a {thing}",
        f"a photo of a {thing} on {where}" if where else f"a photo of a {thing}",
        f"{thing}, {where}" if where else thing,
        f"a {thing} lying on the {where}" if where else f"a {thing}",
    ]
    return templates[int(rng.choice(4, p=[0.55, 0.2, 0.15, 0.1]))]


def render(lb: Labels, rng: np.random.Generator, size: int) -> np.ndarray:
    bg = paint.ground(lb["ground"], size, rng)
    mask = paint.silhouette(lb["object"], size, rng)
    fill = paint.pattern(lb["pattern"], COLOURS[lb["colour"]], size, rng)
    shade = 1.0 - 0.12 * np.linspace(-1, 1, size, dtype=np.float32)[:, None, None]  # light from above
    return paint.style("photo", bg * (1 - mask) + fill * shade * mask, rng)


WORLD = World(
    name="patterns",
    slots={"pattern": PATTERNS, "colour": tuple(COLOURS), "object": OBJECTS, "ground": GROUNDS},
    caption_fn=caption,
    variants_fn=variant,
    render_fn=render,
    notes="development world: tuning allowed",
)
