"""What differs when the generator is FLUX.1 [schnell] (the pair "flux-schnell", kind "flux").

`pez.generate.generate` runs every pair; for Flux it takes its settings check, pipeline arguments
and warnings from here. The differences from the SD/SDXL path, all where Flux itself differs:

- Both text encoders read the same prompt: CLIP ViT-L/14 (its pooled output, 77 tokens) and
  T5-XXL (per-token states, up to MAX_SEQUENCE_LENGTH tokens: 256, as schnell's model card runs
  it; the pipeline's own default is 512). PEZ optimises against ViT-L-14/openai, the CLIP whose
  pooled output Flux reads; T5 is not searched.
- schnell has no guidance embedding (it was distilled to sample without guidance): the pair's
  defaults are 4 steps, guidance 0, 1024x1024. A `guidance` above 1 together with a negative
  prompt runs diffusers' true classifier-free guidance (`true_cfg_scale`), which doubles the
  transformer's work per step; otherwise a negative prompt has no effect (a warning says so).
- Image sides must be multiples of 16 (the VAE's 8x times the transformer's 2x2 latent packing).
- Weights load in bf16 on CUDA (the published dtype; T5 v1.1 overflows in fp16), fp32 elsewhere
  (pez.generate.pipeline). The bf16 transformer alone is 22.1 GiB, so `offload=True` (accelerate's
  model CPU offload, one model on the GPU at a time) is what lets a 24 GB GPU run it.
"""

from __future__ import annotations

from typing import Any

from ..config import CFG_THRESHOLD
from ..errors import ConfigError

SIZE_MULTIPLE = 16  # VAE downsampling 8 x 2x2 latent packing
MAX_SEQUENCE_LENGTH = 256  # T5 tokens schnell reads (its model card's setting; the pipeline allows 512)


def check_sizes(width: int, height: int) -> None:
    """Flux's sides are multiples of 16. Raises ConfigError."""
    for name, value in (("width", width), ("height", height)):
        if value % SIZE_MULTIPLE:
            raise ConfigError(f"{name}: expected a multiple of {SIZE_MULTIPLE} for Flux, received {value}")


def true_cfg(guidance: float, negative_prompt: str) -> bool:
    """Whether a run uses true classifier-free guidance (guidance above 1 and a negative prompt)."""
    return guidance > CFG_THRESHOLD and bool(negative_prompt.strip())


def call_kwargs(prompt: str, s: Any, max_sequence_length: int = MAX_SEQUENCE_LENGTH) -> dict[str, Any]:
    """The FluxPipeline arguments of one run (`s`: GenerationSettings), without generators and callback."""
    cfg = true_cfg(s.guidance, s.negative_prompt)
    return {
        "prompt": prompt,  # prompt_2 (T5) defaults to the same prompt
        "negative_prompt": s.negative_prompt if cfg else None,
        "true_cfg_scale": s.guidance if cfg else 1.0,
        "guidance_scale": 0.0,  # read only by guidance-embedding models (FLUX.1-dev); schnell has none
        "num_inference_steps": s.steps,
        "width": s.width,
        "height": s.height,
        "num_images_per_prompt": s.num_images,
        "max_sequence_length": max_sequence_length,
    }


def warnings(pipeline: Any, prompt: str, s: Any, max_sequence_length: int = MAX_SEQUENCE_LENGTH) -> list[str]:
    """What the user should know before looking at the images."""
    out = []
    if s.negative_prompt.strip() and s.guidance <= CFG_THRESHOLD:
        out.append(
            f"negative prompt has no effect at guidance {s.guidance:g}: FLUX.1-schnell samples without guidance; "
            f"guidance above {CFG_THRESHOLD:g} turns on true classifier-free guidance (twice the time per step)"
        )
    clip_tok = getattr(pipeline, "tokenizer", None)
    if clip_tok is not None:
        n = len(clip_tok(prompt, truncation=False, verbose=False).input_ids) - 2
        if n > clip_tok.model_max_length - 2:
            out.append(
                f"prompt is {n} CLIP tokens; the CLIP encoder reads only the first {clip_tok.model_max_length - 2}"
            )
    t5_tok = getattr(pipeline, "tokenizer_2", None)
    if t5_tok is not None:
        n = len(t5_tok(prompt, truncation=False, verbose=False).input_ids) - 1  # </s> appended
        if n > max_sequence_length - 1:
            out.append(f"prompt is {n} T5 tokens; the T5 encoder reads only the first {max_sequence_length - 1}")
    return out


__all__ = ["MAX_SEQUENCE_LENGTH", "SIZE_MULTIPLE", "call_kwargs", "check_sizes", "true_cfg", "warnings"]
