"""Benchmark worlds the project has not tuned on: synthetic images with known captions, each with
its own small CLIP trained by a plain contrastive recipe (bench/worlds/train.py).

    from bench.worlds import get_world
    world = get_world("patterns")            # development world
    image = world.render(labels, seed)       # deterministic
    clip = pez.load_clip(world.model_spec)   # local-dir:bench/worlds/patterns

"weather" is HELD OUT: measure on it once at the end, never tune on it ("atelier" was, and is spent).
"""

from __future__ import annotations

from .world import EVAL_SEED_BASE, World


def get_world(name: str) -> World:
    from . import atelier, patterns, weather

    worlds = {w.name: w for w in (patterns.WORLD, atelier.WORLD, weather.WORLD)}
    if name not in worlds:
        raise ValueError(f"world: expected one of {sorted(worlds)}, received {name!r}")
    return worlds[name]


WORLD_NAMES = ("patterns", "atelier", "weather")

__all__ = ["EVAL_SEED_BASE", "WORLD_NAMES", "World", "get_world"]
