"""Style transfer: several images of one style -> a style prompt; subjects regenerated in it."""

from __future__ import annotations

import gradio as gr

import pez
from pez.config import MAX_TEXT_CHARS
from pez.inversion import check_template

from .. import components as ui
from ..pipeline import Job, Search, wire_search
from ..regenerate import Draw, RegeneratePanel, image_paths, styled_prompts, subject_lines
from ..server import user_error
from ..settings import require_available
from .multi import IMAGES_DOC, require_images

TOY_STYLE_NOTE = (
    " · the toy world draws one plain shape in one colour, so a style has no effect there beyond "
    "colour and shape: use a real model pair for styles"
)


def _find_style(images: list, *, model: str, config: pez.InvertConfig) -> Job:
    require_available(model)
    paths = require_images(image_paths(images), "style image")
    note = ui.toy_note(model, paths) + (TOY_STYLE_NOTE if model == "toy" else "")

    def start(clip, config, should_stop):
        return pez.invert_stream(paths, clip, config, should_stop=should_stop)

    return Job("style", start, images=len(paths), note=(lambda clip, res: note) if note else None)


FIND_STYLE = Search(
    "style",
    _find_style,
    "Find a style prompt from several images of one style (to use as '... in the style of <prompt>').",
    IMAGES_DOC,
)


def check_style_texts(style, subjects, template, max_subjects: int) -> None:
    """Refuse (pez.ConfigError naming the field) before any work: a style, a template or subjects
    that are not text or are longer than MAX_TEXT_CHARS each (subjects: per line, and at most
    `max_subjects` lines), or a template whose filled prompt could pass MAX_TEXT_CHARS (its
    length is bounded from the template's fields and the texts' lengths, not by filling it)."""
    for name, value, cap in (
        ("style", style, MAX_TEXT_CHARS),
        ("template", template, MAX_TEXT_CHARS),
        ("subjects", subjects, max_subjects * (MAX_TEXT_CHARS + 1)),
    ):
        if value is not None and not isinstance(value, str):
            raise pez.ConfigError(f"{name}: expected text, received {type(value).__name__}")
        if value and len(value) > cap:
            raise pez.ConfigError(f"{name}: expected at most {cap:,} characters, received {len(value):,}")
    lines = (subjects or "").splitlines()  # at most max_subjects * MAX_TEXT_CHARS characters to split
    if sum(1 for line in lines if line.strip()) > max_subjects:
        n = sum(1 for line in lines if line.strip())
        raise pez.ConfigError(f"subjects: expected at most {max_subjects} lines on this server, received {n}")
    longest = max((len(line.strip()) for line in lines), default=0)
    if longest > MAX_TEXT_CHARS:
        raise pez.ConfigError(
            f"subjects: expected lines of at most {MAX_TEXT_CHARS:,} characters, received {longest:,}"
        )
    pieces = check_template(template or pez.STYLE_TEMPLATE)
    filled = sum(len(text) for text, _ in pieces)
    filled += sum(len(style or "") if name == "style" else longest for _, name in pieces if name)
    if filled > MAX_TEXT_CHARS:
        raise pez.ConfigError(
            f"template: expected prompts of at most {MAX_TEXT_CHARS:,} characters once filled, "
            f"received a template that makes up to {filled:,}"
        )


def style_preview(max_subjects: int):
    """The un-queued preview of the prompts a style regeneration will use: every text checked by
    check_style_texts before any work (a refusal is shown in the box); the preview is at most
    `max_subjects` prompts of MAX_TEXT_CHARS characters."""

    def preview(style, subjects, template) -> str:
        try:
            check_style_texts(style, subjects, template, max_subjects)
        except pez.ConfigError as e:
            return f"⚠️ {e}"
        return styled_prompts(style, subjects, template, max_subjects)

    return preview


def regenerate_style_plan(max_subjects: int):
    """The style regeneration's plan, with this server's cap on subjects (PEZ_MAX_SUBJECTS)."""

    def _regenerate_style(style: str, subjects: str, template: str) -> list[list[Draw]]:
        if not isinstance(style, str) or not style.strip():
            raise user_error("Find a style prompt first (or type one).")
        check_style_texts(style, subjects, template, max_subjects)
        lines = subject_lines(subjects, max_subjects)
        if not lines:
            raise user_error("Enter at least one subject, one per line.")
        prompts = pez.style_prompts(lines, style, template or pez.STYLE_TEMPLATE)
        return [[Draw(prompt, None, subject.strip()) for subject, prompt in zip(lines, prompts, strict=False)]]

    return _regenerate_style


REGENERATE_STYLE = (
    'Generate one or more subjects in a learned style, e.g. "{subject} in the style of {style}".',
    "    style: the style prompt (e.g. what /style found)\n"
    "    subjects: one subject per line\n"
    "    template: how subject and style combine: text with the bare fields {style} (required) and {subject}",
    "regenerate_style",
)


def build(ctx) -> None:
    s, pipeline = ctx.settings, ctx.pipeline
    max_subjects = pipeline.settings.limits.max_subjects
    find_style = pipeline.search(FIND_STYLE)
    regenerate_style = pipeline.regenerate(regenerate_style_plan(max_subjects), *REGENERATE_STYLE)
    with gr.Tab("Style transfer", id="style", elem_id="tab-style"):
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=300):
                images = ui.image_gallery("Style images (several images of one style)", "style-input", height=260)
                run, stop = ui.run_controls("▶ Find style prompt", "style")
                with gr.Row():
                    if ctx.styles and not ctx.offline:
                        ui.example_set("Example: stained glass", ctx.styles, images, s.model, toy=False)
                    if ctx.toy_styles:
                        ui.example_set("Example: green toy shapes", ctx.toy_styles, images, s.model, toy=True)
            with gr.Column(scale=3, min_width=300):
                status, prompt, plot = ui.progress_outputs("the style prompt; edit it freely", "style")
                cands = ui.candidates_table("style")

        boxes = {}

        def extra():
            with gr.Row():
                boxes["subjects"] = gr.Textbox(
                    "a circle\na heart" if ctx.offline else "a lighthouse on a cliff\na portrait of a fox",
                    label="Subjects (one per line)",
                    lines=2,
                )
                boxes["template"] = gr.Textbox(
                    pez.STYLE_TEMPLATE, label="Template", info="{subject} and {style} are filled in"
                )
            boxes["styled"] = gr.Textbox(
                label="Prompts to generate",
                elem_id="style-styled",
                lines=2,
                interactive=False,
                buttons=["copy"],
                elem_classes="pez-prompt",
            )

        panel = RegeneratePanel(
            ctx.model_value,
            "style",
            "Apply the style",
            "🎨 Regenerate each subject in the style",
            [("Generated", "style-gallery")],
            extra,
        )
        ctx.panels.append(panel)
        ui.share_button(ctx.tabs, "style", [images, prompt, boxes["subjects"], boxes["template"]], ctx.history)

        ui.checked_uploads(images, status)
        _, control = wire_search(
            ctx, [run], [find_style], [images, *s.inputs()], [prompt, status, plot, cands], ["style"], stop
        )
        cands.select(ui.pick_row, None, prompt, **ui.QUICK)
        subjects, template, styled = boxes["subjects"], boxes["template"], boxes["styled"]
        preview = style_preview(max_subjects)
        for box in (prompt, subjects, template):
            box.change(preview, [prompt, subjects, template], styled, **ui.QUICK)
        panel.wire(pipeline, regenerate_style, [prompt, subjects, template, s.model], "regenerate_style", control)
