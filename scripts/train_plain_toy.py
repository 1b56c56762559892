"""Train the *plain* toy CLIP: the toy world's model without its PEZ-friendly training.

Real CLIPs are not trained for PEZ: every token embedding row learns, and nothing teaches the
text tower to give junk strings low scores. This model is trained like the shipped toy CLIP
(same data, architecture and steps, captions with random tokens among the words) but with
every embedding row trained and no junk or near-miss negatives, so tokens that appeared in a
few captions by accident carry meaning PEZ can latch onto. bench/quality.py compares methods
on it. About two minutes on one core; the weights (7 MB) are not shipped.

    python scripts/train_plain_toy.py                    # writes ~/.cache/pez/toy_clip_plain
    python scripts/train_plain_toy.py --out /tmp/plain --seconds 120
"""

import argparse
import json
import logging
import os
from pathlib import Path

from pez import toy

os.environ.setdefault("HF_HUB_OFFLINE", "1")

DEFAULT_OUT = Path.home() / ".cache" / "pez" / "toy_clip_plain"


def plain_config(seed: int = 0, seconds: float | None = None) -> toy.TrainConfig:
    """The shipped toy training minus the PEZ-friendly measures (b) and (c) of pez.toy."""
    return toy.TrainConfig(seed=seed, seconds=seconds, train_all_tokens=True, junk_captions=0, near_misses=0)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=None, help="stop early after this wall time")
    args = ap.parse_args(argv)
    model, metrics = toy.train_model(plain_config(args.seed, args.seconds))
    toy.save_assets(model, metrics, args.out)
    logging.info("wrote %s: %s", args.out, json.dumps({k: v for k, v in metrics.items() if k != "config"}))
    return metrics


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
