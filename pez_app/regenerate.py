"""Regeneration: the one panel every tab uses, and what a regeneration does.

Each tab says what to draw from its inputs (a plan maps the tab's own inputs to galleries of
`Draw`s); its handler is made by the request pipeline (pez_app.pipeline.Pipeline.regenerate), which
adds the model and the generation settings (`generation_params`: names, types and help from
pez.config's GenerateConfig metadata; defaults: the default pair's), runs the draws through
pez.generate (`draw_all`, on the GPU) and returns each gallery's captioned images and one summary
(`finish`).
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

from . import progress as prog
from .server import Limits, ServerSettings, user_error
from .settings import as_int, number_box, require_available


@dataclass(frozen=True)
class Draw:
    """One prompt to draw: `targets` (images) score the results, `label` prefixes their captions."""

    prompt: str
    targets: Sequence | None = None
    label: str = ""


def gen_config(negative_prompt, seed, steps, guidance, num_images) -> pez.GenerateConfig:
    """Regeneration settings as the controls send them -> a GenerateConfig (checked when built: a
    value out of range or of the wrong kind is a ConfigError naming the field; an empty seed draws
    one)."""
    return pez.GenerateConfig(
        negative_prompt="" if negative_prompt is None else negative_prompt,
        seed=as_int(seed) if seed not in (None, "") else random.randrange(int(GENERATE_BOUNDS["seed"].hi)),
        num_images=as_int(num_images),
        steps=as_int(steps),
        guidance=float(guidance) if isinstance(guidance, int) and not isinstance(guidance, bool) else guidance,
    )


def run_generation(
    server: ServerSettings, model: str, draw: Draw, cfg: pez.GenerateConfig, progress=None, should_stop=None
):
    """One prompt -> GenerationResult, via pez.generate (cached pipeline per pair)."""
    from pez.generate import generate

    model = server.check_model(model)
    require_available(model)
    if not isinstance(draw.prompt, str) or not draw.prompt.strip():
        raise user_error("The prompt is empty: run a search first or type one.")
    callback = None
    if progress is not None:

        def callback(s):  # pez.generate.GenerationStep -> Gradio progress bar
            progress((s.step, s.total), desc="Generating", unit="steps")

    targets = list(draw.targets) if draw.targets else None
    pipeline = clip = None
    if model in pez.list_pairs():  # scored with the search's CLIP, the pipeline sharing its text tower
        clip = server.load_model(model)
        pipeline = server.load_pipeline(model, clip)
    return generate(
        model,
        draw.prompt,
        cfg,
        device=server.device,
        targets=targets,
        callback=callback,
        should_stop=should_stop,
        clip=clip,
        pipeline=pipeline,
    )


def draw_all(
    server: ServerSettings,
    galleries: list[list[Draw]],
    model: str,
    cfg: pez.GenerateConfig,
    deadline,
    progress=None,
) -> tuple[list[list], str]:
    """Every draw of a regeneration (on ZeroGPU, in a GPU worker): GenerationResults per gallery,
    and what stopped them early ("" when nothing did; `deadline` is the server's time limit,
    pipeline.Deadline)."""
    results = [[run_generation(server, model, d, cfg, progress, deadline) for d in draws] for draws in galleries]
    return results, deadline.note() if deadline.hit else ""


def finish(galleries: list[list[Draw]], results: list[list], stopped: str) -> tuple:
    """The handler's outputs: each gallery's captioned images, then the summary."""
    items = [[item for d, r in zip(draws, rs) for item in captioned(r, d.label)] for draws, rs in zip(galleries, results)]  # fmt: skip
    targets = max(len(d.targets or []) for draws in galleries for d in draws)
    summary = generation_summary([r for rs in results for r in rs], targets)
    if stopped:
        summary += f"\n⚠️ Stopped at {stopped}."
    return (*items, summary)


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
        text += f" · mean image similarity to the target{'s' if targets > 1 else ''} {sum(img) / len(img):.3f}"
    if txt:
        text += f" · mean prompt similarity {sum(txt) / len(txt):.3f}"
    warnings = [w for r in results for w in (r.warnings or [])]
    if warnings:
        text += "\n" + "\n".join(f"⚠️ {w}" for w in dict.fromkeys(warnings))
    return text


def image_paths(gallery) -> list:
    """Gallery value (list of (path, caption) or paths) -> list of paths/images."""
    return [item[0] if isinstance(item, (tuple, list)) else item for item in gallery or []]


def subject_lines(subjects, cap: int = Limits.max_subjects) -> list[str]:
    """The subjects of a style regeneration, one per line: at most `cap` (PEZ_MAX_SUBJECTS)."""
    if subjects is not None and not isinstance(subjects, str):
        raise pez.ConfigError(f"subjects: expected text (one subject per line), received {type(subjects).__name__}")
    lines = [s for s in (subjects or "").splitlines() if s.strip()]
    if len(lines) > cap:
        raise pez.ConfigError(f"subjects: expected at most {cap} lines on this server, received {len(lines)}")
    return lines


def styled_prompts(style, subjects, template, cap: int = Limits.max_subjects) -> str:
    """The prompts a style regeneration will use, one per line (cheap: no model; it runs outside
    the queue, so a template or a subject list it refuses is refused without any work)."""
    if not isinstance(style, str) or not style.strip():
        return ""
    try:
        return "\n".join(pez.style_prompts(subject_lines(subjects, cap), style, template or pez.STYLE_TEMPLATE))
    except pez.ConfigError as e:
        return f"⚠️ {e}"


# ---------------------------------------------------------------------------------------------
# The handlers' generation parameters (their docstrings are the API and MCP tool descriptions)

GENERATION = ("negative_prompt", "seed", "steps", "guidance", "num_images")  # the panel's options, in order


def generation_params() -> list[inspect.Parameter]:
    """model, then the generation settings: typed, with the default pair's defaults."""
    P, pair, g = inspect.Parameter, pez.get_pair(pez.DEFAULT_PAIR), GenerateConfig()
    defaults = {"negative_prompt": g.negative_prompt, "seed": g.seed, "steps": pair.steps, "guidance": pair.guidance}
    defaults["num_images"] = g.num_images
    types = {"negative_prompt": str, "seed": int, "steps": int, "guidance": float, "num_images": int}
    return [P("model", P.POSITIONAL_OR_KEYWORD, annotation=str)] + [
        P(n, P.POSITIONAL_OR_KEYWORD, default=defaults[n], annotation=types[n]) for n in GENERATION
    ]


def handler_doc(description: str, args_doc: str) -> str:
    docs = "\n".join(f"    {n}: {about(GenerateConfig, n).help}" for n in GENERATION)
    return (
        f"{description}\n\nArgs:\n{args_doc}\n    model: model pair name, e.g. 'sd-turbo' or 'toy'\n{docs}\n"
        "Returns:\n    the gallery (or galleries) of (image, caption with similarity and seed), and a summary"
    )


def arm_regenerate(control: prog.RunControl, busy: bool = False) -> str:
    """Regenerate clicked (outside the queue): say when it will wait, for this tab's own search or
    for another run holding the model (`busy`); the handler's result replaces this."""
    control.regen_error = ""
    if control.armed or control.started:
        return "⏳ Waiting for your search to finish (Stop ends it)…"
    return "⏳ Waiting for a free model slot (another run is using it)…" if busy else "Generating…"


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
                        self.seed = number_box(GENERATE_BOUNDS["seed"], label("seed"), g.seed)
                    with gr.Row():
                        self.steps = number_box(GENERATE_BOUNDS["steps"], label("steps"), pair.steps)
                        self.guidance = number_box(GENERATE_BOUNDS["guidance"], label("guidance"), pair.guidance)
                        self.count = number_box(GENERATE_BOUNDS["num_images"], label("num_images"), g.num_images)
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
                self.summary = prog.plain_box(f"{elem}-summary")

    def inputs(self) -> list:
        return [self.negative, self.seed, self.steps, self.guidance, self.count]  # GENERATION's order

    def wire(self, pipeline, fn: Callable, inputs: list, api_name: str, control: gr.State) -> Any:
        """Button -> "waiting" note (while the tab's search or another run holds the model) ->
        fn(*inputs, *options, control) -> galleries and summary; a failure's message shows in the
        summary."""
        quick = {"queue": False, "api_visibility": "private"}

        def arm(control: prog.RunControl) -> str:
            return arm_regenerate(control, pipeline.slots.busy())

        evt = self.button.click(arm, control, self.summary, **quick).then(
            fn,
            [*inputs, *self.inputs(), control],
            [*self.galleries, self.summary],
            api_name=api_name,
            show_progress="full",
            show_progress_on=self.galleries,
            **pipeline.gpu_options(),
        )
        evt.failure(
            lambda c: f"⚠ Regeneration failed: {c.regen_error or 'see the message'}", control, self.summary, **quick
        )
        return evt

    def pair_defaults(self, model: str) -> list:
        p = pez.PAIRS.get(model) if isinstance(model, str) else None
        if p is None:
            return [gr.skip(), gr.skip()]
        return [gr.Number(value=p.steps), gr.Number(value=p.guidance)]
