"""One copy of the text encoder: a pipeline's CLIPTextModel built on the search CLIP's own weights.

SD 2.x and SD-Turbo condition on OpenCLIP ViT-H-14's text tower (its first 23 of 24 layers and
`ln_final`, in Hugging Face's CLIPTextModel layout); SD 1.x on OpenAI CLIP ViT-L-14's. The pair's
CLIP, which the search and the scores already hold, is that text tower, so the pipeline does not
need a second copy of it (1.4 GB in fp32 for ViT-H-14). `shared_text_encoder` builds the
pipeline's CLIPTextModel whose parameters are views of the CLIP's tensors (q, k and v are row
slices of open_clip's packed in_proj), after checking, tensor by tensor from the pipeline's own
weights file, that the two are the same weights up to the rounding of their dtypes. Any mismatch
(another checkpoint, a fine-tuned encoder, another architecture) leaves the pipeline to load its
own encoder as before. `hf_to_open_clip` is the one name mapping (the replicas use it to write
text encoders that are their CLIP's, as the published ones are).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

_LAYER = re.compile(r"encoder\.layers\.(\d+)\.(.+)")
_IN_LAYER = {
    "layer_norm1.weight": "ln_1.weight",
    "layer_norm1.bias": "ln_1.bias",
    "layer_norm2.weight": "ln_2.weight",
    "layer_norm2.bias": "ln_2.bias",
    "mlp.fc1.weight": "mlp.c_fc.weight",
    "mlp.fc1.bias": "mlp.c_fc.bias",
    "mlp.fc2.weight": "mlp.c_proj.weight",
    "mlp.fc2.bias": "mlp.c_proj.bias",
    "self_attn.out_proj.weight": "attn.out_proj.weight",
    "self_attn.out_proj.bias": "attn.out_proj.bias",
}
_QKV = {"q_proj": 0, "k_proj": 1, "v_proj": 2}
_ACTS = {"gelu": "GELU", "quick_gelu": "QuickGELU"}  # HF hidden_act -> open_clip's activation class


def hf_to_open_clip(name: str) -> tuple[str, int | None]:
    """A CLIPTextModel parameter name -> (open_clip CLIP parameter name, which third of a packed
    q/k/v tensor or None). Raises KeyError for a name with no counterpart."""
    name = name.removeprefix("text_model.")
    if name == "embeddings.token_embedding.weight":
        return "token_embedding.weight", None
    if name == "embeddings.position_embedding.weight":
        return "positional_embedding", None
    if name.startswith("final_layer_norm."):
        return "ln_final." + name.split(".", 1)[1], None
    m = _LAYER.fullmatch(name)
    if m:
        layer, rest = m.groups()
        prefix = f"transformer.resblocks.{layer}."
        if rest in _IN_LAYER:
            return prefix + _IN_LAYER[rest], None
        proj, _, kind = rest.removeprefix("self_attn.").partition(".")
        if rest.startswith("self_attn.") and proj in _QKV:
            return prefix + f"attn.in_proj_{kind}", _QKV[proj]
    raise KeyError(name)


def open_clip_tensor(state: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    """The tensor (a view, no copy) of the open_clip state that a CLIPTextModel parameter is."""
    source, third = hf_to_open_clip(name)
    tensor = state[source]
    if third is not None:
        rows = tensor.shape[0] // 3
        tensor = tensor[third * rows : (third + 1) * rows]
    return tensor


def same_tower(config: dict, model: Any) -> bool:
    """Is a CLIPTextModel `config` the text tower of the open_clip CLIP `model` (its first
    num_hidden_layers layers), by shape and activation?"""
    try:
        blocks = model.transformer.resblocks
        width = int(model.token_embedding.weight.shape[1])
        act = type(blocks[0].mlp.gelu).__name__
        return (
            config.get("model_type", "clip_text_model") in ("clip_text_model", "clip")
            and config.get("hidden_size") == width
            and config.get("vocab_size") == int(model.token_embedding.weight.shape[0])
            and config.get("max_position_embeddings") == int(model.positional_embedding.shape[0])
            and config.get("intermediate_size") == int(blocks[0].mlp.c_fc.weight.shape[0])
            and config.get("num_attention_heads") == int(blocks[0].attn.num_heads)
            and 0 < int(config.get("num_hidden_layers", 0)) <= len(blocks)
            and _ACTS.get(config.get("hidden_act")) == act
        )
    except (AttributeError, IndexError, TypeError):
        return False


def _rounding(dtype: torch.dtype) -> tuple[float, float]:
    """(relative, absolute) rounding error of one value stored in `dtype`: the unit roundoff, and
    half the spacing of its subnormal numbers."""
    info = torch.finfo(dtype)
    return info.eps / 2, info.tiny * info.eps / 2


def same_weights(file: Path, state: dict[str, torch.Tensor], names: list[str]) -> str | None:
    """None when every tensor of the safetensors `file` equals the CLIP's up to both dtypes'
    rounding (|a - b| <= (u_a + u_b) * max(|a|, |b|) + the subnormal spacings), else why not. Reads
    one tensor at a time (the file is memory-mapped)."""
    from safetensors import safe_open

    with safe_open(str(file), framework="pt") as f:
        keys = {k.removeprefix("text_model."): k for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
        wanted = {n.removeprefix("text_model.") for n in names}
        if set(keys) - {"embeddings.position_ids"} != wanted:
            return f"its tensors are not the CLIPTextModel's ({len(keys)} vs {len(wanted)})"
        for name in sorted(wanted):
            theirs = f.get_tensor(keys[name])
            ours = open_clip_tensor(state, name)
            if theirs.shape != ours.shape:
                return f"{name}: shape {tuple(theirs.shape)} vs {tuple(ours.shape)}"
            a, b = theirs.float(), ours.float()
            (rel_a, abs_a), (rel_b, abs_b) = _rounding(theirs.dtype), _rounding(ours.dtype)
            tol = (rel_a + rel_b) * torch.maximum(a.abs(), b.abs()) + abs_a + abs_b
            if not bool(((a - b).abs() <= tol).all()):
                return f"{name}: different values"
    return None


def shared_text_encoder(folder: Path, clip: Any, dtype: torch.dtype):
    """The pipeline's CLIPTextModel (in `folder`, a pipeline's text_encoder folder) built on the
    CLIP's own tensors, or None (logged) when they are not the same weights or not in `dtype`."""
    from transformers import CLIPTextConfig, CLIPTextModel

    model = clip.model
    if next(model.parameters()).dtype != dtype:
        return None
    config_file = folder / "config.json"
    files = sorted(folder.glob("model*.safetensors"))
    if not config_file.is_file() or not files:
        log.info("text encoder not shared: no config or safetensors weights in %s", folder)
        return None
    config = json.loads(config_file.read_text())
    if not same_tower(config, model):
        log.info("text encoder not shared: %s is not the text tower of %s", folder, clip.name)
        return None
    cfg = CLIPTextConfig(**{k: v for k, v in config.items() if k not in ("architectures", "transformers_version")})
    with torch.device("meta"):
        encoder = CLIPTextModel(cfg)
    names = [n for n, _ in encoder.named_parameters()]
    state = dict(model.state_dict(keep_vars=False))
    why = same_weights(files[0], state, names)
    if why is not None:
        log.info("text encoder not shared: %s differs from %s (%s)", files[0], clip.name, why)
        return None
    encoder.load_state_dict({n: open_clip_tensor(state, n) for n in names}, strict=False, assign=True)
    for name, buf in list(encoder.named_buffers()):
        if not buf.is_meta:
            continue
        if not name.endswith("position_ids"):
            log.info("text encoder not shared: buffer %s has no value", name)
            return None
        owner = encoder.get_submodule(name.rsplit(".", 1)[0])
        owner.register_buffer("position_ids", torch.arange(buf.shape[-1]).expand(1, -1), persistent=False)
    encoder.to(device=clip.device).eval().requires_grad_(False)
    log.info("text encoder shared with %s (one copy of %d tensors)", clip.name, len(names))
    return encoder


__all__ = ["hf_to_open_clip", "open_clip_tensor", "same_tower", "same_weights", "shared_text_encoder"]
