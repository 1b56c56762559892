"""Download progress for the status line: the bytes/total of the weight downloads running now.

huggingface_hub reports its downloads through its own tqdm subclass's byte bars (unit "B").
`watch()` gives that subclass an `update` that remembers the open byte bars (once per process; on
the subclass, so gradio's own tqdm patching of the base class never replaces it); `progress_text()`
sums them. Models are
loaded once per process behind a lock, so every user waiting for the same first load sees the same
download, which is what they are waiting for.
"""

from __future__ import annotations

import math
import threading
import time
import weakref
from collections.abc import Callable, Iterator

_BARS: weakref.WeakSet = weakref.WeakSet()
_LOCK = threading.Lock()
_INSTALLED = False
POLL_SECONDS = 0.5
MOVING_SECONDS = 3.0  # "Downloading" only while bytes arrived this recently


def watch() -> None:
    """Start noticing tqdm byte bars (idempotent)."""
    global _INSTALLED
    with _LOCK:
        if _INSTALLED:
            return
        from huggingface_hub.utils import tqdm as hf_tqdm

        def update(self, n=1):
            if getattr(self, "unit", "") == "B" and not getattr(self, "disable", False):
                _BARS.add(self)
            return super(hf_tqdm, self).update(n)

        hf_tqdm.update = update
        _INSTALLED = True


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def progress_text() -> str | None:
    """'1.2 GB / 3.9 GB (open_clip_model.safetensors)' for the byte bars still open, else None."""
    bars = [b for b in list(_BARS) if not getattr(b, "disable", False) and b.total and b.n < b.total]
    if not bars:
        return None
    done, total = sum(b.n for b in bars), sum(b.total for b in bars)
    names = ", ".join(dict.fromkeys(str(b.desc).strip(": ") for b in bars if b.desc))
    return f"{_size(done)} / {_size(total)}" + (f" ({names})" if names else "")


def bytes_done() -> float:
    """Bytes received so far by the byte bars still open."""
    return sum(b.n for b in list(_BARS) if not getattr(b, "disable", False))


def load_with_progress(load: Callable[[], object], what: str) -> Iterator[str | object]:
    """Run `load()` in a thread; yield a status line every POLL_SECONDS while it runs, then the
    loaded object itself (last): "Downloading … bytes / total" while bytes arrive (within the last
    MOVING_SECONDS), else "Loading {what} (n s)" (reading cached weights, building the model).
    Errors are raised here, in the caller's thread."""
    watch()
    box: dict = {}

    def run():
        try:
            box["value"] = load()
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = e

    thread = threading.Thread(target=run, name="pez-load", daemon=True)
    start = time.monotonic()
    seen, moved = bytes_done(), -math.inf
    thread.start()
    while thread.is_alive():
        thread.join(POLL_SECONDS)
        if not thread.is_alive():
            break
        now, done = time.monotonic(), bytes_done()
        if done > seen:
            seen, moved = done, now
        text = progress_text()
        if text and now - moved <= MOVING_SECONDS:
            yield f"Downloading the weights of {what} (first use): {text} · {now - start:.0f} s"
        else:
            yield f"Loading {what} ({now - start:.0f} s)"
    if "error" in box:
        raise box["error"]
    yield box["value"]
