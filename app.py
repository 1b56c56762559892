"""pez app: find readable hard prompts for images with PEZ, watch them improve live, regenerate.

UI only: layout, event wiring and converting UI values. All the work is done by the `pez`
package; every default and bound comes from `pez.config`. Tabs: Image -> Prompt, Multi-image
(one prompt for all, or concatenation), Style transfer, Distill, History.

    python app.py                      # default model pair (weights download on first use)
    python app.py --offline-demo       # toy world model: works with no download at all
    PEZ_OFFLINE_DEMO=1 python app.py   # the same, e.g. for a Space without a GPU

A Hugging Face Space runs this file as is (README front matter). Serving many users: nothing
per-user lives in module globals (per-session data is in gr.State / gr.BrowserState), models are
loaded once and cached by pez, and every model-running event shares one bounded GPU queue
(`concurrency_id="gpu"`). On ZeroGPU those handlers are wrapped with `spaces.GPU`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import html
import inspect
import json
import logging
import math
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:  # Hugging Face ZeroGPU; imported before anything touches CUDA. Absent off Spaces.
    import spaces
except ImportError:  # pragma: no cover - depends on the host
    spaces = None

import gradio as gr
import pandas as pd

import pez
from pez.config import BOUNDS, GENERATE_BOUNDS, MAX_IMAGES, MAX_TEXT_CHARS

log = logging.getLogger("pez.app")

ROOT = Path(__file__).resolve().parent
ASSETS = ROOT / "assets"


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


@dataclass
class ServerSettings:
    """How this server runs: the same for every user (per-user data never lives here)."""

    device: str | None = os.environ.get("PEZ_DEVICE") or None  # None: cuda, then mps, then cpu
    offline_demo: bool = _env_flag("PEZ_OFFLINE_DEMO")  # toy world model as the default pair
    gpu_concurrency: int = int(os.environ.get("PEZ_GPU_CONCURRENCY", "1"))  # runs at once on the GPU
    queue_size: int = int(os.environ.get("PEZ_QUEUE_SIZE", "32"))  # waiting runs before "queue full"
    gpu_seconds: int = int(os.environ.get("PEZ_GPU_SECONDS", "120"))  # ZeroGPU time per call


SERVER = ServerSettings()
UI_INTERVAL = 0.15  # seconds between streamed UI updates (a run may report far more often)
PLOT_POINTS = 400  # points per series in the final loss plot
HISTORY_LIMIT = 200  # prompts kept in the browser
HISTORY_KEY = "pez-history-v1"
HISTORY_SECRET = os.environ.get("PEZ_HISTORY_SECRET", "pez-history: prompts are not secret")

# ---------------------------------------------------------------------------------------------
# Handler plumbing: ZeroGPU, friendly errors


def on_gpu(fn: Callable) -> Callable:
    """Run `fn` on a ZeroGPU device when the `spaces` package is importable; a no-op elsewhere."""
    if spaces is None:
        return fn
    return spaces.GPU(duration=SERVER.gpu_seconds)(fn)


USER_ERRORS = (pez.ConfigError, pez.InvalidImageError, pez.WeightsNotFoundError)


def as_gr_error(e: BaseException) -> gr.Error:
    """Any exception -> a gr.Error the user can act on (never a traceback in the browser)."""
    if isinstance(e, gr.Error):
        return e
    if isinstance(e, pez.WeightsNotFoundError):
        return gr.Error(str(e), title="Model weights not available", duration=None, print_exception=False)
    if isinstance(e, USER_ERRORS):
        return gr.Error(str(e), title="Please check the input", print_exception=False)
    if is_oom(e):
        free_gpu_memory()
        return gr.Error(
            "Out of GPU memory: try fewer restarts, a shorter prompt, fewer images or a smaller model.",
            title="Out of memory",
            print_exception=False,
        )
    log.exception("unexpected error in a handler")
    return gr.Error(
        f"Something went wrong ({type(e).__name__}: {e}). The app keeps running; details are in the server log.",
        title="Unexpected error",
        print_exception=False,
    )


def is_oom(e: BaseException) -> bool:
    return type(e).__name__ == "OutOfMemoryError" or "out of memory" in str(e).lower()


def free_gpu_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def friendly_errors(fn: Callable) -> Callable:
    """Wrap a handler (plain or generator) so every exception reaches the user as a gr.Error."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def stream(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as e:
                raise as_gr_error(e) from e

        return stream

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            raise as_gr_error(e) from e

    return call


def gpu_handler(fn: Callable) -> Callable:
    return on_gpu(friendly_errors(fn))


# ---------------------------------------------------------------------------------------------
# Converting UI values


def default_pair() -> str:
    return "toy" if SERVER.offline_demo else pez.DEFAULT_PAIR


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


def split_words(text: str | None) -> tuple[str, ...]:
    """'cat, dog  bird' -> ('cat', 'dog', 'bird')."""
    return tuple(w for w in (text or "").replace(",", " ").split() if w)


def make_config(prompt_len, steps, candidates, seed, lr, blocklist, words_only) -> pez.InvertConfig:
    """UI values -> a validated InvertConfig. An empty seed draws one, so every run is reproducible."""
    if seed is None or seed == "":
        seed = random.randrange(int(BOUNDS["seed"].hi))
    return pez.InvertConfig(
        prompt_len=_as_int(prompt_len),
        steps=_as_int(steps),
        candidates=_as_int(candidates),
        top_k=max(pez.InvertConfig().top_k, _as_int(candidates)),
        seed=_as_int(seed),
        lr=float(lr),
        blocklist=split_words(blocklist),
        words_only=bool(words_only),
    ).validate()


def _as_int(value):
    """Whole floats from sliders -> int; anything else goes through for validation to report."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def image_paths(gallery) -> list:
    """Gallery value (list of (path, caption) or paths) -> list of paths/images."""
    items = []
    for item in gallery or []:
        items.append(item[0] if isinstance(item, (tuple, list)) else item)
    return items


def require_images(images: list, what: str = "images", minimum: int = 1) -> list:
    if len(images) < minimum:
        raise gr.Error(f"Add at least {minimum} {what} first (drag them in, or pick an example set).")
    if len(images) > MAX_IMAGES:
        raise gr.Error(f"At most {MAX_IMAGES} images per run; received {len(images)}.")
    return images


def load_model(model: str) -> pez.LoadedClip:
    return pez.load_clip(model, device=SERVER.device)


# ---------------------------------------------------------------------------------------------
# Turning reports into UI values

LOSS, BEST = "loss (this step)", "1 − best score"
IMAGE_COLOURS = ["#6366f1", "#ec4899", "#14b8a6", "#f59e0b", "#8b5cf6", "#ef4444", "#22c55e", "#0ea5e9"]
PLOT_COLOURS = {
    LOSS: "#a5b4fc",
    BEST: "#4338ca",
    **{f"image {k + 1}": IMAGE_COLOURS[k % len(IMAGE_COLOURS)] for k in range(MAX_IMAGES)},  # concatenation
}
PLOT_COLUMNS = ["step", "loss", "curve"]


def plot_frame(rows: list[tuple]) -> pd.DataFrame | None:
    """Loss plot data with numeric axes. No rows -> None (an empty frame stops later data from drawing)."""
    if not rows:
        return None
    df = pd.DataFrame(rows, columns=PLOT_COLUMNS)
    return df.astype({"step": "int64", "loss": "float64", "curve": "str"})


def history_plot_rows(history: list[tuple[int, float, float]]) -> list[tuple]:
    """(step, loss, best score) per step -> plot rows, thinned to PLOT_POINTS per series."""
    stride = max(1, math.ceil(len(history) / PLOT_POINTS))
    picked = history[::stride] + ([history[-1]] if history and (len(history) - 1) % stride else [])
    rows = []
    for step, loss, best in picked:
        rows.append((step, loss, LOSS))
        if math.isfinite(best):
            rows.append((step, 1 - best, BEST))
    return rows


def fmt_score(score: float | None) -> str:
    return f"{score:.3f}" if score is not None and math.isfinite(score) else "–"


def status_html(text: str, fraction: float | None = None, state: str = "running") -> str:
    """A progress bar and one line of text; state in idle/running/done/stopped."""
    bar = ""
    if fraction is not None:
        bar = f'<div class="pez-bar"><div style="width:{100 * min(max(fraction, 0), 1):.1f}%"></div></div>'
    return f'<div class="pez-status pez-{state}">{bar}<div class="pez-status-text">{html.escape(text)}</div></div>'


def progress_text(rep: pez.StepReport, prefix: str = "") -> str:
    return (
        f"{prefix}Step {rep.step} / {rep.steps} · {rep.steps_per_sec:.1f} steps/s · "
        f"best score {fmt_score(rep.best_score)} · {rep.elapsed:.1f} s"
    )


def result_text(res: pez.InversionResult, extra: str = "") -> str:
    how = "Stopped" if res.stopped else "Done"
    return (
        f"{how} after {res.steps_run} steps in {res.elapsed:.1f} s "
        f"({res.steps_run / max(res.elapsed, 1e-9):.1f} steps/s) · best score {fmt_score(res.score)} · "
        f"seed {res.seed}{extra}"
    )


def candidate_rows(scored: list[tuple[str, float]]) -> list[list]:
    return [[i + 1, p, round(s, 4)] for i, (p, s) in enumerate(scored)]


def top_seen(seen: dict[str, float], k: int) -> list[tuple[str, float]]:
    return sorted(seen.items(), key=lambda kv: kv[1], reverse=True)[:k]


def new_record(mode: str, model: str, cfg: pez.InvertConfig, **extra) -> dict:
    """What History keeps of one run; also the per-session state Stop reads."""
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
        "settings": {
            "prompt_len": cfg.prompt_len,
            "steps": cfg.steps,
            "candidates": cfg.candidates,
            "seed": cfg.seed,
            "lr": cfg.lr,
            "blocklist": list(cfg.blocklist),
            "words_only": cfg.words_only,
        },
        **extra,
    }


def _finite(x: float | None) -> float | None:
    return round(float(x), 4) if x is not None and math.isfinite(x) else None


# ---------------------------------------------------------------------------------------------
# Inversion handlers (streamed). Each yields: prompt, status, plot, candidates, run record.


def stream_inversion(
    mode: str, model: str, cfg: pez.InvertConfig, start: Callable[[pez.LoadedClip], Iterator], extra: Callable = None
):
    """Drive one PEZ run and turn its reports into UI updates (throttled to UI_INTERVAL)."""
    record = new_record(mode, model, cfg)
    yield gr.skip(), status_html(f"Loading {model}…", 0.0), plot_frame([]), [], record
    clip = load_model(model)
    stream = start(clip)
    rows, seen, last, rep = [(0, math.nan, LOSS), (0, math.nan, BEST)], {}, 0.0, None  # both series from the start
    try:
        for rep in stream:
            if rep.done:
                break
            rows.append((rep.step, rep.loss, LOSS))
            if math.isfinite(rep.best_score):
                rows.append((rep.step, 1 - rep.best_score, BEST))
                seen[rep.best_prompt] = rep.best_score
            if time.monotonic() - last >= UI_INTERVAL:
                last = time.monotonic()
                record = {**record, "prompt": rep.best_prompt, "score": _finite(rep.best_score), "steps_run": rep.step}
                yield (
                    rep.best_prompt,
                    status_html(progress_text(rep), rep.step / rep.steps),
                    plot_frame(rows),
                    candidate_rows(top_seen(seen, cfg.top_k)),
                    record,
                )
    finally:
        stream.close()
    res = rep.result
    record = {
        **record,
        "prompt": res.prompt,
        "score": _finite(res.score),
        "steps_run": res.steps_run,
        "done": True,
        "stopped": res.stopped,
    }
    text = result_text(res, extra(clip, res) if extra else "")
    yield (
        res.prompt or gr.skip(),  # stopped before the first step: keep what is shown
        status_html(text, res.steps_run / max(cfg.steps, 1), "stopped" if res.stopped else "done"),
        plot_frame(history_plot_rows(res.history)),
        candidate_rows([(p.prompt, p.score) for p in res.top_k]),
        record,
    )


def invert_image(image, model, prompt_len, steps, candidates, seed, lr, blocklist, words_only, control=None):
    """Image -> prompt: streams (best prompt, status, loss plot, candidates)."""
    if image is None:
        raise gr.Error("Add an image first: drag one in, paste it, use the webcam or pick an example.")
    cfg = make_config(prompt_len, steps, candidates, seed, lr, blocklist, words_only)
    yield from stream_inversion(
        "image", model, cfg, lambda clip: pez.invert_stream([image], clip, cfg, should_stop=stopper(control))
    )


def invert_multi(images, model, prompt_len, steps, candidates, seed, lr, blocklist, words_only, control=None):
    """Several images -> one prompt for all of them (streamed like invert_image)."""
    paths = require_images(image_paths(images))
    cfg = make_config(prompt_len, steps, candidates, seed, lr, blocklist, words_only)
    yield from stream_inversion(
        "multi", model, cfg, lambda clip: pez.invert_stream(paths, clip, cfg, should_stop=stopper(control))
    )


def find_style(images, model, prompt_len, steps, candidates, seed, lr, blocklist, words_only, control=None):
    """Style images -> a style prompt (one prompt for all of them, streamed)."""
    paths = require_images(image_paths(images), "style images")
    cfg = make_config(prompt_len, steps, candidates, seed, lr, blocklist, words_only)
    yield from stream_inversion(
        "style", model, cfg, lambda clip: pez.invert_stream(paths, clip, cfg, should_stop=stopper(control))
    )


def distill_prompt(text, model, prompt_len, steps, candidates, seed, lr, blocklist, words_only, control=None):
    """A long prompt -> a short one of `prompt_len` tokens; the score is their CLIP text similarity."""
    if not text or not text.strip():
        raise gr.Error("Enter a long prompt to distill.")
    cfg = make_config(prompt_len, steps, candidates, seed, lr, blocklist, words_only)

    def extra(clip, res):
        n = token_count(clip, text)
        return f" · {n} → {cfg.prompt_len} tokens · CLIP text similarity {fmt_score(res.score)}"

    yield from stream_inversion(
        "distill", model, cfg, lambda clip: pez.distill_stream(text, clip, cfg, should_stop=stopper(control)), extra
    )


def token_count(clip: pez.LoadedClip, text: str) -> int:
    row = clip.tokenizer([text])[0].tolist()
    return row.index(clip.eot_id) - 1 if clip.eot_id in row else len(row) - 1


def concatenate(images, model, prompt_len, steps, candidates, seed, lr, blocklist, words_only, control=None):
    """Invert each image on its own, then join the prompts. Streams:
    (joined prompt, status, loss plot, per-image prompts table, run record)."""
    paths = require_images(image_paths(images))
    cfg = make_config(prompt_len, steps, candidates, seed, lr, blocklist, words_only)
    record = new_record("concatenate", model, cfg, images=len(paths))
    yield gr.skip(), status_html(f"Loading {model}…", 0.0), plot_frame([]), [], record
    clip = load_model(model)
    stream = pez.concatenate_stream(paths, clip, cfg, should_stop=stopper(control))
    # One empty point per image up front: the plot fixes its series on the first data it draws.
    rows, last, rep = [(0, math.nan, f"image {k + 1}") for k in range(len(paths))], 0.0, None
    try:
        for rep in stream:
            if rep.done:
                break
            r = rep.report
            rows.append((r.step, r.loss, f"image {rep.index + 1}"))
            if time.monotonic() - last >= UI_INTERVAL:
                last = time.monotonic()
                prompts = rep.prompts + [r.best_prompt]
                joined = pez.join_prompts(prompts)
                record = {**record, "prompt": joined, "steps_run": rep.index * cfg.steps + r.step}
                done_frac = (rep.index + r.step / r.steps) / rep.total
                parts = [[i + 1, p, ""] for i, p in enumerate(rep.prompts)]
                parts.append([rep.index + 1, r.best_prompt, f"running… {fmt_score(r.best_score)}"])
                yield (
                    joined,
                    status_html(progress_text(r, f"Image {rep.index + 1} of {rep.total} · "), done_frac),
                    plot_frame(rows),
                    parts,
                    record,
                )
    finally:
        stream.close()
    res = rep.result
    parts = [[i + 1, p.prompt, fmt_score(p.score)] for i, p in enumerate(res.parts)]
    how = "Stopped" if res.stopped else "Done"
    text = (
        f"{how}: {len(res.parts)} of {len(paths)} images inverted · "
        f"joined prompt score {fmt_score(res.score)} (mean over all images)"
    )
    record = {**record, "prompt": res.prompt, "score": _finite(res.score), "done": True, "stopped": res.stopped}
    yield (
        res.prompt,
        status_html(text, len(res.parts) / len(paths), "stopped" if res.stopped else "done"),
        plot_frame(rows),
        parts,
        record,
    )


def score_prompt(prompt, image, model):
    """Score an (edited) prompt: mean CLIP cosine between the prompt and the target image."""
    if not prompt or not prompt.strip():
        raise gr.Error("The prompt is empty.")
    if image is None:
        raise gr.Error("Add the target image first.")
    clip = load_model(model)
    score = pez.score_texts(clip, [prompt], [image])[0]
    return f"Score of this prompt against the image: **{score:.3f}** (CLIP cosine, `{model}`)"


# ---------------------------------------------------------------------------------------------
# Regeneration


def gen_config(negative_prompt, seed, steps, guidance, num_images) -> pez.GenerateConfig:
    return pez.GenerateConfig(
        negative_prompt=negative_prompt or "",
        seed=_as_int(seed) if seed not in (None, "") else random.randrange(int(GENERATE_BOUNDS["seed"].hi)),
        num_images=_as_int(num_images),
        steps=_as_int(steps),
        guidance=float(guidance),
    )


def run_generation(model: str, prompt: str, cfg: pez.GenerateConfig, targets: list | None, progress=None):
    """One prompt -> GenerationResult, via pez.generate (cached pipeline per pair)."""
    from pez.generate import generate

    if not prompt or not prompt.strip():
        raise gr.Error("The prompt is empty: run a search first or type one.")
    callback = None
    if progress is not None:

        def callback(s):  # pez.generate.GenerationStep -> Gradio progress bar
            progress((s.step, s.total), desc="Generating", unit="steps")

    return generate(model, prompt, cfg, device=SERVER.device, targets=targets or None, callback=callback)


def captioned(result, label: str = "") -> list[tuple[Any, str]]:
    """GenerationResult -> gallery items captioned with similarity (to the targets, else to the
    prompt), seed, and a star on the best of several."""
    items = []
    scores = result.image_scores or result.text_scores
    for i, img in enumerate(result.images):
        parts = [label] if label else []
        if scores:
            parts.append(f"sim {scores[i]:.2f}")
        parts.append(f"seed {result.seeds[i]}")
        if len(result.images) > 1 and result.best == i:
            parts.append("★")
        items.append((img, " · ".join(parts)))
    return items


def generation_summary(results: list, targets: int) -> str:
    seconds = sum(r.seconds for r in results)
    n = sum(len(r.images) for r in results)
    text = f"{n} image{'s' if n != 1 else ''} in {seconds:.1f} s"
    img = [s for r in results for s in (r.image_scores or [])]
    txt = [s for r in results for s in (r.text_scores or [])]
    if targets and img:
        text += f" · mean image similarity to the target{'s' if targets > 1 else ''} **{sum(img) / len(img):.3f}**"
    if txt:
        text += f" · mean prompt similarity {sum(txt) / len(txt):.3f}"
    warnings = [w for r in results for w in (r.warnings or [])]
    if warnings:
        text += "\n\n" + "\n".join(f"⚠️ {w}" for w in dict.fromkeys(warnings))
    return text


def regenerate(prompt, image, model, negative_prompt, seed, steps, guidance, num_images, progress=gr.Progress()):
    """Generate images from the prompt, scored against the target image when there is one."""
    cfg = gen_config(negative_prompt, seed, steps, guidance, num_images)
    targets = [image] if image is not None else None
    res = run_generation(model, prompt, cfg, targets, progress)
    return captioned(res), generation_summary([res], len(targets or []))


def regenerate_multi(prompt, images, model, negative_prompt, seed, steps, guidance, num_images, progress=gr.Progress()):
    """Generate the combined scene from a joined prompt, scored against all the target images."""
    cfg = gen_config(negative_prompt, seed, steps, guidance, num_images)
    targets = image_paths(images) or None
    res = run_generation(model, prompt, cfg, targets, progress)
    return captioned(res), generation_summary([res], len(targets or []))


def styled_prompts(style, subjects, template) -> str:
    """The prompts a style regeneration will use, one per line (cheap; no model)."""
    if not style or not style.strip():
        return ""
    lines = [s for s in (subjects or "").splitlines() if s.strip()]
    try:
        return "\n".join(pez.style_prompts(lines, style, template or pez.STYLE_TEMPLATE))
    except pez.ConfigError as e:
        return f"⚠️ {e}"


def regenerate_style(
    style, subjects, template, model, negative_prompt, seed, steps, guidance, num_images, progress=gr.Progress()
):
    """One or more subjects in the learned style: "{subject} in the style of {style}"."""
    if not style or not style.strip():
        raise gr.Error("Find a style prompt first (or type one).")
    lines = [s for s in (subjects or "").splitlines() if s.strip()]
    if not lines:
        raise gr.Error("Enter at least one subject, one per line.")
    prompts = pez.style_prompts(lines, style, template or pez.STYLE_TEMPLATE)
    cfg = gen_config(negative_prompt, seed, steps, guidance, num_images)
    results, items = [], []
    for subject, prompt in zip(lines, prompts, strict=False):
        res = run_generation(model, prompt, cfg, None, progress)
        results.append(res)
        items += captioned(res, subject.strip())
    return items, generation_summary(results, 0)


def regenerate_distill(
    long_prompt, short_prompt, model, negative_prompt, seed, steps, guidance, num_images, progress=gr.Progress()
):
    """Generate from the long and the short prompt with the same seeds, to compare."""
    cfg = gen_config(negative_prompt, seed, steps, guidance, num_images)
    long_res = run_generation(model, long_prompt, cfg, None, progress)
    short_res = run_generation(model, short_prompt, cfg, None, progress)
    return captioned(long_res, "long"), captioned(short_res, "short"), generation_summary([long_res, short_res], 0)


# ---------------------------------------------------------------------------------------------
# History (kept in the browser)

HISTORY_HEADERS = ["when", "mode", "prompt", "score", "model", "settings"]


def history_upsert(history: list | None, record: dict | None) -> list:
    """Add or update (by run id) one run record, newest first; empty prompts are not kept."""
    history = list(history or [])
    if not record or not record.get("prompt"):
        return history
    keep = {k: v for k, v in record.items() if k != "done"}
    history = [h for h in history if h.get("id") != record.get("id")]
    return ([keep] + history)[:HISTORY_LIMIT]


def history_rows(history: list | None) -> list[list]:
    rows = []
    for h in history or []:
        s = h.get("settings", {})
        steps = (s.get("steps") or 0) * h.get("images", 1)  # concatenation: one run per image
        settings = f"len {s.get('prompt_len')} · {h.get('steps_run')}/{steps} steps · seed {s.get('seed')}"
        if h.get("stopped"):
            settings += " · stopped"
        when = str(h.get("time", "")).replace("T", " ")
        rows.append(
            [when, h.get("mode", ""), h.get("prompt", ""), fmt_score(h.get("score")), h.get("model", ""), settings]
        )
    return rows


def record_run(record, history):
    """After a run ends (or is stopped): keep its best prompt in History."""
    history = history_upsert(history, record)
    return history, history_rows(history)


# Stop. A run polls its tab's control (a per-session dict in gr.State, shared by reference between
# events) and ends gracefully, so its final update keeps the best prompt and all candidates. On
# ZeroGPU a handler runs in another process the flag cannot reach, so Stop cancels the event there.
HARD_STOP = spaces is not None and _env_flag("SPACES_ZERO_GPU")


def new_control() -> dict:
    return {"clicked_at": 0.0, "stop_at": 0.0}


def arm_run(control: dict | None) -> None:
    """Run clicked: remember when, so a Stop pressed after it (even while queued) stops that run."""
    if control is not None:
        control["clicked_at"] = time.monotonic()


def stopper(control: dict | None) -> Callable[[], bool] | None:
    """should_stop for a run that starts now: true once Stop is pressed after its Run click."""
    if control is None:
        return None
    clicked = control.get("clicked_at", 0.0)
    return lambda: control.get("stop_at", 0.0) >= clicked > 0.0


def stop_run(control, record, history):
    """Stop: ask the run to end (it keeps its best prompt); History gets the best so far at once."""
    if control is not None:
        control["stop_at"] = time.monotonic()
    history = history_upsert(history, record)
    status = gr.skip()
    if HARD_STOP and record and record.get("prompt") and not record.get("done"):
        score = fmt_score(record.get("score"))
        status = status_html(
            f"Stopped at step {record.get('steps_run', 0)} — best prompt kept (score {score})", None, "stopped"
        )
    return history, history_rows(history), status


def export_history(history) -> str:
    if not history:
        raise gr.Error("History is empty: run a search first.")
    path = Path(tempfile.mkdtemp(prefix="pez-history-")) / "pez-history.json"
    path.write_text(json.dumps({"app": "pez", "version": pez.__version__, "prompts": history}, indent=2))
    return str(path)


def clear_history():
    return [], [], "", gr.File(None, visible=False)


# ---------------------------------------------------------------------------------------------
# Examples (assets/)


def toy_examples() -> list[str]:
    return sorted(str(p) for p in (ASSETS / "examples").glob("toy_*.png"))


def photo_examples() -> list[str]:
    return sorted(str(p) for p in (ASSETS / "photos").glob("*.jpg"))


def style_examples() -> list[str]:
    return sorted(str(p) for p in (ASSETS / "style").glob("*.png"))


def toy_style_examples() -> list[str]:
    """A toy "style": one colour on several shapes, drawn by the toy world's renderer (held-out
    seeds) into a temporary folder. Empty when the toy world is unavailable."""
    try:
        from pez import toy

        folder = Path(tempfile.mkdtemp(prefix="pez-toy-style-"))
        paths = []
        for i, shape in enumerate(("circle", "square", "star")):
            path = folder / f"green_{shape}.png"
            toy.render("green", shape, seed=toy.EVAL_SEED_BASE + i).save(path)
            paths.append(str(path))
        return paths
    except Exception:  # noqa: BLE001 - examples are optional
        log.warning("toy style examples unavailable", exc_info=True)
        return []


TOY_LONG_PROMPT = (
    "a simple picture of a big bright red star drawn in the middle of a plain grey background, "
    "with nothing else in the picture except that red star"
)
PHOTO_LONG_PROMPT = (
    "a highly detailed photograph of a fluffy orange tabby cat sleeping on a sunny windowsill next to a "
    "steaming cup of coffee, soft morning light, shallow depth of field, warm colours, 35mm film look"
)

# ---------------------------------------------------------------------------------------------
# Layout

CSS = """
.pez-header { display: flex; align-items: baseline; gap: 14px; flex-wrap: wrap; }
.pez-header h1 { margin: 0; font-size: 1.9em; }
.pez-header .pez-tagline { color: var(--body-text-color-subdued); }
.pez-banner { background: #fff7e6; border: 1px solid #f5a524; color: #6b4400; border-radius: 10px;
  padding: 8px 14px; margin: 6px 0; }
.pez-banner b { color: #8a5300; }
.pez-status { padding: 4px 2px; min-height: 34px; }
.pez-bar { height: 8px; border-radius: 5px; background: var(--neutral-200); overflow: hidden; }
.pez-bar > div { height: 100%; border-radius: 5px; background: linear-gradient(90deg, #6366f1, #ec4899);
  transition: width .15s linear; }
.pez-done .pez-bar > div { background: #22c55e; }
.pez-stopped .pez-bar > div { background: #f59e0b; }
.pez-status-text { font-size: .92em; margin-top: 5px; font-variant-numeric: tabular-nums;
  color: var(--body-text-color-subdued); }
.pez-prompt textarea { font-family: var(--font-mono); font-size: 1.02em; }
.pez-pair-info { font-size: .9em; }
.pez-hint { font-size: .88em; color: var(--body-text-color-subdued); }
#image-input img { width: 100%; height: 100%; object-fit: contain; }
footer { display: none !important; }
"""
THEME = gr.themes.Soft(primary_hue="indigo", secondary_hue="pink", neutral_hue="slate")
LAUNCH_KWARGS = {"theme": THEME, "css": CSS}


class TargetImage(gr.Image):
    """gr.Image that hands an uploaded file to pez unopened: pez's loader then reports a bad file
    (not an image, empty, a decompression bomb) clearly, instead of gradio failing on it first.
    Pasted and webcam images (data URLs) are decoded as usual. Same frontend as gr.Image."""

    is_template = True  # gradio: render with the parent's (gr.Image's) frontend

    def preprocess(self, payload):
        if payload is None or (payload.url and payload.url.startswith("data:")) or payload.path is None:
            return super().preprocess(payload)
        return str(payload.path)


@dataclass
class Settings:
    """The shared search settings (one set of components, read by every tab)."""

    model: gr.Dropdown
    prompt_len: gr.Slider
    steps: gr.Slider
    candidates: gr.Slider
    seed: gr.Number
    lr: gr.Number
    blocklist: gr.Textbox
    words_only: gr.Checkbox

    def after_model(self) -> list:
        return [self.steps, self.candidates, self.seed, self.lr, self.blocklist, self.words_only]

    def inputs(self, prompt_len: gr.Slider | None = None) -> list:
        """Handler inputs after the tab's own: model, prompt length, then the rest."""
        return [self.model, prompt_len or self.prompt_len, *self.after_model()]


@dataclass
class GenControls:
    """Regeneration options of one tab."""

    negative: gr.Textbox
    seed: gr.Number
    steps: gr.Slider
    guidance: gr.Slider
    count: gr.Slider

    def inputs(self) -> list:
        return [self.negative, self.seed, self.steps, self.guidance, self.count]


def slider(name: str, label: str, default, bounds=BOUNDS, **kw) -> gr.Slider:
    b = bounds[name]
    return gr.Slider(b.lo, b.hi, value=default, step=b.step, label=label, **kw)


def settings_panel(model_value: str) -> Settings:
    d = pez.InvertConfig()
    with gr.Accordion("⚙️ Settings — model and search (shared by all tabs)", open=False, elem_id="settings"):
        with gr.Row():
            model = gr.Dropdown(
                pair_choices(),
                value=model_value,
                label="Model pair",
                info="or type any open_clip CLIP as ARCH/TAG, e.g. ViT-L-14/openai (search only)",
                allow_custom_value=True,
                scale=3,
                elem_id="model",
            )
            prompt_len = slider("prompt_len", "Prompt length (tokens)", d.prompt_len, scale=2)
            steps = slider("steps", "Steps", d.steps, scale=2, info="little gain after a few hundred")
        info = gr.Markdown(pair_info(model_value), elem_classes="pez-pair-info")
        with gr.Row():
            candidates = slider("candidates", "Restarts (prompts optimised in parallel)", d.candidates)
            seed = gr.Number(
                d.seed, label="Seed (empty: random)", precision=0, minimum=BOUNDS["seed"].lo, maximum=BOUNDS["seed"].hi
            )
            lr = gr.Number(
                d.lr, label="Learning rate", minimum=BOUNDS["lr"].lo, maximum=BOUNDS["lr"].hi, step=BOUNDS["lr"].step
            )
        with gr.Row():
            blocklist = gr.Textbox(
                ", ".join(d.blocklist), label="Blocklist", placeholder="words never to use, e.g. nsfw, text", scale=3
            )
            words_only = gr.Checkbox(d.words_only, label="Readable words only (no sub-word fragments)", scale=2)
    model.change(pair_info, model, info, queue=False, api_visibility="private")
    return Settings(model, prompt_len, steps, candidates, seed, lr, blocklist, words_only)


def gen_controls(model_value: str) -> GenControls:
    g, pair = pez.GenerateConfig(), pez.get_pair(model_value)
    with gr.Accordion("Regeneration options", open=False):
        with gr.Row():
            negative = gr.Textbox(
                g.negative_prompt,
                label="Negative prompt",
                scale=3,
                placeholder="what to avoid (no effect at guidance 0)",
            )
            seed = gr.Number(
                g.seed,
                label="Seed",
                precision=0,
                minimum=GENERATE_BOUNDS["seed"].lo,
                maximum=GENERATE_BOUNDS["seed"].hi,
            )
        with gr.Row():
            steps = slider("steps", "Sampling steps", pair.steps, GENERATE_BOUNDS)
            guidance = slider("guidance", "Guidance", pair.guidance, GENERATE_BOUNDS)
            count = slider("num_images", "Images", g.num_images, GENERATE_BOUNDS)
    return GenControls(negative, seed, steps, guidance, count)


def run_controls(run_label: str, elem: str) -> tuple[gr.Button, gr.Button]:
    with gr.Row():
        run = gr.Button(run_label, variant="primary", scale=3, elem_id=f"{elem}-run")
        stop = gr.Button("■ Stop", variant="stop", scale=1, elem_id=f"{elem}-stop")
    return run, stop


def progress_outputs(prompt_label: str, elem: str) -> tuple:
    status = gr.HTML(status_html("Ready.", None, "idle"), label="Status", elem_id=f"{elem}-status")
    prompt = gr.Textbox(
        label=prompt_label,
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
        color_map=PLOT_COLOURS,
        label="Loss",
        elem_id=f"{elem}-plot",
    )
    return status, prompt, plot


def image_examples(image: gr.Image, model: gr.Dropdown, toys: list[str], photos: list[str]) -> None:
    """Example images; a toy example switches the model to the toy world, a photo switches back."""
    if photos:
        ex = gr.Examples([[p] for p in photos], [image], label="Example photos (real models)", examples_per_page=8)
        ex.dataset.click(
            lambda m: pez.DEFAULT_PAIR if m == "toy" else gr.skip(), model, model, queue=False, api_visibility="private"
        )
    if toys:
        ex = gr.Examples(
            [[p] for p in toys], [image], label="Toy shapes (toy world model, no download)", examples_per_page=12
        )
        ex.dataset.click(lambda: "toy", None, model, queue=False, api_visibility="private")


def text_examples(box: gr.Textbox, model: gr.Dropdown, texts: list[str], toy_texts: list[str]) -> None:
    """Example long prompts; the toy one switches the model to the toy world."""
    if texts:
        ex = gr.Examples([[t] for t in texts], [box], label="Example (real models)")
        ex.dataset.click(
            lambda m: pez.DEFAULT_PAIR if m == "toy" else gr.skip(), model, model, queue=False, api_visibility="private"
        )
    if toy_texts:
        ex = gr.Examples([[t] for t in toy_texts], [box], label="Example (toy world model)")
        ex.dataset.click(lambda: "toy", None, model, queue=False, api_visibility="private")


def example_set(label: str, paths: list[str], gallery: gr.Gallery, model: gr.Dropdown, toy: bool) -> None:
    """A button that fills a gallery with example images (and picks a model that suits them)."""

    def fill(m):
        return paths, ("toy" if toy else (pez.DEFAULT_PAIR if m == "toy" else gr.skip()))

    gr.Button(label, size="sm").click(fill, model, [gallery, model], queue=False, api_visibility="private")


def header(offline_demo: bool) -> None:
    gr.HTML(
        '<div class="pez-header"><h1>🔎 pez</h1><span class="pez-tagline">Images → readable, editable prompts '
        'with PEZ (<a href="https://arxiv.org/abs/2302.03668" target="_blank">Hard Prompts Made Easy</a>). '
        "Watch the prompt improve live, stop when you like it, edit it and regenerate.</span></div>"
    )
    if offline_demo:
        gr.HTML(
            '<div class="pez-banner" id="offline-banner"><b>Offline demo mode</b> — the model is the '
            "<b>toy world</b>: a tiny CLIP trained on coloured shapes, so everything works with no download. "
            "Use the toy example images; prompts will be about colours and shapes. Real models are listed in "
            "Settings and need their weights.</div>"
        )


def build_demo(offline_demo: bool | None = None) -> gr.Blocks:
    """Build the whole app (one Blocks). `offline_demo` defaults to the server setting."""
    if offline_demo is None:
        offline_demo = SERVER.offline_demo
    model_value = "toy" if offline_demo else pez.DEFAULT_PAIR
    gpu = {"concurrency_id": "gpu", "concurrency_limit": SERVER.gpu_concurrency}
    quick = {"queue": False, "api_visibility": "private"}
    toys, photos, styles = toy_examples(), photo_examples(), style_examples()
    toy_styles = toy_style_examples() if toys else []

    with gr.Blocks(title="pez — image to prompt") as demo:
        header(offline_demo)
        history = gr.BrowserState([], storage_key=HISTORY_KEY, secret=HISTORY_SECRET)
        s = settings_panel(model_value)
        all_gens: list[GenControls] = []

        with gr.Tabs(elem_id="tabs") as tabs:
            # 1. Image -> Prompt ----------------------------------------------------------------
            with gr.Tab("Image → Prompt", id="image", elem_id="tab-image"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=2, min_width=300):
                        image = TargetImage(
                            type="filepath",
                            image_mode=None,
                            label="Target image",
                            height=300,
                            sources=["upload", "clipboard", "webcam"],
                            elem_id="image-input",
                        )
                        run, stop = run_controls("▶ Find prompt", "image")
                        image_examples(image, s.model, toys, [] if offline_demo else photos)
                    with gr.Column(scale=3, min_width=360):
                        status, prompt, plot = progress_outputs("Best prompt — edit it freely", "image")
                        with gr.Accordion("Candidates (click one to use it)", open=True):
                            cands = gr.Dataframe(
                                headers=["#", "prompt", "score"],
                                label="Candidates",
                                show_label=False,
                                datatype=["number", "str", "number"],
                                interactive=False,
                                wrap=True,
                                column_widths=["8%", "74%", "18%"],
                                elem_id="image-candidates",
                                max_height=220,
                            )
                with gr.Row(equal_height=False):
                    with gr.Column(scale=2, min_width=300):
                        gr.Markdown("### Regenerate")
                        with gr.Row():
                            regen = gr.Button("🎨 Regenerate", variant="primary", scale=2, elem_id="image-regen")
                            score_btn = gr.Button("Score the edited prompt", scale=1)
                        g1 = gen_controls(model_value)
                        score_md = gr.Markdown(label="Score")
                        gen_md = gr.Markdown(label="Summary")
                    with gr.Column(scale=3, min_width=360):
                        gallery = gr.Gallery(
                            label="Generated — scored against the target",
                            columns=4,
                            height=280,
                            elem_id="image-gallery",
                            fit_columns=False,
                            object_fit="contain",
                        )
                all_gens.append(g1)

            # 2. Multi-image --------------------------------------------------------------------
            with gr.Tab("Multi-image", id="multi", elem_id="tab-multi"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=2, min_width=300):
                        multi_images = gr.Gallery(
                            type="filepath",
                            interactive=True,
                            label="Images (drag several in)",
                            columns=3,
                            height=280,
                            file_types=["image"],
                            elem_id="multi-input",
                        )
                        mode = gr.Radio(
                            [
                                ("One prompt for all images", "all"),
                                ("Concatenate: one prompt per image, joined", "concat"),
                            ],
                            value="all",
                            label="Mode",
                        )
                        with gr.Row():
                            run_all = gr.Button("▶ Find one prompt", variant="primary", scale=3)
                            run_concat = gr.Button("▶ Invert each and join", variant="primary", scale=3, visible=False)
                            stop_multi = gr.Button("■ Stop", variant="stop", scale=1, elem_id="multi-stop")
                        with gr.Row():
                            if photos and not offline_demo:
                                example_set(
                                    "Example: cat + coffee",
                                    [p for p in photos if "cat" in p or "coffee" in p],
                                    multi_images,
                                    s.model,
                                    toy=False,
                                )
                            if len(toys) >= 2:
                                example_set("Example: toy shapes", toys[:3], multi_images, s.model, toy=True)
                    with gr.Column(scale=3, min_width=360):
                        multi_status, multi_prompt, multi_plot = progress_outputs(
                            "Prompt (joined in concatenate mode) — edit it freely", "multi"
                        )
                        multi_table = gr.Dataframe(
                            headers=["image", "prompt", "score"],
                            interactive=False,
                            wrap=True,
                            column_widths=["12%", "68%", "20%"],
                            label="Per image / candidates",
                            elem_id="multi-table",
                            max_height=220,
                        )
                with gr.Row(equal_height=False):
                    with gr.Column(scale=2, min_width=300):
                        gr.Markdown("### Regenerate the combined scene")
                        multi_regen = gr.Button("🎨 Regenerate", variant="primary", elem_id="multi-regen")
                        g2 = gen_controls(model_value)
                        multi_md = gr.Markdown(label="Summary")
                    with gr.Column(scale=3, min_width=360):
                        multi_gallery = gr.Gallery(
                            label="Generated — scored against all images",
                            columns=4,
                            height=280,
                            object_fit="contain",
                            elem_id="multi-gallery",
                            fit_columns=False,
                        )
                all_gens.append(g2)

            # 3. Style transfer -----------------------------------------------------------------
            with gr.Tab("Style transfer", id="style", elem_id="tab-style"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=2, min_width=300):
                        style_images = gr.Gallery(
                            type="filepath",
                            interactive=True,
                            columns=3,
                            height=260,
                            label="Style images (several images of one style)",
                            file_types=["image"],
                            elem_id="style-input",
                        )
                        run_style, stop_style = run_controls("▶ Find style prompt", "style")
                        with gr.Row():
                            if styles and not offline_demo:
                                example_set("Example: stained glass", styles, style_images, s.model, toy=False)
                            if toy_styles:
                                example_set("Example: green toy shapes", toy_styles, style_images, s.model, toy=True)
                    with gr.Column(scale=3, min_width=360):
                        style_status, style_prompt, style_plot = progress_outputs(
                            "Style prompt — edit it freely", "style"
                        )
                        style_cands = gr.Dataframe(
                            headers=["#", "prompt", "score"],
                            interactive=False,
                            wrap=True,
                            column_widths=["8%", "74%", "18%"],
                            label="Candidates",
                            max_height=180,
                        )
                with gr.Row(equal_height=False):
                    with gr.Column(scale=2, min_width=300):
                        gr.Markdown("### Apply the style")
                        with gr.Row():
                            subjects = gr.Textbox(
                                "a circle\na heart" if offline_demo else "a lighthouse on a cliff\na portrait of a fox",
                                label="Subjects (one per line)",
                                lines=2,
                            )
                            template = gr.Textbox(
                                pez.STYLE_TEMPLATE, label="Template", info="{subject} and {style} are filled in"
                            )
                        styled = gr.Textbox(
                            label="Prompts to generate",
                            elem_id="style-styled",
                            lines=2,
                            interactive=False,
                            buttons=["copy"],
                            elem_classes="pez-prompt",
                        )
                        style_regen = gr.Button(
                            "🎨 Regenerate each subject in the style", variant="primary", elem_id="style-regen"
                        )
                        g3 = gen_controls(model_value)
                        style_md = gr.Markdown(label="Summary")
                    with gr.Column(scale=3, min_width=360):
                        style_gallery = gr.Gallery(
                            label="Generated",
                            columns=4,
                            height=320,
                            object_fit="contain",
                            elem_id="style-gallery",
                            fit_columns=False,
                        )
                all_gens.append(g3)

            # 4. Distill ------------------------------------------------------------------------
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
                        short_len = slider("prompt_len", "Short prompt length (tokens)", pez.InvertConfig().prompt_len)
                        run_distill, stop_distill = run_controls("▶ Distill", "distill")
                        text_examples(
                            long_prompt, s.model, [] if offline_demo else [PHOTO_LONG_PROMPT], [TOY_LONG_PROMPT]
                        )
                    with gr.Column(scale=3, min_width=360):
                        distill_status, short_prompt, distill_plot = progress_outputs(
                            "Short prompt — edit it freely", "distill"
                        )
                        distill_cands = gr.Dataframe(
                            headers=["#", "prompt", "similarity"],
                            interactive=False,
                            wrap=True,
                            column_widths=["8%", "74%", "18%"],
                            label="Candidates",
                            max_height=180,
                        )
                with gr.Row(equal_height=False):
                    with gr.Column(scale=2, min_width=300):
                        gr.Markdown("### Compare: regenerate both")
                        distill_regen = gr.Button(
                            "🎨 Regenerate long and short (same seeds)", variant="primary", elem_id="distill-regen"
                        )
                        g4 = gen_controls(model_value)
                        distill_md = gr.Markdown(label="Summary")
                    with gr.Column(scale=3, min_width=360):
                        with gr.Row():
                            long_gallery = gr.Gallery(
                                label="From the long prompt",
                                columns=2,
                                height=260,
                                object_fit="contain",
                                elem_id="distill-long-gallery",
                                fit_columns=False,
                            )
                            short_gallery = gr.Gallery(
                                label="From the short prompt",
                                columns=2,
                                height=260,
                                object_fit="contain",
                                elem_id="distill-short-gallery",
                                fit_columns=False,
                            )
                all_gens.append(g4)

            # 5. History ------------------------------------------------------------------------
            with gr.Tab("History", id="history", elem_id="tab-history"):
                gr.Markdown(
                    "Every prompt you discover is kept **in this browser** (across reloads), newest first, "
                    "with its score and settings. Click a row to copy or reuse it.",
                    elem_classes="pez-hint",
                )
                history_table = gr.Dataframe(
                    headers=HISTORY_HEADERS,
                    interactive=False,
                    wrap=True,
                    column_widths=["13%", "11%", "42%", "7%", "9%", "18%"],
                    elem_id="history-table",
                    max_height=420,
                )
                with gr.Row():
                    picked = gr.Textbox(
                        label="Selected prompt",
                        buttons=["copy"],
                        scale=4,
                        elem_classes="pez-prompt",
                        elem_id="history-picked",
                    )
                    use_btn = gr.Button("Use in Image → Prompt", scale=1, elem_id="history-use")
                with gr.Row():
                    export_btn = gr.Button("⬇ Export JSON", scale=1)
                    clear_btn = gr.Button("🗑 Clear history", variant="stop", scale=1)
                    export_file = gr.File(label="Export", scale=2, visible=False)

        with gr.Accordion("Use it from Python (gradio_client)", open=False):
            gr.Markdown(api_help())

        # ---- events ---------------------------------------------------------------------------
        search = s.inputs()

        def wire_search(buttons, fns, inputs, outputs, api_names, stop_btn):
            """Run button(s) -> streamed search -> History; Stop ends the tab's run."""
            record, control = gr.State(None), gr.State(new_control())
            events = []
            for button, fn, api_name in zip(buttons, fns, api_names, strict=True):
                evt = button.click(arm_run, control, None, **quick).then(
                    fn, [*inputs, control], [*outputs, record], api_name=api_name, show_progress="minimal", **gpu
                )
                evt.then(record_run, [record, history], [history, history_table], **quick)
                events.append(evt)
            stop_btn.click(
                stop_run,
                [control, record, history],
                [history, history_table, outputs[1]],
                cancels=events if HARD_STOP else None,
                **quick,
            )

        image_outputs = [prompt, status, plot, cands]
        wire_search([run], [invert_image], [image, *search], image_outputs, ["invert"], stop)
        cands.select(pick_row, None, prompt, **quick)
        score_btn.click(score_prompt, [prompt, image, s.model], score_md, api_name="score", **gpu)
        regen.click(regenerate, [prompt, image, s.model, *g1.inputs()], [gallery, gen_md], api_name="regenerate", **gpu)

        wire_search(
            [run_all, run_concat],
            [invert_multi, concatenate],
            [multi_images, *search],
            [multi_prompt, multi_status, multi_plot, multi_table],
            ["invert_multi", "concatenate"],
            stop_multi,
        )
        mode.change(
            lambda m: (gr.Button(visible=m == "all"), gr.Button(visible=m == "concat")),
            mode,
            [run_all, run_concat],
            **quick,
        )
        multi_regen.click(
            regenerate_multi,
            [multi_prompt, multi_images, s.model, *g2.inputs()],
            [multi_gallery, multi_md],
            api_name="regenerate_multi",
            **gpu,
        )

        wire_search(
            [run_style],
            [find_style],
            [style_images, *search],
            [style_prompt, style_status, style_plot, style_cands],
            ["style"],
            stop_style,
        )
        style_cands.select(pick_row, None, style_prompt, **quick)
        for box in (style_prompt, subjects, template):
            box.change(styled_prompts, [style_prompt, subjects, template], styled, **quick)
        style_regen.click(
            regenerate_style,
            [style_prompt, subjects, template, s.model, *g3.inputs()],
            [style_gallery, style_md],
            api_name="regenerate_style",
            **gpu,
        )

        wire_search(
            [run_distill],
            [distill_prompt],
            [long_prompt, *s.inputs(short_len)],
            [short_prompt, distill_status, distill_plot, distill_cands],
            ["distill"],
            stop_distill,
        )
        distill_cands.select(pick_row, None, short_prompt, **quick)
        distill_regen.click(
            regenerate_distill,
            [long_prompt, short_prompt, s.model, *g4.inputs()],
            [long_gallery, short_gallery, distill_md],
            api_name="regenerate_distill",
            **gpu,
        )

        # Model pair -> that pair's sampling defaults in every tab.
        gen_defaults = [c for g in all_gens for c in (g.steps, g.guidance)]
        s.model.change(lambda m: pair_gen_defaults(m, len(all_gens)), s.model, gen_defaults, **quick)

        history_table.select(pick_row_prompt, None, picked, **quick)
        use_btn.click(lambda p: (p, gr.Tabs(selected="image")), picked, [prompt, tabs], **quick)
        export_btn.click(lambda h: gr.File(export_history(h), visible=True), history, export_file, **quick)
        clear_btn.click(clear_history, None, [history, history_table, picked, export_file], **quick)
        demo.load(lambda h: history_rows(h), history, history_table, **quick)

    demo.queue(max_size=SERVER.queue_size, default_concurrency_limit=SERVER.gpu_concurrency)
    return demo


def pick_row(evt: gr.SelectData):
    """Candidates table click -> that row's prompt."""
    row = evt.row_value or []
    return row[1] if len(row) > 1 and row[1] else gr.skip()


def pick_row_prompt(evt: gr.SelectData):
    row = evt.row_value or []
    return row[2] if len(row) > 2 else gr.skip()


def pair_gen_defaults(model: str, tabs: int) -> list:
    try:
        p = pez.get_pair(model)
    except pez.ConfigError:
        return [gr.skip()] * (2 * tabs)
    return [gr.Slider(value=p.steps), gr.Slider(value=p.guidance)] * tabs


def api_help() -> str:
    return """
Every tab is a named endpoint. Streaming endpoints yield the prompt as it improves.

```python
from gradio_client import Client, handle_file

client = Client("http://127.0.0.1:7860/")          # or "user/space-name"
job = client.submit(handle_file("cat.jpg"), "sd-turbo", 16, 300, api_name="/invert")
for prompt, status, plot, candidates in job:       # live updates; job.cancel() stops
    print(prompt)
prompt = job.outputs()[-1][0]
images, summary = client.predict(prompt, handle_file("cat.jpg"), "sd-turbo", api_name="/regenerate")
```

Endpoints: `/invert`, `/invert_multi`, `/concatenate`, `/style`, `/distill`, `/score`, `/regenerate`,
`/regenerate_multi`, `/regenerate_style`, `/regenerate_distill`. `client.view_api()` lists every parameter.
"""


# Handlers as the events call them: friendly errors everywhere, ZeroGPU for the ones using a model.
invert_image = gpu_handler(invert_image)
invert_multi = gpu_handler(invert_multi)
find_style = gpu_handler(find_style)
distill_prompt = gpu_handler(distill_prompt)
concatenate = gpu_handler(concatenate)
score_prompt = gpu_handler(score_prompt)
regenerate = gpu_handler(regenerate)
regenerate_multi = gpu_handler(regenerate_multi)
regenerate_style = gpu_handler(regenerate_style)
regenerate_distill = gpu_handler(regenerate_distill)
export_history = friendly_errors(export_history)

if __name__ == "__main__" and "--offline-demo" in sys.argv[1:]:
    SERVER.offline_demo = True  # build the module-level demo once, in the mode asked for
demo = build_demo()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="pez: find readable prompts for images (Gradio app)")
    p.add_argument("--device", default=None, help="auto (default: cuda, then mps, then cpu), cpu, cuda, cuda:1, mps")
    p.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=None, help="port (default 7860 or the next free one)")
    p.add_argument("--share", action="store_true", help="create a public gradio.live link")
    p.add_argument(
        "--offline-demo",
        action="store_true",
        help="use the toy world model by default: works with no download (also PEZ_OFFLINE_DEMO=1)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    global demo
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per HTTP request is noise
    if args.device:
        try:
            pez.resolve_device(args.device)
        except pez.ConfigError as e:
            raise SystemExit(f"app.py: {e}") from e
        SERVER.device = args.device
    if args.offline_demo and not SERVER.offline_demo:
        SERVER.offline_demo = True
        demo = build_demo()
    if SERVER.offline_demo:
        log.info("offline demo mode: default model pair 'toy' (no download)")
    else:
        log.info(
            "default model pair %r: weights download on first use (run with --offline-demo to try "
            "the app with no download)",
            pez.DEFAULT_PAIR,
        )
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, **LAUNCH_KWARGS)


if __name__ == "__main__":
    main()
