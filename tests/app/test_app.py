"""The Gradio app: handlers with the toy model, the layout's contract, and every named endpoint
called through gradio_client on an in-process server (including a streamed run)."""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import gradio as gr
import pytest

import app
import pez
from pez.config import BOUNDS, GENERATE_BOUNDS
from pez_app import components, history, inputs, pipeline, progress, regenerate, server, settings
from pez_app.guard import DiskBudget

ROOT = Path(__file__).resolve().parents[2]
API_NAMES = {
    "invert",
    "invert_multi",
    "concatenate",
    "style",
    "distill",
    "score",
    "regenerate",
    "regenerate_multi",
    "regenerate_style",
    "regenerate_distill",
}


MODEL = "toy"  # the toy world model (ships in assets/): no download
BASE = app.demo.pez.settings


def endpoints(**changes) -> dict:
    """The handlers of a demo built with the module demo's settings changed by `changes`. By
    default no UI throttle (ui_interval 0): every report of a run is an update, so what a test
    sees never depends on the machine's speed."""
    settings = dataclasses.replace(BASE, **{"ui_interval": 0.0, **changes})
    return app.build_demo(settings, start=app.demo.pez.start).pez.endpoints


EP = endpoints()
# (prompt_len, steps, candidates, seed, lr, blocklist, prompt_style): a few fast steps
FAST = (4, 12, 2, 0, 0.1, "", "readable")


@pytest.fixture(scope="module")
def image_files() -> list[str]:
    toys = components.toy_examples()
    assert len(toys) >= 3, "assets/examples/toy_*.png are missing"
    return toys[:3]


def run(handler, *args, **kwargs):
    """All updates a streaming handler yields; a search's updates get its run record appended
    (the handler keeps it in the tab's control, where History and Stop read it)."""
    if not inspect.isgeneratorfunction(handler):
        return handler(*args, **kwargs)
    control = kwargs.setdefault("control", progress.RunControl())
    return [(*update, control.record) for update in handler(*args, **kwargs)]


def with_records(stream, control):
    for update in stream:
        yield (*update, control.record)


# ---------------------------------------------------------------------------------------------
# Layout contract


def test_demo_is_blocks_with_named_endpoints_on_one_gpu_queue():
    assert isinstance(app.demo, gr.Blocks)
    fns = list(app.demo.fns.values())
    named = {f.api_name: f for f in fns if f.api_visibility == "public"}
    assert API_NAMES <= set(named)
    for name in API_NAMES:  # the optimiser and the generator share one bounded GPU queue
        assert named[name].concurrency_id == "gpu", name
        assert named[name].concurrency_limit == BASE.gpu_concurrency
    assert app.demo._queue.max_size == BASE.queue_size
    streamed = {"invert", "invert_multi", "concatenate", "style", "distill"}
    assert all(inspect.isgeneratorfunction(named[n].fn) for n in streamed)


def test_tabs_hold_only_tabs():
    """Anything but a Tab directly under gr.Tabs (e.g. a gr.State made while wiring a tab) makes
    the browser list tab buttons twice and lose one (seen in Chromium)."""
    tabs = [b for b in app.demo.blocks.values() if isinstance(b, gr.Tabs)]
    assert tabs and all(isinstance(c, gr.Tab) for t in tabs for c in t.children)


def test_history_and_ui_events_stay_off_the_api():
    public = [f for f in app.demo.fns.values() if f.api_visibility == "public"]
    assert {f.api_name for f in public} == API_NAMES  # nothing else (history, UI helpers) is an endpoint
    for f in public:
        assert not any(isinstance(c, gr.JSON) for c in [*f.inputs, *f.outputs])


def _component(demo: gr.Blocks, cls, label: str):
    found = [b for b in demo.blocks.values() if isinstance(b, cls) and getattr(b, "label", None) == label]
    assert found, f"no {cls.__name__} labelled {label!r}"
    return found[0]


def test_settings_defaults_and_bounds_come_from_the_core():
    """Number boxes with the core's defaults; the range (the server's cap where it has one) is in
    the hint, not a gradio bound: a value outside it reaches pez, whose message names the field."""
    d, caps = pez.InvertConfig(), settings.server_caps(BASE.limits)
    for label, name in [
        ("Prompt length (tokens)", "prompt_len"),
        ("Steps", "steps"),
        ("Candidates (restarts in parallel)", "candidates"),
    ]:
        s = _component(app.demo, inputs.SettingNumber, label)
        hi = caps.get(name, BOUNDS[name].hi)
        assert s.value == getattr(d, name) and (s.minimum, s.maximum) == (None, None)
        assert s.info.startswith(f"{int(BOUNDS[name].lo):,} to {int(hi):,}"), s.info
    assert caps == {"steps": BASE.limits.max_steps, "candidates": BASE.limits.max_candidates}
    lr = _component(app.demo, gr.Number, "Learning rate")
    assert lr.value == d.lr and lr.minimum is None
    count = _component(app.demo, inputs.SettingNumber, "Images")
    assert count.info.startswith(f"1 to {int(GENERATE_BOUNDS['num_images'].hi)}")
    assert count.value == pez.GenerateConfig().num_images
    model = _component(app.demo, inputs.ModelDropdown, "Model pair")
    assert [v for _, v in model.choices] == BASE.offered_models() == pez.list_pairs()
    assert model.value == app.demo.pez.start.pair


def test_offline_demo_defaults_to_the_toy_model_and_says_so():
    demo = app.build_demo(offline_demo=True)
    assert _component(demo, gr.Dropdown, "Model pair").value == "toy"
    banners = [b for b in demo.blocks.values() if isinstance(b, gr.HTML) and "Offline demo mode" in str(b.value)]
    assert banners
    steps = _component(demo, gr.Number, "Sampling steps")
    assert steps.value == pez.get_pair("toy").steps  # sampling defaults follow the pair


def test_pair_choices_and_info_say_which_clip_goes_with_which_generator():
    labels = dict((v, k) for k, v in settings.pair_choices(BASE))
    assert list(labels) == pez.list_pairs() and "toy" in labels["toy"].lower()
    info = settings.pair_info("sd-turbo")
    assert "ViT-H-14/laion2b_s32b_b79k" in info and "stabilityai/sd-turbo" in info
    assert labels["flux-schnell"].startswith(pez.get_pair("flux-schnell").label)
    assert "`ViT-L-14/openai` ×0.5 + `ViT-bigG-14/laion2b_s39b_b160k` ×0.5" in settings.pair_info("sdxl")
    assert "T5-XXL" in settings.pair_info("flux-schnell")


def test_a_joint_search_shows_each_clips_score(image_files, monkeypatch):
    """CLIP weights (a setting, text): the status line of a joint search gives each CLIP's score."""
    joint = "random:tiny+random:tiny-wide"
    invert = endpoints(limits=server.Limits(extra_models=(joint,)))["invert"]  # offered by its operator
    params = list(inspect.signature(invert).parameters)
    assert params.index("clip_weights") == params.index("time_budget") + 1  # appended: positions kept
    kwargs = {"prompt_len": 3, "steps": 8, "candidates": 1, "seed": 0, "refine_steps": 1, "clip_weights": "0.4, 0.6"}
    *_, (prompt, status, _, _, record) = run(invert, image_files[0], joint, **kwargs)
    assert prompt and record["settings"]["clip_weights"] == [0.4, 0.6]
    assert "(random:tiny " in status and "×0.4" in status and "random:tiny-wide " in status and "×0.6" in status
    assert settings.make_config({"clip_weights": ""}).clip_weights is None
    assert settings.joint("sdxl") and settings.joint(joint) and not settings.joint("sd-turbo")
    assert settings.weights_box("sd-turbo").visible is False and settings.weights_box("sd-turbo").value == ""
    assert settings.weights_box("sdxl").visible is True
    with pytest.raises(pez.ConfigError, match="clip_weights: expected numbers"):
        settings.make_config({"clip_weights": "half, half"})
    with pytest.raises(gr.Error, match="expected 2 weight"):
        run(invert, image_files[0], joint, **{**kwargs, "clip_weights": "1"})


def test_zero_gpu_decorator_is_a_no_op_without_spaces(monkeypatch):
    monkeypatch.setattr(pipeline, "spaces", None)

    def f(x):
        return x

    assert pipeline.on_gpu(f, 60) is f


def test_cli_flags():
    args = app.parse_args(["--offline-demo", "--device", "cpu", "--port", "7999", "--share"])
    assert args.offline_demo and args.device == "cpu" and args.port == 7999 and args.share
    assert not app.parse_args([]).offline_demo


# ---------------------------------------------------------------------------------------------
# Handlers


def test_invert_image_streams_progress_then_the_best_prompt(image_files):
    updates = run(EP["invert"], image_files[0], MODEL, 4, 40, 2, 0, 0.1, "", "readable")
    assert len(updates) >= 3  # loading, at least one live update, final
    prompt, status, plot, cands, record = updates[-1]
    assert prompt and prompt == record["prompt"] and record["done"] and not record["stopped"]
    assert "Done after 40 steps" in status and "steps/s" in status
    assert set(plot["curve"]) == {progress.LOSS, progress.BEST} and plot["step"].max() >= 40
    assert plot[plot["curve"] == progress.LOSS]["step"].max() == 40  # the polish goes on past it (best score only)
    assert cands[0][1] == prompt and [r[2] for r in cands] == sorted((r[2] for r in cands), reverse=True)
    # No UI throttle in these tests (endpoints(): ui_interval 0): every report is an update, so
    # the search's first report and a live step are there whatever the machine's speed.
    first = next(u[1] for u in updates if u[1].startswith("Step"))
    assert first.startswith("Step 0 / 40 · starting the search")  # the search's first report
    live = next(u for u in updates[1:] if u[4]["steps_run"] > 0)
    assert live[1].startswith(f"Step {live[4]['steps_run']} / 40") and not live[4]["done"]
    steps = [u[4]["steps_run"] for u in updates if u[1].startswith("Step")]
    assert steps == sorted(steps) and steps[0] == 0 and len(set(steps)) >= 3  # every report streamed, in order


def test_the_ui_throttle_drops_updates_by_its_clock_not_the_machines():
    """pipeline.Throttle with a fake clock: one update per interval, the first at once."""
    now = [0]
    t = pipeline.Throttle(3, clock=lambda: now[0])  # whole ticks: no float rounding at the edge
    seen = []
    for i in range(10):
        seen.append(t.ready())
        now[0] += 1
    assert seen == [True, False, False, True, False, False, True, False, False, True]
    assert all(pipeline.Throttle(0.0, clock=lambda: 0.0).ready() for _ in range(3))


def test_run_is_reproducible_with_a_seed_and_reports_a_drawn_one(image_files):
    # No time budget of the user's (the app's default on a CPU is one). The server's limit is the
    # engine's time limit (pipeline.run_budget), a cap: a run well inside it depends on the seed only.
    a = run(EP["invert"], image_files[0], MODEL, *FAST, time_budget=0.0, refine_steps=0)[-1]
    b = run(EP["invert"], image_files[0], MODEL, *FAST, time_budget=0.0, refine_steps=0)[-1]
    assert a[0] == b[0]
    drawn = run(EP["invert"], image_files[0], MODEL, 4, 10, 1, None, 0.1, "", "readable")[-1]
    assert isinstance(drawn[4]["settings"]["seed"], int) and f"seed {drawn[4]['settings']['seed']}" in drawn[1]


def test_closing_the_stream_frees_the_run(image_files, monkeypatch):
    """What Gradio does on Stop or when the tab closes: close the generator after an update. The
    core's run must be closed with it (not left suspended, holding the model slot) after a few
    steps of its 3,000 (the default cap), and the tab's control must say the run is over."""
    import inspect as ins

    runs, real = [], pez.invert_stream

    def recorded(*args, **kwargs):
        runs.append(real(*args, **kwargs))
        return runs[-1]

    monkeypatch.setattr(pez, "invert_stream", recorded)
    control = progress.RunControl()
    progress.arm_run(control)
    stream = EP["invert"](image_files[0], MODEL, 4, 3000, 1, 0, 0.1, "", "readable", control=control)
    next(stream), next(stream)  # loading, then a live update
    assert control.started and len(runs) == 1 and ins.getgeneratorstate(runs[0]) == ins.GEN_SUSPENDED
    stream.close()
    assert ins.getgeneratorstate(runs[0]) == ins.GEN_CLOSED  # the core's run ended too, not left to run 3,000 steps
    assert not control.started and not control.armed and control.record["steps_run"] < 3000


def test_multi_concatenate_style_and_distill(image_files):
    one = run(EP["invert_multi"], [(p, None) for p in image_files[:2]], MODEL, *FAST)[-1]
    assert one[0] and one[4]["mode"] == "multi"

    concat = run(EP["concatenate"], [(p, None) for p in image_files[:2]], MODEL, *FAST)
    joined, status, _, parts, record = concat[-1]
    assert len(parts) == 2 and [p[0] for p in parts] == [1, 2]
    assert joined == pez.join_prompts([p[1] for p in parts]) and record["mode"] == "concatenate"
    assert "2 of 2 images" in status

    found = run(EP["style"], image_files[:2], MODEL, *FAST)[-1]
    styled = regenerate.styled_prompts(found[0], "a fox\n\n a lighthouse ", pez.STYLE_TEMPLATE)
    assert styled.splitlines() == pez.style_prompts(["a fox", "a lighthouse"], found[0])
    assert regenerate.styled_prompts("", "a fox", pez.STYLE_TEMPLATE) == ""
    assert regenerate.styled_prompts("x", "a fox", "no style field").startswith("⚠️")

    short = run(EP["distill"], "a red star on a grey background, simple, centred", MODEL, *FAST)[-1]
    assert short[0] and "CLIP text similarity" in short[1] and "→ 4 tokens" in short[1]


def test_history_keeps_the_distill_length_used_when_it_was_capped():
    """Distilling "red star" (2 tokens) at length 16 runs at 1 token: the record's settings (what
    History's settings column shows) say 1, not 16 (issue 24)."""
    updates = run(EP["distill"], "red star", MODEL, 16, 10, 1, 0, 0.1, "", "readable")
    final = updates[-1][4]
    assert "capped to 1 token" in updates[-1][1] and final["settings"]["prompt_len"] == 1
    assert all(u[4]["settings"]["prompt_len"] == 1 for u in updates if u[4] and u[4].get("steps_run"))
    assert final["settings"]["seed"] == 0  # the other settings stay as asked
    assert "len 1 ·" in history.history_rows([final])[0][5]
    uncapped = run(EP["distill"], "a red star on a grey background", MODEL, 3, 10, 1, 0, 0.1, "", "readable")[-1]
    assert uncapped[4]["settings"]["prompt_len"] == 3


def test_score_prompt(image_files):
    text = EP["score"]("a red circle", image_files[0], MODEL)
    assert "Score of this prompt" in text
    assert "*" not in text and "`" not in text, f"issue 24, item 12: Markdown in the API's text: {text!r}"
    # An empty prompt or no image is the answer, not an error: an error toast per click stacked
    # up ("Error (3)") with a red Error pill over the score (issue 24).
    for _ in range(3):
        assert (
            EP["score"]("   ", image_files[0], MODEL)
            == "Nothing to score: the prompt is empty (find or type one first)."
        )
    assert EP["score"]("a red circle", None, MODEL) == "Nothing to score: add the target image first."
    with pytest.raises(gr.Error):  # a real refusal still is one
        EP["score"]("a red circle", image_files[0], "no-such-model")


@pytest.mark.parametrize(
    "call, expected",
    [
        (lambda f: run(EP["invert"], None, MODEL, *FAST), "Add an image first"),
        (lambda f: run(EP["invert_multi"], [], MODEL, *FAST), "Add at least 1 image first"),
        (lambda f: run(EP["invert"], f, MODEL, 4, 0, 1, 0, 0.1, "", "readable"), "steps"),
        (lambda f: run(EP["distill"], "   ", MODEL, *FAST), "long prompt"),
    ],
)
def test_bad_input_becomes_a_clear_error(call, expected, image_files):
    with pytest.raises(gr.Error) as e:
        call(image_files[0])
    assert expected in e.value.message


def test_not_an_image_is_reported(tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(gr.Error) as e:
        run(EP["invert"], str(bad), MODEL, *FAST)
    assert "not an image" in e.value.message


def test_missing_weights_give_a_clear_message(image_files, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(gr.Error) as e:
        run(EP["invert"], image_files[0], "sd-1.5", *FAST)
    assert e.value.title == "Model weights not available" and "toy" in e.value.message


def test_unexpected_errors_are_logged_and_the_app_keeps_serving(image_files, monkeypatch, caplog):
    def boom(*a, **k):
        raise RuntimeError("kaput")

    monkeypatch.setattr(pez, "invert_stream", boom)
    with pytest.raises(gr.Error) as e:
        run(EP["invert"], image_files[0], MODEL, *FAST)
    assert "Something went wrong (RuntimeError: kaput)" in e.value.message
    assert "unexpected error" in caplog.text


def test_out_of_memory_says_what_to_change(image_files, monkeypatch):
    import torch

    def oom(*a, **k):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(pez, "invert_stream", oom)
    with pytest.raises(gr.Error) as e:
        run(EP["invert"], image_files[0], MODEL, *FAST)
    assert e.value.title == "Out of memory" and "fewer candidates" in e.value.message


# ---------------------------------------------------------------------------------------------
# Regeneration (toy generator)


def test_regenerate_scores_images_against_the_target(image_files):
    items, summary = EP["regenerate"]("a red circle", image_files[0], "toy", "", 3, 1, 0.0, 2)
    assert len(items) == 2 and "seed 3" in items[0][1] and "sim " in items[0][1]
    assert "image similarity to the target" in summary
    assert "*" not in summary, f"issue 24, item 12: Markdown in the API's summary: {summary!r}"
    gallery = [(p, None) for p in image_files]
    items, _ = EP["regenerate_multi"]("a red circle, a blue star", gallery, "toy", "", 0, 1, 0, 1)
    assert len(items) == 1


def test_regenerate_style_and_distill():
    items, _ = EP["regenerate_style"]("green", "a circle\na star", pez.STYLE_TEMPLATE, "toy", "", 0, 1, 0, 1)
    assert [c.split(" · ")[0] for _, c in items] == ["a circle", "a star"]
    long_items, short_items, summary = EP["regenerate_distill"]("a big red star", "red star", "toy", "", 0, 1, 0, 2)
    assert len(long_items) == len(short_items) == 2 and "4 images" in summary
    with pytest.raises(gr.Error):
        EP["regenerate_style"]("", "a circle", pez.STYLE_TEMPLATE, "toy", "", 0, 1, 0, 1)
    with pytest.raises(gr.Error):
        EP["regenerate"]("", None, "toy", "", 0, 1, 0, 1)


# ---------------------------------------------------------------------------------------------
# History


def test_history_rows_and_json_export(tmp_path):
    """The browser keeps History (history.MERGE_JS, tested in tests/e2e/test_browser.py); the
    server turns its list into rows and an export file."""
    cfg = pez.InvertConfig(seed=0)
    rec = {**progress.new_record("image", "toy", cfg), "prompt": "a red circle!", "score": 0.31, "steps_run": 30}
    h = [rec]
    rows = history.history_rows(h)
    assert rows[0][1:5] == ["image", "a red circle!", "0.310", "toy"] and "seed 0" in rows[0][5]
    disk = DiskBudget(tmp_path, 1 << 20, max_files=4, max_age=60)
    data = json.loads(Path(history.export_history(h, disk)).read_text())
    assert data["prompts"][0]["settings"]["prompt_len"] == cfg.prompt_len
    with pytest.raises(gr.Error):
        history.export_history([], disk)
    many = [{**rec, "id": str(i)} for i in range(history.HISTORY_LIMIT + 5)]
    assert len(history.history_rows(many)) == history.HISTORY_LIMIT


def test_stop_ends_the_run_gracefully_keeping_the_best_prompt(image_files):
    control = progress.RunControl()
    assert progress.arm_run(control) == progress.STARTING  # what the Run click shows first (idle server)
    stream = with_records(
        EP["invert"](image_files[0], MODEL, 4, 3000, 2, 0, 0.1, "", "readable", control=control), control
    )
    live = [next(stream), next(stream)]  # loading, then a live update
    while live[-1][4].get("score") is None:  # the search's step-0 report has no score yet
        live.append(next(stream))
    assert live[0][0] == "" and isinstance(live[0][1], str)  # plain values for the API, no update dicts
    assert len(live[0]) == 5  # four API outputs (+ the record this test appends)
    status = pipeline.stop_run(control)  # Stop while running: the run reports itself
    assert status == gr.skip()
    prompt, status, _, cands, record = list(stream)[-1]  # the run ends by itself, at once
    assert record["stopped"] and record["done"] and record["steps_run"] < 3000
    assert prompt == record["prompt"] and record["score"] >= live[-1][4]["score"] and cands
    assert "Stopped after" in status
    assert record["id"] == live[-1][4]["id"]  # one run, one History entry (merged by id)


def test_stop_while_queued_says_so_and_the_run_never_starts(image_files):
    control = progress.RunControl()
    progress.arm_run(control)
    said = pipeline.stop_run(control)  # Stop while still queued
    assert said == progress.STOPPED_BEFORE
    # When the queue reaches the job, it ends at once and says what Stop said: no "Loading…",
    # no "Stopped before the first step" replacing it (issue 24: the message flipped).
    updates = run(EP["invert"], image_files[0], MODEL, 4, 3000, 1, 0, 0.1, "", "readable", control=control)
    assert [u[1] for u in updates] == [said] and control.record is None  # no model loaded, no run
    assert updates[0][0] == gr.skip() and updates[0][2] == gr.skip()  # the last result stays shown
    assert not control.armed and not control.started
    progress.arm_run(control)  # a new Run click is not stopped by the old Stop
    final = run(EP["invert"], image_files[0], MODEL, 4, 10, 1, 0, 0.1, "", "readable", control=control)[-1]
    assert final[4]["steps_run"] == 10 and not final[4]["stopped"]


def test_a_failed_run_leaves_its_error_in_the_status(image_files):
    control = progress.RunControl()
    progress.arm_run(control)
    with pytest.raises(gr.Error):
        run(EP["invert"], image_files[0], "no-such-model", *FAST, control=control)
    status = progress.error_status(control)
    assert status.startswith("⚠ Error:") and "Loading" not in status and "no-such-model" in status


def test_range_errors_name_the_field_and_plurals_read_well(image_files):
    with pytest.raises(gr.Error) as e:
        run(EP["invert"], image_files[0], MODEL, 4, 10, 1, 0, -5, "", "readable")
    assert e.value.message.startswith("Learning rate (lr): expected a value in")
    assert "similar" not in server.tidy_message("model: unknown open_clip architecture 'x'; similar: []")
    assert server.tidy_message("model: unknown 'Vit'; similar: ['ViT-B-32', 'ViT-L-14']").endswith(
        "similar: ViT-B-32, ViT-L-14"
    )
    with pytest.raises(gr.Error) as e:
        run(EP["style"], [], MODEL, *FAST)
    assert "Add at least 1 style image first" in e.value.message


def test_distill_caps_a_short_length_longer_than_the_input():
    """Issue 24, item 8: pez's rule (distill_length) caps the length with a note instead of refusing."""
    updates = run(EP["distill"], "a red star", MODEL, 8, 10, 1, 0, 0.1, "", "readable")
    status = updates[-1][1]
    assert status.startswith("Done") and "capped to 2 tokens" in status and "3 → 2 tokens" in status, status


def test_settings_follow_the_core_fields_and_integers_are_typed_int():
    fields = {f.name for f in __import__("dataclasses").fields(pez.InvertConfig)}
    names = [p for p in inspect.signature(EP["invert"]).parameters]
    assert set(settings.FIELDS) - {"model"} <= fields  # only fields the core has are passed
    assert names[:2] == ["image", "model"] and names[-5:] == [
        "negative_images",
        "text",
        "text_weight",
        "control",
        "request",
    ]
    cfg = settings.make_config({"prompt_len": 4.0, "steps": 10.0, "seed": None, "blocklist": "cat, dog"})
    assert cfg.prompt_len == 4 and isinstance(cfg.seed, int) and cfg.blocklist == ("cat", "dog")
    steps = _component(app.demo, inputs.SettingNumber, "Steps")
    assert steps.api_info()["type"] == "integer"


def test_image_and_text_targets_and_negative_images(image_files):
    updates = run(
        EP["invert"],
        image_files[0],
        MODEL,
        *FAST,
        negative_images=[(image_files[1], None)],
        text="a red circle",
        text_weight=2.0,
    )
    prompt, status, _, _, record = updates[-1]
    assert prompt and "Done" in status and record["mode"] == "image − negatives + text"


def test_the_real_start_up_probe_is_quick_and_falls_back_offline():
    """HF_HUB_OFFLINE=1 (conftest) and nothing cached: the module-level demo starts on the toy world."""
    probe = server.startup_model(offline_demo=False, probe_seconds=BASE.probe_seconds)
    if not probe.fallback:
        pytest.skip("the default pair's weights are cached on this machine")
    assert app.demo.pez.start.pair == "toy" and "HF_HOME" in probe.how_to and probe.missing


def test_the_default_pair_falls_back_to_the_toy_world_when_its_weights_cannot_be_had(monkeypatch):
    from pez.models import Availability

    gone = Availability(
        "sd-turbo",
        False,
        False,
        ("stabilityai/sd-turbo",),
        "the hub is unreachable",
        "run once online, or set HF_HOME to a folder that holds them",
    )
    monkeypatch.setattr(pez.models, "pair_availability", lambda name, timeout: gone)
    start = server.startup_model(offline_demo=False)
    assert start.fallback and start.pair == "toy" and start.missing == ("stabilityai/sd-turbo",)
    demo = app.build_demo(start=start)
    assert _component(demo, gr.Dropdown, "Model pair").value == "toy"
    banner = [b for b in demo.blocks.values() if isinstance(b, gr.HTML) and "cannot run here" in str(b.value)]
    assert banner and "stabilityai/sd-turbo" in banner[0].value and "HF_HOME" in banner[0].value
    ok = Availability("sd-turbo", True, False, ("stabilityai/sd-turbo",))
    monkeypatch.setattr(pez.models, "pair_availability", lambda name, timeout: ok)
    start = server.startup_model(offline_demo=False)
    assert start.pair == "sd-turbo" and start.downloads and not start.fallback


def test_zero_gpu_wrapping_with_the_real_spaces_package():
    """`spaces` is installed (requirements-dev.txt): off Spaces its GPU decorator must leave
    handlers callable and generator handlers streaming (gradio checks that to stream)."""
    spaces = pytest.importorskip("spaces")
    assert server.spaces is spaces
    assert inspect.isgeneratorfunction(EP["invert"])  # wrapped by spaces.GPU at import
    wrapped = spaces.GPU(duration=5)(lambda x: x + 1)
    assert wrapped(1) == 2


# ---------------------------------------------------------------------------------------------
# In-process server + gradio_client: every named endpoint


@pytest.fixture(scope="module")
def client():
    from gradio_client import Client

    demo = app.build_demo()
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **demo.pez.launch_kwargs)
    try:
        client = Client(url, verbose=False)
        client.demo = demo  # its model slots: whether a run still holds the model
        yield client
    finally:
        demo.close()


def test_client_streams_an_inversion_and_calls_every_endpoint(client, image_files):
    from gradio_client import handle_file

    api = client.view_api(return_format="dict", print_info=False)
    assert API_NAMES <= {name.lstrip("/") for name in api["named_endpoints"]}

    img = handle_file(image_files[0])
    settings = dict(model=MODEL, prompt_len=4, steps=40, candidates=1, seed=0)
    job = client.submit(img, **settings, api_name="/invert")
    updates = list(job)  # streamed: one item per yield
    assert len(updates) >= 3
    prompt, status, _plot, cands = job.outputs()[-1]
    assert prompt and "Done after 40 steps" in status and cands["data"][0][1] == prompt

    gallery = [{"image": handle_file(p), "caption": None} for p in image_files[:2]]
    small = dict(model=MODEL, prompt_len=4, steps=10, candidates=1, seed=0)
    assert client.predict(gallery, **small, api_name="/invert_multi")[0]
    joined, status, _, parts = client.predict(gallery, **small, api_name="/concatenate")
    assert joined and len(parts["data"]) == 2
    style = client.predict(gallery, **small, api_name="/style")[0]
    short, status, _, _ = client.predict("a big red star in the middle of a grey picture", **small, api_name="/distill")
    assert short and "similarity" in status
    assert "Score" in client.predict(prompt, img, MODEL, api_name="/score")

    gen = dict(model="toy", num_images=1, seed=0, steps=1, guidance=0)
    images, summary = client.predict(prompt, img, **gen, api_name="/regenerate")
    assert len(images) == 1 and "sim " in images[0]["caption"]
    images, _ = client.predict(joined, gallery, **gen, api_name="/regenerate_multi")
    assert len(images) == 1
    images, _ = client.predict(style, "a circle\na star", pez.STYLE_TEMPLATE, **gen, api_name="/regenerate_style")
    assert len(images) == 2
    long_images, short_images, _ = client.predict("a big red star", short, **gen, api_name="/regenerate_distill")
    assert len(long_images) == len(short_images) == 1


def test_client_cancel_frees_the_gpu_worker(client, image_files):
    """job.cancel() (like closing the tab) ends a long run, so the next one is served at once."""
    import time

    from gradio_client import handle_file

    img = handle_file(image_files[0])
    job = client.submit(img, MODEL, 4, 3000, api_name="/invert")
    deadline = time.monotonic() + 120
    while len(job.outputs()) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(job.outputs()) >= 2, "the long run never started streaming"
    job.cancel()
    slots = client.demo.pez.pipeline.slots
    deadline = time.monotonic() + 120  # liveness only: the cancelled run (3,000 steps, ~15 min here) ends at once
    while slots.active and time.monotonic() < deadline:
        time.sleep(0.1)
    assert slots.active == 0, "the cancelled run still holds the model"
    assert client.predict(img, MODEL, 4, 5, api_name="/invert")[0]  # one GPU slot: it was freed


def test_client_gets_errors_as_messages_and_the_server_keeps_serving(client, image_files):
    from gradio_client import handle_file

    with pytest.raises(Exception) as e:
        client.predict("   ", MODEL, 4, 10, api_name="/distill")
    assert "long prompt" in str(e.value)
    prompt = client.predict(handle_file(image_files[0]), MODEL, 4, 10, api_name="/invert")[0]
    assert prompt


def test_first_use_download_shows_bytes_and_total_in_the_status(image_files, monkeypatch):
    """A weight download (huggingface_hub reports it as a tqdm byte bar) shows in the status
    line as bytes / total while the model loads; then the run goes on as usual. The download
    lasts until the status has shown it (no race with the status line's polling)."""
    import threading

    from huggingface_hub.utils import tqdm as hf_tqdm

    from pez_app import downloads

    demo = app.build_demo(dataclasses.replace(BASE, ui_interval=0.0), start=app.demo.pez.start)
    real, shown_once = demo.pez.pipeline.load_model, threading.Event()

    def downloading(model):
        with hf_tqdm(total=40_000_000, unit="B", desc="open_clip_model.safetensors", disable=False) as bar:
            bar.update(35_000_000)  # under way (a finished bar is not shown)
            assert shown_once.wait(120), "the status never said the download"
            bar.update(5_000_000)
        return real(model)

    monkeypatch.setattr(downloads, "POLL_SECONDS", 0.05)
    demo.pez.pipeline.load_model = downloading  # this demo's only
    control, updates = progress.RunControl(), []
    for update in demo.pez.endpoints["invert"](image_files[0], MODEL, *FAST, control=control):
        updates.append(update)
        if update[1].startswith("Downloading"):
            shown_once.set()
    shown = [u[1] for u in updates if u[1].startswith("Downloading")]
    assert shown and "/ 40.0 MB (open_clip_model.safetensors)" in shown[-1]
    assert "Done after" in updates[-1][1]


# ---------------------------------------------------------------------------------------------
# Server settings and the gradio internals the app reads


def test_server_limits_are_read_from_the_environment_when_the_demo_is_built(monkeypatch):
    monkeypatch.setenv("PEZ_MAX_STEPS", "500")
    monkeypatch.setenv("PEZ_EXTRA_MODELS", "random:tiny, ViT-B-32/openai")
    demo = app.build_demo(offline_demo=True)
    limits = demo.pez.settings.limits
    assert limits.max_steps == 500 and settings.server_caps(limits)["steps"] == 500
    offered = demo.pez.settings.offered_models()
    assert offered[-2:] == ["random:tiny", "ViT-B-32/openai"]
    assert [v for _, v in _component(demo, inputs.ModelDropdown, "Model pair").choices][-2:] == offered[-2:]
    assert _component(demo, inputs.SettingNumber, "Steps").info.startswith("1 to 500")
    assert demo.pez.launch_kwargs["max_file_size"] == "20mb"
    with pytest.raises(gr.Error, match="on this server, received 501"):
        list(demo.pez.endpoints["invert"](components.toy_examples()[0], MODEL, 4, 501))
    # Nothing global changed: the module's demo and a later default build keep their own limits.
    assert BASE.limits.max_steps == server.Limits().max_steps == 3000
    assert "max_file_size" not in components.LAUNCH_KWARGS
    monkeypatch.setenv("PEZ_MAX_STEPS", "lots")
    with pytest.raises(pez.ConfigError, match="PEZ_MAX_STEPS: expected a whole number above 0, received 'lots'"):
        server.ServerSettings.from_env()


@pytest.mark.parametrize(
    "env, named",
    [({"PEZ_GPU_CONCURRENCY": "abc"}, "PEZ_GPU_CONCURRENCY"), ({"PEZ_MAX_RUN_SECONDS": "-1"}, "PEZ_MAX_RUN_SECONDS")],
)
def test_a_mistyped_server_setting_is_one_line_not_a_traceback(env, named):
    """`PEZ_GPU_CONCURRENCY=abc python app.py`: nothing is read at import, so build_or_exit says it."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "app.py"), "--offline-demo"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr[-2000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(f"app.py: {named}: expected") and repr(env[named]) in last


def test_the_panel_and_the_api_defaults_agree_with_the_device_flag():
    """--device cpu (or a CPU Space's defaults): the panel's values and the handlers' API/MCP
    defaults come from the same settings, built with the demo (not at import)."""
    from pez_app.main import parse_args, settings_from

    built = settings_from(parse_args(["--offline-demo", "--device", "cpu"]))
    cpu_space = dataclasses.replace(built, cpu_space=True)  # CPU_SPACE_DEFAULTS: other steps, candidates
    for cfg in (built, cpu_space):
        demo = app.build_demo(cfg)
        api = inspect.signature(demo.pez.endpoints["invert"]).parameters
        for name in ("time_budget", "steps", "candidates", "patience"):
            box = _component(demo, inputs.SettingNumber, settings.label(name))
            assert box.value == api[name].default == settings.app_defaults(cfg)[name], name
        assert api["time_budget"].default == settings.app_time_budget("cpu") > 0
    assert api["steps"].default == server.CPU_SPACE_DEFAULTS["steps"]
    with pytest.raises(pez.ConfigError):
        settings_from(parse_args(["--device", "cuda:99"]))


def test_one_env_flag_parser():
    for value in ("1", "true", "YES", " on "):
        assert server.env_flag("X", False, {"X": value})
    for value in ("0", "false", "no", "off", "t"):
        assert not server.env_flag("X", True, {"X": value})
    assert server.env_flag("X", True, {"X": " "}) and not server.env_flag("X", False, {})
    assert server.ServerSettings.from_env({"PEZ_MCP": "0", "PEZ_CPU_SPACE": "yes"}).cpu_space
    assert not server.ServerSettings.from_env({"PEZ_MCP": "off"}).mcp


def test_the_model_refusal_reads_the_same_for_any_value():
    refused = []
    for model in ["ViT-B-32@/etc/passwd", "local-dir:/root", "random:RN50", "", None, ["toy"]]:
        with pytest.raises(gr.Error) as e:
            BASE.check_model(model)
        refused.append(e.value.message.replace(repr(model), "<model>"))
    assert len(set(refused)) == 1 and "expected one of ['sd-turbo'" in refused[0]
    assert BASE.check_model(" toy ") == "toy"


def test_queue_full_reads_gradios_queue():
    """inputs.queue_full reads gradio internals (Blocks._queue): a real full queue must read full."""
    import threading

    from gradio_client import Client

    started, release = threading.Event(), threading.Event()

    def hold(x):
        started.set()
        release.wait(120)
        return x

    with gr.Blocks() as demo:
        box = gr.Textbox()
        box.submit(hold, box, box, api_name="hold", concurrency_limit=1)
    demo.queue(max_size=1)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True)
    try:
        assert not inputs.queue_full(demo)
        client = Client(url, verbose=False)
        # One at a time: two submitted together can both reach the queue before the first starts,
        # and the second is then refused as queue-full instead of waiting.
        jobs = [client.submit("a", api_name="/hold")]
        assert started.wait(60), "the first job never started"
        assert not inputs.queue_full(demo)  # it runs: the queue is empty again
        jobs.append(client.submit("a", api_name="/hold"))  # it waits: the queue is full
        deadline = time.monotonic() + 60
        while not inputs.queue_full(demo) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert inputs.queue_full(demo)
        release.set()
        assert [j.result(timeout=30) for j in jobs] == ["a", "a"]
        assert not inputs.queue_full(demo)
    finally:
        release.set()
        demo.close()


def test_regeneration_stops_at_the_servers_time_limit():
    """The whole request shares one deadline, whose clock starts once the model is ready."""
    regenerate_style = endpoints(limits=server.Limits(max_run_seconds=1e-6))["regenerate_style"]
    items, summary = regenerate_style("green", "a circle\na star\na heart", pez.STYLE_TEMPLATE, "toy", "", 0, 1, 0, 2)
    assert "Stopped at the server's time limit (1e-06 s)" in summary
    assert len(items) < 6  # not every subject x image was drawn


# ---------------------------------------------------------------------------------------------
# The request pipeline: one clock, one admission step


def test_the_servers_limit_is_the_engines_time_limit_and_the_users_budget_stays_a_plan():
    cfg, limited = pipeline.run_budget(pez.InvertConfig(time_budget=0.0), 300.0)
    assert (cfg.time_budget, cfg.time_limit) == (0.0, 300.0) and limited  # no budget: planned in steps, capped
    cfg, limited = pipeline.run_budget(pez.InvertConfig(time_budget=60.0), 300.0)
    assert (cfg.time_budget, cfg.time_limit) == (60.0, 300.0) and not limited
    cfg, limited = pipeline.run_budget(pez.InvertConfig(time_budget=600.0), 90.0, searches=3)
    assert (cfg.time_budget, cfg.time_limit) == (200.0, 30.0) and limited  # concatenate: split across its images


def test_the_servers_limit_ends_a_run_with_its_polish_not_like_stop(image_files):
    """The limit is the engine's time limit: the run ends at it as planned (search, then polish),
    "Done", its record not stopped; the status says the limit ended it."""
    ep = endpoints(limits=server.Limits(max_run_seconds=3.0))
    control = progress.RunControl()
    kwargs = dict(patience=0, time_budget=0.0, control=control)
    *_, (prompt, status, _, _) = ep["invert"](image_files[0], MODEL, 4, 3000, 1, 0, **kwargs)
    record = control.record
    assert prompt == record["prompt"] and record["done"] and not record["stopped"] and record["steps_run"] < 3000
    assert status.startswith("Done after") and "(ended at the server's time limit (3 s))" in status, status
    assert "polish" in status, status  # the planner left the polish its share
    assert record["settings"]["time_budget"] == 0.0  # History keeps what the user asked for


def test_concatenate_shares_the_runs_budget_across_its_images(image_files):
    ep = endpoints(limits=server.Limits(max_run_seconds=4.0))
    control = progress.RunControl()
    gallery = [(p, None) for p in image_files[:2]]
    updates = list(ep["concatenate"](gallery, MODEL, 4, 3000, 1, 0, patience=0, time_budget=0.0, control=control))
    joined, status, _, parts = updates[-1]
    assert len(parts) == 2 and control.record["done"] and not control.record["stopped"]
    assert "2 of 2 images" in status and "ended at the server's time limit (4 s)" in status
    images = [u[1] for u in updates if u[1].startswith("Image ")]
    assert "s of 2 s" in images[0] and "s of 2 s" in images[-1]  # each image's share of the 4 s
    assert images[0].startswith("Image 1 of 2") and images[-1].startswith("Image 2 of 2")


class RecordingGate:
    """A gate that refuses concatenations of more than one image and counts its tickets."""

    def __init__(self):
        self.admitted: list[pipeline.Admission] = []
        self.released = 0

    def admit(self, request: pipeline.Admission):
        if request.endpoint == "concatenate" and request.images > 1:
            raise server.user_error("one image at a time on this test server")
        self.admitted.append(request)
        return self

    def release(self) -> None:
        self.released += 1


def test_every_request_passes_the_gate_and_releases_its_ticket(image_files):
    gate = RecordingGate()
    demo = app.build_demo(dataclasses.replace(BASE, ui_interval=0.0), start=app.demo.pez.start, gate=gate)
    ep = demo.pez.endpoints
    list(ep["invert"](image_files[0], MODEL, *FAST))
    list(ep["invert_multi"]([(p, None) for p in image_files[:2]], MODEL, *FAST))
    list(ep["distill"]("a red star on a grey background, simple, centred", MODEL, *FAST))
    ep["regenerate"]("a red circle", image_files[0], "toy", "", 0, 1, 0, 1)
    ep["score"]("a red circle", image_files[0], MODEL)
    with pytest.raises(gr.Error, match="one image at a time"):  # refused: nothing loaded or run
        list(ep["concatenate"]([(p, None) for p in image_files[:2]], MODEL, *FAST))
    with pytest.raises(gr.Error, match="at least 2 tokens"):  # admitted, then failed: released all the same
        list(ep["distill"]("red", MODEL, 8, 10, 1, 0))
    with pytest.raises(gr.Error, match="Add an image first"):  # a bad input never reaches the gate
        list(ep["invert"](None, MODEL, *FAST))
    kinds = [(a.endpoint, a.kind, a.images) for a in gate.admitted]
    assert kinds == [
        ("invert", "search", 1),
        ("invert_multi", "search", 2),
        ("distill", "search", 0),
        ("regenerate", "regenerate", 1),
        ("score", "score", 1),
        ("distill", "search", 0),
    ]
    assert gate.released == len(gate.admitted)
    assert all(a.model == MODEL and a.session is None and not a.mcp for a in gate.admitted)
    assert gate.admitted[0].seconds == BASE.limits.max_run_seconds


def test_build_demo_leaves_no_state_in_module_globals():
    """Two demos with different settings in one process: each keeps its own."""
    small = app.build_demo(
        dataclasses.replace(BASE, limits=server.Limits(max_steps=7, max_file_mb=3)), start=app.demo.pez.start
    )
    assert small.pez.settings.limits.max_steps == 7 and small.pez.launch_kwargs["max_file_size"] == "3mb"
    assert app.demo.pez.settings.limits.max_steps == 3000 and app.demo.pez.launch_kwargs["max_file_size"] == "20mb"
    assert _component(small, inputs.SettingNumber, "Steps").info.startswith("1 to 7")
    assert _component(app.demo, inputs.SettingNumber, "Steps").info.startswith("1 to 3,000")
    image = _component(small, inputs.TargetImage, "Target image")
    assert (
        image.data_model.max_mb == 3
        and _component(app.demo, inputs.TargetImage, "Target image").data_model.max_mb == 20
    )
    assert not hasattr(small, "pez_start") and "max_file_size" not in components.LAUNCH_KWARGS


# ---------------------------------------------------------------------------------------------
# Issue 24 (the app's items) and issue 23 item 6 (share links replay no History write)


@pytest.mark.parametrize("steps", [-5, 100000])
def test_steps_out_of_range_get_one_message_with_the_servers_range(steps):
    """Issue 24, item 4: -5 said '[1, 10000]', 100000 said '[1, 3000] on this server'."""
    with pytest.raises(gr.Error) as e:
        list(EP["invert"](components.toy_examples()[0], MODEL, 4, steps))
    assert f"expected a value in [1, 3000] on this server, received {steps}" in e.value.message
    assert _component(app.demo, inputs.SettingNumber, "Steps").info.startswith("1 to 3,000")


def test_prompt_style_is_a_choice_in_the_panel_and_a_string_in_the_api():
    radio = next(
        b for b in app.demo.blocks.values() if isinstance(b, gr.Radio) and b.label == settings.label("prompt_style")
    )
    assert [v for _, v in radio.choices] == ["readable", "max-score", "custom"] and radio.value == "readable"
    assert inspect.signature(EP["invert"]).parameters["prompt_style"].annotation is str


def test_history_logs_a_negative_prompt_search_as_negative():
    """Issue 24, item 11: History logged negative-prompt searches as mode 'image'."""
    control = progress.RunControl(record={"id": "x", "mode": "image", "prompt": "red"})
    assert history.record_of(control)["mode"] == "image"
    control.goal = "negative"
    assert history.record_of(control)["mode"] == "negative"


def test_a_negative_prompt_at_guidance_0_says_it_does_nothing():
    """Issue 24, item 9: the negative prompt found landed in its box with no word that sd-turbo's
    guidance 0 ignores it."""
    from pez_app.tabs import image

    control = progress.RunControl()
    control.goal = "negative"
    box, prompt = image.negative_found(control, "blue square", "kept", 0.0)
    assert box.value == "blue square" and "no effect" in box.info and prompt == "kept"
    box, _ = image.negative_found(control, "blue square", "kept", 5.0)
    assert not box.info


def test_a_run_keeps_the_mode_it_started_with():
    """Walkthrough: switching Find mode to "a negative prompt" during an image run moved that run's
    prompt into the negative box while History logged it as "image". The mode is the Run click's."""
    from pez_app.tabs import image

    control = progress.RunControl()
    control.goal = "image"  # the run started as an image search; the radio says "negative" now
    box, prompt = image.negative_found(control, "blue square", "kept", 5.0)
    assert not isinstance(box, gr.Textbox) and not isinstance(prompt, str)  # both left as they are
    # ... and the event reads the run's control, never the mode radio's value at the end of the run
    found = [f for f in app.demo.fns.values() if getattr(f.fn, "__name__", "") == "negative_found"]
    assert found and all(
        not isinstance(c, gr.Radio) and getattr(c, "elem_id", None) != "image-goal" for f in found for c in f.inputs
    )


def test_no_history_write_takes_records_from_a_component():
    """Issue 23, item 6: Undo clear merged the records of a hidden component into the browser's
    History, and a share link replays component values. Every event that writes the stored list
    takes, at most, the run record a handler just wrote (HistoryStore.pending)."""
    cfg = app.demo.config
    store_id = next(c["id"] for c in cfg["components"] if c["props"].get("elem_id") == "history-store")
    writers = [d for d in cfg["dependencies"] if "localStorage.setItem" in (d.get("js") or "")]
    assert writers and all(store_id in d["outputs"] for d in writers)
    pending = {i for d in writers for i in d["inputs"]}
    assert len(pending) <= 1, "a History write takes records from more than one component"
    for d in cfg["dependencies"]:  # that one component is written only by the server's record_of
        if pending & set(d["outputs"]):
            assert d["backend_fn"], "a browser-side event writes the records History merges"


def test_the_toy_note_fires_for_photos_not_for_large_toy_like_pictures(tmp_path):
    """Issue 24, item 5: the note fired on any image over 96 px (a 256 px red circle) and told an
    offline user to pick a real model."""
    from PIL import Image, ImageDraw

    circle = tmp_path / "red_circle.png"
    img = Image.new("RGB", (256, 256), (128, 128, 128))
    ImageDraw.Draw(img).ellipse((40, 40, 216, 216), fill=(220, 30, 30))
    img.save(circle)
    assert components.toy_note("toy", [str(circle)]) == ""
    assert all(components.toy_note("toy", [p]) == "" for p in components.toy_examples())
    photo = components.toy_note("toy", components.photo_examples()[:1])
    assert "only coloured shapes" in photo and "choose a real model" not in photo


def _series(plot) -> dict[str, list[tuple[int, float]]]:
    frame = plot.value if hasattr(plot, "value") else plot
    data = frame["data"] if isinstance(frame, dict) else frame.values.tolist()
    cols = frame["columns"] if isinstance(frame, dict) else list(frame.columns)
    out: dict = {}
    for row in data:
        rec = dict(zip(cols, row))
        if rec["loss"] is not None and rec["loss"] == rec["loss"]:
            out.setdefault(rec["curve"], []).append((rec["step"], rec["loss"]))
    return out


def test_concatenate_plots_one_monotonic_series_per_image(image_files):
    """Issue 24, item 3: each image's series ran steps 0…220 then 1…16 again (refine rounds
    appended), and no line the caption describes was drawn."""
    kw = dict(prompt_len=4, steps=30, candidates=1, seed=0, patience=0, refine_steps=5, time_budget=0.0)
    *_, (prompt, status, plot, parts, record) = run(EP["concatenate"], image_files[:2], MODEL, **kw)
    series = _series(plot)
    assert set(series) == {"image 1", "image 2"}, series.keys()
    for name, points in series.items():
        xs = [x for x, _ in points]
        assert xs == sorted(xs), f"{name}: x goes back ({xs[:5]}…{xs[-8:]})"
        ys = [y for _, y in points]
        assert all(b <= a + 1e-9 for a, b in zip(ys, ys[1:])), f"{name}: 1 − best score rises"
    assert "one line per image" in progress.PLOT_NOTE


def test_the_plotted_line_ends_at_the_final_score(image_files):
    """Issue 24, item 3: the status said 0.716 (after refinement), the plotted line ended at 0.405."""
    kw = dict(prompt_len=4, steps=40, candidates=1, seed=0, patience=0, refine_steps=10, time_budget=0.0)
    *_, (prompt, status, plot, cands, record) = run(EP["invert"], image_files[1], MODEL, **kw)
    best = _series(plot)[progress.BEST]
    assert abs(best[-1][1] - (1 - record["score"])) < 1e-3, (best[-3:], status)
    assert [x for x, _ in best] == sorted(x for x, _ in best)


def test_the_model_list_says_what_can_run_here_and_run_refuses_briefly(monkeypatch):
    """Issue 24, item 7: the dropdown did not say which pairs can run here; SD-Turbo offline failed
    on Run with a long paragraph (CLI advice included)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # as a machine without the weights and without network
    settings._availability.clear()
    labels = dict((v, k) for k, v in settings.pair_choices(BASE))
    if not pez.models.pair_availability("sd-turbo", timeout=0.1).cached:
        assert labels["sd-turbo"].endswith("not available here") and labels["toy"] == pez.get_pair("toy").label
        with pytest.raises(gr.Error) as e:
            list(EP["invert"](components.toy_examples()[0], "sd-turbo", 4, 5))
        msg = e.value.message
        assert "not available here" in msg and len(msg) < 200 and "ARCH@" not in msg and "run once" not in msg
    settings._availability.clear()


def test_style_on_the_toy_model_says_it_has_no_style_effect():
    """Issue 24, polish: style transfer on the toy model showed no effect and said nothing."""
    from pez_app.tabs import style

    job = style._find_style(components.toy_examples()[:2], model="toy", config=pez.InvertConfig())
    assert "no effect" in job.note(None, None)


def test_a_short_budget_says_it_was_too_short(image_files):
    """Issue 24, item 2: the app at a 2 s budget said 'Done after 2 steps … best score 0.464' and
    nothing more. (A budget of 0.05 s ends the toy search long before pez's 20-step minimum.)"""
    kw = dict(prompt_len=4, steps=1000, candidates=1, seed=0, patience=0, time_budget=0.05)
    *_, (prompt, status, *_rest) = run(EP["invert"], image_files[0], MODEL, **kw)
    assert "too short" in status, status
