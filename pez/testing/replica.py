"""Full-size replicas: a Hugging Face hub cache holding every repo a pair loads, random weights.

`build_replica(root, pairs)` writes `root/hub/models--ORG--NAME/{refs/main, snapshots/REV/...}`,
the layout huggingface_hub resolves offline, so that `HF_HOME=root HF_HUB_OFFLINE=1` runs the
unchanged product on it. Per pair it holds the open_clip repo of the pair's CLIP (the weights file
open_clip looks for with that pretrained tag, plus open_clip_config.json) and the diffusers repo
(model_index.json, scheduler, text encoder(s), tokenizer(s), unet, vae; the fp16 variant files
for dtype "fp16", the plain files for "fp32").

Architectures and configs are the published ones (facts from the repos' config files and model
cards), so parameter counts, file layouts, dtypes, memory and time are real; only the values are
random. Models are built on the meta device (no memory, no init) and their tensors are written to
safetensors one at a time from a small seeded pool of normal values, so building 2.5B parameters
takes seconds and holds one tensor at a time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError
from ..models import PAIRS, get_pair, list_pairs, parse_clip_spec
from ..models.hub import open_clip_files

log = logging.getLogger(__name__)

DTYPES = {"fp16": torch.float16, "fp32": torch.float32}
REPLICA_PAIRS = [name for name in list_pairs() if PAIRS[name].generator]  # the toy pair needs none
POOL_SIZE = 1_000_003  # random values reused cyclically; prime, so matrix rows never repeat exactly
SOT, EOT = "<|startoftext|>", "<|endoftext|>"

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

_TEXT_COMMON = {
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
    **_TEXT_COMMON,
    "hidden_act": "quick_gelu",
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "projection_dim": 768,
}
TEXT_OPENCLIP_H = {  # OpenCLIP ViT-H/14 text tower without its last layer (SD 2.x reads the penultimate)
    **_TEXT_COMMON,
    "hidden_act": "gelu",
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_attention_heads": 16,
    "num_hidden_layers": 23,
    "projection_dim": 512,
}
TEXT_OPENCLIP_BIGG = {  # OpenCLIP ViT-bigG/14 text tower with its projection (SDXL's second encoder)
    **_TEXT_COMMON,
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


@dataclass(frozen=True)
class Component:
    """One weights folder of a diffusers repo: its class, config and how to build it on meta."""

    folder: str  # "unet", "text_encoder_2", ...
    library: str  # "diffusers", "transformers" or "stable_diffusion"
    cls: str
    config: dict
    weights: str  # file stem: "diffusion_pytorch_model" or "model"


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


# ---------------------------------------------------------------------------------------------
# Random values, tensor by tensor, straight into safetensors


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
            f.write(values(name, shape).to(dtype).contiguous().numpy().tobytes())
    os.replace(tmp, path)
    return offset


def state_shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every persistent tensor the module saves (its state_dict)."""
    return {name: tuple(t.shape) for name, t in module.state_dict().items()}


# ---------------------------------------------------------------------------------------------
# The hub cache


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


def _write_json(path: Path, data: dict) -> None:
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
    _write_json(snap / "open_clip_config.json", {"model_cfg": model_cfg, "preprocess_cfg": preprocess})
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
    _write_json(folder / "tokenizer_config.json", config)
    _write_json(folder / "special_tokens_map.json", tokens)


def write_generator_repo(hub: Path, generator: str, dtype: str, values: ValueSource) -> Path:
    """The diffusers repo of a generator: model_index.json and every component folder."""
    import diffusers

    plan = repo_plan(generator)
    snap = repo_dir(hub, generator, fake_revision(generator, dtype, values.seed))
    index: dict[str, Any] = {"_class_name": plan.pipeline, "_diffusers_version": diffusers.__version__}
    sched_cls, sched_cfg = SCHEDULERS[generator]
    index["scheduler"] = ["diffusers", sched_cls]
    _write_json(snap / "scheduler" / "scheduler_config.json", {"_class_name": sched_cls, **sched_cfg})
    for folder, pad in plan.tokenizers.items():
        index[folder] = ["transformers", "CLIPTokenizer"]
        write_tokenizer(snap / folder, pad)
    if plan.extra.get("feature_extractor", [None])[0]:
        _write_json(snap / "feature_extractor" / "preprocessor_config.json", FEATURE_EXTRACTOR)
    variant = ".fp16" if dtype == "fp16" else ""
    for comp in plan.components:
        index[comp.folder] = [comp.library, comp.cls]
        module = meta_model(comp)
        _write_json(snap / comp.folder / "config.json", _saved_config(comp, module))
        path = snap / comp.folder / f"{comp.weights}{variant}.safetensors"
        source = _clip_tower_values(generator, comp, values) if comp.folder == "text_encoder" else None
        write_safetensors(path, state_shapes(module), source or values, DTYPES[dtype])
        del module
    index.update(plan.extra)
    _write_json(snap / "model_index.json", dict(sorted(index.items())))
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
    if comp.config.get("hidden_size") != width or comp.config.get("num_hidden_layers", 99) > len(model.transformer.resblocks):
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


def _saved_config(comp: Component, module: torch.nn.Module) -> dict:
    if comp.library == "diffusers":
        return {"_class_name": comp.cls, **dict(module.config)}
    config = module.config.to_dict()
    config["architectures"] = [comp.cls]
    return config


def build_replica(
    root: str | os.PathLike,
    pairs: Iterable[str] | None = None,
    dtype: str = "fp16",
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Write the replica of `pairs` (default: every pair with a generator) under `root`.

    Returns `root`; use it as HF_HOME (with HF_HUB_OFFLINE=1). Repos already written with the
    same dtype and seed are kept (shared CLIPs, rebuilding), so calling it again is cheap."""
    if dtype not in DTYPES:
        raise ConfigError(f"dtype: expected one of {list(DTYPES)}, received {dtype!r}")
    names = list(pairs) if pairs is not None else REPLICA_PAIRS
    for name in names:
        if not get_pair(name).generator:
            raise ConfigError(f"replica: pair {name!r} loads nothing from the hub; expected one of {REPLICA_PAIRS}")
    hub = Path(root) / "hub"
    values = ValueSource(seed)
    done = set()
    for name in names:
        pair = get_pair(name)
        for repo, write in ((pair.clip, write_clip_repo), (pair.generator, write_generator_repo)):
            if repo in done:
                continue
            done.add(repo)
            marker = hub / ".pez-replica" / (hashlib.sha1(f"{repo}:{dtype}:{seed}".encode()).hexdigest() + ".done")
            if marker.is_file():
                continue
            if progress is not None:
                progress(f"{name}: writing {repo}")
            log.info("replica: writing %s (%s)", repo, dtype)
            write(hub, repo, dtype, values)
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(repo)
    return Path(root)


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
