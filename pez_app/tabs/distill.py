"""Distill: a long prompt -> a short one of the length you choose; regenerate both to compare."""

from __future__ import annotations

import gradio as gr

import pez
from pez.config import BOUNDS, MAX_TEXT_CHARS
from pez.engine.vocab import text_ids
from pez.inversion import distill_length

from .. import components as ui
from ..pipeline import Job, Search, wire_search
from ..progress import fmt_score
from ..regenerate import Draw, RegeneratePanel
from ..server import user_error
from ..settings import label, number_box, require_available

TOY_LONG_PROMPT = (
    "a simple picture of a big bright red star drawn in the middle of a plain grey background, "
    "with nothing else in the picture except that red star"
)
PHOTO_LONG_PROMPT = (
    "a highly detailed photograph of a fluffy orange tabby cat sleeping on a sunny windowsill next to a "
    "steaming cup of coffee, soft morning light, shallow depth of field, warm colours, 35mm film look"
)


def token_count(clip: pez.LoadedClip, text: str) -> int:
    return len(text_ids(clip, text))


def _distill_prompt(text: str, *, model: str, config: pez.InvertConfig) -> Job:
    require_available(model)
    if not text or not text.strip():
        raise user_error("Enter a long prompt to distill.")

    def check(clip) -> dict | None:  # pez's length rule: a one-token text is refused; a long short length is capped
        length = distill_length(clip, text, config.prompt_len)[0]
        return {"prompt_len": length} if length != config.prompt_len else None  # History shows the length used

    def start(clip, config, should_stop):
        return pez.distill_stream(text, clip, config, should_stop=should_stop)

    def note(clip, res) -> str:
        short = distill_length(clip, text, config.prompt_len)[0]  # the cap, if any, is in the result's hint
        return f" · {token_count(clip, text)} → {short} tokens · CLIP text similarity {fmt_score(res.score)}"

    return Job("distill", start, images=0, check=check, note=note)


DISTILL = Search(
    "distill",
    _distill_prompt,
    "Distill a long prompt into a shorter one of prompt_len tokens with the same meaning to CLIP.",
    "    text: the long prompt to shorten",
)


def _regenerate_distill(long_prompt: str, short_prompt: str) -> list[list[Draw]]:
    return [[Draw(long_prompt, None, "long")], [Draw(short_prompt, None, "short")]]


REGENERATE_DISTILL = (
    _regenerate_distill,
    "Generate from a long and a short prompt with the same seeds, to compare them.",
    "    long_prompt: the original long prompt\n    short_prompt: the distilled short prompt",
    "regenerate_distill",
)


def build(ctx) -> None:
    s, pipeline = ctx.settings, ctx.pipeline
    distill_prompt, regenerate_distill = pipeline.search(DISTILL), pipeline.regenerate(*REGENERATE_DISTILL)
    with gr.Tab("Distill", id="distill", elem_id="tab-distill"):
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=300):
                long_prompt = gr.Textbox(
                    label="Long prompt",
                    lines=5,
                    max_length=MAX_TEXT_CHARS,
                    placeholder="paste a long prompt to shorten",
                    elem_id="distill-long",
                )
                short = f"Short {label('prompt_len')[0].lower()}{label('prompt_len')[1:]}"
                short_len = number_box(BOUNDS["prompt_len"], short, ctx.defaults["prompt_len"])
                run, stop = ui.run_controls("▶ Distill", "distill")
                ui.text_examples(long_prompt, s.model, [] if ctx.offline else [PHOTO_LONG_PROMPT], [TOY_LONG_PROMPT])
            with gr.Column(scale=3, min_width=300):
                status, prompt, plot = ui.progress_outputs("the short prompt; edit it freely", "distill")
                cands = ui.candidates_table("distill", ("#", "prompt", "similarity"))
        panel = RegeneratePanel(
            ctx.model_value,
            "distill",
            "Compare: regenerate both",
            "🎨 Regenerate long and short (same seeds)",
            [("From the long prompt", "distill-long-gallery"), ("From the short prompt", "distill-short-gallery")],
        )
        ctx.panels.append(panel)
        ui.share_button(ctx.tabs, "distill", [long_prompt, short_len, prompt], ctx.history)

        _, control = wire_search(
            ctx,
            [run],
            [distill_prompt],
            [long_prompt, *s.inputs(short_len)],
            [prompt, status, plot, cands],
            ["distill"],
            stop,
        )
        cands.select(ui.pick_row, None, prompt, **ui.QUICK)
        panel.wire(pipeline, regenerate_distill, [long_prompt, prompt, s.model], "regenerate_distill", control)
