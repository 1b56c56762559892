"""Speed: the precision a search computes in, compiling its text tower, and exact vocabulary scans.

Precision. `search_precision("auto", clip)` picks bf16 on CUDA (fp16 where bf16 is missing) and,
on a CPU, bf16 only where the CPU has native bf16 dot products (AVX512-BF16 / AMX / Arm BF16)
*and* a short measured probe (once per process) finds bf16 faster than fp32; fp32 otherwise.
Only the gradient pass runs in that precision. The soft prompt, the projection and every
reported score stay fp32: decoded texts are re-scored through the model's own fp32 weights
(on a CPU the loaded CLIP keeps its fp32 weights, so a bf16 search holds one extra bf16 copy
of the text transformer: 0.6 GB for ViT-H-14's 302 M text parameters, next to 3.9 GB of fp32
CLIP; the alternative, an fp32 copy of the text tower beside a bf16 CLIP, would need 1.2 GB and
change the image features. On CUDA the CLIP is loaded in bf16 and `scoring_tower` keeps an fp32
copy of its text tower for the scores). The bf16 copy is built once per loaded CLIP.

The towers (pez.engine.tower.TextTower) are built once per loaded CLIP and precision and cached
here: `search_tower` for the gradient pass, `scoring_tower` (fp32) for the honest scores.

Compilation. On CUDA the tower is compiled with `torch.compile(mode="reduce-overhead")`
(CUDA graphs: a step is ~1,500 small kernels, launch-bound otherwise); on a CPU only when asked
(`PEZ_COMPILE=1`); never on a ZeroGPU Space (SPACES_ZERO_GPU), which does not support run-time
compilation. A compile that fails falls back to eager with a warning.

Scans. `projector()` picks the exact projection (pez.engine.vocab.Projector, one CLIP's table or
a joint search's several) for the hardware: a full fp32 scan every step on CUDA (no host sync),
scans that read bf16 copies of the tables and re-rank in fp32 on a CPU where bf16 is fast
(CoarseScanProjector), else the fp32 scans that skip most steps.
"""

from __future__ import annotations

import functools
import logging
import os
import platform
import threading
import time
import weakref
from collections.abc import Callable

import torch

from ..config import BF16_MIN_GAIN, BF16_MIN_WIDTH
from ..errors import ConfigError
from ..models.clip import LoadedClip, resolve_precision
from .tower import TextTower
from .vocab import Projector, Vocabulary

log = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# Facts, not settings: the /proc/cpuinfo flags of CPUs with native bf16 dot products.
CPU_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})  # x86 (AVX512-BF16, AMX), Arm (BF16)

# ---------------------------------------------------------------------------------------------
# Precision choice


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """CPU feature flags from /proc/cpuinfo (Linux); empty where unknown."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def cpu_has_native_bf16(flags: frozenset[str] | None = None) -> bool:
    """Whether the CPU computes bf16 dot products natively (not emulated) and oneDNN can use them."""
    flags = cpu_flags() if flags is None else flags
    if not CPU_BF16_FLAGS & flags:
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return bool(torch.backends.mkldnn.is_available())


def probe_bf16_speedup(width: int = 1024, rows: int = 18, repeats: int = 3) -> float:
    """fp32 time / bf16 time of a text-tower-like linear layer (forward + input gradient) on this
    CPU; > 1 means bf16 is faster. Under 0.1 s on a quiet machine (3.5x on the AVX512-BF16 EPYC)."""
    gen = torch.Generator().manual_seed(0)
    w32 = torch.randn(4 * width, width, generator=gen) / width**0.5
    x32 = torch.randn(rows, width, generator=gen)
    variants = {torch.float32: (w32, x32), torch.bfloat16: (w32.bfloat16(), x32.bfloat16())}
    times: dict[torch.dtype, list[float]] = {dt: [] for dt in variants}
    for _ in range(repeats):  # interleaved, so a busy neighbour slows both alike
        for dt, (w, x) in variants.items():
            start = time.perf_counter()
            for _ in range(2):
                y = x @ w.T  # forward
                _ = y @ w  # input gradient
            times[dt].append(time.perf_counter() - start)
    return min(times[torch.float32]) / min(times[torch.bfloat16])


def decide_cpu_precision(native_bf16: bool, probe: Callable[[], float]) -> str:
    """bf16 when the CPU has native bf16 and the probe finds it clearly faster, else fp32."""
    if not native_bf16:
        return "fp32"
    speedup = probe()
    log.info("bf16 probe on this CPU: %.2fx fp32", speedup)
    return "bf16" if speedup >= BF16_MIN_GAIN else "fp32"


@functools.lru_cache(maxsize=1)
def cpu_auto_precision() -> str:
    """The 'auto' search precision on this CPU (decided once per process)."""
    choice = decide_cpu_precision(cpu_has_native_bf16(), probe_bf16_speedup)
    log.info("auto search precision on %s: %s", platform.processor() or platform.machine(), choice)
    return choice


def low_memory_dtype(device: torch.device) -> str | None:
    """The weights precision for low memory on `device`: "bf16" on a CPU with native bf16 (half the
    bytes, and faster there), else None (the default precision)."""
    return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else None


def search_precision(requested: str | None, device: torch.device, width: int = 1024) -> str:
    """'auto' | 'fp32' | 'bf16' | 'fp16' -> the precision the gradient pass computes in, for a
    text tower of `width` on `device`."""
    if (requested or "auto") == "auto" and device.type == "cpu" and width >= BF16_MIN_WIDTH:
        return cpu_auto_precision()
    return resolve_precision(requested, device)


def on_zero_gpu() -> bool:
    """A Hugging Face ZeroGPU Space (SPACES_ZERO_GPU, as the spaces package reads it)?"""
    return os.environ.get("SPACES_ZERO_GPU", "").strip().lower() in ("1", "t", "true")


def compile_enabled(device: torch.device) -> bool:
    """Compile the tower? Never on ZeroGPU (run-time compilation is not supported there: calls run in
    forked GPU workers); else PEZ_COMPILE=1 / 0 forces it; default: on CUDA only."""
    if on_zero_gpu():
        return False
    flag = os.environ.get("PEZ_COMPILE", "auto").strip().lower()
    if flag in ("1", "true", "yes"):
        return True
    if flag in ("0", "false", "no"):
        return False
    return device.type == "cuda"


# ---------------------------------------------------------------------------------------------
# Vocabulary scans in bf16, exact


class CoarseScanProjector(Projector):
    """`Projector` whose full scans read bf16 copies of the tables (half the bytes of fp32) and
    stay exact: each table's bf16 cosines are within its `SLACK` of the fp32 ones, so the joint
    score (their weighted sum) is within sum_t w_t SLACK_t, and every token outside the coarse
    top-k scores at most (k-th coarse score + that slack) in fp32. The kept set is re-ranked in
    fp32; if its best clears that bound it is the exact argmax (else this scan falls back to the
    fp32 scan). The bound also becomes the row's floor for later steps.

    SLACK: inputs rounded to bf16 (unit roundoff u = 2^-8) move a dot product of unit vectors by
    at most 2u + u^2; the bf16 output adds u; fp32 accumulation over d terms adds d * 2^-24."""

    def __init__(self, vocabs, mask: torch.Tensor, weights=(1.0,), keep: int = 256, dtype=torch.bfloat16):
        super().__init__(vocabs, mask, weights, keep)
        self.dtype = dtype
        u = torch.finfo(dtype).eps / 2  # unit roundoff, 2^-8 for bf16
        self.slack = sum(w * (3 * u + u * u + v.unit.shape[1] * 2.0**-24) for v, w in zip(self.vocabs, self.weights))
        self.low = [coarse_unit(v, dtype) for v in self.vocabs]  # (V, d_t) each
        self.fallbacks = 0  # coarse scans that needed the fp32 scan (for benchmarks)

    def _coarse(self, flats: list[torch.Tensor]) -> torch.Tensor:
        """(R, V) joint scores from the bf16 tables: one table's in bf16 (the mask added there);
        several tables' summed in fp32, so the sum adds no rounding beyond each table's slack."""
        if len(flats) == 1:
            return torch.addmm(self.mask.to(self.dtype).unsqueeze(0), flats[0].to(self.dtype), self.low[0].T)
        sims = self.mask.unsqueeze(0)  # (1, V), broadcast
        for flat, low, w in zip(flats, self.low, self.weights):
            sims = sims + w * (flat.to(self.dtype) @ low.T).float()  # (R, V)
        return sims

    def _scan(self, flats: list[torch.Tensor]) -> torch.Tensor:
        top, top_ids = self._coarse(flats).topk(self.keep, dim=-1)  # coarse, descending
        kept = top_ids.sort(dim=-1).values  # (R, k)
        exact = self.rerank(flats, kept)  # (R, k) fp32
        bound = top[:, -1].float() + self.slack  # (R,) no token outside `kept` beats this in fp32
        best, pos = exact.max(dim=-1)  # first max: lowest id among ties, as in a full scan
        if bool((best <= bound).any()):
            self.fallbacks += 1
            return super()._scan(flats)
        self.scans += 1
        self.anchor, self.kept, self.floor = [f.clone() for f in flats], kept, bound
        return kept.gather(1, pos.unsqueeze(1)).squeeze(1)


_COARSE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # Vocabulary -> {dtype: (V, d)}


def coarse_unit(vocab: Vocabulary, dtype: torch.dtype) -> torch.Tensor:
    """The unit vocabulary in `dtype`, built once per vocabulary."""
    with _TOWERS_LOCK:
        per_dtype = _COARSE.setdefault(vocab, {})
        if dtype not in per_dtype:
            per_dtype[dtype] = vocab.unit.to(dtype)
        return per_dtype[dtype]


def projector(vocabs: list[Vocabulary], mask: torch.Tensor, weights: tuple[float, ...] = (1.0,)) -> Projector:
    """The exact projector for this hardware, onto one token per slot for every table in `vocabs`
    (one per CLIP, `weights` one per table): on CUDA a full scan each step (no host sync: the
    skip test would cost one per step, and a GPU reads the vocabulary in ~0.1 ms); on a CPU
    scans that read bf16 where it is fast (the 'auto' precision is bf16) on vocabularies wide
    enough to be bandwidth-bound, else the fp32 scans that skip most steps."""
    device = vocabs[0].unit.device
    if device.type == "cuda":
        return Projector(vocabs, mask, weights, skip=False)
    wide = min(v.unit.shape[1] for v in vocabs) >= BF16_MIN_WIDTH
    if device.type == "cpu" and wide and cpu_auto_precision() == "bf16":
        return CoarseScanProjector(vocabs, mask, weights)
    return Projector(vocabs, mask, weights)


_TOWERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # LoadedClip -> {key: TextTower}
_TOWERS_LOCK = threading.Lock()


def search_tower(clip: LoadedClip, precision: str, compile: bool | None = None) -> TextTower:
    """The cached gradient-pass tower of `clip` in `precision` ('fp32' | 'bf16' | 'fp16'); on a CPU
    it times the batched and sequential candidate layouts and keeps the faster."""
    if precision not in DTYPES:
        raise ConfigError(f"precision: expected one of {list(DTYPES)}, received {precision!r}")
    compile = compile_enabled(clip.device) if compile is None else compile
    mode = None
    if compile:
        mode = "reduce-overhead" if clip.device.type == "cuda" else "default"
    return _tower(clip, DTYPES[precision], mode, time_layouts=True)


def scoring_tower(clip: LoadedClip) -> TextTower:
    """The fp32 tower of every reported score (the CLIP's own weights when it is fp32, else an fp32
    copy of its text tower), so a score means the same at any search precision."""
    return _tower(clip, torch.float32, None, time_layouts=False)


def polish_tower(clip: LoadedClip, precision: str) -> TextTower:
    """The tower of refinement and pruning's batched scores and gradients: the search's precision,
    not compiled and not timing layouts (their batch sizes change round by round); in fp32 it is
    the scoring tower itself."""
    if precision not in DTYPES:
        raise ConfigError(f"precision: expected one of {list(DTYPES)}, received {precision!r}")
    return _tower(clip, DTYPES[precision], None, time_layouts=False)


def _tower(clip: LoadedClip, dtype: torch.dtype, mode: str | None, time_layouts: bool) -> TextTower:
    key = (dtype, mode, time_layouts)
    with _TOWERS_LOCK:
        towers = _TOWERS.setdefault(clip, {})
        if key not in towers:  # towers of one dtype share its weights (e.g. the fp32 search and scores)
            same = next((t.parts for t in towers.values() if t.dtype == dtype), None)
            towers[key] = TextTower(clip.model, dtype, mode, time_layouts, parts=same)
        return towers[key]


__all__ = [
    "CoarseScanProjector",
    "coarse_unit",
    "compile_enabled",
    "cpu_auto_precision",
    "cpu_has_native_bf16",
    "decide_cpu_precision",
    "low_memory_dtype",
    "on_zero_gpu",
    "polish_tower",
    "probe_bf16_speedup",
    "projector",
    "scoring_tower",
    "search_precision",
    "search_tower",
]
