"""Regeneration: images from a prompt with the pair's diffusion model, scored by CLIP.

    pipeline.py   loading each pair's diffusers pipeline once, shared behind a lock
    run.py        checks, running (diffusers or the toy generator), progress, CLIP scores: generate()

`pez.regenerate` is `generate` (exported lazily by pez: importing diffusers takes seconds).
"""

from .pipeline import LoadedGenerator, clear_generators, load_generator
from .run import (
    GenerationResult,
    GenerationSettings,
    GenerationStep,
    ImageScores,
    generate,
    resolve_settings,
    score_images,
    target_features,
)

regenerate = generate  # the name pez exports it under

__all__ = [
    "GenerationResult",
    "GenerationSettings",
    "GenerationStep",
    "ImageScores",
    "LoadedGenerator",
    "clear_generators",
    "generate",
    "load_generator",
    "regenerate",
    "resolve_settings",
    "score_images",
    "target_features",
]
