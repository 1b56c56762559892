"""Model plumbing: the registry of CLIP <-> generator pairs, CLIP loading and caching, devices.

The registry (`PAIRS`, `list_pairs()`) is the single source of truth the CLI, the app and the
generator read. CLIP models are loaded once per (spec, device, precision) and cached; callers
get them from `load_clip()` and never mutate them.

A CLIP spec is a string:
  - a pair name from the registry, e.g. "sd-2.1-base" (uses that pair's CLIP);
  - "ARCH/TAG", an open_clip architecture and pretrained tag, e.g. "ViT-L-14/openai";
  - "ARCH@PATH", an architecture with a local weights file (.safetensors, .bin, .pt);
  - a local folder holding open_clip_config.json and the weights (open_clip's hub layout),
    also accepted as "local-dir:PATH"; or "hf-hub:ORG/REPO";
  - "toy", the small offline CLIP of the toy world (ships with pez, no download);
  - "random:ARCH", an architecture with random weights (benchmarks), "random:tiny" for tests.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from .config import PRECISIONS, VISION_OFFLOAD_BYTES
from .errors import ConfigError, WeightsNotFoundError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelPair:
    """A diffusion generator and the CLIP text encoder PEZ should optimise against for it."""

    name: str  # registry key, e.g. "sd-turbo"
    label: str  # human-readable, for dropdowns
    clip: str  # CLIP spec ("ARCH/TAG" or "toy")
    generator: str | None  # diffusers hub id; None: no diffusion generator
    kind: str = "sd"  # pipeline family: "sd", "sdxl" or "toy"
    steps: int = 25  # default sampling steps
    guidance: float = 7.5  # default classifier-free guidance
    size: int = 512  # default width and height
    scheduler: str | None = None  # "dpm-multistep" or None (the pipeline's own)
    note: str = ""

    @property
    def clip_arch(self) -> str:
        return self.clip.split("/")[0]


PAIRS: dict[str, ModelPair] = {
    p.name: p
    for p in [
        ModelPair(
            "sd-turbo",
            "SD-Turbo (fast, 1-4 steps)",
            "ViT-H-14/laion2b_s32b_b79k",
            "stabilityai/sd-turbo",
            steps=1,
            guidance=0.0,
            size=512,
            note="Fast default for interactive use on a GPU; guidance 0 ignores negative prompts.",
        ),
        ModelPair(
            "sd-2.1-base",
            "Stable Diffusion 2.1-base (paper setting)",
            "ViT-H-14/laion2b_s32b_b79k",
            "stabilityai/stable-diffusion-2-1-base",
            steps=25,
            guidance=9.0,
            size=512,
            scheduler="dpm-multistep",
            note="The PEZ paper's generation setting.",
        ),
        ModelPair(
            "sd-1.5",
            "Stable Diffusion 1.5",
            "ViT-L-14/openai",
            "stable-diffusion-v1-5/stable-diffusion-v1-5",
            steps=25,
            guidance=7.5,
            size=512,
        ),
        ModelPair(
            "sdxl",
            "SDXL base 1.0",
            "ViT-bigG-14/laion2b_s39b_b160k",
            "stabilityai/stable-diffusion-xl-base-1.0",
            kind="sdxl",
            steps=30,
            guidance=7.0,
            size=1024,
            note="PEZ optimises for the bigG encoder only; SDXL also has a ViT-L encoder.",
        ),
        ModelPair(
            "sdxl-turbo",
            "SDXL-Turbo (fast, 1-4 steps)",
            "ViT-bigG-14/laion2b_s39b_b160k",
            "stabilityai/sdxl-turbo",
            kind="sdxl",
            steps=1,
            guidance=0.0,
            size=512,
        ),
        ModelPair(
            "toy",
            "Toy world (offline demo, no download)",
            "toy",
            None,
            kind="toy",
            steps=1,
            guidance=0.0,
            size=64,
            note="A small CLIP trained on coloured shapes; its 'generator' draws the shapes named.",
        ),
    ]
}
DEFAULT_PAIR = "sd-turbo"


def list_pairs() -> list[str]:
    """Names of the registered model pairs, default first."""
    return [DEFAULT_PAIR] + [name for name in PAIRS if name != DEFAULT_PAIR]


def get_pair(name: str) -> ModelPair:
    if name not in PAIRS:
        raise ConfigError(f"model pair: expected one of {list_pairs()}, received {name!r}")
    return PAIRS[name]


# ---------------------------------------------------------------------------------------------
# Devices and precision


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """'auto'/None -> cuda, then mps, then cpu. An unavailable device is a ConfigError."""
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ConfigError(f"device: expected one of 'auto', 'cpu', 'cuda', 'mps', received {device!r}") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: expected 'cpu' or 'auto' (no CUDA device is available), received {device!r}")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device: expected 'cpu' or 'auto' (MPS is not available), received {device!r}")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device: expected one of 'auto', 'cpu', 'cuda', 'mps', received {device!r}")
    return dev


def resolve_precision(precision: str | None, device: torch.device) -> str:
    """'auto' -> bf16 on CUDA when supported (else fp16), fp32 elsewhere."""
    precision = precision or "auto"
    if precision not in PRECISIONS:
        raise ConfigError(f"precision: expected one of {list(PRECISIONS)}, received {precision!r}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


# ---------------------------------------------------------------------------------------------
# CLIP specs


@dataclass(frozen=True)
class ClipSpec:
    """Where a CLIP comes from. `source` is one of: tag, file, dir, hub, toy, random."""

    source: str
    arch: str = ""
    location: str = ""  # tag, file path, folder or hub repo

    @property
    def label(self) -> str:
        return {
            "tag": f"{self.arch}/{self.location}",
            "file": f"{self.arch}@{self.location}",
            "dir": f"local-dir:{self.location}",
            "hub": f"hf-hub:{self.location}",
            "toy": "toy",
            "random": f"random:{self.arch}",
        }[self.source]


def parse_clip_spec(spec: str) -> ClipSpec:
    """Parse a CLIP spec string (see the module docstring). Raises ConfigError when invalid."""
    import open_clip

    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"model: expected a pair name or CLIP spec, received {spec!r}")
    spec = spec.strip()
    if spec in PAIRS:
        spec = PAIRS[spec].clip
    if spec == "toy":
        return ClipSpec("toy")
    if spec.startswith("random:"):
        arch = spec.split(":", 1)[1]
        if arch != "tiny" and arch not in open_clip.list_models():
            raise ConfigError(f"model: unknown open_clip architecture {arch!r}; see open_clip.list_models()")
        return ClipSpec("random", arch)
    if spec.startswith("hf-hub:"):
        return ClipSpec("hub", location=spec.split(":", 1)[1])
    if spec.startswith("local-dir:") or (os.sep in spec and Path(spec).is_dir()):
        path = spec.split(":", 1)[1] if spec.startswith("local-dir:") else spec
        if not Path(path).is_dir():
            raise WeightsNotFoundError(f"CLIP folder not found: {path!r}")
        return ClipSpec("dir", location=str(Path(path).resolve()))
    if "@" in spec:
        arch, path = spec.split("@", 1)
        _check_arch(arch)
        if not Path(path).is_file():
            raise WeightsNotFoundError(f"CLIP weights file not found: {path!r} (for architecture {arch})")
        return ClipSpec("file", arch, str(Path(path).resolve()))
    if "/" in spec:
        arch, tag = spec.split("/", 1)
        _check_arch(arch)
        tags = open_clip.list_pretrained_tags_by_model(arch)
        if tag not in tags:
            raise ConfigError(f"model: expected a pretrained tag of {arch} in {tags}, received {tag!r}")
        return ClipSpec("tag", arch, tag)
    raise ConfigError(
        f"model: expected a pair name {list_pairs()}, 'ARCH/TAG' (e.g. 'ViT-L-14/openai'), "
        f"'ARCH@/path/to/weights', a local folder, 'toy' or 'random:ARCH'; received {spec!r}"
    )


def _check_arch(arch: str) -> None:
    import open_clip

    if arch not in open_clip.list_models():
        close = [m for m in open_clip.list_models() if arch.lower()[:5] in m.lower()][:8]
        raise ConfigError(f"model: unknown open_clip architecture {arch!r}; similar: {close}")


# ---------------------------------------------------------------------------------------------
# Loaded models


@dataclass(eq=False)
class LoadedClip:
    """A frozen CLIP with what PEZ needs around it. Shared between users: never mutate it."""

    model: Any  # open_clip.CLIP in eval mode, requires_grad off
    tokenizer: Any  # open_clip SimpleTokenizer (callable: list[str] -> (B, context) ids)
    preprocess: Callable  # PIL image -> (3, H, W) tensor, open_clip's eval transform
    spec: ClipSpec
    device: torch.device
    precision: str
    vision_offloaded: bool = False  # the vision tower waits on the CPU, see VISION_OFFLOAD_BYTES
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # guards the tower's moves

    @contextmanager
    def vision(self) -> Iterator[Any]:
        """The model with its vision tower on `device` for the duration (encode_image inside).

        An offloaded tower comes to the accelerator only while images are encoded (once per
        search, for the targets) and goes back to the CPU after, so the search never holds it."""
        if not self.vision_offloaded:
            yield self.model
            return
        with self._lock:
            self.model.visual.to(self.device)
            try:
                yield self.model
            finally:
                self.model.visual.to("cpu")

    @property
    def name(self) -> str:
        return self.spec.label

    @property
    def context_length(self) -> int:
        return int(self.model.positional_embedding.shape[0])

    @property
    def sot_id(self) -> int:
        return int(self.tokenizer.sot_token_id)

    @property
    def eot_id(self) -> int:
        return int(self.tokenizer.eot_token_id)

    @property
    def feature_dim(self) -> int:
        """D, the size of CLIP's joint image-text feature space."""
        proj = self.model.text_projection
        if proj is None:
            return int(self.model.ln_final.normalized_shape[0])
        return int(proj.out_features if isinstance(proj, torch.nn.Linear) else proj.shape[-1])

    @property
    def dtype(self) -> torch.dtype:
        return self.model.token_embedding.weight.dtype

    @cached_property
    def vocab(self):
        """The projection index over this model's vocabulary (built once, on first use)."""
        from .vocab import Vocabulary

        return Vocabulary.from_clip(self)


_CACHE: dict[tuple, LoadedClip] = {}
_CACHE_LOCK = threading.Lock()


def load_clip(spec: str = DEFAULT_PAIR, device: str | None = None, precision: str | None = None) -> LoadedClip:
    """Load (once) and return the CLIP for `spec` on `device`. Thread-safe; cached.

    Raises ConfigError for an invalid spec or device and WeightsNotFoundError when the weights
    cannot be found locally or downloaded.
    """
    parsed = parse_clip_spec(spec)
    dev = resolve_device(device)
    prec = resolve_precision(precision, dev)
    key = (parsed, str(dev), prec)
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = _load_uncached(parsed, dev, prec)
        return _CACHE[key]


def clear_cache() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()


TINY_CONFIG = {  # a CLIP small enough for unit tests, with the real 49,408-token vocabulary
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


def _load_uncached(spec: ClipSpec, device: torch.device, precision: str) -> LoadedClip:
    import open_clip

    log.info("loading CLIP %s on %s (%s)", spec.label, device, precision)
    if spec.source == "toy":
        from . import toy_clip

        model, preprocess = toy_clip.create_toy_clip()
        tokenizer = open_clip.get_tokenizer("ViT-B-32")
    elif spec.source == "random" and spec.arch == "tiny":
        torch.manual_seed(0)
        model = open_clip.model.CLIP(**TINY_CONFIG)
        preprocess = open_clip.image_transform(TINY_CONFIG["vision_cfg"]["image_size"], is_train=False)
        tokenizer = open_clip.get_tokenizer("ViT-B-32")
    else:
        model, preprocess, tokenizer = _load_open_clip(spec, device, precision)
    offload_vision = device.type == "cuda" and _vision_bytes(model, precision) > VISION_OFFLOAD_BYTES
    _to_device(model, device, keep_vision_on_cpu=offload_vision)
    if precision != "fp32" and next(model.parameters()).dtype == torch.float32:
        model = model.to(torch.float16 if precision == "fp16" else torch.bfloat16)
    model.eval().requires_grad_(False)
    if not hasattr(model, "token_embedding") or not hasattr(model, "transformer"):
        raise ConfigError(
            f"model: {spec.label} has a text tower pez cannot drive (expected open_clip's CLIP "
            "with token_embedding/transformer, e.g. ViT-*/RN* models, not HF-text or CoCa models)"
        )
    return LoadedClip(model, tokenizer, preprocess, spec, device, precision, vision_offloaded=offload_vision)


def _vision_bytes(model: Any, precision: str) -> int:
    visual = getattr(model, "visual", None)
    if visual is None:
        return 0
    per = 4 if precision == "fp32" else 2
    return per * sum(p.numel() for p in visual.parameters())


def _to_device(model: Any, device: torch.device, keep_vision_on_cpu: bool) -> None:
    """model.to(device), optionally leaving the vision tower on the CPU (never on the GPU at all)."""
    visual = model._modules.pop("visual") if keep_vision_on_cpu else None
    try:
        model.to(device)
    finally:
        if visual is not None:
            model._modules["visual"] = visual


def _load_open_clip(spec: ClipSpec, device: torch.device, precision: str):
    import open_clip

    if spec.source == "random":
        model, _, preprocess = open_clip.create_model_and_transforms(spec.arch, pretrained=None)
        return model, preprocess, open_clip.get_tokenizer(spec.arch)
    name = {"tag": spec.arch, "file": spec.arch, "dir": f"local-dir:{spec.location}", "hub": f"hf-hub:{spec.location}"}
    pretrained = spec.location if spec.source in ("tag", "file") else None
    extra = {}
    if spec.source == "tag":
        _check_cached(spec)
        # Tags trained with QuickGELU (e.g. ViT-L-14/openai, SD 1.x's CLIP) need it forced: open_clip
        # would otherwise build the plain-GELU architecture, only warn, and give wrong features.
        if open_clip.get_pretrained_cfg(spec.arch, spec.location).get("quick_gelu"):
            extra["force_quick_gelu"] = True
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(name[spec.source], pretrained=pretrained, **extra)
        tokenizer = open_clip.get_tokenizer(name[spec.source])
    except (RuntimeError, FileNotFoundError, OSError) as e:
        raise WeightsNotFoundError(_missing_message(spec, str(e))) from e
    return model, preprocess, tokenizer


def _hub_files(spec: ClipSpec) -> tuple[str, list[str]]:
    """(hub repo id, candidate filenames) open_clip would download for an ARCH/TAG spec."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(spec.arch, spec.location)
    repo, filename = os.path.split(cfg.get("hf_hub", ""))  # "org/repo/" -> default filename
    filename = filename or "open_clip_pytorch_model.bin"
    names = [filename]
    if filename.endswith((".bin", ".pth")):
        names.insert(
            0,
            "open_clip_model.safetensors"
            if filename == "open_clip_pytorch_model.bin"
            else filename[:-4] + ".safetensors",
        )
    return repo, names


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE is set: nothing may be downloaded."""
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "TRUE", "ON", "YES")
    return bool(constants.HF_HUB_OFFLINE) or env


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face Hub's host accepts a connection (a quick probe, so that a machine
    without network gets a clear error at once instead of a minute of download retries)."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def hub_cached(repo: str, *names: str) -> bool:
    """Whether any of the files `names` of hub repo `repo` is in the local hub cache (no network)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return any(isinstance(try_to_load_from_cache(repo, n), str) for n in names)
    except Exception:  # noqa: BLE001 - a malformed repo id is simply "not cached"
        return False


def _check_cached(spec: ClipSpec) -> None:
    """Fail fast when the weights are not in the local hub cache and cannot be downloaded."""
    repo, names = _hub_files(spec)
    if not repo:
        return  # URL-only weights: let open_clip try its own cache
    if hub_cached(repo, *names):
        return
    if hub_offline():
        raise WeightsNotFoundError(_missing_message(spec, "HF_HUB_OFFLINE is set and the files are not cached"))
    if not hub_reachable():
        raise WeightsNotFoundError(
            _missing_message(spec, "the files are not cached and the Hugging Face Hub is unreachable")
        )
    _download(spec, repo, names)


def _download(spec: ClipSpec, repo: str, names: list[str]) -> str:
    """Download the first of `names` the repo has, with huggingface_hub's progress bar (which
    resumes within the run after transient errors). A failure is one WeightsNotFoundError line."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    for name in names:
        try:
            return hf_hub_download(repo, name)
        except EntryNotFoundError:
            continue  # e.g. no .safetensors: open_clip's fallback name is next
        except Exception as e:  # noqa: BLE001 - network, disk, gated repo...: one clear line
            reason = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
            raise WeightsNotFoundError(
                f"Could not download the CLIP weights for {spec.label!r}: {name} of the Hugging Face repo "
                f"{repo!r} failed ({reason}). Run the same command again to retry; files already complete "
                f"in the hub cache ({_hub_cache_dir()}) are kept."
            ) from e
    raise WeightsNotFoundError(_missing_message(spec, f"the Hugging Face repo {repo!r} has none of these files"))


@dataclass(frozen=True)
class Availability:
    """Whether a pair's weights can be used now: cached locally, or downloadable on first use."""

    pair: str
    ok: bool  # usable now (everything cached, or the hub is reachable to download the rest)
    cached: bool  # every repo the pair needs is in the local hub cache
    missing: tuple[str, ...] = ()  # hub repos (or files) not in the local cache
    reason: str = ""  # why not usable, when not ok
    how_to: str = ""  # how to make it usable, when not ok


def pair_availability(name: str = DEFAULT_PAIR, timeout: float = 3.0) -> Availability:
    """Quickly learn (no download, one connection probe at most) whether pair `name` can run.

    The app calls this at start-up to decide whether to fall back to the toy world; the CLI never
    falls back and keeps its clear WeightsNotFoundError."""
    pair = get_pair(name)
    if pair.kind == "toy":
        return Availability(pair.name, ok=True, cached=True)
    missing = []
    spec = parse_clip_spec(pair.clip)
    if spec.source == "tag":
        repo, names = _hub_files(spec)
        if repo and not hub_cached(repo, *names):
            missing.append(repo)
    if pair.generator and not Path(pair.generator).is_dir():
        if not hub_cached(pair.generator, "model_index.json"):
            missing.append(pair.generator)
    if not missing:
        return Availability(pair.name, ok=True, cached=True)
    how_to = (
        "Run once with network access so the weights are cached, point HF_HOME at a folder that holds "
        "them, or pass local folders/files (see README, 'Models')."
    )
    if hub_offline():
        reason = f"HF_HUB_OFFLINE is set and {', '.join(missing)} not in the hub cache ({_hub_cache_dir()})"
        return Availability(pair.name, False, False, tuple(missing), reason, how_to)
    if not hub_reachable(timeout):
        reason = (
            f"{', '.join(missing)} not in the hub cache ({_hub_cache_dir()}) and the Hugging Face Hub is unreachable"
        )
        return Availability(pair.name, False, False, tuple(missing), reason, how_to)
    return Availability(pair.name, ok=True, cached=False, missing=tuple(missing))


def _missing_message(spec: ClipSpec, reason: str) -> str:
    where = ""
    if spec.source == "tag":
        repo, names = _hub_files(spec)
        where = (
            f" Looked for {' or '.join(names)} of the Hugging Face repo {repo!r} in the hub cache ({_hub_cache_dir()})."
        )
    return (
        f"Could not load the CLIP weights for {spec.label!r}: {reason.strip()}.{where} "
        "To provide them: run once with network access so they are cached, or pass a local file "
        "as 'ARCH@/path/to/open_clip_pytorch_model.bin', or a folder with open_clip_config.json "
        "and the weights. For an offline demo use the model 'toy'."
    )


def _hub_cache_dir() -> str:
    from huggingface_hub.constants import HF_HUB_CACHE

    return str(HF_HUB_CACHE)


__all__ = [
    "Availability",
    "ClipSpec",
    "DEFAULT_PAIR",
    "LoadedClip",
    "ModelPair",
    "PAIRS",
    "PRECISIONS",
    "WeightsNotFoundError",
    "clear_cache",
    "get_pair",
    "hub_cached",
    "hub_offline",
    "hub_reachable",
    "list_pairs",
    "load_clip",
    "pair_availability",
    "parse_clip_spec",
    "resolve_device",
    "resolve_precision",
]
