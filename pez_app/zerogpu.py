"""ZeroGPU, Hugging Face's shared free GPUs: how the app's model handlers run there.

What the `spaces` package (0.51.3) does, from its source: on a ZeroGPU Space (SPACES_ZERO_GPU set)
importing it patches torch so that CUDA looks available in the main process; tensors moved to
`cuda` at import time are recorded, packed at start-up (on `launch`) and restored fast in each GPU
worker. A function decorated with `spaces.GPU(duration=...)` runs in a forked worker process that
holds a GPU for up to `duration` seconds (an int, or a callable given the function's own arguments);
a generator function gets a generator wrapper that passes each yielded value back (pickled).
Workers are reused only while idle, so whatever a worker loads itself is loaded again by the next
new worker: here the default pair is loaded and moved to `cuda` at import (`preload`), and other
pairs load inside the GPU call with a status that says so. Quota, queue and abort errors are
`gr.Error`s whose titles start with "ZeroGPU" (spaces.zero.client.schedule, spaces.zero.wrappers):
`explain` rewords them for pez's users. Run-time `torch.compile` is not supported there
(pez.engine.accel turns it off when SPACES_ZERO_GPU is set).

What runs in the worker gets copies of its arguments: it cannot see a Stop pressed later, and what
it writes into them (the run record) never reaches the main process. So the search handlers run the
GPU part as an inner stream and keep the record, Stop and the final status in the main process
(pez_app.pipeline); off ZeroGPU the same code runs in one process.

Durations are reserved per call from the request (`search_seconds`, `generate_seconds`,
`score_seconds`): a visitor's daily quota is a few GPU-minutes, and the reserved duration is what
is checked against it. The per-step figures below are estimates for one ZeroGPU slice (an H200
MIG 3g), to be replaced by `bench/gpu_check.py`'s eager bf16 figures once measured; each estimate
is doubled (MARGIN) and capped by the server's PEZ_GPU_SECONDS (`cap`, which the pipeline passes).
A refine round is charged pez.config.REFINE_ROUND_STEPS search steps, as the engine's planner does.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Callable, Sequence
from typing import NoReturn

import gradio as gr

import pez
from pez.config import CFG_THRESHOLD, REFINE_ROUND_STEPS
from pez.models.clip import parse_clip_spec

from .server import ZERO_GPU, ServerSettings

log = logging.getLogger("pez.app")

# Estimates (seconds) for one ZeroGPU slice; see the module docstring.
START_SECONDS = 5.0  # worker start and the restore of the packed weights, first CUDA calls
LOAD_SECONDS = 90.0  # loading a pair that is not preloaded, from disk to the GPU, inside the call
STEP_SECONDS_24_LAYERS = 0.03  # one eager bf16 PEZ step, 24-layer text tower (ViT-H-14), 1 candidate
CANDIDATE_SHARE = 0.15  # each further candidate (batched) adds this share of a step
IMAGE_SECONDS = 0.05  # encoding one target image
DENOISE_SECONDS = {"sd": 0.05, "sdxl": 0.15, "toy": 0.0}  # one UNet step per image at the pair's size
IMAGE_EXTRA_SECONDS = 0.3  # VAE decode and CLIP scoring of one image
MARGIN = 2.0
MIN_SECONDS = 10

# spaces 0.51.3's error titles (spaces/zero/client.py, spaces/zero/wrappers.py)
QUOTA_TITLES = ("ZeroGPU quota exceeded", "ZeroGPU pending credits exceeded")
DURATION_TITLE = "ZeroGPU illegal duration"
QUEUE_TITLES = ("ZeroGPU queue timeout", "ZeroGPU client error")
WORKER_TITLE, ABORTED = "ZeroGPU worker error", "GPU task aborted"

PRELOADED: set[str] = set()  # pairs loaded at import (on ZeroGPU: packed and restored in each worker)


# ---------------------------------------------------------------------------------------------
# Preloading


def preload(pair: str, settings: ServerSettings) -> None:
    """Load `pair`'s CLIP and generator now, on the server's device (`cuda` on ZeroGPU, where the
    spaces package packs them at start-up). Once per pair and process."""
    if pair in PRELOADED:
        return
    log.info("preloading the pair %r (CLIP and generator) for ZeroGPU", pair)
    settings.load_pipeline(pair, settings.load_model(pair))
    PRELOADED.add(pair)


def loads_in_call(model: str) -> bool:
    """On ZeroGPU: will this model be loaded inside the GPU call (not preloaded)?"""
    return ZERO_GPU and model not in PRELOADED


def loading_note(model: str) -> str:
    return (
        f"Loading {model} on the GPU: only {', '.join(sorted(PRELOADED)) or 'the default pair'} is preloaded on "
        "this Space, so the first run of another model loads its weights inside the GPU time (slower)."
    )


# ---------------------------------------------------------------------------------------------
# Durations: each takes the same arguments as the GPU function it sizes


@functools.lru_cache(maxsize=64)
def text_layers(model: str) -> int:
    """Layers of the model's CLIP text tower, from open_clip's configs (no weights read)."""
    import open_clip

    try:
        spec = parse_clip_spec(model)
    except (pez.ConfigError, pez.WeightsNotFoundError):
        return 24
    if spec.source == "toy":
        return 2
    cfg = open_clip.get_model_config(spec.arch) if spec.arch else None
    return int((cfg or {}).get("text_cfg", {}).get("layers", 24))


def _clamp(seconds: float, cap: int) -> int:
    return int(min(max(math.ceil(seconds * MARGIN), MIN_SECONDS), cap))


def _image_count(values: Sequence) -> int:
    """Target images among a search's own inputs: files, images, galleries of them (texts are not)."""
    n = 0
    for v in values:
        for x in v if isinstance(v, (list, tuple)) else [v]:
            x = x[0] if isinstance(x, (list, tuple)) and x else x  # a gallery item: (path, caption)
            if isinstance(x, str):
                n += os.path.isfile(x)
            elif x is not None and not isinstance(x, (int, float, bool)):
                n += 1
    return n


def search_seconds(
    own: Sequence,
    model: str,
    config: pez.InvertConfig,
    control=None,
    asked=None,
    *,
    cap: int = ServerSettings.gpu_seconds,
    per_image: bool = False,
) -> int:
    """GPU seconds to reserve for one search request: steps (and refine rounds) at the CLIP's step
    cost, several candidates, the target images, and loading when the model is not preloaded.
    `per_image` (concatenate): one search per target image, each within `config.time_budget`."""
    images = _image_count(own)
    searches = max(images, 1) if per_image else 1
    step = STEP_SECONDS_24_LAYERS * text_layers(model) / 24 * (1 + CANDIDATE_SHARE * (config.candidates - 1))
    work = (config.steps + REFINE_ROUND_STEPS * config.refine_steps) * step
    for seconds in (config.time_budget, config.time_limit):  # the run ends by either
        if seconds:
            work = min(work, float(seconds))
    work = searches * work + IMAGE_SECONDS * images
    return _clamp(START_SECONDS + work + (LOAD_SECONDS if loads_in_call(model) else 0.0), cap)


def generate_seconds(
    galleries: Sequence, model: str, config: pez.GenerateConfig, progress=None, *, cap: int = ServerSettings.gpu_seconds
) -> int:
    """GPU seconds to reserve for a regeneration: images x denoising steps (x2 with guidance) at the
    pair's step cost, decoding and scoring, and loading when the pair is not preloaded."""
    try:
        pair = pez.get_pair(model)
    except pez.ConfigError:
        return MIN_SECONDS  # the call fails at once with a clear message
    images = sum(len(draws) for draws in galleries) * config.num_images
    steps = config.steps or pair.steps
    guidance = pair.guidance if config.guidance is None else config.guidance
    per_step = DENOISE_SECONDS.get(pair.kind, 0.1) * (2 if guidance > CFG_THRESHOLD else 1)
    work = images * (steps * per_step + IMAGE_EXTRA_SECONDS)
    return _clamp(START_SECONDS + work + (LOAD_SECONDS if loads_in_call(model) else 0.0), cap)


def score_seconds(prompt: str, image, model: str, *, cap: int = ServerSettings.gpu_seconds) -> int:
    return _clamp(START_SECONDS + (LOAD_SECONDS if loads_in_call(model) else 0.0), cap)


# ---------------------------------------------------------------------------------------------
# Errors


def is_abort(e: BaseException) -> bool:
    """The GPU worker ended before the call did (past its duration, or it died)."""
    return isinstance(e, gr.Error) and e.title == WORKER_TITLE and str(e.message) == ABORTED


def explain(e: BaseException, seconds: int | None = None) -> BaseException:
    """A ZeroGPU error from the spaces package -> the same error with what a pez user can do."""
    if not isinstance(e, gr.Error) or not str(e.title or "").startswith("ZeroGPU"):
        return e
    said = str(e.message).strip().rstrip(".") + "."
    asked = f" ({seconds} s reserved)" if seconds else ""
    if e.title in QUOTA_TITLES:
        text = (
            f"The free GPU time of this Space is used up for now: {said} Shorter runs use less "
            "(fewer steps or candidates); or run pez on your own machine (see the README: pip install, `pez app`)."
        )
    elif e.title == DURATION_TITLE:
        text = f"This run needs more GPU time{asked} than one call may reserve: {said} Use fewer steps or images."
    elif e.title in QUEUE_TITLES:
        text = f"No GPU was free for this run: {said} Please try again in a minute."
    elif is_abort(e):
        text = (
            f"The GPU run was aborted{asked}: it ran past the time it reserved, or its worker stopped. "
            "Try fewer steps, candidates or images."
        )
    elif e.title == WORKER_TITLE:
        text = f"The GPU worker failed ({said.rstrip('.')}); the Space's log has the details. Please try again."
    else:
        text = said
    return gr.Error(text, title=e.title, duration=12, print_exception=False)


def reraise(e: gr.Error, seconds: int | None) -> NoReturn:
    """Raise `e`, explained (`seconds`: what the call reserved on ZeroGPU, else None)."""
    explained = explain(e, seconds)
    if explained is e:
        raise e
    raise explained from e


def call_on_gpu(fn: Callable, duration: Callable[..., int], *args):
    """fn(*args) with ZeroGPU's errors explained (fn is already wrapped by spaces.GPU)."""
    try:
        return fn(*args)
    except gr.Error as e:
        reraise(e, duration(*args) if ZERO_GPU else None)


__all__ = [
    "PRELOADED",
    "call_on_gpu",
    "explain",
    "reraise",
    "generate_seconds",
    "is_abort",
    "loading_note",
    "loads_in_call",
    "preload",
    "score_seconds",
    "search_seconds",
]
