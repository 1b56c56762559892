"""The tiny random CLIPs behind the specs "random:tiny" and "random:tiny-wide": unit tests and
quick benchmark smoke runs.

"random:tiny": two text layers of width 32 and a one-layer ViT, seeded, with the real 49,408-token
vocabulary of CLIP's BPE (the tokenizer is open_clip's ViT-B-32 one), so PEZ runs on it as on a
real CLIP. "random:tiny-wide": a second, different tower with the same tokenizer (three text
layers of width 48, QuickGELU, features of 40), so "random:tiny+random:tiny-wide" is a joint
search of two towers of two widths, as SDXL's ViT-L/14 and bigG/14 are.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

TINY_CONFIG = {  # open_clip.model.CLIP(**TINY_CONFIG)
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
TINY_WIDE_CONFIG = {
    "embed_dim": 40,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 48, "heads": 2, "layers": 3},
}
TINY_CONFIGS = {"tiny": (TINY_CONFIG, 0), "tiny-wide": (TINY_WIDE_CONFIG, 1)}  # name -> (config, seed)


def tiny_clip_model(seed: int | None = None, name: str = "tiny") -> tuple[torch.nn.Module, Callable]:
    """(model, eval preprocess) of the tiny CLIP `name`, weights drawn from `seed` (default: its
    own), fp32, CPU."""
    import open_clip

    config, own_seed = TINY_CONFIGS[name]
    torch.manual_seed(own_seed if seed is None else seed)
    model = open_clip.model.CLIP(**config)
    preprocess = open_clip.image_transform(config["vision_cfg"]["image_size"], is_train=False)
    return model, preprocess


def tiny_clip(name: str = "tiny") -> tuple[torch.nn.Module, Callable, object]:
    """(model, eval preprocess, tokenizer) of the tiny CLIP `name`: what the spec "random:NAME" loads."""
    import open_clip

    model, preprocess = tiny_clip_model(name=name)
    return model, preprocess, open_clip.get_tokenizer("ViT-B-32")


__all__ = ["TINY_CONFIG", "TINY_CONFIGS", "TINY_WIDE_CONFIG", "tiny_clip", "tiny_clip_model"]
