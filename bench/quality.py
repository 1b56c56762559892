"""PEZ quality on the toy world, where the right prompt of every image is known.

For N held-out renders (seeds never used in training, all colour x shape combos in turn) it
inverts each image alone with PEZ and prints:
  - the rate where the best prompt's score >= the true caption's score ("a red circle");
  - the rates where the prompt contains the right colour word, the right shape word, both,
    and both with no other colour or shape word ("clean"); words as the toy tokenizer reads
    them (pez.toy.words_in);
  - seconds per inversion.

    python bench/quality.py                       # shipped toy CLIP, 24 images, 300 steps
    python bench/quality.py --n 48 --steps 500 --prompt-len 8
    python bench/quality.py --model-dir /tmp/toy  # a toy CLIP written by `python -m pez.toy train --out`

Method comparison at equal wall-clock time: plain PEZ against each addition (whole
words, safety list, refinement, pruning) and the new defaults, on planted prompts (a random
ViT-B-32, targets = text features of 16 random whole words), the shipped toy CLIP and the plain
toy CLIP (scripts/train_plain_toy.py). Every method gets the same seconds per case, measured in
one process, methods interleaved (rotating order), so a busy shared CPU slows all alike:

    python bench/quality.py --compare planted
    python bench/quality.py --compare toy --n 24
    python bench/quality.py --compare plain-toy --model-dir ~/.cache/pez/toy_clip_plain
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

import pez
from pez import toy

QUALITY_SEED_BASE = toy.EVAL_SEED_BASE + 500_000  # held out, and apart from the zero-shot seeds


def quality_images(n: int) -> list[tuple[str, str, int]]:
    """(colour, shape, seed) of n held-out images; stepping by 7 through the 48 combos visits
    every colour and every shape evenly."""
    combos = [(c, s) for c in toy.COLOURS for s in toy.SHAPES]
    return [(*combos[(7 * i) % len(combos)], QUALITY_SEED_BASE + i) for i in range(n)]


def load_toy(model_dir: str | None) -> pez.LoadedClip:
    """The shipped toy CLIP, or one from `model_dir` (wrapped like pez.load_clip does)."""
    if model_dir is None:
        return pez.load_clip("toy", device="cpu")
    import open_clip

    from pez.models import ClipSpec

    model, preprocess = toy.create_toy_clip(model_dir)
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    return pez.LoadedClip(model, tokenizer, preprocess, ClipSpec("toy"), torch.device("cpu"), "fp32")


def evaluate(clip: pez.LoadedClip, n: int, config: pez.InvertConfig, verbose: bool = True) -> dict:
    """Invert n held-out images one by one; return the rates and seconds per run."""
    rows = []
    for colour, shape, seed in quality_images(n):
        image = toy.render(colour, shape, seed)
        start = time.perf_counter()
        res = pez.invert([image], model=clip, config=config)
        seconds = time.perf_counter() - start
        truth = pez.score_texts(clip, [toy.caption(colour, shape)], [image])[0]
        colours, shapes = toy.words_in(res.prompt)
        row = {
            "beats_truth": res.score >= truth,
            "colour": colour in colours,
            "shape": shape in shapes,
            "clean": set(colours) == {colour} and set(shapes) == {shape},
            "seconds": seconds,
        }
        rows.append(row)
        if verbose:
            mark = "ok " if row["clean"] else "~  " if row["colour"] and row["shape"] else "-- "
            print(
                f"{mark}{toy.caption(colour, shape):18s} truth {truth:.3f}  pez {res.score:.3f}  {res.prompt!r}",
                flush=True,
            )
    rate = lambda key: sum(r[key] for r in rows) / len(rows)  # noqa: E731
    return {
        "images": len(rows),
        "score_ge_truth": rate("beats_truth"),
        "colour_right": rate("colour"),
        "shape_right": rate("shape"),
        "both_right": sum(r["colour"] and r["shape"] for r in rows) / len(rows),
        "clean": rate("clean"),
        "seconds_per_run": sum(r["seconds"] for r in rows) / len(rows),
    }


# ---------------------------------------------------------------------------------------------
# Methods at equal wall-clock time

PLAIN = dict(whole_words=False, safe=False, refine_steps=0, prune_tolerance=0.0, patience=0)
SEARCH_SHARE = 0.5  # share of the budget the search gets in methods that refine afterwards
METHODS: dict[str, dict] = {
    "pez": PLAIN,
    "+whole_words": {**PLAIN, "whole_words": True},
    "+safe": {**PLAIN, "safe": True},
    "+refine": {**PLAIN, "refine_steps": 1000},
    "+prune": {**PLAIN, "prune_tolerance": pez.InvertConfig().prune_tolerance or 0.01},
    "defaults": {},  # pez.InvertConfig()'s own whole_words, safe, refine_steps, prune_tolerance
}


def _dictionary() -> set[str] | None:
    path = Path("/usr/share/dict/words")  # Debian's wamerican; absent: a single-token proxy
    if not path.is_file():
        return None
    return {w.strip().lower() for w in path.read_text(errors="ignore").splitlines() if w.strip().isalpha()}


def prompt_stats(clip: pez.LoadedClip, prompt: str, dictionary: set[str] | None) -> dict:
    """Words per prompt, share of dictionary words, offensive hits (pez.engine.vocab.SafetyList)."""
    from pez.engine.vocab import SafetyList

    words = prompt.split()
    if dictionary is not None:
        dict_like = [w.isalpha() and w.lower() in dictionary for w in words]
    else:  # a word CLIP's BPE knows whole: one token ending a word
        dict_like = [w.isalpha() and len(clip.tokenizer.encode(w)) == 1 for w in words]
    safety = SafetyList.default()
    return {
        "words": len(words),
        "dictionary": sum(dict_like) / max(len(words), 1),
        "offensive": sum(safety.blocks_word(w) for w in words),
    }


def run_method(clip, targets, method: str, base: pez.InvertConfig, seconds: float, plain_steps: int | None):
    """One run of `method` within `seconds`; returns (result, seconds used). Methods that refine
    or prune search for SEARCH_SHARE (refine) or 90% (prune only) of the steps plain PEZ ran in
    the same budget, then polish until the budget ends."""
    cfg = base.replace(**METHODS[method])
    polishes = cfg.refine_steps > 0 or cfg.prune_tolerance > 0
    if polishes:
        share = SEARCH_SHARE if cfg.refine_steps else 0.9
        cfg = cfg.replace(steps=max(1, int(share * (plain_steps or base.steps))))
    else:
        cfg = cfg.replace(steps=pez.config.BOUNDS["steps"].hi)  # the clock ends it
    start = time.perf_counter()
    stop = lambda: time.perf_counter() - start > seconds  # noqa: E731
    last = None
    for last in pez.optimize(clip, targets, cfg, should_stop=stop):
        pass
    return last.result, time.perf_counter() - start


def planted_cases(clip: pez.LoadedClip, n: int, words: int, seed: int) -> list[tuple[str, list[str]]]:
    """n prompts of `words` random safe whole words (letters, >= 3 of them) each."""
    from pez.engine.vocab import VocabFilter, vocabulary

    vocab = vocabulary(clip)
    ids = vocab.allowed_ids(VocabFilter(whole_words=True, safe=True, words_only=True)).tolist()
    pool = [i for i in ids if len(vocab.texts[i].strip()) >= 3]
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        pick = [vocab.texts[pool[j]].strip() for j in torch.randint(len(pool), (words,), generator=gen).tolist()]
        out.append((" ".join(pick), pick))
    return out


def compare(suite: str, args) -> list[dict]:
    """Rows (case, method, score, right, words, dictionary, offensive, seconds) of the comparison."""
    from pez.inversion import image_targets, run_to_end, text_targets

    dictionary = _dictionary()
    if suite == "planted":
        torch.manual_seed(args.weights_seed)  # the random ViT-B-32's weights
        clip = pez.load_clip("random:ViT-B-32", device="cpu")
        base = pez.InvertConfig(prompt_len=16, candidates=1, seed=args.seed, report_every=50)
        cases = []
        for text, words in planted_cases(clip, args.n, 16, args.seed):
            cases.append((text, text_targets(clip, [text]), lambda p, ws=words: _planted_right(p, ws)))
        calib_steps = 300
    else:
        clip = load_toy(args.model_dir)
        base = pez.InvertConfig(prompt_len=args.prompt_len, candidates=args.candidates, seed=args.seed)
        cases = []
        for colour, shape, seed in quality_images(args.n):
            right = lambda p, c=colour, s=shape: _toy_right(p, c, s)  # noqa: E731
            cases.append((toy.caption(colour, shape), image_targets(clip, [toy.render(colour, shape, seed)]), right))
        calib_steps = args.steps
    # The budget: the time plain PEZ takes for calib_steps steps on the first case (this process).
    seconds = args.seconds
    if seconds is None:
        start = time.perf_counter()
        run_to_end(pez.optimize(clip, cases[0][1], base.replace(**PLAIN, steps=calib_steps)))
        seconds = time.perf_counter() - start
    print(f"{suite}: {len(cases)} cases, {seconds:.1f} s per method per case", flush=True)
    methods = args.methods or list(METHODS)
    rows = []
    for i, (label, targets, right) in enumerate(cases):
        order = methods[i % len(methods) :] + methods[: i % len(methods)]  # rotate: spread CPU noise
        plain_steps = None
        for method in ["pez", *[m for m in order if m != "pez"]] if "pez" in methods else order:
            res, used = run_method(clip, targets, method, base.replace(seed=args.seed + i), seconds, plain_steps)
            if method == "pez":
                plain_steps = res.steps_run
            feats = pez.text_features(clip, [res.prompt])
            score = float(targets.objective(feats)[0])  # the returned text, re-encoded
            got, clean = right(res.prompt)
            row = {"case": label, "method": method, "score": score, "right": got, "clean": clean, "seconds": used}
            row.update(prompt_stats(clip, res.prompt, dictionary), steps=res.steps_run, prompt=res.prompt)
            rows.append(row)
            if not args.quiet:
                print(f"  {method:13s} {score:.3f} right {row['right']:.2f} {used:5.1f}s {res.prompt!r}", flush=True)
    _print_table(suite, rows, methods)
    return rows


def _planted_right(prompt: str, words: list[str]) -> tuple[float, float]:
    """Share of the planted words that appear among the prompt's words (twice: right, clean)."""
    got = set(prompt.lower().split())
    share = sum(w.lower() in got for w in words) / len(words)
    return share, share


def _toy_right(prompt: str, colour: str, shape: str) -> tuple[float, float]:
    """(right colour and shape named, and no other colour or shape named)."""
    colours, shapes = toy.words_in(prompt)
    right = colour in colours and shape in shapes
    return float(right), float(set(colours) == {colour} and set(shapes) == {shape})


def _print_table(suite: str, rows: list[dict], methods: list[str]) -> None:
    print(
        f"\n{suite} | method | mean score | min score | cases < pez | right | clean | words | dictionary | offensive | s/run"
    )
    plain = {r["case"]: r["score"] for r in rows if r["method"] == "pez"}
    for m in methods:
        rs = [r for r in rows if r["method"] == m]
        mean = lambda k, rs=rs: sum(r[k] for r in rs) / len(rs)  # noqa: E731
        below = sum(r["score"] < plain.get(r["case"], -1) - 1e-6 for r in rs)
        print(
            f"| {m} | {mean('score'):.3f} | {min(r['score'] for r in rs):.3f} | {below}/{len(rs)} | "
            f"{mean('right'):.0%} | {mean('clean'):.0%} | {mean('words'):.1f} | {mean('dictionary'):.0%} | "
            f"{sum(r['offensive'] for r in rs)} | {mean('seconds'):.1f} |"
        )


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=24, help="held-out images")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--prompt-len", type=int, default=4)
    ap.add_argument("--candidates", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model-dir", default=None, help="toy CLIP folder (default: the shipped one)")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: the toy model is tiny, "
        "and on a busy shared CPU more threads can make each run many times slower)",
    )
    ap.add_argument("--quiet", action="store_true", help="only the summary")
    ap.add_argument("--compare", choices=["planted", "toy", "plain-toy"], help="methods at equal wall-clock time")
    ap.add_argument("--methods", nargs="*", choices=list(METHODS), help="subset of methods to compare")
    ap.add_argument("--seconds", type=float, default=None, help="budget per method and case (default: calibrated)")
    ap.add_argument("--weights-seed", type=int, default=0, help="torch seed of the planted benchmark's ViT-B-32")
    ap.add_argument("--refine-topk", type=int, default=None, help="override pez.config.REFINE_TOPK (tuning)")
    ap.add_argument("--refine-batch", type=int, default=None, help="override pez.config.REFINE_BATCH (tuning)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from pez.engine import polish  # the refine phase reads these names from its module

    polish.REFINE_TOPK = args.refine_topk or polish.REFINE_TOPK
    polish.REFINE_BATCH = args.refine_batch or polish.REFINE_BATCH
    if args.compare:
        if args.compare == "plain-toy" and args.model_dir is None:
            args.model_dir = str(Path.home() / ".cache" / "pez" / "toy_clip_plain")
        return {"rows": compare(args.compare, args)}
    clip = load_toy(args.model_dir)
    config = pez.InvertConfig(prompt_len=args.prompt_len, steps=args.steps, candidates=args.candidates, seed=args.seed)
    summary = evaluate(clip, args.n, config, verbose=not args.quiet)
    print(
        f"toy PEZ quality ({summary['images']} held-out images, prompt_len {args.prompt_len}, "
        f"{args.steps} steps, {args.candidates} candidates, {args.threads} thread(s)):\n"
        f"  score >= true caption : {summary['score_ge_truth']:.0%}\n"
        f"  right colour word     : {summary['colour_right']:.0%}\n"
        f"  right shape word      : {summary['shape_right']:.0%}\n"
        f"  both words right      : {summary['both_right']:.0%}\n"
        f"  ... and no other      : {summary['clean']:.0%}\n"
        f"  seconds per run       : {summary['seconds_per_run']:.1f}"
    )
    return summary


if __name__ == "__main__":
    main()
