"""Batch inversion: one prompt per image for every image under a folder, one JSON line each.

    python -m pez batch photos/ --out results.jsonl                   # one process
    accelerate launch --multi_gpu --num_processes 2 -m pez batch photos/ --out results.jsonl

Nothing is lost and nothing is written twice:
- Each finished image becomes one complete JSON line, appended with a single `write` on an
  O_APPEND descriptor under an exclusive `flock`, then fsync'd; a kill can only lose the image
  being inverted, never tear or duplicate a line.
- A re-run skips every image that already has a result for the same settings and model (the
  key is path + settings + model), so an interrupted batch resumes where it stopped. A torn last
  line (only possible after a crash of the machine, not of the process) is cut off on resume.
- A bad image (or an entry that cannot be read: a symlink loop, a dangling link) is recorded as
  an error line `{"path": ..., "error": ...}` and the batch goes on; a re-run tries it again (it
  may have been fixed meanwhile) unless errors are kept (`keep_errors`, `--keep-errors`).
  Failures that are not the image's fault (out of memory, a runtime error) are reported and
  counted but not recorded, so the next run retries them.
- Paths are recorded as the user named them (absolute, symlinks not resolved); symlinked
  folders are searched (each real folder once). An output that cannot be written is reported
  before the model is loaded.

The command `python -m pez batch` (pez.cli) prints the summary; this module writes no output.
Sharding uses Hugging Face accelerate: the main process repairs the file, every process reads
the same to-do list, `PartialState.split_between_processes` gives each its share, and all of
them append to the one file.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .config import InvertConfig
from .errors import ConfigError, Interrupted, InvalidImageError, describe_error, is_oom
from .images import IMAGE_SUFFIXES
from .models import DEFAULT_PAIR, TextSpace

try:  # POSIX advisory locks; elsewhere O_APPEND writes of one line are still whole
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

log = logging.getLogger("pez.batch")


# ---------------------------------------------------------------------------------------------
# Finding images


def find_images(paths: Iterable[str | os.PathLike], problems: list[tuple[str, str]] | None = None) -> list[Path]:
    """Image files under `paths`, as the user named them (absolute, links not resolved), sorted so
    that every process sees the same list. Folders are searched recursively, symlinked folders
    too (each real folder once, so a link loop ends); files are taken as given; a file reached
    twice (a link and its target) is kept once, under its first name. An entry that cannot be
    read (a symlink loop, a dangling link, a folder without permission) is added to `problems` as
    (path, reason) and the rest goes on (without a list: logged)."""
    paths = list(paths)
    if not paths:
        raise ConfigError("paths: expected at least one folder or image file, received none")
    problems = [] if problems is None else problems
    candidates: set[str] = set()
    for p in map(Path, paths):
        if p.is_file():
            candidates.add(os.path.abspath(p))
        elif p.is_dir():
            candidates.update(_walk(p, problems))
        else:
            raise ConfigError(f"paths: expected an existing folder or file, received {str(p)!r}")
    found, seen = [], set()
    for name in sorted(candidates):
        try:
            st = os.stat(name)  # follows links; a loop or a dangling link raises here
        except OSError as e:
            problems.append((name, f"cannot be read ({e.strerror or e})"))
            continue
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            found.append(Path(name))
    for name, why in problems:
        log.warning("%s: %s", name, why)
    if not found and not problems:
        raise ConfigError(
            f"paths: no images found in {', '.join(map(str, paths))} (looked for {', '.join(IMAGE_SUFFIXES)})"
        )
    return found


def _walk(folder: Path, problems: list[tuple[str, str]]) -> Iterator[str]:
    """Image file names under `folder`, following symlinked folders, each real folder once."""
    visited: set[tuple[int, int]] = set()

    def unreadable(e: OSError) -> None:
        problems.append((os.path.abspath(e.filename or folder), f"folder cannot be read ({e.strerror or e})"))

    for root, dirs, files in os.walk(folder, onerror=unreadable, followlinks=True):
        try:
            st = os.stat(root)
        except OSError as e:  # removed meanwhile
            unreadable(e)
            dirs[:] = []
            continue
        if (st.st_dev, st.st_ino) in visited:  # reached again through a link: already searched
            dirs[:] = []
            continue
        visited.add((st.st_dev, st.st_ino))
        dirs.sort()
        yield from (os.path.abspath(os.path.join(root, f)) for f in files if Path(f).suffix.lower() in IMAGE_SUFFIXES)


# ---------------------------------------------------------------------------------------------
# The results file


def settings_of(config: InvertConfig) -> dict:
    """The settings as they are written to (and compared in) the results file."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(config).items()}


def run_key(model: str, settings: dict) -> str:
    """What makes two results comparable: the model and every setting."""
    return json.dumps({"model": model, "settings": settings}, sort_keys=True)


class ResultsFile:
    """An append-only JSONL file several processes can write to at once, a line at a time."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if self.path.is_dir():
            raise ConfigError(f"out: expected a file path, received the folder {str(self.path)!r}")

    def _open(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)

    @staticmethod
    def _lock(fd: int, on: bool) -> None:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX if on else fcntl.LOCK_UN)

    def append(self, record: dict) -> None:
        """Write `record` as one line: a single O_APPEND write under an exclusive lock, fsync'd."""
        data = (json.dumps(_finite(record), ensure_ascii=False) + "\n").encode()
        fd = self._open()
        try:
            self._lock(fd, True)
            written = os.write(fd, data)
            if written != len(data):  # only on a full disk; leave no partial line behind
                os.ftruncate(fd, os.fstat(fd).st_size - written)
                raise OSError(f"could not write a whole line to {self.path} (disk full?)")
            os.fsync(fd)
        finally:
            self._lock(fd, False)
            os.close(fd)

    def repair(self) -> int:
        """Cut off a torn last line (no trailing newline), if any. Returns the bytes removed."""
        if not self.path.exists():
            return 0
        fd = self._open()
        try:
            self._lock(fd, True)
            size = os.fstat(fd).st_size
            if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
                return 0
            # Scan back in chunks for the last newline; keep everything up to and including it.
            end, chunk = size, 1 << 16
            while end > 0:
                start = max(0, end - chunk)
                pos = os.pread(fd, end - start, start).rfind(b"\n")
                if pos >= 0:
                    keep = start + pos + 1
                    break
                end = start
            else:
                keep = 0
            os.ftruncate(fd, keep)
            os.fsync(fd)
            log.warning("%s: removed a torn last line (%d bytes)", self.path, size - keep)
            return size - keep
        finally:
            self._lock(fd, False)
            os.close(fd)

    def records(self) -> list[dict]:
        """Every complete, valid line (a torn or invalid line is skipped with a warning)."""
        if not self.path.exists():
            return []
        out = []
        with open(self.path, "rb") as f:
            for n, raw in enumerate(f, 1):
                if not raw.endswith(b"\n"):
                    log.warning("%s: line %d is torn; it will be redone", self.path, n)
                    continue
                try:
                    rec = json.loads(raw)
                except ValueError:
                    log.warning("%s: line %d is not valid JSON; skipped", self.path, n)
                    continue
                if isinstance(rec, dict) and "path" in rec:
                    out.append(rec)
        return out

    def done(self, model: str, settings: dict, keep_errors: bool = False) -> set[str]:
        """Paths that already have a result for this model and settings (or, with `keep_errors`,
        an error line: by default a file that failed is tried again, it may have been fixed)."""
        key = run_key(model, settings)
        return {
            r["path"]
            for r in self.records()
            if run_key(r.get("model"), r.get("settings")) == key and (keep_errors or "error" not in r)
        }

    def check_writable(self) -> None:
        """Create the file (and its folder) if needed, so that an output that cannot be written is
        reported before any work. Raises ConfigError naming `out`."""
        try:
            os.close(self._open())
        except OSError as e:
            raise ConfigError(f"out: cannot write {str(self.path)!r} ({e.strerror or e})") from None


def _finite(x: Any) -> Any:
    """NaN/inf -> None, recursively, so every line is strict JSON."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


# ---------------------------------------------------------------------------------------------
# One image


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def invert_file(
    path: Path, clip: TextSpace, config: InvertConfig, should_stop: Callable[[], bool] | None = None
) -> dict:
    """Invert one image file -> its result record. Raises InvalidImageError for a bad image and
    Interrupted when stopped (a partial result is never recorded)."""
    from .inversion import invert

    res = invert([path], clip, config, should_stop=should_stop)
    if res.stopped:
        raise Interrupted(str(path))
    return {
        "path": str(path),
        "prompt": res.prompt,
        "score": res.score,
        "clip_scores": res.clip_scores,  # the prompt's score in each CLIP (several for SDXL's joint search)
        "clip_weights": res.clip_weights,
        "top_k": [{"prompt": p.prompt, "score": p.score} for p in res.top_k],
        "settings": settings_of(config),
        "seed": res.seed,
        "model": res.model,
        "steps_run": res.steps_run,
        "elapsed": round(res.elapsed, 3),
        "time": _now(),
    }


# ---------------------------------------------------------------------------------------------
# The batch


@dataclass
class BatchSummary:
    """What one process did. `complete` counts, over the whole file, the images that now have a
    result for these settings (with keep_errors: or an error line; filled in by the main process
    at the end)."""

    total: int  # images found (and entries that could not be read)
    skipped: int  # already done in the file with these settings
    assigned: int = 0  # images this process was given
    written: int = 0  # results written by this process
    errors: int = 0  # error lines (bad or unreadable images) written by this process
    failed: list[str] = field(default_factory=list)  # not recorded, retried next time: "path: why"
    stopped: bool = False
    complete: int | None = None
    out: str = ""
    model: str = ""
    processes: int = 1
    elapsed: float = 0.0

    @property
    def exit_code(self) -> int:
        return 130 if self.stopped else (1 if self.failed else 0)

    def to_dict(self) -> dict:
        return {**vars(self), "exit_code": self.exit_code}


def _state(device: str | None):
    """accelerate's PartialState (one process unless started by `accelerate launch`)."""
    from accelerate import PartialState

    cpu = str(device) == "cpu" or not torch.cuda.is_available()
    return PartialState(cpu=cpu)


def _device_for(state, device: str | None) -> str | None:
    """Each process's device: accelerate's (cuda:LOCAL_RANK ...) unless a specific one is asked for."""
    if device in (None, "auto", "cuda") and (state.num_processes > 1 or state.device.type == "cuda"):
        return str(state.device)
    return device


def run_batch(
    paths: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    model: str | TextSpace = DEFAULT_PAIR,
    config: InvertConfig | None = None,
    *,
    device: str | None = None,
    progress: bool = False,
    should_stop: Callable[[], bool] | None = None,
    on_record: Callable[[dict], None] | None = None,
    keep_errors: bool = False,
) -> BatchSummary:
    """Invert every image under `paths` into the JSONL file `out`, resuming where it left off:
    images with a result are skipped, images that failed before are tried again (unless
    `keep_errors`). Under `accelerate launch` the images are sharded across the processes.
    An output that cannot be written is a ConfigError before any work."""
    from .models import get_clip

    start = time.perf_counter()
    config = config or InvertConfig()
    results = ResultsFile(out)
    problems: list[tuple[str, str]] = []  # entries that cannot be read: recorded as errors
    images = find_images(paths, problems)
    results.check_writable()
    state = _state(device)

    # 1. Load the model (each process its own copy, on its own device) and check the settings. A
    #    joint model's weights go into the settings, so a line says which weights it was found with.
    clip = get_clip(model, _device_for(state, device), config.clip_weights)
    config.fits(clip.context_length)
    if len(clip.clips) > 1:
        config = config.replace(clip_weights=clip.weights)
    settings = settings_of(config)

    # 2. The main process repairs the file; then everyone reads the same to-do list; the barrier
    #    after reading keeps a fast process from writing before a slow one has read.
    if state.is_main_process:
        results.repair()
    state.wait_for_everyone()
    done = results.done(clip.name, settings, keep_errors)
    todo = [p for p in images if str(p) not in done]
    unread = [(p, why) for p, why in problems if p not in done]
    state.wait_for_everyone()
    total = len(images) + len(problems)
    summary = BatchSummary(
        total=total,
        skipped=total - len(todo) - len(unread),
        out=str(results.path),
        model=clip.name,
        processes=state.num_processes,
    )
    if state.is_main_process:
        for path, why in unread:
            _record(error_record(path, why, clip.name, config), results, summary, state.process_index, on_record)

    # 3. Each process inverts its share and appends whole lines.
    with state.split_between_processes(todo) as mine:
        summary.assigned = len(mine)
        show = progress and state.is_local_main_process
        _invert_all(mine, clip, config, results, summary, state.process_index, show, should_stop, on_record)

    # 4. Wait for everyone, then count what the file now holds for these settings.
    state.wait_for_everyone()
    if state.is_main_process:
        named = {str(p) for p in images} | {p for p, _ in problems}
        summary.complete = len(results.done(clip.name, settings, keep_errors) & named)
    summary.elapsed = time.perf_counter() - start
    return summary


def error_record(path: str, message: str, model: str, config: InvertConfig) -> dict:
    """The line of an image that could not be used (re-runs try it again unless keep_errors)."""
    return {"path": path, "error": message, "model": model, "settings": settings_of(config), "time": _now()}


def _record(record: dict, results: ResultsFile, summary: BatchSummary, process: int, on_record) -> None:
    record["process"] = process
    results.append(record)
    if "error" in record:
        summary.errors += 1
    else:
        summary.written += 1
    if on_record is not None:
        on_record(record)


def _invert_all(mine, clip, config, results, summary, process, progress, should_stop, on_record) -> None:
    from tqdm import tqdm

    with tqdm(mine, desc="pez batch", unit="img", disable=not progress, file=sys.stderr, dynamic_ncols=True) as bar:
        for path in bar:
            if should_stop is not None and should_stop():
                summary.stopped = True
                break
            try:
                record = invert_file(path, clip, config, should_stop)
            except Interrupted:
                summary.stopped = True
                break
            except (InvalidImageError, ConfigError) as e:  # the image's fault: record it, go on
                record = error_record(str(path), str(e), clip.name, config)
            except Exception as e:  # not the image's fault: report, retry on the next run
                if is_oom(e) and torch.cuda.is_available():
                    torch.cuda.empty_cache()
                summary.failed.append(f"{path}: {describe_error(e)}")
                log.error("%s: %s (not recorded; a re-run retries it)", path, describe_error(e))
                continue
            _record(record, results, summary, process, on_record)
            bar.set_postfix(done=summary.written, errors=summary.errors, failed=len(summary.failed), refresh=False)


__all__ = [
    "BatchSummary",
    "ResultsFile",
    "find_images",
    "invert_file",
    "run_batch",
    "settings_of",
]
