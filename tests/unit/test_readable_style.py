"""The prompt style (issue 22): one setting (config, CLI, API), the readable style's parts
(dictionary words, no repeats, words that earn their place, an order that scores best) and top-k
alternatives that differ in their words. Tiny random CLIP and the toy CLIP; no timing."""

from __future__ import annotations

import itertools

import pytest
import torch

import pez
import pez.toy
from pez.cli import build_parser, config_from_args
from pez.config import DIVERSE_JACCARD, PROMPT_STYLES, READABLE_TOLERANCE
from pez.engine import polish
from pez.engine.readability import dictionary_share, is_readable, repeated_words
from pez.results import ScoredPrompt


def test_the_style_is_one_setting_and_resolves_the_old_ones():
    cfg = pez.InvertConfig()
    assert cfg.prompt_style == "readable" and cfg.readable
    r = cfg.resolved()
    assert r.dictionary_words and r.whole_words and r.prune_tolerance == READABLE_TOLERANCE
    assert pez.InvertConfig(prune_tolerance=0.02).resolved().prune_tolerance == 0.02  # a set tolerance wins
    m = pez.InvertConfig(prompt_style="max-score", dictionary_words=True, prune_tolerance=0.1).resolved()
    assert not m.dictionary_words and m.prune_tolerance == 0.0 and not m.readable
    c = pez.InvertConfig(prompt_style="custom", dictionary_words=True, whole_words=False)
    assert c.resolved() == c
    with pytest.raises(pez.ConfigError, match="prompt_style: expected one of"):
        pez.InvertConfig(prompt_style="pretty")


def test_the_style_is_a_flag_and_old_flags_alone_mean_custom():
    parse = lambda *a: config_from_args(build_parser().parse_args(["invert", "x.png", *a]))  # noqa: E731
    assert parse().prompt_style == "readable"
    for style in PROMPT_STYLES:
        assert parse("--prompt-style", style).prompt_style == style
    assert parse("--prune-tolerance", "0.01").prompt_style == "custom"  # today's flags keep working
    assert parse("--no-whole-words").prompt_style == "custom"
    assert parse("--dictionary-words", "--prompt-style", "max-score").prompt_style == "max-score"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["invert", "x.png", "--prompt-style", "pretty"])


def test_unique_ids_and_orders():
    assert polish.unique_ids([5, 7, 5, 9, 7]) == [5, 7, 9]
    orders = polish._orders([1, 2, 3], 24, torch.Generator().manual_seed(0))
    assert sorted(map(tuple, orders)) == sorted(p for p in itertools.permutations([1, 2, 3]) if p != (1, 2, 3))
    long = polish._orders(list(range(10)), 24, torch.Generator().manual_seed(0))
    assert len(long) == 24 and len(set(map(tuple, long))) == 24 and long[0] == list(range(10))[::-1]


def test_diverse_top_skips_prompts_that_differ_by_one_word():
    ps = [
        ScoredPrompt("a b c d e f", 0.9),
        ScoredPrompt("a b c d e g", 0.89),  # one word apart: left out
        ScoredPrompt("x y z d", 0.8),
        ScoredPrompt("a b c x y z", 0.7),  # overlaps both by half: kept
        ScoredPrompt("x y z d q", 0.6),
    ]
    out = polish.diverse_top(ps, 5)
    assert [p.prompt for p in out] == ["a b c d e f", "x y z d", "a b c x y z"]
    assert polish.diverse_top(ps, 1) == ps[:1]


def test_readability_helpers():
    assert repeated_words("red Red circle, circle") == 2
    assert is_readable("red circle") and not is_readable("red red") and not is_readable("red 🔒")
    assert not is_readable("red ulty") and not is_readable("")


@pytest.fixture(scope="module")
def toy_run():
    clip = pez.load_clip("toy", device="cpu")
    image = pez.toy.render("red", "circle", 1_234_567_890)
    cfg = pez.InvertConfig(steps=60, seed=0, refine_steps=20)  # the default style: readable
    reports = list(pez.invert_stream([image], model=clip, config=cfg))
    return clip, image, reports


def test_a_readable_run_returns_a_readable_prompt_with_its_own_score(toy_run):
    clip, image, reports = toy_run
    res = reports[-1].result
    assert res.prompt and is_readable(res.prompt) and dictionary_share(res.prompt) == 1.0
    assert all(any(c.isalpha() for c in w) for w in res.prompt.split())  # no junk chunk
    assert res.score == pytest.approx(pez.score_texts(clip, [res.prompt], [image])[0], abs=1e-4)
    s = res.stats
    assert s["order_score"] >= s["prune_score"] >= s["refine_score"] - READABLE_TOLERANCE  # order never lowers it
    assert s["prune_passes"] >= 1 and {"refine", "search"} <= {r.phase for r in reports}


def test_a_readable_runs_alternatives_are_readable_and_differ_in_words(toy_run):
    res = toy_run[2][-1].result
    assert res.top_k[0].prompt == res.prompt
    assert all(is_readable(p.prompt) for p in res.top_k)
    for a, b in itertools.combinations(res.top_k, 2):
        wa, wb = set(a.prompt.split()), set(b.prompt.split())
        assert len(wa & wb) / len(wa | wb) <= DIVERSE_JACCARD


def test_every_word_of_a_readable_prompt_earns_its_place(tiny_clip, images):
    """The pruning path: removing the cheapest word down to one, the shortest prompt within the
    tolerance of the path's best is kept, so removing any word of it lowers the score."""
    cfg = pez.InvertConfig(prompt_len=8, steps=20, seed=1, refine_steps=0, prune_tolerance=0.02)
    res = pez.invert(images[:1], model=tiny_clip, config=cfg)
    assert not repeated_words(res.prompt)
    words = res.prompt.split()
    assert res.stats["prune_passes"] >= 1 and len(words) < 8
    if len(words) > 1:
        without = [" ".join(words[:i] + words[i + 1 :]) for i in range(len(words))]
        assert max(pez.score_texts(tiny_clip, without, images[:1])) < res.score


def test_judge_by_regeneration_picks_the_candidate_whose_drawing_is_closest():
    image = pez.toy.render("orange", "star", 1_234_567_891)
    cfg = pez.InvertConfig(steps=40, seed=0, refine_steps=5, prompt_style="max-score", judge="regenerate")
    res = pez.invert([image], model="toy", config=cfg)
    s = res.stats
    assert s["regen_candidates"] == len(res.top_k) >= 1 and res.top_k[0].prompt == res.prompt
    assert s["regen_similarity"] >= s["regen_similarity_by_score"]
    assert res.score == pytest.approx(pez.score_texts(pez.load_clip("toy"), [res.prompt], [image])[0], abs=1e-4)
    with pytest.raises(pez.ConfigError, match="judge: 'regenerate' needs a model pair"):
        pez.invert([image], model="random:tiny", config=cfg)
    with pytest.raises(pez.ConfigError, match="judge: expected one of"):
        pez.InvertConfig(judge="vibes")
    args = build_parser().parse_args(["invert", "x.png", "--judge", "regenerate"])
    assert config_from_args(args).judge == "regenerate"
    assert config_from_args(build_parser().parse_args(["invert", "x.png"])).judge == "score"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_readable_run_stopped_before_its_polish_has_no_word_twice(seed):
    """Walkthrough: Stop keeps the search's best, which repeated words ("red red", "competent
    competent") although the readable style promises none twice. A stopped run drops the repeats
    and reports the score of the text it returns."""
    clip = pez.load_clip("toy", device="cpu")
    image = pez.toy.render("red", "circle", pez.toy.EVAL_SEED_BASE + 720_000 + seed)
    steps = itertools.count()
    cfg = pez.InvertConfig(steps=200, seed=seed, report_every=1)
    res = None
    for rep in pez.invert_stream([image], model=clip, config=cfg, should_stop=lambda: next(steps) >= 40):
        res = rep.result or res
    assert res is not None and res.stopped and "refine_score" not in res.stats  # no polish ran
    assert res.prompt and not repeated_words(res.prompt), res.prompt
    assert res.score == pytest.approx(pez.score_texts(clip, [res.prompt], [image])[0], abs=1e-4)
