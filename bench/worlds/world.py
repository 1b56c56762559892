"""A benchmark world: named attribute slots, captions, a deterministic renderer and its CLIP.

A world is a few slots (e.g. pattern, colour, object, ground), each with its words; an image
is one value per slot, rendered from a seed. Training seeds are below EVAL_SEED_BASE, held-out
evaluation images use seeds from it on, so the evaluation images are never seen in training and
are rendered on the fly (no PNGs in the repository). The CLIP of each world lives in
bench/worlds/<name>/ (open_clip_config.json + fp16 safetensors) and loads as `local-dir:PATH`.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
EVAL_SEED_BASE = 1_000_000_000  # render seeds >= this are never used in training
SIZE = 64  # pixels; the worlds' CLIPs read 64 x 64 images

Labels = dict[str, str]  # slot -> value, e.g. {"pattern": "striped", "colour": "red", ...}


@dataclass(frozen=True)
class World:
    """Slots and words of a world, how to caption and render an image, and where its CLIP is."""

    name: str
    slots: dict[str, tuple[str, ...]]  # slot -> its values, in caption order
    caption_fn: Callable[[Labels], str]  # the true (canonical) caption of an image
    variants_fn: Callable[[Labels, np.random.Generator], str]  # a training caption, as alt-texts vary
    render_fn: Callable[[Labels, np.random.Generator, int], np.ndarray]  # -> (S, S, 3) float RGB
    held_out: bool = False  # True: measure once at the end, never tune on it (see its README)
    notes: str = field(default="", compare=False)

    @property
    def model_dir(self) -> Path:
        return HERE / self.name

    @property
    def model_spec(self) -> str:
        return f"local-dir:{self.model_dir}"

    def combos(self) -> list[Labels]:
        """Every combination of slot values, in a fixed order."""
        keys = list(self.slots)
        return [dict(zip(keys, vals)) for vals in itertools.product(*self.slots.values())]

    def caption(self, labels: Labels) -> str:
        return self.caption_fn(labels)

    def train_caption(self, labels: Labels, rng: np.random.Generator) -> str:
        return self.variants_fn(labels, rng)

    def render(self, labels: Labels, seed: int, size: int = SIZE) -> Image.Image:
        """The image of `labels`, deterministic in seed."""
        from .paint import to_image

        unknown = {k: v for k, v in labels.items() if v not in self.slots.get(k, ())}
        if unknown or set(labels) != set(self.slots):
            raise ValueError(f"{self.name}: expected one value per slot of {self.slots}, received {labels}")
        return to_image(self.render_fn(labels, np.random.default_rng(seed), size))

    def random_labels(self, rng: np.random.Generator) -> Labels:
        return {k: vals[int(rng.integers(len(vals)))] for k, vals in self.slots.items()}

    def eval_cases(self, n: int) -> list[tuple[Labels, int]]:
        """n held-out (labels, render seed) pairs: combos drawn without repetition by a generator
        seeded from the world's name, render seeds EVAL_SEED_BASE + i."""
        rng = np.random.default_rng(zlib.crc32(self.name.encode()))
        combos = self.combos()
        order = rng.permutation(len(combos))
        return [(combos[int(order[i % len(combos)])], EVAL_SEED_BASE + i) for i in range(n)]

    def words(self) -> set[str]:
        """Every word of every true caption (lower case)."""
        return {w for labels in self.combos() for w in self.caption(labels).lower().split()}


__all__ = ["EVAL_SEED_BASE", "HERE", "SIZE", "World"]
