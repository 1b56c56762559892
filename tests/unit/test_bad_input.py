"""Bad input through the core API and the CLI (in-process); the app's endpoints: tests/app,
a real CLI process: tests/e2e. The cases are in tests/bad_inputs.py.

Every case must end in a clear message (InvalidImageError / ConfigError / WeightsNotFoundError in
the core, `error: ...` and exit status 2 from the CLI, a gradio error carrying the message from
the app) and never in a crash. Odd but valid images (alpha, palettes, CMYK, 16-bit, animations,
EXIF rotation) must work. Test files are made on the fly and stay small: the decompression
bombs are a PNG header that claims 30000x30000 and a zlib-compressed all-zero 7000x7000 image.
"""

from __future__ import annotations

import numpy as np
import pytest

import pez
from pez.cli import run as cli_run
from pez.config import MAX_IMAGES, MAX_TEXT_CHARS

from ..bad_inputs import BAD, ODD_IMAGES, make_files

MODEL = "random:tiny"
FAST = pez.InvertConfig(prompt_len=3, steps=2, report_every=1)
CLI_FAST = ["-m", MODEL, "--steps", "2", "--prompt-len", "3", "-q"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return make_files(tmp_path_factory.mktemp("inputs"))


# ---------------------------------------------------------------------------------------------
# Core API


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
