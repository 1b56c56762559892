"""The run's clock (pez.engine.budget): a time budget over the search, its candidates and the
polish, the polish's share without a budget, refine batch sizes, progress fields. Every time here
comes from a fake clock: nothing depends on how fast this machine is."""

from __future__ import annotations

import math

import pytest

import pez
from pez.cli import build_parser, config_from_args
from pez.config import ITEM_STEPS, MIN_BUDGET_STEPS, POLISH_SHARE, REFINE_BATCH, REFINE_BATCH_MIN, REFINE_ROUND_STEPS
from pez.engine.budget import PLAN_STEPS, Plan, refine_batch


class ManualClock:
    """A clock that moves only when told."""

    def __init__(self, t: float = 100.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class TickClock:
    """A clock that moves `tick` seconds every time it is read: a run's clock reads are
    deterministic, so runs on it are too, however fast the machine is."""

    def __init__(self, tick: float):
        self.t, self.tick = 0.0, tick

    def __call__(self) -> float:
        self.t += self.tick
        return self.t


def _search(plan: Plan, clock: ManualClock, step_seconds: float) -> int:
    step = 0
    while not plan.search_over(step):
        clock.advance(step_seconds)
        step += 1
        plan.stepped(step)
    return step


# ---------------------------------------------------------------------------------------------
# The plan


def test_search_ends_at_its_share_of_the_budget_and_polish_at_the_budget():
    clock = ManualClock()
    plan = Plan(budget=40, steps=10_000, polish=True, clock=clock)
    steps = _search(plan, clock, 1.0)
    assert steps == 30 and clock.t == 130.0  # (1 - POLISH_SHARE) of 40 s, never past it
    plan.search_ended(steps)
    assert plan.polish_end == 140.0  # the rest of the budget (= a third of the search's time)
    assert plan.admit("round", REFINE_BATCH_MIN)  # first round: modelled from the step time (4 s)
    clock.advance(3.0)
    plan.record("round", REFINE_BATCH_MIN, 3.0)
    clock.advance(4.5)  # t = 137.5: a 3 s round would end at 140.5
    assert not plan.admit("round", REFINE_BATCH_MIN)
    assert plan.admit("pass", 4)  # a pass: before it is timed, 0.5 + 4 ITEM_STEPS steps of 1 s
    assert not plan.admit("pass", 40)


def test_without_polish_the_search_has_the_whole_budget_and_steps_still_cap_it():
    clock = ManualClock()
    assert _search(Plan(budget=40, steps=10_000, polish=False, clock=clock), clock, 1.0) == 40
    clock = ManualClock()
    assert _search(Plan(budget=40, steps=12, polish=True, clock=clock), clock, 1.0) == 12


def test_without_a_budget_the_polish_is_charged_modelled_costs_not_time():
    """Reproducible: what the polish may do depends on the steps run, not on the seconds."""
    for seconds in (0.001, 100.0):
        clock = ManualClock()
        plan = Plan(budget=0, steps=20, polish=True, clock=clock)
        _search(plan, clock, seconds)
        plan.search_ended(20)
        assert plan.polish_units == pytest.approx(20 * POLISH_SHARE / (1 - POLISH_SHARE))
        rounds = 0
        while plan.admit("round", plan.first_batch()):
            plan.record("round", plan.first_batch(), 1e6)  # the seconds do not count
            rounds += 1
        assert rounds == int(plan.polish_units // REFINE_ROUND_STEPS) == 1
        assert plan.admit("pass", 16) and not plan.admit("pass", 40)  # 0.5 + 16 * ITEM_STEPS fits, 40 not
        assert plan.next_batch(8, 1.0, 0.001) == REFINE_BATCH_MIN  # fixed on a CPU
    gpu = Plan(budget=0, steps=20, polish=True, scales=False)
    assert gpu.first_batch() == gpu.next_batch(8, 1.0, 9.0) == REFINE_BATCH
    assert ITEM_STEPS > 0


def test_a_tight_budget_keeps_the_best_candidates_that_leave_enough_steps():
    clock = ManualClock()
    plan = Plan(budget=100, steps=10_000, polish=False, candidates=4, clock=clock)
    for step in range(1, 6):
        clock.advance(2.0)  # 2 s per step of 4 candidates
        plan.stepped(step)
        kept = plan.keep_candidates(step)
    left = (200 - 110) / 2.0  # steps of 4 candidates left
    assert left < MIN_BUDGET_STEPS and kept == int(4 * left / MIN_BUDGET_STEPS) == 1
    assert plan.step_seconds == pytest.approx(0.5)  # one candidate's steps are a quarter of four's
    roomy = Plan(budget=10_000, steps=10_000, polish=False, candidates=4, clock=ManualClock())
    gpu = Plan(budget=100, steps=10_000, polish=False, candidates=4, scales=False, clock=ManualClock())
    for p in (roomy, gpu):
        p.clock.advance(10.0)
        p.stepped(5)
        assert p.keep_candidates(5) == 4


def test_eta_counts_the_steps_left_the_polish_and_never_passes_the_budget():
    clock = ManualClock()
    plan = Plan(budget=0, steps=100, polish=False, clock=clock)
    assert math.isnan(plan.eta("search", 0, 100))  # nothing timed yet, no budget
    _ = [plan.stepped(s) for s in (1,)]
    clock.advance(1.0)
    plan.stepped(2)
    assert plan.eta("search", 2, 100) == pytest.approx(98.0)
    polish = Plan(budget=0, steps=100, polish=True, clock=(c := ManualClock()))
    c.advance(1.0)
    polish.stepped(1)
    c.advance(1.0)
    polish.stepped(2)
    assert polish.eta("search", 2, 100) == pytest.approx(98 + 100 * POLISH_SHARE / (1 - POLISH_SHARE))
    budget = Plan(budget=30, steps=10_000, polish=True, clock=(c := ManualClock()))
    c.advance(1.0)
    budget.stepped(1)
    c.advance(1.0)
    budget.stepped(2)
    assert budget.eta("search", 2, 10_000) == pytest.approx(28.0)  # the budget, not 10,000 steps


def test_refine_batch_fits_one_gradient_pass():
    assert refine_batch(8, 0.9, 0.9) == 8  # ViT-H-14 on a CPU: a forward of 8 costs a gradient pass
    assert refine_batch(8, 0.02, 0.01) == 16  # a GPU: the forward hardly grows with the batch...
    assert refine_batch(16, 0.02, 0.011) == 32
    assert refine_batch(32, 0.02, 0.012) == REFINE_BATCH  # ...so it doubles up to the cap
    assert refine_batch(64, 0.02, 0.001) == REFINE_BATCH and refine_batch(8, 0.1, 10.0) == REFINE_BATCH_MIN
    assert refine_batch(8, 1.0, 0.0) == REFINE_BATCH_MIN  # nothing measured


def test_report_due_at_most_every_report_seconds():
    clock = ManualClock()
    plan = Plan(budget=0, steps=10, polish=False, clock=clock)
    plan.reported()
    clock.advance(0.5)
    assert not plan.report_due()
    clock.advance(0.6)
    assert plan.report_due() and not plan.report_due()


# ---------------------------------------------------------------------------------------------
# Whole runs on a fake clock


def _run(clip, images, config, clock):
    from pez.engine.optim import optimize
    from pez.inversion import image_targets

    return list(optimize(clip, image_targets(clip, images), config, clock=clock))


def test_a_budgeted_run_ends_within_its_budget_with_every_phase(tiny_clip, images):
    cfg = pez.InvertConfig(prompt_len=5, steps=10_000, time_budget=4.0, refine_steps=1_000, seed=0)
    clock = TickClock(0.005)
    reports = _run(tiny_clip, images[:1], cfg, clock)
    res = reports[-1].result
    assert not res.stopped and res.steps_run < 10_000 and res.prompt
    assert res.elapsed <= 4.0 + 0.05  # the fake clock: one unit's misestimate at most
    assert res.stats["search_seconds"] <= (1 - POLISH_SHARE) * 4.0 + 0.05
    assert res.stats["refine_rounds"] >= 1
    phases = [r.phase for r in reports[:-1]]
    assert phases[0] == "search" and "refine" in phases and phases.index("refine") > phases.index("search")
    assert all(r.time_budget == 4.0 for r in reports)
    assert all(math.isfinite(r.eta) and 0 <= r.eta <= 4.0 for r in reports[2:])
    assert all(r.steps_per_sec > 0 for r in reports[1:] if r.phase != "search" or r.step)  # a real rate in every phase
    assert reports[-1].eta == 0.0 and reports[0].step == 0


def test_a_tight_budget_on_many_candidates_keeps_the_best(tiny_clip, images):
    cfg = pez.InvertConfig(prompt_len=4, steps=10_000, candidates=4, time_budget=2.0, refine_steps=0, prune_tolerance=0)
    res = _run(tiny_clip, images[:1], cfg, TickClock(0.01))[-1].result
    assert res.stats["candidates_kept"] < 4 and res.prompt and math.isfinite(res.score)
    assert res.score == pytest.approx(pez.score_texts(tiny_clip, [res.prompt], images[:1])[0], abs=1e-4)
    # The kept candidates go on learning: their loss keeps moving after the cut.
    after = [loss for step, loss, _ in res.history if step > PLAN_STEPS]
    assert len(after) > 5 and len(set(after)) > 1


def test_runs_without_a_budget_stay_reproducible_with_polish(tiny_clip, images):
    cfg = pez.InvertConfig(prompt_len=5, steps=30, refine_steps=50, seed=3)
    slow, fast = (_run(tiny_clip, images[:1], cfg, TickClock(t))[-1].result for t in (0.5, 1e-5))
    assert (slow.prompt, slow.score) == (fast.prompt, fast.score)
    assert slow.stats["refine_rounds"] == fast.stats["refine_rounds"] >= 1


def test_the_budget_is_a_setting_and_a_flag():
    assert pez.InvertConfig().time_budget == 0.0
    args = build_parser().parse_args(["invert", "x.png", "--time", "60"])
    assert config_from_args(args).time_budget == 60.0
    assert config_from_args(build_parser().parse_args(["distill", "x", "--time-budget", "5"])).time_budget == 5.0
    with pytest.raises(pez.ConfigError, match="time_budget"):
        pez.InvertConfig(time_budget=-1.0)
    assert pez.StepReport(0, 1, 0.0, "", 0.0, "", 0.0, 0.0, 0.0, phase="refine").unit == "rounds"


# ---------------------------------------------------------------------------------------------
# Short budgets (issue 24, item 2) and the polish's split between its phases (issue 22)


def test_a_slow_first_step_does_not_end_a_short_budget():
    """`--time 2` on the toy: the first step took 1.5 s (one-off costs), later ones 10 ms. The
    first step no longer predicts the rate and the shares are planned from its end."""
    from pez.config import MIN_SEARCH_STEPS

    clock = ManualClock(0.0)
    plan = Plan(budget=2.0, steps=10_000, polish=True, clock=clock)
    step = 0
    while not plan.search_over(step):
        clock.advance(1.5 if step == 0 else 0.01)
        step += 1
        plan.stepped(step)
    assert step >= MIN_SEARCH_STEPS and clock.t <= 2.0
    assert plan.search_end == pytest.approx(1.5 + (1 - POLISH_SHARE) * 0.5)  # from the first step's end
    assert plan.short_hint(step) == ""


def test_a_budget_too_short_for_a_search_says_so():
    clock = ManualClock(0.0)
    plan = Plan(budget=2.0, steps=10_000, polish=True, clock=clock)
    steps = _search(plan, clock, 0.5)  # 4 steps fill the whole budget
    assert steps == 4  # the minimum search runs to the run's end, not to the search's share
    assert "too short" in plan.short_hint(steps) and "4 steps" in plan.short_hint(steps)
    assert Plan(budget=0.0, steps=3, polish=False).short_hint(3) == ""  # no budget: the steps asked for


def test_only_the_clock_ending_a_short_search_gets_the_short_budget_hint():
    """Early stop (or Stop) after 5 steps of a 60 s budget is not a budget too short."""
    clock = ManualClock(0.0)
    plan = Plan(budget=60.0, steps=10_000, polish=True, clock=clock)
    for step in range(5):  # the loop asks before each step; early stop then breaks out of it
        assert not plan.search_over(step)
        clock.advance(0.01)
        plan.stepped(step + 1)
    plan.search_ended(5)
    assert plan.short_hint(5) == ""


def test_an_early_stopped_budgeted_run_has_no_short_budget_hint(tiny_clip, images):
    cfg = pez.InvertConfig(prompt_len=4, steps=10_000, time_budget=600.0, patience=2, seed=0)
    res = _run(tiny_clip, images[:1], cfg, TickClock(0.01))[-1].result
    assert res.steps_run < 20 and not res.stopped  # early stop ended it, with most of the budget left
    assert "too short" not in res.hint


def test_a_short_budget_run_reports_a_short_search(tiny_clip, images):
    cfg = pez.InvertConfig(prompt_len=4, steps=10_000, time_budget=2.0, seed=0)
    res = _run(tiny_clip, images[:1], cfg, TickClock(0.2))[-1].result
    assert res.steps_run < 20 and "too short" in res.hint


def test_each_polish_phase_gets_its_share():
    from pez.config import POLISH_SPLIT

    clock = ManualClock(0.0)
    plan = Plan(budget=40.0, steps=10_000, polish=True, clock=clock)
    _search(plan, clock, 1.0)
    plan.search_ended(30)
    phases = ["refine", "prune", "order"]
    plan.begin("refine", phases)
    assert plan.phase_end == pytest.approx(30 + 10 * POLISH_SPLIT["refine"] / sum(POLISH_SPLIT.values()))
    plan.record("round", REFINE_BATCH_MIN, 1.0)
    while plan.admit("round", REFINE_BATCH_MIN):  # refinement would take every second it is given
        clock.advance(1.0)
    assert clock.t <= plan.phase_end
    plan.begin("prune", phases[1:])
    assert plan.admit("pass", 8)  # pruning still has its share
    share = POLISH_SPLIT["prune"] / (POLISH_SPLIT["prune"] + POLISH_SPLIT["order"])
    assert plan.phase_end == pytest.approx(clock.t + (40 - clock.t) * share)
    # Without a budget the same split holds in modelled units.
    plan = Plan(budget=0.0, steps=100, polish=True)
    plan.search_ended(100)
    plan.begin("refine", phases)
    while plan.admit("round", REFINE_BATCH_MIN):
        plan.record("round", REFINE_BATCH_MIN, 0.0)
    assert plan.polish_spent <= plan.polish_units * POLISH_SPLIT["refine"] / sum(POLISH_SPLIT.values()) + 1e-9
    plan.begin("prune", phases[1:])
    assert plan.admit("pass", 16)


@pytest.mark.parametrize("budget", [0.0, 4.0])
def test_with_refine_and_prune_on_pruning_runs(tiny_clip, images, budget):
    """Issue 22: refinement used to spend the whole polish share, leaving pruning none."""
    cfg = pez.InvertConfig(
        prompt_len=8, steps=40 if not budget else 10_000, time_budget=budget, refine_steps=1_000,
        prune_tolerance=0.01, prompt_style="custom", seed=0,
    )  # fmt: skip
    res = _run(tiny_clip, images[:1], cfg, TickClock(0.002))[-1].result
    assert res.stats["refine_rounds"] >= 1 and res.stats["prune_passes"] >= 1


# ---------------------------------------------------------------------------------------------
# A time limit (issue 25): a hard cap that is no plan, so a run that ends before it is reproducible


def test_a_far_limit_leaves_the_plan_in_steps_and_modelled_polish():
    """Without a budget, a limit the run does not reach changes no decision of the plan."""
    runs = []
    for limit in (0.0, 1e6):
        clock = ManualClock()
        plan = Plan(budget=0, steps=20, polish=True, clock=clock, limit=limit)
        steps = _search(plan, clock, 1.0)
        plan.search_ended(steps)
        plan.begin("refine", ["refine", "prune"])
        admitted = []
        while (ok := plan.admit("round", REFINE_BATCH_MIN)) and len(admitted) < 50:
            admitted.append(ok)
            clock.advance(3.0)
            plan.record("round", REFINE_BATCH_MIN, 3.0)
        runs.append((steps, len(admitted), plan.polish_spent, plan.timed, plan.limited))
    assert runs[0] == runs[1] and runs[0][0] == 20 and runs[0][1] >= 1 and runs[0][3:] == (False, False)


def test_a_limit_the_search_would_pass_ends_it_at_its_share_and_times_the_polish():
    clock = ManualClock()
    plan = Plan(budget=0, steps=10_000, polish=True, clock=clock, limit=40)
    assert not plan.timed and not plan.limited  # planned in steps until the limit is near
    steps = _search(plan, clock, 1.0)
    assert steps == 30 and clock.t == 130.0  # (1 - POLISH_SHARE) of the limit: the polish keeps its share
    assert plan.limited and plan.timed
    plan.search_ended(steps)
    assert plan.polish_end == 140.0  # the polish ends by the limit
    plan.begin("refine", ["refine"])
    assert plan.admit("round", REFINE_BATCH_MIN)
    clock.advance(4.0)
    plan.record("round", REFINE_BATCH_MIN, 4.0)
    clock.advance(3.0)  # t = 137: a 4 s round would pass the limit
    assert not plan.admit("round", REFINE_BATCH_MIN)
    # Without a polish the search has it all.
    clock = ManualClock()
    plan = Plan(budget=0, steps=10_000, polish=False, clock=clock, limit=40)
    assert _search(plan, clock, 1.0) == 40 and plan.limited


def test_a_limit_holds_back_a_polish_round_that_would_pass_it():
    """The search ended by its steps in time; the polish (planned in modelled units) runs until a
    round's measured cost would pass the limit."""
    clock = ManualClock()
    plan = Plan(budget=0, steps=60, polish=True, clock=clock, limit=80)
    assert _search(plan, clock, 1.0) == 60 and not plan.limited  # t = 160, the search inside its share
    plan.search_ended(60)
    plan.begin("refine", ["refine"])
    rounds = 0
    while plan.admit("round", REFINE_BATCH_MIN):
        clock.advance(8.0)  # 8 s a round: the model's 4 steps of 1 s underestimate it
        plan.record("round", REFINE_BATCH_MIN, 8.0)
        rounds += 1
    assert rounds == 2 and clock.t == 176.0 and plan.limited  # a third would end at 184, past 180
    assert plan.polish_spent < plan.polish_units  # the plan alone would have gone on
    assert not plan.timed


def test_with_a_budget_and_a_limit_the_earlier_ends_the_run():
    clock = ManualClock()
    plan = Plan(budget=100, steps=10_000, polish=True, clock=clock, limit=40)
    assert _search(plan, clock, 1.0) == 30 and plan.limited and plan.end == 140.0
    clock = ManualClock()
    plan = Plan(budget=40, steps=10_000, polish=True, clock=clock, limit=100)
    assert _search(plan, clock, 1.0) == 30 and not plan.limited  # the budget planned it


def test_a_far_limit_keeps_a_seeded_run_reproducible(tiny_clip, images):
    cfg = pez.InvertConfig(prompt_len=5, steps=30, refine_steps=50, seed=3)
    plain = _run(tiny_clip, images[:1], cfg, TickClock(1e-5))[-1].result
    limited = pez.InvertConfig(prompt_len=5, steps=30, refine_steps=50, seed=3, time_limit=1e4)
    slow, fast = (_run(tiny_clip, images[:1], limited, TickClock(t))[-1].result for t in (0.01, 1e-5))
    assert (slow.prompt, slow.score) == (fast.prompt, fast.score) == (plain.prompt, plain.score)
    assert slow.stats["refine_rounds"] == fast.stats["refine_rounds"] == plain.stats["refine_rounds"] >= 1
    assert slow.stats["limited"] == fast.stats["limited"] == 0.0 and slow.steps_run == 30


def test_a_limit_hit_ends_the_run_with_its_polish_and_says_so(tiny_clip, images):
    cfg = pez.InvertConfig(prompt_len=5, steps=10_000, time_limit=4.0, refine_steps=1_000, seed=0)
    reports = _run(tiny_clip, images[:1], cfg, TickClock(0.005))
    res = reports[-1].result
    assert not res.stopped and res.prompt and res.steps_run < 10_000
    assert res.stats["limited"] == 1.0 and res.stats["time_limit"] == 4.0 and reports[-1].limited
    assert res.elapsed <= 4.0 + 0.05  # the fake clock: one unit's misestimate at most
    assert res.stats["search_seconds"] <= (1 - POLISH_SHARE) * 4.0 + 0.05
    assert res.stats["refine_rounds"] >= 1  # the polish ran in its share
    assert not reports[0].limited and all(r.time_budget == 4.0 for r in reports)  # what the run may take
    # A budget shorter than the limit plans the run; the limit ends nothing.
    both = pez.InvertConfig(prompt_len=5, steps=10_000, time_budget=2.0, time_limit=4.0, refine_steps=1_000, seed=0)
    res = _run(tiny_clip, images[:1], both, TickClock(0.005))[-1].result
    assert res.stats["limited"] == 0.0 and res.elapsed <= 2.0 + 0.05 and res.stats["time_budget"] == 2.0


def test_the_limit_is_a_setting_and_a_flag():
    assert pez.InvertConfig().time_limit == 0.0
    args = build_parser().parse_args(["invert", "x.png", "--time-limit", "300"])
    assert config_from_args(args).time_limit == 300.0 and config_from_args(args).time_budget == 0.0
    with pytest.raises(pez.ConfigError, match="time_limit"):
        pez.InvertConfig(time_limit=-1.0)
