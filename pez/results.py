"""What a search reports and returns: small dataclasses, and nothing else (a leaf module).

A search streams `StepReport`s (every `report_every` steps, then one per refine/prune round) and
its last report carries the `InversionResult`. Prompt concatenation wraps those in
`ConcatReport`s and ends with a `ConcatResult`. Front-ends (CLI, app, batch) turn them into
text, plots and JSON lines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .config import InvertConfig


@dataclass
class ScoredPrompt:
    prompt: str
    score: float


@dataclass
class InversionResult:
    """Outcome of a PEZ run. `prompt`/`score` are the best decoded text and its honest score."""

    prompt: str
    score: float
    top_k: list[ScoredPrompt]  # distinct prompts, best first
    steps_run: int
    elapsed: float  # seconds
    stopped: bool  # True when stopped before the last step
    seed: int
    model: str
    config: InvertConfig
    history: list[tuple[int, float, float]] = field(default_factory=list)  # (step, loss, best score)
    # Diagnostics: scan fraction, per-phase scores, "limited" (1.0: the time limit ended the run).
    stats: dict[str, float] = field(default_factory=dict)
    hint: str = ""  # advice when the run went badly, e.g. pez.config.STUCK_HINT
    # The prompt's honest score in each CLIP alone, and each CLIP's weight in `score` (their weighted
    # sum): one entry for a single CLIP, several for a joint search (SDXL's ViT-L and bigG).
    clip_scores: dict[str, float] = field(default_factory=dict)
    clip_weights: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        cfg = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(self.config).items()}
        return {
            "prompt": self.prompt,
            "score": self.score,
            "top_k": [vars(p) for p in self.top_k],
            "steps_run": self.steps_run,
            "elapsed": self.elapsed,
            "stopped": self.stopped,
            "seed": self.seed,
            "model": self.model,
            "config": cfg,
            "hint": self.hint,
            "stats": dict(self.stats),
            "clip_scores": dict(self.clip_scores),
            "clip_weights": dict(self.clip_weights),
        }


@dataclass
class StepReport:
    """Progress of a running optimisation, yielded every `report_every` steps and at the end."""

    step: int  # steps completed (refine: rounds; prune: tokens removed)
    steps: int  # steps planned (refine: rounds at most; prune: tokens that could go)
    loss: float  # mean loss over candidates on this step's batch
    current_prompt: str  # the best candidate's projected prompt this step
    current_score: float  # its score against all targets
    best_prompt: str  # best decoded text so far
    best_score: float  # its honest score
    elapsed: float  # seconds since the start
    steps_per_sec: float  # the phase's rate: steps, rounds or tokens removed per second (0: not measured yet)
    done: bool = False
    result: InversionResult | None = None  # set on the final report
    phase: str = "search"  # "search" (PEZ), "refine" (token swaps), "prune" (dropping tokens), "order" (word order)
    hint: str = ""  # advice for the user, e.g. "the search looks stuck: ..." (pez.config.STUCK_HINT)
    eta: float = math.nan  # estimated seconds until the run ends (all phases; nan: not known yet)
    time_budget: float = 0.0  # seconds the run may take: its time budget or time limit, the shorter (0: neither)
    limited: bool = False  # the run's time limit (InvertConfig.time_limit) ended the search or held back the polish

    @property
    def unit(self) -> str:
        """What `step`, `steps` and `steps_per_sec` count in this phase."""
        return {"refine": "rounds", "prune": "tokens removed", "order": "rounds"}.get(self.phase, "steps")


@dataclass
class ConcatResult:
    prompt: str  # the joined prompt
    score: float  # its mean cosine against all images
    parts: list[InversionResult]  # one per image, in order
    stopped: bool = False


@dataclass
class ConcatReport:
    """Progress of a concatenation: which image is being inverted and how that run goes."""

    index: int  # image being inverted (0-based)
    total: int
    report: StepReport
    prompts: list[str] = field(default_factory=list)  # best prompt of each finished image
    done: bool = False
    result: ConcatResult | None = None


__all__ = ["ConcatReport", "ConcatResult", "InversionResult", "ScoredPrompt", "StepReport"]
