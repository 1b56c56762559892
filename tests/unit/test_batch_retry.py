"""Issue 15, finding 9, black-box: `python -m pez batch` as a user runs it, through the CLI's own
entry (`pez.cli.run(argv)`, what `python -m pez` calls) with the tiny random CLIP.

A failed file is retried on the next run unless the user keeps errors (`--keep-errors`);
symlinks do not abort or silently skip anything and are recorded under the path the user named;
an output that cannot be written is reported before any image is searched.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pez.cli import run as cli_run

from ..conftest import noise_image

MODEL = "random:tiny"
FAST = ["-m", MODEL, "--steps", "3", "--prompt-len", "2", "--refine-steps", "0", "--prune-tolerance", "0", "-q"]


def batch(capsys, *args: str) -> tuple[int, str, str]:
    """`python -m pez batch ARGS...` -> (exit status, stdout, stderr); never raises."""
    try:
        code = cli_run(["batch", *args, *FAST])
    except SystemExit as e:  # argparse: an unknown flag
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def records(path: Path) -> dict[str, dict]:
    """The last line per path (a retry appends a new one)."""
    out = {}
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        out[rec["path"]] = rec
    return out


def image(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    noise_image(seed).save(path)
    return path


def test_a_file_that_failed_is_retried_once_fixed(tmp_path, capsys):
    """Today: the re-run skips the fixed file and reports '0 new'."""
    folder, out = tmp_path / "in", tmp_path / "r.jsonl"
    image(folder / "good.png")
    (folder / "later.png").write_text("not an image yet")
    code, stdout, _ = batch(capsys, str(folder), "--out", str(out))
    assert code == 0 and "1 bad image" in stdout, stdout
    image(folder / "later.png", seed=1)  # the user fixes the file
    code, stdout, stderr = batch(capsys, str(folder), "--out", str(out))
    assert code == 0 and "1 new" in stdout, f"the fixed file was not retried: {stdout}{stderr}"
    fixed = records(out)[str(folder / "later.png")]
    assert "error" not in fixed and fixed["prompt"], fixed


def test_keep_errors_skips_files_that_failed_before(tmp_path, capsys):
    """Today: --keep-errors is not a flag (argparse refuses it)."""
    folder, out = tmp_path / "in", tmp_path / "r.jsonl"
    image(folder / "good.png")
    (folder / "bad.png").write_text("not an image")
    assert batch(capsys, str(folder), "--out", str(out))[0] == 0
    code, stdout, stderr = batch(capsys, str(folder), "--out", str(out), "--keep-errors")
    assert code == 0 and "0 new" in stdout and "2 already done" in stdout, f"{code}: {stdout}{stderr}"


def test_a_symlink_loop_is_reported_and_the_rest_is_done(tmp_path, capsys):
    """Today: 'error: Symlink loop from ...' and no image is inverted."""
    folder, out = tmp_path / "in", tmp_path / "r.jsonl"
    image(folder / "good.png")
    (folder / "loop.png").symlink_to(folder / "loop.png")
    code, stdout, stderr = batch(capsys, str(folder), "--out", str(out))
    assert out.exists() and str(folder / "good.png") in records(out), f"nothing done ({code}): {stdout}{stderr}"
    assert "loop.png" in stdout + stderr + out.read_text(), "the symlink loop was not reported"


def test_a_symlinked_file_is_recorded_under_the_name_the_user_gave(tmp_path, capsys):
    """Today: the line's path is the link's target, so the user cannot find their file in the results."""
    target = image(tmp_path / "elsewhere" / "real.png")
    folder, out = tmp_path / "in", tmp_path / "r.jsonl"
    folder.mkdir()
    (folder / "link.png").symlink_to(target)
    code, stdout, stderr = batch(capsys, str(folder), "--out", str(out))
    assert code == 0, stdout + stderr
    assert str(folder / "link.png") in records(out), f"recorded as {sorted(records(out))}"


def test_a_symlinked_folder_is_searched_too(tmp_path, capsys):
    """Today: os.walk does not follow it: its images are neither done nor mentioned."""
    image(tmp_path / "shared" / "a.png")
    folder, out = tmp_path / "in", tmp_path / "r.jsonl"
    image(folder / "own.png", seed=1)
    (folder / "linked").symlink_to(tmp_path / "shared", target_is_directory=True)
    code, stdout, stderr = batch(capsys, str(folder), "--out", str(out))
    assert code == 0, stdout + stderr
    assert str(folder / "linked" / "a.png") in records(out), f"done: {sorted(records(out))}; {stdout}{stderr}"


def unwritable_outputs(tmp_path: Path) -> list[tuple[str, Path]]:
    cases = []
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    cases.append(("parent is a file", blocker / "r.jsonl"))
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        cases.append(("read-only folder", locked / "r.jsonl"))
    return cases


def test_an_output_that_cannot_be_written_is_reported_before_any_search(tmp_path, capsys, monkeypatch):
    """Today: the first image is searched, then 'error: FileExistsError: ... File exists' (exit 1)."""
    folder = tmp_path / "in"
    for i in range(3):
        image(folder / f"img{i}.png", seed=i)
    searched = []
    monkeypatch.setattr("pez.inversion.invert", lambda *a, **k: searched.append(a))
    for what, out in unwritable_outputs(tmp_path):
        try:
            code = cli_run(["batch", str(folder), "--out", str(out), "-m", MODEL, "--steps", "200", "-q"])
        except SystemExit as e:
            code = e.code
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.startswith(("error: out", "error: --out")), f"{what}: exit {code}: {err}"
        assert "\n" not in err and "failed (will be retried)" not in err, f"{what}: {err}"
        assert not searched, f"{what}: an image was searched before the output was checked"


def test_a_folder_link_loop_ends_and_each_image_is_done_once(tmp_path, capsys):
    """A link from a folder to its parent: searched once (each real folder once), no endless walk."""
    folder, out = tmp_path / "in", tmp_path / "r.jsonl"
    image(folder / "sub" / "a.png")
    (folder / "sub" / "up").symlink_to(folder, target_is_directory=True)
    (folder / "dangling.png").symlink_to(tmp_path / "gone.png")
    code, stdout, stderr = batch(capsys, str(folder), "--out", str(out))
    assert code == 0, stdout + stderr
    recs = records(out)
    assert set(recs) == {str(folder / "sub" / "a.png"), str(folder / "dangling.png")}, sorted(recs)
    assert "error" in recs[str(folder / "dangling.png")] and recs[str(folder / "sub" / "a.png")]["prompt"]
