"""Image → Prompt: one image (plus optional images to move away from and a text to also match)
-> a prompt; or the negative-prompt mode: the image shows what to avoid, and the prompt found
becomes the regeneration's negative prompt."""

from __future__ import annotations

import gradio as gr

import pez
from pez.config import BOUNDS, TEXT_WEIGHT

from .. import components as ui
from .. import progress as prog
from ..inputs import Choice, TargetImage
from ..pipeline import Job, Search, wire_search
from ..regenerate import Draw, RegeneratePanel, image_paths
from ..server import ServerSettings, user_error
from ..settings import number_box, require_available

NEGATIVE_NOTE = " · with images to avoid, the score is the similarity to the target minus theirs (so it can exceed 1)"


def _invert_image(
    image: str,
    negative_images: list | None = None,
    text: str = "",
    text_weight: float = TEXT_WEIGHT,
    *,
    model: str,
    config: pez.InvertConfig,
) -> Job:
    require_available(model)
    if image is None:
        raise user_error("Add an image first: drag one in, paste it, use the webcam or pick an example.")
    negatives = image_paths(negative_images) or None
    texts = [text.strip()] if isinstance(text, str) and text.strip() else None
    weight = float(text_weight) if isinstance(text_weight, (int, float)) else text_weight
    mode = "image" + (" − negatives" if negatives else "") + (" + text" if texts else "")
    note = ui.toy_note(model, [image]) + (NEGATIVE_NOTE if negatives else "")

    def start(clip, config, should_stop):
        return pez.invert_stream(
            [image], clip, config, negative_images=negatives, texts=texts, text_weight=weight, should_stop=should_stop
        )

    return Job(mode, start, note=(lambda clip, res: note) if note else None)


INVERT = Search(
    "invert",
    _invert_image,
    "Find a readable text prompt that describes an image (image → prompt with PEZ, CLIP-guided).",
    "    image: the target image (a file)\n"
    "    negative_images: optional images the prompt should move away from\n"
    "    text: optional text the prompt should also match\n"
    "    text_weight: weight of that text against the image (1 = equal)",
)


def score_prompt(server: ServerSettings, prompt: str, image: str | None, model: str) -> str:
    """Score a prompt against an image: the CLIP cosine similarity between them.

    Args:
        prompt: the text to score (e.g. an edited prompt)
        image: the target image
        model: model pair name, e.g. 'sd-turbo' or 'toy'
    Returns:
        a sentence with the score ("Nothing to score: ..." for an empty prompt or no image)
    """
    require_available(model)
    clip = server.load_model(model)
    score = pez.score_texts(clip, [prompt], [image])[0]
    return f"Score of this prompt against the image: {score:.3f} (CLIP cosine, {model})"


def _regenerate(prompt: str, image: str | None) -> list[list[Draw]]:
    return [[Draw(prompt, [image] if image is not None else None)]]


REGENERATE = (
    _regenerate,
    "Generate images from a prompt with the model pair's diffusion model, scored against the target image.",
    "    prompt: the text to generate from (e.g. the prompt /invert found)\n"
    "    image: optional target image; each generated image is scored by CLIP similarity to it",
    "regenerate",
)


NEGATIVE_OFF = (
    "the prompt found is the negative prompt now; at guidance {g:g} it has no effect (the pair samples "
    "without classifier-free guidance): raise Guidance above 1 to use it"
)


def negative_found(control, prompt: str, before: str, guidance):
    """Negative-prompt mode, after a run: the prompt found -> the negative prompt (saying when the
    guidance makes it do nothing, as sd-turbo's default 0 does), the prompt box as it was. The mode
    is the one the run started with (`control.goal`, set by its Run click, as History reads it), not
    the radio's value now: switching the mode during a run does not move its result."""
    if getattr(control, "goal", "") != "negative" or not prompt:
        return gr.skip(), gr.skip()
    off = isinstance(guidance, (int, float)) and guidance <= 1
    return gr.Textbox(value=prompt, info=NEGATIVE_OFF.format(g=guidance) if off else None), before


def build(ctx) -> None:
    s, pipeline = ctx.settings, ctx.pipeline
    invert_image = pipeline.search(INVERT)
    score = pipeline.score(score_prompt, "score")
    regenerate = pipeline.regenerate(*REGENERATE)
    with gr.Tab("Image → Prompt", id="image", elem_id="tab-image"):
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=300):
                goal = Choice(
                    [
                        ("a prompt for this image", "prompt"),
                        ("a negative prompt (the image shows what to avoid)", "negative"),
                    ],
                    value="prompt",
                    label="Find",
                    elem_id="image-goal",
                )
                image = TargetImage(
                    type="filepath",
                    image_mode=None,
                    label="Target image",
                    height=300,
                    sources=["upload", "clipboard", "webcam"],
                    elem_id="image-input",
                )
                run, stop = ui.run_controls("▶ Find prompt", "image")
                with gr.Accordion("More targets: images to move away from, text to also match", open=False):
                    negatives = ui.image_gallery(
                        "Images to move away from (optional)", "image-negatives", 4, 140, field="negative_images"
                    )
                    with gr.Row():
                        text = gr.Textbox("", label="Also match this text (optional)", scale=3, elem_id="image-text")
                        weight = number_box(BOUNDS["negative_weight"], "Text weight", TEXT_WEIGHT, scale=2)
                ui.image_examples(image, s.model, ctx.toys, [] if ctx.offline else ctx.photos)
            with gr.Column(scale=3, min_width=300):
                status, prompt, plot = ui.progress_outputs("edit it freely, then Score or Regenerate", "image")
                cands = ui.candidates_table("image")

        def extra():
            score_btn = gr.Button("Score the edited prompt", size="sm", elem_id="image-score")
            score_md = prog.plain_box("image-score-text")
            score_btn.click(
                score,
                [prompt, image, s.model],
                score_md,
                api_name="score",
                show_progress="hidden",
                **pipeline.gpu_options(),
            )

        panel = RegeneratePanel(
            ctx.model_value,
            "image",
            "Regenerate",
            "🎨 Regenerate",
            [("Generated", "image-gallery")],
            extra,
        )
        ctx.panels.append(panel)
        ui.share_button(
            ctx.tabs, "image", [goal, image, run, text, weight, prompt, panel.negative, status], ctx.history
        )

        ui.checked_uploads(image, status)
        ui.checked_uploads(negatives, status)
        events, control = wire_search(
            ctx,
            [run],
            [invert_image],
            [image, *s.inputs(), negatives, text, weight],
            [prompt, status, plot, cands],
            ["invert"],
            stop,
        )
        # Negative-prompt mode: the prompt found describes what to avoid -> the negative prompt, and
        # the prompt box gets back what it held before the run (the run streamed into it).
        before = gr.State("")

        def clicked(p, g, c):
            c.goal = g  # History logs the run as a negative-prompt search (history.record_of)
            return p

        run.click(clicked, [prompt, goal, control], before, **ui.QUICK)
        events[0].success(
            negative_found, [control, prompt, before, panel.guidance], [panel.negative, prompt], **ui.QUICK
        )
        goal.change(
            lambda g: gr.Button("▶ Find negative prompt" if g == "negative" else "▶ Find prompt"), goal, run, **ui.QUICK
        )
        cands.select(ui.pick_row, None, prompt, **ui.QUICK)
        panel.wire(pipeline, regenerate, [prompt, image, s.model], "regenerate", control)
        ctx.prompt = prompt
