"""History: every prompt found, kept in the browser (localStorage) across reloads and tabs.

Two browser tabs share one list: each save reads what is stored *now*, merges the run in by its
id and writes the result back (MERGE_JS), so no tab overwrites another's runs. The server never
keeps anyone's history; it only turns the list into table rows and an export file.
"""

from __future__ import annotations

import json

import gradio as gr

import pez

from .progress import RunControl, fmt_score
from .server import user_error

HISTORY_LIMIT = 200  # prompts kept in the browser
HISTORY_KEY = "pez-history-v2"
HISTORY_HEADERS = ["when", "mode", "prompt", "score", "model", "settings"]

_READ = f"""
  const key = {json.dumps(HISTORY_KEY)};
  let stored = [];
  try {{ stored = JSON.parse(localStorage.getItem(key) || '[]'); }} catch (e) {{ stored = []; }}
  if (!Array.isArray(stored)) stored = [];
"""
READ_JS = f"() => {{ {_READ} return [stored]; }}"  # one output: the list, wrapped
MERGE_JS = f"""(rec) => {{ {_READ}
  const runs = Array.isArray(rec) ? rec : (rec ? [rec] : []);
  for (const r of runs.slice().reverse()) {{
    if (!r || !r.prompt) continue;
    const keep = Object.assign({{}}, r); delete keep.done;
    stored = [keep].concat(stored.filter(h => h && h.id !== r.id));
  }}
  stored = stored.slice(0, {HISTORY_LIMIT});
  localStorage.setItem(key, JSON.stringify(stored));
  return [stored];
}}"""
# Clear keeps what it removed in this browser only (CLEARED_KEY), never in a component: a share
# link replays component values, so Undo must not take its records from one (issue 23).
CLEARED_KEY = HISTORY_KEY + "-cleared"
CLEAR_JS = f"""() => {{ {_READ}
  localStorage.setItem(key, '[]');
  localStorage.setItem({json.dumps(CLEARED_KEY)}, JSON.stringify(stored));
  return [[], {{__type__: 'update', visible: stored.length > 0, value: '↩ Undo clear (' + stored.length + ')'}}];
}}"""
UNDO_JS = f"""() => {{
  let old = [];
  try {{ old = JSON.parse(localStorage.getItem({json.dumps(CLEARED_KEY)}) || '[]'); }} catch (e) {{ old = []; }}
  localStorage.removeItem({json.dumps(CLEARED_KEY)});
  const merged = ({MERGE_JS})(Array.isArray(old) ? old : []);
  return [merged[0], {{__type__: 'update', visible: false}}];
}}"""


def history_rows(history: list | None) -> list[list]:
    """The History table's rows (at most HISTORY_LIMIT: the browser keeps no more; anything else
    sent here, e.g. by a script, is not turned into rows)."""
    rows = []
    for h in (history if isinstance(history, list) else [])[:HISTORY_LIMIT]:
        if not isinstance(h, dict):
            continue
        s = h.get("settings", {}) or {}
        steps = (s.get("steps") or 0) * h.get("images", 1)  # concatenation: one run per image
        settings = f"len {s.get('prompt_len')} · {h.get('steps_run')}/{steps} steps · seed {s.get('seed')}"
        if h.get("stopped"):
            settings += " · stopped"
        when = str(h.get("time", "")).replace("T", " ")
        rows.append(
            [when, h.get("mode", ""), h.get("prompt", ""), fmt_score(h.get("score")), h.get("model", ""), settings]
        )
    return rows


EXPORT_MAX_BYTES = HISTORY_LIMIT * 8_000  # a run record is ~1 KB; leave room for long prompts


def export_history(history, disk) -> str:
    """The History as a JSON file to download, written once through the server's DiskBudget
    (`disk`: bounded in bytes and files, expiring; inside gradio's cache, so gradio serves this file
    without a copy of its own). Anyone can post any list here (it runs outside the queue): more
    runs than the browser keeps, or more than EXPORT_MAX_BYTES of them, are refused, measured on
    the compact JSON (C encoder) before the readable file is made."""
    if not history:
        raise user_error("History is empty: run a search first.")
    if not isinstance(history, list) or len(history) > HISTORY_LIMIT:
        n = len(history) if isinstance(history, list) else type(history).__name__
        raise user_error(f"history: expected at most {HISTORY_LIMIT} runs, received {n}")
    doc = {"app": "pez", "version": pez.__version__, "prompts": history}
    try:
        size = len(json.dumps(doc, separators=(",", ":")))
    except (TypeError, ValueError) as e:
        raise user_error(f"history: expected runs as JSON objects ({type(e).__name__})") from None
    if size > EXPORT_MAX_BYTES:
        raise user_error(f"history: expected at most {EXPORT_MAX_BYTES:,} bytes of runs, received {size:,}")
    return str(disk.write_bytes(json.dumps(doc, indent=2).encode(), ".json", prefix="pez-history-"))


def record_of(control: RunControl) -> dict | None:
    """The run record History keeps; a negative-prompt search is logged as mode "negative"."""
    record = control.record
    if record and control.goal == "negative":
        return {**record, "mode": "negative"}
    return record


class HistoryStore:
    """The page's copy of the stored list (a hidden JSON component) and how runs get into it."""

    def __init__(self):
        self.value = gr.JSON([], visible="hidden", elem_id="history-store")
        self.pending = gr.JSON(None, visible="hidden")
        self.updates: list = []  # events that change the list; show_in() makes each refresh the table
        self.shares: list = []  # (event, button) of each Share button (components.share_button)

    def save(self, event, control: gr.State) -> None:
        """After `event`: merge the tab's run record (kept in its control) into the browser's list."""
        merged = event.then(record_of, control, self.pending, queue=False, api_visibility="private").then(
            None, self.pending, self.value, js=MERGE_JS, queue=False, api_visibility="private"
        )
        self.updates.append(merged)

    def reload(self, trigger) -> None:
        """Re-read the stored list (another tab may have added runs)."""
        self.updates.append(trigger(None, None, self.value, js=READ_JS, queue=False, api_visibility="private"))

    def changed(self, event) -> None:
        self.updates.append(event)

    def show_in(self, table: gr.Dataframe, private: list | None = None) -> None:
        """Every change of the list -> the History table (JS outputs do not fire .change). Before a
        Share button copies its link, the table (and `private`: other components showing History)
        are emptied in the server's copy of the session, which the link saves; the table is then
        re-read from this browser's storage."""
        from .components import SHARE_JS

        quick = {"queue": False, "api_visibility": "private"}
        # gradio saves every input a handler took too: the stored list itself (history_rows' input)
        private = list(private or [])
        hidden = [table, self.value, *private]
        for recorded, button in self.shares:
            shared = (
                recorded.then(lambda: tuple(None if c in private else [] for c in hidden), None, hidden, **quick)
                .then(None, None, button, js=SHARE_JS, **quick)
                .then(None, None, self.value, js=READ_JS, **quick)
            )
            self.updates.append(shared)
        for evt in self.updates:
            evt.then(history_rows, self.value, table, **quick)
