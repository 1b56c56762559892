"""Seconds per PEZ step vs the floor, per model and search precision, and what candidates cost.

Floor = one forward + backward (input gradient only) of the text tower over SOT, the M prompt
slots and EOT, for one prompt, in that precision (through the same tower the search uses).
Step = wall time per step of a real run with default settings (projection, gradient pass,
AdamW, tracking, honest fp32 re-scoring, reporting), timed per report window of 10 steps; the
first window is warm-up. All variants of a model run interleaved in one process (one report
window of each in turn, floors measured between windows), so a busy neighbour slows them alike.
Prints medians with min-max spread, ratio = step / floor in the same precision, speed-up over
fp32, 4-candidate cost relative to one, the scan fraction and peak RSS. Random weights (cost does
not depend on their values), so no download is needed.

    python bench/speed.py                       # ViT-B-32 and ViT-H-14, M=16, CPU (~4 min)
    python bench/speed.py --archs ViT-B-32 --steps 60 --precisions fp32 bf16
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import time

import torch
import torch.nn.functional as F

import pez
from pez.engine import accel
from pez.engine.vocab import vocabulary


def floor_once(clip, precision: str, prompt_len: int) -> float:
    """One forward + input-gradient backward of the search tower over M + 2 positions."""
    enc = pez.PromptEncoder(clip, accel.search_tower(clip, precision))
    ids = vocabulary(clip).allowed_ids()[:prompt_len]
    x = vocabulary(clip).embeddings[ids].unsqueeze(0).detach().float().requires_grad_(True)  # (1, M, d)
    _sync(clip.device)
    t = time.perf_counter()
    with torch.enable_grad():
        f = F.normalize(enc.encode_prompt_embeddings(x).float(), dim=-1)
        torch.autograd.grad(f.sum(), x)
    _sync(clip.device)
    return time.perf_counter() - t


def make_run(clip, precision: str, candidates: int, prompt_len: int, steps: int, window: int):
    dim = clip.feature_dim
    image = F.normalize(torch.randn(1, dim, generator=torch.Generator().manual_seed(0)), dim=-1)
    targets = pez.Targets(image.to(clip.device), torch.zeros(0, dim, device=clip.device))
    cfg = pez.InvertConfig(
        prompt_len=prompt_len,
        steps=steps + window,
        report_every=window,
        seed=0,
        candidates=candidates,
        precision=precision,
        refine_steps=0,  # time the PEZ search steps only: refinement rounds are not search steps
        prune_tolerance=0.0,
    )
    return pez.optimize(clip, targets, cfg)


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_arch(arch: str, args) -> None:
    clip = pez.load_clip(f"random:{arch}", device=args.device)
    _ = vocabulary(clip)  # build the projection index outside the timings
    window = pez.InvertConfig().report_every
    variants = [(p, n) for p in args.precisions for n in (1, args.candidates)]
    runs = {v: make_run(clip, v[0], v[1], args.prompt_len, args.steps, window) for v in variants}
    windows: dict[tuple, list[float]] = {v: [] for v in variants}
    floors: dict[str, list[float]] = {p: [] for p in args.precisions}
    results = {}
    for p in args.precisions:  # warm-up (and, for bf16, build the tower copy)
        floor_once(clip, p, args.prompt_len)
    while runs:
        for v in list(runs):
            t = time.perf_counter()
            try:
                rep = next(runs[v])
            except StopIteration:
                del runs[v]
                continue
            _sync(clip.device)
            windows[v].append((time.perf_counter() - t) / window)
            if rep.done:
                results[v] = rep.result
                del runs[v]
        for p in args.precisions:
            floors[p].extend(floor_once(clip, p, args.prompt_len) for _ in range(2))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    for v in variants:
        windows[v] = windows[v][1:]  # the first window of each run is warm-up
    step = {v: statistics.median(w) for v, w in windows.items()}
    fp32_step = {n: step.get(("fp32", n)) for n in (1, args.candidates)}
    for p, n in variants:
        w, fl = windows[(p, n)], statistics.median(floors[p])
        tower = accel.search_tower(clip, p)
        speedup = fp32_step[n] / step[(p, n)] if fp32_step[n] else float("nan")
        cost = step[(p, n)] / step[(p, 1)]
        scans = results[(p, n)].stats["scan_fraction"]
        print(
            f"{arch:<9} {p:<5} {n:>2} {step[(p, n)]:8.4f} {min(w):7.4f}-{max(w):<7.4f} {fl:8.4f} "
            f"{min(floors[p]):7.4f}-{max(floors[p]):<7.4f} {step[(p, n)] / fl:6.3f} {speedup:6.2f}x "
            f"{cost:5.2f}x {tower.layout(n) or '?':>10} {scans:6.1%} {rss:6.2f}G",
            flush=True,
        )
    pez.models.clear_cache()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", nargs="+", default=["ViT-B-32", "ViT-H-14"])
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16", "fp16"])
    ap.add_argument("--prompt-len", type=int, default=16)
    ap.add_argument("--candidates", type=int, default=4, help="the multi-candidate variant timed against one")
    ap.add_argument("--steps", type=int, default=80, help="timed steps per variant (after a warm-up window)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    dev = torch.device(args.device)
    print(
        f"machine: {platform.machine()} {platform.processor() or ''}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, device {args.device}, cpu capability {torch.backends.cpu.get_cpu_capability()}, "
        f"native bf16 {accel.cpu_has_native_bf16()}, auto precision -> {accel.search_precision('auto', dev)}"
    )
    print(
        f"{'arch':<9} {'prec':<5} {'N':>2} {'step med':>8} {'min-max':<15} {'floor med':>8} {'min-max':<15} "
        f"{'ratio':>6} {'vs fp32':>7} {'xN=1':>6} {'layout':>10} {'scans':>6} {'RSS':>7}"
    )
    for arch in args.archs:
        bench_arch(arch, args)


if __name__ == "__main__":
    main()
