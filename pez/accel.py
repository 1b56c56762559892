"""Speed: the precision a search computes in, and the text tower its gradient pass runs through.

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

Layout. `SearchTower` runs the text transformer on (N * L, d) rows with its own attention
call. Going through `nn.MultiheadAttention` with batch-first input hands every projection a
transposed (L, N, d) view; matmul then falls back to a batched matmul over an expanded copy of
the weight (L copies), which oneDNN's bf16 path materialises: 4 prompts in bf16 cost 5-10x one
prompt. Contiguous 2-D rows keep every projection a single matmul in any precision. Several
candidates run as one batch or one after the other; on a CPU the first steps of a run time
both (they compute the same thing) and the faster is kept for that batch size.

Compilation. On CUDA the tower is compiled with `torch.compile(mode="reduce-overhead")`
(CUDA graphs: a step is ~1,500 small kernels, launch-bound otherwise); on a CPU only when asked
(`PEZ_COMPILE=1`). A compile that fails falls back to eager with a warning.
"""

from __future__ import annotations

import copy
import functools
import logging
import os
import platform
import statistics
import threading
import time
import weakref
from collections.abc import Callable

import torch
import torch.nn.functional as F

from .config import BF16_MIN_GAIN, BF16_MIN_WIDTH
from .errors import ConfigError
from .models import resolve_precision
from .vocab import Projector

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


def search_precision(requested: str | None, device: torch.device, width: int = 1024) -> str:
    """'auto' | 'fp32' | 'bf16' | 'fp16' -> the precision the gradient pass computes in, for a
    text tower of `width` on `device`."""
    if (requested or "auto") == "auto" and device.type == "cpu" and width >= BF16_MIN_WIDTH:
        return cpu_auto_precision()
    return resolve_precision(requested, device)


def compile_enabled(device: torch.device) -> bool:
    """Compile the tower? PEZ_COMPILE=1 / 0 forces it; default: on CUDA only."""
    flag = os.environ.get("PEZ_COMPILE", "auto").strip().lower()
    if flag in ("1", "true", "yes"):
        return True
    if flag in ("0", "false", "no"):
        return False
    return device.type == "cuda"


# ---------------------------------------------------------------------------------------------
# The text tower of the gradient pass


class _TextParts(torch.nn.Module):
    """The pieces of an open_clip text tower that run after the token embedding."""

    def __init__(self, model):
        super().__init__()
        self.transformer = model.transformer
        self.ln_final = model.ln_final
        self.positional_embedding = model.positional_embedding
        self.text_projection = model.text_projection
        self.register_buffer("attn_mask", model.attn_mask, persistent=False)


def _plain_block(blk) -> bool:
    """A standard pre-norm block with nn.MultiheadAttention that _block() reproduces exactly."""
    attn = getattr(blk, "attn", None)
    return (
        type(blk).__name__ == "ResidualAttentionBlock"
        and isinstance(attn, torch.nn.MultiheadAttention)
        and attn._qkv_same_embed_dim
        and attn.bias_k is None
        and not attn.add_zero_attn
        and not hasattr(blk, "ln_1_kv")
    )


def _block(blk, x: torch.Tensor, n: int, length: int, mask: torch.Tensor) -> torch.Tensor:
    """One residual attention block on (N * L, d) rows, the same maths as the module's forward."""
    attn = blk.attn
    d, heads = x.shape[-1], attn.num_heads
    qkv = F.linear(blk.ln_1(x), attn.in_proj_weight, attn.in_proj_bias)  # (N*L, 3d)
    q, k, v = qkv.view(n, length, 3, heads, d // heads).permute(2, 0, 3, 1, 4)  # (N, H, L, d/H) each
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (N, H, L, d/H)
    o = o.transpose(1, 2).reshape(n * length, d)
    x = x + blk.ls_1(F.linear(o, attn.out_proj.weight, attn.out_proj.bias))
    return x + blk.ls_2(blk.mlp(blk.ln_2(x)))


class SearchTower:
    """Text features from input embeddings, in the search precision: (N, L, d), (N,) -> (N, D).

    Shared between runs on one loaded CLIP (cached by `search_tower`); holds no per-run state
    except which candidate layout is faster, a property of the machine."""

    TRIALS = 3  # timed calls per layout before choosing (after one warm-up call)

    def __init__(self, model, dtype: torch.dtype, compile_mode: str | None = None):
        parts = _TextParts(model)
        if parts.transformer.get_cast_dtype() != dtype:
            parts = copy.deepcopy(parts).to(dtype)  # the search's own copy; the CLIP keeps its weights
        self.parts, self.dtype = parts.eval().requires_grad_(False), dtype
        self.plain = all(_plain_block(b) for b in parts.transformer.resblocks)
        self.batch_first = getattr(parts.transformer, "batch_first", True)
        self._eager = self._forward
        self._run = self._eager
        self.compile_mode = compile_mode
        if compile_mode is not None:
            self._run = torch.compile(self._forward, mode=compile_mode, dynamic=False)
        self._layout: dict[int, str] = {}  # batch size -> "batched" | "sequential"
        self._trials: dict[int, dict[str, list[float]]] = {}
        self._lock = threading.Lock()

    def __call__(self, x: torch.Tensor, eot_pos: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        layout = self._choose_layout(n, x.device)
        start = time.perf_counter()
        if layout == "batched":
            out = self._call(x, eot_pos)
        else:
            out = torch.cat([self._call(x[i : i + 1], eot_pos[i : i + 1]) for i in range(n)])
        self._record(n, layout, time.perf_counter() - start)
        return out

    def layout(self, n: int) -> str | None:
        """The layout chosen for batch size n, None while still timing."""
        return "batched" if n == 1 else self._layout.get(n)

    def _choose_layout(self, n: int, device: torch.device) -> str:
        if n == 1 or device.type != "cpu":
            return "batched"  # on a GPU one batch is always cheaper; timing would need a sync
        with self._lock:
            if n in self._layout:
                return self._layout[n]
            trials = self._trials.setdefault(n, {"batched": [], "sequential": []})
            done = len(trials["batched"]) + len(trials["sequential"])
            return "batched" if done % 2 == 0 else "sequential"

    def _record(self, n: int, layout: str, seconds: float) -> None:
        if n == 1 or n in self._layout or n not in self._trials:
            return
        with self._lock:
            trials = self._trials[n]
            trials[layout].append(seconds)
            if min(len(t) for t in trials.values()) > self.TRIALS:  # first of each is warm-up
                med = {k: statistics.median(v[1:]) for k, v in trials.items()}
                self._layout[n] = min(med, key=med.get)
                log.info("candidates=%d: %s layout (forward %s s)", n, self._layout[n], med)

    def _call(self, x: torch.Tensor, eot_pos: torch.Tensor) -> torch.Tensor:
        if self._run is self._eager:
            return self._eager(x, eot_pos)
        try:
            if x.device.type == "cuda":
                torch.compiler.cudagraph_mark_step_begin()
            return self._run(x, eot_pos).clone()  # clone: graph outputs are overwritten next step
        except Exception as e:  # noqa: BLE001 - any compiler failure: fall back to eager, once
            log.warning("torch.compile failed (%s: %s); running eagerly", type(e).__name__, e)
            self._run = self._eager
            return self._eager(x, eot_pos)

    def _forward(self, x: torch.Tensor, eot_pos: torch.Tensor) -> torch.Tensor:
        p = self.parts
        n, length, d = x.shape
        x = x.to(self.dtype) + p.positional_embedding[:length].to(self.dtype)
        mask = p.attn_mask[:length, :length].to(self.dtype)
        if self.plain:
            h = x.reshape(n * length, d)  # contiguous rows: every projection is one matmul
            for blk in p.transformer.resblocks:
                h = _block(blk, h, n, length, mask)
            x = h.view(n, length, d)
        elif self.batch_first:
            x = p.transformer(x, attn_mask=mask)
        else:
            x = p.transformer(x.permute(1, 0, 2), attn_mask=mask).permute(1, 0, 2)
        x = p.ln_final(x)
        pooled = x[torch.arange(n, device=x.device), eot_pos]  # (N, d)
        proj = p.text_projection
        if proj is None:
            return pooled
        return proj(pooled) if isinstance(proj, torch.nn.Linear) else pooled @ proj


# ---------------------------------------------------------------------------------------------
# Vocabulary scans in bf16, exact


class CoarseScanProjector(Projector):
    """`Projector` whose full scans read a bf16 copy of the unit vocabulary (half the bytes of
    fp32) and stay exact: the bf16 cosines are within `SLACK` of the fp32 ones, so every token
    outside the coarse top-k scores at most (k-th coarse cosine + SLACK) in fp32. The kept set is
    re-ranked in fp32; if its best clears that bound it is the exact nearest token (else this
    scan falls back to the fp32 scan). The bound also becomes the row's floor for later steps.

    SLACK: inputs rounded to bf16 (unit roundoff u = 2^-8) move a dot product of unit vectors by
    at most 2u + u^2; the bf16 output adds u; fp32 accumulation over d terms adds d * 2^-24."""

    def __init__(self, vocab, mask: torch.Tensor, keep: int = 256, dtype: torch.dtype = torch.bfloat16):
        super().__init__(vocab, mask, keep)
        self.dtype = dtype
        u = torch.finfo(dtype).eps / 2  # unit roundoff, 2^-8 for bf16
        self.slack = 3 * u + u * u + vocab.unit.shape[1] * 2.0**-24
        self.low = coarse_unit(vocab, dtype)  # (V, d)
        self.fallbacks = 0  # coarse scans that needed the fp32 scan (for benchmarks)

    def _scan(self, flat: torch.Tensor) -> torch.Tensor:
        sims = torch.addmm(self.mask.to(self.dtype).unsqueeze(0), flat.to(self.dtype), self.low.T)  # (R, V)
        top, top_ids = sims.topk(self.keep, dim=-1)  # coarse, descending
        kept = top_ids.sort(dim=-1).values  # (R, k)
        cand = self.vocab.unit.index_select(0, kept.flatten()).view(*kept.shape, -1)  # (R, k, d); 5x faster than [kept]
        exact = torch.einsum("rd,rkd->rk", flat, cand)  # (R, k) fp32
        bound = top[:, -1].float() + self.slack  # (R,) no token outside `kept` beats this in fp32
        best, pos = exact.max(dim=-1)  # first max: lowest id among ties, as in a full scan
        if bool((best <= bound).any()):
            self.fallbacks += 1
            return super()._scan(flat)
        self.scans += 1
        self.anchor, self.kept, self.floor = flat.clone(), kept, bound
        return kept.gather(1, pos.unsqueeze(1)).squeeze(1)


_COARSE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # Vocabulary -> {dtype: (V, d)}


def coarse_unit(vocab, dtype: torch.dtype) -> torch.Tensor:
    """The unit vocabulary in `dtype`, built once per vocabulary."""
    with _TOWERS_LOCK:
        per_dtype = _COARSE.setdefault(vocab, {})
        if dtype not in per_dtype:
            per_dtype[dtype] = vocab.unit.to(dtype)
        return per_dtype[dtype]


class FullScanProjector(Projector):
    """A full fp32 scan on every step, with no host sync (a GPU reads the vocabulary in ~0.1 ms;
    the skip test of `Projector` would cost a device-to-host sync per step instead)."""

    def __call__(self, soft: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.scans += 1
        return self.vocab.project(soft, self.mask)


def projector(vocab, mask: torch.Tensor) -> Projector:
    """The exact projector for this hardware: on CUDA a full scan each step (no sync); on a CPU
    scans that read bf16 where it is fast (the 'auto' precision is bf16) on vocabularies wide
    enough to be bandwidth-bound, else the fp32 scans of `Projector`."""
    device = vocab.unit.device
    if device.type == "cuda":
        return FullScanProjector(vocab, mask)
    if device.type == "cpu" and vocab.unit.shape[1] >= BF16_MIN_WIDTH and cpu_auto_precision() == "bf16":
        return CoarseScanProjector(vocab, mask)
    return Projector(vocab, mask)


_TOWERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # LoadedClip -> {key: SearchTower}
_TOWERS_LOCK = threading.Lock()


def search_tower(clip, precision: str, compile: bool | None = None) -> SearchTower:
    """The cached gradient-pass tower of `clip` in `precision` ('fp32' | 'bf16' | 'fp16')."""
    if precision not in DTYPES:
        raise ConfigError(f"precision: expected one of {list(DTYPES)}, received {precision!r}")
    compile = compile_enabled(clip.device) if compile is None else compile
    mode = None
    if compile:
        mode = "reduce-overhead" if clip.device.type == "cuda" else "default"
    key = (precision, mode)
    with _TOWERS_LOCK:
        towers = _TOWERS.setdefault(clip, {})
        if key not in towers:
            towers[key] = SearchTower(clip.model, DTYPES[precision], mode)
        return towers[key]


def scoring_tower(clip) -> SearchTower | None:
    """fp32 tower for honest scores when the CLIP itself is not fp32 (None: use the CLIP as is)."""
    if clip.model.transformer.get_cast_dtype() == torch.float32:
        return None
    return search_tower(clip, "fp32", compile=False)


__all__ = [
    "CoarseScanProjector",
    "FullScanProjector",
    "SearchTower",
    "coarse_unit",
    "compile_enabled",
    "cpu_auto_precision",
    "cpu_has_native_bf16",
    "decide_cpu_precision",
    "probe_bf16_speedup",
    "projector",
    "scoring_tower",
    "search_precision",
    "search_tower",
]
