"""pez: hard prompts for images with PEZ (Wen et al., "Hard Prompts Made Easy", NeurIPS 2023).

A soft prompt is optimised with gradients taken at its nearest-neighbour projection onto
CLIP's vocabulary, so the result is real text any diffusion model accepts. The public API:

    import pez
    result = pez.invert(["cat.jpg"], model="sd-turbo", config=pez.InvertConfig(steps=500))
    result.prompt, result.score  # the best text and its mean CLIP cosine to the images

    # SDXL reads a prompt with two CLIPs: one prompt, scored in both (weights: a setting)
    result = pez.invert(["cat.jpg"], model="sdxl", config=pez.InvertConfig(clip_weights=(0.5, 0.5)))
    result.clip_scores  # {"ViT-L-14/openai": ..., "ViT-bigG-14/laion2b_s39b_b160k": ...}; score = weighted sum

Where things are (README, "Code layout"): the settings in config.py, the search in engine/ (the
loop and the loss in engine/optim.py), models and the Hub in models/, regeneration in generate/,
the tasks in inversion.py, the command line in cli.py, the toy world in toy/.
"""

from .config import BOUNDS, STYLE_TEMPLATE, GenerateConfig, InvertConfig
from .engine.features import image_features, image_similarity, score_texts, text_features
from .engine.optim import Targets, optimize
from .engine.tower import PromptEncoder
from .errors import ConfigError, InvalidImageError, WeightsNotFoundError
from .images import load_image, load_images
from .inversion import (
    apply_style,
    concatenate,
    concatenate_stream,
    distill,
    distill_stream,
    image_targets,
    invert,
    invert_stream,
    join_prompts,
    style_prompts,
    text_targets,
)
from .models import (
    DEFAULT_PAIR,
    PAIRS,
    JointClip,
    LoadedClip,
    ModelPair,
    TextSpace,
    get_clip,
    get_pair,
    list_pairs,
    load_clip,
    resolve_device,
)
from .results import ConcatReport, ConcatResult, InversionResult, ScoredPrompt, StepReport

__version__ = "0.1.0"

# Regeneration lives in pez.generate, which imports diffusers (slow): exported lazily.
_LAZY = ("regenerate", "load_generator", "GenerationResult")


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module("pez.generate"), name)
    raise AttributeError(f"module 'pez' has no attribute {name!r}")


__all__ = [
    "BOUNDS",
    "ConcatReport",
    "ConcatResult",
    "ConfigError",
    "DEFAULT_PAIR",
    "GenerateConfig",
    "GenerationResult",
    "InvalidImageError",
    "InvertConfig",
    "InversionResult",
    "JointClip",
    "LoadedClip",
    "ModelPair",
    "TextSpace",
    "PAIRS",
    "PromptEncoder",
    "STYLE_TEMPLATE",
    "ScoredPrompt",
    "StepReport",
    "Targets",
    "WeightsNotFoundError",
    "apply_style",
    "concatenate",
    "concatenate_stream",
    "distill",
    "distill_stream",
    "get_clip",
    "get_pair",
    "image_features",
    "image_similarity",
    "image_targets",
    "invert",
    "invert_stream",
    "join_prompts",
    "list_pairs",
    "load_clip",
    "load_generator",
    "load_image",
    "load_images",
    "optimize",
    "regenerate",
    "resolve_device",
    "score_texts",
    "style_prompts",
    "text_features",
    "text_targets",
]
