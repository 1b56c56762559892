"""PEZ itself: the targets and the loss, the optimisation loop, best tracking and early stop.

One step (paper, Algorithm 1), for N candidate prompts of M tokens each:
  ids  = Proj(P)                        nearest allowed vocabulary rows by cosine    (N, M)
  P'   = E[ids]                         their raw embeddings, a fresh leaf           (N, M, d)
  f    = encode([SOT, P', EOT])         text features of the projected prompts       (N, D)
  loss = sum_n (1 - objective(f_n, batch of targets))          Targets.objective, below
  P   <- AdamW(P, dL/dP')               the gradient at P' is applied to the soft P

The text features come from the one text-tower forward (pez.engine.tower; the search precision
and compilation from pez.engine.accel).

The text space is one CLIP or several (a JointClip: SDXL's ViT-L/14 and bigG/14 read every prompt).
With several there is one soft prompt P_t per CLIP, one token per slot chosen for all at once
(pez.engine.vocab.Projector: argmax_v sum_t w_t cos(P_t, E_t[v])), each CLIP encodes its own
embeddings of those ids, and the features are joined (pez.models.clip.JointClip.join) so that the
objective is the weighted sum of the per-CLIP objectives; each P_t gets the gradient at its E_t[ids].
With one CLIP every step is exactly the single-tower PEZ above.

The features of the projected prompt are already computed by the gradient pass, so scoring a candidate against *all* targets costs one small
matmul, not a second forward pass. The reported best is the score of the decoded text as the user
will copy it (pez.engine.scorer); that check runs for each candidate's best prompt once per
report, in one batched forward, not on every step. After the search, pez.engine.polish refines
and prunes the best prompt. The run's clock (pez.engine.budget) ends the search at its steps or
its share of a time budget, plans the candidates within the budget, gives the polish its share of
the run, and estimates the time left for every report.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from ..config import (
    PLATEAU_MIN_GAIN,
    STUCK_HINT,
    STUCK_MAX_SCORE,
    STUCK_MIN_GAIN,
    STUCK_MIN_STEPS,
    InvertConfig,
)
from ..errors import ConfigError
from ..models.clip import LoadedClip, TextSpace, has_weights
from ..results import InversionResult, ScoredPrompt, StepReport
from . import accel
from .budget import Clock, Plan
from .polish import Polish, Polisher, PolishRound, diverse_top, polish, polish_hint, unique_ids
from .readability import is_readable
from .scorer import TextScorer
from .tower import PromptEncoder, SpaceEncoder
from .vocab import VocabFilter, text_ids, text_rejector, vocabulary

# ---------------------------------------------------------------------------------------------
# Targets and the objective (the loss is 1 - objective)


@dataclass
class Targets:
    """What a prompt should match: unit CLIP features (float32, on the model's device)."""

    positive: torch.Tensor  # (K, D); may have K = 0 when only negatives are given
    negative: torch.Tensor  # (J, D); prompts are pushed away from these
    negative_weight: float = 1.0

    def __post_init__(self):
        if self.positive.shape[0] + self.negative.shape[0] == 0:
            raise ConfigError("targets: expected at least one positive or negative target, received none")

    def objective(self, feats: torch.Tensor, pos_idx: torch.Tensor | None = None) -> torch.Tensor:
        """(N, D) unit features -> (N,) objective: mean cosine to positives (optionally a batch of
        them) minus negative_weight * mean cosine to negatives. Loss = 1 - objective."""
        score = feats.new_zeros(feats.shape[0])
        if self.positive.shape[0]:
            pos = self.positive if pos_idx is None else self.positive[pos_idx]
            score = score + (feats @ pos.T).mean(dim=1)
        if self.negative.shape[0]:
            score = score - self.negative_weight * (feats @ self.negative.T).mean(dim=1)
        return score

    @property
    def scale(self) -> float:
        """The objective's scale: how far it can move, 1 for unit image targets alone. A positive
        row mixed with texts is shorter than 1 (its cosines shrink with it); negatives add
        negative_weight. The stuck hint's thresholds are measured in this unit."""
        pos = float(self.positive.norm(dim=1).mean()) if self.positive.shape[0] else 0.0
        neg = self.negative_weight if self.negative.shape[0] else 0.0
        return max(pos + neg, 1e-6)

    def split(self, clip: TextSpace) -> list[Targets]:
        """The targets of each CLIP of a joint text space (features split by `clip.split`)."""
        pairs = zip(clip.split(self.positive), clip.split(self.negative))
        return [Targets(p, n, self.negative_weight) for p, n in pairs]


# ---------------------------------------------------------------------------------------------
# The loop


def optimize(
    clip: TextSpace,
    targets: Targets,
    config: InvertConfig | None = None,
    should_stop: Callable[[], bool] | None = None,
    clock: Clock | None = None,
) -> Iterator[StepReport]:
    """Run PEZ, yielding a first StepReport (step 0) when the search starts, then one every
    `config.report_every` steps (and at least every REPORT_SECONDS), one per refine/prune round,
    and a final one with `done=True` and the InversionResult. Stopping (should_stop() true, or
    closing the generator after any report) keeps the best prompt found so far. With
    `config.time_budget` the run ends within it; with `config.time_limit` a run that would pass
    the limit ends there, search then polish, and its reports say `limited` (pez.engine.budget); `clock` (seconds, default
    time.perf_counter) is for tests. `clip` is one CLIP or a JointClip; `targets` are features in
    its text space (pez.engine.features)."""
    config = (config or InvertConfig()).resolved()  # checked when built; the prompt style applied
    config.fits(clip.context_length)
    _check_weights(clip, config)
    search = _Search(clip, targets, config, clock or time.perf_counter)  # 1. the start
    yield from search.run(should_stop)  # 2.-3. PEZ steps
    polished = yield from search.polish(should_stop)  # 4. refine and prune the best prompt
    yield search.final_report(search.result(polished))


class _Search:
    """One run's state: the soft prompts and their optimiser, the best tracking, the clock."""

    def __init__(self, clip: TextSpace, targets: Targets, config: InvertConfig, clock: Clock):
        self.clip, self.targets, self.config = clip, targets, config
        self.polishing = bool(config.refine_steps or config.prune_tolerance > 0)
        self.plan = Plan(
            config.time_budget,
            config.steps,
            self.polishing,
            config.candidates,
            clip.device.type == "cpu",
            clock,
            limit=config.time_limit,
        )
        self.seed = config.seed if config.seed is not None else random.SystemRandom().randrange(2**31)
        self.gen = torch.Generator().manual_seed(self.seed)
        self.encoder, scoring, self.fp32 = _encoders(clip, config.precision)  # the gradient pass; the fp32 scores
        vocabs = self.encoder.vocabs  # one table per CLIP; their ids, masks and texts are shared
        self.scorer = TextScorer(clip, scoring, targets, text_rejector(config))
        vf = VocabFilter.from_config(config)
        self.mask = vocabs[0].mask(vf)  # (V,) 0 allowed, -inf not
        self.n = config.candidates
        self.tracker = _BestTracker(self.scorer, self.n, clip.device, pass_is_fp32=self.fp32)

        # 1. Initialise P (one per CLIP) from the embeddings of random allowed tokens (or the start prompt).
        init = initial_ids(clip.clips[0], vf, self.mask, config, self.gen).to(clip.device)
        self.softs = [v.embeddings[init].float().clone().requires_grad_(True) for v in vocabs]  # (N, M, d_t) each
        self.opt = torch.optim.AdamW(self.softs, lr=config.lr, weight_decay=config.weight_decay)
        self.project = accel.projector(vocabs, self.mask, clip.weights)  # exact; skips most scans

        self.history: list[tuple[int, float, float]] = []  # (step, mean loss, best score)
        self.step = 0
        self.last: tuple[torch.Tensor, torch.Tensor] | None = None  # (ids, scores) of the latest step
        self.plateau = _Plateau(config.patience, targets.scale)
        self.stopped = False  # by the user (should_stop, Ctrl-C): no polish
        self.hint = ""

    def run(self, should_stop: Callable[[], bool] | None) -> Iterator[StepReport]:
        """The PEZ steps until the plan, a plateau or the user ends them; reports on the way."""
        config, plan = self.config, self.plan
        plan.restart()  # the budget counts from here: the set-up (masks: seconds on first use) is not spent from it
        plan.reported()
        yield self.report(_current(self.tracker, self.last))  # the search starts
        try:
            while not plan.search_over(self.step):
                if should_stop is not None and should_stop():
                    self.stopped = True
                    break
                loss, full = self.gradient_step()
                self.tracker.observe(self.last[0], full)
                plan.stepped(self.step)
                flushed = self.step <= config.report_every or self.step % config.report_every == 0
                if flushed or self.step == config.steps:
                    self.tracker.flush(
                        _current_entry(self.last)
                    )  # decode, honestly re-score: every step at first, then per report
                self.history.append((self.step, loss / self.n, self.tracker.best.score))
                if self.plateau.update(self.step, full):
                    break
                keep = plan.keep_candidates(self.step)
                if keep < self.n:  # the budget leaves too few steps for them all: keep the best
                    self.softs, self.opt, self.last = _keep_best(keep, self.softs, self.opt, self.tracker, self.last)
                    self.n = keep
                if self.step < config.steps and (flushed or plan.report_due()):
                    plan.reported()
                    current = _current(self.tracker, self.last) if flushed else _peek(self.tracker, self.last)
                    yield self.report(current, self.plateau.hint(self.tracker))
        except KeyboardInterrupt:  # Ctrl-C in a CLI: stop and keep the best
            self.stopped = True
        self.tracker.flush(_current_entry(self.last))
        plan.search_ended(self.step)
        self.hint = plan.short_hint(self.step) or self.plateau.hint(self.tracker)

    def gradient_step(self) -> tuple[float, torch.Tensor]:
        """One PEZ step; returns (the summed loss, (N,) the projected prompts' scores on all targets)."""
        # 2. Project, then take the gradient at the projection on a batch of targets.
        ids = self.project(*self.softs)  # (N, M): one token per slot, for every CLIP
        projected = self.encoder.embed(ids)  # (N, M, d_t) per CLIP
        with torch.enable_grad():
            feats = self.encoder.features(projected)  # (N, D) unit (joined for several CLIPs)
            batch = _sample_batch(self.targets.positive.shape[0], self.config.batch_size, self.gen, self.clip.device)
            objective = self.targets.objective(feats, batch)  # (N,)
            loss = (1 - objective).sum()
            grads = torch.autograd.grad(loss, projected)
        for soft, grad in zip(self.softs, grads):
            soft.grad = grad.to(soft.dtype)
        self.opt.step()

        # 3. Score the projected prompts against all targets (free: features are at hand).
        with torch.no_grad():
            full = objective.detach() if batch is None else self.targets.objective(feats.detach())  # (N,)
        self.step, self.last = self.step + 1, (ids, full)
        return float(loss.detach()), full

    def polish(self, should_stop: Callable[[], bool] | None) -> Iterator[StepReport]:
        """Beyond PEZ: refine and prune the best prompt (pez.engine.polish), unless the user
        stopped; reports each round. Returns the Polish, or None."""
        if self.stopped or not self.polishing:
            return None
        fast = _polish_encoder(self.clip, self.config.precision)  # each CLIP's search precision
        polisher = Polisher(
            self.scorer, self.mask, self.config, self.gen, self.scorer.scores, fast, self.fp32, self.plan
        )
        polished = None
        try:
            for item in polish(polisher, self.tracker.best, should_stop):
                if isinstance(item, Polish):
                    polished = item
                else:
                    self.tracker.offer(item.text, item.score)
                    yield _phase_report(
                        item, self.history, self.tracker, self.plan, polisher.started[item.phase], self.hint
                    )
        except KeyboardInterrupt:
            self.stopped = True
        self.stopped = self.stopped or (should_stop is not None and should_stop())
        if polished is not None:
            self.hint = self.plan.short_hint(self.step) or polish_hint(self.hint, polished.stats, self.targets.scale)
        return polished

    def _without_repeats(self, best: ScoredPrompt) -> ScoredPrompt:
        """The readable style promises no word twice; a run stopped before its polish returns the
        search's best with its repeated words dropped (first of each kept), honestly re-scored."""
        ids = text_ids(self.clip, best.prompt) if best.prompt else []
        kept = unique_ids(ids)
        if len(kept) == len(ids):
            return best
        text, score = self.scorer.score([kept])[0]
        return ScoredPrompt(text, score) if score != -math.inf else best

    def result(self, polished: Polish | None) -> InversionResult:
        """The run's InversionResult: the polished prompt when there is one, else the search's best."""
        tracker, step, plan = self.tracker, self.step, self.plan
        best = ScoredPrompt(polished.prompt, polished.score) if polished is not None else tracker.best
        if polished is None and self.config.readable:
            best = self._without_repeats(best)
        elapsed = plan.elapsed()
        stats = {
            "scan_fraction": self.project.scans / max(self.project.calls, 1),
            "fp32_search": float(self.fp32),
            "search_steps": step,
            "search_score": tracker.best.score,
            "search_seconds": plan.search_seconds,
            "candidates_kept": self.n,
            "time_budget": self.config.time_budget,
            "time_limit": self.config.time_limit,
            "limited": float(plan.limited),
            "clock_ended": float(plan.timed_out),  # the budget or the limit ended the search, not its steps
            **(polished.stats if polished is not None else {}),
            "polish_seconds": elapsed - plan.search_seconds,
        }
        return InversionResult(
            prompt=best.prompt,
            score=best.score if step else float("nan"),
            top_k=_top_k(tracker, self.config.top_k, polished, self.config.readable),
            steps_run=step,
            elapsed=elapsed,
            stopped=self.stopped,
            seed=self.seed,
            model=self.clip.name,
            config=self.config,
            history=self.history,
            stats=stats,
            hint=self.hint,
            clip_scores=self.scorer.clip_scores(best.prompt) if step else {},
            clip_weights={c.name: w for c, w in zip(self.clip.clips, self.clip.weights)},
        )

    def report(self, current: ScoredPrompt, hint: str = "") -> StepReport:
        return _report(self.step, self.config, self.history, current, self.tracker, self.plan, hint)

    def final_report(self, result: InversionResult) -> StepReport:
        """The last report: done, with the result, its prompt as the best."""
        return _report(
            self.step,
            self.config,
            self.history,
            _current(self.tracker, self.last),
            self.tracker,
            self.plan,
            self.hint,
            done=True,
            result=result,
            eta=0.0,
            best=ScoredPrompt(result.prompt, result.score),
        )


def _encoders(clip: TextSpace, precision: str) -> tuple[SpaceEncoder, SpaceEncoder, bool]:
    """(the gradient pass's encoder in the search precision, the fp32 scoring encoder, whether the
    pass is fp32 too), one tower of each per CLIP; the precision is chosen per CLIP (accel)."""
    precisions = _precisions(clip, precision)
    search = SpaceEncoder(clip, [PromptEncoder(c, accel.search_tower(c, p)) for c, p in zip(clip.clips, precisions)])
    scoring = SpaceEncoder(clip, [PromptEncoder(c, accel.scoring_tower(c)) for c in clip.clips])
    return search, scoring, all(p == "fp32" for p in precisions)


def _precisions(clip: TextSpace, precision: str) -> list[str]:
    """Each CLIP's search precision for the setting `precision` (accel.search_precision)."""
    return [accel.search_precision(precision, c.device, vocabulary(c).embeddings.shape[1]) for c in clip.clips]


def _polish_encoder(clip: TextSpace, precision: str) -> SpaceEncoder:
    """Refinement and pruning's encoder: each CLIP's polish tower in its search precision."""
    towers = [PromptEncoder(c, accel.polish_tower(c, p)) for c, p in zip(clip.clips, _precisions(clip, precision))]
    return SpaceEncoder(clip, towers)


def initial_ids(
    clip: LoadedClip, vf: VocabFilter, mask: torch.Tensor, config: InvertConfig, gen: torch.Generator
) -> torch.Tensor:
    """(N, M) start ids: random allowed tokens, or `config.init_prompt` tokenised, truncated to M,
    padded with random allowed tokens; its disallowed tokens are re-projected onto allowed ones."""
    vocab, n, m = vocabulary(clip), config.candidates, config.prompt_len
    allowed = vocab.allowed_ids(vf).cpu()
    init = allowed[torch.randint(len(allowed), (n, m), generator=gen)]  # (N, M)
    body = text_ids(clip, config.init_prompt)[:m] if config.init_prompt.strip() else []
    if body:
        ids = torch.tensor(body)
        bad = mask.cpu()[ids] != 0
        if bool(bad.any()):  # nearest allowed token by cosine, as the projection would choose
            ids[bad] = vocab.project(vocab.embeddings[ids[bad].to(vocab.embeddings.device)], mask).cpu()
        init[:, : len(body)] = ids
    return init


def _check_weights(clip: TextSpace, config: InvertConfig) -> None:
    """The config's clip_weights, when set, must be the weights the text space (and so the
    targets' features) was built with (pez.models.get_clip applies them when loading)."""
    if config.clip_weights is not None and not has_weights(clip, config.clip_weights):
        raise ConfigError(
            f"clip_weights: the model {clip.name} was loaded with weights {clip.weights}, the config asks for "
            f"{tuple(config.clip_weights)}; load it with these weights (pez.load_clip(..., weights=...))"
        )


def _sample_batch(k: int, batch_size: int, gen: torch.Generator, device) -> torch.Tensor | None:
    """Indices of this step's positive targets; None means all of them."""
    if k <= batch_size:
        return None
    return torch.randperm(k, generator=gen)[:batch_size].to(device)


# ---------------------------------------------------------------------------------------------
# The best prompts: honest scores per candidate and overall


class _BestTracker:
    """Per-candidate and overall bests of the search, by honest score (the scorer's cache is
    also the table the result's top_k is drawn from).

    `pass_is_fp32` says the gradient pass is fp32, so a prompt that round-trips through decoding
    keeps the score the pass gave it; otherwise (bf16/fp16 search) every reported text is
    re-scored in fp32 once, so a score means the same at any precision."""

    def __init__(self, scorer: TextScorer, n: int, device, pass_is_fp32: bool = True):
        self.scorer, self.pass_is_fp32 = scorer, pass_is_fp32
        self.cand_best = torch.full((n,), -math.inf, device=device)  # best score seen per candidate
        self.window: dict[int, tuple[list[int], float]] = {}  # candidate -> (ids, score) to decode
        self.best = ScoredPrompt("", -math.inf)

    def observe(self, ids: torch.Tensor, id_scores: torch.Tensor) -> None:
        """ids (N, M), id_scores (N,): each projected prompt's score. Remembers each candidate's
        best since the last flush; decoding and honest re-scoring wait for `flush()`."""
        for n in torch.nonzero(id_scores > self.cand_best).flatten().tolist():
            self.window[n] = (ids[n].tolist(), float(id_scores[n]))
        self.cand_best = torch.maximum(self.cand_best, id_scores)

    def flush(self, current: tuple[list[int], float] | None = None) -> None:
        """Honestly score the remembered prompts (and `current`, the ids and pass score of the
        prompt a report shows) in one batched forward; update the bests."""
        entries = [*self.window.items(), *([] if current is None else [(None, current)])]
        bodies = [body for _, (body, _) in entries]
        trusted = [s for _, (_, s) in entries] if self.pass_is_fp32 else None
        scored = self.scorer.score(bodies, trusted)
        for (n, _), (text, s) in zip(entries, scored):
            if n is None or s == -math.inf:  # the report's prompt, or an empty or rejected text
                continue
            self.cand_best[n] = max(float(self.cand_best[n]), s)
            self.offer(text, s)
        self.window.clear()

    def offer(self, text: str, score: float) -> None:
        if score > self.best.score:
            self.best = ScoredPrompt(text, score)

    def top_k(self, k: int) -> list[ScoredPrompt]:
        # only finite scores: a nan would sort anywhere and reach the user as an alternative's score
        scored = [(t, s) for t, s in self.scorer.scores.items() if math.isfinite(s)]
        ranked = sorted(scored, key=lambda kv: kv[1], reverse=True)[:k]
        return [ScoredPrompt(t, s) for t, s in ranked]


def _top_k(tracker: _BestTracker, k: int, polished: Polish | None, readable: bool = False) -> list[ScoredPrompt]:
    """Distinct prompts that differ in their words (polish.diverse_top), best first. After pruning,
    the returned (shortest) prompt leads and the longer ones it was pruned from (scoring less than
    prune_tolerance more) are left out; in the readable style only readable prompts follow it."""
    everything = tracker.top_k(len(tracker.scorer.scores))
    if polished is None or not polished.prompt:
        return diverse_top(everything, k)
    rest = [p for p in everything if p.score <= polished.score and p.prompt != polished.prompt]
    if readable:
        rest = [p for p in rest if is_readable(p.prompt)]
    return diverse_top([ScoredPrompt(polished.prompt, polished.score), *rest], k)


# ---------------------------------------------------------------------------------------------
# Early stop and the stuck hint


class _Plateau:
    """Early stop when the best projected score has not risen for `patience` steps (0: never),
    and the random start's mean score for the stuck hint (on an objective of `scale`, Targets.scale)."""

    def __init__(self, patience: int, scale: float = 1.0):
        self.patience, self.best, self.best_step, self.step = patience, -math.inf, 0, 0
        self.scale = scale
        self.start, self.done = math.nan, False

    def update(self, step: int, scores: torch.Tensor) -> bool:
        """scores (N,) this step's projected prompts; True when the search should end now."""
        top = float(scores.max())
        if step == 1:
            self.start = float(scores.mean())
        if top > self.best + PLATEAU_MIN_GAIN:
            self.best, self.best_step = top, step
        self.step = step
        self.done = bool(self.patience) and step - self.best_step >= self.patience
        return self.done

    def hint(self, tracker: _BestTracker) -> str:
        return stuck_hint(self.step, self.start, tracker.best.score, self.scale)


def stuck_hint(step: int, start_score: float, best_score: float, scale: float = 1.0) -> str:
    """STUCK_HINT when, after STUCK_MIN_STEPS, the best score gained less than STUCK_MIN_GAIN
    (in units of the objective's `scale`, Targets.scale) over the mean score of the random start
    (config.py explains the criterion), and the best is below STUCK_MAX_SCORE of the scale; ""
    otherwise."""
    if step < STUCK_MIN_STEPS or not (math.isfinite(start_score) and math.isfinite(best_score)):
        return ""
    if best_score >= STUCK_MAX_SCORE * scale:  # a high-scoring run is not stuck, whatever its start
        return ""
    return STUCK_HINT if best_score - start_score < STUCK_MIN_GAIN * scale else ""


# ---------------------------------------------------------------------------------------------
# Reports


def _phase_report(
    item: PolishRound, history, tracker: _BestTracker, plan: Plan, phase_start: float, hint: str
) -> StepReport:
    """A StepReport for a polish round; its rate is rounds (refine, order) or removed tokens
    (prune) per second of that phase."""
    phase, r, rounds, text, score = item.phase, item.round, item.rounds, item.text, item.score
    seconds = max(plan.now() - phase_start, 1e-9)
    return StepReport(
        step=r,
        steps=rounds,
        loss=1 - score,
        current_prompt=text,
        current_score=score,
        best_prompt=tracker.best.prompt,
        best_score=tracker.best.score,
        elapsed=plan.elapsed(),
        steps_per_sec=r / seconds,
        phase=phase,
        hint=hint,
        eta=plan.eta(phase, r, rounds, seconds / max(r, 1)),
        time_budget=plan.seconds,
        limited=plan.limited,
    )


def _current(tracker: _BestTracker, last) -> ScoredPrompt:
    """The best candidate of the latest step, decoded, with its score against all targets."""
    if last is None:
        return ScoredPrompt("", float("nan"))
    ids, scores = last
    n = int(scores.argmax())
    text = tracker.scorer.decode(ids[n].tolist())
    return ScoredPrompt(text, tracker.scorer.scores.get(text, float("nan")))  # nan: not honestly scored yet


def _peek(tracker: _BestTracker, last) -> ScoredPrompt:
    """The latest step's best candidate for a report between flushes, touching nothing the search
    decides by (so reports by the clock cannot change a seeded run): its pass score when that is
    the honest one (an fp32 pass, a text that re-tokenises to its ids), else nan."""
    if last is None:
        return ScoredPrompt("", float("nan"))
    ids, scores = last
    n = int(scores.argmax())
    body = ids[n].tolist()
    text = tracker.scorer.decode(body)
    if text in tracker.scorer.scores:
        return ScoredPrompt(text, tracker.scorer.scores[text])
    honest = tracker.pass_is_fp32 and text_ids(tracker.scorer.clip, text) == body
    return ScoredPrompt(text, float(scores[n]) if honest else float("nan"))


def _current_entry(last) -> tuple[list[int], float] | None:
    """(ids, pass score) of the latest step's best candidate, the prompt a report shows; in an fp32
    search a text that round-trips keeps that score (no extra forward), as the window's do."""
    if last is None:
        return None
    ids, scores = last
    n = int(scores.argmax())
    return ids[n].tolist(), float(scores[n])


def _report(
    step,
    config,
    history,
    current,
    tracker,
    plan: Plan,
    hint: str = "",
    done: bool = False,
    result: InversionResult | None = None,
    eta: float | None = None,
    best: ScoredPrompt | None = None,
) -> StepReport:
    """A search report; the final one passes done, the result, eta 0 and the result's prompt as `best`."""
    elapsed = plan.elapsed()
    rate = 1 / plan.step_seconds if plan.step_seconds > 0 else 0.0  # nan (no step yet) compares False
    best = best or tracker.best
    return StepReport(
        step=step,
        steps=config.steps,
        loss=history[-1][1] if history else float("nan"),
        current_prompt=current.prompt,
        current_score=current.score,
        best_prompt=best.prompt,
        best_score=best.score,
        elapsed=elapsed,
        steps_per_sec=rate,
        done=done,
        result=result,
        hint=hint,
        eta=plan.eta("search", step, config.steps) if eta is None else eta,
        time_budget=plan.seconds,
        limited=plan.limited,
    )


def _keep_best(keep: int, softs: list[torch.Tensor], opt, tracker: _BestTracker, last):
    """Keep the `keep` candidates with the best scores so far (their soft prompts in every CLIP,
    AdamW moments and bests); the others end. Returns (softs, optimiser, last step's (ids,
    scores)) of the kept."""
    tracker.flush()  # decode what the leaving candidates found before they go
    idx = torch.argsort(tracker.cand_best, descending=True)[:keep].sort().values
    kept = [soft.detach()[idx].clone().requires_grad_(True) for soft in softs]
    new_opt = torch.optim.AdamW(kept, **{k: opt.defaults[k] for k in ("lr", "weight_decay")})
    for soft, new in zip(softs, kept):
        new_opt.state[new] = {
            k: v[idx].clone() if torch.is_tensor(v) and v.dim() and v.shape[0] == soft.shape[0] else v
            for k, v in opt.state.get(soft, {}).items()
        }
    tracker.cand_best = tracker.cand_best[idx]
    if last is not None:
        last = (last[0][idx], last[1][idx])
    return kept, new_opt, last


__all__ = ["Targets", "initial_ids", "optimize", "stuck_hint"]
