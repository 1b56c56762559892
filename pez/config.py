"""The one place for pez's defaults, bounds and the words that describe each setting.

Every setting of a search (`InvertConfig`) and of a regeneration (`GenerateConfig`) is declared
once, here: its default, its valid range, its label in the app and its one-line help. The
configs check themselves when they are built (frozen dataclasses: a config that exists is
valid), the CLI builds its flags from the same fields (pez.cli) and the app its settings panel
and error labels (pez_app.settings). Numbers follow the PEZ paper (Wen et al., "Hard Prompts
Made Easy", NeurIPS 2023, arXiv 2302.03668, Algorithm 1 and section 4) and its reference code
(github.com/YuxinWenRick/hard-prompts-made-easy) unless a comment says otherwise.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError, quote_value

# ---------------------------------------------------------------------------------------------
# How a setting is declared: default, bound, label, help


@dataclass(frozen=True)
class Bound:
    """Closed numeric range [lo, hi] for one setting, with a UI step."""

    lo: float
    hi: float
    step: float = 1

    def check(self, name: str, value) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name}: expected a number in [{self.lo}, {self.hi}], received {quote_value(value)}")
        if not (self.lo <= value <= self.hi):
            raise ConfigError(f"{name}: expected a value in [{self.lo}, {self.hi}], received {quote_value(value)}")


@dataclass(frozen=True)
class About:
    """How one setting is described to users; kept in the dataclass field's metadata."""

    help: str  # one line: CLI -h, API and MCP parameter docs
    label: str = ""  # the app's name for it ("Learning rate"); error messages use it too
    bound: Bound | None = None  # valid range of a number
    note: str = ""  # appended to the label in the app's panel: "Prompt length (tokens)"
    info: str = ""  # the app's hint under the control
    choices: tuple[str, ...] = ()  # the values a text setting may take (a choice in the app, the CLI)


def setting(
    default: Any, help: str, label: str = "", bound: Bound | None = None, *, note: str = "", info: str = "", choices=()
):
    """A dataclass field with its description: `x: int = setting(16, "tokens in the prompt", ...)`."""
    about = About(help, label, bound, note, info, tuple(choices))
    return dataclasses.field(default=default, metadata={"about": about})


def about(cls: type, name: str) -> About:
    """The description of field `name` of a config class."""
    return next(f for f in dataclasses.fields(cls) if f.name == name).metadata["about"]


def check_fields(config: Any) -> None:
    """Check every bounded field of a config: integers where the type says int, values in range.
    None passes where the type allows it (e.g. `seed: int | None`)."""
    for f in dataclasses.fields(config):
        bound, value = f.metadata["about"].bound, getattr(config, f.name)
        types = str(f.type).replace(" ", "").split("|")
        if bound is None or (value is None and "None" in types):
            continue
        if "int" in types and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigError(f"{f.name}: expected an integer, received {quote_value(value)}")
        bound.check(f.name, value)


# ---------------------------------------------------------------------------------------------
# Input limits shared by the engine, the CLI and the app

MAX_IMAGES = 32  # target images per run
MAX_IMAGE_PIXELS = 40_000_000  # larger images are refused as possible decompression bombs
MIN_IMAGE_SIDE = 2  # pixels; smaller images carry no usable content
MAX_ASPECT_RATIO = 20.0  # longest side / shortest side
MAX_TEXT_CHARS = 2_000  # prompts and distillation targets

PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # of a search's gradient pass; "auto": see pez.engine.accel
# What the user gets (InvertConfig.prompt_style, resolved by InvertConfig.resolved):
#   readable   dictionary words only, no word twice, every word earns its place (pruned below
#              READABLE_TOLERANCE unless prune_tolerance is set), the best-scoring of a few orders;
#   max-score  the search's best prompt, refined: every slot filled, the highest score;
#   custom     the vocabulary and polish settings exactly as given (dictionary_words, prune_tolerance, ...).
PROMPT_STYLES = ("readable", "max-score", "custom")
# How the final prompt is chosen among the result's top_k (pez.inversion.judge_by_regeneration):
#   score       the highest prompt-image score (the objective PEZ optimises);
#   regenerate  the highest CLIP image-image similarity of its regeneration (the pair's generator,
#               one image, seed 0) to the target images. Costs one generation per candidate: nothing
#               on the toy pair, ~13 s per candidate for SD-Turbo on a 2-core CPU (BENCHMARKS.md).
JUDGES = ("score", "regenerate")
STYLE_TEMPLATE = "{subject} in the style of {style}"
CONCAT_SEPARATOR = ", "
TEXT_WEIGHT = 1.0  # default weight of an optional text target beside the images (pez.image_targets)


# ---------------------------------------------------------------------------------------------
# A search


@dataclass(frozen=True)
class InvertConfig:
    """Settings of one PEZ run, checked when built. Defaults follow the reference code unless noted."""

    # M, tokens in the hard prompt; the authors found 16 generalises best. The upper bound is
    # further limited by the model's context length (context - 2: SOT and EOT), see fits().
    prompt_len: int = setting(16, "tokens in the prompt", "Prompt length", Bound(1, 75), note="tokens")
    # Reference: 3000; users report little gain after a few hundred.
    steps: int = setting(1000, "optimisation steps", "Steps", Bound(1, 10_000), info="little gain after a few hundred")
    # Beyond the reference: a wall-clock budget for the whole run (pez.engine.budget plans the
    # search, the candidates and the polish to end within it). Steps still cap the search.
    time_budget: float = setting(
        0.0,
        "seconds for the whole run, search and polish; the best prompt at the deadline is returned (0: no limit)",
        "Time budget",
        Bound(0.0, 86_400.0, 5.0),
        note="seconds, 0 = none",
    )
    # Beyond the reference: a hard cap (a server's limit on one run), not a plan: a run that ends
    # before it is the run planned in steps (reproducible); one that would pass it ends there,
    # search then polish, and says so (pez.engine.budget). Not in the app's panel: a server setting.
    time_limit: float = setting(
        0.0,
        "hard cap in seconds: a run that would pass it ends there with its polish and says so; "
        "unlike a time budget it leaves shorter runs reproducible (0: none)",
        "Time limit",
        Bound(0.0, 86_400.0, 5.0),
        note="seconds, 0 = none",
    )
    lr: float = setting(0.1, "AdamW learning rate", "Learning rate", Bound(1e-4, 10.0, 0.01))  # reference
    weight_decay: float = setting(0.1, "AdamW weight decay", "Weight decay", Bound(0.0, 10.0, 0.01))  # reference
    # Target images per step (reference: 1); all of them when there are fewer.
    batch_size: int = setting(1, "target images per step", "Batch size", Bound(1, 64))
    # Prompts optimised in parallel as one batch (the reference's "prompt_bs"); the best wins.
    candidates: int = setting(
        1, "prompts optimised in parallel; the best wins", "Candidates", Bound(1, 32), note="restarts in parallel"
    )
    top_k: int = setting(5, "distinct prompts to return", "Top k", Bound(1, 32))
    # None draws a fresh seed; the seed used is reported, so every run can be repeated.
    seed: int | None = setting(0, "random seed", "Seed", Bound(0, 2**31 - 1), note="empty: random")
    report_every: int = setting(10, "steps between progress updates", "Report every", Bound(1, 10_000))
    negative_weight: float = setting(
        1.0, "weight of negative targets in the loss", "Negative weight", Bound(0.0, 10.0, 0.1)
    )
    blocklist: tuple[str, ...] = setting((), "words never to use (every token containing one is excluded)", "Blocklist")
    ascii_only: bool = setting(False, "only plain ASCII tokens", "ASCII only")
    words_only: bool = setting(
        False, "only tokens made of letters (most readable)", "Readable words only", note="no sub-word fragments"
    )
    precision: str = setting("auto", "precision of the gradient pass (scores stay fp32)", "Precision")
    # Beyond plain PEZ. Each default decided at equal wall-clock time on four benchmarks, one held out
    # (bench/defaults.py; BENCHMARKS.md, "Settings at equal wall-clock time"): whole_words and safe never
    # measurably worse than plain PEZ and better on some; dictionary_words an option (worse on the
    # planted benchmark, the one whose targets hold non-dictionary words).
    whole_words: bool = setting(
        True,
        "only tokens that end a word: the prompt is separate words, no glued pieces",
        "Whole words only",
        note="no glued pieces",
    )
    # Only tokens that are whole English words by wordfreq (pez.engine.readability). The readable
    # style turns it (and whole_words) on, max-score off (InvertConfig.resolved); custom: as given.
    dictionary_words: bool = setting(
        False,
        "only whole words of an English dictionary (wordfreq): every word of the prompt is a real word",
        "Dictionary words only",
        note="readable",
    )
    safe: bool = setting(
        True, "exclude offensive words: slurs, explicit sexual terms, swearing (the blocklist adds to it)",
        "Block offensive words",
    )  # fmt: skip
    # Defaults decided at equal wall-clock time (BENCHMARKS.md, "Settings at equal wall-clock time"):
    # refinement within the polish's share of the run (pez.engine.budget) beat plain PEZ everywhere
    # (+0.007 to +0.022; held out +0.020),
    # so it runs until that share is spent (1000 rounds at most); pruning trades score for length
    # by design (never better than plain PEZ there), so it is an option.
    refine_steps: int = setting(
        1_000, "rounds of gradient-guided token swaps after the search, within the polish's share of the run (0: off)",
        "Refine steps", Bound(0, 1_000), note="0 = off",
    )  # fmt: skip
    prune_tolerance: float = setting(
        0.0,
        "drop tokens whose removal costs less than this score (0: off)",
        "Prune tolerance",
        Bound(0.0, 0.2, 0.005),
        note="0 = off",
    )
    # One choice for what the user gets (PROMPT_STYLES above); decided at equal wall-clock time
    # (bench/readable.py; BENCHMARKS.md, "Readable prompts by default").
    prompt_style: str = setting(
        "readable",
        "readable: real words, none twice, each earns its place, in a readable order; max-score: every slot, the "
        "highest score; custom: the vocabulary and prune settings as given",
        "Prompt style",
        choices=PROMPT_STYLES,
    )
    # Measured in the toy world (bench/readable.py): picking by regeneration helps max-score prompts
    # (which may name a wrong colour first), not readable ones; an option (image -> prompt only).
    judge: str = setting(
        "score",
        "how the final prompt is picked among the top k: score (prompt vs image) or regenerate (its regenerated "
        "image vs the targets; needs a model pair with a generator, one generation per candidate)",
        "Judge",
        choices=JUDGES,
    )
    # The library runs every step by default; the app turns early stop on (APP_PATIENCE).
    patience: int = setting(
        0,
        "stop the search after this many steps without a better score (0: off)",
        "Early stop: patience",
        Bound(0, 10_000),
        note="steps, 0 = off",
    )
    init_prompt: str = setting(
        "", "start from this text instead of random tokens", "Start from this prompt", note="optional"
    )
    # Pairs whose generator reads several CLIP text encoders (SDXL) search one prompt scored in
    # every CLIP space: objective = weighted sum of the cosines. None: the pair's weights.
    clip_weights: tuple[float, ...] | None = setting(
        None,
        "weight of each of the model's CLIPs in the score (e.g. 0.5 0.5 for SDXL's ViT-L and bigG; 0 leaves one "
        "out); none given: the pair's",
        "CLIP weights",
        note="SDXL: ViT-L, bigG",
    )

    def __post_init__(self):
        self.validate()

    def validate(self, context_length: int | None = None) -> InvertConfig:
        """Check every field (and, given a model's context length, that the prompt fits it);
        return self. Raises ConfigError saying expected vs received. Runs when a config is built."""
        check_fields(self)
        if self.prompt_style not in PROMPT_STYLES:
            raise ConfigError(
                f"prompt_style: expected one of {list(PROMPT_STYLES)}, received {quote_value(self.prompt_style)}"
            )
        if self.judge not in JUDGES:
            raise ConfigError(f"judge: expected one of {list(JUDGES)}, received {quote_value(self.judge)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision: expected one of {list(PRECISIONS)}, received {quote_value(self.precision)}")
        if not isinstance(self.init_prompt, str) or len(self.init_prompt) > MAX_TEXT_CHARS:
            raise ConfigError(
                f"init_prompt: expected a text of at most {MAX_TEXT_CHARS} characters, received {quote_value(self.init_prompt)}"
            )
        if isinstance(self.blocklist, str):
            raise ConfigError("blocklist: expected a sequence of words, received a single string")
        if any(not isinstance(w, str) for w in self.blocklist):
            raise ConfigError(f"blocklist: expected words (text), received {quote_value(list(self.blocklist))}")
        chars = sum(len(w) + 1 for w in self.blocklist) - 1  # as one line, words separated by spaces
        if chars > MAX_TEXT_CHARS:  # each word is matched against the whole vocabulary
            raise ConfigError(f"blocklist: expected at most {MAX_TEXT_CHARS} characters of words, received {chars}")
        if self.clip_weights is not None:
            check_clip_weights(self.clip_weights)
        if context_length is not None:
            self.fits(context_length)
        return self

    def fits(self, context_length: int) -> None:
        """The prompt, SOT and EOT must fit the model's context. Raises ConfigError."""
        if self.prompt_len > context_length - 2:
            raise ConfigError(
                f"prompt_len: expected at most {context_length - 2} (the model's context length "
                f"{context_length} minus SOT and EOT), received {self.prompt_len}"
            )

    def replace(self, **changes) -> InvertConfig:
        return dataclasses.replace(self, **changes)

    @property
    def readable(self) -> bool:
        """The readable style: no word twice and a readable order, besides its vocabulary and pruning."""
        return self.prompt_style == "readable"

    def resolved(self) -> InvertConfig:
        """The settings the engine runs with: the style's vocabulary and pruning applied (readable:
        dictionary words, pruning at READABLE_TOLERANCE unless prune_tolerance is set; max-score:
        any tokens the other filters allow, no pruning); custom: exactly as given."""
        if self.prompt_style == "readable":
            tol = self.prune_tolerance if self.prune_tolerance > 0 else READABLE_TOLERANCE
            return self.replace(dictionary_words=True, whole_words=True, prune_tolerance=tol)
        if self.prompt_style == "max-score":
            return self.replace(dictionary_words=False, words_only=False, prune_tolerance=0.0)
        return self


def check_clip_weights(weights) -> tuple[float, ...]:
    """Weights of a model's CLIPs: numbers in [0, 1], at least one above 0. Returns them normalised
    to sum 1. Raises ConfigError (their number is checked against the model when it loads)."""
    if isinstance(weights, (str, bytes)) or not isinstance(weights, (tuple, list)) or not weights:
        raise ConfigError(f"clip_weights: expected one number in [0, 1] per CLIP, received {quote_value(weights)}")
    for w in weights:
        CLIP_WEIGHT.check("clip_weights", w)
    total = float(sum(weights))
    if total <= 0:
        raise ConfigError(f"clip_weights: expected at least one weight above 0, received {quote_value(tuple(weights))}")
    return tuple(float(w) / total for w in weights)


CLIP_WEIGHT = Bound(0.0, 1.0, 0.05)  # each CLIP's weight; normalised to sum 1 when the model loads

# The app's early stop (the library default patience=0 runs every step): the planted and toy
# benchmarks gain almost nothing after 150 steps without a new best (BENCHMARKS.md).
APP_PATIENCE = 150
# The app's time budget when it runs on a CPU (pez_app.settings.app_defaults): a full-size CLIP
# takes ~1 s per step there (ViT-H-14), so 1000 steps would be ~30 min; a minute's best is shown.
APP_CPU_TIME_BUDGET = 60.0
PLATEAU_MIN_GAIN = 1e-4  # for patience: a rise of the best projected score smaller than this is no rise

# A search "looks stuck" when, after STUCK_MIN_STEPS steps, its best score is less than
# STUCK_MIN_GAIN above the mean score of its random start: a working search gains far more
# (toy world ~0.8, planted prompts ~0.7, real CLIPs ~0.2; a stuck toy run gained almost nothing).
# What is reachable is unknown for images, but a random prompt is a floor that costs nothing to
# measure (step 1 scores it). See pez.engine.optim.stuck_hint.
# A second sign, after refinement: when a few token swaps raise the search's best by more than
# STUCK_REFINE_GAIN, the search sat in a poor basin (the toy green triangle, prompt length 8,
# seed 0: search 0.06, refined 0.58, caption 0.96); elsewhere refinement gains 0.01-0.05.
# Unless pruning then lifts it by as much again (seed 1: refined 0.59, pruned to "green triangle"
# 0.96). See pez.engine.polish.polish_hint.
# Both gains are in units of the objective's scale (pez.engine.optim.Targets.scale: 1 for images
# alone; images to avoid add their weight, a text mixed into the target shrinks it), and a run
# whose best reaches STUCK_MAX_SCORE of that scale never gets the hint: with images to avoid at
# weight 3 refinement gains 0.15-0.2 on runs at 2.2-2.6 (scale 4), and since the readable-style
# polish the green triangle's refinement reaches 0.92-0.93 on seeds 0 and 1 (a good prompt).
STUCK_MIN_STEPS = 100
STUCK_MIN_GAIN = 0.05
STUCK_REFINE_GAIN = 0.1
STUCK_MAX_SCORE = 0.8
STUCK_HINT = "the search looks stuck: try another seed or more restarts (candidates)"

# Refinement (pez.engine.polish); REFINE_TOPK and REFINE_COMBOS tuned on the planted and toy benchmarks (BENCHMARKS.md).
REFINE_TOPK = 8  # candidate tokens per position, by linearised gain
REFINE_BATCH = 64  # at most this many candidate swaps per round (one batched forward)
REFINE_BATCH_MIN = 8  # at least this many; pez.engine.budget.refine_batch sizes each round in between
REFINE_VERIFY = 4  # best candidates per round decoded and honestly re-scored
REFINE_COMBOS = 6  # at most this many gaining swaps (at distinct positions) tried together

# The readable style (pez.engine.polish): a word whose removal costs less than READABLE_TOLERANCE
# is dropped (one at a time, the cheapest first), so the length follows the image; then up to
# ORDER_CANDIDATES orders of the words are scored in one batch and the best kept. Top-k
# alternatives are kept apart: two prompts whose word sets overlap more than DIVERSE_JACCARD
# (Jaccard: shared words / all words) count as one. Measured by bench/readable.py (BENCHMARKS.md).
READABLE_TOLERANCE = 0.005
ORDER_CANDIDATES = 24
DIVERSE_JACCARD = 0.5
# How the polish's time is split between its phases when several are on (pez.engine.budget): each
# phase gets its weight's share of what is left when it starts, so none eats another's time.
POLISH_SPLIT = {"refine": 0.6, "prune": 0.3, "order": 0.1}
# Short budgets (pez.engine.budget): the first step (one-off costs: compiling, masks, caches) is
# not used to predict the rate, the shares are planned from the end of the first step, and the
# search takes at least MIN_SEARCH_STEPS steps while the budget lasts (the polish gets what is
# left). A run that ends with fewer search steps says so (SHORT_BUDGET_HINT).
MIN_SEARCH_STEPS = 20
SHORT_BUDGET_HINT = "the time budget was too short for a real search (only {steps} steps): the prompt may be close to random; give it more time"

# The run's clock (pez.engine.budget). Polish (refine + prune) takes at most POLISH_SHARE of the
# run's wall time: at equal wall-clock time, searching 75% and refining 25% beat searching 100%
# on every benchmark of BENCHMARKS.md ("Settings at equal wall-clock time").
POLISH_SHARE = 0.25
# The polish's cost model, in search steps of one prompt (bench/polish_cost.py, CPU): a refine round
# of REFINE_BATCH_MIN swaps costs about REFINE_ROUND_STEPS (3.5 on ViT-H-14, 4.6 on ViT-B-32), each
# further prompt scored in a batch ITEM_STEPS (0.09 on ViT-H-14, 0.06 on ViT-B-32). It charges the
# polish of runs without a time budget (reproducible) and estimates the first round of budgeted ones.
REFINE_ROUND_STEPS = 4.0
ITEM_STEPS = 0.1
PLAN_STEPS = 5  # with a budget, the candidates are planned once these steps are timed
MIN_BUDGET_STEPS = 100  # a budget keeps the candidates that leave at least this many steps (one at least)
REPORT_SECONDS = 1.0  # a progress report at least this often, whatever report_every says

# Search precision "auto" on a CPU (pez.engine.accel), measured with bench/speed.py.
BF16_MIN_GAIN = 1.25  # bf16 must be at least this much faster than fp32 in the probe to be chosen
BF16_MIN_WIDTH = 256  # narrower text towers are overhead-bound on a CPU: bf16 buys nothing there

# On CUDA, a vision tower whose weights exceed this stays on the CPU between image encodings
# (ViT-bigG-14: 3.7 GB in fp16), so that PEZ's search, which needs only the text tower, fits 24 GB.
VISION_OFFLOAD_BYTES = 2 * 2**30


# ---------------------------------------------------------------------------------------------
# A regeneration

SIZE_MULTIPLE = 8  # the SD VAEs downsample by 8, so image sides must be multiples of 8
CFG_THRESHOLD = 1.0  # diffusers runs classifier-free guidance (and reads negative prompts) only above this


@dataclass(frozen=True)
class GenerateConfig:
    """Settings of one regeneration, checked when built; None means "the model pair's default"."""

    negative_prompt: str = setting("", "what to avoid (no effect at guidance 0)", "Negative prompt")
    seed: int = setting(0, "seed of the first image; image k uses seed+k", "Seed", Bound(0, 2**31 - 1))
    num_images: int = setting(1, "how many images", "Images", Bound(1, 8))
    steps: int | None = setting(None, "sampling steps", "Sampling steps", Bound(1, 100))
    guidance: float | None = setting(None, "classifier-free guidance scale", "Guidance", Bound(0.0, 30.0, 0.5))
    width: int | None = setting(None, "width in pixels", "Width", Bound(64, 2048, 8))
    height: int | None = setting(None, "height in pixels", "Height", Bound(64, 2048, 8))

    def __post_init__(self):
        if not isinstance(self.negative_prompt, str):
            raise ConfigError(f"negative_prompt: expected text, received {self.negative_prompt!r}")
        if len(self.negative_prompt) > MAX_TEXT_CHARS:
            raise ConfigError(
                f"negative_prompt: expected at most {MAX_TEXT_CHARS} characters, received {len(self.negative_prompt)}"
            )
        check_fields(self)
        for name in ("width", "height"):
            value = getattr(self, name)
            if value is not None and value % SIZE_MULTIPLE:
                raise ConfigError(f"{name}: expected a multiple of {SIZE_MULTIPLE}, received {value}")


def bounds(cls: type) -> dict[str, Bound]:
    """{field: Bound} of a config class's numeric settings."""
    return {f.name: f.metadata["about"].bound for f in dataclasses.fields(cls) if f.metadata["about"].bound}


BOUNDS: dict[str, Bound] = bounds(InvertConfig)
GENERATE_BOUNDS: dict[str, Bound] = bounds(GenerateConfig)

__all__ = [
    "APP_CPU_TIME_BUDGET",
    "APP_PATIENCE",
    "BOUNDS",
    "About",
    "Bound",
    "CONCAT_SEPARATOR",
    "GENERATE_BOUNDS",
    "GenerateConfig",
    "InvertConfig",
    "JUDGES",
    "MAX_ASPECT_RATIO",
    "MAX_IMAGES",
    "MAX_IMAGE_PIXELS",
    "MAX_TEXT_CHARS",
    "MIN_IMAGE_SIDE",
    "PRECISIONS",
    "PROMPT_STYLES",
    "STYLE_TEMPLATE",
    "about",
    "bounds",
    "check_clip_weights",
    "setting",
]
