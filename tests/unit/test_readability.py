"""pez.engine.readability: the dictionary-word share of prompts (wordfreq frequencies)."""

import pytest

from pez.engine.readability import ZIPF_MIN, dictionary_share, is_dictionary_token, is_dictionary_word, prompt_words


@pytest.mark.parametrize("word", ["cat", "Striped", "vase,", "watercolor", "moon", "marble", "grass"])
def test_real_words_are_dictionary_words(word):
    assert is_dictionary_word(word)


@pytest.mark.parametrize("word", ["tioned", "ulty", "arine", "ude", "sef", "reng", "r2d2", "🙂", "", "naïve-ish"])
def test_bpe_fragments_and_non_letters_are_not(word):
    assert not is_dictionary_word(word)


def test_share_counts_words_not_punctuation():
    assert dictionary_share("a striped red ball on grass") == 1.0
    assert dictionary_share("a red ulty , ball") == pytest.approx(3 / 4)  # "," is a separator
    assert dictionary_share("") == 0.0 and dictionary_share(" , ! ") == 0.0
    assert prompt_words("red , ball !!") == ["red", "ball"]


def test_threshold_is_a_parameter():
    # "checkered" is rarer than ZIPF_MIN (a documented cost of the threshold), common at 2.5
    assert not is_dictionary_word("checkered") and is_dictionary_word("checkered", min_zipf=2.5)
    assert ZIPF_MIN == 3.0


def test_token_predicate_needs_a_whole_word_token():
    assert is_dictionary_token("cat ")  # CLIP's "cat</w>" decodes with a trailing space
    assert not is_dictionary_token("cat")  # a piece that glues to the next token
    assert not is_dictionary_token("ulty ")


def test_token_predicate_on_the_real_vocabulary():
    import open_clip

    tok = open_clip.get_tokenizer("ViT-B-32")
    texts = [tok.decode([i]) for i in range(0, 49406, 7)]
    kept = [t for t in texts if is_dictionary_token(t)]
    # about two thirds of CLIP's whole-word letter tokens are dictionary words at ZIPF_MIN
    assert 0.3 * len(texts) < len(kept) < 0.6 * len(texts)
    assert all(t.endswith(" ") and t.strip().isalpha() for t in kept)


# ---------------------------------------------------------------------------------------------
# The readable mode: InvertConfig.dictionary_words, a VocabFilter setting


def test_readable_mode_allows_only_dictionary_words(tiny_clip, images):
    import pez
    from pez.engine.vocab import VocabFilter, vocabulary

    vocab = vocabulary(tiny_clip)
    readable = vocab.allowed_ids(VocabFilter(dictionary=True, safe=False)).tolist()
    whole = set(vocab.allowed_ids(VocabFilter(whole_words=True, safe=False)).tolist())
    assert 15_000 < len(readable) < len(whole) and set(readable) <= whole
    assert all(is_dictionary_token(vocab.texts[i]) for i in readable)
    for piece in ("ulty", "tioned", "arine"):  # word-final pieces the issue found in prompts
        ids = [i for i, t in enumerate(vocab.texts) if t == piece + " "]
        assert ids and ids[0] in whole and ids[0] not in readable, piece
    cfg = pez.InvertConfig(prompt_len=6, steps=15, seed=0, dictionary_words=True, refine_steps=2)
    res = pez.invert(images[:1], model=tiny_clip, config=cfg)
    assert res.prompt and dictionary_share(res.prompt) == 1.0
    assert all(dictionary_share(p.prompt) == 1.0 for p in res.top_k)


def test_readable_mode_is_a_flag_and_the_old_flags_still_work():
    from pez.cli import build_parser, config_from_args

    parse = lambda *a: config_from_args(build_parser().parse_args(["distill", "x", *a]))  # noqa: E731
    cfg = parse(
        "--dictionary-words",
        "--no-whole-words",
        "--no-safe",
        "--refine-steps",
        "3",
        "--prune-tolerance",
        "0.02",
        "--patience",
        "7",
    )
    assert (cfg.dictionary_words, cfg.whole_words, cfg.safe, cfg.refine_steps, cfg.prune_tolerance, cfg.patience) == (
        True, False, False, 3, 0.02, 7,
    )  # fmt: skip
    cfg = parse("--whole-words", "--safe")
    assert cfg.whole_words and cfg.safe and not cfg.dictionary_words
