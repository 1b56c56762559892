"""A run that survives losing its server, in the browser (issue 23, item 7).

When the server goes away mid-run (a restart, a crash, a Space rebuilt), gradio 6.31's page shows
a toast ("Connection to the server was lost. Attempting reconnection...") and nothing else: the
tab's status line keeps saying "Step 6 / 5000 · about 60 s left", History has nothing of the run,
and a page reloaded once the server is back starts empty. HEAD (a script for launch's `head`)
watches for that toast and, for every search tab whose status line shows a run:

- keeps the prompt the run had reached in the tab (and in sessionStorage for a reload of the page
  within RESTORE_SECONDS, which puts it back into the empty prompt box),
- records the run in History (the browser's localStorage list History reads, pez_app.history)
  as interrupted, with the message, and
- says so in the status line (MESSAGE).

The server keeps nothing of anyone's run; this is all in the page. Tested in
tests/e2e/test_browser_restart.py (chromium, a server killed mid-run and started again).
"""

from __future__ import annotations

import json

from .history import HISTORY_KEY, HISTORY_LIMIT

TABS = ("image", "multi", "style", "distill")  # the search tabs' elem prefixes (#<tab>-status, #<tab>-prompt)
LOST = "Connection to the server was lost"  # gradio 6.31's toast when its event stream breaks
MESSAGE = (
    "Interrupted: the connection to the server was lost (it may have restarted). The best prompt so far "
    "is kept here and in History; run again to continue."
)
RESTORE_SECONDS = 600  # a reload within this long puts the interrupted prompt back
SAVED_KEY = "pez-interrupted"

_SCRIPT = """
(() => {
  const TABS = %(tabs)s, LOST = %(lost)s, MESSAGE = %(message)s;
  const KEY = %(key)s, LIMIT = %(limit)d, SAVED = %(saved)s, RESTORE_MS = %(restore)d * 1000;
  const RUNNING = /^(Step \\d|Loading|Downloading|Image \\d+ of|Starting|Waiting)/;
  const text = (el) => ((el && el.innerText) || "").trim();
  const say = (tab) => {
    const status = document.querySelector("#" + tab + "-status");
    if (!status) return;
    const line = status.querySelector(".pez-status-text") || status;
    line.innerText = MESSAGE;
  };
  let handled = false;
  function remember() {
    if (handled) return;
    const runs = [];
    for (const tab of TABS) {
      const status = document.querySelector("#" + tab + "-status");
      const box = document.querySelector("#" + tab + "-prompt textarea");
      if (!status || !box || !box.value.trim() || !RUNNING.test(text(status))) continue;
      const step = /^Step (\\d+)/.exec(text(status));
      runs.push({tab: tab, prompt: box.value, steps_run: step ? Number(step[1]) : 0});
    }
    if (!runs.length) return;
    handled = true;
    let stored = [];
    try { stored = JSON.parse(localStorage.getItem(KEY) || "[]"); } catch (e) { stored = []; }
    if (!Array.isArray(stored)) stored = [];
    const model = document.querySelector("#model input");
    const now = new Date();
    const pad = (n) => String(n).padStart(2, "0");
    const time = now.getFullYear() + "-" + pad(now.getMonth() + 1) + "-" + pad(now.getDate()) + "T" +
      pad(now.getHours()) + ":" + pad(now.getMinutes()) + ":" + pad(now.getSeconds());
    const records = runs.map((r) => ({
      id: "interrupted-" + Math.random().toString(16).slice(2, 14), time: time, mode: r.tab + " (interrupted)",
      prompt: r.prompt, score: null, model: model ? model.value : "", steps_run: r.steps_run,
      stopped: true, interrupted: true, note: MESSAGE, settings: {},
    }));
    localStorage.setItem(KEY, JSON.stringify(records.concat(stored).slice(0, LIMIT)));
    sessionStorage.setItem(SAVED, JSON.stringify({at: Date.now(), runs: runs}));
    runs.forEach((r) => say(r.tab));
  }
  function watch() {
    new MutationObserver(() => {
      for (const t of document.querySelectorAll(".toast-body")) {
        if (t.innerText.includes(LOST)) { remember(); return; }
      }
    }).observe(document.body, {childList: true, subtree: true});
  }
  function restore() {
    let saved = null;
    try { saved = JSON.parse(sessionStorage.getItem(SAVED) || "null"); } catch (e) { saved = null; }
    if (!saved || !Array.isArray(saved.runs) || Date.now() - saved.at > RESTORE_MS) return;
    let tries = 0;
    const timer = setInterval(() => {
      const ready = saved.runs.every((r) => document.querySelector("#" + r.tab + "-prompt textarea"));
      if (!ready && ++tries < 120) return;
      clearInterval(timer);
      sessionStorage.removeItem(SAVED);
      for (const r of saved.runs) {
        const box = document.querySelector("#" + r.tab + "-prompt textarea");
        if (!box || box.value.trim()) continue;
        box.value = r.prompt;
        box.dispatchEvent(new Event("input", {bubbles: true}));
        say(r.tab);
      }
    }, 250);
  }
  const start = () => { watch(); restore(); };
  if (document.body) start(); else document.addEventListener("DOMContentLoaded", start);
})();
"""

HEAD = (
    "<script>"
    + _SCRIPT
    % {
        "tabs": json.dumps(list(TABS)),
        "lost": json.dumps(LOST),
        "message": json.dumps(MESSAGE),
        "key": json.dumps(HISTORY_KEY),
        "limit": HISTORY_LIMIT,
        "saved": json.dumps(SAVED_KEY),
        "restore": RESTORE_SECONDS,
    }
    + "</script>"
)

__all__ = ["HEAD", "MESSAGE"]
