"""Command line: `python -m pez {invert,distill,concatenate,style,batch,models,generate,replica} ...`.

Flags for the PEZ settings are built from `pez.config.InvertConfig` and its bounds, so defaults
live in one place. Progress is a tqdm bar on stderr showing the current best; the result goes
to stdout as text, or as JSON with --json. Errors are one clear line and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import sys
from collections.abc import Iterator

from . import commands
from . import config as C
from .config import InvertConfig
from .errors import USER_ERRORS, describe_error
from .models import DEFAULT_PAIR, PAIRS, list_pairs

HELP = {
    "prompt_len": "tokens in the prompt",
    "steps": "optimisation steps",
    "lr": "AdamW learning rate",
    "weight_decay": "AdamW weight decay",
    "batch_size": "target images per step",
    "candidates": "prompts optimised in parallel; the best wins",
    "top_k": "distinct prompts to return",
    "seed": "random seed (-1: draw one)",
    "report_every": "steps between progress updates",
    "negative_weight": "weight of negative targets in the loss",
    "blocklist": "words never to use (every token containing one is excluded)",
    "ascii_only": "only plain ASCII tokens",
    "words_only": "only tokens made of letters (most readable)",
    "precision": "precision of the gradient pass (scores stay fp32)",
    "whole_words": "only tokens that end a word: the prompt is separate words, no glued pieces",
    "safe": "exclude the default offensive/sexual word list (--blocklist adds to it)",
    "refine_steps": "rounds of gradient-guided token swaps after the search (0: off)",
    "prune_tolerance": "drop tokens whose removal costs less than this score (0: off)",
    "patience": "stop the search after this many steps without a better score (0: off)",
    "init_prompt": "start from this text instead of random tokens",
}


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def add_invert_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        "-m",
        default=DEFAULT_PAIR,
        help=f"pair name {list_pairs()} or CLIP spec (ARCH/TAG, ARCH@FILE, folder, toy)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    for f in dataclasses.fields(InvertConfig):
        flag = "--" + f.name.replace("_", "-")
        if isinstance(f.default, bool):  # --whole-words / --no-whole-words
            p.add_argument(
                flag,
                action=argparse.BooleanOptionalAction,
                default=f.default,
                help=f"{HELP[f.name]} (default %(default)s)",
            )
        elif f.name == "precision":
            p.add_argument(flag, choices=C.PRECISIONS, default=f.default, help=f"{HELP[f.name]} (default {f.default})")
        elif isinstance(f.default, str):
            p.add_argument(flag, default=f.default, metavar="TEXT", help=HELP[f.name])
        elif f.name == "blocklist":
            p.add_argument(flag, nargs="*", default=[], metavar="WORD", help=HELP[f.name])
        else:
            kind = float if f.type == "float" else int
            bound = C.BOUNDS[f.name]
            p.add_argument(
                flag,
                type=kind,
                default=f.default,
                help=f"{HELP[f.name]} [{bound.lo:g}..{bound.hi:g}] (default {f.default})",
            )


def config_from_args(args: argparse.Namespace) -> InvertConfig:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(InvertConfig)}
    values["blocklist"] = tuple(values["blocklist"])
    if values["seed"] == -1:
        values["seed"] = None
    return InvertConfig(**values)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m pez", description="Hard prompts for images with PEZ.")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("invert", help="one prompt for one or several images")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--negative", nargs="*", default=[], metavar="IMG", help="images the prompt should move away from")
    add_invert_flags(p)

    p = sub.add_parser("distill", help="a shorter prompt for a long one")
    p.add_argument("text", help="the long prompt")
    add_invert_flags(p)

    p = sub.add_parser("concatenate", help="invert each image separately and join the prompts")
    p.add_argument("images", nargs="+")
    p.add_argument("--separator", default=C.CONCAT_SEPARATOR)
    add_invert_flags(p)

    p = sub.add_parser("style", help="a style prompt from images, applied to subjects")
    p.add_argument("images", nargs="+", help="images of one style")
    p.add_argument("--subject", action="append", default=[], help="subject(s) to restyle (repeatable)")
    p.add_argument("--template", default=C.STYLE_TEMPLATE)
    add_invert_flags(p)

    p = sub.add_parser("batch", help="invert every image in folders, one JSON line each (resumable; accelerate)")
    p.add_argument("paths", nargs="+", metavar="DIR", help="folders (searched recursively) or image files")
    p.add_argument("--out", "-o", required=True, help="JSONL file the results are appended to")
    add_invert_flags(p)

    sub.add_parser("models", help="list the CLIP <-> generator pairs")
    commands.add_parsers(sub)  # generate, replica
    return ap


def _progress(reports: Iterator, total: int, quiet: bool, label: str = "") -> Iterator:
    """Wrap a report stream in a tqdm bar showing the best prompt so far."""
    from tqdm import tqdm

    with tqdm(total=total, disable=quiet, desc=label or "pez", file=sys.stderr, dynamic_ncols=True) as bar:
        for rep in reports:
            step_rep = getattr(rep, "report", rep)
            if hasattr(rep, "index"):  # concatenation: one bar pass per image
                bar.set_description(f"image {rep.index + 1}/{rep.total}", refresh=False)
            phase = getattr(step_rep, "phase", "search")
            if phase == "search":
                bar.n = step_rep.step
            else:  # refine/prune rounds after the search: the bar stays, the label counts rounds
                bar.set_description(f"{phase} {step_rep.step}/{step_rep.steps}", refresh=False)
            if math.isfinite(step_rep.best_score):
                bar.set_postfix_str(f"best {step_rep.best_score:.3f} {step_rep.best_prompt[:60]!r}", refresh=False)
            bar.refresh()
            yield rep


def _print_result(res, as_json: bool, extra: dict | None = None) -> None:
    d = {**res.to_dict(), **(extra or {})}
    if as_json:
        _out(json.dumps(d, indent=2, ensure_ascii=False))
        return
    _out(res.prompt)
    _out(
        f"# score {res.score:.4f}  steps {res.steps_run}  {res.elapsed:.1f}s  seed {res.seed}  model {res.model}"
        + ("  (stopped early)" if res.stopped else "")
    )
    if getattr(res, "hint", ""):
        _out(f"# hint: {res.hint}")
    for key, value in (extra or {}).items():
        _out(f"# {key}: {value}")


def run(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return _dispatch(args)
    except USER_ERRORS as e:
        sys.stderr.write(f"error: {e}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except Exception as e:  # a runtime failure (e.g. out of memory): one line, no traceback
        logging.getLogger(__name__).debug("run failed", exc_info=True)
        sys.stderr.write(f"error: {describe_error(e)}\n")
        return 1


def _dispatch(args: argparse.Namespace) -> int:
    from . import inversion as inv

    if args.command == "models":
        for name in list_pairs():
            p = PAIRS[name]
            _out(f"{name:<12} CLIP {p.clip:<34} generator {p.generator or '-'}")
        return 0
    if args.command in ("generate", "replica"):
        return commands.run(args)
    cfg = config_from_args(args)
    if args.command == "batch":
        from .batch import run_cli

        return run_cli(args, cfg)
    clip = inv.get_clip(args.model, args.device)
    if args.command == "invert":
        stream = inv.invert_stream(args.images, clip, cfg, negative_images=args.negative)
        *_, last = _progress(stream, cfg.steps, args.quiet)
        _print_result(last.result, args.json)
    elif args.command == "distill":
        *_, last = _progress(inv.distill_stream(args.text, clip, cfg), cfg.steps, args.quiet)
        _print_result(last.result, args.json, {"target": args.text})
    elif args.command == "style":
        *_, last = _progress(inv.invert_stream(args.images, clip, cfg), cfg.steps, args.quiet)
        styled = inv.style_prompts(args.subject, last.result.prompt, args.template)
        _print_result(last.result, args.json, {"styled": styled})
    elif args.command == "concatenate":
        stream = inv.concatenate_stream(args.images, clip, cfg, separator=args.separator)
        *_, last = _progress(stream, cfg.steps, args.quiet)
        res = last.result
        if args.json:
            _out(
                json.dumps(
                    {
                        "prompt": res.prompt,
                        "score": res.score,
                        "stopped": res.stopped,
                        "parts": [p.to_dict() for p in res.parts],
                    },
                    indent=2,
                    ensure_ascii=False,
                )
            )
        else:
            _out(res.prompt)
            _out(f"# score {res.score:.4f} over {len(res.parts)} images" + ("  (stopped early)" if res.stopped else ""))
    return 0


def main() -> None:
    sys.exit(run())
