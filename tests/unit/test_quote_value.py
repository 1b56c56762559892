"""Caller values quoted in messages are cut short and inert as Markdown/HTML (pez.errors.quote_value,
used by pez.config's "field: expected ..., received ..." messages)."""

from html.parser import HTMLParser

import pytest
from markdown_it import MarkdownIt

import pez
from pez.config import Bound, check_clip_weights
from pez.errors import QUOTE_CHARS, quote_value

PAYLOAD = "[link](http://x.example) ![img](http://y.example/p.png) <img src=http://z.example> www.w.example a@b.example &lt;b&gt;"


def _tags(html: str) -> list[str]:
    found: list[str] = []

    class P(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.append(tag)

    P().feed(html)
    return found


def test_a_huge_value_gives_a_short_message():
    with pytest.raises(pez.ConfigError) as e:
        pez.InvertConfig(seed="9" * 200_000)
    assert len(str(e.value)) < 300
    assert str(e.value).startswith("seed: expected") and "…" in str(e.value)
    with pytest.raises(pez.ConfigError) as e:
        check_clip_weights([0.0] * 200_000)  # a value that passes each check but not the sum
    assert len(str(e.value)) < 300


@pytest.mark.parametrize("value", [PAYLOAD, PAYLOAD[40:], "<script>alert(1)</script>", "x" * 70 + PAYLOAD])
def test_a_markup_value_renders_as_text(value):
    text = f"Seed (seed): expected an integer, received {quote_value(value, limit=200)}"
    md = MarkdownIt("commonmark", {"html": True}).render(text)  # the app's Markdown views allow HTML
    assert _tags(md) == ["p"], md  # no <a>, <img> or raw tag: one paragraph of text
    assert _tags(text) == []  # shown as HTML (gradio's toasts): no tag either
    for autolink in ("://", "www.", "@b"):  # GFM turns bare URLs and e-mail addresses into links
        assert autolink not in text
    assert "&lt;" not in text  # no entity reference


def test_config_messages_quote_through_it():
    with pytest.raises(pez.ConfigError) as e:
        Bound(0, 1).check("seed", PAYLOAD)
    assert "](" not in str(e.value) and "<img" not in str(e.value)
    assert str(e.value).startswith("seed: expected a number in [0, 1], received '[link]")


def test_short_values_read_as_repr():
    assert quote_value("fp8") == "'fp8'"
    assert quote_value(2.5) == "2.5"
    assert quote_value(None) == "None"
    assert quote_value("a\nb") == "'a\\nb'"  # no line break (no Markdown block can start)
    cut = quote_value("x" * 1000)
    assert len(cut) == QUOTE_CHARS and cut.endswith("…")
    assert len(quote_value(list(range(100_000)))) <= QUOTE_CHARS
