"""Readable prompts at equal wall-clock time (issue 22): plain PEZ, max score, readable and parts.

Per world, every method gets the same wall-clock time per case through the engine's time budget
(`InvertConfig.time_budget`); methods run interleaved case by case in a rotating order, so the
load of a shared machine hits all alike (the load average is printed per case). Cases and the
independent re-score come from bench/defaults.py (the text through the model's own encode_text
against the image through encode_image; planted: against the planted text).

Per method it prints: mean and min score; dictionary share (pez.engine.readability); junk chunks
(words with no letter); repeated words; words per prompt; noise share (words whose removal
changes the independent score by less than NOISE_DROP); "concepts" (image worlds: the share of
prompts that name the true value of every slot (toy: colour and shape; patterns: pattern,
colour, object, ground) and no other value of the same slot, words matched whole, a multi-word
value by its last word); offensive hits (pez.engine.safety); and in the toy world the
regenerated similarity: the toy generator (pez.toy.toy_generate, which draws the colour and shape
a prompt names) draws the prompt with REGEN_SEEDS seeds and the toy CLIP's image-image cosine to
the target is averaged ("regen"), plus "regen-pick": the same when the final prompt is chosen
among the result's top_k by that regenerated similarity instead of by score.

Methods: pez (plain PEZ: every token, no polish), max-score (the style: today's defaults),
readable (the style), readable-tol* (its prune tolerance), dictionary (max-score's polish with
dictionary words only), prune (max-score with the old cumulative prune at 0.01).

    PYTHONPATH=. python bench/readable.py toy patterns --n 8 --seconds 10
    PYTHONPATH=. python bench/readable.py planted --n 4 --seconds 20 --methods pez max-score readable
    PYTHONPATH=. python bench/readable.py toy --held-out --n 8 --seconds 8   # once, after the design
    PYTHONPATH=. python bench/readable.py patterns --cases 24 25 26 27 28 29 --seconds 8   # held out too
"""

from __future__ import annotations

import argparse
import json
import math
import os
import string
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
import torch.nn.functional as F

import pez
import pez.toy
from bench.defaults import PLAIN, Case, encode_image, encode_text, load_line, load_world, machine
from pez.engine.readability import dictionary_share, prompt_words, repeated_words
from pez.engine.safety import WordFilter

NOISE_DROP = 0.002  # a word whose removal moves the score less than this carries nothing
REGEN_SEEDS = (0, 1)
HELD_OUT_SEED = 2_000_000_000  # toy renders for the held-out set (never used before issue 22's design)

METHODS: dict[str, dict] = {
    "pez": {**PLAIN, "prompt_style": "custom"},
    "max-score": {"prompt_style": "max-score"},
    "readable": {"prompt_style": "readable"},
    "readable-tol0.01": {"prompt_style": "readable", "prune_tolerance": 0.01},
    "readable-tol0.02": {"prompt_style": "readable", "prune_tolerance": 0.02},
    "dictionary": {"prompt_style": "custom", "dictionary_words": True},
    "prune": {"prompt_style": "custom", "prune_tolerance": 0.01},
}


# ---------------------------------------------------------------------------------------------
# Measures of one prompt


@torch.no_grad()
def scores_of(clip, texts: list[str], reference: torch.Tensor) -> list[float]:
    ids = clip.tokenizer(texts).to(clip.device)
    feats = F.normalize(clip.model.encode_text(ids).float(), dim=-1)
    return (feats @ reference).tolist()


def noise_share(clip, prompt: str, reference: torch.Tensor) -> float:
    """Share of the prompt's words whose removal changes its independent score by < NOISE_DROP."""
    words = prompt.split()
    if len(words) < 2:
        return 0.0
    texts = [prompt] + [" ".join(words[:i] + words[i + 1 :]) for i in range(len(words))]
    full, *rest = scores_of(clip, texts, reference)
    return sum(full - s < NOISE_DROP for s in rest) / len(words)


def slot_values(world: str) -> dict[str, tuple[str, ...]]:
    if world == "toy":
        return {"colour": pez.toy.COLOURS, "shape": pez.toy.SHAPES}
    from bench.worlds import get_world

    return get_world(world).slots


def _key(value: str) -> str:
    return value.split()[-1].lower()


def concepts_right(prompt: str, caption: str, slots: dict[str, tuple[str, ...]]) -> bool:
    """Every slot's true value named and no other value of that slot (words matched whole)."""
    words = {w.strip(string.punctuation).lower() for w in prompt.split()}
    truth = {w.strip(string.punctuation).lower() for w in caption.split()}
    for values in slots.values():
        named = {_key(v) for v in values if _key(v) in words}
        true = {_key(v) for v in values if _key(v) in truth}
        if named != true:
            return False
    return True


@torch.no_grad()
def regen_similarity(clip, prompt: str, reference: torch.Tensor) -> float:
    """Toy world: mean image-image cosine of the toy generator's drawings of `prompt` to the target."""
    sims = [float(encode_image(clip, img) @ reference) for s in REGEN_SEEDS for img in pez.toy.toy_generate(prompt, s)]
    return sum(sims) / len(sims)


# ---------------------------------------------------------------------------------------------
# The runs


def held_out_toy(n: int):
    """n toy images from render seeds never used before (HELD_OUT_SEED on), combos stepped by 5."""
    from bench.quality import load_toy
    from pez.inversion import image_targets

    clip = load_toy(None)
    combos = [(c, s) for c in pez.toy.COLOURS for s in pez.toy.SHAPES]
    cases = []
    for i in range(n):
        c, s = combos[(5 * i + 3) % len(combos)]
        image = pez.toy.render(c, s, HELD_OUT_SEED + i)
        ref = encode_image(clip, image)
        caption = pez.toy.caption(c, s)
        cases.append(Case(caption, image_targets(clip, [image]), ref, float(ref @ encode_text(clip, caption))))
    base = pez.InvertConfig(prompt_len=16, candidates=1, seed=0, report_every=10, steps=10_000)
    return clip, cases, base


def run(clip, case: Case, method: str, base: pez.InvertConfig, seconds: float):
    cfg = base.replace(**METHODS[method], time_budget=seconds)
    last = None
    for last in pez.optimize(clip, case.targets, cfg):
        pass
    return last.result


def measure(world: str, args) -> list[dict]:
    if args.held_out:
        clip, cases, base = held_out_toy(args.n)
    else:
        clip, cases, base = load_world(world, args.n, pick=args.cases)
        base = base.replace(prompt_len=16)  # the product's default length: the style decides the rest
    methods = args.methods
    slots = slot_values(world) if world != "planted" else None
    for m in methods:  # build each method's vocabulary mask before any budget runs
        from pez.engine.vocab import VocabFilter, vocabulary

        vocabulary(clip).mask(VocabFilter.from_config(base.replace(**METHODS[m]).resolved()))
    for _ in pez.optimize(clip, cases[0].targets, base.replace(**METHODS["pez"], steps=20)):
        pass
    name = f"{world}{' held out' if args.held_out else ''}"
    print(f"\n## {name}: {len(cases)} cases, {args.seconds:.0f} s per method per case, prompt_len {base.prompt_len}")
    words = WordFilter.default()
    rows = []
    for i, case in enumerate(cases):
        k = i % len(methods)
        for method in methods[k:] + methods[:k]:
            res = run(clip, case, method, base.replace(seed=args.seed + i), args.seconds)
            p = res.prompt
            score = scores_of(clip, [p], case.reference)[0] if p else math.nan
            ws = prompt_words(p)
            row = {
                "world": name,
                "case": case.label,
                "method": method,
                "prompt": p,
                "score": score,
                "dictionary": dictionary_share(p),
                "junk": sum(not any(c.isalpha() for c in w) for w in ws),
                "repeats": repeated_words(p),
                "words": len(ws),
                "noise": noise_share(clip, p, case.reference),
                "concepts": concepts_right(p, case.label, slots) if slots else None,
                "offensive": int(words.blocks_text(p)),
                "steps": res.steps_run,
                "seconds": res.elapsed,
            }
            if world == "toy":
                row["regen"] = regen_similarity(clip, p, case.reference)
                picks = [(regen_similarity(clip, c.prompt, case.reference), c.prompt) for c in res.top_k]
                row["regen_pick"], row["regen_pick_prompt"] = max(picks)
            rows.append(row)
            if not args.quiet:
                extra = f" regen {row['regen']:.3f}" if "regen" in row else ""
                print(f"  {method:17s} {score:.3f} {res.steps_run:5d} st {res.elapsed:5.1f}s{extra} {p!r}", flush=True)
        print(f"[{i + 1}/{len(cases)}] {case.label!r} ({load_line()})", flush=True)
    table(name, rows, methods)
    return rows


def table(name: str, rows: list[dict], methods: list[str]) -> None:
    print(
        f"\n{name} | method | mean | min | dictionary | junk | repeats | words | noise | concepts | offensive "
        "| regen | regen-pick | steps | s/run |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for m in methods:
        rs = [r for r in rows if r["method"] == m]
        if not rs:
            continue

        def mean(key, rs=rs):
            vals = [r[key] for r in rs if r.get(key) is not None]
            return sum(vals) / len(vals) if vals else math.nan

        conc = [r["concepts"] for r in rs if r["concepts"] is not None]
        conc_s = f"{sum(conc)}/{len(conc)}" if conc else "-"
        regen = f"{mean('regen'):.3f}" if "regen" in rs[0] else "-"
        pick = f"{mean('regen_pick'):.3f}" if "regen" in rs[0] else "-"
        print(
            f"| {m} | {mean('score'):.3f} | {min(r['score'] for r in rs):.3f} | {mean('dictionary'):.0%} | "
            f"{sum(r['junk'] for r in rs)} | {sum(r['repeats'] for r in rs)} | {mean('words'):.1f} | "
            f"{mean('noise'):.0%} | {conc_s} | {sum(r['offensive'] for r in rs)} | {regen} | {pick} | "
            f"{mean('steps'):.0f} | {mean('seconds'):.1f} |"
        )


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("worlds", nargs="+", choices=("toy", "patterns", "atelier", "weather", "planted"))
    ap.add_argument("--n", type=int, default=8, help="cases per world")
    ap.add_argument("--seconds", type=float, default=10.0, help="wall-clock budget per method per case")
    ap.add_argument("--methods", nargs="*", choices=list(METHODS), default=["pez", "max-score", "readable"])
    ap.add_argument("--held-out", action="store_true", help="toy: the held-out renders (measure once)")
    ap.add_argument("--cases", type=int, nargs="*", help="indices of a world's cases (default: the first n)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--json", default=None, help="write every row to this file")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"machine: {machine()}\nstart: {load_line()}")
    rows = []
    for world in args.worlds:
        rows += measure(world, args)
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
