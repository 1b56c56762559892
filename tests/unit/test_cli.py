"""The command line, run in-process (plus one real subprocess for `python -m pez`)."""

from __future__ import annotations

import json

import pytest

from pez import cli

from ..conftest import noise_image

FAST = ["-m", "random:tiny", "--device", "cpu", "--steps", "6", "--prompt-len", "3", "--report-every", "2", "-q"]


@pytest.fixture
def image_files(tmp_path):
    paths = []
    for i in range(2):
        p = tmp_path / f"img{i}.png"
        noise_image(i).save(p)
        paths.append(str(p))
    return paths


def test_invert_json(image_files, capsys):
    assert cli.run(["invert", image_files[0], *FAST, "--json", "--seed", "3", "--blocklist", "cat", "dog"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["prompt"] and out["seed"] == 3 and out["steps_run"] == 6
    assert out["config"]["blocklist"] == ["cat", "dog"] and out["config"]["prompt_len"] == 3


def test_invert_text_is_reproducible(image_files, capsys):
    cli.run(["invert", *image_files, *FAST])
    first = capsys.readouterr().out.splitlines()
    cli.run(["invert", *image_files, *FAST])
    assert capsys.readouterr().out.splitlines()[0] == first[0]
    assert first[1].startswith("# score ")


def test_other_modes(image_files, capsys):
    assert cli.run(["distill", "a long prompt about a lighthouse at dusk", *FAST, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["target"].startswith("a long prompt")
    assert cli.run(["concatenate", *image_files, *FAST, "--json", "--separator", " + "]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["parts"]) == 2 and out["prompt"] == " + ".join(p["prompt"] for p in out["parts"])
    assert cli.run(["style", *image_files, *FAST, "--subject", "a dog", "--subject", "Paris", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["styled"] == [f"a dog in the style of {out['prompt']}", f"Paris in the style of {out['prompt']}"]


def test_models_lists_registry(capsys):
    assert cli.run(["models"]) == 0
    out = capsys.readouterr().out
    assert "sd-turbo" in out and "ViT-H-14/laion2b_s32b_b79k" in out and "toy" in out


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--steps", "0"], "steps: expected a value in [1, 10000], received 0"),
        (["--prompt-len", "0"], "prompt_len"),
        (["--model", "nope"], "expected a pair name"),
    ],
)
def test_bad_settings_exit_2_with_one_line(image_files, capsys, args, match):
    assert cli.run(["invert", image_files[0], *FAST, *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and match in err and "Traceback" not in err



def test_runtime_failure_is_one_line_exit_1(image_files, capsys, monkeypatch):
    import pez.inversion

    def boom(*args, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(pez.inversion, "optimize", boom)
    assert cli.run(["invert", image_files[0], *FAST]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: out of memory: try fewer candidates") and "Traceback" not in err
