"""What one refine round costs next to one PEZ search step, on CPU, per refine batch size.

For the text towers of ViT-B-32 and ViT-H-14 (random weights; cost does not depend on their
values; a 32-pixel stand-in vision tower keeps memory to the text tower, ~1.4 GB fp32 for
ViT-H-14), prompt length 16, one candidate, fp32:
  - seconds per search step (a real pez.optimize run, plain PEZ);
  - seconds per refine round at a fixed batch of 8, 16, 32, 64 swaps (real runs of the refine
    phase, `result.stats["refine_seconds"] / refine_rounds`), in search steps: the cost model of
    pez.config (REFINE_ROUND_STEPS at 8 swaps, ITEM_STEPS per further swap) comes from these;
  - the rounds that fit in the polish's share (pez.config.POLISH_SHARE) of a 100-step search.

    PYTHONPATH=. python bench/polish_cost.py                  # both towers
    PYTHONPATH=. python bench/polish_cost.py --arch ViT-B-32 --steps 30
    flock /work/notes/bigmem.lock env PYTHONPATH=. python bench/polish_cost.py --invert ViT-H-14 --budget 60

--invert ARCH: the whole full-size CLIP (random weights; ~4 GB fp32 for ViT-H-14: big memory),
the README's `pez invert` on a photo: a 20-step run at the default settings against the same
search without polish (refine and prune off), both through pez.optimize, and every progress
report's phase, rate and ETA (no report may show a zero rate).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

import pez
from pez.config import POLISH_SHARE
from pez.engine import budget

TINY_VISION = {"image_size": 32, "layers": 1, "width": 64, "patch_size": 16, "head_width": 32}


def text_tower_clip(arch: str) -> pez.LoadedClip:
    """A LoadedClip with `arch`'s real text tower (random init) and a tiny vision tower."""
    import open_clip

    from pez.models import ClipSpec

    cfg = open_clip.get_model_config(arch)
    torch.manual_seed(0)
    model = open_clip.model.CLIP(embed_dim=cfg["embed_dim"], vision_cfg=TINY_VISION, text_cfg=cfg["text_cfg"])
    model.eval().requires_grad_(False)
    preprocess = open_clip.image_transform(32, is_train=False)
    spec = ClipSpec("random", arch)
    return pez.LoadedClip(model, open_clip.get_tokenizer(arch), preprocess, spec, torch.device("cpu"), "fp32")


def run(clip, targets, **changes) -> pez.InversionResult:
    cfg = pez.InvertConfig(
        prompt_len=16, candidates=1, seed=0, precision="fp32", whole_words=False, safe=False,
        refine_steps=0, prune_tolerance=0.0, report_every=1000,
    ).replace(**changes)  # fmt: skip
    last = None
    for last in pez.optimize(clip, targets, cfg):
        pass
    return last.result


def measure(arch: str, steps: int, rounds: int, batches: list[int]) -> None:
    from pez.inversion import text_targets

    t0 = time.perf_counter()
    clip = text_tower_clip(arch)
    targets = text_targets(clip, ["a photo of a red striped ball lying on green grass in the sun"])
    run(clip, targets, steps=3)  # warm-up
    print(f"\n{arch} text tower: built in {time.perf_counter() - t0:.0f} s")
    res = run(clip, targets, steps=steps)
    step_s = res.elapsed / res.steps_run
    print(f"search: {step_s:.3f} s/step ({res.steps_run} steps)")
    share = POLISH_SHARE / (1 - POLISH_SHARE)
    print(
        "| refine batch | s/round | rounds | round / step | per further swap / step | rounds in the polish of a 100-step search |"
    )
    print("|---|---|---|---|---|---|")
    saved = budget.REFINE_BATCH_MIN, budget.REFINE_BATCH, budget.POLISH_SHARE
    first = None
    try:
        budget.POLISH_SHARE = 0.999  # rounds uncapped: this measures them
        for b in batches:
            budget.REFINE_BATCH_MIN = budget.REFINE_BATCH = b  # a fixed batch
            r = run(clip, targets, steps=2, refine_steps=rounds)
            n = max(int(r.stats.get("refine_rounds", 0)), 1)
            per = r.stats.get("refine_seconds", float("nan")) / n
            first = first or (b, per)
            extra = (per - first[1]) / (b - first[0]) / step_s if b > first[0] else float("nan")
            print(
                f"| {b} | {per:.3f} | {n} | {per / step_s:.1f} | {extra:.3f} | {share * 100 * step_s / per:.0f} |",
                flush=True,
            )
    finally:
        budget.REFINE_BATCH_MIN, budget.REFINE_BATCH, budget.POLISH_SHARE = saved


def invert_cost(arch: str, steps: int, budget_s: float = 0.0) -> None:
    """A `steps`-step default invert vs the same search without polish, on the full-size CLIP."""
    from PIL import Image

    from pez.inversion import image_targets
    from pez.models import ClipSpec

    t0 = time.perf_counter()
    torch.manual_seed(0)
    clip = pez.load_clip(f"random:{arch}", device="cpu")
    photo = Image.open(os.path.join(os.path.dirname(__file__), "..", "pez_app", "assets", "photos", "astronaut.jpg"))
    targets = image_targets(clip, [photo.convert("RGB")])
    assert clip.spec == ClipSpec("random", arch)
    print(f"\n{arch} full CLIP (random weights): loaded and image encoded in {time.perf_counter() - t0:.0f} s")
    default = pez.InvertConfig(steps=steps, seed=0)
    plain = default.replace(refine_steps=0, prune_tolerance=0.0)
    for _ in pez.optimize(clip, targets, plain.replace(steps=2)):  # warm-up
        pass
    times = {}
    runs = [("no polish", plain), ("default", default)]
    if budget_s:  # the README's `pez invert cat.jpg --time 60`: default settings, 1000 steps, a budget
        runs.append((f"--time {budget_s:.0f}", pez.InvertConfig(seed=0, time_budget=budget_s)))
    for name, cfg in runs:
        start, lines = time.perf_counter(), []
        stamps = []
        for rep in pez.optimize(clip, targets, cfg):
            stamps.append(time.perf_counter() - start)
            lines.append(f"    {stamps[-1]:5.1f}s  {pez_status(rep)}")
        res = rep.result
        wall = time.perf_counter() - start
        times[name] = wall
        st = res.stats
        print(
            f"{name}: {wall:.1f} s wall, search {st.get('search_seconds', 0):.1f} s ({res.steps_run} steps, "
            f"{st.get('candidates_kept', '?')} candidates kept), polish {st.get('polish_seconds', 0):.1f} s "
            f"({st.get('refine_rounds', 0)} refine rounds), score {res.score:.4f}; {len(lines)} reports, "
            f"first at {stamps[0]:.1f} s, longest gap {max(b - a for a, b in zip(stamps, stamps[1:])):.1f} s, "
            f"zero rates shown {sum(z in ln for ln in lines for z in (' 0.0 steps/s', ' 0.00 rounds/s'))}:"
        )
        print("\n".join(lines[:3] + (["    ..."] if len(lines) > 6 else []) + lines[max(3, len(lines) - 3) :]))
    polish = times["default"] - times["no polish"]
    print(
        f"default / no polish: {times['default'] / times['no polish']:.2f}x; "
        f"polish share of the default run ~{polish / times['default']:.0%}"
    )


def pez_status(rep) -> str:
    """One progress report as the user sees it (phase, step, rate, ETA)."""
    from pez_app.progress import progress_text

    return progress_text(rep)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", nargs="*", default=["ViT-B-32", "ViT-H-14"])
    ap.add_argument("--steps", type=int, default=20, help="search steps timed")
    ap.add_argument("--rounds", type=int, default=4, help="refine rounds timed per batch size")
    ap.add_argument("--batches", type=int, nargs="*", default=[8, 16, 32, 64])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--invert", metavar="ARCH", help="time a default invert vs no polish on this full CLIP")
    ap.add_argument("--budget", type=float, default=0.0, help="with --invert: also a default run with this time budget")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from bench.defaults import load_line, machine

    print(f"machine: {machine()}\n{load_line()}")
    if args.invert:
        invert_cost(args.invert, args.steps, args.budget)
        print(load_line())
        return
    for arch in args.arch:
        measure(arch, args.steps, args.rounds, args.batches)
    print(load_line())


if __name__ == "__main__":
    main()
