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

Settings compared at equal wall-clock time (plain PEZ against each option and the defaults, on the
toy, plain toy, planted and bench/worlds benchmarks) are measured by bench/defaults.py;
`--compare WORLD` here runs it.

    python bench/quality.py --compare planted --seconds 30
"""

from __future__ import annotations

import argparse
import os
import time

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
# The planted benchmark's prompts (bench/defaults.py)


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
    ap.add_argument("--compare", choices=["planted", "toy", "plain-toy"], help="bench/defaults.py on this benchmark")
    ap.add_argument("--seconds", type=float, default=30.0, help="--compare: budget per method and case")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.compare:
        from bench.defaults import main as compare

        return {"rows": compare([args.compare, "--n", str(args.n), "--seconds", str(args.seconds)])}
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
