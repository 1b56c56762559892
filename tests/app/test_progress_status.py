"""The status line (pez_app.progress) and the time budget setting (pez_app.settings): the phase and
a real rate in every phase, the time left, loading vs downloading, the time the user waited."""

from __future__ import annotations

import math
import threading

import pez
from pez.config import APP_CPU_TIME_BUDGET
from pez_app import downloads, progress, server, settings


def _report(**kw) -> pez.StepReport:
    base = dict(step=40, steps=1000, loss=0.5, current_prompt="a cat", current_score=0.3, best_prompt="a cat",
                best_score=0.31, elapsed=35.2, steps_per_sec=1.1)  # fmt: skip
    return pez.StepReport(**{**base, **kw})


def test_search_status_shows_rate_budget_and_time_left():
    text = progress.progress_text(_report(eta=25.0, time_budget=60.0))
    assert text.startswith("Step 40 / 1000 · 1.1 steps/s") and "35 s of 60 s" in text and "about 25 s left" in text
    assert "about 3 min 05 s left" in progress.progress_text(_report(eta=185.0))
    assert "left" not in progress.progress_text(_report(eta=math.nan))  # not known yet
    first = progress.progress_text(_report(step=0, steps_per_sec=0.0, best_score=-math.inf, eta=60.0))
    assert "starting the search" in first and "0.0 steps/s" not in first


def test_polish_phases_show_their_own_rate():
    refine = progress.progress_text(_report(phase="refine", step=3, steps=1000, steps_per_sec=0.31, eta=9.0))
    assert refine.startswith("Refine round 3 · 0.31 rounds/s") and "steps/s" not in refine and "/ 1000" not in refine
    prune = progress.progress_text(_report(phase="prune", step=2, steps=15, steps_per_sec=1.5, eta=1.0))
    assert prune.startswith("Prune: 2 tokens removed · 1.5 tokens/s")


def test_summary_time_is_the_time_waited(tiny_clip, images):
    res = pez.invert(images[:1], model=tiny_clip, config=pez.InvertConfig(prompt_len=4, steps=20, seed=0))
    text = progress.result_text(res, waited=res.elapsed + 7.0)
    assert f"in {res.elapsed + 7.0:.1f} s (loading 7.0 s, search" in text and "steps/s" in text
    budgeted = pez.invert(
        images[:1], model=tiny_clip, config=pez.InvertConfig(prompt_len=4, steps=10_000, time_budget=1.0, seed=0)
    )
    assert "(time budget: 1 s)" in progress.result_text(budgeted)
    # the walkthrough: the same seed gave three prompts on three pages (the app's CPU default is a
    # time budget): a timed run says it cannot be repeated from its seed; an untimed one does not
    assert "timed run" in progress.result_text(budgeted) and "timed run" not in text


def test_loading_says_downloading_only_while_bytes_move(monkeypatch):
    monkeypatch.setattr(downloads, "POLL_SECONDS", 0.05)
    model, released = object(), threading.Event()
    stream = downloads.load_with_progress(lambda: released.wait(120) and model, "ViT-H-14")
    first = next(stream)  # the load waits until the status has said something: no race with the poll
    released.set()
    out = [first, *stream]
    assert out[-1] is model  # the loaded object comes last
    lines = out[:-1]
    assert lines and all(x.startswith("Loading ViT-H-14 (") for x in lines)  # reading a cache: no bytes


def test_time_budget_is_an_app_setting_with_a_cpu_default():
    assert "time_budget" in settings.FIELDS and "prompt_style" in settings.FIELDS  # issue 22: one style choice
    assert not {"dictionary_words", "words_only", "whole_words"} & set(settings.FIELDS)
    assert settings.FIELDS[-2:] == ("time_budget", "clip_weights")
    assert settings.app_time_budget("cpu") == APP_CPU_TIME_BUDGET > 0
    defaults = settings.app_defaults(server.ServerSettings())
    params = {p.name: p for p in settings.setting_params("toy", defaults)}
    assert params["time_budget"].annotation is float and params["time_budget"].default == settings.app_time_budget()
    cfg = settings.make_config({"time_budget": 45, "prompt_style": "max-score", "steps": 10})
    assert cfg.time_budget == 45.0 and cfg.prompt_style == "max-score"
    assert settings.label("time_budget") == "Time budget (seconds, 0 = none)"


def test_the_order_phase_has_its_own_status():
    """Issue 22/24: the word-order polish showed 'Step 3 / 50' as if the search had restarted."""
    text = progress.progress_text(_report(phase="order", step=3, steps=50, steps_per_sec=2.0, eta=4.0))
    assert text.startswith("Word order: round 3 of 50") and "Step" not in text


def test_early_stop_is_named_even_with_a_time_budget(tiny_clip, images):
    """Issue 24, item 10: 'Done after 229 steps (time budget: 60 s) in 5.2 s' when early stop ended it."""
    cfg = pez.InvertConfig(prompt_len=4, steps=1000, seed=0, patience=5, time_budget=600.0)
    res = pez.invert(images[:1], model=tiny_clip, config=cfg)
    assert res.steps_run < 1000 and res.elapsed < 0.8 * 600
    text = progress.result_text(res)
    assert "(early stop" in text and "(time budget" not in text, text


def _template_regex(name: str):
    """The status template's JS regex assigned to `const <name> = /.../.exec(v)`, as Python's re
    (the patterns use only syntax both share)."""
    import re

    m = re.search(rf"const {name} = /(.+?)/\.exec\(v\)", progress.STATUS_TEMPLATE)
    assert m, f"the status template no longer reads {name!r} from the text"
    return re.compile(m.group(1).replace("\\/", "/"))


def test_the_browser_bar_reads_the_numbers_the_status_text_carries():
    """The bar's fraction is read back from the status text in the browser (gradio's HTML value is
    the API's plain text, so the numbers cannot travel beside it without changing the API): the
    template's patterns must keep matching what progress_text writes."""
    timed = _template_regex("t")
    for eta, left in ((25.0, 25), (185.0, 185)):
        m = timed.search(progress.progress_text(_report(eta=eta, time_budget=300.0)))
        assert m, progress.progress_text(_report(eta=eta, time_budget=300.0))
        assert float(m.group(1)) == 35 and 60 * int(m.group(2) or 0) + int(m.group(3)) == left
    m = timed.search(progress.progress_text(_report(eta=5.0)))  # no budget: "35.2 s · about 5 s left"
    assert m and float(m.group(1)) == 35.2
    steps = _template_regex("s").search(progress.progress_text(_report()))
    assert steps and steps.groups() == ("40", "1000")
