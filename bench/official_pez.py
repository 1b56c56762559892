"""The official PEZ loop and pez's, side by side: seconds per 1,000 optimisation steps on one CLIP.

The official code is run from a local copy of its repository (YuxinWenRick/hard-prompts-made-easy,
given as the first argument; nothing of it is copied here): a worker process puts that folder first
on sys.path, so its `optim_utils` and its own modified `open_clip` are the ones imported, builds the
CLIP with random weights (seeded), encodes a seeded noise image as the target, saves both, and times
`optim_utils.optimize_prompt_loop` with the settings of its sample_config.json (lr 0.1, weight decay
0.1, prompt_bs = candidates, batch_size 1, loss_weight 1). This process then loads the same weights
into pez (the spec "ARCH@FILE", the installed open_clip) and times `pez.optimize` on the same target
with the same prompt length, candidates, lr, weight decay and steps (no refinement or pruning, no
early stop). Hubs are not needed: the weights are random, so only the speed (and each loop's score
of its best prompt, for information) is compared. Both sides are timed after a warm-up run.

    pip install sentence-transformers   # the official optim_utils imports its util (semantic_search)
    python bench/official_pez.py /path/to/hard-prompts-made-easy            # ViT-B-32, CPU or CUDA
    python bench/official_pez.py /path/to/hard-prompts-made-easy --arch ViT-H-14 --steps 300

pez runs in fp32 (as the official code does) and, on CUDA, also in its default precision (bf16).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("official", help="a local copy of the official repository (the folder with optim_utils.py)")
    p.add_argument("--arch", default="ViT-B-32", help="open_clip architecture (random weights), default ViT-B-32")
    p.add_argument("--steps", type=int, default=100, help="timed steps per side (default 100)")
    p.add_argument("--warmup", type=int, default=5, help="steps run before timing (default 5)")
    p.add_argument("--prompt-len", type=int, default=16)
    p.add_argument("--candidates", type=int, default=1, help="prompts optimised at once (official: prompt_bs)")
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads on each side (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # the official side writes here
    return p.parse_args(argv)


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


# ---------------------------------------------------------------------------------------------
# The official side (a worker process with the official folder first on sys.path)


def official_worker(args: argparse.Namespace) -> None:
    here = Path(__file__).resolve().parent  # bench/ is not the official code's to import from
    sys.path[:] = [str(Path(args.official).resolve())] + [p for p in sys.path if Path(p or ".").resolve() != here]
    import numpy as np
    import open_clip  # the official repository's own copy (it adds forward_text_embedding)
    import optim_utils
    import torch
    from PIL import Image

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.worker)
    torch.manual_seed(args.seed)
    model, _, preprocess = open_clip.create_model_and_transforms(args.arch, pretrained=None, device=args.device)
    model.eval().requires_grad_(False)
    torch.save(model.state_dict(), out / "weights.pt")
    image = Image.fromarray(np.random.default_rng(args.seed).integers(0, 256, (256, 256, 3), dtype=np.uint8))
    with torch.no_grad():
        target = model.encode_image(preprocess(image).unsqueeze(0).to(args.device))  # (1, D)
    torch.save(target.float().cpu(), out / "target.pt")

    def settings(steps: int) -> argparse.Namespace:  # sample_config.json's, with our length and steps
        return argparse.Namespace(
            prompt_len=args.prompt_len,
            iter=steps,
            lr=0.1,
            weight_decay=0.1,
            prompt_bs=args.candidates,
            loss_weight=1.0,
            print_step=None,
            batch_size=1,
        )

    tokenizer = open_clip.tokenizer._tokenizer  # as optim_utils.optimize_prompt gets it
    run = lambda steps: optim_utils.optimize_prompt_loop(  # noqa: E731
        model, tokenizer, model.token_embedding, target, settings(steps), args.device
    )
    optim_utils.set_random_seed(args.seed)
    run(args.warmup)
    _sync(args.device)
    start = time.perf_counter()
    best = run(args.steps)
    _sync(args.device)
    seconds = time.perf_counter() - start
    score = _cosine(
        model, tokenizer_funct=open_clip.get_tokenizer(args.arch), text=best, target=target, device=args.device
    )
    (out / "official.json").write_text(json.dumps({"seconds": seconds, "prompt": best, "score": score}))


def _cosine(model, tokenizer_funct, text: str, target, device: str) -> float:
    import torch

    with torch.no_grad():
        feats = model.encode_text(tokenizer_funct([text]).to(device)).float()
        feats = feats / feats.norm(dim=-1, keepdim=True)
        unit = target.float() / target.float().norm(dim=-1, keepdim=True)
        return float((feats @ unit.T).mean())


def run_official(args: argparse.Namespace, folder: Path) -> dict:
    cmd = [sys.executable, __file__, args.official, "--worker", str(folder), "--arch", args.arch]
    cmd += ["--steps", str(args.steps), "--warmup", str(args.warmup), "--prompt-len", str(args.prompt_len)]
    cmd += ["--candidates", str(args.candidates), "--device", args.device, "--seed", str(args.seed)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # pez is not on the official side's path
    extra = os.environ.get("OFFICIAL_PYTHONPATH")  # e.g. where sentence-transformers was installed
    if extra:
        env["PYTHONPATH"] = extra
    done = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the official side failed:\n{done.stderr[-3000:]}")
    return json.loads((folder / "official.json").read_text())


# ---------------------------------------------------------------------------------------------
# pez's side, on the same weights and target


def run_pez(args: argparse.Namespace, folder: Path, precision: str) -> dict:
    import torch

    import pez
    from pez.engine.optim import Targets

    if args.threads:
        torch.set_num_threads(args.threads)
    clip = pez.load_clip(f"{args.arch}@{folder / 'weights.pt'}", device=args.device, precision="fp32")
    target = torch.load(folder / "target.pt").to(clip.device)
    target = target / target.norm(dim=-1, keepdim=True)
    targets = Targets(target, target[:0])
    config = pez.InvertConfig(
        prompt_len=args.prompt_len,
        candidates=args.candidates,
        lr=0.1,
        weight_decay=0.1,
        seed=args.seed,
        precision=precision,
        refine_steps=0,
        prune_tolerance=0.0,
        patience=0,
    )
    for rep in pez.optimize(clip, targets, config.replace(steps=args.warmup)):  # vocabulary, towers, caches
        pass
    _sync(args.device)
    start = time.perf_counter()
    for rep in pez.optimize(clip, targets, config.replace(steps=args.steps)):
        pass
    _sync(args.device)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "prompt": rep.result.prompt, "score": rep.result.score}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.worker:
        official_worker(args)
        return
    if not (Path(args.official) / "optim_utils.py").is_file():
        raise SystemExit(f"{args.official!r} does not hold the official optim_utils.py")
    with tempfile.TemporaryDirectory(prefix="pez-official-") as tmp:
        folder = Path(tmp)
        official = run_official(args, folder)
        sides = {"official": official, "pez fp32": run_pez(args, folder, "fp32")}
        if args.device.startswith("cuda"):
            sides["pez default (auto)"] = run_pez(args, folder, "auto")
    print(
        f"{args.arch} random weights, prompt length {args.prompt_len}, {args.candidates} candidate(s), "
        f"{args.steps} steps timed after {args.warmup}, device {args.device}"
    )
    base = official["seconds"]
    for name, side in sides.items():
        per = side["seconds"] / args.steps * 1000
        print(
            f"  {name:<20} {per:9.1f} s per 1,000 steps  x{base / side['seconds']:.2f} vs official  "
            f"(score {side['score']:.3f}: {side['prompt'][:60]!r})"
        )


if __name__ == "__main__":
    main()
