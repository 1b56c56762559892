"""Distillation's one length rule (issue 24, item 8): the short prompt is shorter than the long one.

Before: `pez distill "red star" --prompt-len 8` ran the whole search and returned 8 tokens for a
2-token prompt, while the app refused the same request. Now pez.inversion.distill_length caps the
short length below the long prompt's token count, with a note, for every front-end."""

from __future__ import annotations

import json

import pytest

import pez
from pez import cli
from pez.engine.vocab import text_ids
from pez.errors import ConfigError
from pez.inversion import distill_length

FAST = pez.InvertConfig(steps=3, report_every=1)


def test_a_length_below_the_long_prompt_is_kept(tiny_clip):
    n = len(text_ids(tiny_clip, "a red star on a blue sky"))
    assert distill_length(tiny_clip, "a red star on a blue sky", n - 1) == (n - 1, "")


@pytest.mark.parametrize("asked", [2, 8, 75])
def test_a_length_not_below_the_long_prompt_is_capped_with_a_note(tiny_clip, asked):
    assert len(text_ids(tiny_clip, "red star")) == 2
    length, note = distill_length(tiny_clip, "red star", asked)
    assert length == 1
    assert "2 tokens" in note and f"{asked} tokens" in note and "1 token" in note


def test_a_one_token_prompt_has_nothing_shorter(tiny_clip):
    with pytest.raises(ConfigError, match="1 token"):
        distill_length(tiny_clip, "star", 4)


def test_distill_applies_the_rule_and_says_so(tiny_clip):
    res = pez.distill("red star", tiny_clip, FAST.replace(prompt_len=8))
    assert res.config.prompt_len == 1 and len(text_ids(tiny_clip, res.prompt)) <= 1
    assert "capped" in res.hint
    res = pez.distill("red star on blue", tiny_clip, FAST.replace(prompt_len=2))
    assert res.config.prompt_len == 2 and "capped" not in res.hint


def test_cli_distill_caps_and_prints_the_note(capsys):
    argv = ["distill", "red star", "-m", "random:tiny", "--device", "cpu", "--steps", "3", "-q", "--prompt-len", "8"]
    assert cli.run([*argv, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["config"]["prompt_len"] == 1 and "capped" in out["hint"]
    assert cli.run(argv) == 0
    assert any(line.startswith("# hint: ") and "capped" in line for line in capsys.readouterr().out.splitlines())
