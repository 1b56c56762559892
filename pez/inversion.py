"""The uses of PEZ as plain functions: image -> prompt, many images -> one prompt, prompt
concatenation, style transfer, distillation and negative targets.

Each has a streaming form (`*_stream`, a generator of reports a UI can plot and stop at any
time) and a blocking form that runs to the end and returns a result dataclass. `model` is a
registry pair name, any CLIP spec accepted by `pez.models.load_clip`, a LoadedClip or a JointClip
(several CLIPs searched as one, e.g. the pair "sdxl"; `InvertConfig.clip_weights` weights them).
"""

from __future__ import annotations

import dataclasses
import string
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from .config import (
    BOUNDS,
    CONCAT_SEPARATOR,
    MAX_IMAGES,
    MAX_TEXT_CHARS,
    STYLE_TEMPLATE,
    TEXT_WEIGHT,
    InvertConfig,
)
from .engine.features import check_texts, image_features, text_features
from .engine.optim import Targets, optimize
from .engine.vocab import clean_text, text_ids
from .errors import ConfigError
from .images import load_images
from .models import DEFAULT_PAIR, TextSpace, get_clip
from .results import ConcatReport, ConcatResult, InversionResult, StepReport

Model = str | TextSpace


def image_targets(
    clip: TextSpace,
    images: Sequence[Any] | None,
    negative_images: Sequence[Any] | None = None,
    negative_weight: float = 1.0,
    texts: Sequence[str] | None = None,
    text_weight: float = TEXT_WEIGHT,
) -> Targets:
    """Targets from images (positives), optional images to move away from (negatives) and optional
    texts the prompt should also match. With texts the positive target is one combined row,
    (mean image feature + text_weight * mean text feature) / (1 + text_weight): its cosine score is
    the weighted mean of the image and the text similarity (every step then sees all images)."""
    images, negative_images, texts = list(images or []), list(negative_images or []), list(texts or [])
    if not images and not negative_images:
        raise ConfigError("images: expected at least one image, received none")
    if len(images) > MAX_IMAGES:
        raise ConfigError(f"images: expected at most {MAX_IMAGES} images, received {len(images)}")
    if len(images) + len(negative_images) > MAX_IMAGES:  # one run holds at most MAX_IMAGES in all
        raise ConfigError(
            f"negative_images: expected at most {MAX_IMAGES - len(images)} (at most {MAX_IMAGES} images in all), "
            f"received {len(negative_images)}"
        )
    positive = _features(clip, images)
    if texts:
        _check_weight("text_weight", text_weight)
        text = text_features(clip, check_texts(texts, "text")).mean(0)
        image = positive.mean(0) if positive.shape[0] else torch.zeros_like(text)
        w = text_weight if positive.shape[0] else 1.0
        positive = ((image + w * text) / (1 + w if positive.shape[0] else 1.0))[None]  # (1, D)
    return Targets(positive, _features(clip, negative_images), negative_weight)


def _check_weight(name: str, value) -> None:
    BOUNDS["negative_weight"].check(name, value)  # the same [0, 10] range as the negative weight


def text_targets(clip: TextSpace, texts: Sequence[str], negative_texts: Sequence[str] = ()) -> Targets:
    """Targets from texts (prompt distillation)."""
    pos = text_features(clip, check_texts(texts, "text")) if texts else _empty(clip)
    neg = text_features(clip, check_texts(negative_texts, "negative text")) if negative_texts else _empty(clip)
    return Targets(pos, neg)


def _features(clip: TextSpace, images: list) -> torch.Tensor:
    return image_features(clip, load_images(images)) if images else _empty(clip)


def _empty(clip: TextSpace) -> torch.Tensor:
    return torch.zeros(0, clip.feature_dim, device=clip.device)


def run_to_end(reports: Iterator[StepReport]) -> InversionResult:
    """Drain a report stream and return its result (Ctrl-C during a run stops it, keeping the best)."""
    last = None
    for last in reports:
        pass
    return last.result


# ---------------------------------------------------------------------------------------------
# Image -> prompt, many images -> one prompt, negative targets


def invert_stream(
    images: Sequence[Any] | None,
    model: Model = DEFAULT_PAIR,
    config: InvertConfig | None = None,
    *,
    negative_images: Sequence[Any] | None = None,
    texts: Sequence[str] | None = None,
    text_weight: float = TEXT_WEIGHT,
    device: str | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Iterator[StepReport]:
    """Stream a PEZ run that finds one prompt for all `images` (and away from negatives), also
    matching `texts` with `text_weight` when given (see image_targets)."""
    config = config or InvertConfig()
    if config.judge == "regenerate":
        _judge_pair(model)  # before any work
    clip = get_clip(model, device, config.clip_weights)
    targets = image_targets(clip, images, negative_images, config.negative_weight, texts, text_weight)
    stream = optimize(clip, targets, config, should_stop)
    if config.judge == "regenerate":
        return _judged(stream, model, images, clip)
    return stream


def _judge_pair(model: Model) -> str:
    """The pair name judge="regenerate" regenerates with; ConfigError unless `model` names a pair."""
    from .models import PAIRS

    if not (isinstance(model, str) and model in PAIRS):
        raise ConfigError(
            f"judge: 'regenerate' needs a model pair with a generator (one of {sorted(PAIRS)}), received {model!r}"
        )
    return model


def _judged(stream: Iterator[StepReport], pair: str, images, clip) -> Iterator[StepReport]:
    """The stream, its final result re-judged by regeneration (judge_by_regeneration)."""
    for rep in stream:
        if rep.done and rep.result is not None and not rep.result.stopped:
            rep.result = judge_by_regeneration(rep.result, pair, images, clip=clip)
            rep.best_prompt, rep.best_score = rep.result.prompt, rep.result.score
            rep.best_clip_scores = dict(rep.result.clip_scores)
        yield rep


def judge_by_regeneration(
    result: InversionResult, pair: str, images: Sequence[Any], *, clip=None, generate_config=None, pipeline=None
) -> InversionResult:
    """`result` with its final prompt picked among its top_k by regeneration: each candidate is drawn
    by the pair's generator (one image, seed 0 unless `generate_config` says otherwise) and the one
    whose image is most similar to the target `images` (CLIP image-image cosine, the pair's CLIP)
    wins. Its score stays its prompt-image score; stats gain regen_similarity (the winner's),
    regen_similarity_by_score (the first candidate's), regen_candidates and regen_seconds. One
    generation per candidate."""
    from .generate import regenerate

    if not result.top_k:
        return result
    start = time.perf_counter()
    sims = []
    for cand in result.top_k:
        out = regenerate(pair, cand.prompt, generate_config, targets=list(images), clip=clip, pipeline=pipeline)
        sims.append(sum(out.image_scores) / len(out.image_scores))
    k = max(range(len(sims)), key=sims.__getitem__)
    best = result.top_k[k]
    stats = {**result.stats, "regen_similarity": sims[k], "regen_candidates": len(sims)}
    stats.update(regen_seconds=time.perf_counter() - start, regen_similarity_by_score=sims[0])
    same = best.prompt == result.prompt
    names = list(result.clip_scores)
    clip_scores = result.clip_scores if same else ({names[0]: best.score} if len(names) == 1 else {})
    top_k = [best, *(p for i, p in enumerate(result.top_k) if i != k)]
    return dataclasses.replace(
        result, prompt=best.prompt, score=best.score, top_k=top_k, stats=stats, clip_scores=clip_scores
    )


def invert(images, model: Model = DEFAULT_PAIR, config: InvertConfig | None = None, **kwargs) -> InversionResult:
    """One prompt for one or several images; see invert_stream for the arguments."""
    return run_to_end(invert_stream(images, model, config, **kwargs))


# ---------------------------------------------------------------------------------------------
# Distillation: a long prompt -> a shorter one


def distill_stream(
    text: str,
    model: Model = DEFAULT_PAIR,
    config: InvertConfig | None = None,
    *,
    device: str | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Iterator[StepReport]:
    """Stream a PEZ run whose target is the CLIP text features of `text`. The short prompt is kept
    shorter than `text` (distill_length); a capped length is said in the result's hint."""
    config = config or InvertConfig()
    clip = get_clip(model, device, config.clip_weights)
    targets = text_targets(clip, [text])  # checks the text first
    length, note = distill_length(clip, text, config.prompt_len)
    if not note:
        return optimize(clip, targets, config, should_stop)
    return _noted(optimize(clip, targets, config.replace(prompt_len=length), should_stop), note)


def distill_length(clip: TextSpace, text: str, prompt_len: int) -> tuple[int, str]:
    """Distillation's length rule, for every front-end: the short prompt has fewer tokens than the
    long one (as long would distil nothing). Returns (length, note): `prompt_len` and "" when it is
    shorter; else the long prompt's token count minus 1 and a note saying so. Raises ConfigError
    for a one-token text, which has nothing shorter."""
    n = len(text_ids(clip, text))
    if n <= 1:
        raise ConfigError(f"text: expected a prompt of at least 2 tokens to distill, received {_tokens(n)}")
    if prompt_len < n:
        return prompt_len, ""
    return n - 1, (
        f"short prompt capped to {_tokens(n - 1)}: the long prompt has {_tokens(n)} "
        f"and a short one must be shorter (asked for {_tokens(prompt_len)})"
    )


def _tokens(n: int) -> str:
    return f"{n} token" + ("" if n == 1 else "s")


def _noted(reports: Iterator[StepReport], note: str) -> Iterator[StepReport]:
    """The reports, with `note` put first in the final result's hint."""
    for rep in reports:
        if rep.done and rep.result is not None:
            rep.result.hint = f"{note}; {rep.result.hint}" if rep.result.hint else note
        yield rep


def distill(text: str, model: Model = DEFAULT_PAIR, config: InvertConfig | None = None, **kwargs) -> InversionResult:
    return run_to_end(distill_stream(text, model, config, **kwargs))


# ---------------------------------------------------------------------------------------------
# Prompt concatenation


def join_prompts(prompts: Sequence[str], separator: str = CONCAT_SEPARATOR) -> str:
    return separator.join(clean_text(p) for p in prompts if p and p.strip())


def concatenate_stream(
    images: Sequence[Any],
    model: Model = DEFAULT_PAIR,
    config: InvertConfig | None = None,
    *,
    separator: str = CONCAT_SEPARATOR,
    device: str | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Iterator[ConcatReport]:
    """Invert each image on its own, then join the prompts (the paper's prompt concatenation)."""
    config = config or InvertConfig()
    clip = get_clip(model, device, config.clip_weights)
    pil = load_images(images)
    feats = image_features(clip, pil)  # (K, D)
    parts: list[InversionResult] = []
    stopped = False
    for i in range(len(pil)):
        targets = Targets(feats[i : i + 1], feats[:0])
        for rep in optimize(clip, targets, config, should_stop):
            if rep.done:
                parts.append(rep.result)
                stopped = rep.result.stopped
            else:
                yield ConcatReport(i, len(pil), rep, [p.prompt for p in parts])
        if stopped:
            break
    prompt = join_prompts([p.prompt for p in parts], separator)
    score = _score_text(clip, prompt, feats)
    result = ConcatResult(prompt, score, parts, stopped)
    yield ConcatReport(len(parts) - 1, len(pil), rep, [p.prompt for p in parts], True, result)


def concatenate(images, model: Model = DEFAULT_PAIR, config: InvertConfig | None = None, **kwargs) -> ConcatResult:
    last = None
    for last in concatenate_stream(images, model, config, **kwargs):
        pass
    return last.result


def _score_text(clip: TextSpace, text: str, feats: torch.Tensor) -> float:
    if not text.strip():
        return float("nan")
    return float((text_features(clip, [text]) @ feats.T).mean())


# ---------------------------------------------------------------------------------------------
# Style transfer


def apply_style(subject: str, style: str, template: str = STYLE_TEMPLATE) -> str:
    """Fill the style template, e.g. "{subject} in the style of {style}". Only the bare fields
    {subject} and {style} are filled ({{ and }} are literal braces); the template is never given
    to str.format, whose format specs, attributes and indexes a template could otherwise use."""
    pieces = check_template(template)
    values = {"subject": subject.strip(), "style": clean_text(style)}
    return clean_text("".join(text + (values[name] if name else "") for text, name in pieces))


def check_template(template: str) -> list[tuple[str, str | None]]:
    """A style template -> its (literal text, field name or None) pieces. Raises ConfigError
    unless it is text of at most MAX_TEXT_CHARS characters with {style} and only the bare fields
    {subject} and {style}."""
    expected = "template: expected a text with {style} and only the bare fields {subject} and {style}"
    if not isinstance(template, str) or len(template) > MAX_TEXT_CHARS:
        size = f"{len(template)} characters" if isinstance(template, str) else repr(template)
        raise ConfigError(f"{expected} (at most {MAX_TEXT_CHARS} characters), received {size:.80}")
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:  # an unmatched brace
        raise ConfigError(f"{expected}, received {template!r:.80} ({e})") from None
    pieces = []
    for text, name, spec, conversion in parsed:
        if name is not None and (name not in ("subject", "style") or spec or conversion):
            raise ConfigError(f"{expected}, received {template!r:.80}")
        pieces.append((text, name))
    if not any(name == "style" for _, name in pieces):
        raise ConfigError(f"{expected}, received {template!r:.80} (no {{style}})")
    return pieces


def style_prompts(subjects: Sequence[str], style: str, template: str = STYLE_TEMPLATE) -> list[str]:
    """One styled prompt per subject (empty subjects are skipped)."""
    return [apply_style(s, style, template) for s in subjects if s and s.strip()]


__all__ = [
    "ConcatReport",
    "ConcatResult",
    "apply_style",
    "concatenate",
    "concatenate_stream",
    "distill",
    "distill_length",
    "distill_stream",
    "get_clip",
    "image_targets",
    "invert",
    "invert_stream",
    "join_prompts",
    "judge_by_regeneration",
    "run_to_end",
    "style_prompts",
    "text_targets",
]
