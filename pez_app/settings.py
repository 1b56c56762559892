"""The shared search settings: one panel read by every tab, built from pez.config.

Which controls exist follows `dataclasses.fields(pez.InvertConfig)`: a field the core does not
have (e.g. `patience` before the quality work lands) gets no control and is never passed. Bounds
come from `pez.config.BOUNDS`; defaults from `pez.InvertConfig()` (the app's early stop from
`pez.config.APP_PATIENCE` when the core has it).
"""

from __future__ import annotations

import dataclasses
import inspect
import random
from dataclasses import dataclass

import gradio as gr

import pez
from pez.config import BOUNDS, GENERATE_BOUNDS

from .server import user_error


class IntSlider(gr.Slider):
    """A slider whose API type is an integer (gr.Slider's is a float), and that hands ints on."""

    is_template = True  # gradio: render with gr.Slider's frontend

    def api_info(self) -> dict:
        return {**super().api_info(), "type": "integer"}

    def preprocess(self, payload):
        value = super().preprocess(payload)
        return int(value) if isinstance(value, float) and value.is_integer() else value


@dataclass(frozen=True)
class Setting:
    """One search setting: its UI control and its API documentation."""

    name: str  # InvertConfig field (or "model")
    label: str
    doc: str  # API / MCP parameter description
    kind: str = "int"  # int | float | bool | text | words | model
    info: str | None = None


SETTINGS: tuple[Setting, ...] = (
    Setting("model", "Model pair", "model pair name, e.g. 'sd-turbo' or 'toy', or any open_clip ARCH/TAG", "model"),
    Setting("prompt_len", "Prompt length (tokens)", "tokens in the prompt (distill: the short length)"),
    Setting("steps", "Steps", "optimisation steps", info="little gain after a few hundred"),
    Setting("candidates", "Candidates (restarts in parallel)", "prompts optimised in parallel; the best wins"),
    Setting("seed", "Seed (empty: random)", "random seed; None draws one (reported in the status)"),
    Setting("lr", "Learning rate", "AdamW learning rate", "float"),
    Setting("blocklist", "Blocklist", "words never to use, comma or space separated", "words"),
    Setting("words_only", "Readable words only (no sub-word fragments)", "keep only tokens made of letters", "bool"),
    Setting("whole_words", "Whole words only (no glued pieces)", "only tokens that end a word", "bool"),
    Setting("safe", "Block offensive words", "exclude the default offensive-word list", "bool"),
    Setting("patience", "Early stop: patience (steps, 0 = off)", "stop after this many steps without a new best"),
    Setting("refine_steps", "Refine steps (0 = off)", "rounds of token swaps after the search"),
    Setting("prune_tolerance", "Prune tolerance (0 = off)", "drop tokens costing less than this score", "float"),
    Setting(
        "init_prompt", "Start from this prompt (optional)", "start from this text instead of random tokens", "text"
    ),
)
CORE_FIELDS = {f.name for f in dataclasses.fields(pez.InvertConfig)}
ACTIVE: tuple[Setting, ...] = tuple(s for s in SETTINGS if s.name == "model" or s.name in CORE_FIELDS)
NAMES = tuple(s.name for s in ACTIVE)


def app_defaults() -> dict:
    """The app's defaults: the core's, with early stop on when the core offers it."""
    d = dataclasses.asdict(pez.InvertConfig())
    if "patience" in d:
        d["patience"] = getattr(pez.config, "APP_PATIENCE", d["patience"])
    return d


def python_type(s: Setting):
    return {"int": int, "float": float, "bool": bool, "text": str, "words": str, "model": str}[s.kind]


def signature_params(model_value: str) -> list[inspect.Parameter]:
    """Handler parameters for the active settings (names the API and MCP show)."""
    d = app_defaults()
    out = []
    for s in ACTIVE:
        default = model_value if s.name == "model" else d[s.name]
        if s.kind == "words":
            default = ", ".join(default)
        if s.name == "seed":
            ann = int | None
        else:
            ann = python_type(s)
        out.append(inspect.Parameter(s.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default, annotation=ann))
    return out


def settings_doc() -> str:
    return "\n".join(f"    {s.name}: {s.doc}" for s in ACTIVE)


def split_words(text) -> tuple[str, ...]:
    """'cat, dog  bird' -> ('cat', 'dog', 'bird')."""
    if isinstance(text, (list, tuple)):
        text = " ".join(map(str, text))
    return tuple(w for w in (text or "").replace(",", " ").split() if w)


def as_int(value):
    """Whole floats -> int; anything else goes through for validation to report."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def make_config(values: dict) -> pez.InvertConfig:
    """Settings values (by name) -> a validated InvertConfig. An empty seed draws one, so every
    run is reproducible. Only fields the core has are passed."""
    kw = {}
    for s in ACTIVE:
        if s.name == "model" or s.name not in values:
            continue
        v = values[s.name]
        if s.kind == "int":
            v = as_int(v)
        elif s.kind == "float":
            v = float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
        elif s.kind == "bool":
            v = bool(v)
        elif s.kind == "words":
            v = split_words(v)
        elif s.kind == "text":
            v = (v or "").strip()
        kw[s.name] = v
    seed = kw.get("seed")
    if seed is None or seed == "":
        kw["seed"] = random.randrange(int(BOUNDS["seed"].hi))
    if "candidates" in kw and isinstance(kw["candidates"], int):
        kw["top_k"] = max(pez.InvertConfig().top_k, kw["candidates"])
    try:
        return pez.InvertConfig(**kw)
    except TypeError as e:  # a value of the wrong kind (e.g. a list for a number)
        raise user_error(f"Settings: {e}") from e


def slider(name: str, label: str, default, bounds=BOUNDS, **kw) -> gr.Slider:
    b = bounds[name]
    cls = IntSlider if float(b.step).is_integer() else gr.Slider
    return cls(b.lo, b.hi, value=default, step=b.step, label=label, **kw)


def pair_choices() -> list[tuple[str, str]]:
    """Dropdown entries that say which CLIP goes with which generator."""
    out = []
    for name in pez.list_pairs():
        p = pez.get_pair(name)
        clip = "toy CLIP" if p.clip == "toy" else f"CLIP {p.clip}"
        out.append((f"{p.label} · {clip}", name))
    return out


def pair_info(name: str) -> str:
    try:
        p = pez.get_pair(name)
    except pez.ConfigError:
        return f"Custom CLIP `{name}`: prompts are optimised for it; regeneration needs a model pair."
    gen = f"`{p.generator}`" if p.generator else "the toy shape renderer"
    text = f"**{p.label}** — prompts are optimised for CLIP `{p.clip}`, images regenerated with {gen}."
    if p.note:
        text += f" {p.note}"
    if p.kind == "toy":
        text += " Use it with the toy example images (coloured shapes)."
    return text


@dataclass
class SettingsPanel:
    """The shared settings components, in handler order (see ACTIVE)."""

    components: dict[str, gr.components.Component]

    @property
    def model(self) -> gr.Dropdown:
        return self.components["model"]

    def inputs(self, prompt_len: gr.components.Component | None = None) -> list:
        """Handler inputs after a tab's own; a tab may bring its own prompt length control."""
        return [prompt_len if (n == "prompt_len" and prompt_len is not None) else self.components[n] for n in NAMES]


def control_for(s: Setting, default, model_value: str):
    b = BOUNDS.get(s.name)
    if s.kind == "model":
        return gr.Dropdown(
            pair_choices(),
            value=model_value,
            label=s.label,
            info="or type any open_clip CLIP as ARCH/TAG, e.g. ViT-L-14/openai (search only)",
            allow_custom_value=True,
            elem_id="model",
        )
    if s.kind == "bool":
        return gr.Checkbox(bool(default), label=s.label)
    if s.kind in ("text", "words"):
        value = ", ".join(default) if s.kind == "words" else default
        return gr.Textbox(value, label=s.label, max_length=pez.config.MAX_TEXT_CHARS, placeholder=s.doc)
    if s.name == "seed":  # a number box: empty means random
        return gr.Number(default, label=s.label, precision=0)
    if s.kind == "float" or b is None or b.hi - b.lo > 2000:
        # No gradio min/max: pez validates and names the field in its message.
        return gr.Number(default, label=s.label, precision=0 if s.kind == "int" else None, step=b.step if b else None)
    return slider(s.name, s.label, default, info=s.info)


def settings_panel(model_value: str) -> SettingsPanel:
    d = app_defaults()
    comps: dict = {}
    with gr.Accordion("⚙️ Settings — model and search (shared by all tabs)", open=False, elem_id="settings"):
        rows = [("model", "prompt_len", "steps"), ("candidates", "seed", "lr", "patience")]
        rows.append(tuple(n for n in ("blocklist", "words_only", "whole_words", "safe")))
        rows.append(("refine_steps", "prune_tolerance", "init_prompt"))
        by_name = {s.name: s for s in ACTIVE}
        info = None
        for row in rows:
            present = [n for n in row if n in by_name]
            if not present:
                continue
            with gr.Row():
                for n in present:
                    s = by_name[n]
                    if s.name == "steps":
                        comps[n] = slider("steps", s.label, d["steps"], info=s.info)
                    else:
                        comps[n] = control_for(s, None if n == "model" else d[n], model_value)
            if row[0] == "model":
                info = gr.Markdown(pair_info(model_value), elem_classes="pez-pair-info")
    comps["model"].change(pair_info, comps["model"], info, queue=False, api_visibility="private")
    return SettingsPanel(comps)


__all__ = ["GENERATE_BOUNDS", "IntSlider", "SettingsPanel", "make_config", "settings_panel", "slider"]
