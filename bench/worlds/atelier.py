"""The "atelier" world (HELD OUT): objects of a material in a scene, in an art style.

"a watercolor of a marble vase at night", "a sketch of a wooden fish in a forest", "a mosaic
of a golden bell by the sea". Its words (art styles, materials, scenes) appear in no other
benchmark of the project.

HELD-OUT RULE: measure on this world once, at the very end, with the method list fixed
beforehand. Never tune a default, a constant or a method on it; a result seen here cannot be
"fixed" here. bench/worlds/atelier/README.md repeats this.
"""

from __future__ import annotations

import numpy as np

from . import paint
from .world import Labels, World

STYLES = ("photo", "watercolor", "sketch", "mosaic")
MATERIALS = ("wooden", "marble", "glass", "golden")
OBJECTS = ("vase", "bowl", "bell", "fish", "key")
SCENES = {"sea": "by the sea", "desert": "in a desert", "night": "at night", "forest": "in a forest"}


def caption(lb: Labels) -> str:
    return f"a {lb['style']} of a {lb['material']} {lb['object']} {SCENES[lb['scene']]}"


def variant(lb: Labels, rng: np.random.Generator) -> str:
    """A training caption: the true one or another wording, some leaving an attribute out."""
    style, material, obj = lb["style"], lb["material"], lb["object"]
    where = "" if rng.uniform() < 0.15 else SCENES[lb["scene"]]
    if rng.uniform() < 0.1:
        material = ""
    thing = " ".join(w for w in (material, obj, where) if w)
    if rng.uniform() < 0.15:
        return f"a {thing}"
    templates = [f"a {style} of a {thing}", f"{thing}, {style}", f"{style} of a {thing}"]
    return templates[int(rng.choice(3, p=[0.6, 0.25, 0.15]))]


def render(lb: Labels, rng: np.random.Generator, size: int) -> np.ndarray:
    bg = paint.scene(lb["scene"], size, rng)
    mask = paint.silhouette(lb["object"], size, rng, scale=(0.28, 0.42))
    fill = paint.material(lb["material"], size, rng, behind=bg)
    return paint.style(lb["style"], bg * (1 - mask) + fill * mask, rng)


WORLD = World(
    name="atelier",
    slots={"style": STYLES, "material": MATERIALS, "object": OBJECTS, "scene": tuple(SCENES)},
    caption_fn=caption,
    variants_fn=variant,
    render_fn=render,
    held_out=True,
    notes="HELD-OUT world: measure once at the end, never tune on it",
)
