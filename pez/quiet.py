"""Quiet loads: open_clip's progress lines dropped while pez loads a CLIP or a tokenizer.

open_clip logs its progress ("Parsing tokenizer identifier ...", "Loaded ... model config") at INFO
through the *root* logger, so an app or script logging at INFO shows it on every load. Here, below
the models and the toy world that both load through open_clip, so neither imports the other.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager


class _OpenClipProgress(logging.Filter):
    """Drops open_clip's progress records: below WARNING and logged from open_clip's own files."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or f"{os.sep}open_clip{os.sep}" not in record.pathname


@contextmanager
def quiet_open_clip() -> Iterator[None]:
    """While pez loads, a filter on the root logger drops open_clip's progress records. A logger's
    filters see only the records logged on it, so every other logger (and open_clip's warnings) is
    untouched, and the filter is gone after the load."""
    root, quiet = logging.getLogger(), _OpenClipProgress()
    root.addFilter(quiet)
    try:
        yield
    finally:
        root.removeFilter(quiet)
