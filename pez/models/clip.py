"""Loading CLIPs: spec strings, the LoadedClip PEZ runs on, one cached load per spec, devices.

CLIP models are loaded once per (spec, device, precision) and cached; callers get them from
`load_clip()` and never mutate them (the engine keeps what it derives from a CLIP, such as its
vocabulary and towers, in its own caches keyed by the LoadedClip).

A CLIP spec is a string:
  - a pair name from the registry, e.g. "sd-2.1-base" (uses that pair's CLIP);
  - "ARCH/TAG", an open_clip architecture and pretrained tag, e.g. "ViT-L-14/openai";
  - "ARCH@PATH", an architecture with a local weights file (.safetensors, .bin, .pt);
  - a local folder holding open_clip_config.json and the weights (open_clip's hub layout),
    also accepted as "local-dir:PATH"; or "hf-hub:ORG/REPO";
  - "toy", the small offline CLIP of the toy world (ships with pez, no download);
  - "random:ARCH", an architecture with random weights (benchmarks), or a named random CLIP that
    another package registered (`register_random_clip`): pez.testing registers "random:tiny" (and a
    second tower, "random:tiny-wide") for tests when it is imported;
  - several of these joined by "+", e.g. "ViT-L-14/openai+ViT-bigG-14/laion2b_s39b_b160k" (SDXL's
    two encoders; a pair may name several): one prompt is searched for all of them (JointClip).

`load_clip` returns a LoadedClip for one CLIP and a JointClip for several (with their weights).
Both are a `TextSpace` to the engine (the Protocol below): `clips`, `weights`, and `join`/`split` of
features, with the tokenizer, device and sizes the engine reads. A
JointClip's features are its CLIPs' unit features, each scaled by sqrt(weight), joined; the dot
product of two such features is the weighted sum of the per-CLIP cosines. So every score built
on features (targets, the objective, scores of texts and of images) is that weighted sum in the
joint case with no code of its own.
"""

from __future__ import annotations

import logging
import os
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from ..config import PRECISIONS, VISION_OFFLOAD_BYTES, check_clip_weights
from ..errors import ConfigError, WeightsNotFoundError
from ..quiet import quiet_open_clip
from . import hub
from .registry import DEFAULT_PAIR, PAIRS, list_pairs

log = logging.getLogger(__name__)


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
    specs = clip_specs(spec)
    if len(specs) > 1:
        raise ConfigError(f"model: {spec!r} names several CLIPs {list(specs)}; load them with load_clip")
    spec = specs[0]
    if spec == "toy":
        return ClipSpec("toy")
    if spec.startswith("random:"):
        arch = spec.split(":", 1)[1]
        if arch not in _RANDOM_CLIPS and arch not in open_clip.list_models():
            fixtures = f", or one of the registered {sorted(_RANDOM_CLIPS)}" if _RANDOM_CLIPS else ""
            raise ConfigError(
                f"model: expected 'random:' and an open_clip architecture (see open_clip.list_models()){fixtures}, "
                f"received {spec!r} (the test CLIPs 'random:tiny' and 'random:tiny-wide' exist once pez.testing is imported)"
            )
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


def clip_specs(spec: str) -> tuple[str, ...]:
    """The single CLIP specs a model spec names: a pair's CLIP(s), or specs joined by "+"."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"model: expected a pair name or CLIP spec, received {spec!r}")
    spec = spec.strip()
    if spec in PAIRS:
        return PAIRS[spec].clips
    if "+" in spec and not Path(spec).exists():
        parts = tuple(p.strip() for p in spec.split("+"))
        if not all(parts):
            raise ConfigError(f"model: expected CLIP specs joined by '+', received {spec!r}")
        return parts
    return (spec,)


# ---------------------------------------------------------------------------------------------
# CLIP weights (InvertConfig.clip_weights): resolved here only. A model's weights are one number per
# CLIP it names, normalised to sum 1; a CLIP of weight 0 is left out (not loaded, not searched).


def clip_weights(spec: str, weights=None) -> tuple[float, ...]:
    """The normalised weight of each CLIP of `spec`: `weights` when given (one per CLIP), else the
    pair's defaults, else equal. Raises ConfigError."""
    specs = clip_specs(spec)
    if weights is None:
        pair = PAIRS.get(spec.strip())
        weights = (pair.clip_weights if pair else None) or (1.0,) * len(specs)
    return _normalised(weights, specs, f"{spec.strip()!r} {list(specs)}")


def _normalised(weights, names, owner: str) -> tuple[float, ...]:
    """`weights` checked (numbers in [0, 1], one per name of `names`) and normalised to sum 1."""
    weights = check_clip_weights(weights)
    if len(weights) != len(names):
        raise ConfigError(
            f"clip_weights: expected {len(names)} weight(s), one per CLIP of {owner}, received {len(weights)}"
        )
    return weights


def _kept(items, weights: tuple[float, ...]) -> list[tuple[Any, float]]:
    """(item, weight) of the items whose weight is above 0."""
    return [(x, w) for x, w in zip(items, weights) if w > 0]


def has_weights(space: TextSpace, weights) -> bool:
    """Whether `weights` (one per CLIP the space was loaded from, zeros included) give the space's
    own weights once normalised, the zeros left out."""
    kept = tuple(w for w in check_clip_weights(weights) if w > 0)
    return len(kept) == len(space.weights) and all(abs(a - b) <= 1e-9 for a, b in zip(kept, space.weights))


def _check_arch(arch: str) -> None:
    import open_clip

    if arch not in open_clip.list_models():
        close = [m for m in open_clip.list_models() if arch.lower()[:5] in m.lower()][:8]
        raise ConfigError(f"model: unknown open_clip architecture {arch!r}; similar: {close}")


# Named random CLIPs provided by other packages (the loader knows none itself): name -> a function
# returning (model, eval preprocess, tokenizer). pez.testing registers its tiny CLIPs on import.
RandomClipBuilder = Callable[[], tuple[Any, Callable, Any]]
_RANDOM_CLIPS: dict[str, RandomClipBuilder] = {}


def register_random_clip(name: str, build: RandomClipBuilder) -> None:
    """Serve the spec "random:NAME" with `build()` (called once per device and precision, then cached)."""
    _RANDOM_CLIPS[name] = build


# ---------------------------------------------------------------------------------------------
# Loaded models


class TextSpace(Protocol):
    """What the engine runs on: one CLIP (LoadedClip) or several searched as one (JointClip).

    A prompt is read by one tokenizer, and its features live in one space of `feature_dim`: the
    CLIPs' unit features scaled by sqrt(weight) and joined (`join`; `split` is the inverse), so a
    dot product of two features is the weighted sum of the per-CLIP cosines."""

    @property
    def name(self) -> str: ...
    @property
    def clips(self) -> tuple[LoadedClip, ...]: ...  # the CLIPs, each searched with its own tower
    @property
    def weights(self) -> tuple[float, ...]: ...  # one per CLIP, above 0, summing to 1
    @property
    def tokenizer(self) -> Any: ...  # shared by the CLIPs (list[str] -> (B, context) ids)
    @property
    def device(self) -> torch.device: ...
    @property
    def precision(self) -> str: ...
    @property
    def context_length(self) -> int: ...
    @property
    def sot_id(self) -> int: ...
    @property
    def eot_id(self) -> int: ...
    @property
    def feature_dim(self) -> int: ...  # the sum of the CLIPs' D

    def join(self, parts: list[torch.Tensor]) -> torch.Tensor: ...  # per-CLIP unit (..., D_t) -> (..., sum D_t)
    def split(self, feats: torch.Tensor) -> list[torch.Tensor]: ...  # the inverse of join


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

    # A CLIP is a text space of one tower (JointClip has several): the engine reads these alike.
    @property
    def clips(self) -> tuple[LoadedClip, ...]:
        return (self,)

    @property
    def weights(self) -> tuple[float, ...]:
        return (1.0,)

    def join(self, parts: list[torch.Tensor]) -> torch.Tensor:
        return parts[0]

    def split(self, feats: torch.Tensor) -> list[torch.Tensor]:
        return [feats]


@dataclass(eq=False, repr=False)
class JointClip:
    """Several CLIPs with one tokenizer, searched as one text space: one prompt, scored in each.

    The score of a prompt is sum_t weights[t] * (its score in CLIP t); weights are positive and sum
    to 1. Features in this space are the CLIPs' unit features scaled by sqrt(weight) and joined
    (`join`), so dot products of features are that weighted sum (see the module docstring). The
    CLIPs must read text alike (same tokenizer and ids, checked), e.g. SDXL's ViT-L/14 and bigG/14."""

    clips: tuple[LoadedClip, ...]
    weights: tuple[float, ...]

    def __post_init__(self):
        self.clips, self.weights = tuple(self.clips), check_clip_weights(tuple(self.weights))
        if len(self.clips) < 2 or len(self.weights) != len(self.clips) or min(self.weights) <= 0:
            raise ConfigError(
                f"model: a joint CLIP needs two or more CLIPs with weights above 0, received {len(self.clips)} "
                f"CLIP(s) with weights {self.weights}"
            )
        first = self.clips[0]
        for other in self.clips[1:]:
            if other.device != first.device:
                raise ConfigError(
                    f"model: the CLIPs of a joint search must share a device, received {first.device} and {other.device}"
                )
            if not same_vocabulary(first, other):
                raise ConfigError(
                    f"model: {first.name} and {other.name} read text differently (tokenizer or vocabulary); "
                    "a joint search needs CLIPs with one tokenizer"
                )

    def __repr__(self) -> str:
        return f"JointClip({self.name!r}, weights={self.weights})"

    @property
    def name(self) -> str:
        return "+".join(c.name for c in self.clips)

    @property
    def tokenizer(self) -> Any:
        return self.clips[0].tokenizer

    @property
    def device(self) -> torch.device:
        return self.clips[0].device

    @property
    def precision(self) -> str:
        return self.clips[0].precision

    @property
    def context_length(self) -> int:
        return min(c.context_length for c in self.clips)

    @property
    def sot_id(self) -> int:
        return self.clips[0].sot_id

    @property
    def eot_id(self) -> int:
        return self.clips[0].eot_id

    @property
    def feature_dim(self) -> int:
        return sum(c.feature_dim for c in self.clips)

    def join(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """Per-CLIP unit features (..., D_t) -> this space's features (..., sum D_t)."""
        return torch.cat([p * w**0.5 for p, w in zip(parts, self.weights)], dim=-1)

    def split(self, feats: torch.Tensor) -> list[torch.Tensor]:
        """This space's features -> the per-CLIP parts, unscaled (the inverse of `join`)."""
        blocks = feats.split([c.feature_dim for c in self.clips], dim=-1)
        return [b / w**0.5 for b, w in zip(blocks, self.weights)]

    def reweighted(self, weights) -> TextSpace:
        """The same CLIPs with other weights (one per CLIP); a CLIP of weight 0 is left out."""
        return _text_space(_kept(self.clips, _normalised(weights, self.clips, self.name)))


def _text_space(weighted: list[tuple[LoadedClip, float]]) -> TextSpace:
    """One CLIP alone (its weight is 1), or several searched as one JointClip."""
    if len(weighted) == 1:
        return weighted[0][0]
    return JointClip(tuple(c for c, _ in weighted), tuple(w for _, w in weighted))


def same_vocabulary(a: LoadedClip, b: LoadedClip) -> bool:
    """Whether two CLIPs read text alike: the same special ids, vocabulary size and token ids."""
    if (a.sot_id, a.eot_id) != (b.sot_id, b.eot_id):
        return False
    if a.model.token_embedding.weight.shape[0] != b.model.token_embedding.weight.shape[0]:
        return False
    ea, eb = getattr(a.tokenizer, "encoder", None), getattr(b.tokenizer, "encoder", None)
    if ea is not None and eb is not None and ea != eb:
        return False
    probe = ["a photo of a cat, trending on artstation", "Über 8K hdr!! (oil-painting)"]
    return bool(torch.equal(a.tokenizer(probe), b.tokenizer(probe)))


_CACHE: dict[tuple, LoadedClip] = {}
_CACHE_LOCK = threading.Lock()


def load_clip(
    spec: str = DEFAULT_PAIR, device: str | None = None, precision: str | None = None, weights=None
) -> TextSpace:
    """Load (once) and return the CLIP for `spec` on `device`. Thread-safe; cached.

    A spec naming several CLIPs (a pair such as "sdxl", or specs joined by "+") gives a JointClip
    with `weights` (one per CLIP; default: the pair's, else equal); a CLIP of weight 0 is not
    loaded, and when one CLIP is left it is returned alone (a plain single-CLIP search).
    Raises ConfigError for an invalid spec, device or weights and WeightsNotFoundError when the
    weights cannot be found locally or downloaded.
    """
    specs, chosen = clip_specs(spec), clip_weights(spec, weights)
    if len(specs) > 1 or weights is not None:
        return _text_space([(load_clip(s, device, precision), w) for s, w in _kept(specs, chosen)])
    parsed = parse_clip_spec(specs[0])
    dev = resolve_device(device)
    prec = resolve_precision(precision, dev)
    key = (parsed, str(dev), prec)
    with _CACHE_LOCK:
        if key not in _CACHE:
            try:
                with quiet_open_clip():
                    _CACHE[key] = _load_uncached(parsed, dev, prec)
            except Exception as e:
                # The failure's frames hold what was built so far (hundreds of MB): whoever keeps
                # the exception must not keep the half-built model alive with it.
                traceback.clear_frames(e.__traceback__)
                raise
        return _CACHE[key]


def get_clip(
    model: str | TextSpace = DEFAULT_PAIR, device: str | None = None, weights=None, precision: str | None = None
) -> TextSpace:
    """The text space a search runs on, with its CLIP weights: where every front-end (the CLI,
    batch, the app) gets its CLIP, so `weights` (InvertConfig.clip_weights: one per CLIP of the
    model, None for the pair's) are resolved once.

    A spec is loaded (load_clip). A text space already loaded is returned as it is when `weights`
    are None or its own (has_weights), and re-weighted when it is a JointClip given other weights
    (one per CLIP); `device` and `precision` apply only to loading. Raises ConfigError."""
    if isinstance(model, str):
        return load_clip(model, device=device, precision=precision, weights=weights)
    if weights is None or has_weights(model, weights):
        return model
    if isinstance(model, JointClip):
        return model.reweighted(weights)
    _normalised(weights, model.clips, model.name)  # a single CLIP: the count is wrong
    raise ConfigError(f"clip_weights: {model.name} is one CLIP; expected one weight, received {tuple(weights)}")


def clear_cache() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()


def _load_uncached(spec: ClipSpec, device: torch.device, precision: str) -> LoadedClip:
    import open_clip

    log.info("loading CLIP %s on %s (%s)", spec.label, device, precision)
    if spec.source == "toy":
        from ..toy.clip import create_toy_clip

        model, preprocess = create_toy_clip()
        tokenizer = open_clip.get_tokenizer("ViT-B-32")
    elif spec.source == "random" and spec.arch in _RANDOM_CLIPS:
        model, preprocess, tokenizer = _RANDOM_CLIPS[spec.arch]()
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


def _check_cached(spec: ClipSpec) -> None:
    """Fail fast when the weights are not in the local hub cache and cannot be downloaded."""
    repo, names = hub.open_clip_files(spec.arch, spec.location)
    if repo:  # URL-only weights: let open_clip try its own cache
        hub.ensure_cached(repo, names, f"the CLIP weights for {spec.label!r}", lambda why: _missing_message(spec, why))


def _missing_message(spec: ClipSpec, reason: str) -> str:
    where = ""
    if spec.source == "tag":
        repo, names = hub.open_clip_files(spec.arch, spec.location)
        where = f" Looked for {' or '.join(names)} of the Hugging Face repo {repo!r} in the hub cache ({hub.hub_cache_dir()})."
    return (
        f"Could not load the CLIP weights for {spec.label!r}: {reason.strip()}.{where} "
        "To provide them: run once with network access so they are cached, or pass a local file "
        "as 'ARCH@/path/to/open_clip_pytorch_model.bin', or a folder with open_clip_config.json "
        "and the weights. For an offline demo use the model 'toy'."
    )


__all__ = [
    "ClipSpec",
    "JointClip",
    "LoadedClip",
    "TextSpace",
    "clear_cache",
    "clip_specs",
    "clip_weights",
    "get_clip",
    "has_weights",
    "load_clip",
    "parse_clip_spec",
    "register_random_clip",
    "resolve_device",
    "resolve_precision",
    "same_vocabulary",
]
