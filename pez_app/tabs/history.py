"""History: the prompts found in this browser (all tabs, across reloads), newest first."""

from __future__ import annotations

import gradio as gr

from .. import components as ui
from ..history import CLEAR_JS, HISTORY_HEADERS, UNDO_JS, export_history
from ..server import friendly_errors

export_history = friendly_errors(export_history)


def pick_row_prompt(evt: gr.SelectData):
    row = evt.row_value or []
    return row[2] if len(row) > 2 else gr.skip()


def build(ctx) -> None:
    store = ctx.history
    with gr.Tab("History", id="history", elem_id="tab-history") as tab:
        gr.Markdown(
            "Every prompt you discover is kept **in this browser** (across reloads and browser tabs), newest "
            "first, with its score and settings. Click a row to copy or reuse it.",
            elem_classes="pez-hint",
        )
        table = gr.Dataframe(
            headers=HISTORY_HEADERS,
            interactive=False,
            wrap=True,
            column_widths=["13%", "11%", "42%", "7%", "9%", "18%"],
            elem_id="history-table",
            elem_classes="pez-table",
            max_height=420,
        )
        with gr.Row():
            picked = gr.Textbox(
                label="Selected prompt", buttons=["copy"], scale=4, elem_classes="pez-prompt", elem_id="history-picked"
            )
            use_btn = gr.Button("Use in Image → Prompt", scale=1, elem_id="history-use")
        with gr.Row():
            export_btn = gr.Button("⬇ Export JSON", scale=1)
            clear_btn = gr.Button("🗑 Clear history", variant="stop", scale=1, elem_id="history-clear")
            undo_btn = gr.Button("↩ Undo clear", scale=1, visible=False, elem_id="history-undo")
            export_file = gr.File(label="Export", scale=2, visible=False)

        store.reload(tab.select)  # another browser tab may have added runs meanwhile
        store.reload(ctx.demo.load)
        table.select(pick_row_prompt, None, picked, **ui.QUICK)
        use_btn.click(lambda p: (p, gr.Tabs(selected="image")), picked, [ctx.prompt, ctx.tabs], **ui.QUICK)
        export_btn.click(
            lambda h: gr.File(export_history(h, ctx.disk), visible=True), store.value, export_file, **ui.QUICK
        )
        # Clear keeps what it removed (in this browser's storage, until the next clear): Undo merges it
        # back. Neither takes records from a component, so a replayed share link cannot write any.
        cleared_evt = clear_btn.click(None, None, [store.value, undo_btn], js=CLEAR_JS, **ui.QUICK)
        store.changed(cleared_evt)
        cleared_evt.then(lambda: ("", gr.File(None, visible=False)), None, [picked, export_file], **ui.QUICK)
        undone = undo_btn.click(None, None, [store.value, undo_btn], js=UNDO_JS, **ui.QUICK)
        store.changed(undone)
        store.show_in(table, [picked])
