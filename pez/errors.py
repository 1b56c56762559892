"""Turning exceptions into one line a user can act on; shared by the CLI and batch runs."""

from __future__ import annotations

import torch

from .config import ConfigError
from .images import InvalidImageError
from .models import WeightsNotFoundError

USER_ERRORS = (ConfigError, InvalidImageError, WeightsNotFoundError)  # bad input: message only
OOM_HINT = "out of memory: try fewer candidates (--candidates), a shorter prompt (--prompt-len) or a smaller model"


def is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in str(e).lower()


def describe_error(e: BaseException) -> str:
    """A one-line message a user can act on."""
    if is_oom(e):
        return OOM_HINT
    if isinstance(e, USER_ERRORS):
        return str(e)
    return f"{type(e).__name__}: {e}"


__all__ = ["OOM_HINT", "USER_ERRORS", "describe_error", "is_oom"]
