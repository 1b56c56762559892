"""PEZ itself: the embedding-level text encoder, the objective and the optimisation loop.

One step (paper, Algorithm 1), for N candidate prompts of M tokens each:
  ids  = Proj(P)                        nearest allowed vocabulary rows by cosine    (N, M)
  P'   = E[ids]                         their raw embeddings, a fresh leaf           (N, M, d)
  f    = encode([SOT, P', EOT])         text features of the projected prompts       (N, D)
  loss = sum_n (1 - objective(f_n, batch of targets))
  P   <- AdamW(P, dL/dP')               the gradient at P' is applied to the soft P

Only SOT, the M slots and EOT are run through the transformer: attention is causal and pooling
is at EOT, so padding after EOT cannot change the features (a parity test checks this against
the model's own `encode_text`). The features of the projected prompt are already computed by
the gradient pass, so scoring a candidate against *all* targets costs one small matmul, not a
second forward pass. The reported best is the score of the decoded text as the user will copy
it (re-tokenised and re-encoded when decoding does not round-trip); that check runs for each
candidate's best prompt once per report, in one batched forward, not on every step.
"""

from __future__ import annotations

import math
import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import accel
from . import refine as _refine
from .config import PLATEAU_MIN_GAIN, InvertConfig
from .errors import ConfigError
from .models import LoadedClip
from .results import InversionResult, ScoredPrompt, StepReport
from .vocab import VocabFilter, vocabulary

# ---------------------------------------------------------------------------------------------
# Embedding-level text encoder


class PromptEncoder:
    """Runs a CLIP text tower from token embeddings, over just the positions that matter."""

    def __init__(self, clip: LoadedClip, tower: Callable | None = None):
        m = clip.model
        if getattr(m, "text_pool_type", "argmax") not in ("argmax", "eos") or getattr(m, "attn_mask", None) is None:
            raise ConfigError(
                f"model: {clip.name} needs a causal text encoder pooled at EOT (open_clip CLIP "
                f"with text_pool_type 'argmax'), received pool type {getattr(m, 'text_pool_type', None)!r}"
            )
        self.clip = clip
        self.model = m
        self.cast_dtype = m.transformer.get_cast_dtype()
        self.batch_first = getattr(m.transformer, "batch_first", True)
        emb = vocabulary(clip).embeddings
        self.sot = emb[clip.sot_id]  # (d,)
        self.eot = emb[clip.eot_id]  # (d,)
        self.tower = tower  # (N, L, d), (N,) -> (N, D) in place of the model's modules (pez.accel)

    def encode_prompt_embeddings(self, prompt: torch.Tensor) -> torch.Tensor:
        """(N, M, d) prompt slot embeddings -> (N, D) unnormalised features of [SOT, slots, EOT]."""
        n, m, d = prompt.shape
        x = torch.cat(
            [self.sot.expand(n, 1, d).to(prompt.dtype), prompt, self.eot.expand(n, 1, d).to(prompt.dtype)], dim=1
        )  # (N, M + 2, d)
        eot_pos = torch.full((n,), m + 1, device=prompt.device)
        return self._forward(x, eot_pos)

    def encode_ids(self, ids: list[list[int]]) -> torch.Tensor:
        """Token ids of prompt bodies (no SOT/EOT, any lengths) -> (n, D) unnormalised features."""
        ctx = self.clip.context_length
        bodies = [list(b)[: ctx - 2] for b in ids]
        length = max(len(b) for b in bodies) + 2
        rows = [[self.clip.sot_id, *b, self.clip.eot_id] + [0] * (length - len(b) - 2) for b in bodies]
        tokens = torch.tensor(rows, device=self.clip.device)  # (n, L)
        eot_pos = torch.tensor([len(b) + 1 for b in bodies], device=self.clip.device)
        return self._forward(self.model.token_embedding(tokens), eot_pos)

    def _forward(self, x: torch.Tensor, eot_pos: torch.Tensor) -> torch.Tensor:
        """(N, L, d) input embeddings, (N,) EOT positions -> (N, D) pooled, projected features."""
        if self.tower is not None:
            return self.tower(x, eot_pos)
        m = self.model
        length = x.shape[1]
        x = x.to(self.cast_dtype) + m.positional_embedding[:length].to(self.cast_dtype)
        mask = m.attn_mask[:length, :length]
        if self.batch_first:
            x = m.transformer(x, attn_mask=mask)
        else:
            x = m.transformer(x.permute(1, 0, 2), attn_mask=mask).permute(1, 0, 2)
        x = m.ln_final(x)
        pooled = x[torch.arange(x.shape[0], device=x.device), eot_pos]  # (N, d)
        proj = m.text_projection
        if proj is None:
            return pooled
        return proj(pooled) if isinstance(proj, torch.nn.Linear) else pooled @ proj


# ---------------------------------------------------------------------------------------------
# Targets and objective


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


# ---------------------------------------------------------------------------------------------
# The loop


_SPACES = re.compile(r"\s+")


def clean_text(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


class _BestTracker:
    """Honest scores of decoded texts, cached by text; per-candidate and overall bests.

    `encoder` scores texts in fp32. `pass_is_fp32` says the gradient pass is fp32 too, so a prompt
    that round-trips through decoding keeps the score the pass gave it; otherwise (bf16/fp16
    search) every reported text is re-scored in fp32 once, so a score means the same at any
    precision."""

    def __init__(self, clip: LoadedClip, encoder: PromptEncoder, targets: Targets, n: int, pass_is_fp32: bool = True):
        self.clip, self.encoder, self.targets = clip, encoder, targets
        self.pass_is_fp32 = pass_is_fp32
        self.scores: dict[str, float] = {}  # decoded text -> honest score
        self.by_ids: dict[tuple[int, ...], str] = {}  # projected ids -> decoded text
        self.cand_best = torch.full((n,), -math.inf, device=clip.device)  # best score seen per candidate
        self.window: dict[int, tuple[list[int], float]] = {}  # candidate -> (ids, score) to decode
        self.best = ScoredPrompt("", -math.inf)
        self.reject: Callable[[str], bool] = lambda text: False  # texts never to return

    def decode(self, ids: list[int]) -> str:
        key = tuple(ids)
        if key not in self.by_ids:
            self.by_ids[key] = clean_text(self.clip.tokenizer.decode(ids))
        return self.by_ids[key]

    def observe(self, ids: torch.Tensor, id_scores: torch.Tensor) -> None:
        """ids (N, M), id_scores (N,): each projected prompt's score. Remembers each candidate's
        best since the last flush; decoding and honest re-scoring wait for `flush()`."""
        for n in torch.nonzero(id_scores > self.cand_best).flatten().tolist():
            self.window[n] = (ids[n].tolist(), float(id_scores[n]))
        self.cand_best = torch.maximum(self.cand_best, id_scores)

    def flush(self, current: tuple[list[int], float] | None = None) -> None:
        """Decode the remembered prompts (and `current`, the ids and pass score of the prompt a
        report shows) and score the exact texts (one batched forward for the texts that do not
        re-tokenise to the same ids or whose pass score is not fp32); update the bests."""
        pending: dict[str, list[int]] = {}  # text -> its re-tokenised body, when not yet scored
        extra = [] if current is None else [current]
        for body, id_score in [*self.window.values(), *extra]:
            text = self.decode(body)
            if text in self.scores or not text or self.reject(text):
                continue
            retok = _refine.text_ids(self.clip, text)
            if retok == body and self.pass_is_fp32:  # the pass already scored this exact text
                self.scores[text] = id_score
            else:
                pending[text] = retok
        if pending:
            with torch.no_grad():
                feats = F.normalize(self.encoder.encode_ids(list(pending.values())).float(), dim=-1)
                for text, s in zip(pending, self.targets.objective(feats).tolist()):
                    self.scores[text] = s
        for n, (body, _) in self.window.items():
            text = self.decode(body)
            if text not in self.scores:  # empty or rejected
                continue
            self.cand_best[n] = max(float(self.cand_best[n]), self.scores[text])
            if self.scores[text] > self.best.score:
                self.best = ScoredPrompt(text, self.scores[text])
        self.window.clear()

    def top_k(self, k: int) -> list[ScoredPrompt]:
        ranked = sorted(self.scores.items(), key=lambda kv: kv[1], reverse=True)[:k]
        return [ScoredPrompt(t, s) for t, s in ranked]


def optimize(
    clip: LoadedClip,
    targets: Targets,
    config: InvertConfig | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Iterator[StepReport]:
    """Run PEZ, yielding a StepReport every `config.report_every` steps and a final one with
    `done=True` and the InversionResult. Stopping (should_stop() true, or closing the generator
    after any report) keeps the best prompt found so far."""
    config = config or InvertConfig()
    config.fits(clip.context_length)
    seed = config.seed if config.seed is not None else random.SystemRandom().randrange(2**31)
    gen = torch.Generator().manual_seed(seed)
    vocab = vocabulary(clip)
    precision = accel.search_precision(config.precision, clip.device, vocab.embeddings.shape[1])
    encoder = PromptEncoder(clip, accel.search_tower(clip, precision))  # the gradient pass
    scorer = PromptEncoder(clip, accel.scoring_tower(clip))  # fp32, for every reported score
    vf = VocabFilter.from_config(config)
    mask = vocab.mask(vf)  # (V,) 0 allowed, -inf not
    n, k = config.candidates, targets.positive.shape[0]
    tracker = _BestTracker(clip, scorer, targets, n, pass_is_fp32=precision == "fp32")
    tracker.reject = _refine.text_rejector(config)

    # 1. Initialise P from the embeddings of random allowed tokens (or the start prompt).
    init = _refine.initial_ids(clip, vf, mask, config, gen)
    soft = vocab.embeddings[init.to(clip.device)].float().clone().requires_grad_(True)  # (N, M, d)
    opt = torch.optim.AdamW([soft], lr=config.lr, weight_decay=config.weight_decay)
    project = accel.projector(vocab, mask)  # exact; skips most full vocabulary scans

    history: list[tuple[int, float, float]] = []
    start, step = time.perf_counter(), 0
    last: tuple[torch.Tensor, torch.Tensor] | None = None  # (ids, scores) of the latest step
    plateau = _Plateau(config.patience)
    interrupted = False
    try:
        while step < config.steps:
            if should_stop is not None and should_stop():
                break
            # 2. Project, then take the gradient at the projection on a batch of targets.
            ids = project(soft)  # (N, M)
            projected = vocab.embeddings[ids].detach().requires_grad_(True)  # (N, M, d)
            with torch.enable_grad():
                feats = F.normalize(encoder.encode_prompt_embeddings(projected).float(), dim=-1)  # (N, D)
                batch = _sample_batch(k, config.batch_size, gen, clip.device)
                objective = targets.objective(feats, batch)  # (N,)
                loss = (1 - objective).sum()
                (grad,) = torch.autograd.grad(loss, projected)
            soft.grad = grad.to(soft.dtype)
            opt.step()

            # 3. Score the projected prompts against all targets (free: features are at hand).
            with torch.no_grad():
                full = objective.detach() if batch is None else targets.objective(feats.detach())  # (N,)
            tracker.observe(ids, full)
            step, last = step + 1, (ids, full)
            if step <= config.report_every or step % config.report_every == 0 or step == config.steps:
                tracker.flush(_current_entry(last))  # decode, honestly re-score: every step at first, then per report
            history.append((step, float(loss.detach()) / n, tracker.best.score))
            if plateau.update(step, full):
                break
            if step % config.report_every == 0 and step < config.steps:
                yield _report(step, config, history, _current(tracker, last), tracker, start, plateau.hint(tracker))
    except KeyboardInterrupt:  # Ctrl-C in a CLI: stop and keep the best
        interrupted = True
    tracker.flush(_current_entry(last))
    stopped = interrupted or (step < config.steps and not plateau.done)
    hint = plateau.hint(tracker)

    # 4. Beyond PEZ: refine and prune the best prompt (pez.refine), unless the user stopped.
    polished, stats = None, {"search_steps": step, "search_score": tracker.best.score}
    if not stopped and (config.refine_steps or config.prune_tolerance > 0):
        polisher = _refine.Polisher(clip, scorer, targets, tracker, mask, config, gen)
        try:
            for item in _refine.polish(polisher, should_stop):
                if isinstance(item, _refine.Polish):
                    polished = item
                else:
                    yield _phase_report(item, config, history, tracker, start, hint)
        except KeyboardInterrupt:
            stopped = True
        stopped = stopped or (should_stop is not None and should_stop())
    if polished is not None:
        stats.update(polished.stats)
        hint = _refine.polish_hint(hint, polished.stats)
    elapsed = time.perf_counter() - start
    prompt, score = (
        (polished.prompt, polished.score) if polished is not None else (tracker.best.prompt, tracker.best.score)
    )
    result = InversionResult(
        prompt=prompt,
        score=score if step else float("nan"),
        top_k=_top_k(tracker, config.top_k, polished),
        steps_run=step,
        elapsed=elapsed,
        stopped=stopped,
        seed=seed,
        model=clip.name,
        config=config,
        history=history,
        stats={
            "scan_fraction": project.scans / max(project.calls, 1),
            "fp32_search": float(precision == "fp32"),
            **stats,
        },
        hint=hint,
    )
    final = _report(step, config, history, _current(tracker, last), tracker, start, hint)
    final.done, final.result = True, result
    final.best_prompt, final.best_score = prompt, result.score
    yield final


def _top_k(tracker: _BestTracker, k: int, polished) -> list[ScoredPrompt]:
    """Distinct prompts, best first. After pruning, the returned (shortest) prompt leads and the
    longer ones it was pruned from (scoring less than prune_tolerance more) are left out."""
    if polished is None or not polished.prompt:
        return tracker.top_k(k)
    rest = [p for p in tracker.top_k(len(tracker.scores)) if p.score <= polished.score and p.prompt != polished.prompt]
    return [ScoredPrompt(polished.prompt, polished.score), *rest[: k - 1]]


class _Plateau:
    """Early stop when the best projected score has not risen for `patience` steps (0: never),
    and the random start's mean score for the stuck hint (pez.refine.stuck_hint)."""

    def __init__(self, patience: int):
        self.patience, self.best, self.best_step, self.step = patience, -math.inf, 0, 0
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
        return _refine.stuck_hint(self.step, self.start, tracker.best.score)


def _phase_report(item, config, history, tracker, start, hint) -> StepReport:
    """A StepReport for a refine/prune round: ("refine"|"prune", round, rounds, ids, text, score)."""
    phase, r, rounds, _, text, score = item
    elapsed = time.perf_counter() - start
    return StepReport(
        step=r,
        steps=rounds,
        loss=1 - score,
        current_prompt=text,
        current_score=score,
        best_prompt=tracker.best.prompt,
        best_score=tracker.best.score,
        elapsed=elapsed,
        steps_per_sec=0.0,
        phase=phase,
        hint=hint,
    )


def _current(tracker: _BestTracker, last) -> ScoredPrompt:
    """The best candidate of the latest step, decoded, with its score against all targets."""
    if last is None:
        return ScoredPrompt("", float("nan"))
    ids, scores = last
    n = int(scores.argmax())
    text = tracker.decode(ids[n].tolist())
    return ScoredPrompt(text, tracker.scores.get(text, float(scores[n])))


def _current_entry(last) -> tuple[list[int], float] | None:
    """(ids, pass score) of the latest step's best candidate, the prompt a report shows; in an fp32
    search a text that round-trips keeps that score (no extra forward), as the window's do."""
    if last is None:
        return None
    ids, scores = last
    n = int(scores.argmax())
    return ids[n].tolist(), float(scores[n])


def _sample_batch(k: int, batch_size: int, gen: torch.Generator, device) -> torch.Tensor | None:
    """Indices of this step's positive targets; None means all of them."""
    if k <= batch_size:
        return None
    return torch.randperm(k, generator=gen)[:batch_size].to(device)


def _report(step, config, history, current, tracker, start, hint: str = "") -> StepReport:
    elapsed = time.perf_counter() - start
    return StepReport(
        step=step,
        steps=config.steps,
        loss=history[-1][1] if history else float("nan"),
        current_prompt=current.prompt,
        current_score=current.score,
        best_prompt=tracker.best.prompt,
        best_score=tracker.best.score,
        elapsed=elapsed,
        steps_per_sec=step / elapsed if elapsed > 0 else 0.0,
        hint=hint,
    )


__all__ = [
    "InversionResult",
    "PromptEncoder",
    "ScoredPrompt",
    "StepReport",
    "Targets",
    "clean_text",
    "optimize",
]
