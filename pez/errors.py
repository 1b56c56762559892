"""Every exception pez raises on purpose, and the one line a user sees for any exception.

`ConfigError`, `InvalidImageError` and `WeightsNotFoundError` are the user's mistakes or the
user's machine (USER_ERRORS): front-ends show their message alone, never a traceback. Any other
exception is a failure of the run; `describe_error` turns it into one line, with advice for the
one failure users can act on (out of memory). Shared by the CLI, batch runs and the app.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A setting is out of range or of the wrong kind. The message says expected vs received."""


class InvalidImageError(ValueError):
    """An input is not a usable image; the message names the input and the reason."""


class WeightsNotFoundError(RuntimeError):
    """Model weights are neither in the local cache nor downloadable; says what was looked for."""


class Interrupted(Exception):
    """A batch run was stopped (Ctrl-C or should_stop) in the middle of an image."""


USER_ERRORS = (ConfigError, InvalidImageError, WeightsNotFoundError)  # bad input: message only
OOM_HINT = "out of memory: try fewer candidates (--candidates), a shorter prompt (--prompt-len) or a smaller model"


def is_oom(e: BaseException) -> bool:
    """Out of memory on any device (torch.cuda.OutOfMemoryError, or a message saying so)."""
    return type(e).__name__ == "OutOfMemoryError" or "out of memory" in str(e).lower()


def describe_error(e: BaseException) -> str:
    """A one-line message a user can act on."""
    if is_oom(e):
        return OOM_HINT
    if isinstance(e, USER_ERRORS):
        return str(e)
    return f"{type(e).__name__}: {e}"


__all__ = [
    "ConfigError",
    "Interrupted",
    "InvalidImageError",
    "OOM_HINT",
    "USER_ERRORS",
    "WeightsNotFoundError",
    "describe_error",
    "is_oom",
]
