"""Every exception pez raises on purpose, and the one line a user sees for any exception.

`ConfigError`, `InvalidImageError` and `WeightsNotFoundError` are the user's mistakes or the
user's machine (USER_ERRORS): front-ends show their message alone, never a traceback. Any other
exception is a failure of the run; `describe_error` turns it into one line, with advice for the
one failure users can act on (out of memory). Shared by the CLI, batch runs and the app.
"""

from __future__ import annotations

import re
from typing import Any


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


QUOTE_CHARS = 60  # a value quoted in a message is cut to this many characters
_BREAK = "\u200b"  # zero-width space: invisible, but no markup construct continues across it
# What would make a quoted value a link, an image, HTML or an entity in a Markdown or HTML view:
# "<" opens tags, comments and <autolinks>; "&" entities; "](" "][" "]:" links and images; "://",
# "www." and "@" GFM's bare-URL and e-mail autolinks. A break after each keeps the text as it reads.
_MARKUP = re.compile(r"(<|&|\]|:(?=/)|@|(?i:www)(?=\.))")


def quote_value(value: Any, limit: int = QUOTE_CHARS) -> str:
    """A caller's value as a message may quote it: repr()'d (so no line breaks or control
    characters), cut to `limit` characters with "…", and inert in the app's Markdown and HTML views
    (no link, image, tag or entity forms; a zero-width space breaks each). Cheap for any size: only
    a prefix of a long text is looked at.

    >>> quote_value("x" * 200_000)[:5], len(quote_value("x" * 200_000))
    ("'xxxx", 60)
    """
    if isinstance(value, (str, bytes, bytearray)):
        text = repr(value[: limit + 1])  # a prefix: a huge text costs nothing more
        cut = len(value) > limit or len(text) > limit
    else:
        import reprlib

        short = reprlib.Repr()
        short.maxstring = short.maxother = short.maxlong = limit
        short.maxlist = short.maxtuple = short.maxdict = short.maxset = 8
        text = short.repr(value)
        cut = len(text) > limit
    if cut:
        text = text[: limit - 1] + "…"
    return _MARKUP.sub(lambda m: m.group(0) + _BREAK, text)


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
    "quote_value",
]
