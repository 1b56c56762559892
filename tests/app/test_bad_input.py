"""Bad input through the app's named endpoints: gradio_client on an in-process, loopback-only
server; every case must come back as a gradio error carrying pez's message (cases:
tests/bad_inputs.py; the core and the CLI: tests/unit/test_bad_input.py)."""

from __future__ import annotations

import pytest

from pez.config import MAX_IMAGES, MAX_TEXT_CHARS

from ..bad_inputs import BAD, BAD_IMAGES, make_files

MODEL = "random:tiny"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return make_files(tmp_path_factory.mktemp("inputs"))


@pytest.fixture(scope="module")
def app_client():
    from gradio_client import Client

    import app

    with pytest.MonkeyPatch.context() as env:
        env.setenv("PEZ_EXTRA_MODELS", MODEL)  # the operator offers the tiny CLIP (server.Limits)
        demo = app.build_demo()
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, server_name="127.0.0.1")
    try:
        client = Client(url, verbose=False)
        client.endpoints_ = {
            n.lstrip("/") for n in client.view_api(return_format="dict", print_info=False)["named_endpoints"]
        }
        yield client
    finally:
        demo.close()


def app_error(client, endpoint: str, *args, **kwargs) -> str:
    """Call an endpoint that must fail; return the error message the client received."""
    assert endpoint in client.endpoints_, endpoint
    with pytest.raises(Exception) as e:
        client.predict(*args, api_name=f"/{endpoint}", **kwargs)
    assert type(e.value).__name__ == "AppError", repr(e.value)  # a gradio error, not a lost connection
    return str(e.value)


SETTINGS = dict(model=MODEL, prompt_len=3, steps=2)


@pytest.mark.parametrize("case", sorted(BAD))
def test_app_bad_images(case, files, app_client):
    """The app hands uploads to pez unopened, so every bad file gets pez's own message."""
    from gradio_client import handle_file

    if case == "missing":
        pytest.skip("a missing file cannot be uploaded")
    msg = app_error(app_client, "invert", handle_file(str(files[case])), **SETTINGS)
    assert BAD[case] in msg


@pytest.mark.parametrize("case", sorted(BAD_IMAGES))
def test_app_bad_images_in_a_gallery(case, files, app_client):
    from gradio_client import handle_file

    gallery = [
        {"image": handle_file(str(files["ok"])), "caption": None},
        {"image": handle_file(str(files[case])), "caption": None},
    ]
    assert BAD[case] in app_error(app_client, "invert_multi", gallery, **SETTINGS)


def test_app_accepts_odd_images(files, app_client):
    from gradio_client import handle_file

    for case in ["cmyk_jpeg", "gray16", "rgb48", "animated_gif", "exif_rotated", "palette_transparent", "la"]:
        prompt = app_client.predict(handle_file(str(files[case])), **SETTINGS, api_name="/invert")[0]
        assert prompt, case


@pytest.mark.parametrize(
    "endpoint, args, kwargs, expected",
    [
        ("invert_multi", ([],), SETTINGS, "Add at least"),
        (
            "invert_multi",
            ("{many}",),
            SETTINGS,
            f"images: expected at most {MAX_IMAGES} images, received {MAX_IMAGES + 1}",
        ),
        ("distill", ("   ",), SETTINGS, "long prompt"),
        ("distill", ("a " * MAX_TEXT_CHARS,), SETTINGS, f"at most {MAX_TEXT_CHARS} characters"),
        ("score", ("a " * MAX_TEXT_CHARS, "{ok}", MODEL), {}, f"at most {MAX_TEXT_CHARS} characters"),
        ("invert", ("{ok}",), {**SETTINGS, "prompt_len": 0}, "Prompt length (prompt_len): expected a value in [1, 75]"),
        ("invert", ("{ok}",), {**SETTINGS, "prompt_len": 76}, "expected a value in [1, 75], received 76"),
        (
            "invert",
            ("{ok}",),
            {**SETTINGS, "steps": 0},
            "Steps (steps): expected a value in [1, 3000] on this server, received 0",
        ),
        ("invert", ("{ok}",), {**SETTINGS, "steps": 10_001}, "expected a value in [1, 3000] on this server"),
        ("invert", ("{ok}",), {**SETTINGS, "model": "no-such-model"}, "model): expected one of ['sd-turbo'"),
        (
            "invert",
            ("{ok}",),
            {**SETTINGS, "model": "sd-1.5"},
            "Stable Diffusion 1.5 is not available here: its weights",
        ),
    ],
)
def test_app_bad_settings(endpoint, args, kwargs, expected, files, app_client):
    from gradio_client import handle_file

    ok = handle_file(str(files["ok"]))
    fill = {"{ok}": ok, "{many}": [{"image": ok, "caption": None}] * (MAX_IMAGES + 1)}
    args = [fill.get(a, a) if isinstance(a, str) else a for a in args]
    assert expected in app_error(app_client, endpoint, *args, **kwargs)
