"""The run's clock: a time budget planned over the search, its candidates and the polish, and the
time left that progress reports show.

A run has up to four phases: the search (PEZ steps), then refine, prune and order (pez.engine.polish).

- Polish is paid for out of the run's time, never on top of it: its phases together take
  at most POLISH_SHARE of the run, i.e. POLISH_SHARE / (1 - POLISH_SHARE) of what the search
  took (a third of it at 25%). Each phase that is on gets its POLISH_SPLIT weight's share of
  what is left when it starts (`begin`), so refinement cannot leave pruning nothing; a phase's
  first round may use the whole polish's time left (every phase that is on runs once at least).
- Short budgets: the first step carries one-off costs (compiling, vocabulary masks, caches), so
  it never predicts the rate, and the search's share is planned from the end of the first step
  (`work_start`); the budget itself counts from the end of the search's set-up (`restart`:
  vocabulary masks, which take seconds the first time a filter is used). The search takes at least MIN_SEARCH_STEPS steps while the run's budget lasts;
  a run that still ends with fewer gets SHORT_BUDGET_HINT (`short_hint`).
- With a budget T (`InvertConfig.time_budget`, seconds), "took" is wall-clock time: the search
  ends at (1 - POLISH_SHARE) T when there is a polish (at T when there is none), or earlier by
  its steps or early stop; the polish then ends by the rule above and at T at the latest; the
  best prompt at the deadline is returned. A refine round or prune pass starts only when its
  measured cost (the last one's; the first one's estimated from the search's step time) fits
  before the deadline, and each round's number of swaps is sized from the measured cost of the
  last one's forward (`refine_batch`: small batches for big text towers on a CPU, 64 on a GPU).
  The budget counts from the end of the search's set-up in `pez.engine.optim.optimize` (the
  model is loaded, the targets encoded and the vocabulary mask built before it). Timing decides, so a budgeted run depends on the machine's speed.
- Without a budget, the run stays reproducible (same seed, settings and device, same prompt):
  "took" is counted in search steps of one prompt, and each refine round and prune pass is
  charged its cost in those units from a fixed model measured by bench/polish_cost.py
  (REFINE_ROUND_STEPS for a round of REFINE_BATCH_MIN swaps, ITEM_STEPS per further prompt
  scored in a batch on a CPU); the batch is REFINE_BATCH_MIN on a CPU and REFINE_BATCH on a GPU.
- A time limit L (`InvertConfig.time_limit`, seconds: a server's cap on one run) is not a plan:
  without a budget the run is planned in steps as above, and stays reproducible as long as it
  ends before L. Only a run that would pass it is cut: the search ends when its next step would
  pass (1 - POLISH_SHARE) L (L without a polish), and the polish is then timed to end by L as
  with a budget; a polish that starts in time has each round or pass admitted only when its
  measured cost fits before L. Either way the best prompt is returned and `limited` says the
  limit ended the run (StepReport.limited, the result's stats["limited"]). With a budget T as
  well, the run is planned for min(T, L), and `limited` is set when L < T and the run hit it.
  The limit never changes the candidates kept (it caps a run; it does not reshape it).
- Candidates: with a budget on a CPU (where a step's cost grows with the candidates), once the
  first PLAN_STEPS steps are timed, a budget that leaves fewer than MIN_BUDGET_STEPS steps keeps
  only as many candidates (the best ones) as leave MIN_BUDGET_STEPS (at least one): a few hundred
  steps of one prompt beat a few dozen of four.

All times come from `clock` (time.perf_counter unless a test passes a fake one).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..config import (
    ITEM_STEPS,
    MIN_BUDGET_STEPS,
    MIN_SEARCH_STEPS,
    PLAN_STEPS,
    POLISH_SHARE,
    POLISH_SPLIT,
    REFINE_BATCH,
    REFINE_BATCH_MIN,
    REFINE_ROUND_STEPS,
    REPORT_SECONDS,
    SHORT_BUDGET_HINT,
)

Clock = Callable[[], float]


@dataclass
class Plan:
    """When each phase of one run ends, and how long the rest will take.

    budget: seconds for the whole run (0: none); steps: the search's step limit; polish: refine or
    prune will run after the search; candidates: prompts searched in parallel; scales: whether a
    step's cost grows with the candidates (True on a CPU); limit: a hard cap in seconds that is
    no plan (0: none; see the module's docstring)."""

    budget: float
    steps: int
    polish: bool
    candidates: int = 1
    scales: bool = True
    clock: Clock = time.perf_counter
    limit: float = 0.0
    limited: bool = field(init=False, default=False)  # the limit ended the search or held back the polish
    start: float = field(init=False)
    step_seconds: float = field(init=False, default=math.nan)  # mean seconds per search step so far
    search_seconds: float = field(init=False, default=math.nan)  # the search's wall time, once it ended
    polish_end: float = field(init=False, default=math.inf)  # deadline of refine and prune (with a budget)
    polish_units: float = field(init=False, default=math.inf)  # what they may spend without one (prompt steps)
    polish_spent: float = field(init=False, default=0.0)
    work_start: float = field(init=False)  # when the first step ended (its one-off costs are behind)
    phase: str = field(init=False, default="")  # the polish phase under way
    phase_end: float = field(init=False, default=math.inf)  # its deadline (with a budget)
    phase_units: float = field(init=False, default=math.inf)  # its limit in polish_spent units (without)
    _cut: bool = field(init=False, default=False)  # the limit ended the search
    timed_out: bool = field(init=False, default=False)  # the clock (budget or limit) ended the search
    _first: bool = field(init=False, default=False)  # the phase's first round is still to come
    _measured: dict = field(init=False, default_factory=dict)  # "round"/"pass" -> (size, seconds) of the last
    _steps_at: tuple[int, float] = field(init=False, default=(0, 0.0))  # (step, time) of the first timed step
    _last_report: float = field(init=False, default=-math.inf)

    def __post_init__(self):
        self.restart()

    def restart(self) -> None:
        """The budget counts from now: called when the search's set-up (vocabulary masks, the
        projector, the start prompts) is done, so one-off costs outside the search are not spent
        from it."""
        self.start = self.clock()
        self.work_start = self.start
        self._steps_at = (0, self.start)
        self._last_report = -math.inf

    # -- the deadlines -------------------------------------------------------------------------

    @property
    def end(self) -> float:
        """The run's deadline: the budget's or the limit's, the earlier (inf without either)."""
        return self.start + self.seconds if self.seconds > 0 else math.inf

    @property
    def limit_binds(self) -> bool:
        """True when the limit, not the budget, sets the run's deadline."""
        return self.limit > 0 and (self.budget <= 0 or self.limit < self.budget)

    @property
    def search_end(self) -> float:
        """When the search must end to leave the polish its share of the run's deadline."""
        if self.end == math.inf:
            return math.inf
        return self.work_start + (1 - POLISH_SHARE if self.polish else 1.0) * (self.end - self.work_start)

    @property
    def seconds(self) -> float:
        """Seconds the run may take: the budget or the limit, the shorter (0: neither)."""
        return min((t for t in (self.budget, self.limit) if t > 0), default=0.0)

    def now(self) -> float:
        return self.clock()

    def elapsed(self) -> float:
        return self.clock() - self.start

    # -- the search ----------------------------------------------------------------------------

    def search_over(self, step: int) -> bool:
        """True when the search must not take another step: its steps are done, or the next step
        (at the mean step time of the steps after the first) would end after the search's deadline;
        before MIN_SEARCH_STEPS steps, only when the run's budget is spent."""
        if step >= self.steps:
            return True
        if self.search_end == math.inf:
            return False
        now = self.clock()
        if step < MIN_SEARCH_STEPS:
            over = now >= self.end
        else:
            t = self.step_seconds if step > 1 and math.isfinite(self.step_seconds) else 0.0
            over = now + t > self.search_end
        if over and self.limit_binds:
            self.limited = self._cut = True  # the polish is timed from here (`timed`)
        self.timed_out = over
        return over

    def stepped(self, step: int) -> None:
        """The search finished step `step`: update the mean step time. The first step is left out
        once later ones are timed (it carries one-off costs: compiling, the first scan, caches)."""
        now = self.clock()
        if step == 1:
            self._steps_at = (1, now)
            self.step_seconds = now - self.start
            self.work_start = now
        elif step > 1:
            first, t1 = self._steps_at
            self.step_seconds = (now - t1) / (step - first)

    def keep_candidates(self, step: int) -> int:
        """How many candidates the search should keep from now on (the current count unless a
        budget leaves too few steps for them); decided once, right after step PLAN_STEPS."""
        n = self.candidates
        if step != PLAN_STEPS or n == 1 or not self.scales or self.budget <= 0:
            return n
        left = (self.search_end - self.clock()) / max(self.step_seconds, 1e-9)  # steps at n candidates
        if left >= MIN_BUDGET_STEPS:
            return n
        keep = max(1, min(n, int(n * left / MIN_BUDGET_STEPS)))  # a step costs about n times one prompt's
        self.candidates = keep
        if keep < n:
            self.step_seconds *= keep / n
        return keep

    def search_ended(self, steps: int) -> None:
        """The search is over after `steps` steps: fix what the polish may spend (its share of the
        run: seconds within the budget, or search steps of one prompt without one)."""
        now = self.clock()
        self.search_seconds = now - self.start
        ratio = POLISH_SHARE / (1 - POLISH_SHARE)
        self.polish_end = min(self.end, now + self.search_seconds * ratio)
        self.polish_units = steps * (self.candidates if self.scales else 1) * ratio

    def short_hint(self, steps: int) -> str:
        """SHORT_BUDGET_HINT when the clock (a budget or the limit) ended the search before
        MIN_SEARCH_STEPS steps; not when early stop, the user or the steps ended it."""
        if self.timed_out and steps < min(MIN_SEARCH_STEPS, self.steps):
            return SHORT_BUDGET_HINT.format(steps=steps)
        return ""

    # -- the polish ----------------------------------------------------------------------------

    def begin(self, phase: str, phases: list[str]) -> None:
        """Polish phase `phase` starts; `phases` are those still to run, it first: it gets its
        POLISH_SPLIT weight's share of the polish's time (or units) left."""
        share = POLISH_SPLIT[phase] / sum(POLISH_SPLIT[p] for p in phases)
        self.phase, self._first = phase, True
        if self.timed:
            now = self.clock()
            self.phase_end = now + max(self.polish_end - now, 0.0) * share
        else:
            self.phase_units = self.polish_spent + max(self.polish_units - self.polish_spent, 0.0) * share

    @property
    def timed(self) -> bool:
        """True when the polish is limited by wall-clock time (a budget, or the limit once it
        ended the search), not by modelled costs."""
        return self.budget > 0 or self._cut

    def admit(self, kind: str, size: int) -> bool:
        """May a refine round of `size` swaps ("round") or a prune or order pass over `size` prompts
        ("pass") start? When its expected cost fits in the phase's share (see `begin`); the
        phase's first may use all the polish has left."""
        cost = self._expected(kind, size)
        first, self._first = self._first, False
        if self.timed:
            end = self.polish_end if first else min(self.phase_end, self.polish_end)
            now = self.clock()
            ok = now + cost <= end
            if not ok and self.limit_binds and now + cost > self.start + self.limit:
                self.limited = True
        else:
            units = self.polish_units if first else min(self.phase_units, self.polish_units)
            ok = self.polish_spent + cost <= units
            if ok and self.limit > 0 and self.clock() + self._seconds(kind, size) > self.end:
                ok, self.limited = False, True  # the limit holds back what the plan allows
        self._first = first and not ok  # a refused first round leaves the next try first
        return ok

    def record(self, kind: str, size: int, seconds: float) -> None:
        """A round or pass of `size` took `seconds`: remember it (the next one's expected cost)
        and charge it (without a budget, its modelled cost)."""
        self._measured[kind] = (size, seconds)
        if not self.timed:
            self.polish_spent += self._modelled(kind, size)

    def next_batch(self, batch: int, grad_seconds: float, forward_seconds: float) -> int:
        """Swaps in the next refine round: sized from the measured costs with a budget, fixed
        (by device) without one."""
        if not self.timed:
            return REFINE_BATCH_MIN if self.scales else REFINE_BATCH
        return refine_batch(batch, grad_seconds, forward_seconds)

    def first_batch(self) -> int:
        return REFINE_BATCH_MIN if (self.timed or self.scales) else REFINE_BATCH

    def _expected(self, kind: str, size: int) -> float:
        """The cost the plan charges: seconds when timed, else modelled units."""
        return self._seconds(kind, size) if self.timed else self._modelled(kind, size)

    def _seconds(self, kind: str, size: int) -> float:
        """Expected seconds: the last one's measured time, or its modelled cost at the search's rate."""
        if kind in self._measured:
            last_size, seconds = self._measured[kind]
            return seconds * (size / last_size if kind == "pass" and last_size else 1.0)
        return self._modelled(kind, size) * self.prompt_step_seconds()  # before the first is timed

    def _modelled(self, kind: str, size: int) -> float:
        """Cost in search steps of one prompt: a round (gradient pass, the swaps' forward, combos
        and checks) or a pass (one forward of `size` prompts)."""
        per = ITEM_STEPS if self.scales else 0.0
        if kind == "round":
            return REFINE_ROUND_STEPS + per * max(size - REFINE_BATCH_MIN, 0)
        return 0.5 + per * size

    def prompt_step_seconds(self) -> float:
        """Seconds of one search step for a single prompt (the step time over the candidates
        where their cost adds up)."""
        t = self.step_seconds if math.isfinite(self.step_seconds) else 0.0
        return t / self.candidates if self.scales else t

    # -- progress ------------------------------------------------------------------------------

    def report_due(self) -> bool:
        """True at most every REPORT_SECONDS: a progress report is owed even between report_every steps."""
        now = self.clock()
        if now - self._last_report >= REPORT_SECONDS:
            self._last_report = now
            return True
        return False

    def reported(self) -> None:
        self._last_report = self.clock()

    def eta(self, phase: str, done: int, total: int, unit_seconds: float = math.nan) -> float:
        """Seconds until the run ends, estimated: the rest of the current phase at its measured
        rate (`unit_seconds` per step/round/pass; the search's mean step time in the search), plus
        the polish's share when it is still to come; never past the budget. nan when unknown."""
        now = self.clock()
        if phase == "search":
            t = self.step_seconds
            if not math.isfinite(t):
                return self.end - now if math.isfinite(self.end) else math.nan
            search_left = min((self.steps - done) * t, max(self.search_end - now, 0.0))
            left = search_left
            if self.polish:  # at most its share (without a budget, modelled: an estimate)
                search_total = now - self.start + search_left
                left += search_total * POLISH_SHARE / (1 - POLISH_SHARE)
            return max(min(left, self.end - now), 0.0)
        if self.timed:
            polish_left = max(self.polish_end - now, 0.0)
        else:  # the units left, at the search's seconds per prompt step; never past the limit
            polish_left = max(self.polish_units - self.polish_spent, 0.0) * self.prompt_step_seconds()
            polish_left = min(polish_left, max(self.end - now, 0.0))
        if math.isfinite(unit_seconds) and total >= done:
            return min((total - done) * unit_seconds, polish_left)
        return polish_left


def refine_batch(batch: int, grad_seconds: float, forward_seconds: float) -> int:
    """The next refine round's number of swaps: about as many as one gradient pass costs to score.

    From this round's `batch` swaps scored in `forward_seconds` and its gradient pass of
    `grad_seconds`: the cost per swap is taken as forward_seconds / batch, which overestimates it
    where a forward's cost hardly grows with its batch (a GPU), so there the batch doubles round
    by round up to REFINE_BATCH. Rounded to a power of two in [REFINE_BATCH_MIN, REFINE_BATCH]."""
    if batch <= 0 or not (forward_seconds > 0 and math.isfinite(grad_seconds)):
        return REFINE_BATCH_MIN
    want = batch * grad_seconds / forward_seconds
    if want <= REFINE_BATCH_MIN:
        return REFINE_BATCH_MIN
    b = 2 ** round(math.log2(want))
    return int(min(max(b, REFINE_BATCH_MIN), REFINE_BATCH))


__all__ = ["Clock", "Plan", "refine_batch"]
