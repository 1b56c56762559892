"""Seconds per PEZ step vs the floor: one forward + backward of the text encoder over SOT, the M
prompt slots and EOT. A step's time is averaged over each report window (10 steps) of a real run
with default settings. Prints median/min/max/mean, the ratio of medians step/floor (target <= 1.15 on CPU), the
fraction of steps that needed a full vocabulary scan, and peak RSS. Weights are random (cost does not depend on their values), so no download is needed.

    python bench/speed.py                       # ViT-B-32 and ViT-H-14, M=16, CPU
    python bench/speed.py --archs ViT-B-32 --steps 30 --device cuda
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pez  # noqa: E402


def time_floor(clip, prompt_len: int, repeats: int) -> list[float]:
    """Forward + backward (input gradient only) of the text tower on M + 2 positions."""
    enc = pez.PromptEncoder(clip)
    ids = clip.vocab.allowed_ids()[:prompt_len]
    times = []
    for _ in range(repeats + 2):
        x = clip.vocab.embeddings[ids].unsqueeze(0).detach().requires_grad_(True)  # (1, M, d)
        _sync(clip.device)
        t = time.perf_counter()
        with torch.enable_grad():
            f = F.normalize(enc.encode_prompt_embeddings(x).float(), dim=-1)
            (g,) = torch.autograd.grad(f.sum(), x)
        _sync(clip.device)
        times.append(time.perf_counter() - t)
    return times[2:]  # drop warm-up


def time_steps(clip, prompt_len: int, steps: int, window: int) -> tuple[list[float], float]:
    """Seconds per step of a real PEZ run (one target, one candidate, default reporting), each
    averaged over one report window, and the fraction of prompt rows that needed a full scan."""
    dim = clip.feature_dim
    image = F.normalize(torch.randn(1, dim, generator=torch.Generator().manual_seed(0)), dim=-1)
    targets = pez.Targets(image.to(clip.device), torch.zeros(0, dim, device=clip.device))
    cfg = pez.InvertConfig(prompt_len=prompt_len, steps=steps + window, report_every=window, seed=0)
    stamps = []
    for rep in pez.optimize(clip, targets, cfg):
        _sync(clip.device)
        stamps.append(time.perf_counter())
    per_step = [(b - a) / window for a, b in zip(stamps, stamps[1:])]  # the first window is warm-up
    return per_step, rep.result.stats["scan_fraction"]


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", nargs="+", default=["ViT-B-32", "ViT-H-14"])
    ap.add_argument("--prompt-len", type=int, default=16)
    ap.add_argument("--steps", type=int, default=200, help="steps of the timed run (all are counted)")
    ap.add_argument("--floor-repeats", type=int, default=40)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    print(
        f"machine: {platform.machine()} {platform.processor() or ''}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, device {args.device}"
    )
    print(
        f"{'arch':<10} {'step med':>9} {'min':>8} {'max':>8} {'mean':>8} {'floor med':>9} {'ratio':>6} "
        f"{'scans':>6} {'peak RSS':>9}"
    )
    for arch in args.archs:
        clip = pez.load_clip(f"random:{arch}", device=args.device)
        _ = clip.vocab  # build the projection index outside the timings
        floor = time_floor(clip, args.prompt_len, args.floor_repeats)
        steps, scans = time_steps(clip, args.prompt_len, args.steps, pez.InvertConfig().report_every)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
        fm, sm = statistics.median(floor), statistics.median(steps)
        mean = statistics.mean(steps)
        print(
            f"{arch:<10} {sm:9.4f} {min(steps):8.4f} {max(steps):8.4f} {mean:8.4f} {fm:9.4f} {sm / fm:6.3f} "
            f"{scans:6.1%} {rss:8.2f}G"
        )


if __name__ == "__main__":
    main()
