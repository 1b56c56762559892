"""Multi-image: one prompt for several images, or concatenation (each image inverted on its
own, the prompts joined), then the combined scene regenerated."""

from __future__ import annotations

import math
import time

import gradio as gr

import pez
from pez.config import MAX_IMAGES

from .. import components as ui
from ..downloads import load_with_progress
from ..inputs import Choice
from ..progress import (
    UI_INTERVAL,
    RunControl,
    finite,
    fmt_score,
    new_record,
    plot_frame,
    plural,
    progress_text,
    stream_inversion,
)
from ..regenerate import Draw, RegeneratePanel, image_paths, regenerate_endpoint
from ..server import load_model, user_error

IMAGES_DOC = "    images: the target images (a gallery of files)"


def require_images(images: list, what: str = "image", minimum: int = 1) -> list:
    if len(images) < minimum:
        raise user_error(f"Add at least {plural(minimum, what)} first (drag them in, or pick an example set).")
    if len(images) > MAX_IMAGES:
        raise user_error(f"At most {plural(MAX_IMAGES, 'image')} per run; received {len(images)}.")
    return images


def _invert_multi(images: list, *, model: str, config: pez.InvertConfig, control: RunControl):
    paths = require_images(image_paths(images))
    note = ui.toy_note(model, paths)
    yield from stream_inversion(
        "multi",
        model,
        config,
        load_model,
        lambda clip: pez.invert_stream(paths, clip, config, should_stop=control.should_stop()),
        (lambda clip, res: note) if note else None,
    )


invert_multi = ui.search_endpoint(_invert_multi, "Find one prompt that describes all of several images.", IMAGES_DOC)

JOIN_NOTE = (
    "each part is scored against its own image, the joined prompt against every image (it describes them "
    "all at once, so it matches any single one less)"
)


def _concatenate(images: list, *, model: str, config: pez.InvertConfig, control: RunControl):
    paths = require_images(image_paths(images))
    cfg = config
    record = new_record("concatenate", model, cfg, images=len(paths))
    yield "", f"Loading {model}…", None, [], record
    clip = None
    for item in load_with_progress(lambda: load_model(model), model):
        if isinstance(item, str):  # "Loading … (n s)", or bytes / total while a download moves
            yield "", item, None, [], record
        else:
            clip = item
    stream = pez.concatenate_stream(paths, clip, cfg, should_stop=control.should_stop())
    # One empty point per image up front: the plot fixes its series on the first data it draws.
    rows, last, rep = [(0, math.nan, f"image {k + 1}") for k in range(len(paths))], 0.0, None
    try:
        for rep in stream:
            if rep.done:
                break
            r = rep.report
            rows.append((r.step, r.loss, f"image {rep.index + 1}"))
            if time.monotonic() - last >= UI_INTERVAL:
                last = time.monotonic()
                joined = pez.join_prompts(rep.prompts + [r.best_prompt])
                record = {**record, "prompt": joined, "steps_run": rep.index * cfg.steps + r.step}
                parts = [[i + 1, p, ""] for i, p in enumerate(rep.prompts)]
                parts.append([rep.index + 1, r.best_prompt, f"running… {fmt_score(r.best_score)}"])
                yield (
                    joined,
                    progress_text(r, f"Image {rep.index + 1} of {rep.total} · "),
                    plot_frame(rows),
                    parts,
                    record,
                )
    finally:
        stream.close()
    res = rep.result
    parts = [[i + 1, p.prompt, fmt_score(p.score)] for i, p in enumerate(res.parts)]
    how = "Stopped" if res.stopped else "Done"
    note = JOIN_NOTE
    if clip.name == "toy" or model == "toy":
        note += "; the toy CLIP was trained on one shape per picture, so joins score very low there"
    text = (
        f"{how}: {len(res.parts)} of {plural(len(paths), 'image')} inverted · joined prompt score "
        f"{fmt_score(res.score)} (mean over all images; {note})"
    )
    steps_run = sum(p.steps_run for p in res.parts)
    record = {**record, "prompt": res.prompt, "score": finite(res.score), "done": True, "stopped": res.stopped}
    record["steps_run"] = steps_run
    yield res.prompt, text, plot_frame(rows), parts, record


concatenate = ui.search_endpoint(
    _concatenate, "Invert each image on its own, then join the prompts into one (prompt concatenation).", IMAGES_DOC
)


def _regenerate_multi(prompt: str, images: list) -> list[list[Draw]]:
    return [[Draw(prompt, image_paths(images) or None)]]


regenerate_multi = regenerate_endpoint(
    _regenerate_multi,
    "Generate the combined scene from a (joined) prompt, scored against all the target images.",
    "    prompt: the text to generate from\n    images: the target images (a gallery) the results are scored against",
)


def build(ctx) -> None:
    s = ctx.settings
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
        ctx.share_button()

        ui.checked_uploads(images, status)
        _, control = ui.wire_search(
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
        panel.wire(regenerate_multi, [prompt, images, s.model], "regenerate_multi", ui.gpu_options(), control)
