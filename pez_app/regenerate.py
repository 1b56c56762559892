"""Regeneration: the one panel every tab uses, and the one factory of the regenerate handlers.

Each tab says what to draw from its inputs (`regenerate_endpoint(plan, ...)`: a plan maps the
tab's own inputs to galleries of `Draw`s); the factory adds the model and the generation settings
(names, types and help from pez.config's GenerateConfig metadata; defaults: the default pair's),
runs the draws through pez.generate, and returns each gallery's captioned images and one summary.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gradio as gr

import pez
from pez.config import GENERATE_BOUNDS, GenerateConfig, about

from . import zerogpu
from .server import SERVER, friendly_errors, gpu_handler, load_model, load_pipeline, user_error
from .settings import as_int, slider


@dataclass(frozen=True)
class Draw:
    """One prompt to draw: `targets` (images) score the results, `label` prefixes their captions."""

    prompt: str
    targets: Sequence | None = None
    label: str = ""


def gen_config(negative_prompt, seed, steps, guidance, num_images) -> pez.GenerateConfig:
    """Regeneration settings as the controls send them -> a GenerateConfig (an empty seed draws one)."""
    return pez.GenerateConfig(
        negative_prompt=negative_prompt or "",
        seed=as_int(seed) if seed not in (None, "") else random.randrange(int(GENERATE_BOUNDS["seed"].hi)),
        num_images=as_int(num_images),
        steps=as_int(steps),
        guidance=float(guidance),
    )


def run_generation(model: str, draw: Draw, cfg: pez.GenerateConfig, progress=None):
    """One prompt -> GenerationResult, via pez.generate (cached pipeline per pair)."""
    from pez.generate import generate

    if not draw.prompt or not draw.prompt.strip():
        raise user_error("The prompt is empty: run a search first or type one.")
    callback = None
    if progress is not None:

        def callback(s):  # pez.generate.GenerationStep -> Gradio progress bar
            progress((s.step, s.total), desc="Generating", unit="steps")

    targets = list(draw.targets) if draw.targets else None
    pipeline = clip = None
    if model in pez.list_pairs():  # scored with the search's CLIP, the pipeline sharing its text tower
        clip = load_model(model)
        pipeline = load_pipeline(model, clip)
    return generate(
        model, draw.prompt, cfg, device=SERVER.device, targets=targets, callback=callback, clip=clip, pipeline=pipeline
    )


def draw_all(galleries: list[list[Draw]], model: str, cfg: pez.GenerateConfig, progress=None) -> list[list]:
    """Every draw of a regeneration (on ZeroGPU, in a GPU worker): GenerationResults per gallery."""
    return [[run_generation(model, d, cfg, progress) for d in draws] for draws in galleries]


draw_on_gpu = gpu_handler(draw_all, zerogpu.generate_seconds)


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


def styled_prompts(style, subjects, template) -> str:
    """The prompts a style regeneration will use, one per line (cheap; no model)."""
    if not style or not style.strip():
        return ""
    lines = [s for s in (subjects or "").splitlines() if s.strip()]
    try:
        return "\n".join(pez.style_prompts(lines, style, template or pez.STYLE_TEMPLATE))
    except pez.ConfigError as e:
        return f"⚠️ {e}"


# ---------------------------------------------------------------------------------------------
# The handler factory (handlers' docstrings are the API and MCP tool descriptions)

GENERATION = ("negative_prompt", "seed", "steps", "guidance", "num_images")  # the panel's options, in order


def _generation_params() -> list[inspect.Parameter]:
    """model, then the generation settings: typed, with the default pair's defaults."""
    P, pair, g = inspect.Parameter, pez.get_pair(pez.DEFAULT_PAIR), GenerateConfig()
    defaults = {"negative_prompt": g.negative_prompt, "seed": g.seed, "steps": pair.steps, "guidance": pair.guidance}
    defaults["num_images"] = g.num_images
    types = {"negative_prompt": str, "seed": int, "steps": int, "guidance": float, "num_images": int}
    return [P("model", P.POSITIONAL_OR_KEYWORD, annotation=str)] + [
        P(n, P.POSITIONAL_OR_KEYWORD, default=defaults[n], annotation=types[n]) for n in GENERATION
    ]


def regenerate_endpoint(plan: Callable[..., list[list[Draw]]], description: str, args_doc: str) -> Callable:
    """The handler of one tab's Regenerate: gradio takes its name, signature and docstring.

    Parameters: `plan`'s own (the tab's inputs), `model`, the generation settings (GENERATION) and
    gradio's progress. `plan(*own)` checks the tab's inputs and says what to draw, one list of
    Draws per gallery; the draws run on the GPU (draw_on_gpu: spaces.GPU, with a duration from the
    draws); the handler returns each gallery's captioned images, then the summary."""
    P = inspect.Parameter
    own = list(inspect.signature(plan).parameters.values())
    progress = P("progress", P.POSITIONAL_OR_KEYWORD, default=gr.Progress(track_tqdm=True))
    sig = inspect.Signature([*own, *_generation_params(), progress])

    def handler(*args, **kwargs):
        a = sig.bind(*args, **kwargs)
        a.apply_defaults()
        galleries = plan(*(a.arguments[p.name] for p in own))
        cfg = gen_config(*(a.arguments[n] for n in GENERATION))
        model, progress = a.arguments["model"], a.arguments["progress"]
        results = zerogpu.call_on_gpu(draw_on_gpu, zerogpu.generate_seconds, galleries, model, cfg, progress)
        items = [[item for d, r in zip(draws, rs) for item in captioned(r, d.label)] for draws, rs in zip(galleries, results)]  # fmt: skip
        targets = max(len(d.targets or []) for draws in galleries for d in draws)
        return (*items, generation_summary([r for rs in results for r in rs], targets))

    docs = "\n".join(f"    {n}: {about(GenerateConfig, n).help}" for n in GENERATION)
    handler.__name__ = handler.__qualname__ = plan.__name__.lstrip("_")
    handler.__signature__ = sig
    handler.__doc__ = (
        f"{description}\n\nArgs:\n{args_doc}\n    model: model pair name, e.g. 'sd-turbo' or 'toy'\n{docs}\n"
        "Returns:\n    the gallery (or galleries) of (image, caption with similarity and seed), and a summary"
    )
    return friendly_errors(handler)


# ---------------------------------------------------------------------------------------------
# The panel


class RegeneratePanel:
    """Regenerate button, options (negative prompt, seed, steps, guidance, count), gallery(ies)
    and a summary right under them. `extra` adds a tab's own controls above the button."""

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

        def label(name: str) -> str:
            return about(GenerateConfig, name).label

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
                            label=label("negative_prompt"),
                            scale=3,
                            placeholder=about(GenerateConfig, "negative_prompt").help,
                            elem_id=f"{elem}-negative",
                        )
                        self.seed = gr.Number(g.seed, label=label("seed"), precision=0)
                    with gr.Row():
                        self.steps = slider(GENERATE_BOUNDS["steps"], label("steps"), pair.steps)
                        self.guidance = slider(GENERATE_BOUNDS["guidance"], label("guidance"), pair.guidance)
                        self.count = slider(GENERATE_BOUNDS["num_images"], label("num_images"), g.num_images)
            with gr.Column(scale=3, min_width=300):
                with gr.Row():
                    self.galleries = [
                        gr.Gallery(
                            label=name,
                            columns=columns if len(galleries) == 1 else 2,
                            height=280 if len(galleries) == 1 else 260,
                            object_fit="contain",
                            elem_id=gid,
                            fit_columns=False,
                        )
                        for name, gid in galleries
                    ]
                self.summary = gr.Markdown(label="Summary", elem_id=f"{elem}-summary", elem_classes="pez-summary")

    def inputs(self) -> list:
        return [self.negative, self.seed, self.steps, self.guidance, self.count]  # GENERATION's order

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
