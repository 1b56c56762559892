"""Beyond plain PEZ: start prompts, discrete refinement, pruning and the stuck hint.

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
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .config import (
    REFINE_BATCH,
    REFINE_COMBOS,
    REFINE_TOPK,
    REFINE_VERIFY,
    STUCK_HINT,
    STUCK_MIN_GAIN,
    STUCK_MIN_STEPS,
    STUCK_REFINE_GAIN,
    InvertConfig,
)
from .vocab import SafetyList, VocabFilter, vocabulary

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Start prompt and stuck hint


def initial_ids(clip, vf: VocabFilter, mask: torch.Tensor, config: InvertConfig, gen: torch.Generator) -> torch.Tensor:
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


def text_ids(clip, text: str) -> list[int]:
    """The prompt body of `text` as the tokenizer reads it (no SOT/EOT, truncated to context)."""
    row = clip.tokenizer([text])[0].tolist()  # [SOT, body..., EOT, pad...]
    end = row.index(clip.eot_id) if clip.eot_id in row else len(row)
    return row[1:end]


def stuck_hint(step: int, start_score: float, best_score: float) -> str:
    """STUCK_HINT when, after STUCK_MIN_STEPS, the best score gained less than STUCK_MIN_GAIN over
    the mean score of the random start (config.py explains the criterion); "" otherwise."""
    if step < STUCK_MIN_STEPS or not (math.isfinite(start_score) and math.isfinite(best_score)):
        return ""
    return STUCK_HINT if best_score - start_score < STUCK_MIN_GAIN else ""


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


def text_rejector(config: InvertConfig) -> Callable[[str], bool]:
    """True for decoded texts that must never be returned: a safety-list word (with `safe`) or a
    user blocklist word inside them, e.g. formed by sub-word pieces glued together."""
    words = tuple(w.strip().lower() for w in config.blocklist if w and w.strip())
    safety = SafetyList.default() if config.safe else None

    def reject(text: str) -> bool:
        low = text.lower()
        return any(w in low for w in words) or (safety is not None and safety.blocks_text(text))

    return reject


# ---------------------------------------------------------------------------------------------
# Refinement and pruning


@dataclass
class Polish:
    """Outcome of the refine and prune phases."""

    prompt: str  # the prompt to return: the shortest within tolerance of the best
    score: float  # its honest score
    stats: dict[str, float] = field(default_factory=dict)


class Polisher:
    """Refines and prunes the tracker's best prompt, streaming (phase, round, rounds, text, score)."""

    def __init__(self, clip, encoder, targets, tracker, mask: torch.Tensor, config: InvertConfig, gen):
        self.clip, self.encoder, self.targets, self.tracker = clip, encoder, targets, tracker
        self.mask, self.config, self.gen = mask, config, gen
        self.reject = text_rejector(config)
        # Honest scores computed here, by one path (batched encode_ids), so the phases decide the
        # same way whatever the search cached (its scores depend on report_every).
        self.scores: dict[str, float] = {}

    # -- honest scores -------------------------------------------------------------------------

    def honest(self, bodies: list[list[int]], id_scores: list[float] | None = None) -> list[tuple[str, float]]:
        """(decoded text, honest score) of each id body; texts that do not round-trip are
        re-encoded from their re-tokenisation in one batched forward. Rejected texts score -inf."""
        tr = self.tracker
        texts = [tr.decode(b) for b in bodies]
        pending: dict[str, list[int]] = {}
        for i, (text, body) in enumerate(zip(texts, bodies)):
            if not text or text in self.scores or self.reject(text):
                continue
            retok = text_ids(self.clip, text)
            if id_scores is not None and retok == list(body):
                self.scores[text] = id_scores[i]
            else:
                pending[text] = retok
        if pending:
            self.scores.update(zip(pending, self._objective(list(pending.values())).tolist()))
        out = []
        for text in texts:
            ok = text and not self.reject(text)
            out.append((text, self.scores[text] if ok else -math.inf))
            if ok:
                tr.scores[text] = self.scores[text]  # for the result's top_k
        return out

    @torch.no_grad()
    def _objective(self, bodies: list[list[int]]) -> torch.Tensor:
        feats = F.normalize(self.encoder.encode_ids(bodies).float(), dim=-1)
        return self.targets.objective(feats)

    def _offer(self, text: str, score: float) -> None:
        from .optim import ScoredPrompt

        if score > self.tracker.best.score:
            self.tracker.best = ScoredPrompt(text, score)

    # -- refine --------------------------------------------------------------------------------

    def _gains(self, ids: list[int]) -> torch.Tensor:
        """(L, V) linearised objective gain of swapping each position to each allowed token."""
        emb = vocabulary(self.clip).embeddings  # (V, d)
        x = emb[torch.tensor(ids, device=emb.device)].unsqueeze(0).detach().requires_grad_(True)  # (1, L, d)
        with torch.enable_grad():
            feats = F.normalize(self.encoder.encode_prompt_embeddings(x).float(), dim=-1)
            (grad,) = torch.autograd.grad(self.targets.objective(feats).sum(), x)
        g = grad[0].to(emb.dtype)  # (L, d)
        gains = (g @ emb.T).float() - (g * emb[ids]).sum(-1, keepdim=True).float()  # (L, V)
        gains = gains + self.mask.unsqueeze(0)
        gains[torch.arange(len(ids)), torch.tensor(ids)] = -math.inf  # not a swap
        return gains

    def refine(self, ids: list[int], score: float, rounds: int, should_stop) -> Iterator[tuple]:
        """Greedy honest-score ascent by single-token swaps. Yields ("refine", round, rounds,
        ids, text, score) after each round; the last yield holds the best."""
        tried: set[tuple[int, ...]] = {tuple(ids)}
        text, misses = self.tracker.decode(ids), 0
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
            id_scores = self._objective(cands).tolist()  # (B,) scores of the id sequences themselves
            # Swaps that each help at different positions often help together: also try the best
            # 2, 3, ... of them at once (one more small batch).
            gaining, used = [], set()
            for o in sorted(range(len(swaps)), key=lambda o: -id_scores[o]):
                if id_scores[o] > score and swaps[o][0] not in used:
                    gaining.append(swaps[o])
                    used.add(swaps[o][0])
            combos = [_apply(ids, gaining[:j]) for j in range(2, min(len(gaining), REFINE_COMBOS) + 1)]
            if combos:
                cands, id_scores = cands + combos, id_scores + self._objective(combos).tolist()
            order = sorted(range(len(cands)), key=lambda o: -id_scores[o])[:REFINE_VERIFY]
            checked = self.honest([cands[o] for o in order], [id_scores[o] for o in order])
            k = max(range(len(checked)), key=lambda c: checked[c][1])
            misses += 1
            if checked[k][1] > score:
                text, score, misses = *checked[k], 0
                ids = text_ids(self.clip, text)  # continue from what the text re-tokenises to
                tried.add(tuple(ids))
                self._offer(text, score)
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
            self._offer(text, s)
            ids, score, removed = text_ids(self.clip, text), s, removed + 1
            yield "prune", removed, total, ids, text, score


def _apply(ids: list[int], swaps) -> list[int]:
    out = list(ids)
    for i, tok in swaps:
        out[i] = tok
    return out


def polish(polisher: Polisher, should_stop) -> Iterator[tuple]:
    """Refine, then prune the tracker's best prompt; yields the phases' progress tuples and
    finally a Polish (the caller tells them apart by type)."""
    cfg, tr = polisher.config, polisher.tracker
    start_text, start_score = tr.best.prompt, tr.best.score
    stats = {"search_score": start_score}
    if not start_text:
        yield Polish(start_text, start_score, stats)
        return
    ids, text = text_ids(polisher.clip, start_text), start_text
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


__all__ = ["Polish", "Polisher", "initial_ids", "polish", "polish_hint", "stuck_hint", "text_ids", "text_rejector"]
