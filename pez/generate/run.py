"""Regeneration: images from a (discovered) prompt with the pair's diffusion model, scored by CLIP.

Checks first (pair, prompt, settings, targets: nothing runs on bad input), then the run, then
the scores; the pipelines themselves are loaded by pez.generate.pipeline, and what differs for
FLUX.1 [schnell] (its settings, pipeline arguments and warnings) is in pez.generate.flux.


`generate(pair, prompt, config)` draws `config.num_images` images with the pair's generator and
scores each one with the pair's CLIP: cosine to the prompt's text features and, when targets are
given, cosine to each target image (the paper's image metric). A pair with several CLIPs (SDXL)
scores with all of them: each score is the weighted sum of the per-CLIP cosines (JointClip). Image k uses its own
`torch.Generator` seeded with `seed + k`, so it can be reproduced alone.

Generators are diffusers pipelines shared between users (pez.generate.pipeline). The "toy" pair
draws with `pez.toy.toy_generate` and needs no diffusers. Tests inject a pipeline from
`pez.testing.tiny_sd` through `pipeline=`.

Progress goes to `callback(GenerationStep)` after every denoising step; `should_stop()` is polled
at the same point and stops the run through diffusers' interrupt flag, keeping what was drawn.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..config import CFG_THRESHOLD, MAX_IMAGES, GenerateConfig
from ..engine.features import check_texts, image_features, text_features
from ..errors import ConfigError
from ..models import JointClip, LoadedClip, ModelPair, TextSpace, load_clip
from . import flux
from .pipeline import LoadedGenerator, as_generator, load_generator, resolve_pair


@dataclass(frozen=True)
class GenerationStep:
    """Progress of one run: `step` of `total` done (denoising steps; images for the toy pair)."""

    step: int
    total: int
    seconds: float  # since the run started


@dataclass(frozen=True)
class GenerationSettings:
    """A GenerateConfig with the pair's defaults filled in and every value checked."""

    negative_prompt: str
    seed: int
    num_images: int
    steps: int
    guidance: float
    width: int
    height: int

    @property
    def seeds(self) -> list[int]:
        return [self.seed + k for k in range(self.num_images)]


@dataclass
class ImageScores:
    """CLIP cosines of n generated images: to the prompt, and to K target images."""

    text: list[float] | None  # (n,) cosine of each image to the prompt
    image: list[float] | None  # (n,) mean cosine of each image over the targets
    matrix: list[list[float]] | None  # (n, K) cosine of each image to each target


@dataclass
class GenerationResult:
    """Images of one run, their seeds and scores, the settings used, and what to tell the user."""

    images: list[Any]  # PIL images
    seeds: list[int]  # seed of each image (seed + k); image k alone is reproduced by that seed
    prompt: str
    pair: str
    settings: GenerationSettings
    text_scores: list[float] | None = None  # (n,) cosine to the prompt; None when not scored
    image_scores: list[float] | None = None  # (n,) mean cosine over the targets; None without targets
    image_score_matrix: list[list[float]] | None = None  # (n, K)
    seconds: float = 0.0  # generation only (no loading, no scoring)
    score_seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    stopped: bool = False  # should_stop() ended the run early
    steps_done: int = 0

    @property
    def seconds_per_image(self) -> float:
        return self.seconds / max(len(self.images), 1)

    @property
    def best(self) -> int | None:
        """Index of the best image: highest target score, else highest prompt score."""
        scores = self.image_scores or self.text_scores
        return None if not scores else max(range(len(scores)), key=scores.__getitem__)


# ---------------------------------------------------------------------------------------------
# Validation


def resolve_settings(pair: ModelPair, config: GenerateConfig | None = None) -> GenerationSettings:
    """Fill the pair's defaults into `config` and check every value. Raises ConfigError."""
    config = GenerateConfig() if config is None else config
    if not isinstance(config, GenerateConfig):
        raise ConfigError(f"config: expected a GenerateConfig, received {type(config).__name__}")
    defaults = {"steps": pair.steps, "guidance": pair.guidance, "width": pair.size, "height": pair.size}
    # GenerateConfig checks itself when built: the pair's defaults go through the same check.
    filled = dataclasses.replace(config, **{k: v for k, v in defaults.items() if getattr(config, k) is None})
    if pair.kind == "toy" and filled.width != filled.height:
        raise ConfigError(f"size: the toy generator draws square images, received {filled.width}x{filled.height}")
    if pair.kind == "flux":
        flux.check_sizes(filled.width, filled.height)
    return GenerationSettings(**{**dataclasses.asdict(filled), "guidance": float(filled.guidance)})


# ---------------------------------------------------------------------------------------------
# Running


class _StepHook:
    """diffusers `callback_on_step_end`: reports progress and raises the interrupt flag on stop."""

    def __init__(self, total: int, callback: Callable | None, should_stop: Callable[[], bool] | None):
        self.total, self.callback, self.should_stop = total, callback, should_stop
        self.steps_done, self.stopped, self.t0 = 0, False, time.perf_counter()

    def __call__(self, pipe: Any, i: int, t: Any, tensors: dict) -> dict:
        self.total = int(getattr(pipe, "num_timesteps", None) or self.total)
        self.steps_done = i + 1
        if self.callback is not None:
            self.callback(GenerationStep(self.steps_done, self.total, time.perf_counter() - self.t0))
        if self.should_stop is not None and self.steps_done < self.total and self.should_stop():
            pipe._interrupt = True  # diffusers' documented interrupt: later steps are skipped
            self.stopped = True
        return tensors


def _run_diffusers(
    gen: LoadedGenerator, prompt: str, s: GenerationSettings, hook: _StepHook, kind: str = "sd"
) -> tuple[list, list]:
    """(images, nsfw flags or []) from one batched pipeline call."""
    generators = [torch.Generator("cpu").manual_seed(seed) for seed in s.seeds]  # CPU: same noise on any device
    if kind == "flux":
        kwargs = flux.call_kwargs(prompt, s)
    else:
        cfg_on = s.guidance > CFG_THRESHOLD
        kwargs = {
            "prompt": prompt,
            "negative_prompt": (s.negative_prompt or None) if cfg_on else None,
            "num_inference_steps": s.steps,
            "guidance_scale": s.guidance,
            "width": s.width,
            "height": s.height,
            "num_images_per_prompt": s.num_images,
        }
    with gen.lock:
        out = gen.pipeline(**kwargs, generator=generators, callback_on_step_end=hook)
    return list(out.images), list(getattr(out, "nsfw_content_detected", None) or [])


def _run_toy(prompt: str, s: GenerationSettings, hook: _StepHook) -> list:
    """Toy pair: one toy_generate call per image (seed + k), so seeding matches the SD path."""
    from ..toy.generator import toy_generate

    images = []
    hook.total = s.num_images
    for k, seed in enumerate(s.seeds):
        if k and hook.should_stop is not None and hook.should_stop():
            hook.stopped = True
            break
        images += toy_generate(prompt, seed=seed, num_images=1, size=s.width)
        hook.steps_done = k + 1
        if hook.callback is not None:
            hook.callback(GenerationStep(k + 1, s.num_images, time.perf_counter() - hook.t0))
    return images


def _warnings(gen: LoadedGenerator | None, prompt: str, s: GenerationSettings, kind: str = "sd") -> list[str]:
    """What the user should know before looking at the images."""
    if kind == "flux" and gen is not None:
        return flux.warnings(gen.pipeline, prompt, s)
    out = []
    if s.negative_prompt.strip():
        if gen is None:
            out.append("negative prompt has no effect on the toy generator (it draws the shapes named)")
        elif s.guidance <= CFG_THRESHOLD:
            out.append(
                f"negative prompt has no effect at guidance {s.guidance:g} (classifier-free guidance is off "
                f"at guidance <= {CFG_THRESHOLD:g}); raise guidance above {CFG_THRESHOLD:g} to use it"
            )
    tokenizer = getattr(gen.pipeline, "tokenizer", None) if gen is not None else None
    if tokenizer is not None:
        n = len(tokenizer(prompt, truncation=False, verbose=False).input_ids)
        if n > tokenizer.model_max_length:
            keep = tokenizer.model_max_length - 2
            out.append(f"prompt is {n - 2} tokens; the generator reads only the first {keep}")
    return out


def _nsfw_warnings(flags: list) -> list[str]:
    hits = [k for k, flagged in enumerate(flags) if flagged]
    if not hits:
        return []
    return [f"image(s) {hits} were flagged by the pipeline's safety checker and blacked out"]


# ---------------------------------------------------------------------------------------------
# Scoring


@torch.inference_mode()
def score_images(clip: TextSpace, images: Sequence[Any], prompt: str | None = None, targets: Any = None) -> ImageScores:
    """CLIP cosines of `images` to `prompt` and to `targets` (images, or (K, D) unit features)."""
    if len(images) == 0:
        return ImageScores([] if prompt else None, [] if targets is not None else None, None)
    feats = image_features(clip, images)  # (n, D)
    text = (feats @ text_features(clip, [prompt]).T)[:, 0].tolist() if prompt else None
    if targets is None:
        return ImageScores(text, None, None)
    sims = feats @ target_features(clip, targets).T  # (n, K)
    return ImageScores(text, sims.mean(dim=1).tolist(), sims.tolist())


def target_features(clip: TextSpace, targets: Any) -> torch.Tensor:
    """(K, D) unit features of target images, or checked precomputed features. Raises ConfigError."""
    if isinstance(targets, torch.Tensor):
        if targets.ndim != 2 or targets.shape[0] == 0:
            raise ConfigError(f"targets: expected (K, D) features with K >= 1, received shape {tuple(targets.shape)}")
        return torch.nn.functional.normalize(targets.to(clip.device, torch.float32), dim=-1)
    if isinstance(targets, (str, bytes)) or not isinstance(targets, Sequence):
        targets = [targets]
    if len(targets) > MAX_IMAGES:
        raise ConfigError(f"targets: expected at most {MAX_IMAGES} images, received {len(targets)}")
    return image_features(clip, targets)


def _prepare_scoring(
    pair: ModelPair, prompt: str, clip: TextSpace | None, targets: Any, device: Any
) -> tuple[TextSpace, torch.Tensor | None]:
    """Load the CLIP(s) and encode the targets before generating, so bad inputs fail fast."""
    clip = clip if clip is not None else load_clip(pair.clip, device=device)
    if not isinstance(clip, (LoadedClip, JointClip)):
        raise ConfigError(f"clip: expected a LoadedClip or JointClip (pez.load_clip), received {type(clip).__name__}")
    if targets is None:
        return clip, None
    feats = target_features(clip, targets)
    dim = text_features(clip, [prompt]).shape[1]
    if feats.shape[1] != dim:
        raise ConfigError(f"targets: expected features of width {dim} (this CLIP's), received {feats.shape[1]}")
    return clip, feats


# ---------------------------------------------------------------------------------------------
# The entry point


def generate(
    pair: str | ModelPair,
    prompt: str,
    config: GenerateConfig | None = None,
    *,
    targets: Any = None,
    clip: TextSpace | None = None,
    score: bool = True,
    device: str | torch.device | None = None,
    offload: bool = False,
    pipeline: Any = None,
    callback: Callable[[GenerationStep], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> GenerationResult:
    """Draw `config.num_images` images of `prompt` with the pair's generator and score them.

    pair: registry name or ModelPair (its generator may be a local diffusers folder).
    config: negative prompt, seed, count, steps, guidance, size; None fields take the pair's
        defaults. Image k is drawn from seed + k.
    targets: images (or (K, D) unit CLIP features) to score against; scored with `clip`
        (default: the pair's CLIP, or its CLIPs jointly) unless `score` is False.
    pipeline: a diffusers pipeline or LoadedGenerator to use instead of the pair's (tests).
    callback: receives a GenerationStep after every denoising step.
    should_stop: polled after every step; True stops early and returns the images as they are.
    Raises ConfigError for invalid inputs and WeightsNotFoundError for missing weights, both
    before any generation.
    """
    # 1. Validate everything cheap first
    pair = resolve_pair(pair)
    prompt = check_texts([prompt])[0]
    settings = resolve_settings(pair, config)
    # 2. Models: scoring CLIP (+ target features), then the generator
    scorer, target_feats = _prepare_scoring(pair, prompt, clip, targets, device) if score else (None, None)
    toy = pipeline is None and pair.kind == "toy"
    gen = None if toy else _generator_for(pair, pipeline, device, offload, scorer)
    result = GenerationResult(
        [], settings.seeds, prompt, pair.name, settings, warnings=_warnings(gen, prompt, settings, pair.kind)
    )
    if should_stop is not None and should_stop():
        result.stopped, result.seeds = True, []
        return result
    # 3. Generate
    hook = _StepHook(settings.steps, callback, should_stop)
    if toy:
        images, flags = _run_toy(prompt, settings, hook), []
    else:
        images, flags = _run_diffusers(gen, prompt, settings, hook, pair.kind)
    result.seconds = time.perf_counter() - hook.t0
    result.images, result.seeds = images, settings.seeds[: len(images)]
    result.stopped, result.steps_done = hook.stopped, hook.steps_done
    result.warnings += _nsfw_warnings(flags) + _stop_warnings(hook, toy)
    # 4. Score
    if scorer is not None:
        _score_into(result, scorer, target_feats)
    return result


def _generator_for(
    pair: ModelPair, pipeline: Any, device: Any, offload: bool, clip: LoadedClip | None
) -> LoadedGenerator:
    """The injected pipeline, else the pair's (its text encoder shared with the scoring CLIP when they
    are the same weights: one copy of the text tower)."""
    if pipeline is not None:
        return as_generator(pipeline)
    return load_generator(pair, device, offload=offload, text_encoder_of=clip)


def _stop_warnings(hook: _StepHook, toy: bool) -> list[str]:
    if not hook.stopped:
        return []
    if toy:
        return [f"stopped after {hook.steps_done} of {hook.total} images"]
    return [f"stopped after {hook.steps_done} of {hook.total} steps; the images are only partly denoised"]


def _score_into(result: GenerationResult, clip: TextSpace, target_feats: torch.Tensor | None) -> None:
    t0 = time.perf_counter()
    scores = score_images(clip, result.images, result.prompt, target_feats)
    result.text_scores, result.image_scores, result.image_score_matrix = scores.text, scores.image, scores.matrix
    result.score_seconds = time.perf_counter() - t0


__all__ = [
    "GenerationResult",
    "GenerationSettings",
    "GenerationStep",
    "ImageScores",
    "generate",
    "resolve_settings",
    "score_images",
    "target_features",
]
