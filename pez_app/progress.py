"""A run's progress as UI values: the status line, the loss plot, candidates, the run record, and
RunControl (one tab's Run/Stop state). What turns a run's reports into these is pez_app.pipeline.

The status is plain text (what API clients and MCP tools get); the browser draws the progress
bar from that text (STATUS_TEMPLATE), so no HTML ever reaches the API.
"""

from __future__ import annotations

import datetime as dt
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import gradio as gr
import pandas as pd

import pez
from pez.config import MAX_IMAGES

PLOT_POINTS = 400  # points per series in the final loss plot
SMOOTH_STEPS = 25.0  # time constant (steps) of the moving average drawn for the loss

LOSS, BEST = "loss (moving average)", "1 − best score"
IMAGE_COLOURS = ["#6366f1", "#ec4899", "#14b8a6", "#f59e0b", "#8b5cf6", "#ef4444", "#22c55e", "#0ea5e9"]
PLOT_COLOURS = {
    LOSS: "#c7d2fe",  # faint: the noisy per-step objective
    BEST: "#312e81",  # prominent: what the prompt shown scores
    **{f"image {k + 1}": IMAGE_COLOURS[k % len(IMAGE_COLOURS)] for k in range(MAX_IMAGES)},  # concatenation
}
PLOT_COLUMNS = ["step", "loss", "curve"]
PLOT_NOTE = (
    "**1 − best score** (dark) is what the prompt shown scores against all targets: it only goes down, "
    "through the search's steps and then its polish (token swaps, pruning, word order: one point each), "
    "ending at the score the status shows. "
    "The pale line is the optimiser's loss, averaged over recent steps: it is measured on the soft "
    "prompt's projection, per step, on that step's batch of targets and over all candidates, so it "
    "is noisy and need not match the best score (at the first steps the two differ most). "
    "Concatenate mode draws one line per image: that image's 1 − best score."
)

READY, STARTING = "Ready.", "Starting…"
WAITING = "Waiting in the queue for a free model slot… (another run is using it; Stop cancels)"
BUSY = "the server is busy (its queue is full): try again in a moment"
STOPPED_BEFORE = "Stopped before it started (it was waiting in the queue)."

# The status component's template: the bar comes from the text itself (elapsed and time left
# "· 35 s of 60 s · about 25 s left", else "Step 12 / 300"; "Image 1 of 2"), its colour from the
# first word (Done, Stopped, Error, Waiting).
STATUS_TEMPLATE = """
<div class="pez-status pez-${(() => { const v = value || ''; return /^Done/.test(v) ? 'done' :
  /^Stopped/.test(v) ? 'stopped' : /^⚠|^Error/.test(v) ? 'error' : /^Waiting/.test(v) ? 'waiting' :
  /^Ready/.test(v) ? 'idle' : 'running'; })()}">
  ${(() => { const v = value || ''; const s = /Step (\\d+) \\/ (\\d+)/.exec(v); const im = /Image (\\d+) of (\\d+)/.exec(v);
    const t = /· ([\\d.]+) s(?: of [\\d.]+ s)? · about (?:(\\d+) min )?(\\d+) s left/.exec(v);
    const d = /^(Done|Stopped)/.test(v); const load = /^(Loading|Downloading)/.test(v);
    if (!s && !t && !d && !load) return '';
    let f = t ? (+t[1]) / Math.max(+t[1] + 60 * (+(t[2] || 0)) + (+t[3]), 1e-9) : s ? (+s[1]) / Math.max(+s[2], 1) : (d ? 1 : 0.02);
    if (im && (s || t)) f = ((+im[1] - 1) + f) / Math.max(+im[2], 1);
    return `<div class="pez-bar"><div style="width:${(100 * Math.min(Math.max(f, 0), 1)).toFixed(1)}%"></div></div>`;
  })()}
  <div class="pez-status-text">${(value || '').replace(/&/g, '&amp;').replace(/</g, '&lt;')}</div>
</div>
"""


# Plain text shown as it is: never Markdown or HTML (a value may repeat a caller's text, and a share
# link replays it in another visitor's page); API and MCP get the same plain text.
PLAIN_TEMPLATE = """<div class="pez-plain">${(value || '').replace(/&/g, '&amp;').replace(/</g, '&lt;')}</div>"""


def plain_box(elem: str, value: str = "") -> gr.HTML:
    return gr.HTML(value, html_template=PLAIN_TEMPLATE, elem_id=elem, elem_classes="pez-summary", js_on_load=None)


def status_box(elem: str) -> gr.HTML:
    return gr.HTML(READY, html_template=STATUS_TEMPLATE, label="status", elem_id=f"{elem}-status", js_on_load=None)


def fmt_score(score: float | None) -> str:
    return f"{score:.3f}" if score is not None and math.isfinite(score) else "–"


def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else (many or word + 's')}"


def plot_frame(rows: list[tuple]) -> pd.DataFrame | None:
    """Loss plot data with numeric axes. No rows -> None (an empty frame stops later data from drawing)."""
    if not rows:
        return None
    df = pd.DataFrame(rows, columns=PLOT_COLUMNS)
    return df.astype({"step": "int64", "loss": "float64", "curve": "str"})


class Smoother:
    """Exponential moving average over steps (the points may be unevenly spaced)."""

    def __init__(self, tau: float = SMOOTH_STEPS):
        self.tau, self.value, self.step = tau, None, None

    def __call__(self, step: int, x: float) -> float:
        if not math.isfinite(x):
            return self.value if self.value is not None else x
        if self.value is None:
            self.value = x
        else:
            a = 1 - math.exp(-max(step - self.step, 1) / self.tau)
            self.value += a * (x - self.value)
        self.step = step
        return self.value


def history_plot_rows(history: list[tuple[int, float, float]]) -> list[tuple]:
    """(step, loss, best score) per step -> plot rows (smoothed loss, 1 − best), thinned."""
    smooth = Smoother()
    smoothed = [(step, smooth(step, loss), best) for step, loss, best in history]
    stride = max(1, math.ceil(len(smoothed) / PLOT_POINTS))
    picked = smoothed[::stride] + ([smoothed[-1]] if smoothed and (len(smoothed) - 1) % stride else [])
    rows = []
    for step, loss, best in picked:
        rows.append((step, loss, LOSS))
        if math.isfinite(best):
            rows.append((step, 1 - best, BEST))
    return rows


# The plot's x is the search's step. The polish phases that follow (refine rounds, tokens pruned,
# word order) count in other units: each of their reports is drawn one step further, so the best
# score's line goes on past the search (never back to x = 1) and ends at the score the status shows.


def _next_x(rows: list[tuple], curve: str) -> int:
    """One past the last x drawn of `curve` (0 when none)."""
    return next((r[0] + 1 for r in reversed(rows) if r[2] == curve and math.isfinite(r[1])), 0)


def step_rows(rep: pez.StepReport, smooth: Smoother, rows: list[tuple]) -> list[tuple]:
    """The plot rows of one report of a search: the smoothed loss and 1 − best score at its step;
    in a polish phase, 1 − best score one step past what is drawn."""
    if rep.phase != "search":
        x = _next_x(rows, BEST)
        return [(x, 1 - rep.best_score, BEST)] if math.isfinite(rep.best_score) else []
    out = [(rep.step, smooth(rep.step, rep.loss), LOSS)]
    if math.isfinite(rep.best_score):
        out.append((rep.step, 1 - rep.best_score, BEST))
    return out


def concat_rows(rep, rows: list[tuple]) -> list[tuple]:
    """The plot rows of one report of a concatenation (pez.ConcatReport): image k's 1 − best score
    at its own step (all images share the x axis), its polish going on past its search."""
    r, curve = rep.report, f"image {rep.index + 1}"
    if not math.isfinite(r.best_score):
        return []
    x = r.step if r.phase == "search" else _next_x(rows, curve)
    return [(x, 1 - r.best_score, curve)]


def final_rows(res: pez.InversionResult, rows: list[tuple]) -> list[tuple]:
    """The finished search's plot: its whole history (thinned), the polish drawn live after it, and
    a last point at 1 − the final score (what the status says)."""
    out = history_plot_rows(res.history)
    last = max((r[0] for r in out), default=0)
    out += [r for r in rows if r[2] == BEST and r[0] > last and math.isfinite(r[1])]
    best = [r for r in out if r[2] == BEST]
    if math.isfinite(res.score) and (not best or abs(best[-1][1] - (1 - res.score)) > 1e-6):
        out.append((_next_x(out, BEST), 1 - res.score, BEST))
    return out


def duration(seconds: float) -> str:
    """'45 s', '3 min 05 s'."""
    seconds = max(int(round(seconds)), 0)
    return f"{seconds} s" if seconds < 120 else f"{seconds // 60} min {seconds % 60:02d} s"


def progress_text(rep: pez.StepReport, prefix: str = "") -> str:
    """The status of a running search: where it is (the phase: step, refine round or tokens
    pruned), its rate in that phase, the best score, the time spent (of the budget) and left."""
    if rep.phase == "refine":
        # rounds are bounded by the polish share (the time left shows it), rarely by refine_steps
        where, rate = f"Refine round {rep.step}", f"{rep.steps_per_sec:.2f} rounds/s"
    elif rep.phase == "prune":
        where, rate = f"Prune: {plural(rep.step, 'token')} removed", f"{rep.steps_per_sec:.1f} tokens/s"
    elif rep.phase == "order":  # readable style: the words put in a readable order
        where, rate = f"Word order: round {rep.step} of {rep.steps}", f"{rep.steps_per_sec:.2f} rounds/s"
    else:
        where = f"Step {rep.step} / {rep.steps}"
        rate = f"{rep.steps_per_sec:.1f} steps/s" if rep.step else "starting the search"
    spent = f"{rep.elapsed:.0f} s of {rep.time_budget:.0f} s" if rep.time_budget else f"{rep.elapsed:.1f} s"
    left = f" · about {duration(rep.eta)} left" if math.isfinite(rep.eta) and rep.step else ""
    return f"{prefix}{where} · {rate} · best score {fmt_score(rep.best_score)} · {spent}{left}"


def result_text(res: pez.InversionResult, extra: str = "", waited: float | None = None, limit: str = "") -> str:
    """The summary of a finished run. `waited`: the seconds the user waited (loading included);
    the result's own time (search and polish) otherwise. `limit`: "the server's time limit (N s)"
    when that was the run's time budget (the user's budget was longer, or none)."""
    hint = res.hint
    if res.stopped and res.steps_run == 0:
        return "Stopped before the first step (Stop was pressed while the run waited)."
    how = "Stopped" if res.stopped else "Done"
    planned = res.config.steps
    early = ""
    if not res.stopped and res.steps_run < planned:
        budget = res.config.time_budget
        # the engine says whether the clock ended the search (else early stop did)
        by_clock = bool(budget) and res.stats.get("clock_ended", 0.0) > 0
        early = f" (time budget: {budget:g} s)" if by_clock else " (early stop: no better prompt for a while)"
        if limit and res.stats.get("limited"):  # the engine's time limit (the server's) ended the run
            early = f" (ended at {limit})"
    search = res.stats.get("search_seconds", res.elapsed)
    search = search if math.isfinite(search) else res.elapsed
    polish = max(res.elapsed - search, 0.0)
    parts = [f"search {search:.1f} s"] + ([f"polish {polish:.1f} s"] if polish >= 0.05 else [])
    if waited is not None and waited - res.elapsed >= 0.05:
        parts.insert(0, f"loading {waited - res.elapsed:.1f} s")
    total = res.elapsed if waited is None else max(waited, res.elapsed)
    # a time budget plans the run by the clock: the same seed may give another prompt (README)
    timed = " (timed run: set Time budget to 0 to repeat it exactly)" if res.config.time_budget else ""
    text = (
        f"{how} after {res.steps_run} steps{early} in {total:.1f} s ({', '.join(parts)}; "
        f"{res.steps_run / max(search, 1e-9):.1f} steps/s) · best score {fmt_score(res.score)}"
        f"{clip_scores_text(res)} · seed {res.seed}{timed}{extra}"
    )
    return text + (f" · hint: {hint}" if hint else "")


def clip_scores_text(res: pez.InversionResult) -> str:
    """' (ViT-L-14 0.301 ×0.5, ViT-bigG-14 0.322 ×0.5)' for a joint search, '' for one CLIP."""
    if len(res.clip_scores) < 2:
        return ""
    parts = [
        f"{name.split('/')[0]} {fmt_score(sc)} ×{res.clip_weights.get(name, math.nan):g}"
        for name, sc in res.clip_scores.items()
    ]
    return " (" + ", ".join(parts) + ")"


JOIN_NOTE = (
    "each part is scored against its own image, the joined prompt against every image (it describes them "
    "all at once, so it matches any single one less)"
)


def concat_text(res, images: int, extra: str = "") -> str:
    """The summary of a finished concatenation."""
    how = "Stopped" if res.stopped else "Done"
    return (
        f"{how}: {len(res.parts)} of {plural(images, 'image')} inverted · joined prompt score "
        f"{fmt_score(res.score)} (mean over all images; {JOIN_NOTE}{extra})"
    )


def candidate_rows(scored: list[tuple[str, float]]) -> list[list]:
    return [[i + 1, p, round(s, 4)] for i, (p, s) in enumerate(scored)]


def top_seen(seen: dict[str, float], k: int) -> list[tuple[str, float]]:
    return sorted(seen.items(), key=lambda kv: kv[1], reverse=True)[:k]


def finite(x: float | None) -> float | None:
    return round(float(x), 4) if x is not None and math.isfinite(x) else None


def new_record(mode: str, model: str, cfg: pez.InvertConfig, **extra) -> dict:
    """What History keeps of one run; also the per-session state Stop reads."""
    settings = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(cfg).items()}
    return {
        "id": uuid.uuid4().hex[:12],
        "time": dt.datetime.now().isoformat(timespec="seconds"),
        "mode": mode,
        "prompt": "",
        "score": None,
        "model": model,
        "steps_run": 0,
        "done": False,
        "stopped": False,
        "settings": settings,
        **extra,
    }


# ---------------------------------------------------------------------------------------------
# Run and Stop. A run polls its tab's RunControl (per session, in gr.State, shared by reference
# between the tab's events) and ends gracefully, so its final update keeps the best prompt.


@dataclass
class RunControl:
    """One tab's runs in one browser session: when Run and Stop were pressed, where the run is,
    its record (what History keeps; Stop reads it) and the message of its last failure."""

    clicked_at: float = 0.0  # time.monotonic() of the latest Run click (0: never)
    stop_at: float = 0.0  # time.monotonic() of the latest Stop click
    armed: bool = False  # Run clicked and the run not finished yet (it may still wait in the queue)
    started: bool = False  # the handler is running
    record: dict | None = None  # the run record (progress.new_record), updated with every report
    error: str = ""  # the last failure's message, for the status line
    deadline: Callable[[], bool] | None = None  # the backstop of the server's time limit (pipeline.Deadline)
    regen_error: str = ""  # the last failed regeneration's message, for the tab's summary
    goal: str = ""  # Image → Prompt's goal at the latest Run click ("negative": History's mode)

    def should_stop(self) -> Callable[[], bool]:
        """should_stop for a run that starts now: true once Stop is pressed after its Run click."""
        clicked = self.clicked_at
        return lambda: self.stop_at >= clicked > 0.0


def arm_run(control: RunControl, busy: bool = False) -> str:
    """Run clicked: remember when (a Stop after it, even while queued, stops that run) and say
    whether the run starts or waits for another run to free the model (`busy`; the handler's
    first update replaces this)."""
    control.clicked_at, control.error, control.armed, control.started, control.record = (
        time.monotonic(),
        "",
        True,
        False,
        None,
    )
    return WAITING if busy else STARTING


def error_status(control: RunControl, busy: bool = False) -> str:
    """The status line after a failed run (the failure handler's output). A run that never
    reached its handler was refused by the queue (`busy`) or by an input's check (its message is
    shown); either way it is no longer waiting, so Stop has nothing to cancel."""
    control.armed = False
    if control.error:
        return f"⚠ Error: {control.error}"
    return f"⚠ Error: {BUSY}" if busy else "⚠ Error: the run did not start (see the message)"


def time_limited(status: str, why: str) -> str:
    """A final status of a run the server's time limit stopped: "Stopped at <why> after …"."""
    return f"Stopped at {why}{status[len('Stopped') :]}" if status.startswith("Stopped") else f"{status} · {why}"
