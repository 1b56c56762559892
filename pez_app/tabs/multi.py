"""Multi-image: one prompt for several images, or concatenation (each image inverted on its
own, the prompts joined), then the combined scene regenerated."""

from __future__ import annotations

import gradio as gr

import pez
from pez.config import MAX_IMAGES

from .. import components as ui
from ..inputs import Choice
from ..pipeline import Job, Search, wire_search
from ..progress import plural
from ..regenerate import Draw, RegeneratePanel, image_paths
from ..server import user_error
from ..settings import require_available

IMAGES_DOC = "    images: the target images (a gallery of files)"


def require_images(images: list, what: str = "image", minimum: int = 1) -> list:
    if len(images) < minimum:
        raise user_error(f"Add at least {plural(minimum, what)} first (drag them in, or pick an example set).")
    if len(images) > MAX_IMAGES:
        raise user_error(f"At most {plural(MAX_IMAGES, 'image')} per run; received {len(images)}.")
    return images


def _invert_multi(images: list, *, model: str, config: pez.InvertConfig) -> Job:
    require_available(model)
    paths = require_images(image_paths(images))
    note = ui.toy_note(model, paths)

    def start(clip, config, should_stop):
        return pez.invert_stream(paths, clip, config, should_stop=should_stop)

    return Job("multi", start, images=len(paths), note=(lambda clip, res: note) if note else None)


INVERT_MULTI = Search(
    "invert_multi", _invert_multi, "Find one prompt that describes all of several images.", IMAGES_DOC
)

TOY_JOIN_NOTE = "; the toy CLIP was trained on one shape per picture, so joins score very low there"


def _concatenate(images: list, *, model: str, config: pez.InvertConfig) -> Job:
    require_available(model)
    paths = require_images(image_paths(images))

    def start(clip, config, should_stop):  # config.time_budget: this image's share of the run's
        return pez.concatenate_stream(paths, clip, config, should_stop=should_stop)

    def note(clip, res) -> str:
        return TOY_JOIN_NOTE if clip.name == "toy" or model == "toy" else ""

    return Job("concatenate", start, images=len(paths), note=note, record={"images": len(paths)}, view="concatenate")


CONCATENATE = Search(
    "concatenate",
    _concatenate,
    "Invert each image on its own, then join the prompts into one (prompt concatenation).",
    IMAGES_DOC,
    per_image=True,
)


def _regenerate_multi(prompt: str, images: list) -> list[list[Draw]]:
    return [[Draw(prompt, image_paths(images) or None)]]


REGENERATE_MULTI = (
    _regenerate_multi,
    "Generate the combined scene from a (joined) prompt, scored against all the target images.",
    "    prompt: the text to generate from\n    images: the target images (a gallery) the results are scored against",
    "regenerate_multi",
)


def build(ctx) -> None:
    s, pipeline = ctx.settings, ctx.pipeline
    invert_multi, concatenate = pipeline.search(INVERT_MULTI), pipeline.search(CONCATENATE)
    regenerate_multi = pipeline.regenerate(*REGENERATE_MULTI)
    with gr.Tab("Multi-image", id="multi", elem_id="tab-multi"):
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=300):
                images = ui.image_gallery("Images (drag several in)", "multi-input")
                mode = Choice(
                    [("One prompt for all images", "all"), ("Concatenate: one prompt per image, joined", "concat")],
                    value="all",
                    label="Mode",
                )
                with gr.Row():
                    run_all = gr.Button("▶ Find one prompt", variant="primary", scale=3, elem_id="multi-run")
                    run_concat = gr.Button("▶ Invert each and join", variant="primary", scale=3, visible=False)
                    stop = gr.Button("■ Stop", variant="stop", scale=1, elem_id="multi-stop")
                with gr.Row():
                    if ctx.photos and not ctx.offline:
                        pair = [p for p in ctx.photos if "cat" in p or "coffee" in p]
                        ui.example_set("Example: cat + coffee", pair, images, s.model, toy=False)
                    if len(ctx.toys) >= 2:
                        ui.example_set("Example: toy shapes", ctx.toys[:3], images, s.model, toy=True)
            with gr.Column(scale=3, min_width=300):
                status, prompt, plot = ui.progress_outputs("joined in concatenate mode; edit it freely", "multi")
                table = ui.candidates_table("multi", ("image", "prompt", "score"), "Per image / candidates")
        panel = RegeneratePanel(
            ctx.model_value,
            "multi",
            "Regenerate the combined scene",
            "🎨 Regenerate",
            [("Generated", "multi-gallery")],
        )
        ctx.panels.append(panel)
        ui.share_button(ctx.tabs, "multi", [images, mode, run_all, run_concat, prompt], ctx.history)

        ui.checked_uploads(images, status)
        _, control = wire_search(
            ctx,
            [run_all, run_concat],
            [invert_multi, concatenate],
            [images, *s.inputs()],
            [prompt, status, plot, table],
            ["invert_multi", "concatenate"],
            stop,
        )
        mode.change(
            lambda m: (gr.Button(visible=m == "all"), gr.Button(visible=m == "concat")),
            mode,
            [run_all, run_concat],
            **ui.QUICK,
        )
        panel.wire(pipeline, regenerate_multi, [prompt, images, s.model], "regenerate_multi", control)
