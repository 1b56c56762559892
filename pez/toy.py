"""The toy world, one import away: its world and renderer (pez.toy_world), its CLIP and training
(pez.toy_clip) and its generator (pez.toy_generator), re-exported here, plus the command that
builds the shipped assets.

Real CLIP weights cannot always be downloaded, so pez ships a tiny open_clip CLIP trained in a
couple of minutes on synthetic images whose right prompt is known ("a red circle"). It uses the
real ViT-B-32 tokenizer and its whole 49,408-token vocabulary, so PEZ runs on it exactly as on
a real CLIP and can be tested with real signal. bench/quality.py measures how often PEZ finds
the right words.

Build the shipped assets with `python -m pez.toy train` (writes `assets/toy_clip/`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

from .toy_clip import (  # noqa: F401  (re-exports; private names for tests)
    ASSETS_DIR,
    CONFIG_FILE,
    MEAN,
    STD,
    TOY_CONFIG,
    WEIGHTS_FILE,
    TrainConfig,
    _CaptionSampler,
    build_model,
    create_toy_clip,
    encode_ids,
    junk_margin,
    preprocess_for,
    save_assets,
    train_model,
    zero_shot_accuracy,
)
from .toy_generator import EXAMPLES, EXAMPLES_DIR, toy_generate, write_examples  # noqa: F401
from .toy_world import (  # noqa: F401
    COLOURS,
    DEFAULT_SIZE,
    EVAL_SEED_BASE,
    SHAPES,
    _tokenizer,
    caption,
    find_words,
    render,
    word_ids,
    words_in,
)

log = logging.getLogger(__name__)


def train(
    out_dir: str | Path = ASSETS_DIR,
    seed: int = 0,
    steps: int | None = None,
    seconds: float | None = None,
    examples_dir: str | Path | None = EXAMPLES_DIR,
    on_step: Callable[[int, float], None] | None = None,
) -> dict:
    """Train the toy CLIP, write its assets to out_dir (and the example images); return metrics."""
    cfg = TrainConfig(seed=seed, seconds=seconds)
    if steps is not None:
        cfg.steps = steps
    model, metrics = train_model(cfg, on_step)
    save_assets(model, metrics, out_dir)
    if examples_dir is not None:
        write_examples(examples_dir)
    return metrics


def main(argv: list[str] | None = None) -> dict:
    """Command line: `python -m pez.toy train [--out DIR] [--seed N] [--steps N] [--seconds S]`."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m pez.toy", description="Build the toy world's CLIP.")
    sub = ap.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="train the toy CLIP and write its assets")
    tr.add_argument("--out", default=str(ASSETS_DIR), help="folder for config + weights")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--steps", type=int, default=None, help=f"optimiser steps (default {TrainConfig.steps})")
    tr.add_argument("--seconds", type=float, default=None, help="stop early after this wall time")
    tr.add_argument("--examples", default=str(EXAMPLES_DIR), help="folder for example PNGs ('' to skip)")
    args = ap.parse_args(argv)

    def progress(step: int, loss: float) -> None:
        if step % 100 == 0:
            log.info("step %5d  loss %.3f", step, loss)

    metrics = train(args.out, args.seed, args.steps, args.seconds, args.examples or None, progress)
    log.info("wrote %s: %s", args.out, json.dumps({k: v for k, v in metrics.items() if k != "config"}))
    return metrics


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
