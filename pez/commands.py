"""Subcommands beside PEZ itself: `generate` (regeneration) and `replica` (full-size test models).

`python -m pez generate PROMPT` draws images of a prompt with a pair's diffusion model (pez.generate), writes them as PNG files
named by pair and seed (so a file is reproduced by its seed), and prints one line per image with
its CLIP score. Progress is a tqdm bar over the denoising steps on stderr; downloads (first use)
show huggingface_hub's own bars. Errors are handled by pez.cli: one line, exit status 2 or 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .config import GENERATE_BOUNDS, GenerateConfig
from .errors import ConfigError
from .models import DEFAULT_PAIR, list_pairs


def add_parsers(sub) -> None:
    add_replica_parser(sub)
    p = sub.add_parser("generate", help="draw images of a prompt with a pair's diffusion model")
    p.add_argument("prompt", help="the prompt (e.g. one pez found)")
    p.add_argument("--model", "-m", default=DEFAULT_PAIR, help=f"model pair {list_pairs()} (default {DEFAULT_PAIR})")
    p.add_argument("--negative", default="", metavar="TEXT", help="negative prompt (needs guidance > 1)")
    p.add_argument("--seed", type=int, default=GenerateConfig.seed, help="seed of the first image; image k uses seed+k")
    bound = GENERATE_BOUNDS["num_images"]
    p.add_argument("--num-images", "-n", type=int, default=1, help=f"images to draw [{bound.lo}..{bound.hi}]")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the pair's)")
    p.add_argument("--guidance", type=float, default=None, help="classifier-free guidance (default: the pair's)")
    p.add_argument("--size", type=int, default=None, help="width and height in pixels (default: the pair's)")
    p.add_argument("--out", "-o", default=".", metavar="DIR", help="folder the PNG files are written to")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--offload", action="store_true", help="accelerate's model CPU offload (small GPUs, CUDA only)")
    p.add_argument("--no-score", action="store_true", help="skip CLIP scoring (saves loading the CLIP)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    return run_replica(args) if args.command == "replica" else run_generate(args)


def run_generate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .generate import generate

    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out: expected a folder, received the file {str(out)!r}")
    config = GenerateConfig(
        negative_prompt=args.negative,
        seed=args.seed,
        num_images=args.num_images,
        steps=args.steps,
        guidance=args.guidance,
        width=args.size,
        height=args.size,
    )
    bars = []  # the bar opens at the first denoising step, so loading time is not counted as a step

    def on_step(step) -> None:
        if not bars:
            bars.append(
                tqdm(total=step.total, disable=args.quiet, desc="generate", file=sys.stderr, dynamic_ncols=True)
            )
        bars[0].total, bars[0].n = step.total, step.step
        bars[0].refresh()

    try:
        result = generate(
            args.model,
            args.prompt,
            config,
            score=not args.no_score,
            device=args.device,
            offload=args.offload,
            callback=on_step,
        )
    finally:
        for bar in bars:
            bar.close()
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for image, seed in zip(result.images, result.seeds, strict=True):
        path = out / f"{result.pair}-seed{seed}.png"
        image.save(path)
        paths.append(str(path))
    for line in result.warnings:
        sys.stderr.write(f"warning: {line}\n")
    _report(result, paths, args.json)
    return 0


def _report(result, paths: list[str], as_json: bool) -> None:
    scores = result.text_scores or [None] * len(paths)
    if as_json:
        s = result.settings
        record = {
            "prompt": result.prompt,
            "pair": result.pair,
            "images": [{"path": p, "seed": seed, "text_score": sc} for p, seed, sc in zip(paths, result.seeds, scores)],
            "settings": {"steps": s.steps, "guidance": s.guidance, "width": s.width, "height": s.height},
            "seconds": round(result.seconds, 3),
            "stopped": result.stopped,
            "warnings": result.warnings,
        }
        sys.stdout.write(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
        return
    for path, seed, score in zip(paths, result.seeds, scores, strict=True):
        sys.stdout.write(f"{path}  seed {seed}" + ("" if score is None else f"  clip {score:.4f}") + "\n")
    sys.stdout.write(f"# {len(paths)} image(s) in {result.seconds:.1f}s with {result.pair}\n")


def add_replica_parser(sub) -> None:
    from .testing.replica import DTYPES, REPLICA_PAIRS

    p = sub.add_parser("replica", help="write full-size models with random weights as a hub cache (tests, benchmarks)")
    p.add_argument("dir", metavar="DIR", help="folder to write; then run with HF_HOME=DIR HF_HUB_OFFLINE=1")
    p.add_argument(
        "--pairs", nargs="+", default=["sd-turbo"], metavar="PAIR", help=f"pairs to replicate {REPLICA_PAIRS}"
    )
    p.add_argument("--dtype", default="fp16", choices=list(DTYPES), help="fp16 (the fp16 variant files) or fp32")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights")


def run_replica(args: argparse.Namespace) -> int:
    import time

    from .testing.replica import build_replica

    t0 = time.perf_counter()
    root = build_replica(args.dir, args.pairs, args.dtype, args.seed, progress=lambda m: sys.stderr.write(m + "\n"))
    sys.stderr.write(f"replica of {', '.join(args.pairs)} ready in {time.perf_counter() - t0:.0f}s\n")
    sys.stdout.write(f"HF_HOME={root.resolve()} HF_HUB_OFFLINE=1\n")
    return 0


__all__ = ["add_parsers", "run"]
