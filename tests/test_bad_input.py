"""Bad input, the same cases through the core API, the CLI and the app's named endpoints.

Every case must end in a clear message (InvalidImageError / ConfigError / WeightsNotFoundError in
the core, `error: ...` and exit status 2 from the CLI, a gradio error carrying the message from
the app) and never in a crash. Odd but valid images (alpha, palettes, CMYK, 16-bit, animations,
EXIF rotation) must work. Test files are made on the fly and stay small: the decompression
bombs are a PNG header that claims 30000x30000 and a zlib-compressed all-zero 7000x7000 image.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import pez
from pez.cli import run as cli_run
from pez.config import MAX_IMAGES, MAX_TEXT_CHARS

from .conftest import noise_image

ROOT = Path(__file__).resolve().parent.parent
MODEL = "random:tiny"
FAST = pez.InvertConfig(prompt_len=3, steps=2, report_every=1)
CLI_FAST = ["-m", MODEL, "--steps", "2", "--prompt-len", "3", "-q"]


# ---------------------------------------------------------------------------------------------
# Test files


def png_bytes(width: int, height: int, depth: int = 8, color: int = 2, rows: bytes | None = None) -> bytes:
    """A PNG written by hand: lets a header claim any size and lets us write 16-bit RGB."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0))
    if rows is not None:
        out += chunk(b"IDAT", zlib.compress(rows, 9))
    return out + chunk(b"IEND", b"")


def encoded(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _zero_bomb() -> bytes:
    side = 7000  # 49 Mpx > pez's 40 Mpx limit, below PIL's own bomb check; ~50 kB on disk
    return png_bytes(side, side, 8, 0, bytes(side * (side + 1)))  # grey, each row: filter byte + zeros


# name -> (file name, bytes maker, expected words in the message)
BAD_IMAGES: dict[str, tuple[str, Callable[[], bytes], str]] = {
    "not_an_image": ("notes.png", lambda: b"just some text, renamed .png", "not an image file"),
    "empty_file": ("empty.jpg", lambda: b"", "not an image file"),
    "truncated_png": ("cut.png", lambda: encoded(noise_image(0, 64), "PNG")[:2000], "corrupt or truncated"),
    "truncated_jpeg": ("cut.jpg", lambda: encoded(noise_image(0, 64), "JPEG")[:900], "corrupt or truncated"),
    "bomb_header": ("bomb.png", lambda: png_bytes(30000, 30000), "image too large"),
    "bomb_zeros": ("zeros.png", _zero_bomb, "image too large"),
    "one_pixel": ("dot.png", lambda: encoded(Image.new("RGB", (1, 1)), "PNG"), "too small"),
    "extreme_aspect": ("strip.png", lambda: encoded(Image.new("RGB", (400, 4)), "PNG"), "aspect ratio"),
}


def _exif_rotated() -> bytes:
    img = Image.new("RGB", (40, 20), (200, 30, 30))
    exif = img.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    return encoded(img, "JPEG", exif=exif)


def _animated() -> bytes:
    frames = [Image.new("RGB", (16, 16), c) for c in [(255, 0, 0), (0, 0, 255), (0, 255, 0)]]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return buf.getvalue()


def _palette(transparent: bool) -> bytes:
    img = Image.new("P", (16, 16), 1)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    return encoded(img, "PNG", **({"transparency": 1} if transparent else {}))


def _gray16() -> bytes:
    return encoded(Image.fromarray(np.full((16, 16), 65535, np.uint16)), "PNG")


def _rgb48() -> bytes:
    row = b"\x00" + b"\xff\xff\x00\x00\x00\x00" * 16  # 16-bit red pixels
    return png_bytes(16, 16, 16, 2, row * 16)


def _rgb(color: tuple) -> Callable[[Image.Image], bool]:
    return lambda im: all(abs(a - b) <= 8 for a, b in zip(im.getpixel((4, 4)), color))


# name -> (file name, bytes maker, check of the loaded RGB image)
ODD_IMAGES: dict[str, tuple[str, Callable[[], bytes], Callable[[Image.Image], bool]]] = {
    "rgba_transparent": (
        "rgba.png",
        lambda: encoded(Image.new("RGBA", (16, 16), (255, 0, 0, 0)), "PNG"),
        _rgb((255, 255, 255)),
    ),
    "rgba_opaque": (
        "rgba2.png",
        lambda: encoded(Image.new("RGBA", (16, 16), (255, 0, 0, 255)), "PNG"),
        _rgb((255, 0, 0)),
    ),
    "la": ("la.png", lambda: encoded(Image.new("LA", (16, 16), (0, 255)), "PNG"), _rgb((0, 0, 0))),
    "palette": ("p.png", lambda: _palette(False), _rgb((255, 0, 0))),
    "palette_transparent": ("pt.png", lambda: _palette(True), _rgb((255, 255, 255))),
    "cmyk_jpeg": (
        "cmyk.jpg",
        lambda: encoded(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG"),
        _rgb((255, 0, 0)),
    ),
    "cmyk_tiff": (
        "cmyk.tif",
        lambda: encoded(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "TIFF"),
        _rgb((255, 0, 0)),
    ),
    "gray16": ("g16.png", _gray16, _rgb((255, 255, 255))),
    "rgb48": ("rgb48.png", _rgb48, _rgb((255, 0, 0))),
    "animated_gif": ("anim.gif", _animated, _rgb((255, 0, 0))),  # the first frame
    "exif_rotated": ("rotated.jpg", _exif_rotated, lambda im: im.size == (20, 40)),  # upright
    "wide_but_allowed": ("wide.png", lambda: encoded(noise_image(1, 160).resize((200, 20)), "PNG"), lambda im: True),
}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("inputs")
    out = {}
    for name, (fname, make, _) in {**BAD_IMAGES, **ODD_IMAGES}.items():
        out[name] = folder / fname
        out[name].write_bytes(make())
    out["missing"] = folder / "missing.png"
    out["ok"] = folder / "ok.png"
    noise_image(7).save(out["ok"])
    assert max(p.stat().st_size for p in out.values() if p.exists()) < 200_000  # small test files
    return out


# ---------------------------------------------------------------------------------------------
# Core API

BAD = {**{k: v[2] for k, v in BAD_IMAGES.items()}, "missing": "file not found"}


@pytest.mark.parametrize("case", sorted(BAD))
def test_core_refuses_bad_images_clearly(case, files, tiny_clip):
    with pytest.raises(pez.InvalidImageError, match=BAD[case]) as e:
        pez.load_image(files[case])
    assert files[case].name in str(e.value)  # the message names the input
    with pytest.raises(pez.InvalidImageError, match=BAD[case]):
        pez.invert([files[case]], tiny_clip, FAST)


@pytest.mark.parametrize("case", sorted(ODD_IMAGES))
def test_core_accepts_odd_images(case, files):
    img = pez.load_image(files[case])
    assert img.mode == "RGB" and ODD_IMAGES[case][2](img), (img.size, img.getpixel((4, 4)))


def test_core_inverts_odd_images(files, tiny_clip):
    paths = [files[c] for c in ODD_IMAGES]
    assert pez.image_features(tiny_clip, paths).shape[0] == len(paths)
    assert pez.invert(paths[:3], tiny_clip, FAST).prompt


@pytest.mark.parametrize(
    "source, expected",
    [
        (None, "received NoneType"),
        (42, "received int"),
        (np.zeros((8, 8, 5)), "received shape"),
        (np.array([[object()] * 4] * 4), "numeric array"),
        (np.zeros((0, 0, 3), np.uint8), "too small"),
    ],
)
def test_core_refuses_unusable_objects(source, expected):
    with pytest.raises(pez.InvalidImageError, match=expected):
        pez.load_image(source)


def test_core_tolerates_odd_arrays():
    for arr in [np.full((8, 8, 3), np.nan), np.ones((8, 8), bool), np.full((8, 8, 3), 7e4, np.int64)]:
        assert pez.load_image(arr).size == (8, 8)


def _invert(files, **cfg):
    return lambda clip: pez.invert([files["ok"]], clip, FAST.replace(**cfg))


CONFIG_CASES = {
    "zero_images": (lambda f: lambda clip: pez.invert([], clip, FAST), "at least one image"),
    "too_many_images": (
        lambda f: lambda clip: pez.invert([f["ok"]] * (MAX_IMAGES + 1), clip, FAST),
        f"at most {MAX_IMAGES} images",
    ),
    "empty_prompt": (lambda f: lambda clip: pez.distill("  ", clip, FAST), "non-empty text"),
    "long_prompt": (
        lambda f: lambda clip: pez.distill("a " * MAX_TEXT_CHARS, clip, FAST),
        f"at most {MAX_TEXT_CHARS} characters",
    ),
    "long_prompt_score": (
        lambda f: lambda clip: pez.score_texts(clip, ["a " * MAX_TEXT_CHARS], [f["ok"]]),
        f"at most {MAX_TEXT_CHARS} characters",
    ),
    "prompt_len_0": (lambda f: _invert(f, prompt_len=0), "prompt_len"),
    "prompt_len_above_context": (lambda f: _invert(f, prompt_len=76), "prompt_len"),
    "steps_0": (lambda f: _invert(f, steps=0), "steps"),
    "steps_above_limit": (lambda f: _invert(f, steps=10_001), "steps"),
    "unknown_model": (lambda f: lambda clip: pez.invert([f["ok"]], "no-such-model", FAST), "expected a pair name"),
    "unknown_arch": (lambda f: lambda clip: pez.invert([f["ok"]], "ViT-Nope-14/openai", FAST), "unknown open_clip"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_core_refuses_bad_settings_clearly(case, files, tiny_clip):
    call, expected = CONFIG_CASES[case]
    with pytest.raises(pez.ConfigError, match=expected):
        call(files)(tiny_clip)


def test_prompt_len_at_the_context_limit_is_fine(files, tiny_clip):
    limit = tiny_clip.context_length - 2
    assert len(pez.invert([files["ok"]], tiny_clip, FAST.replace(prompt_len=limit, steps=1)).top_k) >= 1


def test_core_missing_weights_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(pez.WeightsNotFoundError, match="toy"):  # the message offers the offline model
        pez.load_clip("sd-1.5", device="cpu")
    with pytest.raises(pez.WeightsNotFoundError, match="not found"):
        pez.load_clip("ViT-B-32@/nonexistent/weights.bin", device="cpu")


# ---------------------------------------------------------------------------------------------
# CLI: exit status 2 and one line `error: ...`, never a traceback


def cli_error(capsys, argv: list[str]) -> str:
    rc = cli_run([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("error: ")
    return err


@pytest.mark.parametrize("case", sorted(BAD))
def test_cli_bad_images(case, files, capsys):
    assert BAD[case] in cli_error(capsys, ["invert", files[case], *CLI_FAST])


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["distill", "   ", *CLI_FAST], "non-empty text"),
        (["distill", "a " * MAX_TEXT_CHARS, *CLI_FAST], f"at most {MAX_TEXT_CHARS}"),
        (["invert", "{ok}", *CLI_FAST, "--prompt-len", "0"], "prompt_len"),
        (["invert", "{ok}", *CLI_FAST, "--prompt-len", "76"], "prompt_len"),
        (["invert", "{ok}", *CLI_FAST, "--steps", "0"], "steps"),
        (["invert", "{ok}", *CLI_FAST, "--steps", "10001"], "steps"),
        (["invert", "{ok}", *CLI_FAST, "-m", "no-such-model"], "expected a pair name"),
        (["invert", "{ok}", *CLI_FAST, "-m", "sd-1.5"], "Could not load the CLIP weights"),
        (["invert", *["{ok}"] * (MAX_IMAGES + 1), *CLI_FAST], f"at most {MAX_IMAGES} images"),
    ],
)
def test_cli_bad_settings(argv, expected, files, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    argv = [str(files["ok"]) if a == "{ok}" else a for a in argv]
    assert expected in cli_error(capsys, argv)


def test_cli_zero_images(capsys, tmp_path):
    with pytest.raises(SystemExit) as e:  # argparse: usage line + error line, status 2
        cli_run(["invert", *CLI_FAST])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "the following arguments are required: images" in err and "Traceback" not in err
    assert "no images found" in cli_error(capsys, ["batch", tmp_path, "--out", tmp_path / "r.jsonl", *CLI_FAST])


def test_cli_in_a_real_process_exits_2_with_one_line(files):
    done = subprocess.run(
        [sys.executable, "-m", "pez", "invert", str(files["ok"]), "-m", "no-such-model", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("error: model: expected a pair name") and done.stderr.count("\n") == 1


# ---------------------------------------------------------------------------------------------
# App: the named endpoints through gradio_client on an in-process, loopback-only server


@pytest.fixture(scope="module")
def app_client():
    try:
        from gradio_client import Client

        import app
    except Exception as e:  # app.py is being built by someone else
        pytest.skip(f"app.py not importable: {type(e).__name__}: {e}")
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
    if endpoint not in client.endpoints_:
        pytest.skip(f"app.py has no /{endpoint} endpoint yet")
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

    if "invert" not in app_client.endpoints_:
        pytest.skip("app.py has no /invert endpoint yet")
    for case in ["cmyk_jpeg", "gray16", "rgb48", "animated_gif", "exif_rotated", "palette_transparent", "la"]:
        prompt = app_client.predict(handle_file(str(files[case])), **SETTINGS, api_name="/invert")[0]
        assert prompt, case


@pytest.mark.parametrize(
    "endpoint, args, kwargs, expected",
    [
        ("invert_multi", ([],), SETTINGS, "Add at least"),
        ("invert_multi", ("{many}",), SETTINGS, f"At most {MAX_IMAGES} images"),
        ("distill", ("   ",), SETTINGS, "long prompt"),
        ("distill", ("a " * MAX_TEXT_CHARS,), SETTINGS, f"at most {MAX_TEXT_CHARS} characters"),
        ("score", ("a " * MAX_TEXT_CHARS, "{ok}", MODEL), {}, f"at most {MAX_TEXT_CHARS} characters"),
        ("invert", ("{ok}",), {**SETTINGS, "prompt_len": 0}, "less than minimum value 1"),
        ("invert", ("{ok}",), {**SETTINGS, "prompt_len": 76}, "greater than maximum value 75"),
        ("invert", ("{ok}",), {**SETTINGS, "steps": 0}, "less than minimum value 1"),
        ("invert", ("{ok}",), {**SETTINGS, "steps": 10_001}, "greater than maximum value 10000"),
        ("invert", ("{ok}",), {**SETTINGS, "model": "no-such-model"}, "expected a pair name"),
        ("invert", ("{ok}",), {**SETTINGS, "model": "sd-1.5"}, "Could not load the CLIP weights"),
    ],
)
def test_app_bad_settings(endpoint, args, kwargs, expected, files, app_client):
    from gradio_client import handle_file

    ok = handle_file(str(files["ok"]))
    fill = {"{ok}": ok, "{many}": [{"image": ok, "caption": None}] * (MAX_IMAGES + 1)}
    args = [fill.get(a, a) if isinstance(a, str) else a for a in args]
    assert expected in app_error(app_client, endpoint, *args, **kwargs)
