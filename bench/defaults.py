"""Which settings beat plain PEZ at equal wall-clock time, on benchmarks not tuned on (issue 18).

Per world and per budget (seconds per image), every method gets the same wall-clock time per
case through the engine's own time budget (`InvertConfig.time_budget`, pez.engine.budget): the
search runs until its share of the budget (all of it without a polish), refinement and pruning
take the rest. Methods run interleaved, case by case (in a rotating order), so the load of a
shared machine hits all alike; the load average is printed before and after each world.

Every returned prompt is re-scored independently: the CLIP cosine of the returned text, through
the model's own `encode_text`, against the image through `encode_image` (planted: the planted
text through `encode_text`). Per method it prints mean and min score, the mean gap to plain PEZ
with its standard error, cases more than 0.01 below plain PEZ, stuck rates, dictionary-word share
(pez.engine.readability), words per prompt and offensive hits (prompts pez.engine.safety blocks).

Stuck: "truth" = the prompt scores more than STUCK_MARGIN below the true caption (image worlds);
"best" = more than STUCK_MARGIN below the best score any method reached on that case.

Worlds: toy (pez's toy CLIP), plain-toy (scripts/train_plain_toy.py; trained if missing),
planted (random ViT-B-32, or --planted-arch, targets = text features of 16 random whole words),
patterns (bench/worlds, development), atelier (bench/worlds; was held out, now used) and weather
(bench/worlds, HELD OUT: run it once, at the end, with the final defaults).

    PYTHONPATH=. python bench/defaults.py patterns --n 6 --seconds 30
    PYTHONPATH=. python bench/defaults.py toy plain-toy --n 4 --seconds 30 --json /tmp/rows.json
    PYTHONPATH=. python bench/defaults.py weather --n 8 --methods pez defaults readable
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
import torch.nn.functional as F

import pez
from pez.engine.readability import dictionary_share, prompt_words
from pez.engine.safety import WordFilter

STUCK_MARGIN = 0.05
WORLDS = ("toy", "plain-toy", "planted", "patterns", "atelier", "weather")
PROMPT_LEN = {"toy": 4, "plain-toy": 4, "planted": 16, "patterns": 8, "atelier": 8, "weather": 8}

PLAIN = dict(whole_words=False, safe=False, dictionary_words=False, refine_steps=0, prune_tolerance=0.0)
METHODS: dict[str, dict] = {
    "pez": PLAIN,
    "+whole_words": {**PLAIN, "whole_words": True},
    "+words_only": {**PLAIN, "words_only": True},
    "+dictionary": {**PLAIN, "dictionary_words": True},
    "+safe": {**PLAIN, "safe": True},
    "+refine": {**PLAIN, "refine_steps": 1000},
    "+prune": {**PLAIN, "prune_tolerance": 0.01},
    "defaults": {},  # pez.InvertConfig()'s own settings
    "readable": {"dictionary_words": True},  # the defaults with the readable mode
}


# ---------------------------------------------------------------------------------------------
# Worlds and cases


@dataclass
class Case:
    label: str  # the true caption (or planted text)
    targets: object  # pez Targets
    reference: torch.Tensor  # (D,) unit feature the independent re-score compares against
    truth: float | None  # the true caption's cosine (None for planted: the target is the text)


@torch.no_grad()
def encode_text(clip, text: str) -> torch.Tensor:
    """(D,) unit feature of `text` through the model's own encode_text."""
    ids = clip.tokenizer([text]).to(clip.device)
    return F.normalize(clip.model.encode_text(ids).float(), dim=-1)[0]


@torch.no_grad()
def encode_image(clip, image) -> torch.Tensor:
    x = clip.preprocess(image)[None].to(clip.device)
    return F.normalize(clip.model.encode_image(x).float(), dim=-1)[0]


def load_world(name: str, n: int, weights_seed: int = 0, pick: list[int] | None = None, planted_arch: str = "ViT-B-32"):
    """(clip, cases, base config) of a world: its first n cases, or those at the indices `pick`."""
    if pick:
        n = max(pick) + 1
    from pez.inversion import image_targets, text_targets

    base = pez.InvertConfig(prompt_len=PROMPT_LEN[name], candidates=1, seed=0, report_every=10, steps=10_000)
    if name == "planted":
        from bench.quality import planted_cases

        torch.manual_seed(weights_seed)
        clip = pez.load_clip(f"random:{planted_arch}", device="cpu")
        cases = [
            Case(text, text_targets(clip, [text]), encode_text(clip, text), None)
            for text, _ in planted_cases(clip, n, 16, 0)
        ]
        return clip, [cases[i] for i in pick] if pick else cases, base
    if name in ("toy", "plain-toy"):
        from bench.quality import load_toy, quality_images
        from pez import toy

        clip = load_toy(None if name == "toy" else str(plain_toy_dir()))
        pairs = [(toy.render(c, s, seed), toy.caption(c, s)) for c, s, seed in quality_images(n)]
    else:
        from bench.worlds import get_world

        world = get_world(name)
        clip = pez.load_clip(world.model_spec, device="cpu")
        pairs = [(world.render(lb, seed), world.caption(lb)) for lb, seed in world.eval_cases(n)]
    pairs = [pairs[i] for i in pick] if pick else pairs
    cases = []
    for image, caption in pairs:
        ref = encode_image(clip, image)
        cases.append(Case(caption, image_targets(clip, [image]), ref, float(ref @ encode_text(clip, caption))))
    return clip, cases, base


def plain_toy_dir() -> Path:
    out = Path.home() / ".cache" / "pez" / "toy_clip_plain"
    if not (out / "open_clip_model.safetensors").is_file():
        script = Path(__file__).resolve().parent.parent / "scripts" / "train_plain_toy.py"
        subprocess.run([sys.executable, str(script), "--out", str(out)], check=True)
    return out


# ---------------------------------------------------------------------------------------------
# One run of a method within a budget


def run_method(clip, case: Case, method: str, base: pez.InvertConfig, seconds: float):
    """(result, wall seconds) of one run of `method` with the engine's time budget `seconds`."""
    cfg = base.replace(**METHODS[method], time_budget=seconds)
    start = time.perf_counter()
    last = None
    for last in pez.optimize(clip, case.targets, cfg):
        pass
    return last.result, time.perf_counter() - start


def warm_up(clip, case: Case, base: pez.InvertConfig, methods: list[str]) -> None:
    """Build every method's vocabulary mask (cached per filter) and run a few steps, so that no
    method pays one-off costs inside its budget."""
    from pez.engine.vocab import VocabFilter, vocabulary

    for m in methods:
        vocabulary(clip).mask(VocabFilter.from_config(base.replace(**METHODS[m])))
    for _ in pez.optimize(clip, case.targets, base.replace(**PLAIN, steps=20)):
        pass


def measure(world: str, args) -> list[dict]:
    clip, cases, base = load_world(world, args.n, pick=args.cases, planted_arch=args.planted_arch)
    methods = args.methods or list(METHODS)
    warm_up(clip, cases[0], base, methods)
    print(f"\n## {world}: {len(cases)} cases, {args.seconds:.0f} s per method per case, prompt_len {base.prompt_len}")
    words = WordFilter.default()
    rows = []
    for i, case in enumerate(cases):
        k = i % len(methods)
        order = methods[k:] + methods[:k]  # rotate: spread the load of a shared machine
        case_rows = []
        for method in order:
            res, used = run_method(clip, case, method, base.replace(seed=args.seed + i), args.seconds)
            score = float(encode_text(clip, res.prompt) @ case.reference) if res.prompt else float("nan")
            row = {
                "world": world,
                "case": case.label,
                "method": method,
                "score": score,
                "engine_score": res.score,
                "truth": case.truth,
                "prompt": res.prompt,
                "words": len(prompt_words(res.prompt)),
                "dictionary": dictionary_share(res.prompt),
                "offensive": int(words.blocks_text(res.prompt)),
                "steps": res.steps_run,
                "refine_rounds": res.stats.get("refine_rounds", 0),
                "search_seconds": res.stats.get("search_seconds", math.nan),
                "seconds": used,
                "budget": args.seconds,
            }
            case_rows.append(row)
            if not args.quiet:
                print(
                    f"  {method:14s} {score:.3f} {row['dictionary']:4.0%} {used:5.1f}s {res.steps_run:5d} st "
                    f"{row['refine_rounds']:4d} r {res.prompt!r}",
                    flush=True,
                )
        best = max(r["score"] for r in case_rows)
        for r in case_rows:
            r["case_best"] = best
        rows += case_rows
        truth = f"{case.truth:.3f}" if case.truth is not None else "-"
        print(f"[{i + 1}/{len(cases)}] {case.label!r} truth {truth} ({load_line()})", flush=True)
    print_table(world, rows, methods, args.seconds)
    return rows


def print_table(world: str, rows: list[dict], methods: list[str], seconds: float) -> None:
    plain = {r["case"]: r["score"] for r in rows if r["method"] == "pez"}
    truths = [r["truth"] for r in rows if r["method"] == methods[0] and r["truth"] is not None]
    if truths:
        print(f"true captions: mean cosine {sum(truths) / len(truths):.3f}")
    print(
        f"\n{world}, {seconds:.0f} s | method | mean | min | vs pez (± s.e.) | worst case | cases < pez-0.01 "
        "| stuck truth | stuck best | dictionary | words | offensive | search steps | refine rounds | s/run |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for m in methods:
        rs = [r for r in rows if r["method"] == m]
        if not rs:
            continue
        mean = lambda key, rs=rs: sum(r[key] for r in rs) / len(rs)  # noqa: E731
        gaps = [r["score"] - plain[r["case"]] for r in rs if r["case"] in plain]
        gap = sum(gaps) / len(gaps) if gaps else math.nan
        se = (sum((g - gap) ** 2 for g in gaps) / (len(gaps) - 1) / len(gaps)) ** 0.5 if len(gaps) > 1 else math.nan
        below = sum(g < -0.01 for g in gaps)
        with_truth = [r for r in rs if r["truth"] is not None]
        stuck_truth = (
            f"{sum(r['score'] < r['truth'] - STUCK_MARGIN for r in with_truth)}/{len(with_truth)}"
            if with_truth
            else "-"
        )
        stuck_best = sum(r["score"] < r["case_best"] - STUCK_MARGIN for r in rs)
        print(
            f"| {m} | {mean('score'):.3f} | {min(r['score'] for r in rs):.3f} | {gap:+.3f} ± {se:.3f} | "
            f"{min(gaps, default=math.nan):+.3f} | {below}/{len(rs)} | {stuck_truth} | {stuck_best}/{len(rs)} | "
            f"{mean('dictionary'):.0%} | {mean('words'):.1f} | {sum(r['offensive'] for r in rs)}/{len(rs)} | "
            f"{mean('steps'):.0f} | {mean('refine_rounds'):.0f} | {mean('seconds'):.1f} |"
        )


def machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), "?")
    except OSError:
        model = "?"
    return f"{model}, {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} thread(s)"


def load_line() -> str:
    one, five, fifteen = os.getloadavg()
    shared = "shared (other processes running)" if one > 1.2 else "quiet"
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f}: {shared}"


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("worlds", nargs="+", choices=WORLDS)
    ap.add_argument("--n", type=int, default=6, help="cases per world")
    ap.add_argument("--seconds", type=float, default=30.0, help="wall-clock budget per method per case")
    ap.add_argument("--cases", type=int, nargs="*", help="indices of the cases to run (default: the first n)")
    ap.add_argument("--methods", nargs="*", choices=list(METHODS), help="default: all")
    ap.add_argument("--planted-arch", default="ViT-B-32", help="open_clip architecture of the planted benchmark")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quiet", action="store_true", help="tables only")
    ap.add_argument("--json", default=None, help="write every row to this file")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"machine: {machine()}\nstart: {load_line()}")
    print("defaults:", {k: v for k, v in vars(pez.InvertConfig()).items() if k in (*PLAIN, "words_only")})
    rows = []
    for world in args.worlds:
        rows += measure(world, args)
        print(f"after {world}: {load_line()}", flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
