"""Writing a Hugging Face hub cache of random weights: the building blocks of the replicas.

Shared by pez.testing.replica (the SD pairs' repos, and `build_replica`) and
pez.testing.flux_replica (FLUX.1-schnell's repo): seeded values tensor by tensor (ValueSource),
safetensors written one tensor at a time, the hub's folder layout, CLIP tokenizer files, an
open_clip repo, and the text-tower config both kinds of repo hold (OpenAI's CLIP ViT-L/14).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError
from ..models import parse_clip_spec
from ..models.hub import open_clip_files

DTYPES = {"fp16": torch.float16, "fp32": torch.float32}
POOL_SIZE = 1_000_003  # random values reused cyclically; prime, so matrix rows never repeat exactly
SOT, EOT = "<|startoftext|>", "<|endoftext|>"

TEXT_COMMON = {
    "attention_dropout": 0.0,
    "bos_token_id": 0,  # legacy ids in the published configs; pooling then reads argmax(ids) = EOT
    "dropout": 0.0,
    "eos_token_id": 2,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77,
    "pad_token_id": 1,
    "vocab_size": 49408,
}
TEXT_CLIP_L = {  # OpenAI CLIP ViT-L/14 text tower (SD 1.x; SDXL's first encoder)
    **TEXT_COMMON,
    "hidden_act": "quick_gelu",
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "projection_dim": 768,
}


@dataclass(frozen=True)
class Component:
    """One weights folder of a diffusers repo: its class, config and how to build it on meta."""

    folder: str  # "unet", "text_encoder_2", ...
    library: str  # "diffusers", "transformers" or "stable_diffusion"
    cls: str
    config: dict
    weights: str  # file stem: "diffusion_pytorch_model" or "model"


def meta_clip(arch: str) -> torch.nn.Module:
    """An open_clip CLIP of architecture `arch` on the meta device."""
    import open_clip

    cfg = open_clip.get_model_config(arch)
    if cfg is None:
        raise ConfigError(f"replica: unknown open_clip architecture {arch!r}")
    with torch.device("meta"):
        return open_clip.model.CLIP(**cfg)


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class ValueSource:
    """Cheap seeded values of a sensible scale for any named parameter.

    Matrices and convolutions: N(0, 1/fan_in); norm weights 1; biases 0; other vectors and
    embeddings N(0, 0.02^2); logit_scale ln(100). Values come from one pool of POOL_SIZE normal
    draws, read cyclically from an offset derived from the seed and the tensor's name."""

    def __init__(self, seed: int = 0):
        gen = torch.Generator().manual_seed(seed)
        self.pool = torch.randn(POOL_SIZE, generator=gen)
        self.seed = seed

    def normal(self, name: str, n: int) -> torch.Tensor:
        offset = int.from_bytes(hashlib.sha256(f"{self.seed}:{name}".encode()).digest()[:8], "little") % POOL_SIZE
        rolled = torch.cat([self.pool[offset:], self.pool[:offset]])
        return rolled.repeat(math.ceil(n / POOL_SIZE))[:n]

    def __call__(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        n = math.prod(shape)
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "logit_scale":
            return torch.full(shape, math.log(100.0))
        if leaf.endswith("embeds_weights") or leaf == "running_var":  # safety thresholds; BatchNorm
            return torch.ones(shape)
        if leaf in ("running_mean", "num_batches_tracked"):
            return torch.zeros(shape)
        if len(shape) <= 1:
            if leaf == "bias" or leaf.endswith("_bias"):
                return torch.zeros(shape)
            if leaf == "weight":  # LayerNorm / GroupNorm scales
                return torch.ones(shape)
            return self.normal(name, n).mul_(0.02).view(shape)
        fan_in = n // shape[0]
        return self.normal(name, n).mul_(1.0 / math.sqrt(fan_in)).view(shape)


_ST_DTYPES = {torch.float16: "F16", torch.float32: "F32", torch.bfloat16: "BF16"}


def write_safetensors(
    path: Path,
    shapes: dict[str, tuple[int, ...]],
    values: Callable[[str, tuple[int, ...]], torch.Tensor],
    dtype: torch.dtype,
) -> int:
    """Write a safetensors file tensor by tensor (only one tensor in memory). Returns its bytes."""
    item = torch.empty((), dtype=dtype).element_size()
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in shapes.items():
        size = math.prod(shape) * item
        header[name] = {"dtype": _ST_DTYPES[dtype], "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # the format aligns the data to 8 bytes
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for name, shape in shapes.items():
            tensor = values(name, shape).to(dtype).contiguous()
            if dtype == torch.bfloat16:  # numpy has no bf16: write its bytes as int16
                tensor = tensor.view(torch.int16)
            f.write(tensor.numpy().tobytes())
    os.replace(tmp, path)
    return offset


def state_shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every persistent tensor the module saves (its state_dict)."""
    return {name: tuple(t.shape) for name, t in module.state_dict().items()}


def repo_dir(hub: Path, repo: str, revision: str) -> Path:
    """Create `hub/models--ORG--NAME` with refs/main -> revision; return its snapshot folder."""
    root = hub / ("models--" + repo.replace("/", "--"))
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(revision)
    snap = root / "snapshots" / revision
    snap.mkdir(parents=True, exist_ok=True)
    return snap


def fake_revision(repo: str, dtype: str, seed: int) -> str:
    """A 40-hex commit id for the replica (stable for the same repo, dtype and seed)."""
    return hashlib.sha1(f"pez-replica:{repo}:{dtype}:{seed}".encode()).hexdigest()


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def write_clip_repo(hub: Path, clip_spec: str, dtype: str, values: ValueSource) -> Path:
    """The open_clip hub repo of a CLIP spec ("ARCH/TAG"): weights + open_clip_config.json."""
    import open_clip

    spec = parse_clip_spec(clip_spec)
    repo, names = open_clip_files(spec.arch, spec.location)
    if not repo:
        raise ConfigError(f"replica: {clip_spec!r} is not loaded from the Hugging Face Hub")
    snap = repo_dir(hub, repo, fake_revision(repo, dtype, values.seed))
    pre = open_clip.get_pretrained_cfg(spec.arch, spec.location)
    model_cfg = open_clip.get_model_config(spec.arch)
    if pre.get("quick_gelu"):
        model_cfg = {**model_cfg, "quick_gelu": True}
    preprocess = {k: pre[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in pre}
    write_json(snap / "open_clip_config.json", {"model_cfg": model_cfg, "preprocess_cfg": preprocess})
    weights = next(n for n in names if n.endswith(".safetensors"))
    write_safetensors(snap / weights, state_shapes(meta_clip(spec.arch)), values, DTYPES[dtype])
    return snap.parent.parent


def write_tokenizer(folder: Path, pad: str) -> None:
    """CLIP BPE tokenizer files with open_clip's ids; `pad` is the published pad token."""
    from .tiny_sd import tokenizer_files

    folder.mkdir(parents=True, exist_ok=True)
    src = tokenizer_files()
    for name in ("vocab.json", "merges.txt"):
        shutil.copyfile(src / name, folder / name)
    tokens = {"bos_token": SOT, "eos_token": EOT, "pad_token": pad, "unk_token": EOT}
    config = {
        **tokens,
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": True,
        "do_lower_case": True,
        "errors": "replace",
        "model_max_length": 77,
        "tokenizer_class": "CLIPTokenizer",
    }
    write_json(folder / "tokenizer_config.json", config)
    write_json(folder / "special_tokens_map.json", tokens)


def saved_config(comp: Component, module: torch.nn.Module) -> dict:
    if comp.library == "diffusers":
        return {"_class_name": comp.cls, **dict(module.config)}
    config = module.config.to_dict()
    config["architectures"] = [comp.cls]
    return config


__all__ = [
    "DTYPES",
    "EOT",
    "SOT",
    "TEXT_CLIP_L",
    "TEXT_COMMON",
    "Component",
    "ValueSource",
    "count_parameters",
    "fake_revision",
    "meta_clip",
    "repo_dir",
    "saved_config",
    "state_shapes",
    "write_clip_repo",
    "write_json",
    "write_safetensors",
    "write_tokenizer",
]
