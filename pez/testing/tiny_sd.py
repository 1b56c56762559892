"""A tiny random Stable Diffusion pipeline, built from configs with no download.

Used by the tests, the benchmark and as a smoke check of the generation path: it has the same
components and call signature as a real `StableDiffusionPipeline` (UNet, VAE, CLIP text encoder,
tokenizer, scheduler), only with a few thousand parameters per block and random weights, so its
images are noise but its shapes, seeding, guidance and callbacks behave like the real thing.

The tokenizer is a real CLIP BPE tokenizer: its `vocab.json` / `merges.txt` are generated from
open_clip's bundled BPE vocabulary, so its ids equal open_clip's (and SD's) for any prompt (one
exception: the literal text "<|endoftext|>" in a prompt is a special token here, plain text
there). It pads with EOT, as SD 1.x does. The files are written once per machine to a temp
folder and reused.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch

from ..errors import ConfigError

# Sizes of the tiny components. The VAE has 4 levels like SD's, so images are 8x the latents
# and sizes must be multiples of 8, as for the real models.
TEXT_WIDTH = 32  # CLIP text hidden size == UNet cross-attention width
UNET_CHANNELS = (16, 32)
VAE_CHANNELS = (8, 8, 8, 8)
LATENT_CHANNELS = 4
NORM_GROUPS = 4
VAE_SCALE = 2 ** (len(VAE_CHANNELS) - 1)  # 8

SOT_TOKEN = "<|startoftext|>"  # HF spelling of open_clip's <start_of_text>
EOT_TOKEN = "<|endoftext|>"


def tiny_pipeline(seed: int = 0, scheduler: str = "dpm-multistep"):
    """A `StableDiffusionPipeline` with random tiny weights drawn from `seed`, on the CPU, fp32.

    `scheduler` is "dpm-multistep" (the PEZ paper's sampler) or "euler" (SD-Turbo's).
    """
    from diffusers import StableDiffusionPipeline

    sampler = make_scheduler(scheduler)
    with torch.random.fork_rng(devices=[]):  # seed the weights without touching the caller's RNG
        torch.manual_seed(seed)
        pipe = StableDiffusionPipeline(
            unet=_tiny_unet(),
            vae=_tiny_vae(),
            text_encoder=_tiny_text_encoder(),
            tokenizer=tiny_tokenizer(),
            scheduler=sampler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _tiny_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=8,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        block_out_channels=UNET_CHANNELS,
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_WIDTH,
        attention_head_dim=8,
        norm_num_groups=NORM_GROUPS,
    ).eval()


def _tiny_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=VAE_CHANNELS,
        down_block_types=("DownEncoderBlock2D",) * len(VAE_CHANNELS),
        up_block_types=("UpDecoderBlock2D",) * len(VAE_CHANNELS),
        latent_channels=LATENT_CHANNELS,
        layers_per_block=1,
        norm_num_groups=NORM_GROUPS,
        sample_size=64,
    ).eval()


def _tiny_text_encoder():
    from transformers import CLIPTextConfig, CLIPTextModel

    tok = tiny_tokenizer()
    config = CLIPTextConfig(
        vocab_size=len(tok),
        hidden_size=TEXT_WIDTH,
        intermediate_size=4 * TEXT_WIDTH,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=tok.model_max_length,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,  # pooling reads the EOT position, as in open_clip
        pad_token_id=tok.pad_token_id,
        projection_dim=TEXT_WIDTH,
    )
    return CLIPTextModel(config).eval()


def make_scheduler(name: str):
    """SD's noise schedule with DPM-Solver multistep ("dpm-multistep") or trailing Euler ("euler")."""
    from diffusers import DPMSolverMultistepScheduler, EulerDiscreteScheduler

    betas = {
        "num_train_timesteps": 1000,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "steps_offset": 1,
    }
    if name == "euler":
        return EulerDiscreteScheduler(**betas, timestep_spacing="trailing")
    if name == "dpm-multistep":
        return DPMSolverMultistepScheduler(**betas)
    raise ConfigError(f"scheduler: expected 'dpm-multistep' or 'euler', received {name!r}")


# ---------------------------------------------------------------------------------------------
# Tokenizer files from open_clip's BPE vocabulary


@functools.lru_cache(maxsize=1)
def tiny_tokenizer():
    """A transformers `CLIPTokenizer` whose ids equal open_clip's (built once per process)."""
    from transformers import CLIPTokenizer

    folder = tokenizer_files()
    return CLIPTokenizer.from_pretrained(str(folder), model_max_length=77)


def tokenizer_files(bpe_path: str | None = None) -> Path:
    """Folder holding vocab.json and merges.txt made from open_clip's BPE file; written once."""
    from open_clip.tokenizer import default_bpe

    bpe_path = bpe_path or default_bpe()
    digest = hashlib.sha256(Path(bpe_path).read_bytes()).hexdigest()[:12]
    folder = Path(tempfile.gettempdir()) / f"pez-clip-tokenizer-{digest}"
    if not (folder / "vocab.json").is_file() or not (folder / "merges.txt").is_file():
        vocab, merges = _bpe_vocab_and_merges(bpe_path)
        folder.mkdir(parents=True, exist_ok=True)
        _write_atomic(folder / "merges.txt", "#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
        _write_atomic(folder / "vocab.json", json.dumps(vocab, ensure_ascii=False))
    return folder


def _bpe_vocab_and_merges(bpe_path: str) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Token -> id in open_clip's order: 256 bytes, 256 bytes + "</w>", the merges, SOT, EOT."""
    from open_clip.tokenizer import bytes_to_unicode

    lines = gzip.open(bpe_path).read().decode("utf-8").split("\n")
    n_merges = 49152 - 256 - 2  # open_clip keeps this many merges (the file's first line is a header)
    merges = [tuple(line.split()) for line in lines[1 : n_merges + 1]]
    byte_tokens = list(bytes_to_unicode().values())
    tokens = byte_tokens + [t + "</w>" for t in byte_tokens] + ["".join(m) for m in merges]
    tokens += [SOT_TOKEN, EOT_TOKEN]
    return {t: i for i, t in enumerate(tokens)}, merges


def _write_atomic(path: Path, text: str) -> None:
    """Write via a temp file and rename, so concurrent processes never read half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


__all__ = ["VAE_SCALE", "make_scheduler", "tiny_pipeline", "tiny_tokenizer", "tokenizer_files"]
