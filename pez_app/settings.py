"""The shared search settings: one panel read by every tab, generated from pez.config.

What each setting is (default, bound, label, one-line help) comes from the field metadata of
`pez.InvertConfig` (pez.config.setting); this module only decides which fields the app offers
(FIELDS, in the order of the handlers' parameters) and how the panel arranges them (ROWS). The app's
own defaults are early stop on (pez.config.APP_PATIENCE) and, on a CPU, a time budget instead of
running every step (pez.config.APP_CPU_TIME_BUDGET). The same list gives the search
handlers their API/MCP parameters (`setting_params`) and turns the values a handler receives back
into one InvertConfig (`make_config`, the one conversion of UI values to ints).
"""

from __future__ import annotations

import dataclasses
import inspect
import random
from dataclasses import dataclass
from typing import Any

import gradio as gr

import pez
from pez.config import APP_CPU_TIME_BUDGET, APP_PATIENCE, BOUNDS, MAX_TEXT_CHARS, Bound, InvertConfig, about

from .inputs import Choice, ModelDropdown, SettingNumber
from .server import CPU_SPACE_DEFAULTS, Limits, ServerSettings, user_error

# The settings the app offers, in the order of the search handlers' parameters (after the tab's
# own inputs); "model" is the pair or CLIP spec, the others are InvertConfig fields.
FIELDS = (
    "model",
    "prompt_len",
    "steps",
    "candidates",
    "seed",
    "lr",
    "blocklist",
    "prompt_style",  # issue 22: one choice instead of words_only, whole_words and dictionary_words
    "safe",
    "patience",
    "refine_steps",
    "prune_tolerance",
    "init_prompt",
    "time_budget",
    "clip_weights",  # issue 17: after main's additions, for the same reason
)
ROWS = (  # the panel's layout
    ("model", "prompt_len", "steps", "time_budget"),
    ("candidates", "seed", "lr", "patience"),
    ("blocklist", "prompt_style", "safe"),
    ("refine_steps", "prune_tolerance", "init_prompt", "clip_weights"),
)
MODEL_HELP = "model pair name, e.g. 'sd-turbo' or 'toy' (one this server offers)"
API_NOTES = {  # what the API and MCP docs add to a field's help (how the app takes the value)
    "prompt_len": " (distill: the short length)",
    "seed": "; None draws one (reported in the status)",
    "blocklist": "; comma or space separated",
    "time_budget": " (the app's default on a CPU: a budget, not every step)",
    "clip_weights": "; comma or space separated numbers, one per CLIP of the model",
}


PANEL_HINTS = {  # the panel's hint where the app's defaults make the core's read wrong
    "steps": "at most; early stop ends sooner",
}


def app_defaults(server: ServerSettings) -> dict[str, Any]:
    """The core's defaults, with early stop on, a time budget when this server runs on a CPU, and
    on a CPU Space server.CPU_SPACE_DEFAULTS. The panel and the handlers' API/MCP defaults both
    come from this, for the settings the demo is built with."""
    cpu = CPU_SPACE_DEFAULTS if server.cpu_space else {}
    budget = app_time_budget(server.device)
    return {**dataclasses.asdict(InvertConfig()), "patience": APP_PATIENCE, "time_budget": budget, **cpu}


def app_time_budget(device: str | None = None) -> float:
    """APP_CPU_TIME_BUDGET when the server's device (PEZ_DEVICE / --device, else the best
    available) is a CPU, where a full-size CLIP's 1000 steps take half an hour; 0 (no budget) on a GPU."""
    from pez.models.clip import resolve_device

    try:
        on_cpu = resolve_device(device).type == "cpu"
    except pez.ConfigError:  # a bad PEZ_DEVICE is reported when a model loads
        on_cpu = True
    return APP_CPU_TIME_BUDGET if on_cpu else 0.0


def label(name: str) -> str:
    """The panel's label of a field: "Prompt length (tokens)"."""
    info = about(InvertConfig, name)
    return f"{info.label} ({info.note})" if info.note else info.label


def _kind(name: str) -> str:
    """int | float | bool | text | words | numbers, from the field's type."""
    ftype = next(f.type for f in dataclasses.fields(InvertConfig) if f.name == name)
    if ftype.startswith("tuple[float"):
        return "numbers"
    if ftype.startswith("tuple"):
        return "words"
    return {"str": "text"}.get(ftype.split(" | ")[0], ftype.split(" | ")[0])


def setting_params(model_value: str, defaults: dict[str, Any]) -> list[inspect.Parameter]:
    """The search handlers' parameters for FIELDS: name, type and default (`defaults`: app_defaults,
    the panel's), as the API and MCP show them (gradio reads them from the handler's signature)."""
    P, d = inspect.Parameter, defaults
    out = [P("model", P.POSITIONAL_OR_KEYWORD, default=model_value, annotation=str)]
    for name in FIELDS[1:]:
        kind = _kind(name)
        default = ", ".join(d[name]) if kind == "words" else ("" if kind == "numbers" else d[name])
        types = {"words": str, "numbers": str, "text": str, "int": int, "float": float, "bool": bool}
        ann = int | None if name == "seed" else types[kind]
        out.append(P(name, P.POSITIONAL_OR_KEYWORD, default=default, annotation=ann))
    return out


def settings_doc() -> str:
    """The Args lines of FIELDS for the handlers' docstrings (API and MCP descriptions)."""
    lines = [f"    model: {MODEL_HELP}"]
    lines += [f"    {n}: {about(InvertConfig, n).help}{API_NOTES.get(n, '')}" for n in FIELDS[1:]]
    return "\n".join(lines)


def split_words(text) -> tuple[str, ...]:
    """'cat, dog  bird' -> ('cat', 'dog', 'bird')."""
    if isinstance(text, (list, tuple)):
        text = " ".join(map(str, text))
    return tuple(w for w in (text or "").replace(",", " ").split() if w)


def split_numbers(name: str, text) -> tuple[float, ...] | None:
    """'0.5, 0.5' -> (0.5, 0.5); empty -> None (the default). A word that is not a number is a
    ConfigError naming the field (the config checks the numbers themselves)."""
    if isinstance(text, (list, tuple)):
        text = " ".join(map(str, text))
    words = split_words(text)
    if not words:
        return None
    try:
        return tuple(float(w) for w in words)
    except ValueError:
        raise pez.ConfigError(f"{name}: expected numbers separated by commas or spaces, received {text!r}") from None


def as_int(value):
    """Whole floats -> int (sliders and number boxes may send 4.0); anything else goes through for
    the config's check to report."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def make_config(values: dict[str, Any]) -> InvertConfig:
    """Settings values (by name) -> the run's InvertConfig (checked when built: a bad value is a
    ConfigError naming the field). An empty seed draws one, so every run is reproducible."""
    kw: dict[str, Any] = {}
    for name in FIELDS[1:]:
        if name not in values:
            continue
        v, kind = values[name], _kind(name)
        if kind == "int":
            v = as_int(v)
        elif kind == "float":
            v = float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
        elif kind == "bool":
            v = bool(v)
        elif kind == "words":
            v = split_words(v)
        elif kind == "numbers":
            v = split_numbers(name, v)
        elif kind == "text":
            v = (v or "").strip()
        kw[name] = v
    if kw.get("seed") in (None, ""):
        kw["seed"] = random.randrange(int(BOUNDS["seed"].hi))
    if isinstance(kw.get("candidates"), int):
        kw["top_k"] = max(InvertConfig().top_k, kw["candidates"])
    try:
        return InvertConfig(**kw)
    except TypeError as e:  # a value of the wrong kind (e.g. a list for a number)
        raise user_error(f"Settings: {e}") from e


# ---------------------------------------------------------------------------------------------
# The panel


def server_caps(limits: Limits) -> dict[str, int]:
    """The settings this server caps below pez.config's bounds (server.Limits)."""
    return {"steps": limits.max_steps, "candidates": limits.max_candidates}


def check_caps(values: dict[str, Any], limits: Limits) -> None:
    """Refuse, before any work, a value outside this server's range of a capped setting, below it
    or above ("expected a value in [1, 3000] on this server", as the box's hint says); other values
    go on to the config's own check."""
    for name, cap in server_caps(limits).items():
        v = as_int(values.get(name))
        if isinstance(v, int) and not isinstance(v, bool) and not BOUNDS[name].lo <= v <= cap:
            lo = BOUNDS[name].lo
            what = about(InvertConfig, name).label
            raise user_error(f"{what} ({name}): expected a value in [{lo:g}, {cap}] on this server, received {v}")


def number_box(bound: Bound, label: str, default, hi: float | None = None, hint: str = "", **kw) -> gr.Number:
    """A number box over `bound` (up to `hi` when the server caps it): its range is in the hint,
    and a value outside it is sent as typed, for pez's check to name (SettingNumber)."""
    integer = float(bound.step).is_integer()
    top = bound.hi if hi is None else hi
    span = f"{int(bound.lo):,} to {int(top):,}" if integer else f"{bound.lo:g} to {top:g}"
    info = span + (f" · {hint}" if hint else "")
    return SettingNumber(default, label=label, precision=0 if integer else None, step=bound.step, info=info, **kw)


AVAILABILITY_SECONDS = 60.0  # how long one answer of pair_availability is trusted (a download may finish)
PROBE_SECONDS = 0.5  # the hub probe behind an uncached pair's answer (a machine offline fails at once)
_availability: dict[tuple[str, int], Any] = {}  # (pair, minute) -> pez Availability: the machine's, not a user's


def availability(name: str):
    """pez.models.pair_availability of a real pair (cached? downloadable?), remembered a minute;
    None for the toy world and for CLIPs an operator added (their loader says what is missing)."""
    p = pez.PAIRS.get(name) if isinstance(name, str) else None
    if p is None or p.kind == "toy":
        return None
    import time

    key = (name, int(time.monotonic() // AVAILABILITY_SECONDS))
    if key not in _availability:
        try:
            _availability[key] = pez.models.pair_availability(name, timeout=PROBE_SECONDS)
        except Exception:  # noqa: BLE001 - a failed probe says nothing: the run will
            return None
    return _availability[key]


def pair_state(name: str) -> str:
    """' · ready' (weights here), ' · downloads on first run', ' · not available here' or ''."""
    a = availability(name)
    if a is None:
        return ""
    return " · ready" if a.cached else (" · downloads on first run" if a.ok else " · not available here")


def require_available(model: str) -> None:
    """Refuse at Run, in one short sentence, a pair this server can neither find nor download."""
    a = availability(model)
    if a is not None and not a.ok:
        raise user_error(
            f"{pez.get_pair(model).label} is not available here: its weights are not on this server and "
            "cannot be downloaded. Pick the toy world model in Settings.",
            title="Model weights not available",
        )


def pair_choices(server: ServerSettings) -> list[tuple[str, str]]:
    """Dropdown entries: the pairs' names and whether each can run here (the info line under the
    dropdown says which CLIP goes with which generator), then the CLIPs this server's operator
    added (search only)."""
    out = []
    for name in server.offered_models():
        p = pez.PAIRS.get(name)
        out.append((p.label + pair_state(name) if p else f"{name} (search only)", name))
    return out


def pair_info(name: str) -> str:
    try:
        p = pez.get_pair(name)
    except pez.ConfigError:
        return f"CLIP `{name}`: prompts are optimised for it; regeneration needs a model pair."
    gen = f"`{p.generator}`" if p.generator else "the toy shape renderer"
    if len(p.clips) > 1:
        clips = " + ".join(f"`{c}` ×{w:g}" for c, w in zip(p.clips, p.weights))
        text = f"**{p.label}** — one prompt is optimised for the CLIPs {clips} together (CLIP weights: a setting), "
        text += f"images regenerated with {gen}."
    else:
        text = f"**{p.label}** — prompts are optimised for CLIP `{p.clip}`, images regenerated with {gen}."
    if p.note:
        text += f" {p.note}"
    if p.kind == "toy":
        text += " Use it with the toy example images (coloured shapes)."
    a = availability(name)
    if a is not None and not a.ok:
        text += " **Not available here**: its weights are not on this server and cannot be downloaded."
    elif a is not None and not a.cached:
        text += " Its weights download on the first run (several GB)."
    return text


def joint(model: str) -> bool:
    """Whether a model (pair name or CLIP spec) searches several CLIPs jointly (SDXL)."""
    from pez.models import clip_specs

    try:
        return len(clip_specs(model)) > 1
    except pez.ConfigError:
        return False


def weights_box(model: str) -> gr.Textbox:
    """The CLIP weights box after a model change: shown for joint models, else hidden and emptied."""
    return gr.Textbox(visible=True) if joint(model) else gr.Textbox(value="", visible=False)


@dataclass
class SettingsPanel:
    """The shared settings components, by field name."""

    components: dict[str, gr.components.Component]

    @property
    def model(self) -> gr.Dropdown:
        return self.components["model"]

    def inputs(self, prompt_len: gr.components.Component | None = None) -> list:
        """Handler inputs after a tab's own, in FIELDS order; a tab may bring its own prompt length."""
        return [prompt_len if (n == "prompt_len" and prompt_len is not None) else self.components[n] for n in FIELDS]


def control(name: str, default, model_value: str, server: ServerSettings) -> gr.components.Component:
    """The UI control of one setting."""
    if name == "model":
        dropdown = ModelDropdown(pair_choices(server), value=model_value, label="Model pair", elem_id="model", scale=2)
        dropdown.server = server  # what it checks a value against (ModelDropdown.preprocess)
        return dropdown
    info, kind, text = about(InvertConfig, name), _kind(name), label(name)
    if kind == "bool":
        return gr.Checkbox(bool(default), label=text)
    if kind == "numbers":  # CLIP weights: empty is the model's default; shown for models of several CLIPs only
        return gr.Textbox(
            "", label=text, max_length=200, placeholder="e.g. 0.5, 0.5 (empty: the pair's)", visible=joint(model_value)
        )
    if info.choices:  # a choice (prompt_style): a plain string for the API and MCP, a Radio here
        labels = [(c.replace("-", " ").capitalize(), c) for c in info.choices]  # "Max score" for max-score
        return Choice(labels, value=default, label=text, info=info.help)
    if kind in ("text", "words"):
        value = ", ".join(default) if kind == "words" else default
        return gr.Textbox(value, label=text, max_length=MAX_TEXT_CHARS, placeholder=info.help)
    hint = PANEL_HINTS.get(name, info.info)
    return number_box(info.bound, text, default, server_caps(server.limits).get(name), hint)


def settings_panel(model_value: str, server: ServerSettings, defaults: dict[str, Any]) -> SettingsPanel:
    """The panel, its values `defaults` (app_defaults(server): the handlers' defaults too)."""
    d = defaults
    comps: dict = {}
    with gr.Accordion("⚙️ Settings — model and search (shared by all tabs)", open=False, elem_id="settings"):
        for row in ROWS:
            with gr.Row():
                for name in row:
                    comps[name] = control(name, d.get(name), model_value, server)
            if row[0] == "model":
                info = gr.Markdown(pair_info(model_value), elem_classes="pez-pair-info")
    comps["model"].change(pair_info, comps["model"], info, queue=False, api_visibility="private")
    weights = comps["clip_weights"]
    comps["model"].change(weights_box, comps["model"], weights, queue=False, api_visibility="private")
    return SettingsPanel(comps)


__all__ = [
    "FIELDS",
    "SettingsPanel",
    "app_defaults",
    "app_time_budget",
    "check_caps",
    "label",
    "make_config",
    "number_box",
    "setting_params",
    "settings_doc",
    "settings_panel",
]
