"""Start-up noise (issue 24, item 13): open_clip logs "Parsing tokenizer identifier ..." (and more
INFO lines) through the *root* logger on every CLIP load, so an app or script logging at INFO
showed them on each run. pez's loaders drop open_clip's below-WARNING records while they load;
the user's logging is otherwise untouched (open_clip's own calls outside pez still log)."""

from __future__ import annotations

import logging

import open_clip

import pez
from pez.models.clip import clear_cache


def _messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records]


def test_loading_a_clip_logs_pez_lines_but_not_open_clips_info(caplog):
    clear_cache()  # a real load, not the cached one
    root_filters = list(logging.getLogger().filters)
    with caplog.at_level(logging.INFO):
        pez.load_clip("toy", device="cpu")
    messages = _messages(caplog)
    assert any("loading CLIP toy" in m for m in messages), messages  # pez's own INFO line stays
    assert not any("Parsing tokenizer identifier" in m for m in messages), messages
    assert logging.getLogger().filters == root_filters  # nothing left installed on the user's root logger


def test_open_clip_outside_pez_still_logs(caplog):
    with caplog.at_level(logging.INFO):
        open_clip.get_tokenizer("ViT-B-32")
    assert any("Parsing tokenizer identifier" in m for m in _messages(caplog))


def test_the_toy_worlds_tokenizer_is_quiet(caplog):
    from pez.toy import world

    world.tokenizer.cache_clear()
    with caplog.at_level(logging.INFO):
        world.tokenizer()
    assert not any("Parsing tokenizer identifier" in m for m in _messages(caplog))
