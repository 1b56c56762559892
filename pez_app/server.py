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
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

try:  # Hugging Face ZeroGPU; imported before anything touches CUDA. A no-op off Spaces.
    import spaces
except ImportError:  # pragma: no cover - depends on the host
    spaces = None

import gradio as gr

import pez
from pez.config import BOUNDS
from pez.errors import USER_ERRORS, ConfigError, is_oom

log = logging.getLogger("pez.app")


def env_flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or not value.strip():
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def _env_number(name: str, default, kind=int):
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or not value > 0:  # NaN too
        raise ConfigError(f"{name}: expected a {'whole ' if kind is int else ''}number above 0, received {raw!r}")
    return value


@dataclass
class ServerSettings:
    """How this server runs: the same for every user (per-user data never lives here)."""

    device: str | None = os.environ.get("PEZ_DEVICE") or None  # None: cuda, then mps, then cpu
    offline_demo: bool = env_flag("PEZ_OFFLINE_DEMO")  # toy world model as the default pair
    gpu_concurrency: int = _env_number("PEZ_GPU_CONCURRENCY", 1)  # runs at once on the GPU
    queue_size: int = _env_number("PEZ_QUEUE_SIZE", 32)  # waiting runs before "queue full"
    gpu_seconds: int = _env_number("PEZ_GPU_SECONDS", 120)  # ZeroGPU: most seconds one call reserves
    mcp: bool = env_flag("PEZ_MCP", True)  # also serve the endpoints as MCP tools
    probe_seconds: float = _env_number("PEZ_PROBE_SECONDS", 3.0, float)  # start-up hub probe
    cpu_space: bool = env_flag("PEZ_CPU_SPACE")  # free CPU hardware: low-memory weights, CPU_SPACE_DEFAULTS
    allowed_models: tuple[str, ...] = ()  # app.py --allow-model: CLIP specs beyond the pairs
    limits: Limits = field(default_factory=lambda: Limits())  # set from the environment by build_demo


# ---------------------------------------------------------------------------------------------
# What one request may ask of a shared server. The CLI and the Python API take any CLIP spec and
# pez.config's bounds; a server takes only what it offers, within these caps.


@dataclass(frozen=True)
class Limits:
    """Per-request caps of this server, from its environment (read when the demo is built)."""

    extra_models: tuple[str, ...] = ()  # PEZ_EXTRA_MODELS: CLIP specs offered beyond the registry pairs
    max_steps: int = 3000  # PEZ_MAX_STEPS: steps per search (the reference code's count)
    max_candidates: int = 8  # PEZ_MAX_CANDIDATES: candidates per search
    max_run_seconds: float = 300.0  # PEZ_MAX_RUN_SECONDS: once a run has its model, it stops after this
    max_subjects: int = 8  # PEZ_MAX_SUBJECTS: subjects per style regeneration
    max_file_mb: int = 20  # PEZ_MAX_FILE_MB: one uploaded (or data: URL) image

    @classmethod
    def from_env(cls, extra_models: tuple[str, ...] = ()) -> Limits:
        """The caps set in the environment (PEZ_*), plus CLIP specs from `extra_models`. A bad
        value is a ConfigError naming the variable."""
        d = cls()
        run_seconds = CPU_SPACE_RUN_SECONDS if SERVER.cpu_space else d.max_run_seconds
        extra = [m.strip() for m in os.environ.get("PEZ_EXTRA_MODELS", "").split(",") if m.strip()]
        return cls(
            extra_models=tuple(dict.fromkeys([*extra, *extra_models])),
            max_steps=min(_env_number("PEZ_MAX_STEPS", d.max_steps), int(BOUNDS["steps"].hi)),
            max_candidates=min(_env_number("PEZ_MAX_CANDIDATES", d.max_candidates), int(BOUNDS["candidates"].hi)),
            max_run_seconds=_env_number("PEZ_MAX_RUN_SECONDS", run_seconds, float),
            max_subjects=_env_number("PEZ_MAX_SUBJECTS", d.max_subjects),
            max_file_mb=_env_number("PEZ_MAX_FILE_MB", d.max_file_mb),
        )


SERVER = ServerSettings()

# PEZ_CPU_SPACE=1 (a free CPU Space: 2 vCPU, 16 GB): the search settings the app starts with, so a
# first prompt comes within about a minute (ViT-H-14 on 2 vCPUs; BENCHMARKS.md), in place of the
# core's defaults.
CPU_SPACE_DEFAULTS = {"prompt_len": 8, "steps": 60, "candidates": 1, "refine_steps": 5, "patience": 30}
# ... and the server's time limit of one run there (PEZ_MAX_RUN_SECONDS, when not set): a longer
# search a visitor asks for stops after it with its best prompt, so one run never holds the 2 vCPUs
# for minutes while others wait.
CPU_SPACE_RUN_SECONDS = 120.0


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
        log.info("%s", e)  # the full message, with local paths, for the operator
        return user_error(public_text(str(e)), "Model weights not available")
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


def public_text(text: str) -> str:
    """A message for any caller: the server's own folders (hub cache, home) are not shown."""
    from pez.models.hub import hub_cache_dir

    for path, name in ((hub_cache_dir(), "the server's hub cache"), (str(Path.home()), "~")):
        if path and len(path) > 1:
            text = text.replace(f"({path})", f"({name})").replace(path, name)
    return text


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
                err = as_gr_error(e)
            else:
                return
            raise err  # outside the except: the error keeps no reference to the failure's frames

        return stream

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            err = as_gr_error(e)
        raise err  # outside the except: the error keeps no reference to the failure's frames

    return call


def gpu_handler(fn: Callable, duration: Callable[..., int] | int | None = None) -> Callable:
    """A model handler: counted in SLOTS while it runs (in this process), run on a ZeroGPU device for
    `duration` (pez_app.zerogpu), its errors as one message."""
    return holds_slot(on_gpu(friendly_errors(fn), duration))


def offered_models() -> list[str]:
    """The models this server runs: the registry's pairs and what its operator added."""
    return [*pez.list_pairs(), *(m for m in SERVER.limits.extra_models if m not in pez.PAIRS)]


def check_model(model) -> str:
    """`model` if this server offers it, else a refusal that loads nothing and reads the same for
    any other value (so it never tells whether a server path exists)."""
    offered = offered_models()
    if isinstance(model, str) and model.strip() in offered:
        return model.strip()
    raise user_error(f"Model pair (model): expected one of {offered}, received {model!r:.120}")


def load_model(model: str) -> pez.LoadedClip:
    return pez.load_clip(check_model(model), device=SERVER.device, precision=weights_dtype())


def load_pipeline(model: str, clip: pez.LoadedClip | None):
    """The pair's diffusion pipeline in the server's precision, its text encoder shared with `clip`
    (the search's) where they are the same weights; None for the toy pair (no pipeline)."""
    if not pez.get_pair(model).generator:
        return None
    return pez.load_generator(model, device=SERVER.device, dtype=weights_dtype(), text_encoder_of=clip)


# ---------------------------------------------------------------------------------------------
# The model slot: how many model runs hold it now (the "gpu" queue lets gpu_concurrency in)


class ModelSlots:
    """Counts the handlers running a model, so the UI can say "waiting" only when a run waits."""

    def __init__(self):
        self.active, self._lock = 0, threading.Lock()

    def enter(self) -> None:
        with self._lock:
            self.active += 1

    def leave(self) -> None:
        with self._lock:
            self.active -= 1

    def busy(self) -> bool:
        return self.active >= SERVER.gpu_concurrency


SLOTS = ModelSlots()


def holds_slot(fn: Callable) -> Callable:
    """Wrap a model handler (plain or generator) so SLOTS counts it while it runs."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def stream(*args, **kwargs):
            SLOTS.enter()
            try:
                yield from fn(*args, **kwargs)
            finally:
                SLOTS.leave()

        return stream

    @functools.wraps(fn)
    def call(*args, **kwargs):
        SLOTS.enter()
        try:
            return fn(*args, **kwargs)
        finally:
            SLOTS.leave()

    return call


class Deadline:
    """The server's time limit of one request (Limits.max_run_seconds) as a should_stop: its clock
    starts at the first poll, which comes once the model is loaded and the work begins, so neither
    the queue nor a first download counts. `hit` says whether it stopped the run."""

    def __init__(self, seconds: float | None = None):
        self.seconds = SERVER.limits.max_run_seconds if seconds is None else seconds
        self.start: float | None = None
        self.hit = False

    def __call__(self) -> bool:
        now = time.monotonic()
        if self.start is None:
            self.start = now
        self.hit = self.hit or now - self.start >= self.seconds
        return self.hit

    def note(self) -> str:
        return f"the server's time limit ({self.seconds:g} s)"
