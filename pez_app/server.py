"""How this server runs (the same for every user), ZeroGPU, friendly errors, the start-up model.

Per-user data never lives here: it is in gr.State (the run record and Stop flag of one tab) and
in the browser (History). Models are loaded once and cached by pez.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

try:  # Hugging Face ZeroGPU; imported before anything touches CUDA. A no-op off Spaces.
    import spaces
except ImportError:  # pragma: no cover - depends on the host
    spaces = None

import gradio as gr

import pez
from pez.errors import USER_ERRORS, is_oom

log = logging.getLogger("pez.app")


def env_flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or not value.strip():
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


@dataclass
class ServerSettings:
    """How this server runs: the same for every user (per-user data never lives here)."""

    device: str | None = os.environ.get("PEZ_DEVICE") or None  # None: cuda, then mps, then cpu
    offline_demo: bool = env_flag("PEZ_OFFLINE_DEMO")  # toy world model as the default pair
    gpu_concurrency: int = int(os.environ.get("PEZ_GPU_CONCURRENCY", "1"))  # runs at once on the GPU
    queue_size: int = int(os.environ.get("PEZ_QUEUE_SIZE", "32"))  # waiting runs before "queue full"
    gpu_seconds: int = int(os.environ.get("PEZ_GPU_SECONDS", "120"))  # ZeroGPU: most seconds one call reserves
    mcp: bool = env_flag("PEZ_MCP", True)  # also serve the endpoints as MCP tools
    probe_seconds: float = float(os.environ.get("PEZ_PROBE_SECONDS", "3"))  # start-up hub probe
    cpu_space: bool = env_flag("PEZ_CPU_SPACE")  # free CPU hardware: low-memory weights, CPU_SPACE_DEFAULTS


SERVER = ServerSettings()

# PEZ_CPU_SPACE=1 (a free CPU Space: 2 vCPU, 16 GB): the search settings the app starts with, so a
# first prompt comes within about a minute (ViT-H-14 on 2 vCPUs; BENCHMARKS.md), in place of the
# core's defaults. The place for a search time budget once InvertConfig has one.
CPU_SPACE_DEFAULTS = {"prompt_len": 8, "steps": 60, "candidates": 1, "refine_steps": 5, "patience": 30}


def weights_dtype() -> str | None:
    """The precision models are loaded in: on a CPU Space with native bf16, "bf16" (half the memory:
    the CLIP, and the pipeline, whose text encoder is then the CLIP's own); else None (the default)."""
    if not SERVER.cpu_space:
        return None
    from pez.engine.accel import low_memory_dtype

    return low_memory_dtype(pez.resolve_device(SERVER.device))


# On a ZeroGPU Space (the spaces package's own test of SPACES_ZERO_GPU): model handlers run in GPU
# worker processes (pez_app.zerogpu).
ZERO_GPU = spaces is not None and spaces.config.Config.zero_gpu


# ---------------------------------------------------------------------------------------------
# The default model at start-up: never fail on the first click.


@dataclass
class StartupModel:
    """Which pair the UI starts with, and why (shown in the banner)."""

    pair: str
    wanted: str
    fallback: bool = False  # True: the default pair's weights are unavailable, the toy world is used
    reason: str = ""
    missing: tuple[str, ...] = ()
    how_to: str = ""
    downloads: bool = False  # the default pair is usable but its weights download on first use


def startup_model(offline_demo: bool | None = None) -> StartupModel:
    """Offline demo -> toy. Otherwise ask pez whether the default pair is cached or downloadable
    (one quick probe); if neither, fall back to the toy world and say why."""
    offline_demo = SERVER.offline_demo if offline_demo is None else offline_demo
    if offline_demo:
        return StartupModel("toy", "toy")
    try:
        a = pez.models.pair_availability(pez.DEFAULT_PAIR, timeout=SERVER.probe_seconds)
    except Exception as e:  # noqa: BLE001 - a failed probe must not stop the app
        log.warning("could not check the default pair's weights: %s", e)
        return StartupModel(pez.DEFAULT_PAIR, pez.DEFAULT_PAIR)
    if a.ok:
        return StartupModel(pez.DEFAULT_PAIR, pez.DEFAULT_PAIR, downloads=not a.cached, missing=a.missing)
    return StartupModel("toy", pez.DEFAULT_PAIR, True, a.reason, a.missing, a.how_to)


# ---------------------------------------------------------------------------------------------
# Handler plumbing: ZeroGPU, friendly errors


def on_gpu(fn: Callable, duration: Callable[..., int] | int | None = None) -> Callable:
    """Run `fn` on a ZeroGPU device when the `spaces` package is importable (a no-op off Spaces).
    `duration`: seconds to reserve, or a callable given fn's own arguments (pez_app.zerogpu)."""
    if spaces is None:
        return fn
    return spaces.GPU(duration=SERVER.gpu_seconds if duration is None else duration)(fn)


TOAST_SECONDS = 12  # every toast closes by itself, so they never stack up


def user_error(message: str, title: str = "Please check the input") -> gr.Error:
    """An expected mistake: a toast, and no traceback in the server log."""
    return gr.Error(message, title=title, duration=TOAST_SECONDS, print_exception=False)


# Settings' field names (as pez's messages name them) -> what the UI calls them (pez.config's labels;
# a search setting's label wins over a regeneration setting of the same name).
FIELD_LABELS = {
    f.name: f.metadata["about"].label
    for cls in (pez.GenerateConfig, pez.InvertConfig)
    for f in dataclasses.fields(cls)
}


def tidy_message(text: str) -> str:
    """Make a core message read well in a toast: the UI's field names, no raw Python lists."""
    text = re.sub(r";?\s*similar: \[\]", "", text)
    text = re.sub(r"similar: \[([^\]]*)\]", lambda m: "similar: " + m.group(1).replace("'", ""), text)
    m = re.match(r"^(\w+): ", text)
    if m and m.group(1) in FIELD_LABELS:
        text = f"{FIELD_LABELS[m.group(1)]} ({m.group(1)}): {text[m.end() :]}"
    return text


def as_gr_error(e: BaseException) -> gr.Error:
    """Any exception -> a gr.Error the user can act on (never a traceback in the browser)."""
    if isinstance(e, gr.Error):
        return e
    if isinstance(e, pez.WeightsNotFoundError):
        return user_error(str(e), "Model weights not available")
    if isinstance(e, USER_ERRORS):
        return user_error(tidy_message(str(e)))
    if is_oom(e):
        free_gpu_memory()
        return user_error(
            "Out of GPU memory: try fewer candidates, a shorter prompt, fewer images or a smaller model.",
            "Out of memory",
        )
    log.exception("unexpected error in a handler")
    return gr.Error(
        f"Something went wrong ({type(e).__name__}: {e}). The app keeps running; details are in the server log.",
        title="Unexpected error",
        duration=TOAST_SECONDS,
        print_exception=False,
    )


def free_gpu_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def friendly_errors(fn: Callable) -> Callable:
    """Wrap a handler (plain or generator) so every exception reaches the user as one gr.Error."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def stream(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as e:
                raise as_gr_error(e) from e

        return stream

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            raise as_gr_error(e) from e

    return call


def gpu_handler(fn: Callable, duration: Callable[..., int] | int | None = None) -> Callable:
    return on_gpu(friendly_errors(fn), duration)


def load_model(model: str) -> pez.LoadedClip:
    if not isinstance(model, str) or not model.strip():
        raise user_error("Choose a model pair in Settings.")
    return pez.load_clip(model.strip(), device=SERVER.device, precision=weights_dtype())


def load_pipeline(model: str, clip: pez.LoadedClip | None):
    """The pair's diffusion pipeline in the server's precision, its text encoder shared with `clip`
    (the search's) where they are the same weights; None for the toy pair (no pipeline)."""
    if not pez.get_pair(model).generator:
        return None
    return pez.load_generator(model, device=SERVER.device, dtype=weights_dtype(), text_encoder_of=clip)
