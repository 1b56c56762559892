"""Beyond plain PEZ: discrete refinement and pruning of the search's best prompt.

PEZ's last projected prompt is a good start but not a local optimum over *tokens*. After the
search, two discrete phases polish the best prompt, always judged by the honest score (the
decoded text, re-tokenised and re-encoded, as the user will copy it):

refine   One round: the gradient g_i of the objective at each token embedding e_i of the current
         prompt gives the linearised gain of swapping position i to token v, (e_v - e_i) . g_i
         (as in HotFlip/AutoPrompt). The top REFINE_TOPK tokens per position form the candidate
         swaps; up to REFINE_BATCH untried ones are evaluated as one batched forward, the best few
         are decoded and honestly re-scored, and the best is kept only if its honest score is
         higher than the current one. So refinement never lowers the score.
prune    Drop one token at a time (each removal evaluated in one batched forward) while the honest
         score stays within `prune_tolerance` of the best; report the shortest such prompt.

Both phases stream StepReports (phase "refine" / "prune") and check should_stop before each
round, so Stop keeps the best found so far. CLIP only: they need the embedding-level encoder.
The constants (REFINE_TOPK, ...) are in pez.config; the loop that calls `polish` is pez.engine.optim.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from ..config import (
    REFINE_BATCH,
    REFINE_COMBOS,
    REFINE_TOPK,
    REFINE_VERIFY,
    STUCK_HINT,
    STUCK_REFINE_GAIN,
    InvertConfig,
)
from ..results import ScoredPrompt
from .scorer import TextScorer
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
    table the result's top_k is drawn from."""

    def __init__(
        self, search: TextScorer, mask: torch.Tensor, config: InvertConfig, gen: torch.Generator, seen: dict
    ):
        self.scorer = TextScorer(search.clip, search.encoder, search.targets, search.reject, search.texts)
        self.clip, self.encoder, self.targets = search.clip, search.encoder, search.targets
        self.mask, self.config, self.gen, self.seen = mask, config, gen, seen

    def honest(self, bodies: list[list[int]], id_scores: list[float] | None = None) -> list[tuple[str, float]]:
        """(decoded text, honest score) of each id body (pez.engine.scorer); rejected texts score -inf."""
        out = self.scorer.score(bodies, id_scores)
        self.seen.update((text, s) for text, s in out if s != -math.inf)
        return out

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
        ids, text, score) after each round; the last yield holds the best."""
        tried: set[tuple[int, ...]] = {tuple(ids)}
        text, misses = self.scorer.decode(ids), 0
        for r in range(1, rounds + 1):
            if should_stop is not None and should_stop():
                break
            gains = self._gains(ids)
            # After rounds without a gain the same gradient comes back: look further down its ranking.
            top = gains.topk(min(REFINE_TOPK * (misses + 1), gains.shape[1]), dim=-1)  # (L, k)
            swaps = []  # (position, token) of each untried single swap
            for i, j in torch.nonzero(torch.isfinite(top.values)).tolist():
                swap = (i, int(top.indices[i, j]))
                if tuple(_apply(ids, [swap])) not in tried:
                    swaps.append(swap)
            if not swaps:
                break
            if len(swaps) > REFINE_BATCH:
                pick = torch.randperm(len(swaps), generator=self.gen)[:REFINE_BATCH].tolist()
                swaps = [swaps[p] for p in pick]
            cands = [_apply(ids, [sw]) for sw in swaps]
            tried.update(tuple(c) for c in cands)
            id_scores = self.scorer.objective(cands).tolist()  # (B,) scores of the id sequences themselves
            # Swaps that each help at different positions often help together: also try the best
            # 2, 3, ... of them at once (one more small batch).
            gaining, used = [], set()
            for o in sorted(range(len(swaps)), key=lambda o: -id_scores[o]):
                if id_scores[o] > score and swaps[o][0] not in used:
                    gaining.append(swaps[o])
                    used.add(swaps[o][0])
            combos = [_apply(ids, gaining[:j]) for j in range(2, min(len(gaining), REFINE_COMBOS) + 1)]
            if combos:
                cands, id_scores = cands + combos, id_scores + self.scorer.objective(combos).tolist()
            order = sorted(range(len(cands)), key=lambda o: -id_scores[o])[:REFINE_VERIFY]
            checked = self.honest([cands[o] for o in order], [id_scores[o] for o in order])
            k = max(range(len(checked)), key=lambda c: checked[c][1])
            misses += 1
            if checked[k][1] > score:
                text, score, misses = *checked[k], 0
                ids = text_ids(self.clip, text)  # continue from what the text re-tokenises to
                tried.add(tuple(ids))
            yield "refine", r, rounds, ids, text, score

    # -- prune ---------------------------------------------------------------------------------

    def prune(self, ids: list[int], score: float, tolerance: float, should_stop) -> Iterator[tuple]:
        """Drop the cheapest token while the honest score stays within `tolerance` of the best
        seen; yields ("prune", removed, len - 1, ids, text, score) after each removal."""
        ref, total = score, len(ids) - 1
        removed = 0
        while len(ids) > 1:
            if should_stop is not None and should_stop():
                break
            cands = [ids[:i] + ids[i + 1 :] for i in range(len(ids))]
            checked = self.honest(cands)
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
    t0 = time.perf_counter()
    rounds = 0
    if cfg.refine_steps:
        for rep in polisher.refine(ids, score, cfg.refine_steps, should_stop):
            _, rounds, _, ids, text, score = rep
            yield rep
    stats.update(refine_score=score, refine_rounds=rounds, refine_seconds=time.perf_counter() - t0)
    t1, removed = time.perf_counter(), 0
    if cfg.prune_tolerance > 0:
        for rep in polisher.prune(ids, score, cfg.prune_tolerance, should_stop):
            _, removed, _, ids, text, score = rep
            yield rep
    stats.update(prune_score=score, pruned_tokens=removed, prune_seconds=time.perf_counter() - t1)
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
