"""The command line, all of it: `pez {invert,distill,concatenate,style,batch,models,generate,replica,app}`
(the console script pip installs; `python -m pez ...` is the same).

Every PEZ setting is a flag built from `pez.config.InvertConfig`'s fields (default, bound and help
come from there), so defaults live in one place. Progress is a tqdm bar on stderr showing the
current best; the result goes to stdout as text, or as JSON with --json. Errors are one clear
line: exit status 2 for the user's mistakes (pez.errors.USER_ERRORS), 1 for a failed run, 130
when interrupted (Ctrl-C still prints the best prompt of a search).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import logging
import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from . import testing as _fixtures  # noqa: F401  registers "random:tiny" (smoke runs, tests) with the loader
from .config import (
    CONCAT_SEPARATOR,
    GENERATE_BOUNDS,
    PRECISIONS,
    SIZE_MULTIPLE,
    STYLE_TEMPLATE,
    GenerateConfig,
    InvertConfig,
    about,
)
from .errors import USER_ERRORS, ConfigError, describe_error
from .models import DEFAULT_PAIR, PAIRS, get_clip, list_pairs

log = logging.getLogger(__name__)


def main() -> None:
    sys.exit(run())


def run(argv: list[str] | None = None) -> int:
    """Parse `argv`, run the command, return the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["app"]:  # every later flag is the app's own (the app's parse_args)
        argv, app_flags = argv[:1], argv[1:]
    args = build_parser().parse_args(argv)
    if args.command == "app":
        args.args = app_flags
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.run(args)
    except USER_ERRORS as e:
        sys.stderr.write(f"error: {e}{_did_you_mean(args, e)}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except Exception as e:  # a runtime failure (e.g. out of memory): one line, no traceback
        log.debug("run failed", exc_info=True)
        sys.stderr.write(f"error: {describe_error(e)}\n")
        return 1


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else (many or word + 's')}"


def _did_you_mean(args: argparse.Namespace, error: Exception) -> str:
    """' (did you mean 'toy'?)' when the error is about the --model typed and a registered name is
    close to it (difflib), else ''. Names: the pairs, plus the toy and tiny random CLIP specs."""
    typed = getattr(args, "model", None)
    if not isinstance(typed, str) or repr(typed.strip()) not in str(error):
        return ""
    names = [*list_pairs(), "toy", "random:tiny"]
    close = difflib.get_close_matches(typed.strip(), names, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close and close[0] != typed.strip() else ""


def _check_out_parent(path: Path, flag: str) -> None:
    """`flag`'s path goes in an existing folder: ConfigError when a parent is a file or missing (pez
    creates no folders the user did not name)."""
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{flag}: {parent} is a file, not a folder; received {str(path)!r}")
            break
    if not path.parent.is_dir():
        raise ConfigError(
            f"{flag}: the folder {path.parent} does not exist; create it first (mkdir -p {path.parent}) "
            f"or pick another path, received {str(path)!r}"
        )


# ---------------------------------------------------------------------------------------------
# The parser


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="pez", description="Hard prompts for images with PEZ.")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("invert", help="one prompt for one or several images")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--negative", nargs="*", default=[], metavar="IMG", help="images the prompt should move away from")
    add_invert_flags(p, _invert)

    p = sub.add_parser("distill", help="a shorter prompt for a long one")
    p.add_argument("text", help="the long prompt")
    add_invert_flags(p, _distill)

    p = sub.add_parser("concatenate", help="invert each image separately and join the prompts")
    p.add_argument("images", nargs="+")
    p.add_argument("--separator", default=CONCAT_SEPARATOR)
    add_invert_flags(p, _concatenate)

    p = sub.add_parser("style", help="a style prompt from images, applied to subjects")
    p.add_argument("images", nargs="+", help="images of one style")
    p.add_argument("--subject", action="append", default=[], help="subject(s) to restyle (repeatable)")
    p.add_argument("--template", default=STYLE_TEMPLATE)
    add_invert_flags(p, _style)

    p = sub.add_parser("batch", help="invert every image in folders, one JSON line each (resumable; accelerate)")
    p.add_argument("paths", nargs="+", metavar="DIR", help="folders (searched recursively) or image files")
    p.add_argument(
        "--out",
        "-o",
        required=True,
        help="JSONL file the results are appended to (created if missing; its folder must exist)",
    )
    p.add_argument(
        "--keep-errors",
        action="store_true",
        help="do not retry images recorded as errors by an earlier run (default: retry them)",
    )
    add_invert_flags(p, _batch)

    sub.add_parser("models", help="list the pairs: which CLIP(s) each search uses, which generator").set_defaults(
        run=_models
    )
    _add_generate(sub)
    _add_replica(sub)
    _add_app(sub)
    return ap


def add_invert_flags(p: argparse.ArgumentParser, command=None) -> None:
    """--model, --device, --json, --quiet and one flag per InvertConfig field."""
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
        flag, info = "--" + f.name.replace("_", "-"), about(InvertConfig, f.name)
        if isinstance(f.default, bool):  # --whole-words / --no-whole-words
            p.add_argument(
                flag,
                action=argparse.BooleanOptionalAction,
                default=f.default,
                help=f"{info.help} (default %(default)s)",
            )
        elif f.name == "precision":
            p.add_argument(flag, choices=PRECISIONS, default=f.default, help=f"{info.help} (default {f.default})")
        elif info.choices:  # --prompt-style; not given: custom when a vocabulary or prune flag is (config_from_args)
            default = None if f.name == "prompt_style" else f.default
            p.add_argument(flag, choices=info.choices, default=default, help=f"{info.help} (default {f.default})")
        elif f.name == "blocklist":
            p.add_argument(flag, nargs="*", default=[], metavar="WORD", help=info.help)
        elif f.name == "clip_weights":
            p.add_argument(flag, nargs="+", type=float, default=None, metavar="W", help=info.help)
        elif isinstance(f.default, str):
            p.add_argument(flag, default=f.default, metavar="TEXT", help=info.help)
        elif f.name == "time_budget":  # `--time 60`: the best prompt in a minute
            b = info.bound
            p.add_argument(
                "--time", flag, dest=f.name, type=float, default=f.default, metavar="SECONDS",
                help=f"{info.help}, {_range(b)} (default {f.default:g})",
            )  # fmt: skip
        else:
            extra = "; -1 for a random seed (the seed used is printed)" if f.name == "seed" else ""
            p.add_argument(
                flag,
                type=float if f.type == "float" else int,
                default=f.default,
                help=f"{info.help}, {_range(info.bound)}{extra} (default {f.default})",
            )
    if command is not None:
        p.set_defaults(run=command)


def _range(bound) -> str:
    """'1 to 10,000', '0 to 2,147,483,647', '0.0001 to 10': a bound as a reader writes it."""

    def number(x: float) -> str:
        return f"{int(x):,}" if float(x).is_integer() else f"{x:g}"

    return f"{number(bound.lo)} to {number(bound.hi)}"


def config_from_args(args: argparse.Namespace) -> InvertConfig:
    """The InvertConfig of parsed flags (checked when built: a bad value is a ConfigError)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(InvertConfig)}
    values["blocklist"] = tuple(values["blocklist"])
    if values["clip_weights"] is not None:
        values["clip_weights"] = tuple(values["clip_weights"])
    if values["seed"] == -1:
        values["seed"] = None
    if values["prompt_style"] is None:  # today's flags keep working: given alone, they are the style
        own = ("dictionary_words", "whole_words", "words_only", "prune_tolerance")
        custom = any(values[n] != getattr(InvertConfig, n) for n in own)
        values["prompt_style"] = "custom" if custom else InvertConfig.prompt_style
    return InvertConfig(**values)


# ---------------------------------------------------------------------------------------------
# Searches: invert, distill, style, concatenate, batch


def _invert(args: argparse.Namespace) -> int:
    from .inversion import invert_stream

    cfg = config_from_args(args)
    clip = get_clip(args.model, args.device, cfg.clip_weights)
    stream = invert_stream(args.images, clip, cfg, negative_images=args.negative)
    *_, last = _progress(stream, cfg.steps, args.quiet, budget=cfg.time_budget)
    _print_result(last.result, args.json)
    return 0


def _distill(args: argparse.Namespace) -> int:
    from .inversion import distill_stream

    cfg = config_from_args(args)
    clip = get_clip(args.model, args.device, cfg.clip_weights)
    *_, last = _progress(distill_stream(args.text, clip, cfg), cfg.steps, args.quiet, budget=cfg.time_budget)
    _print_result(last.result, args.json, {"target": args.text})
    return 0


def _style(args: argparse.Namespace) -> int:
    from .inversion import invert_stream, style_prompts

    cfg = config_from_args(args)
    clip = get_clip(args.model, args.device, cfg.clip_weights)
    *_, last = _progress(invert_stream(args.images, clip, cfg), cfg.steps, args.quiet, budget=cfg.time_budget)
    styled = style_prompts(args.subject, last.result.prompt, args.template)
    if args.json:
        _print_result(last.result, True, {"styled": styled})
        return 0
    _print_result(last.result, False)
    if styled:  # one styled prompt a line, ready to paste
        _out(f"# styled ({_plural(len(styled), 'subject')}):")
        for line in styled:
            _out(line)
    return 0


def _concatenate(args: argparse.Namespace) -> int:
    from .inversion import concatenate_stream

    cfg = config_from_args(args)
    clip = get_clip(args.model, args.device, cfg.clip_weights)
    stream = concatenate_stream(args.images, clip, cfg, separator=args.separator)
    *_, last = _progress(stream, cfg.steps, args.quiet)
    res = last.result
    if args.json:
        parts = [p.to_dict() for p in res.parts]
        record = {"prompt": res.prompt, "score": res.score, "stopped": res.stopped, "parts": parts}
        _out(json.dumps(record, indent=2, ensure_ascii=False))
    else:
        _out(res.prompt)
        _out(f"# score {res.score:.4f} over {len(res.parts)} images" + ("  (stopped early)" if res.stopped else ""))
    return 0


def _batch(args: argparse.Namespace) -> int:
    """Every image under the folders, one JSON line each; prints a summary. Resumable."""
    from .batch import run_batch

    cfg = config_from_args(args)
    _check_out_parent(Path(args.out).expanduser(), "--out")
    try:
        summary = run_batch(
            args.paths,
            args.out,
            args.model,
            cfg,
            device=args.device,
            progress=not args.quiet,
            keep_errors=args.keep_errors,
        )
    except KeyboardInterrupt:  # between images
        sys.stderr.write("stopped; re-run the same command to resume\n")
        return 130
    for line in summary.failed:
        sys.stderr.write(f"failed (will be retried): {line}\n")
    if summary.complete is None:  # not the main process: the main one reports
        return summary.exit_code
    if args.json:
        _out(json.dumps(summary.to_dict(), indent=2))
    else:
        _out(
            f"{summary.complete}/{_plural(summary.total, 'image')} in {summary.out} "
            f"({summary.skipped} already done, {summary.written} new, {_plural(summary.errors, 'bad image')}; "
            f"{_plural(summary.processes, 'process', 'processes')}, {summary.elapsed:.1f}s)"
        )
    if summary.stopped:
        sys.stderr.write("stopped; re-run the same command to resume\n")
    return summary.exit_code


def _progress(reports: Iterator, total: int, quiet: bool, label: str = "", budget: float = 0.0) -> Iterator:
    """Wrap a report stream in a tqdm bar showing the best prompt so far and the time left. With a
    time budget the bar counts seconds of it, else search steps."""
    from tqdm import tqdm

    total, unit = (budget, "s") if budget else (total, "it")
    fmt = "{l_bar}{bar}| {n:.0f}/{total:.0f} s{postfix}" if budget else None
    with tqdm(
        total=total, unit=unit, disable=quiet, desc=label or "pez", file=sys.stderr, dynamic_ncols=True, bar_format=fmt
    ) as bar:
        for rep in reports:
            step_rep = getattr(rep, "report", rep)
            if hasattr(rep, "index"):  # concatenation: one bar pass per image
                bar.set_description(f"image {rep.index + 1}/{rep.total}", refresh=False)
            if budget:
                bar.n = min(step_rep.elapsed, budget)
            if step_rep.phase == "search":
                bar.n = bar.n if budget else step_rep.step
            else:  # refine/prune rounds after the search: they end when the polish share is spent
                bar.set_description(f"{step_rep.phase} round {step_rep.step}", refresh=False)
            post = (
                f"best {step_rep.best_score:.3f} {step_rep.best_prompt[:60]!r}"
                if math.isfinite(step_rep.best_score)
                else ""
            )
            if math.isfinite(step_rep.eta) and not step_rep.done:
                post = f"~{step_rep.eta:.0f} s left, {post}"
            bar.set_postfix_str(post, refresh=False)
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
    if len(res.clip_scores) > 1:  # a joint search: the score in each CLIP and its weight
        weights = res.clip_weights
        _out(
            "# per CLIP: "
            + ", ".join(f"{n} {sc:.4f} x{weights.get(n, math.nan):g}" for n, sc in res.clip_scores.items())
        )
    if res.hint:
        _out(f"# hint: {res.hint}")
    for key, value in (extra or {}).items():
        _out(f"# {key}: {value}")


# ---------------------------------------------------------------------------------------------
# models, generate, replica


def _models(args: argparse.Namespace) -> int:
    """One line per pair: the CLIP(s) PEZ searches (several: one prompt scored in each, with its
    default weight) and the generator; then the pair's note."""
    rows = [(name, PAIRS[name].describe_clips(), PAIRS[name].generator or "-") for name in list_pairs()]
    width = max(len(c) for _, c, _ in rows)
    for name, clips, generator in rows:
        _out(f"{name:<13} CLIP {clips:<{width}}  generator {generator}")
        if PAIRS[name].note:
            _out(f"{'':<13} {PAIRS[name].note}")
    return 0


def _add_generate(sub) -> None:
    """`generate PROMPT`: images of a prompt with a pair's diffusion model, written as PAIR-seedN.png."""

    def info(name: str) -> str:
        return about(GenerateConfig, name).help

    p = sub.add_parser("generate", help="draw images of a prompt with a pair's diffusion model")
    p.add_argument("prompt", help="the prompt (e.g. one pez found)")
    p.add_argument("--model", "-m", default=DEFAULT_PAIR, help=f"model pair {list_pairs()} (default {DEFAULT_PAIR})")
    p.add_argument("--negative", default="", metavar="TEXT", help=f"negative prompt: {info('negative_prompt')}")
    p.add_argument("--seed", type=int, default=GenerateConfig.seed, help=info("seed"))
    bound = GENERATE_BOUNDS["num_images"]
    p.add_argument("--num-images", "-n", type=int, default=GenerateConfig.num_images, help=f"{info('num_images')}, {_range(bound)}")  # fmt: skip
    p.add_argument("--steps", type=int, default=None, help=f"{info('steps')} (default: the pair's)")
    p.add_argument("--guidance", type=float, default=None, help=f"{info('guidance')} (default: the pair's)")
    size = GENERATE_BOUNDS["width"]
    p.add_argument(
        "--size",
        type=int,
        default=None,
        help=f"width and height in pixels, {_range(size)}, a multiple of {SIZE_MULTIPLE} (default: the pair's)",
    )
    p.add_argument(
        "--out",
        "-o",
        default=".",
        metavar="DIR",
        help="folder the PNG files are written to (created if missing; its parent folder must exist)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--offload", action="store_true", help="accelerate's model CPU offload (small GPUs, CUDA only)")
    p.add_argument("--no-score", action="store_true", help="skip CLIP scoring (saves loading the CLIP)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(run=_generate)


def _generate(args: argparse.Namespace) -> int:
    """Draw the images with a tqdm bar over the denoising steps (downloads show huggingface_hub's
    own bars), write them, print one line per image with its CLIP score to the prompt."""
    from tqdm import tqdm

    from .generate import generate

    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out: expected a folder, received the file {str(out)!r}")
    if not out.exists():
        _check_out_parent(out, "--out")
    config = _generate_config(args)
    bars = []  # the bar opens at the first denoising step, so loading time is not counted as a step

    def on_step(step) -> None:
        if not bars:
            bars.append(
                tqdm(total=step.total, disable=args.quiet, desc="generate", file=sys.stderr, dynamic_ncols=True)
            )
        bars[0].total, bars[0].n = step.total, step.step
        bars[0].refresh()

    try:
        result = generate(
            args.model,
            args.prompt,
            config,
            score=not args.no_score,
            device=args.device,
            offload=args.offload,
            callback=on_step,
        )
    finally:
        for bar in bars:
            bar.close()
    out.mkdir(exist_ok=True)
    paths = []
    for image, seed in zip(result.images, result.seeds, strict=True):
        path = out / f"{result.pair}-seed{seed}.png"
        image.save(path)
        paths.append(str(path))
    for line in result.warnings:
        sys.stderr.write(f"warning: {line}\n")
    _print_images(result, paths, args.json)
    return 0


# GenerateConfig's field -> the generate flag that sets it, so an error names what the user typed
GENERATE_FLAGS = {
    "negative_prompt": "--negative",
    "seed": "--seed",
    "num_images": "--num-images",
    "steps": "--steps",
    "guidance": "--guidance",
    "width": "--size",
    "height": "--size",
}


def _generate_config(args: argparse.Namespace) -> GenerateConfig:
    """The GenerateConfig of generate's flags; a bad value is a ConfigError naming its flag."""
    try:
        return GenerateConfig(
            negative_prompt=args.negative,
            seed=args.seed,
            num_images=args.num_images,
            steps=args.steps,
            guidance=args.guidance,
            width=args.size,
            height=args.size,
        )
    except ConfigError as e:
        field, sep, rest = str(e).partition(": ")
        if not sep or field not in GENERATE_FLAGS:
            raise
        raise ConfigError(f"{GENERATE_FLAGS[field]}: {rest}") from None


def _print_images(result, paths: list[str], as_json: bool) -> None:
    scores = result.text_scores or [None] * len(paths)
    if as_json:
        s = result.settings
        record = {
            "prompt": result.prompt,
            "pair": result.pair,
            "images": [{"path": p, "seed": seed, "text_score": sc} for p, seed, sc in zip(paths, result.seeds, scores)],
            "settings": {"steps": s.steps, "guidance": s.guidance, "width": s.width, "height": s.height},
            "seconds": round(result.seconds, 3),
            "stopped": result.stopped,
            "warnings": result.warnings,
        }
        _out(json.dumps(record, indent=2, ensure_ascii=False))
        return
    for path, seed, score in zip(paths, result.seeds, scores, strict=True):
        _out(f"{path}  seed {seed}" + ("" if score is None else f"  clip {score:.4f}"))
    _out(f"# {len(paths)} image(s) in {result.seconds:.1f}s with {result.pair}")


def _add_replica(sub) -> None:
    """`replica DIR`: full-size models with random weights as a hub cache (pez.testing.replica)."""
    from .testing.replica import DTYPES, REPLICA_PAIRS

    p = sub.add_parser("replica", help="write full-size models with random weights as a hub cache (tests, benchmarks)")
    p.add_argument("dir", metavar="DIR", help="folder to write; then run with HF_HOME=DIR HF_HUB_OFFLINE=1")
    p.add_argument(
        "--pairs", nargs="+", default=["sd-turbo"], metavar="PAIR", help=f"pairs to replicate {REPLICA_PAIRS}"
    )
    p.add_argument(
        "--dtype", default="fp16", choices=list(DTYPES), help="fp16 (the fp16 variant files; Flux: bf16) or fp32"
    )
    p.add_argument(
        "--size",
        default="full",
        choices=["full", "small"],
        help="flux-schnell only: full (33.7 GB in bf16) or small (same files and configs, reduced widths)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    p.set_defaults(run=_replica)


def _replica(args: argparse.Namespace) -> int:
    from .testing.replica import build_replica

    t0 = time.perf_counter()
    root = build_replica(
        args.dir, args.pairs, args.dtype, args.seed, progress=lambda m: sys.stderr.write(m + "\n"), size=args.size
    )
    sys.stderr.write(f"replica of {', '.join(args.pairs)} ready in {time.perf_counter() - t0:.0f}s\n")
    _out(f"HF_HOME={root.resolve()} HF_HUB_OFFLINE=1")
    return 0


def _add_app(sub) -> None:
    """`app [FLAGS]`: start the Gradio app (pez_app; its own flags, e.g. --offline-demo, --port)."""
    p = sub.add_parser(
        "app",
        help="start the Gradio app (needs the app extra: pip install '.[app]' in pez's folder); `pez app -h` lists its flags",
        add_help=False,  # `pez app -h` is the app's own help
    )
    p.set_defaults(run=_app, args=[])


def _app(args: argparse.Namespace) -> int:
    """The app is a front-end above the core: it plugs itself in as the entry point `app` of the
    group "pez.commands" (pyproject.toml), so the core never imports it."""
    from importlib.metadata import entry_points

    found = list(entry_points(group="pez.commands", name="app"))
    if not found:
        raise ConfigError(
            "the app is not installed with this pez (no entry point 'app' in the group 'pez.commands'): "
            "pip install '.[app]' in pez's folder (an editable install needs it run again after an update)"
        )
    try:
        app_main = found[0].load()
    except ModuleNotFoundError as e:
        message = app_missing(e)
        if message is None:
            raise
        raise ConfigError(message) from e
    app_main(args.args, prog="pez app")
    return 0


def app_missing(error: ModuleNotFoundError) -> str | None:
    """What to install when starting the app failed on `error`; None when the missing module is not
    one the app extra provides (a real bug: let it raise). Shared by `pez app` and `python -m pez_app`."""
    if (error.name or "").split(".")[0] not in ("gradio", "pandas", "pez_app"):
        return None
    return (
        f"the app needs {error.name}, which is not installed: pip install '.[app]' in pez's folder "
        "(or pip install -r requirements.txt)"
    )


__all__ = ["add_invert_flags", "app_missing", "build_parser", "config_from_args", "main", "run"]
