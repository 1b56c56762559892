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
from collections.abc import Callable, Mapping
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


TRUTHY = ("1", "true", "yes", "on")  # the one set of values an on/off PEZ_* variable reads as on


def env_flag(name: str, default: bool = False, environ: Mapping[str, str] | None = None) -> bool:
    """An on/off setting from the environment: TRUTHY is on, anything else off, unset or blank the default."""
    value = (os.environ if environ is None else environ).get(name)
    if value is None or not value.strip():
        return default
    return value.strip().lower() in TRUTHY


def _env_number(environ: Mapping[str, str], name: str, default, kind=int):
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or not value > 0:  # NaN too
        raise ConfigError(f"{name}: expected a {'whole ' if kind is int else ''}number above 0, received {raw!r}")
    return value


def _env_count(environ: Mapping[str, str], name: str, default: int) -> int:
    """A whole number of 0 or more (e.g. PEZ_TRUSTED_PROXIES)."""
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit():
        raise ConfigError(f"{name}: expected a whole number of 0 or more, received {raw!r:.60}")
    return int(raw)


# PEZ_CPU_SPACE=1 (a free CPU Space: 2 vCPU, 16 GB): the search settings the app starts with, so a
# first prompt comes within about a minute (ViT-H-14 on 2 vCPUs; BENCHMARKS.md), in place of the
# core's defaults.
CPU_SPACE_DEFAULTS = {"prompt_len": 8, "steps": 60, "candidates": 1, "refine_steps": 5, "patience": 30}
# ... and the server's time limit of one run there (PEZ_MAX_RUN_SECONDS, when not set): a longer
# search a visitor asks for ends at it with its best prompt, so one run never holds the 2 vCPUs
# for minutes while others wait.
CPU_SPACE_RUN_SECONDS = 120.0
# ... and the most megapixels one request may decode there (PEZ_MAX_DECODE_MP, when not set): one
# image at pez's size limit (40 MP), so decoding holds at most ~160 MB and a few seconds of a vCPU.
CPU_SPACE_DECODE_MP = 40


# ---------------------------------------------------------------------------------------------
# What one request may ask of a shared server. The CLI and the Python API take any CLIP spec and
# pez.config's bounds; a server takes only what it offers, within these caps.


@dataclass(frozen=True)
class Limits:
    """Per-request caps of this server (ServerSettings.from_env reads them from PEZ_*)."""

    extra_models: tuple[str, ...] = ()  # PEZ_EXTRA_MODELS: CLIP specs offered beyond the registry pairs
    max_steps: int = 3000  # PEZ_MAX_STEPS: steps per search (the reference code's count)
    max_candidates: int = 8  # PEZ_MAX_CANDIDATES: candidates per search
    max_run_seconds: float = 300.0  # PEZ_MAX_RUN_SECONDS: a run's time once it has its model (its budget)
    max_subjects: int = 8  # PEZ_MAX_SUBJECTS: subjects per style regeneration
    max_file_mb: int = 20  # PEZ_MAX_FILE_MB: one uploaded (or data: URL) image
    max_decode_mp: int = 160  # PEZ_MAX_DECODE_MP: decoded megapixels of all images of one request
    max_jobs: int = 2  # PEZ_MAX_JOBS_PER_CALLER: queued + running jobs per caller (session, address)
    max_body_mb: int = 64  # PEZ_MAX_BODY_MB: one HTTP request's body, on every route

    def decode_budget(self):
        """What decoding one request's images may cost (pez.images.DecodeBudget, counted from the
        headers before any decode): `max_decode_mp` megapixels, 4 bytes each, for all images."""
        from pez.images import MAX_IMAGE_BYTES, DecodeBudget

        pixels = self.max_decode_mp * 1_000_000
        return DecodeBudget(
            image_bytes=min(MAX_IMAGE_BYTES, pixels * 4), request_pixels=pixels, request_bytes=pixels * 4
        )

    @classmethod
    def from_env(
        cls, extra_models: tuple[str, ...] = (), cpu_space: bool = False, environ: Mapping[str, str] | None = None
    ) -> Limits:
        """The caps set in the environment (PEZ_*), plus CLIP specs from `extra_models`. A bad
        value is a ConfigError naming the variable."""
        env, d = os.environ if environ is None else environ, cls()
        run_seconds = CPU_SPACE_RUN_SECONDS if cpu_space else d.max_run_seconds
        decode_mp = CPU_SPACE_DECODE_MP if cpu_space else d.max_decode_mp
        extra = [m.strip() for m in env.get("PEZ_EXTRA_MODELS", "").split(",") if m.strip()]
        return cls(
            extra_models=tuple(dict.fromkeys([*extra, *extra_models])),
            max_steps=min(_env_number(env, "PEZ_MAX_STEPS", d.max_steps), int(BOUNDS["steps"].hi)),
            max_candidates=min(_env_number(env, "PEZ_MAX_CANDIDATES", d.max_candidates), int(BOUNDS["candidates"].hi)),
            max_run_seconds=_env_number(env, "PEZ_MAX_RUN_SECONDS", run_seconds, float),
            max_subjects=_env_number(env, "PEZ_MAX_SUBJECTS", d.max_subjects),
            max_file_mb=_env_number(env, "PEZ_MAX_FILE_MB", d.max_file_mb),
            max_decode_mp=_env_number(env, "PEZ_MAX_DECODE_MP", decode_mp),
            max_jobs=_env_number(env, "PEZ_MAX_JOBS_PER_CALLER", d.max_jobs),
            max_body_mb=_env_number(env, "PEZ_MAX_BODY_MB", d.max_body_mb),
        )


@dataclass(frozen=True)
class ServerSettings:
    """How this server runs: the same for every user (per-user data never lives here). Read once,
    when the app is built (`from_env`); nothing is read from the environment at import."""

    device: str | None = None  # PEZ_DEVICE / --device; None: cuda, then mps, then cpu
    offline_demo: bool = False  # PEZ_OFFLINE_DEMO / --offline-demo: the toy world model as the default pair
    gpu_concurrency: int = 1  # PEZ_GPU_CONCURRENCY: runs at once on the GPU
    queue_size: int = 32  # PEZ_QUEUE_SIZE: waiting runs before "queue full"
    gpu_seconds: int = 120  # PEZ_GPU_SECONDS: ZeroGPU, the most seconds one call reserves
    mcp: bool = True  # PEZ_MCP / --no-mcp: also serve the endpoints as MCP tools
    probe_seconds: float = 3.0  # PEZ_PROBE_SECONDS: the start-up hub probe
    cpu_space: bool = False  # PEZ_CPU_SPACE: free CPU hardware, low-memory weights, CPU_SPACE_DEFAULTS
    allowed_models: tuple[str, ...] = ()  # --allow-model: CLIP specs beyond the pairs (also in limits)
    limits: Limits = field(default_factory=Limits)  # the per-request caps
    ui_interval: float = 0.15  # seconds between streamed UI updates (tests set 0: every report)
    trusted_proxies: int = 0  # PEZ_TRUSTED_PROXIES: proxies in front (a Space: 1), for the caller's address
    sessions: int = 1000  # PEZ_SESSIONS: browser sessions whose state the server keeps (LRU)
    disk_mb: int = 256  # PEZ_DISK_MB: bytes callers may have on the server's disk (data: URLs, exports)
    share_links: int = 500  # PEZ_SHARE_LINKS: share links kept on disk, all callers (oldest go first)
    share_mb: int = 256  # PEZ_SHARE_MB: their bytes on disk, all callers (one link: at most 16 MB)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> ServerSettings:
        """The settings from PEZ_* (`environ`, default os.environ), then `overrides` (the command
        line's flags: device, offline_demo, mcp, allowed_models, ...). A mistyped number is a
        ConfigError naming the variable (main.build_or_exit makes it one line)."""
        env = os.environ if environ is None else environ
        values = {
            "device": env.get("PEZ_DEVICE", "").strip() or None,
            "offline_demo": env_flag("PEZ_OFFLINE_DEMO", False, env),
            "gpu_concurrency": _env_number(env, "PEZ_GPU_CONCURRENCY", cls.gpu_concurrency),
            "queue_size": _env_number(env, "PEZ_QUEUE_SIZE", cls.queue_size),
            "gpu_seconds": _env_number(env, "PEZ_GPU_SECONDS", cls.gpu_seconds),
            "mcp": env_flag("PEZ_MCP", True, env),
            "probe_seconds": _env_number(env, "PEZ_PROBE_SECONDS", cls.probe_seconds, float),
            "cpu_space": env_flag("PEZ_CPU_SPACE", False, env),
            "trusted_proxies": _env_count(env, "PEZ_TRUSTED_PROXIES", cls.trusted_proxies),
            "sessions": _env_number(env, "PEZ_SESSIONS", cls.sessions),
            "disk_mb": _env_number(env, "PEZ_DISK_MB", cls.disk_mb),
            "share_links": _env_number(env, "PEZ_SHARE_LINKS", cls.share_links),
            "share_mb": _env_number(env, "PEZ_SHARE_MB", cls.share_mb),
        }
        values.update({k: v for k, v in overrides.items() if k != "limits"})
        allowed = tuple(values.get("allowed_models", ()))
        limits = overrides.get("limits") or Limits.from_env(allowed, values["cpu_space"], env)
        return cls(**{**values, "allowed_models": allowed, "limits": limits})

    def weights_dtype(self) -> str | None:
        """The precision models are loaded in: on a CPU Space with native bf16, "bf16" (half the
        memory: the CLIP, and the pipeline, whose text encoder is then the CLIP's own); else None."""
        if not self.cpu_space:
            return None
        from pez.engine.accel import low_memory_dtype

        return low_memory_dtype(pez.resolve_device(self.device))

    def offered_models(self) -> list[str]:
        """The models this server runs: the registry's pairs and what its operator added."""
        return [*pez.list_pairs(), *(m for m in self.limits.extra_models if m not in pez.PAIRS)]

    def check_model(self, model) -> str:
        """`model` if this server offers it, else a refusal that loads nothing and reads the same
        for any other value (so it never tells whether a server path exists)."""
        offered = self.offered_models()
        if isinstance(model, str) and model.strip() in offered:
            return model.strip()
        raise user_error(f"Model pair (model): expected one of {offered}, received {model!r:.120}")

    def load_model(self, model: str) -> pez.LoadedClip:
        return pez.load_clip(self.check_model(model), device=self.device, precision=self.weights_dtype())

    def load_pipeline(self, model: str, clip: pez.LoadedClip | None):
        """The pair's diffusion pipeline in the server's precision, its text encoder shared with
        `clip` (the search's) where they are the same weights; None for the toy pair (no pipeline)."""
        if not pez.get_pair(model).generator:
            return None
        return pez.load_generator(model, device=self.device, dtype=self.weights_dtype(), text_encoder_of=clip)


# On a ZeroGPU Space (the spaces package's own test of SPACES_ZERO_GPU, made when it is imported):
# model handlers run in GPU worker processes (pez_app.zerogpu).
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


def startup_model(offline_demo: bool = False, probe_seconds: float = ServerSettings.probe_seconds) -> StartupModel:
    """Offline demo -> toy. Otherwise ask pez whether the default pair is cached or downloadable
    (one quick probe); if neither, fall back to the toy world and say why."""
    if offline_demo:
        return StartupModel("toy", "toy")
    try:
        a = pez.models.pair_availability(pez.DEFAULT_PAIR, timeout=probe_seconds)
    except Exception as e:  # noqa: BLE001 - a failed probe must not stop the app
        log.warning("could not check the default pair's weights: %s", e)
        return StartupModel(pez.DEFAULT_PAIR, pez.DEFAULT_PAIR)
    if a.ok:
        return StartupModel(pez.DEFAULT_PAIR, pez.DEFAULT_PAIR, downloads=not a.cached, missing=a.missing)
    return StartupModel("toy", pez.DEFAULT_PAIR, True, a.reason, a.missing, a.how_to)


# ---------------------------------------------------------------------------------------------
# Errors: every exception reaches the caller as one message


TOAST_SECONDS = 12  # every toast closes by itself, so they never stack up


def user_error(message: str, title: str = "Please check the input") -> gr.Error:
    """An expected mistake: a toast, and no traceback in the server log."""
    return gr.Error(message, title=title, duration=TOAST_SECONDS, print_exception=False)


# Settings' field names (as pez's messages name them) -> what the UI calls them (pez.config's labels;
# a search setting's label wins over a regeneration setting of the same name).
FIELD_LABELS = {
    f.name: f.metadata["about"].label for cls in (pez.GenerateConfig, pez.InvertConfig) for f in dataclasses.fields(cls)
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
