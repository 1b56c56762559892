"""Which settings beat plain PEZ at equal wall-clock time, on benchmarks not tuned on (issue 18).

Per world and per budget (seconds per image), every method gets the same wall-clock time per
case: it runs steps until the budget is spent (`should_stop` at the deadline; today's engine has
no time budget). Methods that polish (refine / prune) search until SEARCH_SHARE of the budget,
then polish until the deadline (see run_method): the polish is inside the budget.
Methods run interleaved, case by case (in a rotating order), so the
load of a shared machine hits all alike.

Every returned prompt is re-scored independently: the CLIP cosine of the returned text,
through the model's own `encode_text`, against the image through `encode_image` (planted: the
planted text through `encode_text`). Per method it prints mean and min score, the mean gap to
plain PEZ, cases more than 0.01 below plain PEZ, stuck rates, dictionary-word share
(pez.engine.readability), words per prompt and offensive hits (prompts the new filter,
pez.engine.safety, and the old list, pez.vocab.SafetyList, would block).

Stuck: "truth" = the prompt scores more than STUCK_MARGIN below the true caption (image worlds);
"best" = more than STUCK_MARGIN below the best score any method reached on that case.

Worlds: toy (pez's toy CLIP), plain-toy (scripts/train_plain_toy.py; trained if missing),
planted (random ViT-B-32, targets = text features of 16 random whole words), patterns
(bench/worlds, development) and atelier (bench/worlds, HELD OUT: run it once, at the end).

    PYTHONPATH=. python bench/defaults.py patterns --n 6 --seconds 30
    PYTHONPATH=. python bench/defaults.py toy plain-toy --n 4 --seconds 30 --json /tmp/rows.json

The new safety filter and the "dictionary words only" vocabulary are prototyped here by
wrapping pez.vocab.Vocabulary._allowed and pez.refine.text_rejector (marker words in the
config's blocklist select them); the engine gets them in a later step.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import pez  # noqa: E402
from pez import refine as _refine  # noqa: E402
from pez import vocab as _vocab  # noqa: E402
from pez.engine.readability import dictionary_share, is_dictionary_token, prompt_words  # noqa: E402
from pez.engine.safety import WordFilter  # noqa: E402

SEARCH_SHARE = 0.75  # share of the budget that polishing methods search for (issue 18: polish <= ~25%)
STUCK_MARGIN = 0.05
WORLDS = ("toy", "plain-toy", "planted", "patterns", "atelier")
PROMPT_LEN = {"toy": 4, "plain-toy": 4, "planted": 16, "patterns": 8, "atelier": 8}

# Marker words in the blocklist select the prototypes (no vocabulary token contains them).
NEW_SAFE = "\x00new-safety"
DICTIONARY = "\x00dictionary-words"
MARKS = (NEW_SAFE, DICTIONARY)

PLAIN = dict(whole_words=False, safe=False, refine_steps=0, prune_tolerance=0.0, patience=0, blocklist=())
METHODS: dict[str, dict] = {
    "pez": PLAIN,
    "+whole_words": {**PLAIN, "whole_words": True},
    "+words_only": {**PLAIN, "words_only": True},
    "+dictionary": {**PLAIN, "blocklist": (DICTIONARY,)},
    "+safe_old": {**PLAIN, "safe": True},
    "+safe_new": {**PLAIN, "safe": True, "blocklist": (NEW_SAFE,)},
    "+refine": {**PLAIN, "refine_steps": 1000},
    "+prune": {**PLAIN, "prune_tolerance": 0.01},
    "defaults": {"patience": 0},  # today's InvertConfig(): whole_words, safe (old list), refine 50, prune 0.01
    "defaults_new_safe": {"patience": 0, "blocklist": (NEW_SAFE,)},  # the same with the new filter
}


# ---------------------------------------------------------------------------------------------
# Prototypes: the new safety filter and the dictionary-words vocabulary


def install_prototypes() -> None:
    """Wrap Vocabulary._allowed and refine.text_rejector so the marker words select the new
    safety filter (instead of the old list) and/or the dictionary-words mask. Idempotent."""
    if getattr(_vocab.Vocabulary._allowed, "_bench", False):
        return
    old_allowed, old_rejector = _vocab.Vocabulary._allowed, _refine.text_rejector

    def allowed(self, i: int, vf) -> bool:
        marks = set(vf.blocklist) & set(MARKS)
        if not marks:
            return old_allowed(self, i, vf)
        rest = tuple(w for w in vf.blocklist if w not in MARKS)
        base = dataclasses.replace(vf, blocklist=rest, safe=vf.safe and NEW_SAFE not in marks)
        if not old_allowed(self, i, base):
            return False
        text = self.texts[i]
        if NEW_SAFE in marks and vf.safe and WordFilter.default().blocks_word(text):
            return False
        return not (DICTIONARY in marks and not is_dictionary_token(text))

    def rejector(config):
        marks = set(config.blocklist) & set(MARKS)
        if NEW_SAFE not in marks or not config.safe:
            return old_rejector(config.replace(blocklist=tuple(w for w in config.blocklist if w not in MARKS)))
        plain = old_rejector(config.replace(safe=False, blocklist=tuple(w for w in config.blocklist if w not in MARKS)))
        words = WordFilter.default()
        return lambda text: plain(text) or words.blocks_text(text)

    allowed._bench = True
    _vocab.Vocabulary._allowed = allowed
    _refine.text_rejector = rejector


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


def load_world(name: str, n: int, weights_seed: int = 0, pick: list[int] | None = None):
    """(clip, cases, base config) of a world: its first n cases, or those at the indices `pick`."""
    if pick:
        n = max(pick) + 1
    from pez.inversion import image_targets, text_targets

    base = pez.InvertConfig(prompt_len=PROMPT_LEN[name], candidates=1, seed=0, report_every=10, steps=10_000)
    if name == "planted":
        from bench.quality import planted_cases

        torch.manual_seed(weights_seed)
        clip = pez.load_clip("random:ViT-B-32", device="cpu")
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
    """(result, seconds used, search steps). Plain searches run until the deadline. A method that
    polishes (refine / prune) searches until SEARCH_SHARE of the budget, then polishes its best
    prompt until the deadline: a second run starts from that prompt (`init_prompt`, prompt_len =
    its token count, so it is the exact start), takes one search step (which scores the start
    prompt itself) and polishes. As an engine with a time budget would, without one."""
    cfg = base.replace(**METHODS[method])
    start = time.perf_counter()
    deadline = start + seconds
    polishes = cfg.refine_steps > 0 or cfg.prune_tolerance > 0
    search_end = start + SEARCH_SHARE * seconds if polishes else deadline
    search = _run(clip, case, cfg.replace(refine_steps=0, prune_tolerance=0.0), search_end)
    result = search
    if polishes and search.prompt:
        length = len(_refine.text_ids(clip, search.prompt))
        polish = _run(clip, case, cfg.replace(init_prompt=search.prompt, prompt_len=length, steps=1), deadline)
        polish.stats["search_seconds"] = search.elapsed
        result = polish if polish.score >= search.score else search
        result.stats.setdefault("refine_rounds", polish.stats.get("refine_rounds", 0))
    return result, time.perf_counter() - start, search.steps_run


def _run(clip, case: Case, cfg: pez.InvertConfig, deadline: float) -> pez.InversionResult:
    last = None
    for last in pez.optimize(clip, case.targets, cfg, should_stop=lambda: time.perf_counter() > deadline):
        pass
    return last.result


def warm_up(clip, case: Case, base: pez.InvertConfig, methods: list[str]) -> None:
    """Build every method's vocabulary mask (cached per filter) and run a few steps, so that no
    method pays one-off costs inside its budget."""
    from pez.vocab import VocabFilter

    for m in methods:
        clip.vocab.mask(VocabFilter.from_config(base.replace(**METHODS[m])))
    for _ in pez.optimize(clip, case.targets, base.replace(**PLAIN, steps=20)):
        pass


def measure(world: str, args) -> list[dict]:
    clip, cases, base = load_world(world, args.n, pick=args.cases)
    methods = args.methods or list(METHODS)
    warm_up(clip, cases[0], base, methods)
    print(f"\n## {world}: {len(cases)} cases, {args.seconds:.0f} s per method per case, prompt_len {base.prompt_len}")
    rows = []
    for i, case in enumerate(cases):
        k = i % len(methods)
        order = methods[k:] + methods[:k]  # rotate: spread the load of a shared machine
        case_rows = []
        for method in order:
            res, used, steps = run_method(clip, case, method, base.replace(seed=args.seed + i), args.seconds)
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
                "offensive_new": int(WordFilter.default().blocks_text(res.prompt)),
                "offensive_old": int(_vocab.SafetyList.default().blocks_text(res.prompt)),
                "steps": steps,
                "refine_rounds": res.stats.get("refine_rounds", 0),
                "seconds": used,
                "budget": args.seconds,
            }
            case_rows.append(row)
            if not args.quiet:
                print(
                    f"  {method:18s} {score:.3f} {row['dictionary']:4.0%} {used:5.1f}s {res.steps_run:5d} st {res.prompt!r}",
                    flush=True,
                )
        best = max(r["score"] for r in case_rows)
        for r in case_rows:
            r["case_best"] = best
        rows += case_rows
        truth = f"{case.truth:.3f}" if case.truth is not None else "-"
        print(f"[{i + 1}/{len(cases)}] {case.label!r} truth {truth}", flush=True)
    print_table(world, rows, methods, args.seconds)
    return rows


def print_table(world: str, rows: list[dict], methods: list[str], seconds: float) -> None:
    plain = {r["case"]: r["score"] for r in rows if r["method"] == "pez"}
    truths = [r["truth"] for r in rows if r["method"] == methods[0] and r["truth"] is not None]
    if truths:
        print(f"true captions: mean cosine {sum(truths) / len(truths):.3f}")
    print(
        f"\n{world}, {seconds:.0f} s | method | mean | min | vs pez | cases < pez-0.01 | stuck truth | stuck best "
        "| dictionary | words | offensive new/old | search steps | s/run |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for m in methods:
        rs = [r for r in rows if r["method"] == m]
        if not rs:
            continue
        mean = lambda key, rs=rs: sum(r[key] for r in rs) / len(rs)  # noqa: E731
        gap = sum(r["score"] - plain.get(r["case"], math.nan) for r in rs) / len(rs)
        below = sum(r["score"] < plain.get(r["case"], -9) - 0.01 for r in rs)
        with_truth = [r for r in rs if r["truth"] is not None]
        stuck_truth = (
            f"{sum(r['score'] < r['truth'] - STUCK_MARGIN for r in with_truth)}/{len(with_truth)}"
            if with_truth
            else "-"
        )
        stuck_best = sum(r["score"] < r["case_best"] - STUCK_MARGIN for r in rs)
        print(
            f"| {m} | {mean('score'):.3f} | {min(r['score'] for r in rs):.3f} | {gap:+.3f} | {below}/{len(rs)} | "
            f"{stuck_truth} | {stuck_best}/{len(rs)} | {mean('dictionary'):.0%} | {mean('words'):.1f} | "
            f"{sum(r['offensive_new'] for r in rs)}/{sum(r['offensive_old'] for r in rs)} | {mean('steps'):.0f} | "
            f"{mean('seconds'):.1f} |"
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
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quiet", action="store_true", help="tables only")
    ap.add_argument("--json", default=None, help="write every row to this file")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    install_prototypes()
    print(f"machine: {machine()}\nstart: {load_line()}")
    rows = []
    for world in args.worlds:
        rows += measure(world, args)
        print(f"after {world}: {load_line()}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
