"""Beyond plain PEZ: discrete refinement and pruning of the search's best prompt.

PEZ's last projected prompt is a good start but not a local optimum over *tokens*. After the
search, two discrete phases polish the best prompt, always judged by the honest score (the
decoded text, re-tokenised and re-encoded, as the user will copy it):

refine   One round: the gradient g_i of the objective at each token embedding e_i of the current
         prompt gives the linearised gain of swapping position i to token v, (e_v - e_i) . g_i
         (as in HotFlip/AutoPrompt). The top REFINE_TOPK tokens per position form the candidate
         swaps; a batch of untried ones (REFINE_BATCH_MIN to REFINE_BATCH, sized from the cost of
         the last round's forward) is evaluated as one batched forward, the best few
         are decoded and honestly re-scored, and the best is kept only if its honest score is
         higher than the current one. So refinement never lowers the score.
prune    Drop one token at a time (each removal evaluated in one batched forward) while the honest
         score stays within `prune_tolerance` of the best; report the shortest such prompt.

Both phases stream StepReports (phase "refine" / "prune") and check should_stop before each
round, so Stop keeps the best found so far. CLIP only: they need the embedding-level encoder.

Cost: the gradients and the batched scores of swaps run in the search's precision (the `fast`
encoder: bf16 where the search is bf16); only the few texts a round re-scores honestly, and every
score reported, are fp32. The phases pay for themselves out of the run's time (pez.engine.budget):
a round or a prune pass starts only when its measured cost fits before the polish's deadline,
and each round's number of swaps is sized from the measured cost of the last one's forward.
The constants (REFINE_TOPK, ...) are in pez.config; the loop that calls `polish` is pez.engine.optim.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from ..config import (
    REFINE_BATCH_MIN,
    REFINE_COMBOS,
    REFINE_TOPK,
    REFINE_VERIFY,
    STUCK_HINT,
    STUCK_REFINE_GAIN,
    InvertConfig,
)
from ..results import ScoredPrompt
from .budget import Plan
from .scorer import TextScorer
from .tower import SpaceEncoder
from .vocab import text_ids

# ---------------------------------------------------------------------------------------------
# Refinement and pruning


@dataclass
class Polish:
    """Outcome of the refine and prune phases."""

    prompt: str  # the prompt to return: the shortest within tolerance of the best
    score: float  # its honest score
    stats: dict[str, float] = field(default_factory=dict)


class Polisher:
    """Refines and prunes a prompt, streaming (phase, round, rounds, ids, text, score).

    Honest scores come from its own TextScorer (the search's decoded texts are shared): computed
    here, by one path (batched encode_ids), so the phases decide the same way whatever the search
    cached (its scores depend on report_every). Every text scored is also recorded in `seen`, the
    table the result's top_k is drawn from. `fast` encodes in the search's precision (gradients and
    the batched scores of swaps); `fast_is_fp32` says its scores are the honest ones (fp32), so a
    text that re-tokenises to its ids keeps them. `plan` holds the polish's deadline (none: no
    time limit, as when polishing a prompt on its own)."""

    def __init__(
        self,
        search: TextScorer,
        mask: torch.Tensor,
        config: InvertConfig,
        gen: torch.Generator,
        seen: dict,
        fast: SpaceEncoder | None = None,
        fast_is_fp32: bool = True,
        plan: Plan | None = None,
    ):
        self.scorer = TextScorer(search.clip, search.encoder, search.targets, search.reject, search.texts)
        self.clip, self.targets = search.clip, search.targets
        self.encoder = fast if fast is not None else search.encoder  # gradients and swap scores
        self.fast = TextScorer(search.clip, self.encoder, search.targets, search.reject, search.texts)
        self.trust_fast = fast is None or fast_is_fp32
        self.mask, self.config, self.gen, self.seen = mask, config, gen, seen
        self.plan = plan
        self.batch = plan.first_batch() if plan is not None else REFINE_BATCH_MIN  # swaps per round
        self.started: dict[str, float] = {}  # phase -> when it started (for its rate)

    def honest(self, bodies: list[list[int]], id_scores: list[float] | None = None) -> list[tuple[str, float]]:
        """(decoded text, honest score) of each id body (pez.engine.scorer); rejected texts score -inf."""
        out = self.scorer.score(bodies, id_scores if self.trust_fast else None)
        self.seen.update((text, s) for text, s in out if s != -math.inf)
        return out

    def _admit(self, kind: str, size: int) -> bool:
        return self.plan is None or self.plan.admit(kind, size)

    def _record(self, kind: str, size: int, seconds: float) -> None:
        if self.plan is not None:
            self.plan.record(kind, size, seconds)

    # -- refine --------------------------------------------------------------------------------

    def _gains(self, ids: list[int]) -> torch.Tensor:
        """(L, V) linearised objective gain of swapping each position to each allowed token (in a
        joint search the sum over the CLIPs: each CLIP's gradient at its own embeddings)."""
        xs = self.encoder.embed(torch.tensor(ids, device=self.clip.device).unsqueeze(0))  # (1, L, d_t) each
        with torch.enable_grad():
            feats = self.encoder.features(xs)
            grads = torch.autograd.grad(self.targets.objective(feats).sum(), xs)
        gains = None
        for vocab, grad in zip(self.encoder.vocabs, grads):
            emb = vocab.embeddings  # (V, d_t)
            g = grad[0].to(emb.dtype)  # (L, d_t)
            part = (g @ emb.T).float() - (g * emb[ids]).sum(-1, keepdim=True).float()  # (L, V)
            gains = part if gains is None else gains + part
        gains = gains + self.mask.unsqueeze(0)
        gains[torch.arange(len(ids)), torch.tensor(ids)] = -math.inf  # not a swap
        return gains

    def refine(self, ids: list[int], score: float, rounds: int, should_stop) -> Iterator[tuple]:
        """Greedy honest-score ascent by single-token swaps. Yields ("refine", round, rounds,
        ids, text, score) after each round; the last yield holds the best. A round starts only
        when the run's plan admits it (pez.engine.budget: its cost fits in the polish's share)."""
        tried: set[tuple[int, ...]] = {tuple(ids)}
        text, misses = self.scorer.decode(ids), 0
        clock = self.plan.clock if self.plan is not None else time.perf_counter
        for r in range(1, rounds + 1):
            if should_stop is not None and should_stop():
                break
            if not self._admit("round", self.batch):
                break
            t0, batch = clock(), self.batch
            gains = self._gains(ids)
            t_grad = clock() - t0
            # After rounds without a gain the same gradient comes back: look further down its ranking.
            top = gains.topk(min(REFINE_TOPK * (misses + 1), gains.shape[1]), dim=-1)  # (L, k)
            swaps = []  # (position, token) of each untried single swap
            for i, j in torch.nonzero(torch.isfinite(top.values)).tolist():
                swap = (i, int(top.indices[i, j]))
                if tuple(_apply(ids, [swap])) not in tried:
                    swaps.append(swap)
            if not swaps:
                break
            if len(swaps) > self.batch:
                pick = torch.randperm(len(swaps), generator=self.gen)[: self.batch].tolist()
                swaps = [swaps[p] for p in pick]
            cands = [_apply(ids, [sw]) for sw in swaps]
            tried.update(tuple(c) for c in cands)
            t1 = clock()
            id_scores = self.fast.objective(cands).tolist()  # (B,) scores of the id sequences themselves
            t_fwd = clock() - t1
            if self.plan is not None:
                self.batch = self.plan.next_batch(len(cands), t_grad, t_fwd)
            # Swaps that each help at different positions often help together: also try the best
            # 2, 3, ... of them at once (one more small batch).
            gaining, used = [], set()
            for o in sorted(range(len(swaps)), key=lambda o: -id_scores[o]):
                if id_scores[o] > score and swaps[o][0] not in used:
                    gaining.append(swaps[o])
                    used.add(swaps[o][0])
            combos = [_apply(ids, gaining[:j]) for j in range(2, min(len(gaining), REFINE_COMBOS) + 1)]
            if combos:
                cands, id_scores = cands + combos, id_scores + self.fast.objective(combos).tolist()
            order = sorted(range(len(cands)), key=lambda o: -id_scores[o])[:REFINE_VERIFY]
            checked = self.honest([cands[o] for o in order], [id_scores[o] for o in order])
            k = max(range(len(checked)), key=lambda c: checked[c][1])
            misses += 1
            if checked[k][1] > score:
                text, score, misses = *checked[k], 0
                ids = text_ids(self.clip, text)  # continue from what the text re-tokenises to
                tried.add(tuple(ids))
            self._record("round", batch, clock() - t0)
            yield "refine", r, rounds, ids, text, score

    # -- prune ---------------------------------------------------------------------------------

    def prune(self, ids: list[int], score: float, tolerance: float, should_stop) -> Iterator[tuple]:
        """Drop the cheapest token while the honest score stays within `tolerance` of the best
        seen; yields ("prune", removed, len - 1, ids, text, score) after each removal. A pass (one
        forward of every removal) starts only when the run's plan admits it."""
        ref, total = score, len(ids) - 1
        removed = 0
        clock = self.plan.clock if self.plan is not None else time.perf_counter
        while len(ids) > 1:
            if should_stop is not None and should_stop():
                break
            if not self._admit("pass", len(ids)):
                break
            t0 = clock()
            cands = [ids[:i] + ids[i + 1 :] for i in range(len(ids))]
            checked = self.honest(cands)
            self._record("pass", len(ids), clock() - t0)
            k = max(range(len(checked)), key=lambda c: checked[c][1])
            text, s = checked[k]
            if not (ref - s < tolerance):
                break
            ref = max(ref, s)
            ids, score, removed = text_ids(self.clip, text), s, removed + 1
            yield "prune", removed, total, ids, text, score


def _apply(ids: list[int], swaps) -> list[int]:
    out = list(ids)
    for i, tok in swaps:
        out[i] = tok
    return out


def polish(polisher: Polisher, start: ScoredPrompt, should_stop) -> Iterator[tuple | Polish]:
    """Refine, then prune the prompt `start` (the search's best); yields the phases' progress
    tuples and finally a Polish (the caller tells them apart by type)."""
    cfg = polisher.config
    stats = {"search_score": start.score}
    if not start.prompt:
        yield Polish(start.prompt, start.score, stats)
        return
    ids, text = text_ids(polisher.clip, start.prompt), start.prompt
    score = polisher.honest([ids])[0][1]  # re-scored by the phases' own path
    clock = polisher.plan.clock if polisher.plan is not None else time.perf_counter
    t0 = polisher.started["refine"] = clock()
    rounds = 0
    if cfg.refine_steps:
        for rep in polisher.refine(ids, score, cfg.refine_steps, should_stop):
            _, rounds, _, ids, text, score = rep
            yield rep
    stats.update(refine_score=score, refine_rounds=rounds, refine_seconds=clock() - t0, refine_batch=polisher.batch)
    t1, removed = clock(), 0
    polisher.started["prune"] = t1
    if cfg.prune_tolerance > 0:
        for rep in polisher.prune(ids, score, cfg.prune_tolerance, should_stop):
            _, removed, _, ids, text, score = rep
            yield rep
    stats.update(prune_score=score, pruned_tokens=removed, prune_seconds=clock() - t1)
    yield Polish(text, score, stats)


def polish_hint(hint: str, stats: dict) -> str:
    """The hint after the polish phases: a search whose best prompt a few token swaps improve by
    more than STUCK_REFINE_GAIN sat in a poor basin (another seed may do far better), unless
    pruning then lifted it by as much again (dropping the stray tokens found the good prompt)."""
    refined = stats.get("refine_score", -math.inf)
    gain = refined - stats.get("search_score", math.inf)
    rescued = stats.get("prune_score", -math.inf) - refined > STUCK_REFINE_GAIN
    if gain > STUCK_REFINE_GAIN and not rescued:
        return STUCK_HINT
    return "" if rescued else hint


__all__ = ["Polish", "Polisher", "polish", "polish_hint"]
