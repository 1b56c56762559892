"""The tiny random CLIP behind the spec "random:tiny": unit tests and quick benchmark smoke runs.

Two text layers of width 32 and a one-layer ViT, seeded, with the real 49,408-token vocabulary of
CLIP's BPE (the tokenizer is open_clip's ViT-B-32 one), so PEZ runs on it as on a real CLIP.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

TINY_CONFIG = {  # open_clip.model.CLIP(**TINY_CONFIG)
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


def tiny_clip_model(seed: int = 0) -> tuple[torch.nn.Module, Callable]:
    """(model, eval preprocess) of the tiny CLIP, weights drawn from `seed` (fp32, CPU)."""
    import open_clip

    torch.manual_seed(seed)
    model = open_clip.model.CLIP(**TINY_CONFIG)
    preprocess = open_clip.image_transform(TINY_CONFIG["vision_cfg"]["image_size"], is_train=False)
    return model, preprocess


__all__ = ["TINY_CONFIG", "tiny_clip_model"]
