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


# ---------------------------------------------------------------------------------------------
# Issue 24: what a newcomer met on the command line


def _error(capsys, argv: list[str]) -> str:
    """Run argv, expect exit 2 and one `error:` line; return that line."""
    assert cli.run([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_a_missing_image_is_named_as_typed(tmp_path, capsys):
    """Before: `error: cat.jpg: file not found` for /tmp/nope/cat.jpg (which cat.jpg?)."""
    missing = tmp_path / "nope" / "cat.jpg"
    assert str(missing) in _error(capsys, ["invert", missing, *FAST])


@pytest.mark.parametrize(("typed", "meant"), [("tyo", "toy"), ("sd-trubo", "sd-turbo"), ("sdx", "sdxl")])
def test_a_mistyped_model_offers_the_nearest_name(image_files, capsys, typed, meant):
    """Before: the list of choices only, no 'did you mean'."""
    err = _error(capsys, ["invert", image_files[0], *FAST, "--model", typed])
    assert f"did you mean {meant!r}?" in err


def test_a_model_far_from_any_name_gets_no_guess(image_files, capsys):
    err = _error(capsys, ["invert", image_files[0], *FAST, "--model", "qqqqqqqq"])
    assert "expected a pair name" in err and "did you mean" not in err


def test_generate_with_a_mistyped_pair_offers_the_nearest_name(tmp_path, capsys):
    err = _error(capsys, ["generate", "a cat", "--model", "sd-trubo", "--out", tmp_path, "-q"])
    assert "did you mean 'sd-turbo'?" in err


def test_generate_size_errors_name_the_flag_typed(tmp_path, capsys):
    """Before: `--size 17` was reported as `width: ...`, a flag generate does not have."""
    err = _error(capsys, ["generate", "a cat", "--model", "toy", "--size", "17", "--out", tmp_path, "-q"])
    assert err.startswith("error: --size: ") and "width" not in err and "17" in err
    err = _error(capsys, ["generate", "a cat", "--model", "toy", "--size", "100", "--out", tmp_path, "-q"])
    assert err.startswith("error: --size: ") and "multiple of 8" in err
    err = _error(capsys, ["generate", "a cat", "--model", "toy", "--num-images", "99", "--out", tmp_path, "-q"])
    assert err.startswith("error: --num-images: ")


def test_seed_help_is_readable(capsys):
    """Before: `random seed (-1: draw one) [0..2.14748e+09]`."""
    with pytest.raises(SystemExit):
        cli.run(["invert", "-h"])
    help_text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "2,147,483,647" in help_text and "e+09" not in help_text
    assert "-1: draw one" not in help_text and "-1 for a random seed" in help_text


def test_style_prints_one_styled_prompt_a_line(image_files, capsys):
    """Before: `# styled: ['a dog in the style of ...', 'Paris in the style of ...']`."""
    assert cli.run(["style", *image_files, *FAST, "--subject", "a dog", "--subject", "Paris"]) == 0
    lines = capsys.readouterr().out.splitlines()
    style = lines[0]
    assert f"a dog in the style of {style}" in lines and f"Paris in the style of {style}" in lines
    assert not any("[" in line for line in lines)


def test_batch_summary_counts_are_plural_only_when_plural(tmp_path, capsys):
    """Before: `1 bad images`."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "broken.png").write_bytes(b"not a png")
    noise_image(0).save(folder / "ok.png")
    out = tmp_path / "r.jsonl"
    assert cli.run(["batch", str(folder), "--out", str(out), *FAST]) == 0
    summary = capsys.readouterr().out
    assert "1 bad image;" in summary and "1 new," in summary and "1 process," in summary, summary


def test_batch_out_inside_a_file_is_explained(tmp_path, capsys, image_files):
    """Before: `out: cannot write '.../a_file/r.jsonl' (File exists)`."""
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    err = _error(capsys, ["batch", image_files[0], "--out", a_file / "r.jsonl", *FAST])
    assert "File exists" not in err and "--out" in err and f"{a_file} is a file, not a folder" in err


def test_batch_out_in_a_missing_folder_is_refused_not_created(tmp_path, capsys, image_files):
    """Before: `--out /nonexistent_dir/r.jsonl` created /nonexistent_dir (and any parents) silently."""
    missing = tmp_path / "no" / "such"
    err = _error(capsys, ["batch", image_files[0], "--out", missing / "r.jsonl", *FAST])
    assert "--out" in err and "does not exist" in err and str(missing) in err
    assert not (tmp_path / "no").exists()


def test_batch_out_help_says_the_folder_must_exist(capsys):
    with pytest.raises(SystemExit):
        cli.run(["batch", "-h"])
    assert "folder must exist" in " ".join(capsys.readouterr().out.split())


def test_generate_out_creates_only_the_folder_named(tmp_path, capsys, monkeypatch):
    """`generate --out DIR` makes DIR itself, never missing parents; a file in the way is explained."""
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    err = _error(capsys, ["generate", "a cat", "--model", "toy", "--out", a_file / "pics", "-q"])
    assert "File exists" not in err and f"{a_file} is a file, not a folder" in err
    err = _error(capsys, ["generate", "a cat", "--model", "toy", "--out", tmp_path / "no" / "pics", "-q"])
    assert "does not exist" in err and not (tmp_path / "no").exists()
