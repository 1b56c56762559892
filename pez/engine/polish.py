"""Beyond plain PEZ: discrete refinement, pruning and ordering of the search's best prompt.

PEZ's last projected prompt is a good start but not a local optimum over *tokens*. After the
search, discrete phases polish the best prompt, always judged by the honest score (the
decoded text, re-tokenised and re-encoded, as the user will copy it):

refine   One round: the gradient g_i of the objective at each token embedding e_i of the current
         prompt gives the linearised gain of swapping position i to token v, (e_v - e_i) . g_i
         (as in HotFlip/AutoPrompt). The top REFINE_TOPK tokens per position form the candidate
         swaps; a batch of untried ones (REFINE_BATCH_MIN to REFINE_BATCH, sized from the cost of
         the last round's forward) is evaluated as one batched forward, the best few
         are decoded and honestly re-scored, and the best is kept only if its honest score is
         higher than the current one. So refinement never lowers the score.
prune    Drop one token at a time (each removal evaluated in one batched forward) while the honest
         score stays within `prune_tolerance` of the best; report the shortest such prompt. In the
         readable style the test is per word: the cheapest word goes while removing it costs less
         than the tolerance, so every word left earns its place.
order    (readable style) Score other orders of the words (reversed, each word moved to the front
         or the back, neighbours swapped, a few random ones: up to ORDER_CANDIDATES per round, one
         batched forward) and keep the best while one beats the current order.

The readable style also drops repeated words before refining (the first of each stays) and
refines without creating one. The phases yield PolishRound progress (phase "refine" / "prune" /
"order") and check should_stop before each round, so Stop keeps the best found so far. CLIP
only: they need the embedding-level encoder. `diverse_top` picks top-k alternatives that differ
in their words (pez.engine.optim calls it for the result's top_k).

Cost: the gradients and the batched scores of swaps run in the search's precision (the `fast`
encoder: bf16 where the search is bf16); only the few texts a round re-scores honestly, and every
score reported, are fp32. The phases pay for themselves out of the run's time (pez.engine.budget):
each phase that is on gets its share of the polish (POLISH_SPLIT), a round or a pass starts only
when its measured cost fits in that share,
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
    DIVERSE_JACCARD,
    ORDER_CANDIDATES,
    REFINE_BATCH_MIN,
    REFINE_COMBOS,
    REFINE_TOPK,
    REFINE_VERIFY,
    STUCK_HINT,
    STUCK_MAX_SCORE,
    STUCK_REFINE_GAIN,
    InvertConfig,
)
from ..results import ScoredPrompt
from .budget import Plan
from .scorer import TextScorer
from .tower import SpaceEncoder
from .vocab import text_ids

# ---------------------------------------------------------------------------------------------
# Refinement, pruning and ordering


@dataclass
class PolishRound:
    """Progress of one polish round: after round `round` of at most `rounds` of `phase` ("refine",
    "prune": tokens removed of those that could go, "order"), the current prompt."""

    phase: str
    round: int
    rounds: int
    ids: list[int]  # the current prompt's token ids (its body)
    text: str  # its decoded text
    score: float  # its honest score


@dataclass
class Polish:
    """Outcome of the refine and prune phases."""

    prompt: str  # the prompt to return: the shortest within tolerance of the best
    score: float  # its honest score
    stats: dict[str, float] = field(default_factory=dict)


class Polisher:
    """Refines, prunes and orders a prompt, streaming PolishRound progress.

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
        self.passes = 0  # prune passes run
        self.order_rounds = 0  # order rounds run

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

    def _gains(self, ids: list[int], unique: bool = False) -> torch.Tensor:
        """(L, V) linearised objective gain of swapping each position to each allowed token (in a
        joint search the sum over the CLIPs: each CLIP's gradient at its own embeddings); with
        `unique`, no swap to a token the prompt already holds."""
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
        if unique:
            gains[:, torch.tensor(ids)] = -math.inf  # no word twice
        return gains

    def refine(
        self, ids: list[int], score: float, rounds: int, should_stop, unique: bool = False
    ) -> Iterator[PolishRound]:
        """Greedy honest-score ascent by single-token swaps (with `unique`, none that repeats a
        token). Yields a PolishRound after each round; the last holds the best. A round starts only
        when the run's plan admits it (pez.engine.budget: its cost fits in the refine's share)."""
        tried: set[tuple[int, ...]] = {tuple(ids)}
        text, misses = self.scorer.decode(ids), 0
        clock = self.plan.clock if self.plan is not None else time.perf_counter
        for r in range(1, rounds + 1):
            if should_stop is not None and should_stop():
                break
            if not self._admit("round", self.batch):
                break
            t0, batch = clock(), self.batch
            gains = self._gains(ids, unique)
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
            if unique:  # two positions may gain by the same token: not both
                combos = [c for c in combos if len(set(c)) == len(c)]
            if combos:
                cands, id_scores = cands + combos, id_scores + self.fast.objective(combos).tolist()
            order = sorted(range(len(cands)), key=lambda o: -id_scores[o])[:REFINE_VERIFY]
            checked = self.honest([cands[o] for o in order], [id_scores[o] for o in order])
            k = max(range(len(checked)), key=lambda c: checked[c][1])
            misses += 1
            if checked[k][1] > score and not (unique and _repeats(text_ids(self.clip, checked[k][0]))):
                text, score, misses = *checked[k], 0
                ids = text_ids(self.clip, text)  # continue from what the text re-tokenises to
                tried.add(tuple(ids))
            self._record("round", batch, clock() - t0)
            yield PolishRound("refine", r, rounds, ids, text, score)

    # -- prune ---------------------------------------------------------------------------------

    def prune(
        self, ids: list[int], score: float, tolerance: float, should_stop, per_word: bool = False
    ) -> Iterator[PolishRound]:
        """Drop the cheapest token while the honest score stays within `tolerance` of the best
        seen; yields a PolishRound (round = tokens removed) after each removal. A pass (one
        forward of every removal) starts only when the run's plan admits it; `passes` counts them.

        `per_word` (the readable style): drop the cheapest token down to one even where it costs
        more (a prompt whose slots were tuned together may rise again as its stray words go),
        then return the shortest prompt of that path within `tolerance` of its best: every word
        left is one whose loss the path could not make up."""
        ref, total = score, len(ids) - 1
        removed = 0
        path = [(ids, self.scorer.decode(ids), score)]
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
            self.passes += 1
            k = max(range(len(checked)), key=lambda c: checked[c][1])
            text, s = checked[k]
            if s == -math.inf or not (per_word or ref - s < tolerance):
                break
            ref = max(ref, s)
            ids, score, removed = text_ids(self.clip, text), s, removed + 1
            path.append((ids, text, s))
            if not per_word:
                yield PolishRound("prune", removed, total, ids, text, score)
        if per_word:  # one report: the pick (the path's longer and worse prompts are never shown)
            top = max(s for *_, s in path)
            pick = max(i for i, (*_, s) in enumerate(path) if s >= top - tolerance)
            if pick:
                yield PolishRound("prune", pick, total, *path[pick])

    # -- order ---------------------------------------------------------------------------------

    def order(self, ids: list[int], score: float, rounds: int, should_stop) -> Iterator[PolishRound]:
        """Hill-climb over word orders: each round scores up to ORDER_CANDIDATES other orders of
        the current one (one batched forward) and moves to the best while it scores higher.
        Yields a PolishRound after each round that moved."""
        text = self.scorer.decode(ids)
        clock = self.plan.clock if self.plan is not None else time.perf_counter
        self.order_rounds = 0
        for r in range(1, rounds + 1):
            if len(ids) < 2 or (should_stop is not None and should_stop()):
                break
            cands = _orders(ids, ORDER_CANDIDATES, self.gen)
            if not cands or not self._admit("pass", len(cands)):
                break
            t0 = clock()
            checked = self.honest(cands)
            self._record("pass", len(cands), clock() - t0)
            self.order_rounds = r
            k = max(range(len(checked)), key=lambda c: checked[c][1])
            if not checked[k][1] > score:
                break
            text, score = checked[k]
            ids = text_ids(self.clip, text)
            yield PolishRound("order", r, rounds, ids, text, score)


PHASES = ("refine", "prune", "order")  # in the order they run
ORDER_ROUNDS = 50  # at most this many order rounds (each must raise the score)


def _apply(ids: list[int], swaps) -> list[int]:
    out = list(ids)
    for i, tok in swaps:
        out[i] = tok
    return out


def _repeats(ids: list[int]) -> bool:
    return len(set(ids)) < len(ids)


def unique_ids(ids: list[int]) -> list[int]:
    """`ids` without repeats: the first of each token stays, in order."""
    seen: set[int] = set()
    return [i for i in ids if not (i in seen or seen.add(i))]


def _orders(ids: list[int], limit: int, gen: torch.Generator) -> list[list[int]]:
    """Other orders of `ids` to try, natural ones first: reversed, each word moved to the front
    and to the back, neighbours swapped; then random ones, up to `limit` in all."""
    n, out, seen = len(ids), [], {tuple(ids)}

    def add(order):
        if tuple(order) not in seen and len(out) < limit:
            seen.add(tuple(order))
            out.append(list(order))

    add(ids[::-1])
    for i in range(1, n):
        add([ids[i], *ids[:i], *ids[i + 1 :]])
    for i in range(n - 1):
        add([*ids[:i], *ids[i + 1 :], ids[i]])
        add([*ids[:i], ids[i + 1], ids[i], *ids[i + 2 :]])
    for _ in range(4 * limit):
        if len(out) >= limit or len(seen) >= math.factorial(min(n, 10)):
            break
        add([ids[j] for j in torch.randperm(n, generator=gen).tolist()])
    return out


def polish(polisher: Polisher, start: ScoredPrompt, should_stop) -> Iterator[PolishRound | Polish]:
    """Refine, prune, then order the prompt `start` (the search's best), each phase that is on in
    its share of the polish's time; yields PolishRound progress and finally a Polish."""
    cfg, plan = polisher.config, polisher.plan
    stats = {"search_score": start.score}
    if not start.prompt:
        yield Polish(start.prompt, start.score, stats)
        return
    ids, text = text_ids(polisher.clip, start.prompt), start.prompt
    readable = cfg.readable
    if readable and _repeats(ids):  # no word twice: the first of each stays
        stats["repeats_dropped"] = len(ids) - len(unique_ids(ids))
        ids = unique_ids(ids)
        text = polisher.scorer.decode(ids)
    score = polisher.honest([ids])[0][1]  # re-scored by the phases' own path
    if score == -math.inf:  # the shortened text is refused (glued into a blocked word): keep the search's
        ids, text = text_ids(polisher.clip, start.prompt), start.prompt
        score = polisher.honest([ids])[0][1]
    clock = plan.clock if plan is not None else time.perf_counter
    wanted = {"refine": cfg.refine_steps > 0, "prune": cfg.prune_tolerance > 0, "order": readable}
    on = [p for p in PHASES if wanted[p]]
    runs = {
        "refine": lambda: polisher.refine(ids, score, cfg.refine_steps, should_stop, unique=readable),
        "prune": lambda: polisher.prune(ids, score, cfg.prune_tolerance, should_stop, per_word=readable),
        "order": lambda: polisher.order(ids, score, ORDER_ROUNDS, should_stop),
    }
    done, seconds = dict.fromkeys(PHASES, 0), dict.fromkeys(PHASES, 0.0)
    for phase in PHASES:
        if wanted[phase]:
            if plan is not None:
                plan.begin(phase, on[on.index(phase) :])
            t0 = polisher.started[phase] = clock()
            for rep in runs[phase]():  # reads ids and score as the phase starts
                ids, text, score, done[phase] = rep.ids, rep.text, rep.score, rep.round
                yield rep
            seconds[phase] = clock() - t0
        stats[f"{phase}_score"] = score  # after the phase (as before it when it is off)
    stats.update(
        refine_rounds=done["refine"],
        refine_seconds=seconds["refine"],
        refine_batch=polisher.batch,
        pruned_tokens=done["prune"],
        prune_passes=polisher.passes,
        prune_seconds=seconds["prune"],
        order_rounds=polisher.order_rounds,
        order_seconds=seconds["order"],
    )
    yield Polish(text, score, stats)


def _words(text: str) -> frozenset[str]:
    return frozenset(w.lower() for w in text.split())


def diverse_top(prompts: list[ScoredPrompt], k: int, jaccard: float = DIVERSE_JACCARD) -> list[ScoredPrompt]:
    """Up to k prompts, best first, that differ in their words: a prompt whose word set overlaps
    one already picked by more than `jaccard` (shared words / all words) is left out."""
    picked: list[tuple[ScoredPrompt, frozenset[str]]] = []
    for p in prompts:
        if len(picked) >= k:
            break
        w = _words(p.prompt)
        if all(len(w & q) / max(len(w | q), 1) <= jaccard for _, q in picked):
            picked.append((p, w))
    return [p for p, _ in picked]


def polish_hint(hint: str, stats: dict, scale: float = 1.0) -> str:
    """The hint after the polish phases: a search whose best prompt a few token swaps improve by
    more than STUCK_REFINE_GAIN sat in a poor basin (another seed may do far better), unless
    pruning then lifted it by as much again (dropping the stray tokens found the good prompt).
    Gains are measured in units of the objective's `scale` (pez.engine.optim.Targets.scale): with
    images to avoid at weight 3 the scores span four times the range and so do the gains.
    A run that ends at STUCK_MAX_SCORE of the scale or above never gets the hint (the swaps got
    it out of the basin: another seed cannot do much better)."""
    limit = STUCK_REFINE_GAIN * scale
    refined = stats.get("refine_score", -math.inf)
    gain = refined - stats.get("search_score", math.inf)
    final = max(stats.get(f"{k}_score", -math.inf) for k in ("search", "refine", "prune", "order"))
    rescued = stats.get("prune_score", -math.inf) - refined > limit or final >= STUCK_MAX_SCORE * scale
    if gain > limit and not rescued:
        return STUCK_HINT
    return "" if rescued else hint


__all__ = ["Polish", "PolishRound", "Polisher", "diverse_top", "polish", "polish_hint", "unique_ids"]
