"""Widgets and look, shared by the tabs: CSS and theme, the image drop zones and their upload
check, the run and progress controls every search tab uses, examples, the header and banner.
What happens when a button is pressed is the request pipeline's (pez_app.pipeline)."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

import pez
from pez.config import MAX_TEXT_CHARS
from pez.paths import assets_dir
from pez.toy.generator import EXAMPLES_DIR

from . import progress as prog
from .inputs import ImageList
from .pipeline import QUICK
from .server import StartupModel, public_text

ASSETS = assets_dir()  # the example photos and style images (top-level assets/, pez/assets/ in a wheel)

CSS = """
.pez-header { display: flex; align-items: baseline; gap: 14px; flex-wrap: wrap; }
.pez-header h1 { margin: 0; font-size: 1.9em; }
.pez-header .pez-tagline { color: var(--body-text-color-subdued); }
.pez-banner { background: #fff7e6; border: 1px solid #f5a524; color: #6b4400; border-radius: 10px;
  padding: 8px 14px; margin: 6px 0; }
.pez-banner b { color: #8a5300; }
.pez-banner code { background: #fdebc8; padding: 0 3px; border-radius: 3px; }
.pez-status { padding: 4px 2px; min-height: 34px; }
.pez-bar { height: 8px; border-radius: 5px; background: var(--neutral-200); overflow: hidden; }
.pez-bar > div { height: 100%; border-radius: 5px; background: linear-gradient(90deg, #6366f1, #ec4899);
  transition: width .15s linear; }
.pez-done .pez-bar > div { background: #22c55e; }
.pez-stopped .pez-bar > div { background: #f59e0b; }
.pez-status-text { font-size: 1em; margin-top: 5px; font-variant-numeric: tabular-nums;
  color: var(--body-text-color); }
.pez-error .pez-status-text { color: #b91c1c; font-weight: 600; }
.pez-waiting .pez-status-text { color: #a16207; }
.pez-prompt textarea { font-family: var(--font-mono); font-size: 1.02em; }
.pez-pair-info, .pez-hint, .pez-plot-note { font-size: .88em; color: var(--body-text-color-subdued); }
.pez-summary { min-height: 1.5em; }
.pez-plain { white-space: pre-wrap; }
/* Gallery captions ("a red circle · sim 0.91 · seed 3") wrap instead of ending in "si…". */
.gallery .caption-label, [id$="-gallery"] .caption-label { white-space: normal; max-width: 94%; text-overflow: clip; }
#image-input img { width: 100%; height: 100%; object-fit: contain; }
/* Narrow screens: the tabs that do not fit go to gradio's overflow menu; label it. */
.overflow-menu > button { display: inline-flex; align-items: center; gap: 4px; font-weight: 600; }
.overflow-menu > button::before { content: "More tabs"; }
.pez-table td, .pez-table th { word-break: normal !important; overflow-wrap: anywhere; }
.pez-table td:last-child, .pez-table th:last-child { white-space: nowrap; overflow-wrap: normal; }
"""
THEME = gr.themes.Soft(primary_hue="indigo", secondary_hue="pink", neutral_hue="slate")
# demo.launch's keyword arguments for the look (a demo's own, with its upload limit: demo.pez.launch_kwargs).
LAUNCH_KWARGS = {"theme": THEME, "css": CSS}


def check_upload(images, status: str):
    """On upload, at once (outside the queue, so a busy server still answers): a file that is not
    a usable image is said in the tab's status line (header and size only: no pixel is decoded);
    a good one clears such a message."""
    single = isinstance(images, str)
    paths = [images] if single else [i[0] if isinstance(i, (tuple, list)) else i for i in images or []]
    for path in paths:
        try:
            pez.images.check_image(path)
        except pez.InvalidImageError as e:
            return f"⚠ This file cannot be used: {e}"
    return prog.READY if isinstance(status, str) and status.startswith("⚠ This file") else gr.skip()


def _usable(path) -> bool:
    try:
        pez.images.check_image(path)
        return True
    except pez.InvalidImageError:
        return False


def drop_unusable(images):
    """The upload without the files that are not usable images (no broken-image tile is left);
    as it was when all are usable (a bare value: a property update would break share links)."""
    if isinstance(images, str):
        return images if _usable(images) else None
    items = list(images or [])
    return [i for i in items if _usable(i[0] if isinstance(i, (tuple, list)) else i)]


def checked_uploads(component, status) -> None:
    """Check every upload into `component` (an image or a gallery), answering in `status`, and
    take out what cannot be used."""
    evt = component.upload(check_upload, [component, status], status, show_progress="hidden", **QUICK)
    evt.then(lambda v: drop_unusable(v) if v is not None else None, component, component, **QUICK)


def image_gallery(label: str, elem_id: str, columns: int = 3, height: int = 280, field: str = "images") -> ImageList:
    """A drop zone for several target images (file paths); `field` names it in messages."""
    gallery = ImageList(
        type="filepath",
        interactive=True,
        label=label,
        columns=columns,
        height=height,
        file_types=["image"],
        elem_id=elem_id,
    )
    gallery.field = field
    return gallery


# ---------------------------------------------------------------------------------------------
# Search tabs: run/stop, status/prompt/plot, candidates


def run_controls(run_label: str, elem: str) -> tuple[gr.Button, gr.Button]:
    with gr.Row():
        run = gr.Button(run_label, variant="primary", scale=3, elem_id=f"{elem}-run")
        stop = gr.Button("■ Stop", variant="stop", scale=1, elem_id=f"{elem}-stop")
    return run, stop


def progress_outputs(prompt_info: str, elem: str) -> tuple:
    status = prog.status_box(elem)
    prompt = gr.Textbox(
        label="Prompt",
        info=prompt_info,
        lines=2,
        max_lines=6,
        buttons=["copy"],
        interactive=True,
        elem_classes="pez-prompt",
        elem_id=f"{elem}-prompt",
        max_length=MAX_TEXT_CHARS,
        placeholder="the discovered prompt appears here, improving as the search runs",
    )
    plot = gr.LinePlot(
        None,
        x="step",
        y="loss",
        color="curve",
        y_title="loss",
        color_map=prog.PLOT_COLOURS,
        label="Loss",
        elem_id=f"{elem}-plot",
    )
    gr.Markdown(prog.PLOT_NOTE, elem_classes="pez-plot-note")
    return status, prompt, plot


def candidates_table(elem: str, headers=("#", "prompt", "score"), label: str = "Candidates") -> gr.Dataframe:
    return gr.Dataframe(
        headers=list(headers),
        datatype=["number", "str", "number"] if headers[0] == "#" else ["number", "str", "str"],
        interactive=False,
        wrap=True,
        column_widths=["9%", "71%", "20%"],
        label=label,
        elem_id=f"{elem}-candidates",
        elem_classes="pez-table",
        max_height=340,
    )


# ---------------------------------------------------------------------------------------------
# Share links: gradio's deep link (/gradio_api/deep_link) saves the server's copy of the session's
# component values. That copy holds what handlers wrote (results) but not what the person typed or
# uploaded since, nor which tab is open: Share first sends the tab's inputs through a handler that
# returns them as they are (so the copy holds them), selects the tab, then copies the link.
# They go back as updates with a value (gr.update(value=…)), not as bare values: after any property
# update of a component (gr.skip(), gr.Button(visible=…)) gradio 6.31 files a bare value under a
# new component id the page does not have, and the link restores nothing. Images and galleries go
# back bare (an update's file would be saved without its URL); no handler updates their properties.

SHARE_LABEL, SHARE_COPIED = "🔗 Share this result", "✓ Link copied (Share again after an edit)"
SHARE_JS = """async () => {
  try {
    const r = await fetch('gradio_api/deep_link?session_hash=' + window.__gradio_session_hash__);
    const body = await r.text();
    let detail = '';
    if (!r.ok) { try { detail = JSON.parse(body).detail || ''; } catch (e) { detail = ''; } }
    const id = r.ok ? body.replace(/^"|"$/g, '') : '';
    if (!id) throw new Error(detail || 'no link');
    const url = new URL(window.location.href);
    url.searchParams.set('deep_link', id);
    await navigator.clipboard.writeText(url.toString());
    return SHARE_COPIED;
  } catch (e) { return 'Could not copy a link (' + (e.message || e) + ')'; }
}""".replace("SHARE_COPIED", repr(SHARE_COPIED))


def share_button(tabs: gr.Tabs | None, tab_id: str, keep: list, store=None) -> gr.Button:
    """The tab's Share button: the link reopens this tab with `keep` (its inputs, prompt and run
    buttons) as they are now, and the results its handlers wrote. One icon (the emoji). With a
    HistoryStore (`store`), the History table is emptied in the server's copy before the link is
    made (a link carries results, never the sharer's History) and refilled after it."""
    button = gr.Button(SHARE_LABEL, size="sm", elem_id=f"{tab_id}-share", elem_classes="pez-share")

    files = [isinstance(c, (gr.Image, gr.Gallery)) for c in keep]

    def record(*values):
        kept = tuple(v if f else gr.update(value=v) for v, f in zip(values, files, strict=True))
        return (*kept, gr.update(value=SHARE_LABEL)) + ((gr.Tabs(selected=tab_id),) if tabs is not None else ())

    outs = [*keep, button] + ([tabs] if tabs is not None else [])
    recorded = button.click(record, keep, outs, **QUICK)
    if store is not None:
        store.shares.append((recorded, button))  # the copy is chained when the History table exists
    else:
        recorded.then(None, None, button, js=SHARE_JS, **QUICK)
    return button


def pick_row(evt: gr.SelectData):
    """Candidates table click -> that row's prompt."""
    row = evt.row_value or []
    return row[1] if len(row) > 1 and row[1] else gr.skip()


# ---------------------------------------------------------------------------------------------
# Examples (assets/: photos, style, the toy world's examples) and the header


def toy_examples() -> list[str]:
    return sorted(str(p) for p in EXAMPLES_DIR.glob("toy_*.png"))


def photo_examples() -> list[str]:
    return sorted(str(p) for p in (ASSETS / "photos").glob("*.jpg"))


def style_examples() -> list[str]:
    return sorted(str(p) for p in (ASSETS / "style").glob("*.png"))


def toy_style_examples() -> list[str]:
    """A toy "style": one colour on several shapes, drawn by the toy world's renderer (held-out
    seeds) into a temporary folder."""
    import tempfile

    from pez import toy

    folder = Path(tempfile.mkdtemp(prefix="pez-toy-style-"))
    paths = []
    for i, shape in enumerate(("circle", "square", "star")):
        path = folder / f"green_{shape}.png"
        toy.render("green", shape, seed=toy.EVAL_SEED_BASE + i).save(path)
        paths.append(str(path))
    return paths


# A toy picture is one shape on a plain (lightly noisy) background: in a 32 px thumbnail, quantised
# to 4 bits a channel, the toy examples have 49-75 colours, the example photos 114-225.
TOY_THUMB, TOY_COLOURS = 32, 96
TOY_NOTE = (
    "note: the toy world model knows only coloured shapes, so its scores of photos mean little "
    "(a real model pair, where this server has its weights, reads photos)"
)


def toy_like(path) -> bool:
    """Whether an image looks like a toy-world picture (few flat colours), whatever its size."""
    from PIL import Image

    with Image.open(path) as img:
        img.draft("RGB", (TOY_THUMB * 4, TOY_THUMB * 4))  # JPEG: decode at a reduced size
        thumb = img.convert("RGB").resize((TOY_THUMB, TOY_THUMB), Image.Resampling.NEAREST)
    colours = thumb.point(lambda v: v >> 4 << 4).getcolors(TOY_THUMB * TOY_THUMB)
    return len(colours) <= TOY_COLOURS


def toy_note(model: str, paths: list) -> str:
    """ " · note: …" when the toy world model is asked about images that are not toy pictures."""
    if model != "toy":
        return ""
    try:
        photos = [p for p in paths if not toy_like(p)]
    except Exception:  # noqa: BLE001 - a bad file is reported by the run itself
        return ""
    return f" · {TOY_NOTE}" if photos else ""


def image_examples(image, model: gr.Dropdown, toys: list[str], photos: list[str]) -> None:
    """Example images; a toy example switches the model to the toy world, a photo switches back."""
    if photos:
        ex = gr.Examples([[p] for p in photos], [image], label="Example photos (real models)", examples_per_page=8)
        ex.dataset.click(lambda m: pez.DEFAULT_PAIR if m == "toy" else gr.skip(), model, model, **QUICK)
    if toys:
        ex = gr.Examples(
            [[p] for p in toys], [image], label="Toy shapes (toy world model, no download)", examples_per_page=12
        )
        ex.dataset.click(lambda: "toy", None, model, **QUICK)


def text_examples(box: gr.Textbox, model: gr.Dropdown, texts: list[str], toy_texts: list[str]) -> None:
    """Example long prompts; the toy one switches the model to the toy world."""
    if texts:
        ex = gr.Examples([[t] for t in texts], [box], label="Example (real models)")
        ex.dataset.click(lambda m: pez.DEFAULT_PAIR if m == "toy" else gr.skip(), model, model, **QUICK)
    if toy_texts:
        ex = gr.Examples([[t] for t in toy_texts], [box], label="Example (toy world model)")
        ex.dataset.click(lambda: "toy", None, model, **QUICK)


def example_set(label: str, paths: list[str], gallery: gr.Gallery, model: gr.Dropdown, toy: bool) -> None:
    """A button that fills a gallery with example images (and picks a model that suits them)."""

    def fill(m):
        return paths, ("toy" if toy else (pez.DEFAULT_PAIR if m == "toy" else gr.skip()))

    gr.Button(label, size="sm").click(fill, model, [gallery, model], **QUICK)


def header(start: StartupModel) -> None:
    import html

    gr.HTML(
        '<div class="pez-header"><h1>🔎 pez</h1><span class="pez-tagline">Images → readable, editable prompts '
        'with <a href="https://arxiv.org/abs/2302.03668" target="_blank">PEZ (Hard Prompts Made Easy)</a>. '
        "Watch the prompt improve live, stop when you like it, edit it and regenerate.</span></div>"
    )
    toy = "the model is the <b>toy world</b>, a tiny CLIP of coloured shapes: no download. Use the toy examples."
    reason = public_text(start.reason)  # no server paths on a public page
    if start.fallback:  # one short line; the why and the how behind a click (a phone's first screen)
        wanted = html.escape(start.wanted)
        missing = ", ".join(f"<code>{html.escape(m)}</code>" for m in start.missing) or "its weights"
        gr.HTML(
            f'<div class="pez-banner" id="offline-banner"><b>Offline demo mode</b>: {wanted} cannot run here, so {toy}'
            f"<details><summary>Why, and how to use {wanted}</summary>missing: {missing}; {html.escape(reason)}. "
            f"{html.escape(start.how_to)}</details></div>"
        )
    elif start.pair == "toy":
        gr.HTML(
            f'<div class="pez-banner" id="offline-banner"><b>Offline demo mode</b>: {toy} Real model pairs '
            "(Settings) need their weights.</div>"
        )
    elif start.downloads:
        gr.HTML(
            f'<div class="pez-banner" id="download-banner">The weights of <b>{html.escape(start.pair)}</b> are not '
            "cached yet: the first run downloads them (several GB; the status line shows the progress).</div>"
        )
