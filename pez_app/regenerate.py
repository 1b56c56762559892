"""Regeneration: the one reusable panel every tab uses, and the generation handlers behind it."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import gradio as gr

import pez
from pez.config import GENERATE_BOUNDS

from .server import SERVER, user_error
from .settings import as_int, slider


def gen_config(negative_prompt, seed, steps, guidance, num_images) -> pez.GenerateConfig:
    return pez.GenerateConfig(
        negative_prompt=negative_prompt or "",
        seed=as_int(seed) if seed not in (None, "") else random.randrange(int(GENERATE_BOUNDS["seed"].hi)),
        num_images=as_int(num_images),
        steps=as_int(steps),
        guidance=float(guidance),
    )


def run_generation(model: str, prompt: str, cfg: pez.GenerateConfig, targets: list | None, progress=None):
    """One prompt -> GenerationResult, via pez.generate (cached pipeline per pair)."""
    from pez.generate import generate

    if not prompt or not prompt.strip():
        raise user_error("The prompt is empty: run a search first or type one.")
    callback = None
    if progress is not None:

        def callback(s):  # pez.generate.GenerationStep -> Gradio progress bar
            progress((s.step, s.total), desc="Generating", unit="steps")

    return generate(model, prompt, cfg, device=SERVER.device, targets=targets or None, callback=callback)


def captioned(result, label: str = "") -> list[tuple[Any, str]]:
    """GenerationResult -> gallery items captioned with similarity (to the targets, else to the
    prompt), seed, and a star on the best of several."""
    items = []
    scores = result.image_scores or result.text_scores
    for i, img in enumerate(result.images):
        parts = [label] if label else []
        if scores:
            parts.append(f"sim {scores[i]:.2f}")
        parts.append(f"seed {result.seeds[i]}")
        if len(result.images) > 1 and result.best == i:
            parts.append("★")
        items.append((img, " · ".join(parts)))
    return items


def generation_summary(results: list, targets: int) -> str:
    seconds = sum(r.seconds for r in results)
    n = sum(len(r.images) for r in results)
    text = f"{n} image{'s' if n != 1 else ''} in {seconds:.1f} s"
    img = [s for r in results for s in (r.image_scores or [])]
    txt = [s for r in results for s in (r.text_scores or [])]
    if targets and img:
        text += f" · mean image similarity to the target{'s' if targets > 1 else ''} **{sum(img) / len(img):.3f}**"
    if txt:
        text += f" · mean prompt similarity {sum(txt) / len(txt):.3f}"
    warnings = [w for r in results for w in (r.warnings or [])]
    if warnings:
        text += "\n\n" + "\n".join(f"⚠️ {w}" for w in dict.fromkeys(warnings))
    return text


def image_paths(gallery) -> list:
    """Gallery value (list of (path, caption) or paths) -> list of paths/images."""
    return [item[0] if isinstance(item, (tuple, list)) else item for item in gallery or []]


# ---------------------------------------------------------------------------------------------
# Handlers (their docstrings are the API and MCP tool descriptions)


def regenerate(
    prompt: str,
    image: str | None,
    model: str,
    negative_prompt: str = "",
    seed: int = 0,
    steps: int = 1,
    guidance: float = 0.0,
    num_images: int = 1,
    progress=gr.Progress(track_tqdm=True),
):
    """Generate images from a prompt with the model pair's diffusion model, scored against the target image.

    Args:
        prompt: the text to generate from (e.g. the prompt /invert found)
        image: optional target image; each generated image is scored by CLIP similarity to it
        model: model pair name, e.g. 'sd-turbo' or 'toy'
        negative_prompt: what to avoid (no effect at guidance 0)
        seed: seed of the first image (the others use seed+1, seed+2, ...)
        steps: sampling steps
        guidance: classifier-free guidance scale
        num_images: how many images
    Returns:
        a gallery of (image, caption with similarity and seed) and a one-line summary
    """
    cfg = gen_config(negative_prompt, seed, steps, guidance, num_images)
    targets = [image] if image is not None else None
    res = run_generation(model, prompt, cfg, targets, progress)
    return captioned(res), generation_summary([res], len(targets or []))


def regenerate_multi(
    prompt: str,
    images: list,
    model: str,
    negative_prompt: str = "",
    seed: int = 0,
    steps: int = 1,
    guidance: float = 0.0,
    num_images: int = 1,
    progress=gr.Progress(track_tqdm=True),
):
    """Generate the combined scene from a (joined) prompt, scored against all the target images.

    Args:
        prompt: the text to generate from
        images: the target images (a gallery) the results are scored against
        model: model pair name
        negative_prompt: what to avoid (no effect at guidance 0)
        seed: seed of the first image
        steps: sampling steps
        guidance: classifier-free guidance scale
        num_images: how many images
    """
    cfg = gen_config(negative_prompt, seed, steps, guidance, num_images)
    targets = image_paths(images) or None
    res = run_generation(model, prompt, cfg, targets, progress)
    return captioned(res), generation_summary([res], len(targets or []))


def styled_prompts(style, subjects, template) -> str:
    """The prompts a style regeneration will use, one per line (cheap; no model)."""
    if not style or not style.strip():
        return ""
    lines = [s for s in (subjects or "").splitlines() if s.strip()]
    try:
        return "\n".join(pez.style_prompts(lines, style, template or pez.STYLE_TEMPLATE))
    except pez.ConfigError as e:
        return f"⚠️ {e}"


def regenerate_style(
    style: str,
    subjects: str,
    template: str,
    model: str,
    negative_prompt: str = "",
    seed: int = 0,
    steps: int = 1,
    guidance: float = 0.0,
    num_images: int = 1,
    progress=gr.Progress(track_tqdm=True),
):
    """Generate one or more subjects in a learned style, e.g. "{subject} in the style of {style}".

    Args:
        style: the style prompt (e.g. what /style found)
        subjects: one subject per line
        template: how subject and style combine; must contain {style} (and usually {subject})
        model: model pair name
        negative_prompt: what to avoid (no effect at guidance 0)
        seed: seed of the first image
        steps: sampling steps
        guidance: classifier-free guidance scale
        num_images: images per subject
    """
    if not style or not style.strip():
        raise user_error("Find a style prompt first (or type one).")
    lines = [s for s in (subjects or "").splitlines() if s.strip()]
    if not lines:
        raise user_error("Enter at least one subject, one per line.")
    prompts = pez.style_prompts(lines, style, template or pez.STYLE_TEMPLATE)
    cfg = gen_config(negative_prompt, seed, steps, guidance, num_images)
    results, items = [], []
    for subject, prompt in zip(lines, prompts, strict=False):
        res = run_generation(model, prompt, cfg, None, progress)
        results.append(res)
        items += captioned(res, subject.strip())
    return items, generation_summary(results, 0)


def regenerate_distill(
    long_prompt: str,
    short_prompt: str,
    model: str,
    negative_prompt: str = "",
    seed: int = 0,
    steps: int = 1,
    guidance: float = 0.0,
    num_images: int = 1,
    progress=gr.Progress(track_tqdm=True),
):
    """Generate from a long and a short prompt with the same seeds, to compare them.

    Args:
        long_prompt: the original long prompt
        short_prompt: the distilled short prompt
        model: model pair name
        negative_prompt: what to avoid (no effect at guidance 0)
        seed: seed of the first image
        steps: sampling steps
        guidance: classifier-free guidance scale
        num_images: images per prompt
    """
    cfg = gen_config(negative_prompt, seed, steps, guidance, num_images)
    long_res = run_generation(model, long_prompt, cfg, None, progress)
    short_res = run_generation(model, short_prompt, cfg, None, progress)
    return captioned(long_res, "long"), captioned(short_res, "short"), generation_summary([long_res, short_res], 0)


# ---------------------------------------------------------------------------------------------
# The panel


class RegeneratePanel:
    """Regenerate button, options (negative prompt, seed, steps, guidance, count), gallery(ies)
    and a summary right under them. `extra` adds a tab's own controls above the button."""

    all: list[RegeneratePanel]  # set per build by the layout (pair defaults follow the model)

    def __init__(
        self,
        model_value: str,
        elem: str,
        title: str,
        button: str,
        galleries: list[tuple[str, str]],
        extra: Callable[[], None] | None = None,
        columns: int = 4,
    ):
        g, pair = pez.GenerateConfig(), pez.get_pair(model_value)
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=300):
                gr.Markdown(f"### {title}")
                if extra:
                    extra()
                self.button = gr.Button(button, variant="primary", elem_id=f"{elem}-regen")
                with gr.Accordion("Regeneration options", open=False):
                    with gr.Row():
                        self.negative = gr.Textbox(
                            g.negative_prompt,
                            label="Negative prompt",
                            scale=3,
                            placeholder="what to avoid (no effect at guidance 0)",
                            elem_id=f"{elem}-negative",
                        )
                        self.seed = gr.Number(g.seed, label="Seed", precision=0)
                    with gr.Row():
                        self.steps = slider("steps", "Sampling steps", pair.steps, GENERATE_BOUNDS)
                        self.guidance = slider("guidance", "Guidance", pair.guidance, GENERATE_BOUNDS)
                        self.count = slider("num_images", "Images", g.num_images, GENERATE_BOUNDS)
            with gr.Column(scale=3, min_width=300):
                with gr.Row():
                    self.galleries = [
                        gr.Gallery(
                            label=label,
                            columns=columns if len(galleries) == 1 else 2,
                            height=280 if len(galleries) == 1 else 260,
                            object_fit="contain",
                            elem_id=gid,
                            fit_columns=False,
                        )
                        for label, gid in galleries
                    ]
                self.summary = gr.Markdown(label="Summary", elem_id=f"{elem}-summary", elem_classes="pez-summary")

    def inputs(self) -> list:
        return [self.negative, self.seed, self.steps, self.guidance, self.count]

    def wire(self, fn: Callable, inputs: list, api_name: str, gpu: dict) -> Any:
        """Button -> fn(*inputs, *options) -> galleries and summary; a failure shows in the summary."""
        evt = self.button.click(
            fn,
            [*inputs, *self.inputs()],
            [*self.galleries, self.summary],
            api_name=api_name,
            show_progress="full",
            show_progress_on=self.galleries,
            **gpu,
        )
        evt.failure(
            lambda: "⚠ Regeneration failed: see the message.", None, self.summary, queue=False, api_visibility="private"
        )
        return evt

    def pair_defaults(self, model: str) -> list:
        try:
            p = pez.get_pair(model)
        except pez.ConfigError:
            return [gr.skip(), gr.skip()]
        return [gr.Slider(value=p.steps), gr.Slider(value=p.guidance)]
