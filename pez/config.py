"""The one place for pez's defaults and bounds.

Everything that has a default value or a valid range lives here: the engine validates against
it, the CLI builds its flags from it and the app reads its sliders from it. Numbers come from
the PEZ paper and its reference code (see shared docs) unless a comment says otherwise.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


class ConfigError(ValueError):
    """A setting is out of range or of the wrong kind. The message says expected vs received."""


class WeightsNotFoundError(RuntimeError):
    """Model weights are neither in the local cache nor downloadable; says what was looked for.
    (Defined here, beside ConfigError, so pez.toy_clip raises it without importing pez.models.)"""


@dataclass(frozen=True)
class Bound:
    """Closed numeric range [lo, hi] for one setting, with a UI step."""

    lo: float
    hi: float
    step: float = 1

    def check(self, name: str, value) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name}: expected a number in [{self.lo}, {self.hi}], received {value!r}")
        if not (self.lo <= value <= self.hi):
            raise ConfigError(f"{name}: expected a value in [{self.lo}, {self.hi}], received {value!r}")


# Bounds for every numeric setting. `prompt_len`'s upper bound is further limited by the model's
# context length (context - 2: SOT and EOT take two positions); the engine checks that.
BOUNDS: dict[str, Bound] = {
    "prompt_len": Bound(1, 75),
    "steps": Bound(1, 10_000),
    "lr": Bound(1e-4, 10.0, 0.01),
    "weight_decay": Bound(0.0, 10.0, 0.01),
    "batch_size": Bound(1, 64),
    "candidates": Bound(1, 32),
    "top_k": Bound(1, 32),
    "report_every": Bound(1, 10_000),
    "seed": Bound(0, 2**31 - 1),
    "negative_weight": Bound(0.0, 10.0, 0.1),
    "refine_steps": Bound(0, 1_000),
    "prune_tolerance": Bound(0.0, 0.2, 0.005),
    "patience": Bound(0, 10_000),
}

FLOAT_FIELDS = ("lr", "weight_decay", "negative_weight", "prune_tolerance")  # the other bounded fields are ints

# The app's recommended early stop (the library default `patience=0` runs every step): the
# planted and toy benchmarks gain almost nothing after 150 steps without a new best.
APP_PATIENCE = 150

# A search "looks stuck" when, after STUCK_MIN_STEPS steps, its best score is less than
# STUCK_MIN_GAIN above the mean score of its random start: a working search gains far more
# (toy world ~0.8, planted prompts ~0.7, real CLIPs ~0.2; the stuck toy run of issue 9 gained
# almost nothing). What is reachable is unknown for images, but a random prompt is a floor
# that costs nothing to measure (step 1 scores it). See pez.refine.stuck_hint.
# A second sign, after refinement: when a few token swaps raise the search's best by more than
# STUCK_REFINE_GAIN, the search sat in a poor basin (the toy green triangle of issue 9, prompt
# length 8, seed 0: search 0.06, refined 0.58, caption 0.96); elsewhere refinement gains 0.01-0.05.
# Unless pruning then lifts it by as much again (seed 1: refined 0.59, pruned to "green triangle" 0.96).
STUCK_MIN_STEPS = 100
STUCK_MIN_GAIN = 0.05
STUCK_REFINE_GAIN = 0.1
STUCK_HINT = "the search looks stuck: try another seed or more restarts (candidates)"

# Input limits shared by the engine, the CLI and the app.
MAX_IMAGES = 32  # target images per run
MAX_IMAGE_PIXELS = 40_000_000  # larger images are refused as possible decompression bombs
MIN_IMAGE_SIDE = 2  # pixels; smaller images carry no usable content
MAX_ASPECT_RATIO = 20.0  # longest side / shortest side
MAX_TEXT_CHARS = 2_000  # prompts and distillation targets

PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # of a search's gradient pass; "auto": see pez.accel

STYLE_TEMPLATE = "{subject} in the style of {style}"
CONCAT_SEPARATOR = ", "


@dataclass
class InvertConfig:
    """Settings of one PEZ run. Defaults follow the reference code unless noted."""

    prompt_len: int = 16  # M, tokens in the hard prompt; the authors found 16 generalises best
    steps: int = 1000  # reference: 3000; users report little gain after a few hundred
    lr: float = 0.1  # AdamW learning rate (reference)
    weight_decay: float = 0.1  # AdamW weight decay (reference)
    batch_size: int = 1  # target images per step (reference: 1); all of them if fewer
    candidates: int = 1  # prompts optimised in parallel as one batch ("prompt_bs"); best wins
    top_k: int = 5  # distinct prompts returned, best first
    seed: int | None = 0  # None draws a fresh seed; the seed used is reported
    report_every: int = 10  # steps between progress reports
    negative_weight: float = 1.0  # weight of the similarity to negative targets in the loss
    blocklist: tuple[str, ...] = ()  # words: every vocabulary entry containing one is never chosen
    ascii_only: bool = False  # keep only tokens whose text is plain printable ASCII
    words_only: bool = False  # keep only tokens made of letters (more readable prompts)
    precision: str = "auto"  # of the gradient pass (scores stay fp32): auto, fp32, bf16, fp16 (pez.accel)
    # Beyond plain PEZ (pez.refine; defaults chosen from bench/quality.py, see BENCHMARKS.md).
    whole_words: bool = True  # only tokens that end a word in CLIP's BPE: separate words, no glued pieces
    safe: bool = True  # exclude the default offensive/sexual word list; `blocklist` adds to it
    refine_steps: int = 50  # rounds of gradient-guided token swaps after the search (0: off)
    prune_tolerance: float = 0.01  # drop tokens whose removal costs less than this score (0: off)
    patience: int = 0  # stop the search when the best score has not improved for this many steps (0: off)
    init_prompt: str = ""  # start from this text instead of random tokens

    def validate(self, context_length: int | None = None) -> InvertConfig:
        """Check every field; return self so calls can chain. Raises ConfigError."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in BOUNDS and not (f.name == "seed" and value is None):
                if f.name not in FLOAT_FIELDS and not _is_int(value):
                    raise ConfigError(f"{f.name}: expected an integer, received {value!r}")
                BOUNDS[f.name].check(f.name, value)
        if context_length is not None and self.prompt_len > context_length - 2:
            raise ConfigError(
                f"prompt_len: expected at most {context_length - 2} (the model's context length "
                f"{context_length} minus SOT and EOT), received {self.prompt_len}"
            )
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision: expected one of {list(PRECISIONS)}, received {self.precision!r}")
        if not isinstance(self.init_prompt, str) or len(self.init_prompt) > MAX_TEXT_CHARS:
            raise ConfigError(
                f"init_prompt: expected a text of at most {MAX_TEXT_CHARS} characters, received {self.init_prompt!r:.80}"
            )
        if isinstance(self.blocklist, str):
            raise ConfigError("blocklist: expected a sequence of words, received a single string")
        return self

    def replace(self, **changes) -> InvertConfig:
        return dataclasses.replace(self, **changes)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class GenerateConfig:
    """Settings of one regeneration; None means "the model pair's default"."""

    negative_prompt: str = ""
    seed: int = 0
    num_images: int = 1
    steps: int | None = None
    guidance: float | None = None
    width: int | None = None
    height: int | None = None


GENERATE_BOUNDS: dict[str, Bound] = {
    "seed": Bound(0, 2**31 - 1),
    "num_images": Bound(1, 8),
    "steps": Bound(1, 100),
    "guidance": Bound(0.0, 30.0, 0.5),
    "width": Bound(64, 2048, 8),
    "height": Bound(64, 2048, 8),
}

DEBUG_CONFIG = InvertConfig(prompt_len=4, steps=20, report_every=5)  # tiny preset for tests

__all__ = [
    "APP_PATIENCE",
    "BOUNDS",
    "Bound",
    "CONCAT_SEPARATOR",
    "ConfigError",
    "DEBUG_CONFIG",
    "GENERATE_BOUNDS",
    "GenerateConfig",
    "InvertConfig",
    "MAX_ASPECT_RATIO",
    "MAX_IMAGES",
    "MAX_IMAGE_PIXELS",
    "MAX_TEXT_CHARS",
    "MIN_IMAGE_SIDE",
    "STYLE_TEMPLATE",
]
