"""The joint search (one prompt for two CLIPs, as for SDXL) against searching one CLIP only, at equal time.

SDXL reads a prompt through CLIP ViT-L/14 (OpenAI) and OpenCLIP ViT-bigG/14, which share one BPE
vocabulary. pez's joint search (pez.models.JointClip, pez.engine.optim) finds one prompt scored in
both: objective = w * cos_1 + (1 - w) * cos_2. This script measures it on planted prompts in two
random-weight text towers with the same tokenizer: tower 1 is ViT-L-14 (QuickGELU, as OpenAI's)
and tower 2 is --second (default ViT-H-14: larger and slower than tower 1, as bigG is; ViT-bigG-14
itself works too, at ~3x the time per step). A prompt of random whole words is "planted": its text
features in each tower are the targets. With --overlap 1 both towers get the same planted text
(their optima agree); with --overlap 0.5 tower 2's planted text shares only half of the words
(the optima conflict and the joint prompt must compromise).

Each case runs every method for the same wall-clock seconds (the search alone, through
pez.optimize with the product's defaults: whole words, safe vocabulary, the 'auto' precision,
one candidate; refinement off, as it is not time-bound), interleaved in one process in rotating
order, so a busy shared CPU slows all alike: joint at each --weights w, tower 1 only, tower 2 only.
Every returned prompt is decoded and scored honestly in BOTH towers (re-tokenised text through each
model's own encode_text). Goal (issue 17): the joint prompt within 0.02 of each single-tower prompt
in that tower's space, and above both on the mean. A row of random prompts shows where the cosine
scale starts (random towers compress it).

    python bench/joint.py                                   # 8 cases, 60 s per method, agreeing targets
    python bench/joint.py --overlap 0.5 --weights 0.5 0.6   # conflicting targets, two joint weights
    python bench/joint.py --n 2 --seconds 10                # quick

Towers are built text-only (open_clip CLIP with the architecture's text config and a tiny vision
tower: no images are encoded), on the CPU, one torch thread.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

import pez
from pez.engine import accel
from pez.engine.features import text_features
from pez.engine.optim import Targets
from pez.engine.vocab import VocabFilter, clean_text, vocabulary
from pez.models import ClipSpec, JointClip, LoadedClip

TINY_VISION = {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16}


def text_tower(arch: str, seed: int, quick_gelu: bool = False) -> LoadedClip:
    """A random-weight open_clip CLIP with `arch`'s text tower (and a tiny vision tower), CPU fp32."""
    import open_clip

    cfg = open_clip.get_model_config(arch)
    torch.manual_seed(seed)
    model = open_clip.model.CLIP(cfg["embed_dim"], TINY_VISION, cfg["text_cfg"], quick_gelu=quick_gelu)
    model.eval().requires_grad_(False)
    tokenizer = open_clip.get_tokenizer(arch)
    preprocess = open_clip.image_transform(TINY_VISION["image_size"], is_train=False)
    return LoadedClip(model, tokenizer, preprocess, ClipSpec("random", arch), torch.device("cpu"), "fp32")


def planted(clip: LoadedClip, mask, n: int, words: int, seed: int, overlap: float) -> list[tuple[str, str]]:
    """n pairs (tower 1's planted text, tower 2's): `words` random allowed whole words each, the first
    round(overlap * words) of them shared, the rest drawn separately for tower 2."""
    vocab = vocabulary(clip)
    pool = [vocab.texts[i].strip() for i in torch.nonzero(mask == 0).flatten().tolist()]
    pool = [w for w in pool if w.isalpha() and len(w) >= 3]
    gen = torch.Generator().manual_seed(seed)
    shared = round(overlap * words)
    out = []
    for _ in range(n):
        a = [pool[j] for j in torch.randint(len(pool), (words,), generator=gen).tolist()]
        b = a[:shared] + [pool[j] for j in torch.randint(len(pool), (words - shared,), generator=gen).tolist()]
        out.append((" ".join(a), " ".join(b)))
    return out


def search(clip, targets: Targets, prompt_len: int, seconds: float, seed: int) -> tuple[str, int]:
    """(prompt, steps) of a PEZ search stopped after `seconds`."""
    config = pez.InvertConfig(
        prompt_len=prompt_len, steps=10_000, seed=seed, refine_steps=0, prune_tolerance=0.0, report_every=10
    )
    deadline = time.perf_counter() + seconds
    *_, last = pez.optimize(clip, targets, config, should_stop=lambda: time.perf_counter() > deadline)
    return last.result.prompt, last.result.steps_run


def honest(clips, goals, text: str) -> list[float]:
    """Cosine of the text (re-tokenised, each model's own encode_text) to each tower's planted target."""
    return [float(text_features(c, [text])[0] @ g) for c, g in zip(clips, goals)]


def random_scores(clips, goals, mask, prompt_len: int, seed: int, n: int = 8) -> list[float]:
    """Mean honest score in each tower of n random prompts of allowed tokens (the scale's floor)."""
    allowed = torch.nonzero(mask == 0).flatten()
    gen = torch.Generator().manual_seed(seed + 10_000)
    texts = [
        clean_text(
            clips[0].tokenizer.decode(allowed[torch.randint(len(allowed), (prompt_len,), generator=gen)].tolist())
        )
        for _ in range(n)
    ]
    scores = [honest(clips, goals, t) for t in texts]
    return [statistics.fmean(s[k] for s in scores) for k in range(len(clips))]


def summary(rows: list[dict], methods: list[str], first: str, second: str, tol: float) -> None:
    print(f"\n| method | tower 1 ({first}) | tower 2 ({second}) | mean | steps |")
    print("|---|---|---|---|---|")
    by = {m: [r for r in rows if r["method"] == m] for m in ["random prompt", *methods]}
    for m, rs in by.items():
        s1, s2 = statistics.fmean(r["s1"] for r in rs), statistics.fmean(r["s2"] for r in rs)
        steps = f"{statistics.fmean(r['steps'] for r in rs):.0f}" if rs[0]["steps"] else "–"
        print(f"| {m} | {s1:.3f} | {s2:.3f} | {(s1 + s2) / 2:.3f} | {steps} |")
    cases = sorted({r["case"] for r in rows})
    for m in methods:
        if not m.startswith("joint"):
            continue
        d1 = [by[m][c]["s1"] - by["tower 1 only"][c]["s1"] for c in cases]
        d2 = [by[m][c]["s2"] - by["tower 2 only"][c]["s2"] for c in cases]
        mean = [(by[m][c]["s1"] + by[m][c]["s2"]) / 2 for c in cases]
        best_single = [
            max((by[o][c]["s1"] + by[o][c]["s2"]) / 2 for o in ("tower 1 only", "tower 2 only")) for c in cases
        ]
        print(
            f"{m}: vs tower 1 only in tower 1 {statistics.fmean(d1):+.3f} (worst {min(d1):+.3f}), "
            f"vs tower 2 only in tower 2 {statistics.fmean(d2):+.3f} (worst {min(d2):+.3f}); "
            f"within {tol} in both spaces in {sum(a >= -tol and b >= -tol for a, b in zip(d1, d2))}/{len(cases)} cases; "
            f"mean above both single-tower prompts' in {sum(j > b for j, b in zip(mean, best_single))}/{len(cases)}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--first", default="ViT-L-14", help="tower 1 (QuickGELU, as OpenAI's)")
    ap.add_argument("--second", default="ViT-H-14", help="tower 2's text config (ViT-bigG-14: SDXL's own)")
    ap.add_argument("--n", type=int, default=8, help="planted prompts (cases)")
    ap.add_argument("--words", type=int, default=8)
    ap.add_argument("--prompt-len", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=60.0, help="per method and case")
    ap.add_argument("--weights", type=float, nargs="+", default=[0.5], help="w (tower 1) of the joint runs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--overlap", type=float, default=1.0, help="share of planted words the towers' targets have in common"
    )
    ap.add_argument("--tolerance", type=float, default=0.02)
    args = ap.parse_args()
    torch.set_num_threads(1)

    t0 = time.perf_counter()
    clips = [text_tower(args.first, 0, quick_gelu=True), text_tower(args.second, 1)]
    mask = vocabulary(clips[0]).mask(VocabFilter())
    print(
        f"towers: {args.first} text (width {clips[0].model.token_embedding.weight.shape[1]}), {args.second} text "
        f"(width {clips[1].model.token_embedding.weight.shape[1]}); {int((mask == 0).sum())} allowed tokens; "
        f"search precision {accel.search_precision('auto', clips[1].device, 1024)}; "
        f"built in {time.perf_counter() - t0:.0f} s",
        flush=True,
    )
    methods = [(f"joint w={w:g}", w) for w in args.weights] + [("tower 1 only", 1.0), ("tower 2 only", 0.0)]

    def space(w: float):
        return JointClip(tuple(clips), (w, 1 - w)) if 0 < w < 1 else clips[0 if w == 1 else 1]

    empty = [torch.zeros(0, c.feature_dim) for c in clips]
    for w in {w for _, w in methods}:  # warm-up: vocabularies, towers, layout timing
        clip = space(w)
        goal = torch.nn.functional.normalize(torch.randn(1, clip.feature_dim), dim=-1)
        search(clip, Targets(goal, torch.zeros(0, clip.feature_dim)), args.prompt_len, 2.0, 0)
    rows = []
    for case, texts in enumerate(planted(clips[0], mask, args.n, args.words, args.seed, args.overlap)):
        goals = [text_features(c, [t])[0] for c, t in zip(clips, texts)]  # (D_t,) unit
        base = random_scores(clips, goals, mask, args.prompt_len, args.seed + case)
        rows.append({"case": case, "method": "random prompt", "s1": base[0], "s2": base[1], "steps": 0})
        print(f"case {case}: planted {texts[0]!r}" + (f" / {texts[1]!r}" if texts[1] != texts[0] else ""), flush=True)
        order = methods[case % len(methods) :] + methods[: case % len(methods)]
        for name, w in order:
            clip = space(w)
            if isinstance(clip, JointClip):
                targets = Targets(clip.join([g[None] for g in goals]), clip.join(empty))
            else:
                k = clips.index(clip)
                targets = Targets(goals[k][None], empty[k])
            prompt, steps = search(clip, targets, args.prompt_len, args.seconds, args.seed + case)
            s = honest(clips, goals, prompt)
            rows.append({"case": case, "method": name, "s1": s[0], "s2": s[1], "steps": steps})
            print(
                f"  {name:13s} tower 1 {s[0]:.3f}  tower 2 {s[1]:.3f}  mean {(s[0] + s[1]) / 2:.3f}  {steps:4d} steps"
                f"  {prompt!r}",
                flush=True,
            )
    summary(rows, [m for m, _ in methods], args.first, args.second, args.tolerance)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    load = os.getloadavg()[0]
    print(f"peak RSS {rss:.2f} GiB; total {time.perf_counter() - t0:.0f} s; load average at the end {load:.1f}")


if __name__ == "__main__":
    main()
