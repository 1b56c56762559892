"""Batch inversion: one JSON line per image, resumable, atomic, sharded with accelerate.

Uses the tiny random CLIP; the kill test runs the real CLI in a subprocess and SIGKILLs it."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import torch

import pez
from pez import batch
from pez.cli import run as cli_run
from pez.errors import OOM_HINT

from ..conftest import noise_image

ROOT = Path(__file__).resolve().parents[2]
MODEL = "random:tiny"
FAST = pez.InvertConfig(prompt_len=3, steps=4, report_every=2, refine_steps=0, prune_tolerance=0)  # plain PEZ search


def make_folder(root: Path, n: int = 3, bad: bool = True) -> Path:
    """n noise images (one in a sub-folder), a non-image renamed .png and a non-image suffix."""
    (root / "sub").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        noise_image(i).save(root / ("sub" if i == 1 else ".") / f"img{i}.png")
    if bad:
        (root / "broken.png").write_text("not an image")
    (root / "notes.txt").write_text("ignored: not an image suffix")
    return root


def lines(path: Path) -> list[dict]:
    """Every line must be complete, strict JSON."""
    raw = path.read_bytes()
    assert raw.endswith(b"\n"), "torn last line"
    return [json.loads(line, parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}")) for line in raw.splitlines()]


def by_path(records: list[dict]) -> dict[str, dict]:
    out = {}
    for r in records:
        assert r["path"] not in out, f"{r['path']} written twice"
        out[r["path"]] = r
    return out


# ---------------------------------------------------------------------------------------------
# Finding images


def test_find_images_is_recursive_sorted_and_image_only(tmp_path):
    folder = make_folder(tmp_path / "in")
    (folder / "UPPER.JPG").write_bytes(b"")  # suffixes match case-insensitively
    found = batch.find_images([folder])
    names = [p.name for p in found]
    assert found == sorted(found)
    assert set(names) == {"img0.png", "img1.png", "img2.png", "broken.png", "UPPER.JPG"}
    assert all(p.is_absolute() for p in found)
    assert batch.find_images([folder, folder / "sub" / "img1.png"]) == found  # de-duplicated


@pytest.mark.parametrize("make, expected", [(lambda p: p, "no images found"), (lambda p: p / "nope", "existing")])
def test_find_images_refuses_empty_or_missing_folders(tmp_path, make, expected):
    with pytest.raises(pez.ConfigError, match=expected):
        batch.find_images([make(tmp_path)])


# ---------------------------------------------------------------------------------------------
# Results and resume


def test_batch_writes_one_line_per_image_and_records_bad_ones(tmp_path, tiny_clip):
    folder, out = make_folder(tmp_path / "in"), tmp_path / "out" / "results.jsonl"
    summary = batch.run_batch([folder], out, tiny_clip, FAST)
    assert (summary.total, summary.written, summary.errors, summary.complete) == (4, 3, 1, 3)  # 3 results, 1 bad
    assert summary.exit_code == 0 and not summary.failed
    recs = by_path(lines(out))
    assert set(recs) == {str(p) for p in batch.find_images([folder])}
    bad = recs[str(folder / "broken.png")]  # recorded under the name it was found by
    assert "not an image" in bad["error"] and "prompt" not in bad
    good = recs[str(folder / "img0.png")]
    assert good["prompt"] and good["score"] == good["top_k"][0]["score"]
    assert good["settings"]["steps"] == FAST.steps and good["seed"] == FAST.seed and good["model"] == MODEL
    assert good["steps_run"] == FAST.steps and good["elapsed"] > 0 and "T" in good["time"]
    # The same image alone gives the same prompt: batch runs are plain seeded inversions.
    assert pez.invert([folder / "img0.png"], tiny_clip, FAST).prompt == good["prompt"]


def test_rerun_skips_done_images_and_new_settings_redo_them(tmp_path, tiny_clip):
    folder, out = make_folder(tmp_path / "in", n=2), tmp_path / "r.jsonl"
    batch.run_batch([folder], out, tiny_clip, FAST)
    before = out.read_bytes()
    kept = batch.run_batch([folder], out, tiny_clip, FAST, keep_errors=True)
    assert (kept.skipped, kept.written, kept.errors, kept.complete) == (3, 0, 0, 3)
    assert out.read_bytes() == before  # nothing appended
    again = batch.run_batch([folder], out, tiny_clip, FAST)  # the bad image is tried again
    assert (again.skipped, again.written, again.errors, again.complete) == (2, 0, 1, 2)
    assert len(lines(out)) == 4
    other = batch.run_batch([folder], out, tiny_clip, FAST.replace(steps=5))
    assert other.skipped == 0 and other.complete == 2 and len(lines(out)) == 7


def test_resume_cuts_a_torn_last_line_and_redoes_that_image(tmp_path, tiny_clip):
    folder, out = make_folder(tmp_path / "in", n=3, bad=False), tmp_path / "r.jsonl"
    batch.run_batch([folder], out, tiny_clip, FAST)
    recs = lines(out)
    # Simulate a crash mid-write: drop the last line, leave half of it behind.
    keep = b"".join(json.dumps(r).encode() + b"\n" for r in recs[:-1])
    out.write_bytes(keep + json.dumps(recs[-1]).encode()[:25])
    summary = batch.run_batch([folder], out, tiny_clip, FAST)
    assert summary.written == 1 and summary.skipped == 2
    final = by_path(lines(out))
    assert len(final) == 3 and final[recs[-1]["path"]]["prompt"] == recs[-1]["prompt"]


def test_concurrent_appends_never_tear_or_interleave(tmp_path):
    out = batch.ResultsFile(tmp_path / "r.jsonl")
    payload = "x" * 5000  # larger than a pipe buffer's atomic size: only the lock keeps it whole

    def writer(w):
        for i in range(40):
            out.append({"path": f"{w}/{i}", "pad": payload})

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    recs = by_path(lines(out.path))
    assert len(recs) == 240 and all(r["pad"] == payload for r in recs.values())


def test_lines_are_strict_json():
    assert batch._finite({"score": float("nan"), "k": [float("inf"), 1.0]}) == {"score": None, "k": [None, 1.0]}


# ---------------------------------------------------------------------------------------------
# Failures that are not the image's fault, and stopping


def _fail_once(monkeypatch, exc: Exception, target: str):
    """Make pez.inversion.invert raise `exc` for the image whose name is `target`."""
    import pez.inversion as inv

    real, calls = inv.invert, []

    def flaky(images, *a, **k):
        name = Path(images[0]).name
        calls.append(name)
        if name == target and calls.count(name) == 1:
            raise exc
        return real(images, *a, **k)

    monkeypatch.setattr(inv, "invert", flaky)
    return calls


def test_a_runtime_error_is_reported_not_recorded_and_retried_next_run(tmp_path, tiny_clip, monkeypatch):
    folder, out = make_folder(tmp_path / "in", n=3, bad=False), tmp_path / "r.jsonl"
    _fail_once(monkeypatch, RuntimeError("device lost"), "img0.png")
    first = batch.run_batch([folder], out, tiny_clip, FAST)
    assert first.written == 2 and first.exit_code == 1
    assert len(first.failed) == 1 and "img0.png: RuntimeError: device lost" in first.failed[0]
    assert "img0.png" not in out.read_text()  # not recorded: the next run retries it
    second = batch.run_batch([folder], out, tiny_clip, FAST)
    assert second.written == 1 and second.exit_code == 0 and len(by_path(lines(out))) == 3


def test_out_of_memory_suggests_what_to_change(tmp_path, tiny_clip, monkeypatch):
    folder, out = make_folder(tmp_path / "in", n=2, bad=False), tmp_path / "r.jsonl"
    _fail_once(monkeypatch, torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "img1.png")
    summary = batch.run_batch([folder], out, tiny_clip, FAST)
    assert summary.written == 1 and len(summary.failed) == 1
    msg = summary.failed[0]
    assert "fewer candidates" in msg and "shorter prompt" in msg and "smaller model" in msg


def test_stopping_mid_image_records_nothing_partial_and_resume_finishes(tmp_path, tiny_clip):
    folder, out = make_folder(tmp_path / "in", n=3, bad=False), tmp_path / "r.jsonl"
    config = FAST.replace(steps=30)
    calls = [0]

    def stop_in_second_image():  # checked once per step and once per image
        calls[0] += 1
        return calls[0] > 40

    summary = batch.run_batch([folder], out, tiny_clip, config, should_stop=stop_in_second_image)
    assert summary.stopped and summary.exit_code == 130 and summary.written == 1
    assert all(r["steps_run"] == 30 for r in lines(out))  # no partial result was written
    rest = batch.run_batch([folder], out, tiny_clip, config)
    assert rest.written == 2 and len(by_path(lines(out))) == 3


# ---------------------------------------------------------------------------------------------
# Command line


def test_cli_batch_summary_and_exit_codes(tmp_path, capsys):
    folder, out = make_folder(tmp_path / "in", n=2), tmp_path / "r.jsonl"
    argv = ["batch", str(folder), "--out", str(out), "-m", MODEL, "--steps", "3", "--prompt-len", "2", "-q"]
    assert cli_run(argv) == 0
    assert capsys.readouterr().out.startswith("2/3 images in")  # two results, one bad image
    assert cli_run([*argv, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["skipped"] == 2  # the bad image is tried again
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli_run(["batch", str(empty), "--out", str(out), "-m", MODEL, "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: paths: no images found") and "\n" not in err
    assert cli_run(["batch", str(folder), "--out", str(tmp_path), "-m", MODEL, "-q"]) == 2  # out is a folder
    assert "expected a file path" in capsys.readouterr().err


def test_cli_batch_out_of_memory_before_any_image_is_one_line(tmp_path, capsys, monkeypatch):
    folder = make_folder(tmp_path / "in", n=1, bad=False)

    def oom(*a, **k):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr("pez.models.get_clip", oom)
    rc = cli_run(["batch", str(folder), "--out", str(tmp_path / "r.jsonl"), "-m", MODEL, "-q"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and err == f"error: {OOM_HINT}"
    monkeypatch.undo()  # the real loader again: missing weights are a user error (exit 2)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert cli_run(["batch", str(folder), "--out", str(tmp_path / "r.jsonl"), "-m", "sd-1.5", "-q"]) == 2
    assert capsys.readouterr().err.startswith("error: Could not load the CLIP weights")
