"""The Gradio app: handlers with the toy model, the layout's contract, and every named endpoint
called through gradio_client on an in-process server (including a streamed run)."""

from __future__ import annotations

import inspect
import json
import time
from pathlib import Path

import gradio as gr
import pytest

import app
import pez
from pez.config import BOUNDS, GENERATE_BOUNDS
from pez_app import components, history, inputs, progress, regenerate, server, settings
from pez_app.tabs import distill, image, multi, style

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
# (prompt_len, steps, candidates, seed, lr, blocklist, words_only): a few fast steps
FAST = (4, 12, 2, 0, 0.1, "", False)


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
        assert named[name].concurrency_limit == server.SERVER.gpu_concurrency
    assert app.demo._queue.max_size == server.SERVER.queue_size
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
    d, caps = pez.InvertConfig(), settings.server_caps()
    for label, name in [
        ("Prompt length (tokens)", "prompt_len"),
        ("Steps", "steps"),
        ("Candidates (restarts in parallel)", "candidates"),
    ]:
        s = _component(app.demo, inputs.SettingNumber, label)
        hi = caps.get(name, BOUNDS[name].hi)
        assert s.value == getattr(d, name) and (s.minimum, s.maximum) == (None, None)
        assert s.info.startswith(f"{int(BOUNDS[name].lo):,} to {int(hi):,}"), s.info
    assert caps == {"steps": server.SERVER.limits.max_steps, "candidates": server.SERVER.limits.max_candidates}
    lr = _component(app.demo, gr.Number, "Learning rate")
    assert lr.value == d.lr and lr.minimum is None
    count = _component(app.demo, inputs.SettingNumber, "Images")
    assert count.info.startswith(f"1 to {int(GENERATE_BOUNDS['num_images'].hi)}")
    assert count.value == pez.GenerateConfig().num_images
    model = _component(app.demo, inputs.ModelDropdown, "Model pair")
    assert [v for _, v in model.choices] == server.offered_models() == pez.list_pairs()
    assert model.value == app.demo.pez_start.pair


def test_offline_demo_defaults_to_the_toy_model_and_says_so():
    demo = app.build_demo(offline_demo=True)
    assert _component(demo, gr.Dropdown, "Model pair").value == "toy"
    banners = [b for b in demo.blocks.values() if isinstance(b, gr.HTML) and "Offline demo mode" in str(b.value)]
    assert banners
    steps = _component(demo, gr.Number, "Sampling steps")
    assert steps.value == pez.get_pair("toy").steps  # sampling defaults follow the pair


def test_pair_choices_and_info_say_which_clip_goes_with_which_generator():
    labels = dict((v, k) for k, v in settings.pair_choices())
    assert list(labels) == pez.list_pairs() and "toy" in labels["toy"].lower()
    info = settings.pair_info("sd-turbo")
    assert "ViT-H-14/laion2b_s32b_b79k" in info and "stabilityai/sd-turbo" in info
    assert labels["flux-schnell"] == pez.get_pair("flux-schnell").label
    assert "`ViT-L-14/openai` ×0.5 + `ViT-bigG-14/laion2b_s39b_b160k` ×0.5" in settings.pair_info("sdxl")
    assert "T5-XXL" in settings.pair_info("flux-schnell")


def test_a_joint_search_shows_each_clips_score(image_files, monkeypatch):
    """CLIP weights (a setting, text): the status line of a joint search gives each CLIP's score."""
    joint = "random:tiny+random:tiny-wide"
    monkeypatch.setattr(server.SERVER, "limits", server.Limits(extra_models=(joint,)))  # offered by its operator
    params = list(inspect.signature(image.invert_image).parameters)
    assert params.index("clip_weights") == params.index("time_budget") + 1  # appended: positions kept
    kwargs = {"prompt_len": 3, "steps": 8, "candidates": 1, "seed": 0, "refine_steps": 1, "clip_weights": "0.4, 0.6"}
    *_, (prompt, status, _, _, record) = run(image.invert_image, image_files[0], joint, **kwargs)
    assert prompt and record["settings"]["clip_weights"] == [0.4, 0.6]
    assert "(random:tiny " in status and "×0.4" in status and "random:tiny-wide " in status and "×0.6" in status
    assert settings.make_config({"clip_weights": ""}).clip_weights is None
    assert settings.joint("sdxl") and settings.joint(joint) and not settings.joint("sd-turbo")
    assert settings.weights_box("sd-turbo").visible is False and settings.weights_box("sd-turbo").value == ""
    assert settings.weights_box("sdxl").visible is True
    with pytest.raises(pez.ConfigError, match="clip_weights: expected numbers"):
        settings.make_config({"clip_weights": "half, half"})
    with pytest.raises(gr.Error, match="expected 2 weight"):
        run(image.invert_image, image_files[0], joint, **{**kwargs, "clip_weights": "1"})


def test_zero_gpu_decorator_is_a_no_op_without_spaces(monkeypatch):
    monkeypatch.setattr(server, "spaces", None)

    def f(x):
        return x

    assert server.on_gpu(f) is f



def test_cli_flags():
    args = app.parse_args(["--offline-demo", "--device", "cpu", "--port", "7999", "--share"])
    assert args.offline_demo and args.device == "cpu" and args.port == 7999 and args.share
    assert not app.parse_args([]).offline_demo


# ---------------------------------------------------------------------------------------------
# Handlers


def test_invert_image_streams_progress_then_the_best_prompt(image_files):
    updates = run(image.invert_image, image_files[0], MODEL, 4, 40, 2, 0, 0.1, "", False)
    assert len(updates) >= 3  # loading, at least one live update, final
    prompt, status, plot, cands, record = updates[-1]
    assert prompt and prompt == record["prompt"] and record["done"] and not record["stopped"]
    assert "Done after 40 steps" in status and "steps/s" in status
    assert set(plot["curve"]) == {progress.LOSS, progress.BEST} and plot["step"].max() == 40
    assert cands[0][1] == prompt and [r[2] for r in cands] == sorted((r[2] for r in cands), reverse=True)
    first = next(u[1] for u in updates if u[1].startswith("Step"))
    assert first.startswith("Step 0 / 40 · starting the search")  # the search's first report
    live = next(u for u in updates[1:] if u[4]["steps_run"] > 0)
    assert "Step" in live[1] and not live[4]["done"]


def test_run_is_reproducible_with_a_seed_and_reports_a_drawn_one(image_files):
    # No time budget (the app's default on a CPU is one): a budgeted run depends on timing, not only the seed.
    a = run(image.invert_image, image_files[0], MODEL, *FAST, time_budget=0.0)[-1]
    b = run(image.invert_image, image_files[0], MODEL, *FAST, time_budget=0.0)[-1]
    assert a[0] == b[0]
    drawn = run(image.invert_image, image_files[0], MODEL, 4, 10, 1, None, 0.1, "", False)[-1]
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
    stream = image.invert_image(image_files[0], MODEL, 4, 3000, 1, 0, 0.1, "", False, control=control)
    next(stream), next(stream)  # loading, then a live update
    assert control.started and len(runs) == 1 and ins.getgeneratorstate(runs[0]) == ins.GEN_SUSPENDED
    start = time.monotonic()
    stream.close()
    assert time.monotonic() - start < 5  # promptly, not 3,000 steps
    assert ins.getgeneratorstate(runs[0]) == ins.GEN_CLOSED  # the core's run ended too
    assert not control.started and not control.armed and control.record["steps_run"] < 3000


def test_multi_concatenate_style_and_distill(image_files):
    one = run(multi.invert_multi, [(p, None) for p in image_files[:2]], MODEL, *FAST)[-1]
    assert one[0] and one[4]["mode"] == "multi"

    concat = run(multi.concatenate, [(p, None) for p in image_files[:2]], MODEL, *FAST)
    joined, status, _, parts, record = concat[-1]
    assert len(parts) == 2 and [p[0] for p in parts] == [1, 2]
    assert joined == pez.join_prompts([p[1] for p in parts]) and record["mode"] == "concatenate"
    assert "2 of 2 images" in status

    found = run(style.find_style, image_files[:2], MODEL, *FAST)[-1]
    styled = regenerate.styled_prompts(found[0], "a fox\n\n a lighthouse ", pez.STYLE_TEMPLATE)
    assert styled.splitlines() == pez.style_prompts(["a fox", "a lighthouse"], found[0])
    assert regenerate.styled_prompts("", "a fox", pez.STYLE_TEMPLATE) == ""
    assert regenerate.styled_prompts("x", "a fox", "no style field").startswith("⚠️")

    short = run(distill.distill_prompt, "a red star on a grey background, simple, centred", MODEL, *FAST)[-1]
    assert short[0] and "CLIP text similarity" in short[1] and "→ 4 tokens" in short[1]


def test_score_prompt(image_files):
    text = image.score_prompt("a red circle", image_files[0], MODEL)
    assert "Score of this prompt" in text
    with pytest.raises(gr.Error):
        image.score_prompt("   ", image_files[0], MODEL)


@pytest.mark.parametrize(
    "call, expected",
    [
        (lambda f: run(image.invert_image, None, MODEL, *FAST), "Add an image first"),
        (lambda f: run(multi.invert_multi, [], MODEL, *FAST), "Add at least 1 image first"),
        (lambda f: run(image.invert_image, f, MODEL, 4, 0, 1, 0, 0.1, "", False), "steps"),
        (lambda f: run(distill.distill_prompt, "   ", MODEL, *FAST), "long prompt"),
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
        run(image.invert_image, str(bad), MODEL, *FAST)
    assert "not an image" in e.value.message


def test_missing_weights_give_a_clear_message(image_files, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(gr.Error) as e:
        run(image.invert_image, image_files[0], "sd-1.5", *FAST)
    assert e.value.title == "Model weights not available" and "toy" in e.value.message


def test_unexpected_errors_are_logged_and_the_app_keeps_serving(image_files, monkeypatch, caplog):
    def boom(*a, **k):
        raise RuntimeError("kaput")

    monkeypatch.setattr(pez, "invert_stream", boom)
    with pytest.raises(gr.Error) as e:
        run(image.invert_image, image_files[0], MODEL, *FAST)
    assert "Something went wrong (RuntimeError: kaput)" in e.value.message
    assert "unexpected error" in caplog.text


def test_out_of_memory_says_what_to_change(image_files, monkeypatch):
    import torch

    def oom(*a, **k):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(pez, "invert_stream", oom)
    with pytest.raises(gr.Error) as e:
        run(image.invert_image, image_files[0], MODEL, *FAST)
    assert e.value.title == "Out of memory" and "fewer candidates" in e.value.message


# ---------------------------------------------------------------------------------------------
# Regeneration (toy generator)


def test_regenerate_scores_images_against_the_target(image_files):
    items, summary = image.regenerate("a red circle", image_files[0], "toy", "", 3, 1, 0.0, 2)
    assert len(items) == 2 and "seed 3" in items[0][1] and "sim " in items[0][1]
    assert "image similarity to the target" in summary
    gallery = [(p, None) for p in image_files]
    items, _ = multi.regenerate_multi("a red circle, a blue star", gallery, "toy", "", 0, 1, 0, 1)
    assert len(items) == 1


def test_regenerate_style_and_distill():
    items, _ = style.regenerate_style("green", "a circle\na star", pez.STYLE_TEMPLATE, "toy", "", 0, 1, 0, 1)
    assert [c.split(" · ")[0] for _, c in items] == ["a circle", "a star"]
    long_items, short_items, summary = distill.regenerate_distill(
        "a big red star", "red star", "toy", "", 0, 1, 0, 2
    )
    assert len(long_items) == len(short_items) == 2 and "4 images" in summary
    with pytest.raises(gr.Error):
        style.regenerate_style("", "a circle", pez.STYLE_TEMPLATE, "toy", "", 0, 1, 0, 1)
    with pytest.raises(gr.Error):
        image.regenerate("", None, "toy", "", 0, 1, 0, 1)


# ---------------------------------------------------------------------------------------------
# History


def test_history_upserts_by_run_and_exports_json():
    cfg = pez.InvertConfig(seed=0)
    rec = {**progress.new_record("image", "toy", cfg), "prompt": "a red circle", "score": 0.31, "steps_run": 30}
    h = history.history_upsert([], rec)
    h = history.history_upsert(h, {**rec, "prompt": "a red circle!", "done": True})  # same run: replaced
    h = history.history_upsert(h, {**progress.new_record("distill", "toy", cfg), "prompt": ""})  # empty: not kept
    assert len(h) == 1 and h[0]["prompt"] == "a red circle!" and "done" not in h[0]
    rows = history.history_rows(h)
    assert rows[0][1:5] == ["image", "a red circle!", "0.310", "toy"] and "seed 0" in rows[0][5]
    data = json.loads(Path(history.export_history(h)).read_text())
    assert data["prompts"][0]["settings"]["prompt_len"] == cfg.prompt_len
    with pytest.raises(gr.Error):
        history.export_history([])
    many = []
    for i in range(history.HISTORY_LIMIT + 5):
        many = history.history_upsert(many, {**rec, "id": str(i)})
    assert len(many) == history.HISTORY_LIMIT and many[0]["id"] == str(history.HISTORY_LIMIT + 4)


def test_stop_ends_the_run_gracefully_keeping_the_best_prompt(image_files):
    control = progress.RunControl()
    assert progress.arm_run(control) == progress.STARTING  # what the Run click shows first (idle server)
    stream = with_records(
        image.invert_image(image_files[0], MODEL, 4, 3000, 2, 0, 0.1, "", False, control=control), control
    )
    live = [next(stream), next(stream)]  # loading, then a live update
    while live[-1][4].get("score") is None:  # the search's step-0 report has no score yet
        live.append(next(stream))
    assert live[0][0] == "" and isinstance(live[0][1], str)  # plain values for the API, no update dicts
    assert len(live[0]) == 5  # four API outputs (+ the record this test appends)
    status = components.stop_run(control)  # Stop while running: the run reports itself
    assert status == gr.skip()
    prompt, status, _, cands, record = list(stream)[-1]  # the run ends by itself, at once
    assert record["stopped"] and record["done"] and record["steps_run"] < 3000
    assert prompt == record["prompt"] and record["score"] >= live[-1][4]["score"] and cands
    assert "Stopped after" in status
    h = history.history_upsert(history.history_upsert([], live[-1][4]), record)
    assert len(h) == 1 and h[0]["prompt"] == prompt  # same run id: replaced


def test_stop_while_queued_says_so_and_the_run_never_starts(image_files):
    control = progress.RunControl()
    progress.arm_run(control)
    assert "waiting in the queue" in components.stop_run(control)  # Stop while still queued
    final = run(image.invert_image, image_files[0], MODEL, 4, 3000, 1, 0, 0.1, "", False, control=control)[-1]
    assert final[4]["steps_run"] == 0 and final[0] == "" and "Stopped before the first step" in final[1]
    progress.arm_run(control)  # a new Run click is not stopped by the old Stop
    final = run(image.invert_image, image_files[0], MODEL, 4, 10, 1, 0, 0.1, "", False, control=control)[-1]
    assert final[4]["steps_run"] == 10 and not final[4]["stopped"]


def test_a_failed_run_leaves_its_error_in_the_status(image_files):
    control = progress.RunControl()
    progress.arm_run(control)
    with pytest.raises(gr.Error):
        run(image.invert_image, image_files[0], "no-such-model", *FAST, control=control)
    status = progress.error_status(control)
    assert status.startswith("⚠ Error:") and "Loading" not in status and "no-such-model" in status


def test_range_errors_name_the_field_and_plurals_read_well(image_files):
    with pytest.raises(gr.Error) as e:
        run(image.invert_image, image_files[0], MODEL, 4, 10, 1, 0, -5, "", False)
    assert e.value.message.startswith("Learning rate (lr): expected a value in")
    assert "similar" not in server.tidy_message("model: unknown open_clip architecture 'x'; similar: []")
    assert server.tidy_message("model: unknown 'Vit'; similar: ['ViT-B-32', 'ViT-L-14']").endswith(
        "similar: ViT-B-32, ViT-L-14"
    )
    with pytest.raises(gr.Error) as e:
        run(style.find_style, [], MODEL, *FAST)
    assert "Add at least 1 style image first" in e.value.message


def test_distill_refuses_a_short_length_longer_than_the_input():
    with pytest.raises(gr.Error) as e:
        run(distill.distill_prompt, "a red star", MODEL, 8, 10, 1, 0, 0.1, "", False)
    assert "must be shorter than the long one" in e.value.message


def test_settings_follow_the_core_fields_and_integers_are_typed_int():
    fields = {f.name for f in __import__("dataclasses").fields(pez.InvertConfig)}
    names = [p for p in inspect.signature(image.invert_image).parameters]
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
        image.invert_image,
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
    import time

    start = time.monotonic()
    probe = server.startup_model(offline_demo=False)
    assert time.monotonic() - start < 10
    if not probe.fallback:
        pytest.skip("the default pair's weights are cached on this machine")
    assert app.demo.pez_start.pair == "toy" and "HF_HOME" in probe.how_to and probe.missing


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
    assert inspect.isgeneratorfunction(image.invert_image)  # wrapped by spaces.GPU at import
    wrapped = spaces.GPU(duration=5)(lambda x: x + 1)
    assert wrapped(1) == 2


# ---------------------------------------------------------------------------------------------
# In-process server + gradio_client: every named endpoint


@pytest.fixture(scope="module")
def client():
    from gradio_client import Client

    demo = app.build_demo()
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **app.LAUNCH_KWARGS)
    try:
        yield Client(url, verbose=False)
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
    start = time.monotonic()
    assert client.predict(img, MODEL, 4, 5, api_name="/invert")[0]  # one GPU slot: it was freed
    assert time.monotonic() - start < 60


def test_client_gets_errors_as_messages_and_the_server_keeps_serving(client, image_files):
    from gradio_client import handle_file

    with pytest.raises(Exception) as e:
        client.predict("   ", MODEL, 4, 10, api_name="/distill")
    assert "long prompt" in str(e.value)
    prompt = client.predict(handle_file(image_files[0]), MODEL, 4, 10, api_name="/invert")[0]
    assert prompt


def test_first_use_download_shows_bytes_and_total_in_the_status(image_files, monkeypatch):
    """A weight download (huggingface_hub reports it as a tqdm byte bar) shows in the status
    line as bytes / total while the model loads; then the run goes on as usual."""
    import time

    from huggingface_hub.utils import tqdm as hf_tqdm

    from pez_app import downloads

    real = server.load_model

    def downloading(model):
        with hf_tqdm(total=40_000_000, unit="B", desc="open_clip_model.safetensors", disable=False) as bar:
            for _ in range(8):
                time.sleep(0.1)
                bar.update(5_000_000)
        return real(model)

    monkeypatch.setattr(downloads, "POLL_SECONDS", 0.05)
    monkeypatch.setattr(image, "load_model", downloading)
    updates = run(image.invert_image, image_files[0], MODEL, *FAST)
    shown = [u[1] for u in updates if u[1].startswith("Downloading")]
    assert shown and "/ 40.0 MB (open_clip_model.safetensors)" in shown[-1]
    assert "Done after" in updates[-1][1]


# ---------------------------------------------------------------------------------------------
# Server settings and the gradio internals the app reads


def test_server_limits_are_read_from_the_environment_when_the_demo_is_built(monkeypatch):
    monkeypatch.setenv("PEZ_MAX_STEPS", "500")
    monkeypatch.setenv("PEZ_EXTRA_MODELS", "random:tiny, ViT-B-32/openai")
    demo = app.build_demo(offline_demo=True)
    try:
        assert server.SERVER.limits.max_steps == 500 and settings.server_caps()["steps"] == 500
        assert server.offered_models()[-2:] == ["random:tiny", "ViT-B-32/openai"]
        assert [v for _, v in _component(demo, inputs.ModelDropdown, "Model pair").choices][-2:] == server.offered_models()[-2:]
        assert _component(demo, inputs.SettingNumber, "Steps").info.startswith("1 to 500")
        assert components.LAUNCH_KWARGS["max_file_size"] == "20mb"
        monkeypatch.setenv("PEZ_MAX_STEPS", "lots")
        with pytest.raises(pez.ConfigError, match="PEZ_MAX_STEPS: expected a whole number above 0, received 'lots'"):
            server.Limits.from_env()
    finally:
        monkeypatch.undo()
        app.build_demo(offline_demo=True)  # the defaults again, for the tests after this one
    assert server.SERVER.limits == server.Limits()


def test_the_model_refusal_reads_the_same_for_any_value():
    refused = []
    for model in ["ViT-B-32@/etc/passwd", "local-dir:/root", "random:RN50", "", None, ["toy"]]:
        with pytest.raises(gr.Error) as e:
            server.check_model(model)
        refused.append(e.value.message.replace(repr(model), "<model>"))
    assert len(set(refused)) == 1 and "expected one of ['sd-turbo'" in refused[0]
    assert server.check_model(" toy ") == "toy"


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


def test_regeneration_stops_at_the_servers_time_limit(monkeypatch):
    """The whole request shares one deadline, whose clock starts once the model is ready."""
    monkeypatch.setattr(server.SERVER, "limits", server.Limits(max_run_seconds=1e-6))
    items, summary = style.regenerate_style("green", "a circle\na star\na heart", pez.STYLE_TEMPLATE, "toy", "", 0, 1, 0, 2)
    assert "Stopped at the server's time limit (1e-06 s)" in summary
    assert len(items) < 6  # not every subject x image was drawn
