"""Readability of a prompt: the share of its words that are English dictionary words.

"Dictionary word" = a word made of letters whose frequency in English, by the wordfreq package
(pinned in requirements.txt; code Apache-2.0, word-frequency data CC BY-SA 4.0; its data is a
2021 snapshot that its author no longer updates, which does not matter for ordinary words), is
at least ZIPF_MIN on the Zipf scale (log10 of occurrences per billion words).

Why 3.0 (once per million words): CLIP's BPE has ~33k whole-word tokens made of letters. Above
3.0 they are overwhelmingly real words (~21.9k tokens: "commits", "firefly", "wicket"); between
2.5 and 3.0 a third or more are fragments or abbreviations ("ald", "lar", "pmi"), below 2.5 most
are ("ork", "unde", "dop"; the pieces issue 18 found in prompts: "ude" 2.0, "sef" 2.2, "reng"
1.4, "tioned", "ulty", "arine" 0). The price: rarer real words count as not readable
("checkered" 2.9, "cyan" 2.7, "gouache" 2.4). Pass `min_zipf` to measure with another threshold.

Words are the whitespace-separated chunks of a prompt with surrounding punctuation stripped;
chunks of ASCII punctuation only ("," "-" "&") are separators, not words.
"""

from __future__ import annotations

import string
from functools import lru_cache

ZIPF_MIN = 3.0
LANG = "en"
_PUNCT = string.punctuation


@lru_cache(maxsize=200_000)
def zipf(word: str) -> float:
    """wordfreq's Zipf frequency of `word` in English (0.0 for unknown words)."""
    from wordfreq import zipf_frequency

    return zipf_frequency(word, LANG)


def is_dictionary_word(word: str, min_zipf: float = ZIPF_MIN) -> bool:
    """True for a word of ASCII letters at least `min_zipf` frequent in English ("Cat" yes,
    "ulty" no, "r2d2" no). Surrounding punctuation is ignored ("cat," counts as "cat")."""
    w = word.strip().strip(_PUNCT).lower()
    return bool(w) and w.isascii() and w.isalpha() and zipf(w) >= min_zipf


def prompt_words(text: str) -> list[str]:
    """The words of a prompt: whitespace-separated chunks that are not only ASCII punctuation."""
    return [c for c in text.split() if c.strip(_PUNCT)]


def dictionary_share(text: str, min_zipf: float = ZIPF_MIN) -> float:
    """Share of the words of `text` that are dictionary words; 0.0 for a text with no words."""
    words = prompt_words(text)
    return sum(is_dictionary_word(w, min_zipf) for w in words) / len(words) if words else 0.0


def repeated_words(text: str) -> int:
    """How many words of `text` repeat an earlier one (case and surrounding punctuation ignored)."""
    words = [w.strip(_PUNCT).lower() for w in prompt_words(text)]
    return len(words) - len(set(words))


def is_readable(text: str, min_zipf: float = ZIPF_MIN) -> bool:
    """The readable style's test of a prompt: every word a dictionary word, none twice."""
    words = prompt_words(text)
    return bool(words) and all(is_dictionary_word(w, min_zipf) for w in words) and not repeated_words(text)


def is_dictionary_token(token_text: str, min_zipf: float = ZIPF_MIN) -> bool:
    """For a vocabulary mask: True when a token's decoded text ("cat " for CLIP's `cat</w>`)
    ends a word (trailing whitespace) and is a dictionary word on its own. Pieces that need a
    neighbour to form a word ("check" + "ered ") are not: a prompt of such tokens is readable
    word by word."""
    return token_text[-1:].isspace() and is_dictionary_word(token_text, min_zipf)


__all__ = [
    "LANG",
    "ZIPF_MIN",
    "dictionary_share",
    "is_dictionary_token",
    "is_dictionary_word",
    "is_readable",
    "prompt_words",
    "repeated_words",
    "zipf",
]
