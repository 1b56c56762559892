"""Full-size replicas: a Hugging Face hub cache holding every repo a pair loads, random weights.

`build_replica(root, pairs)` writes `root/hub/models--ORG--NAME/{refs/main, snapshots/REV/...}`,
the layout huggingface_hub resolves offline, so that `HF_HOME=root HF_HUB_OFFLINE=1` runs the
unchanged product on it. Per pair it holds the open_clip repo of each of the pair's CLIPs (the
weights file open_clip looks for with that pretrained tag, plus open_clip_config.json) and the
diffusers repo (model_index.json, scheduler, text encoder(s), tokenizer(s), unet, vae; the fp16
variant files for dtype "fp16", the plain files for "fp32"). FLUX.1-schnell's repo is written by
pez.testing.flux_replica (full size, or a small same-layout version).

Architectures and configs are the published ones (facts from the repos' config files and model
cards), so parameter counts, file layouts, dtypes, memory and time are real; only the values are
random. Models are built on the meta device (no memory, no init) and their tensors are written to
safetensors one at a time from a small seeded pool of normal values, so building 2.5B parameters
takes seconds and holds one tensor at a time.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError
from ..models import PAIRS, get_pair, list_pairs, parse_clip_spec
from . import flux_replica
from .hub_files import (  # the building blocks, also read through this module by tests and bench
    DTYPES,
    EOT,
    TEXT_CLIP_L,
    TEXT_COMMON,
    Component,
    ValueSource,
    count_parameters,
    fake_revision,
    meta_clip,
    repo_dir,
    saved_config,
    state_shapes,
    write_clip_repo,
    write_json,
    write_safetensors,
    write_tokenizer,
)

log = logging.getLogger(__name__)

REPLICA_PAIRS = [name for name in list_pairs() if PAIRS[name].generator]  # the toy pair needs none

# ---------------------------------------------------------------------------------------------
# Published configs (values from the repos' config.json files)

_BETAS = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}
_SCHEDULER_COMMON = {
    **_BETAS,
    "clip_sample": False,
    "prediction_type": "epsilon",
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}
_EULER = {**_SCHEDULER_COMMON, "interpolation_type": "linear", "use_karras_sigmas": False}
SCHEDULERS = {
    "stabilityai/sd-turbo": ("EulerDiscreteScheduler", {**_EULER, "timestep_spacing": "trailing"}),
    "stabilityai/stable-diffusion-2-1-base": ("PNDMScheduler", _SCHEDULER_COMMON),
    "stable-diffusion-v1-5/stable-diffusion-v1-5": ("PNDMScheduler", _SCHEDULER_COMMON),
    "stabilityai/stable-diffusion-xl-base-1.0": (
        "EulerDiscreteScheduler",
        {**_EULER, "sample_max_value": 1.0, "timestep_spacing": "leading"},
    ),
    "stabilityai/sdxl-turbo": (
        "EulerAncestralDiscreteScheduler",
        {**_SCHEDULER_COMMON, "timestep_spacing": "trailing"},
    ),
}

_UNET_SD = {
    "act_fn": "silu",
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
}
UNET_SD2 = {
    **_UNET_SD,
    "attention_head_dim": [5, 10, 20, 20],
    "cross_attention_dim": 1024,
    "use_linear_projection": True,
}
UNET_SD15 = {**_UNET_SD, "attention_head_dim": 8, "cross_attention_dim": 768}
UNET_SDXL = {
    **_UNET_SD,
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280],
    "cross_attention_dim": 2048,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "projection_class_embeddings_input_dim": 2816,
    "sample_size": 128,
    "transformer_layers_per_block": [1, 2, 10],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "use_linear_projection": True,
}
VAE_SD = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 512,
    "scaling_factor": 0.18215,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}
VAE_SDXL = {**VAE_SD, "sample_size": 1024, "scaling_factor": 0.13025, "force_upcast": True}

TEXT_OPENCLIP_H = {  # OpenCLIP ViT-H/14 text tower without its last layer (SD 2.x reads the penultimate)
    **TEXT_COMMON,
    "hidden_act": "gelu",
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_attention_heads": 16,
    "num_hidden_layers": 23,
    "projection_dim": 512,
}
TEXT_OPENCLIP_BIGG = {  # OpenCLIP ViT-bigG/14 text tower with its projection (SDXL's second encoder)
    **TEXT_COMMON,
    "hidden_act": "gelu",
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_attention_heads": 20,
    "num_hidden_layers": 32,
    "projection_dim": 1280,
}
SAFETY_VISION = {  # SD 1.5's safety checker: CLIP ViT-L/14 vision tower
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_attention_heads": 16,
    "num_hidden_layers": 24,
    "patch_size": 14,
    "image_size": 224,
    "hidden_act": "quick_gelu",
}
FEATURE_EXTRACTOR = {  # CLIPImageProcessor's preprocessor_config.json in the SD repos
    "crop_size": {"height": 224, "width": 224},
    "do_center_crop": True,
    "do_convert_rgb": True,
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_processor_type": "CLIPImageProcessor",
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "resample": 3,
    "rescale_factor": 0.00392156862745098,
    "size": {"shortest_edge": 224},
}


def _sd_components(unet: dict, text: dict, vae: dict) -> list[Component]:
    return [
        Component("unet", "diffusers", "UNet2DConditionModel", unet, "diffusion_pytorch_model"),
        Component("vae", "diffusers", "AutoencoderKL", vae, "diffusion_pytorch_model"),
        Component("text_encoder", "transformers", "CLIPTextModel", text, "model"),
    ]


@dataclass(frozen=True)
class RepoPlan:
    """What a pair's diffusers repo holds."""

    pipeline: str  # model_index.json _class_name
    components: list[Component]
    tokenizers: dict[str, str]  # folder -> pad token ("!" for OpenCLIP-trained encoders, EOT for OpenAI's)
    extra: dict  # further model_index.json entries (safety checker, feature extractor, flags)


def repo_plan(generator: str) -> RepoPlan:
    """The published layout of a pair's diffusers repo."""
    no = [None, None]
    if generator in ("stabilityai/sd-turbo", "stabilityai/stable-diffusion-2-1-base"):
        extra = {"safety_checker": no, "requires_safety_checker": False, "image_encoder": no}
        extra["feature_extractor"] = no if generator.endswith("turbo") else ["transformers", "CLIPImageProcessor"]
        vae = {**VAE_SD, "sample_size": 768}
        return RepoPlan(
            "StableDiffusionPipeline", _sd_components(UNET_SD2, TEXT_OPENCLIP_H, vae), {"tokenizer": "!"}, extra
        )
    if generator == "stable-diffusion-v1-5/stable-diffusion-v1-5":
        comps = _sd_components(UNET_SD15, TEXT_CLIP_L, VAE_SD)
        comps.append(Component("safety_checker", "stable_diffusion", "StableDiffusionSafetyChecker", {}, "model"))
        extra = {
            "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
            "feature_extractor": ["transformers", "CLIPImageProcessor"],
            "requires_safety_checker": True,
            "image_encoder": no,
        }
        return RepoPlan("StableDiffusionPipeline", comps, {"tokenizer": EOT}, extra)
    if generator in ("stabilityai/stable-diffusion-xl-base-1.0", "stabilityai/sdxl-turbo"):
        unet = UNET_SDXL if "base" in generator else {**UNET_SDXL, "sample_size": 64}
        comps = _sd_components(unet, TEXT_CLIP_L, VAE_SDXL)
        comps.append(
            Component("text_encoder_2", "transformers", "CLIPTextModelWithProjection", TEXT_OPENCLIP_BIGG, "model")
        )
        extra = {"feature_extractor": no, "image_encoder": no, "force_zeros_for_empty_prompt": True}
        return RepoPlan("StableDiffusionXLPipeline", comps, {"tokenizer": EOT, "tokenizer_2": "!"}, extra)
    raise ConfigError(f"replica: no published layout known for generator {generator!r}")


# ---------------------------------------------------------------------------------------------
# Models on the meta device


def meta_model(component: Component) -> torch.nn.Module:
    """The component's module with meta tensors: real shapes, no memory, no initialisation."""
    with torch.device("meta"):
        if component.library == "diffusers":
            import diffusers

            return getattr(diffusers, component.cls).from_config(component.config)
        if component.library == "transformers":
            import transformers

            config = transformers.CLIPTextConfig(**component.config)
            return getattr(transformers, component.cls)(config)
        from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker

        return StableDiffusionSafetyChecker(safety_checker_config())


def safety_checker_config():
    from transformers import CLIPConfig

    text = {k: TEXT_CLIP_L[k] for k in ("hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers")}
    return CLIPConfig(text_config=text, vision_config=SAFETY_VISION, projection_dim=768)


# ---------------------------------------------------------------------------------------------
# Random values, tensor by tensor, straight into safetensors


# ---------------------------------------------------------------------------------------------
# The hub cache


def write_generator_repo(hub: Path, generator: str, dtype: str, values: ValueSource) -> Path:
    """The diffusers repo of a generator: model_index.json and every component folder."""
    import diffusers

    plan = repo_plan(generator)
    snap = repo_dir(hub, generator, fake_revision(generator, dtype, values.seed))
    index: dict[str, Any] = {"_class_name": plan.pipeline, "_diffusers_version": diffusers.__version__}
    sched_cls, sched_cfg = SCHEDULERS[generator]
    index["scheduler"] = ["diffusers", sched_cls]
    write_json(snap / "scheduler" / "scheduler_config.json", {"_class_name": sched_cls, **sched_cfg})
    for folder, pad in plan.tokenizers.items():
        index[folder] = ["transformers", "CLIPTokenizer"]
        write_tokenizer(snap / folder, pad)
    if plan.extra.get("feature_extractor", [None])[0]:
        write_json(snap / "feature_extractor" / "preprocessor_config.json", FEATURE_EXTRACTOR)
    variant = ".fp16" if dtype == "fp16" else ""
    for comp in plan.components:
        index[comp.folder] = [comp.library, comp.cls]
        module = meta_model(comp)
        write_json(snap / comp.folder / "config.json", saved_config(comp, module))
        path = snap / comp.folder / f"{comp.weights}{variant}.safetensors"
        source = _clip_tower_values(generator, comp, values) if comp.folder == "text_encoder" else None
        write_safetensors(path, state_shapes(module), source or values, DTYPES[dtype])
        del module
    index.update(plan.extra)
    write_json(snap / "model_index.json", dict(sorted(index.items())))
    return snap.parent.parent


def _clip_tower_values(generator: str, comp: Component, values: ValueSource) -> Callable | None:
    """Values for a text encoder that is its pair's CLIP text tower (SD 2.x: OpenCLIP ViT-H-14's first
    23 layers; SD 1.x: CLIP ViT-L-14's), as in the published repos: the CLIP repo's own values,
    through pez.generate.text_encoder's name mapping. None for another encoder (SDXL's CLIP-L)."""
    from ..generate.text_encoder import hf_to_open_clip

    clips = {p.clip for p in PAIRS.values() if p.generator == generator and "/" in p.clip}
    if len(clips) != 1:
        return None
    model = meta_clip(parse_clip_spec(clips.pop()).arch)
    width = int(model.token_embedding.weight.shape[1])
    if comp.config.get("hidden_size") != width or comp.config.get("num_hidden_layers", 99) > len(
        model.transformer.resblocks
    ):
        return None
    shapes = state_shapes(model)

    def value(name: str, shape: tuple[int, ...]) -> torch.Tensor:
        source, third = hf_to_open_clip(name)
        full = values(source, shapes[source])
        if third is not None:
            rows = full.shape[0] // 3
            full = full[third * rows : (third + 1) * rows]
        return full.reshape(shape)

    return value


def build_replica(
    root: str | os.PathLike,
    pairs: Iterable[str] | None = None,
    dtype: str = "fp16",
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    size: str = "full",
) -> Path:
    """Write the replica of `pairs` (default: every pair with a generator) under `root`: every
    CLIP of each pair (both of SDXL's) and its generator.

    Returns `root`; use it as HF_HOME (with HF_HUB_OFFLINE=1). Repos already written with the
    same dtype and seed are kept (shared CLIPs, rebuilding), so calling it again is cheap.
    `size` applies to FLUX.1-schnell only (pez.testing.flux_replica): "full" (33.7 GB in bf16, the
    published dtype, written for dtype "fp16") or "small" (same layout, a few MB); the SD pairs
    are always full size."""
    if dtype not in DTYPES:
        raise ConfigError(f"dtype: expected one of {list(DTYPES)}, received {dtype!r}")
    if size not in ("full", "small"):
        raise ConfigError(f"size: expected 'full' or 'small', received {size!r}")
    names = list(pairs) if pairs is not None else REPLICA_PAIRS
    for name in names:
        if not get_pair(name).generator:
            raise ConfigError(f"replica: pair {name!r} loads nothing from the hub; expected one of {REPLICA_PAIRS}")
    hub = Path(root) / "hub"
    values = ValueSource(seed)
    done = set()
    for name in names:
        pair = get_pair(name)
        jobs = [(clip, write_clip_repo, dtype) for clip in pair.clips]
        if pair.kind == "flux":
            jobs.append((pair.generator, _flux_writer(size), f"{dtype}-{size}"))
        else:
            jobs.append((pair.generator, write_generator_repo, dtype))
        for repo, write, tag in jobs:
            if repo in done:
                continue
            done.add(repo)
            marker = hub / ".pez-replica" / (hashlib.sha1(f"{repo}:{tag}:{seed}".encode()).hexdigest() + ".done")
            if marker.is_file():
                continue
            if progress is not None:
                progress(f"{name}: writing {repo}")
            log.info("replica: writing %s (%s)", repo, dtype)
            write(hub, repo, dtype, values)
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(repo)
    return Path(root)


def _flux_writer(size: str) -> Callable:
    """write(hub, repo, dtype, values) of the FLUX.1-schnell repo at `size`; fp16 -> bf16 (the
    published weights are bf16, with no fp16 files)."""

    def write(hub: Path, repo: str, dtype: str, values: ValueSource) -> Path:
        return flux_replica.write_flux_repo(hub, flux_replica.SIZES[size], "bf16" if dtype == "fp16" else dtype, values)

    return write


__all__ = [
    "REPLICA_PAIRS",
    "ValueSource",
    "build_replica",
    "count_parameters",
    "meta_clip",
    "meta_model",
    "repo_plan",
    "write_safetensors",
]
