"""The toy world's CLIP: its architecture, its shipped weights (assets/toy_clip), loading them.

A tiny open_clip CLIP (a ModifiedResNet image tower, a 2-layer text tower) with the real
ViT-B-32 tokenizer and its whole 49,408-token vocabulary, so PEZ runs on it exactly as on a real
CLIP. The weights are trained by pez.toy.train (`python -m pez.toy train`) and ship as fp16
safetensors in open_clip's hub layout, so "local-dir:" loading works too.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

from ..errors import WeightsNotFoundError
from ..paths import asset_path
from .world import COLOURS, SHAPES

ASSETS_DIR = asset_path("toy_clip")  # assets/toy_clip (pez/assets/toy_clip in a wheel)
CONFIG_FILE = "open_clip_config.json"  # open_clip's hub layout, so "local-dir:" loading works too
WEIGHTS_FILE = "open_clip_model.safetensors"
MEAN = STD = (0.5, 0.5, 0.5)
TOY_CONFIG = {  # open_clip.model.CLIP(**TOY_CONFIG); the real 49,408-token BPE vocabulary
    "embed_dim": 64,
    # A ModifiedResNet: on this data a tiny ViT needs far more steps to tell shapes apart.
    "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 8, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
}


def build_model(seed: int = 0):
    """A freshly initialised toy CLIP (fp32, CPU)."""
    import open_clip

    torch.manual_seed(seed)
    return open_clip.model.CLIP(**TOY_CONFIG)


def preprocess_for(image_size: int | None = None) -> Callable:
    """The eval preprocess of the toy CLIP: PIL image -> (3, S, S) tensor."""
    import open_clip

    size = image_size or TOY_CONFIG["vision_cfg"]["image_size"]
    return open_clip.image_transform(size, is_train=False, mean=MEAN, std=STD)


def save_assets(model, metrics: dict, out_dir: str | Path = ASSETS_DIR) -> Path:
    """Write the config (open_clip's hub layout) and fp16 safetensors weights to out_dir."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "model_cfg": TOY_CONFIG,
        "preprocess_cfg": {"mean": list(MEAN), "std": list(STD), "interpolation": "bicubic", "resize_mode": "shortest"},
        "toy_world": {"colours": list(COLOURS), "shapes": list(SHAPES), "metrics": metrics},
    }
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / WEIGHTS_FILE), metadata={"format": "pt", "source": "pez toy world"})
    return out


def create_toy_clip(path: str | Path | None = None) -> tuple:
    """The trained toy CLIP (CPU, fp32, eval mode) from `path` (default: the shipped assets)
    and its eval preprocess (PIL image -> (3, S, S) tensor)."""
    import open_clip
    from safetensors.torch import load_file

    folder = Path(path) if path is not None else ASSETS_DIR
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise WeightsNotFoundError(
            f"toy CLIP weights not found at {weights}. Build them (about two minutes on a CPU) with "
            f"`python -m pez.toy train --out {folder}`."
        )
    cfg = (
        json.loads((folder / CONFIG_FILE).read_text())["model_cfg"] if (folder / CONFIG_FILE).is_file() else TOY_CONFIG
    )
    model = open_clip.model.CLIP(**cfg)
    state = {k: v.float() for k, v in load_file(str(weights)).items()}
    model.load_state_dict(state)
    model.eval().requires_grad_(False)
    return model, preprocess_for(cfg["vision_cfg"]["image_size"])


__all__ = [
    "ASSETS_DIR",
    "CONFIG_FILE",
    "MEAN",
    "STD",
    "TOY_CONFIG",
    "WEIGHTS_FILE",
    "build_model",
    "create_toy_clip",
    "preprocess_for",
    "save_assets",
]
