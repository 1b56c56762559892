"""A replica of FLUX.1 [schnell]: its hub repo with the published layout and configs, random weights.

`build_flux_replica(root, "full")` writes `root/hub/models--black-forest-labs--FLUX.1-schnell/...`
(and the open_clip repo of ViT-L-14/openai, the CLIP PEZ optimises against for Flux) as the
Hugging Face hub cache lays it out, so `HF_HOME=root HF_HUB_OFFLINE=1` loads it like the real
weights: FluxTransformer2DModel 11.9B, T5-XXL v1.1 encoder 4.76B, CLIP ViT-L/14 text 123M, VAE
84M; 33.7 GB in bf16 (the published dtype). That size runs on a large GPU only.
`build_flux_replica(root, "small")` writes the same repo (same classes, folders, file names,
shards and index files, tokenizers) with reduced widths and depths: it loads and draws an image on
a CPU in seconds, so tests exercise the real loading path.

Configs are the published ones (facts from the repo's config files): model_index.json,
scheduler (FlowMatchEulerDiscreteScheduler, shift 1.0, no dynamic shifting), transformer
(19 double + 38 single blocks, 24 heads of 128, no guidance embedding), VAE (16 latent channels,
scaling 0.3611, shift 0.1159, no quant convs), text_encoder (openai/clip-vit-large-patch14's text
tower) and text_encoder_2 (google/t5-v1_1-xxl's encoder). Weights are written tensor by tensor
with `pez.testing.replica`'s helpers (meta-device modules, seeded values, streamed safetensors).

Tokenizers. `tokenizer/` is the CLIP BPE tokenizer with open_clip's ids (as `pez.testing.replica`
writes it, padding with EOT like openai's). `tokenizer_2/` is a T5 tokenizer in T5's layout:
a Unigram model with Metaspace pre-tokenisation, <pad>=0, </s>=1, <unk>=2, 32,000 pieces and 100
sentinels <extra_id_99>..<extra_id_0> at 32000..32099, </s> appended, model_max_length 512. T5's
own SentencePiece vocabulary (spiece.model) cannot be built offline, so the pieces are derived
from open_clip's BPE vocabulary (its whole-word tokens as "▁word" pieces, its word pieces as
continuations, every printable ASCII character as a fallback). transformers 5 loads T5Tokenizer
(= T5TokenizerFast) from tokenizer.json alone, so no sentencepiece package is needed. Ids
differ from the real T5's (irrelevant with random weights); sizes and behaviour do not.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError
from .hub_files import (
    EOT,
    TEXT_CLIP_L,  # openai/clip-vit-large-patch14's text tower: Flux's text_encoder, as SD 1.x's and SDXL's
    Component,
    ValueSource,
    count_parameters,
    fake_revision,
    repo_dir,
    saved_config,
    write_clip_repo,
    write_json,
    write_safetensors,
    write_tokenizer,
)

FLUX_REPO = "black-forest-labs/FLUX.1-schnell"
FLUX_CLIP = "ViT-L-14/openai"  # the CLIP whose pooled text output Flux reads; PEZ optimises against it
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}  # the repo ships bf16 weights, no variants

# ---------------------------------------------------------------------------------------------
# Published configs (black-forest-labs/FLUX.1-schnell, its */config.json files)

SCHEDULER = {
    "base_image_seq_len": 256,
    "base_shift": 0.5,
    "max_image_seq_len": 4096,
    "max_shift": 1.15,
    "num_train_timesteps": 1000,
    "shift": 1.0,
    "use_dynamic_shifting": False,  # FLUX.1-dev: shift 3.0 with dynamic shifting
}
TRANSFORMER = {
    "attention_head_dim": 128,
    "axes_dims_rope": [16, 56, 56],  # sums to attention_head_dim
    "guidance_embeds": False,  # schnell is guidance-distilled away; dev embeds a guidance value
    "in_channels": 64,  # 16 latent channels x 2 x 2 packed patches
    "joint_attention_dim": 4096,  # = T5-XXL d_model
    "num_attention_heads": 24,
    "num_layers": 19,
    "num_single_layers": 38,
    "out_channels": None,
    "patch_size": 1,
    "pooled_projection_dim": 768,  # = CLIP ViT-L/14 text hidden size (pooled output, no projection)
}
VAE = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "force_upcast": True,
    "in_channels": 3,
    "latent_channels": 16,
    "latents_mean": None,
    "latents_std": None,
    "layers_per_block": 2,
    "mid_block_add_attention": True,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 1024,
    "scaling_factor": 0.3611,
    "shift_factor": 0.1159,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "use_post_quant_conv": False,
    "use_quant_conv": False,
}
TEXT_T5_XXL = {  # google/t5-v1_1-xxl (encoder only is stored)
    "classifier_dropout": 0.0,
    "d_ff": 10240,
    "d_kv": 64,
    "d_model": 4096,
    "decoder_start_token_id": 0,
    "dense_act_fn": "gelu_new",
    "dropout_rate": 0.1,
    "eos_token_id": 1,
    "feed_forward_proj": "gated-gelu",
    "initializer_factor": 1.0,
    "is_encoder_decoder": True,
    "is_gated_act": True,
    "layer_norm_epsilon": 1e-06,
    "num_decoder_layers": 24,
    "num_heads": 64,
    "num_layers": 24,
    "pad_token_id": 0,
    "relative_attention_max_distance": 128,
    "relative_attention_num_buckets": 32,
    "tie_word_embeddings": False,
    "vocab_size": 32128,  # 32,100 tokens, padded to a multiple of 128
}
MODEL_INDEX = {
    "_class_name": "FluxPipeline",
    "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "text_encoder_2": ["transformers", "T5EncoderModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "tokenizer_2": ["transformers", "T5TokenizerFast"],
    "transformer": ["diffusers", "FluxTransformer2DModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}
# Shards of the published repo: transformer/diffusion_pytorch_model-0000k-of-00003.safetensors,
# text_encoder_2/model-0000k-of-00002.safetensors, each with its *.safetensors.index.json.
SHARDS = {"transformer": 3, "text_encoder_2": 2}

T5_PIECES = 32000  # <pad>, </s>, <unk> and 31,997 pieces
T5_EXTRA_IDS = 100
T5_MAX_LENGTH = 512


@dataclass(frozen=True)
class FluxSizes:
    """The widths and depths of one replica (configs override the published ones)."""

    name: str
    transformer: dict = field(default_factory=dict)
    vae: dict = field(default_factory=dict)
    text_encoder: dict = field(default_factory=dict)
    text_encoder_2: dict = field(default_factory=dict)


FULL = FluxSizes("full")
SMALL = FluxSizes(  # same classes and layout; ~2.7M parameters in all, most of them embeddings
    "small",
    transformer={
        "attention_head_dim": 16,
        "axes_dims_rope": [4, 6, 6],
        "joint_attention_dim": 32,
        "num_attention_heads": 2,
        "num_layers": 1,
        "num_single_layers": 1,
        "pooled_projection_dim": 32,
    },
    vae={"block_out_channels": [8, 8, 8, 8], "layers_per_block": 1, "norm_num_groups": 4, "sample_size": 64},
    text_encoder={
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_attention_heads": 2,
        "num_hidden_layers": 2,
        "projection_dim": 32,
    },
    text_encoder_2={"d_ff": 64, "d_kv": 8, "d_model": 32, "num_heads": 4, "num_layers": 2, "num_decoder_layers": 2},
)
SIZES = {s.name: s for s in (FULL, SMALL)}


def components(sizes: FluxSizes = FULL) -> list[Component]:
    """The weight folders of the repo at these sizes."""
    return [
        Component(
            "transformer",
            "diffusers",
            "FluxTransformer2DModel",
            {**TRANSFORMER, **sizes.transformer},
            "diffusion_pytorch_model",
        ),
        Component("vae", "diffusers", "AutoencoderKL", {**VAE, **sizes.vae}, "diffusion_pytorch_model"),
        Component("text_encoder", "transformers", "CLIPTextModel", {**TEXT_CLIP_L, **sizes.text_encoder}, "model"),
        Component("text_encoder_2", "transformers", "T5EncoderModel", {**TEXT_T5_XXL, **sizes.text_encoder_2}, "model"),
    ]


def meta_module(component: Component) -> torch.nn.Module:
    """The component's module on the meta device (real shapes, no memory)."""
    return build_module(component, "meta")


def build_module(component: Component, device: str | torch.device) -> torch.nn.Module:
    """The component's module built on `device` (its library's own random initialisation)."""
    with torch.device(device):
        if component.library == "diffusers":
            import diffusers

            return getattr(diffusers, component.cls).from_config(component.config)
        import transformers

        config_cls = transformers.T5Config if component.cls.startswith("T5") else transformers.CLIPTextConfig
        return getattr(transformers, component.cls)(config_cls(**component.config))


def parameter_counts(sizes: FluxSizes = FULL) -> dict[str, int]:
    """Parameters per weight folder, counted on the meta device."""
    return {c.folder: count_parameters(meta_module(c)) for c in components(sizes)}


def saved_shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    """Name -> shape of what the module's weights file holds: its state_dict without the second
    name of a tied tensor (T5's encoder.embed_tokens is `shared`), as save_pretrained writes it."""
    state = module.state_dict()
    params = dict(module.named_parameters())  # one name per tensor
    buffers = {name for name, _ in module.named_buffers()}
    return {name: tuple(t.shape) for name, t in state.items() if name in params or name in buffers}


def shard_plan(shapes: dict[str, tuple[int, ...]], shards: int, itemsize: int) -> list[list[str]]:
    """Split the tensors, in order, into `shards` consecutive groups of about equal bytes (each
    tensor goes where its first byte falls); by tensor count where that leaves a shard empty."""
    names = list(shapes)
    if len(names) < shards:
        raise ConfigError(f"replica: {len(names)} tensors cannot fill {shards} shards")
    sizes = [math.prod(s) * itemsize for s in shapes.values()]
    total, done = sum(sizes), 0
    groups: list[list[str]] = [[] for _ in range(shards)]
    for name, size in zip(names, sizes):
        groups[min(done * shards // max(total, 1), shards - 1)].append(name)
        done += size
    if all(groups):
        return groups
    return [names[len(names) * k // shards : len(names) * (k + 1) // shards] for k in range(shards)]


def write_weights(
    folder: Path,
    stem: str,
    shapes: dict[str, tuple[int, ...]],
    values: Callable[[str, tuple[int, ...]], torch.Tensor],
    dtype: torch.dtype,
    shards: int = 1,
) -> list[Path]:
    """STEM.safetensors, or STEM-0000k-of-0000N.safetensors shards with STEM.safetensors.index.json."""
    folder.mkdir(parents=True, exist_ok=True)
    if shards == 1:
        path = folder / f"{stem}.safetensors"
        write_safetensors(path, shapes, values, dtype)
        return [path]
    itemsize = torch.empty((), dtype=dtype).element_size()
    weight_map, paths, total = {}, [], 0
    for k, names in enumerate(shard_plan(shapes, shards, itemsize), start=1):
        path = folder / f"{stem}-{k:05d}-of-{shards:05d}.safetensors"
        total += write_safetensors(path, {n: shapes[n] for n in names}, values, dtype)
        weight_map.update({n: path.name for n in names})
        paths.append(path)
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    write_json(folder / f"{stem}.safetensors.index.json", index)
    return paths


# ---------------------------------------------------------------------------------------------
# The T5 tokenizer (tokenizer_2)


def t5_vocabulary() -> list[tuple[str, float]]:
    """(piece, log-probability) in T5's layout: specials, 31,997 pieces, 100 sentinels (reversed)."""
    from open_clip.tokenizer import bytes_to_unicode

    from .tiny_sd import tokenizer_files

    specials = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    chars = [chr(c) for c in range(33, 127)]  # every printable ASCII character: no <unk> for ASCII text
    pieces: dict[str, float] = {c: -20.0 for c in chars}
    pieces.update({"\u2581" + c: -19.0 for c in chars})
    to_byte = {u: b for b, u in bytes_to_unicode().items()}
    vocab = json.loads((tokenizer_files() / "vocab.json").read_text(encoding="utf-8"))
    for token, rank in sorted(vocab.items(), key=lambda kv: kv[1]):
        if len(pieces) + len(specials) >= T5_PIECES:
            break
        word_end = token.endswith("</w>")
        body = token[:-4] if word_end else token
        try:
            text = bytes(to_byte[c] for c in body).decode("utf-8")
        except (KeyError, UnicodeDecodeError):  # special tokens, partial UTF-8 sequences
            continue
        if not text.strip() or any(c.isspace() for c in text):
            continue
        piece = "\u2581" + text if word_end else text
        pieces.setdefault(piece, -math.log(rank + 2))  # earlier BPE merges: more frequent pieces
    vocab_list = specials + list(pieces.items())[: T5_PIECES - len(specials)]
    return vocab_list + [(f"<extra_id_{i}>", 0.0) for i in reversed(range(T5_EXTRA_IDS))]


def write_t5_tokenizer(folder: Path) -> None:
    """tokenizer.json (Unigram, the `tokenizers` library), tokenizer_config.json, special_tokens_map.json."""
    from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import Unigram

    folder.mkdir(parents=True, exist_ok=True)
    vocab = t5_vocabulary()
    tok = Tokenizer(Unigram(vocab, unk_id=2, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")]
    )
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    sentinels = [piece for piece, _ in vocab if piece.startswith("<extra_id_")]
    tok.add_special_tokens([AddedToken(t, normalized=False) for t in ["<pad>", "</s>", "<unk>", *sentinels]])
    tok.save(str(folder / "tokenizer.json"))
    extra = sorted(sentinels, key=lambda t: int(t[len("<extra_id_") : -1]))  # <extra_id_0> first
    special = {"additional_special_tokens": extra, "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
    config = {
        **special,
        "clean_up_tokenization_spaces": True,
        "extra_ids": T5_EXTRA_IDS,
        "legacy": True,
        "model_max_length": T5_MAX_LENGTH,
        "tokenizer_class": "T5Tokenizer",
    }
    write_json(folder / "tokenizer_config.json", config)
    write_json(folder / "special_tokens_map.json", special)


# ---------------------------------------------------------------------------------------------
# The repo


def write_flux_repo(hub: Path, sizes: FluxSizes, dtype: str, values: ValueSource) -> Path:
    """model_index.json, scheduler, both tokenizers and every weight folder; returns the repo folder."""
    import diffusers

    tag = f"{dtype}-{sizes.name}"
    snap = repo_dir(hub, FLUX_REPO, fake_revision(FLUX_REPO, tag, values.seed))
    index: dict[str, Any] = {**MODEL_INDEX, "_diffusers_version": diffusers.__version__}
    sched_cls = MODEL_INDEX["scheduler"][1]
    write_json(snap / "scheduler" / "scheduler_config.json", {"_class_name": sched_cls, **SCHEDULER})
    write_tokenizer(snap / "tokenizer", EOT)
    write_t5_tokenizer(snap / "tokenizer_2")
    for comp in components(sizes):
        module = meta_module(comp)
        write_json(snap / comp.folder / "config.json", saved_config(comp, module))
        shapes = saved_shapes(module)
        write_weights(snap / comp.folder, comp.weights, shapes, values, DTYPES[dtype], SHARDS.get(comp.folder, 1))
        del module
    write_json(snap / "model_index.json", dict(sorted(index.items())))
    return snap.parent.parent


def build_flux_replica(
    root: str | os.PathLike,
    size: str = "small",
    dtype: str | None = None,
    seed: int = 0,
    clip: bool | None = None,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Write the FLUX.1-schnell replica of `size` ("small" or "full") under `root`; returns `root`
    (use it as HF_HOME with HF_HUB_OFFLINE=1). dtype: "bf16" (default for full, as published) or
    "fp32" (default for small). `clip` also writes the open_clip repo of ViT-L-14/openai (default:
    full size only). A repo already written with the same size, dtype and seed is kept."""
    if size not in SIZES:
        raise ConfigError(f"size: expected one of {list(SIZES)}, received {size!r}")
    dtype = dtype or ("bf16" if size == "full" else "fp32")
    if dtype not in DTYPES:
        raise ConfigError(f"dtype: expected one of {list(DTYPES)}, received {dtype!r}")
    hub = Path(root) / "hub"
    values = ValueSource(seed)
    jobs = [(FLUX_REPO, lambda: write_flux_repo(hub, SIZES[size], dtype, values))]
    if clip if clip is not None else size == "full":
        clip_dtype = "fp16" if dtype == "bf16" else "fp32"  # open_clip's hub files are fp16/fp32
        jobs.append((FLUX_CLIP, lambda: write_clip_repo(hub, FLUX_CLIP, clip_dtype, values)))
    for repo, write in jobs:
        marker = hub / ".pez-replica" / (hashlib.sha1(f"{repo}:{size}:{dtype}:{seed}".encode()).hexdigest() + ".done")
        if marker.is_file():
            continue
        if progress is not None:
            progress(f"flux-schnell ({size}): writing {repo}")
        write()
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(repo)
    return Path(root)


def snapshot_path(root: str | os.PathLike) -> Path:
    """The replica's snapshot folder (a diffusers folder with model_index.json)."""
    repo = Path(root) / "hub" / ("models--" + FLUX_REPO.replace("/", "--"))
    return repo / "snapshots" / (repo / "refs" / "main").read_text().strip()


__all__ = [
    "FLUX_CLIP",
    "FLUX_REPO",
    "FULL",
    "SMALL",
    "FluxSizes",
    "build_flux_replica",
    "build_module",
    "components",
    "meta_module",
    "parameter_counts",
    "snapshot_path",
    "t5_vocabulary",
]
