"""Full-size figures per pair, on random-weight replicas: load time, memory, search and image speed.

    python bench/replica.py [--pairs sd-turbo sdxl ...] [--home DIR] [--steps 5] [--device auto]

Builds the replicas (fp16 files, pez.testing.replica) under --home if they are not there, then for each
pair runs a fresh child process with HF_HOME=home HF_HUB_OFFLINE=1 that, through the product's
own API: loads the CLIP, runs a PEZ search at the reference settings (prompt length 16, the
config's candidates) for --steps steps, frees the CLIP, loads the generator and draws one image at
the pair's default size (at most --max-gen-steps denoising steps; the remaining steps of the pair's
default are added at the measured seconds per step, marked "estimated"). Prints, per pair: CLIP load time, seconds per search step (steps after
the first), peak RSS (and peak VRAM on CUDA) during the search, generator load time, seconds per
image, peak RSS/VRAM during generation. Random weights: speed and memory are real, images are noise.
A pair with several CLIPs (sdxl: ViT-L-14 + ViT-bigG-14, one prompt for both) is searched jointly
at the pair's weights; then, in the same process, each CLIP alone, so their step times compare.

    python bench/replica.py --pairs sdxl --threads 1 --max-gen-steps 1     # joint search + one 1024² step
    python bench/replica.py --pairs sdxl --parts search --free-vision      # + the search with vision towers freed

`--resident` measures what the app holds instead: one process keeps everything loaded, as the app
does, and prints per phase (load CLIP, search, load generator, generate one image, score it with
the search's CLIP) the peak RSS during the phase and the RSS after it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class PeakRss:
    """Samples this process's RSS every 20 ms; `peak` since the last reset (GiB)."""

    def __init__(self):
        import psutil

        self.proc, self.peak, self._stop = psutil.Process(), 0, False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while not self._stop:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.02)

    def reset(self) -> None:
        self.peak = self.proc.memory_info().rss

    def gib(self) -> float:
        return round(self.peak / 2**30, 2)


def search_seconds(clip, image, steps: int) -> list[float]:
    """Seconds of each of `steps` search steps (one report per step; the search alone)."""
    import pez

    times = []
    config = pez.InvertConfig(steps=steps, report_every=1, seed=0, refine_steps=0, prune_tolerance=0.0)
    t = time.perf_counter()
    for _ in pez.invert_stream([image], clip, config):
        times.append(time.perf_counter() - t)
        t = time.perf_counter()
    return times


def _search_part(
    pair_name: str, device: str, image, steps: int, rss: PeakRss, vram, out: dict, free_vision: bool = False
) -> None:
    """Load the pair's CLIP(s), time the search (and each CLIP alone for a joint pair), free them."""
    import pez

    t0 = time.perf_counter()
    clip = pez.load_clip(pair_name, device=device)
    out["clip_load_s"] = round(time.perf_counter() - t0, 1)
    out["clip_load_peak_rss_gib"] = rss.gib()
    rss.reset()
    times = search_seconds(clip, image, steps)  # search steps only; the first also encodes the target
    out["search_s_per_step"] = round(sum(times[1:]) / max(len(times) - 1, 1), 2)
    out["search_first_step_s"] = round(times[0], 1)
    out["search_peak_rss_gib"], out["search_peak_vram_gib"] = rss.gib(), vram()
    out["search_precision"] = pez.engine.accel.search_precision("auto", clip.device, 1024)
    out["device"] = str(clip.device)
    if len(clip.clips) > 1:  # each CLIP alone, in the same process and load (weight 1 for it)
        for k, single in enumerate(clip.clips):
            alone = search_seconds(clip.reweighted([float(i == k) for i in range(len(clip.clips))]), image, steps)
            out[f"search_s_per_step[{single.name} alone]"] = round(sum(alone[1:]) / max(len(alone) - 1, 1), 2)
    if free_vision:  # the search alone: targets encoded, then every vision tower dropped (a CPU keeps them)
        _search_without_vision(clip, image, steps, rss, out)
    del clip  # generation is measured alone: CLIP freed first, images not scored
    pez.models.clear_cache()


def _search_without_vision(clip, image, steps: int, rss: PeakRss, out: dict) -> None:
    """Seconds per step and peak RSS of the search once the targets are encoded and the vision
    towers freed (what a memory-bound machine needs; the product keeps them loaded on a CPU, to
    score generated images). The bench's child process owns the cached CLIP, so it may drop them."""
    import gc

    import torch

    import pez
    from pez.engine.features import image_features
    from pez.engine.optim import Targets

    goal = image_features(clip, [image])
    for single in clip.clips:
        single.model.visual = None
    gc.collect()
    rss.reset()
    out["rss_after_vision_freed_gib"] = rss.gib()
    config = pez.InvertConfig(steps=steps, report_every=1, seed=0, refine_steps=0, prune_tolerance=0.0)
    times, t = [], time.perf_counter()
    for _ in pez.optimize(clip, Targets(goal, torch.zeros(0, goal.shape[1])), config):
        times.append(time.perf_counter() - t)
        t = time.perf_counter()
    out["search_s_per_step[vision freed]"] = round(sum(times[1:]) / max(len(times) - 1, 1), 2)
    out["search_peak_rss_gib[vision freed]"] = rss.gib()


def child(
    pair_name: str, steps: int, device: str, max_gen_steps: int, threads: int, parts: list[str], free_vision: bool
) -> dict:
    import gc

    import numpy as np
    import torch
    from PIL import Image

    import pez
    from pez.models import get_pair

    torch.set_num_threads(threads)
    pair = get_pair(pair_name)
    rss, cuda = PeakRss(), torch.cuda.is_available() and device != "cpu"
    vram = (lambda: round(torch.cuda.max_memory_allocated() / 2**30, 2)) if cuda else (lambda: None)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8))
    out = {"pair": pair_name, "clip": pair.describe_clips(), "generator": pair.generator, "threads": threads}

    if "search" in parts:
        _search_part(pair_name, device, image, steps, rss, vram, out, free_vision)
    if "generate" not in parts:
        return out
    gc.collect()
    rss.reset()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    gen = pez.load_generator(pair_name, device=device)
    out["generator_load_s"] = round(time.perf_counter() - t0, 1)
    steps = min(pair.steps, max_gen_steps)
    stamps = []
    config = pez.GenerateConfig(seed=0, steps=steps)
    res = pez.regenerate(
        pair_name, "a lighthouse at dusk", config, score=False, pipeline=gen, callback=lambda st: stamps.append(st)
    )
    s = res.settings
    per_step = (stamps[-1].seconds - stamps[0].seconds) / (len(stamps) - 1) if len(stamps) > 1 else stamps[0].seconds
    out["image"] = f"{s.width}x{s.height}, {pair.steps} steps, guidance {s.guidance:g}"
    out["s_per_denoise_step"] = round(per_step, 1)
    out["s_per_image"] = round(res.seconds + (pair.steps - steps) * per_step, 1)
    out["s_per_image_estimated"] = steps < pair.steps  # ran `steps` steps, added the rest at s_per_denoise_step
    out["generation_peak_rss_gib"], out["generation_peak_vram_gib"] = rss.gib(), vram()
    out["device"] = str(gen.device)
    return out


def child_resident(pair_name: str, steps: int, device: str, max_gen_steps: int, low_memory: bool = False) -> dict:
    """The app's pattern: CLIP and generator stay loaded (the pipeline's text encoder shared with the
    CLIP where they are the same weights); peak RSS per phase and RSS after each. `low_memory`: the
    weights in bf16 where the CPU has native bf16, as the app with PEZ_CPU_SPACE=1."""
    import numpy as np
    import psutil
    import torch
    from PIL import Image

    import pez
    from pez.engine.accel import low_memory_dtype
    from pez.generate.run import score_images, target_features
    from pez.models import get_pair

    torch.set_num_threads(os.cpu_count() or 1)
    pair, rss, proc = get_pair(pair_name), PeakRss(), psutil.Process()
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8))
    out: dict = {"pair": pair_name, "mode": "resident", "phases": {}}

    def phase(name: str, fn):
        rss.reset()
        t0 = time.perf_counter()
        value = fn()
        out["phases"][name] = {
            "s": round(time.perf_counter() - t0, 1),
            "peak_gib": rss.gib(),
            "after_gib": round(proc.memory_info().rss / 2**30, 2),
        }
        return value

    dtype = low_memory_dtype(pez.resolve_device(device)) if low_memory else None
    clip = phase("load_clip", lambda: pez.load_clip(pair_name, device=device, precision=dtype))
    config = pez.InvertConfig(steps=steps, seed=0, refine_steps=0, prune_tolerance=0.0)
    phase("search", lambda: pez.invert([image], clip, config))
    gen = phase(
        "load_generator", lambda: pez.load_generator(pair_name, device=device, dtype=dtype, text_encoder_of=clip)
    )
    gen_config = pez.GenerateConfig(seed=0, steps=min(pair.steps, max_gen_steps))
    res = phase(
        "generate", lambda: pez.regenerate(pair_name, "a lighthouse at dusk", gen_config, score=False, pipeline=gen)
    )
    phase("score", lambda: score_images(clip, res.images, res.prompt, target_features(clip, [image])))
    out["peak_gib"] = max(p["peak_gib"] for p in out["phases"].values())
    out["device"], out["clip_dtype"] = str(clip.device), str(clip.clips[0].dtype).replace("torch.", "")
    denoiser = getattr(gen.pipeline, "unet", None) or gen.pipeline.transformer  # Flux: a transformer
    out["unet_dtype"] = str(denoiser.dtype).replace("torch.", "")
    out["shared_text_encoder"] = gen.shared_text_encoder
    if low_memory:  # the first prompt on a CPU Space: one search at the app's PEZ_CPU_SPACE settings
        from pez_app.server import CPU_SPACE_DEFAULTS

        res = phase(
            "cpu_space_search", lambda: pez.invert([image], clip, pez.InvertConfig(seed=0, **CPU_SPACE_DEFAULTS))
        )
        out["cpu_space_search"] = {"steps_run": res.steps_run, "seconds": round(res.elapsed, 1), **CPU_SPACE_DEFAULTS}
    return out


def _vram(r: dict, key: str) -> str:
    return "" if r[key] is None else f", VRAM {r[key]} GiB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", nargs="+", default=["sd-turbo"])
    ap.add_argument("--home", default="/tmp/pez-replica", help="replica folder (HF_HOME), built if missing")
    ap.add_argument("--steps", type=int, default=5, help="search steps to time")
    ap.add_argument("--device", default="auto")
    ap.add_argument(
        "--max-gen-steps",
        type=int,
        default=2,
        help="denoising steps run; the rest of the pair's are added at the measured rate",
    )
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: all cores)")
    ap.add_argument(
        "--parts", nargs="+", choices=["search", "generate"], default=["search", "generate"], help="what to measure"
    )
    ap.add_argument(
        "--free-vision",
        action="store_true",
        help="also time the search after the targets are encoded and the vision towers freed (memory)",
    )
    ap.add_argument("--resident", action="store_true", help="keep everything loaded, as the app does (per-phase RSS)")
    ap.add_argument(
        "--low-memory", action="store_true", help="with --resident: bf16 weights where native (PEZ_CPU_SPACE)"
    )
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        fig = (
            child_resident(args.child, args.steps, args.device, args.max_gen_steps, args.low_memory)
            if args.resident
            else child(
                args.child, args.steps, args.device, args.max_gen_steps, args.threads, args.parts, args.free_vision
            )
        )
        sys.stdout.write("BENCH " + json.dumps(fig) + "\n")
        return

    from pez.testing.replica import build_replica

    for pair in args.pairs:
        t0 = time.perf_counter()
        build_replica(args.home, [pair], dtype="fp16")
        print(f"# replica of {pair} ready in {time.perf_counter() - t0:.0f}s under {args.home}", flush=True)
        env = {**os.environ, "HF_HOME": str(Path(args.home).resolve()), "HF_HUB_OFFLINE": "1"}
        cmd = [sys.executable, __file__, "--child", pair, "--steps", str(args.steps), "--device", args.device]
        cmd += ["--max-gen-steps", str(args.max_gen_steps), "--threads", str(args.threads)]
        cmd += ["--parts", *args.parts] + (["--free-vision"] if args.free_vision else [])
        cmd += (["--resident"] if args.resident else []) + (["--low-memory"] if args.low_memory else [])
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        lines = [x for x in done.stdout.splitlines() if x.startswith("BENCH ")]
        if done.returncode or not lines:
            print(f"{pair}: failed (exit {done.returncode}): {done.stderr.strip().splitlines()[-1:]}", flush=True)
            continue
        r = json.loads(lines[0][6:])
        print(json.dumps(r), flush=True)
        if args.resident:
            for name, ph in r["phases"].items():
                print(
                    f"{pair} {name:15s} {ph['s']:7.1f} s  peak RSS {ph['peak_gib']:5.2f} GiB  after {ph['after_gib']:5.2f} GiB"
                )
            continue
        line = f"{pair} on {r['device']}: CLIP {r['clip']}"
        if "search_s_per_step" in r:
            line += (
                f" load {r['clip_load_s']}s (peak RSS {r['clip_load_peak_rss_gib']} GiB); search "
                f"{r['search_s_per_step']} s/step (first {r['search_first_step_s']}s), peak RSS "
                f"{r['search_peak_rss_gib']} GiB{_vram(r, 'search_peak_vram_gib')}"
            )
        if "search_s_per_step[vision freed]" in r:
            line += (
                f"; vision towers freed: {r['search_s_per_step[vision freed]']} s/step, peak RSS "
                f"{r['search_peak_rss_gib[vision freed]']} GiB"
            )
        if "s_per_image" in r:
            estimated = " (estimated)" if r["s_per_image_estimated"] else ""
            line += (
                f"; generator load {r['generator_load_s']}s, {r['s_per_image']} s/image{estimated} ({r['image']}), "
                f"peak RSS {r['generation_peak_rss_gib']} GiB{_vram(r, 'generation_peak_vram_gib')}"
            )
        print(line, flush=True)


if __name__ == "__main__":
    main()
