"""Images per minute of `python -m pez batch` with 1 and 2 processes (accelerate), on CPU or GPU.

Runs the real command on a folder of synthetic images, once per process count, each into its
own results file, and prints two figures per run: end to end (start-up and model loading
included, what a user waits for) and while inverting (images / the busiest process's summed
inversion time). Each run is processes x CPU threads per process; by default one process on all
cores, one on a single thread, and two splitting the cores. The model is the toy CLIP
when its weights are built, else the tiny random CLIP (same 49,408-token vocabulary); the
header says which.

    python bench/batch.py                                # 24 images, 100 steps, 1 and 2 processes
    python bench/batch.py --images 64 --steps 300 --runs 1x8 4x2 --model ViT-B-32/openai
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def default_model() -> tuple[str, str]:
    import pez

    try:
        pez.load_clip("toy", device="cpu")
        return "toy", "toy CLIP"
    except Exception as e:  # weights not built yet
        return "random:tiny", f"random:tiny (toy CLIP unavailable: {type(e).__name__})"


def make_images(folder: Path, n: int) -> None:
    import numpy as np
    from PIL import Image

    for i in range(n):
        pixels = np.random.default_rng(i).integers(0, 256, (96, 96, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i:03d}.png")


def run(folder: Path, out: Path, processes: int, threads: int, args) -> tuple[float, list[dict]]:
    """Run the batch command; return its wall time and the lines it wrote."""
    cmd = ["-m", "pez", "batch", str(folder), "--out", str(out), "-m", args.model, "-q"]
    cmd += ["--steps", str(args.steps), "--prompt-len", str(args.prompt_len), "--device", args.device]
    if processes > 1:
        port = str(29500 + processes + os.getpid() % 1000)  # avoid a port left busy by a previous run
        cmd = ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
               "--main_process_port", port, *cmd]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *cmd], cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"batch with {processes} process(es) failed:\n{done.stderr[-3000:]}")
    return wall, [json.loads(line) for line in out.read_text().splitlines()]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=24)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--prompt-len", type=int, default=8)
    p.add_argument(
        "--runs",
        nargs="+",
        default=None,
        metavar="PxT",
        help="processes x threads each, e.g. 1x2 2x1 (default: 1 x all cores, 1 x 1, 2 x half the cores)",
    )
    p.add_argument("--model", default=None, help="default: toy if built, else random:tiny")
    p.add_argument("--device", default="cpu", help="cpu, or auto for one GPU per process")
    p.add_argument("--cores", type=int, default=os.cpu_count(), help="CPU threads shared by the processes")
    args = p.parse_args()
    label = args.model
    if args.model is None:
        args.model, label = default_model()

    print(f"model {label}; {args.images} images, {args.steps} steps, prompt length {args.prompt_len}, "
          f"device {args.device}, {args.cores} CPU cores")  # fmt: skip
    print(f"{'processes':>9} {'threads/proc':>12} {'wall s':>7} {'img/min end-to-end':>19} {'img/min inverting':>18}")
    with tempfile.TemporaryDirectory(prefix="pez-bench-") as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        make_images(folder, args.images)
        runs = args.runs or [f"1x{args.cores}", "1x1", f"2x{max(1, args.cores // 2)}"]
        for spec in runs:
            n, threads = (int(x) for x in spec.lower().split("x"))
            wall, lines = run(folder, Path(tmp) / f"out{n}x{threads}.jsonl", n, threads, args)
            assert len({r["path"] for r in lines}) == len(lines) == args.images, "every image exactly once"
            busy = defaultdict(float)  # summed inversion seconds per process
            for r in lines:
                busy[r.get("process", 0)] += r.get("elapsed", 0.0)
            inverting = 60 * args.images / max(busy.values())
            print(f"{n:>9} {threads:>12} {wall:>7.1f} {60 * args.images / wall:>19.1f} {inverting:>18.1f}")


if __name__ == "__main__":
    main()
