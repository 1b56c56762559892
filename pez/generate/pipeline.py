"""Diffusion pipelines: loading each pair's generator once, and sharing it safely.

`load_generator(pair)` loads the pair's diffusers pipeline (or a local diffusers folder) once per
(source, device, offload) and caches it; users share it behind its lock, since a pipeline's
scheduler is stateful and calls on one pipeline must run one at a time. Loading reads the local
cache or folder first (fast, no network) and downloads only where allowed (pez.models.hub); fp16
weight files first on CUDA, full precision first elsewhere (Flux: bf16 on CUDA, its published
dtype, with no variant files; fp32 elsewhere). Missing weights are one clear
WeightsNotFoundError saying where it looked and how to provide them. Tests inject a pipeline of
their own (pez.testing.tiny_sd) through `generate(..., pipeline=)`, wrapped here with its own lock.

Memory: `dtype` picks the pipeline's precision (default fp16 on CUDA, fp32 elsewhere; bf16 halves it
on a CPU with native bf16), and `text_encoder_of=clip` builds the pipeline's text encoder on that
CLIP's own weights when they are the same (pez.generate.text_encoder), so a process that searches
and regenerates holds one copy of the text tower.
"""

from __future__ import annotations

import logging
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..engine.accel import DTYPES
from ..errors import ConfigError, WeightsNotFoundError
from ..models import ModelPair, get_pair, resolve_device
from ..models.hub import can_download, hub_cache_dir, hub_cached
from .text_encoder import shared_text_encoder

log = logging.getLogger(__name__)


def resolve_pair(pair: str | ModelPair) -> ModelPair:
    """A registry name or a ModelPair -> ModelPair (ConfigError listing the choices otherwise)."""
    if isinstance(pair, ModelPair):
        return pair
    if isinstance(pair, str):
        return get_pair(pair)
    raise ConfigError(f"model pair: expected a pair name or ModelPair, received {pair!r}")


@dataclass(eq=False)
class LoadedGenerator:
    """A diffusers text-to-image pipeline ready to run. Shared: call it only under `lock`."""

    pipeline: Any
    source: str  # hub id or local folder it came from ("<injected>" for a passed pipeline)
    device: torch.device
    offload: bool = False
    shared_text_encoder: bool = False  # its text encoder is a view of a loaded CLIP's weights
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


_GENERATORS: dict[tuple, LoadedGenerator] = {}
_GENERATORS_LOCK = threading.Lock()
_INJECTED_LOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # pipeline -> its lock
_INJECTED_LOCKS_LOCK = threading.Lock()  # separate from the loader's lock: loads take minutes


def load_generator(
    pair: str | ModelPair,
    device: str | torch.device | None = None,
    *,
    offload: bool = False,
    source: str | None = None,
    dtype: torch.dtype | str | None = None,
    text_encoder_of: Any = None,
) -> LoadedGenerator:
    """Load (once) and return the pair's diffusion pipeline. Thread-safe; cached.

    `source` overrides the pair's hub id, e.g. with a local diffusers folder (one holding
    model_index.json). `offload` uses accelerate's model CPU offload (CUDA only): each model sits
    on the GPU only while it runs, for GPUs too small for the whole pipeline. `dtype` (torch dtype or
    'fp32' | 'bf16' | 'fp16'; default fp16 on CUDA (Flux: bf16), fp32 elsewhere) is the pipeline's precision.
    `text_encoder_of`: a LoadedClip (pez.load_clip) whose text tower the pipeline's text encoder
    may share when they are the same weights in the same dtype and device (else it loads its own).
    Raises ConfigError (no generator, bad device) or WeightsNotFoundError (weights not found).
    """
    pair = resolve_pair(pair)
    source = source or pair.generator
    if not source:
        raise ConfigError(f"model pair {pair.name!r} has no diffusion generator (generate() draws the toy pair itself)")
    dev = resolve_device(device)
    if offload and dev.type != "cuda":
        log.info("model CPU offload needs a CUDA device; ignored on %s", dev)
        offload = False
    source = str(Path(source).expanduser().resolve()) if _is_local_path(source) else source
    dtype = _dtype(dtype, dev, pair)
    # Only SD pipelines can take the CLIP's text tower: for the others the CLIP is no part of the key,
    # so a scoring and a non-scoring call share one pipeline.
    share = text_encoder_of if pair.kind == "sd" and _can_share(text_encoder_of, dtype, dev, offload) else None
    key = (source, pair.kind, pair.scheduler, str(dev), offload, dtype, share)
    with _GENERATORS_LOCK:
        if key not in _GENERATORS:
            _GENERATORS[key] = _load_uncached(pair, source, dev, offload, dtype, share)
        return _GENERATORS[key]


def _dtype(dtype: torch.dtype | str | None, device: torch.device, pair: ModelPair) -> torch.dtype:
    if dtype is None:  # T5 v1.1 (Flux's second encoder) overflows in fp16: Flux runs in bf16 on CUDA
        return (torch.bfloat16 if pair.kind == "flux" else torch.float16) if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if dtype in DTYPES:
        return DTYPES[dtype]
    raise ConfigError(f"dtype: expected one of {list(DTYPES)}, received {dtype!r}")


def _can_share(clip: Any, dtype: torch.dtype, device: torch.device, offload: bool) -> bool:
    """Could the pipeline's text encoder be `clip`'s text tower (same dtype and device, no offload)?"""
    model = getattr(clip, "model", None)
    if model is None or offload or getattr(clip, "device", None) != device:
        return False
    return next(model.parameters()).dtype == dtype


def clear_generators() -> None:
    """Forget every cached pipeline (frees memory once no caller holds one)."""
    with _GENERATORS_LOCK:
        _GENERATORS.clear()


def _load_uncached(
    pair: ModelPair, source: str, device: torch.device, offload: bool, dtype: torch.dtype, share: Any = None
) -> LoadedGenerator:
    log.info("loading generator %s on %s (%s%s)", source, device, dtype, ", offload" if offload else "")
    components = {}
    if share is not None:
        folder = _component_folder(source, "text_encoder")
        encoder = shared_text_encoder(folder, share, dtype) if folder is not None else None
        if encoder is not None:
            components["text_encoder"] = encoder
    pipe = _from_pretrained(source, dtype, components)
    if pair.kind == "flux" and "Flux" not in type(pipe).__name__:
        raise ConfigError(f"generator: expected a Flux pipeline at {source!r}, received {type(pipe).__name__}")
    if pair.scheduler == "dpm-multistep":
        from diffusers import DPMSolverMultistepScheduler

        pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    if offload:
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)  # the core never prints; progress goes to callbacks
    return LoadedGenerator(pipe, source, device, offload, shared_text_encoder=bool(components))


def _component_folder(source: str, name: str) -> Path | None:
    """The local folder of one pipeline component (a local pipeline, or the hub cache), or None."""
    if _is_local_path(source):
        folder = Path(source).expanduser() / name
        return folder if folder.is_dir() else None
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(source, f"{name}/config.json", local_files_only=True)).parent
    except Exception:  # noqa: BLE001 - not cached: the pipeline loads its own encoder
        return None


def _from_pretrained(source: str, dtype: torch.dtype, components: dict | None = None):
    """Load from the local cache or folder first (fast, no network); download only when allowed."""
    local = _is_local_path(source)
    if local:
        _check_folder(source)
    offline = not can_download()
    if local or offline or hub_cached(source, "model_index.json"):
        try:
            return _try_variants(source, dtype, local_only=True, components=components)
        except WeightsNotFoundError:
            if local or offline:
                raise
    return _try_variants(source, dtype, local_only=False, components=components)


def _try_variants(source: str, dtype: torch.dtype, local_only: bool, components: dict | None = None):
    """fp16 weight files first on CUDA (half the download), full precision first elsewhere."""
    from diffusers import AutoPipelineForText2Image

    variants = ("fp16", None) if dtype == torch.float16 else (None, "fp16")
    if local_only and _unet_file_present(source, variants[1]) and not _unet_file_present(source, variants[0]):
        variants = variants[::-1]  # only the other variant is here (e.g. fp16 files on a CPU): no failed try first
    reasons = []
    for variant in variants:
        try:
            return AutoPipelineForText2Image.from_pretrained(
                source, dtype=dtype, variant=variant, local_files_only=local_only, **(components or {})
            )
        except Exception as e:  # noqa: BLE001 - any loader failure becomes one clear message
            reasons.append(f"{variant or 'default'} weights: {str(e).strip().splitlines()[0][:300]}")
    raise WeightsNotFoundError(_missing_message(source, reasons, local_only))


def _unet_file_present(source: str, variant: str | None) -> bool:
    """Whether the UNet weights of `variant` are in the local folder or the hub cache."""
    name = "unet/diffusion_pytorch_model" + (f".{variant}" if variant else "") + ".safetensors"
    if _is_local_path(source):
        return (Path(source).expanduser() / name).is_file()
    return hub_cached(source, name)


def _is_local_path(source: str) -> bool:
    return source.startswith(("/", "./", "../", "~")) or Path(source).expanduser().is_dir()


def _check_folder(path: str) -> None:
    if not Path(path).is_dir():
        raise WeightsNotFoundError(
            f"Generator folder not found: {path!r} (expected a diffusers folder with model_index.json)"
        )
    if not (Path(path) / "model_index.json").is_file():
        raise WeightsNotFoundError(
            f"{path!r} is not a diffusers pipeline folder: expected model_index.json in it "
            "(save one with pipeline.save_pretrained(folder))"
        )


def _missing_message(source: str, reasons: list[str], local_only: bool) -> str:
    if _is_local_path(source):
        where = f"the local folder {source!r}"
    else:
        mode = (
            "offline: HF_HUB_OFFLINE is set or the hub is unreachable"
            if not can_download()
            else ("cache only" if local_only else "download")
        )
        where = f"the Hugging Face repo {source!r} ({mode}; hub cache {hub_cache_dir()})"
    return (
        f"Could not load the diffusion generator from {where}. Tried: {'; '.join(reasons)}. "
        f"To provide it: run once with network access so it is cached (e.g. `hf download {source}`), "
        "or pass a local diffusers folder (with model_index.json) as the generator source. "
        "For an offline demo use the model pair 'toy'."
    )


def as_generator(pipeline: Any) -> LoadedGenerator:
    """Wrap an injected pipeline, giving each pipeline object one lock for its lifetime."""
    if isinstance(pipeline, LoadedGenerator):
        return pipeline
    if not callable(pipeline):
        raise ConfigError(
            f"pipeline: expected a diffusers pipeline or LoadedGenerator, received {type(pipeline).__name__}"
        )
    with _INJECTED_LOCKS_LOCK:
        lock = _INJECTED_LOCKS.setdefault(pipeline, threading.Lock())
    device = getattr(pipeline, "_execution_device", None) or torch.device("cpu")
    return LoadedGenerator(pipeline, "<injected>", torch.device(device), lock=lock)


__all__ = ["LoadedGenerator", "as_generator", "clear_generators", "load_generator", "resolve_pair"]
