"""Beyond plain PEZ (pez.engine.polish and vocab): readable and safe vocabularies, refinement, pruning, early stop,
start prompts, the stuck hint, and the toy world's module split. Tiny random CLIP, fast."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
import torch

import pez
from pez.cli import build_parser, config_from_args
from pez.engine import budget, optim, polish
from pez.engine.safety import WordFilter
from pez.engine.vocab import VocabFilter, text_ids, text_rejector, vocabulary

from .conftest import PLAIN_SEARCH as PLAIN


@pytest.fixture
def unlimited_polish(monkeypatch):
    """Polish as long as its rounds last: these tests are about what refine and prune do, not
    about their share of the run's time (tests/unit/test_budget.py)."""
    monkeypatch.setattr(budget, "POLISH_SHARE", 0.999)


def _run(clip, images, config, should_stop=None):
    reports = list(pez.invert_stream(images, model=clip, config=config, should_stop=should_stop))
    return reports, reports[-1].result


# ---------------------------------------------------------------------------------------------
# Vocabulary: no broken text ever, whole words, the safety list


@pytest.mark.parametrize(
    "vf",
    [
        VocabFilter(whole_words=False, safe=False),
        VocabFilter(whole_words=True, safe=False),
        VocabFilter(safe=True, whole_words=False),
        VocabFilter(ascii_only=True, whole_words=False, safe=False),
    ],
)
def test_no_token_with_broken_text_is_ever_allowed(tiny_clip, vf):
    vocab = vocabulary(tiny_clip)
    broken = [i for i, t in enumerate(vocab.texts) if "\ufffd" in t]
    assert len(broken) > 100  # partial UTF-8 bytes of the BPE
    assert not set(broken) & set(vocab.allowed_ids(vf).tolist())


def test_runs_never_return_broken_text(tiny_clip, images):
    for cfg in (PLAIN.replace(whole_words=False, safe=False), PLAIN.replace(refine_steps=2, prune_tolerance=0.02)):
        _, res = _run(tiny_clip, images[:1], cfg)
        assert all("\ufffd" not in p.prompt for p in res.top_k)


def test_whole_words_only_when_on(tiny_clip, images):
    vocab = vocabulary(tiny_clip)
    whole = vocab.allowed_ids(VocabFilter(whole_words=True, safe=False)).tolist()
    every = vocab.allowed_ids(VocabFilter(whole_words=False, safe=False)).tolist()
    assert all(vocab.texts[i].endswith(" ") for i in whole)  # "cat</w>" decodes to "cat "
    assert any(not vocab.texts[i].endswith(" ") for i in every)  # pieces are allowed when off
    assert 20_000 < len(whole) < len(every)
    _, res = _run(tiny_clip, images[:1], PLAIN.replace(whole_words=True, prompt_len=6))
    ids = text_ids(tiny_clip, res.prompt)
    assert all(vocab.texts[i].endswith(" ") for i in ids), res.prompt


def test_safety_filter_matches_whole_words_and_inflections_not_substrings():
    safety = WordFilter.default()
    for word in ("ass", "asses", "rapist", "rapists", "fucking"):
        assert safety.blocks_word(word), word
    for word in ("class", "classic", "grass", "assistant", "passage", "scunthorpe", "hello", "father", "striped"):
        assert not safety.blocks_word(word), word
    assert safety.blocks_text("a green triangle, rapist") and not safety.blocks_text("a green class")


def test_safe_vocabulary_keeps_class_and_user_blocklist_adds(tiny_clip):
    vocab, tok = vocabulary(tiny_clip), tiny_clip.tokenizer
    cls, ass, rapist = (tok.encode(w)[0] for w in ("class", "ass", "rapist"))
    safe = set(vocab.allowed_ids(VocabFilter(safe=True, whole_words=False)).tolist())
    assert cls in safe and ass not in safe and rapist not in safe
    unsafe = set(vocab.allowed_ids(VocabFilter(safe=False, whole_words=False)).tolist())
    assert {ass, rapist} <= unsafe  # safe=False turns the list off
    both = set(vocab.allowed_ids(VocabFilter.from_config(pez.InvertConfig(blocklist=("cat",)))).tolist())
    assert rapist not in both and tok.encode("cat")[0] not in both  # defaults are safe; user words add


def test_vocabulary_filter_defaults_are_the_configs():
    assert VocabFilter.from_config(pez.InvertConfig()) == VocabFilter()  # one source of defaults
    assert (VocabFilter().whole_words, VocabFilter().safe) == (pez.InvertConfig().whole_words, pez.InvertConfig().safe)


def test_glued_pieces_forming_a_blocked_word_are_never_returned(tiny_clip):
    reject = text_rejector(pez.InvertConfig(blocklist=("zebra",)))
    assert reject("a zebras run") and reject("rapist") and not reject("a classy class")
    assert not text_rejector(pez.InvertConfig(safe=False))("rapist")


# ---------------------------------------------------------------------------------------------
# Refinement and pruning


@pytest.mark.usefixtures("unlimited_polish")
def test_refinement_never_lowers_the_honest_score(tiny_clip, images):
    cfg = PLAIN.replace(steps=8, refine_steps=6, prompt_len=5)
    reports, res = _run(tiny_clip, images[:2], cfg)
    phases = [r.phase for r in reports]
    assert "refine" in phases and phases[-1] == "search"  # the final report closes the run
    refine_scores = [r.current_score for r in reports if r.phase == "refine"]
    assert all(b >= a for a, b in zip(refine_scores, refine_scores[1:]))
    assert res.stats["refine_score"] >= res.stats["search_score"]
    assert res.score == pytest.approx(res.stats["refine_score"])
    # The reported score is the score of the returned text, as pez.score_texts computes it.
    assert res.score == pytest.approx(pez.score_texts(tiny_clip, [res.prompt], images[:2])[0], abs=1e-4)
    assert reports[-1].best_prompt == res.prompt


@pytest.mark.usefixtures("unlimited_polish")
def test_pruning_stays_within_tolerance_and_shortens(tiny_clip, images):
    cfg = PLAIN.replace(steps=10, prompt_len=8, refine_steps=0, prune_tolerance=0.2)
    reports, res = _run(tiny_clip, images[:1], cfg)
    assert any(r.phase == "prune" for r in reports)
    assert res.stats["pruned_tokens"] >= 1
    assert res.score >= res.stats["search_score"] - 0.2
    assert len(text_ids(tiny_clip, res.prompt)) <= 8 - res.stats["pruned_tokens"]
    assert res.score == pytest.approx(pez.score_texts(tiny_clip, [res.prompt], images[:1])[0], abs=1e-4)


@pytest.mark.usefixtures("unlimited_polish")
@pytest.mark.parametrize("phase", ["search", "refine", "prune"])
def test_stop_keeps_the_best_in_each_phase(tiny_clip, images, phase):
    cfg = PLAIN.replace(steps=12, prompt_len=8, refine_steps=20, prune_tolerance=0.2)
    seen = {"stop": False}
    reports = []
    for rep in pez.invert_stream(images[:1], model=tiny_clip, config=cfg, should_stop=lambda: seen["stop"]):
        reports.append(rep)
        if rep.phase == phase and rep.best_prompt:  # the search's first report (step 0) has none yet
            seen["stop"] = True
    res = reports[-1].result
    assert res.stopped
    later = {"search": ("refine", "prune"), "refine": ("prune",), "prune": ()}[phase]
    assert not any(r.phase in later for r in reports)
    best = max(r.best_score for r in reports[:-1])
    if phase == "prune":  # the shortest within tolerance of the best so far
        assert res.score >= best - 0.2
    else:
        assert res.score == pytest.approx(best)
    assert res.score == pytest.approx(pez.score_texts(tiny_clip, [res.prompt], images[:1])[0], abs=1e-4)


# ---------------------------------------------------------------------------------------------
# Early stop, stuck hint, start prompt


def test_early_stop_on_a_plateau(tiny_clip, images):
    _, res = _run(tiny_clip, images[:1], PLAIN.replace(steps=2_000, patience=5, candidates=1))
    assert res.steps_run < 2_000 and not res.stopped
    _, full = _run(tiny_clip, images[:1], PLAIN.replace(steps=40, patience=0, candidates=1))
    assert full.steps_run == 40


def test_stuck_hint_criterion(monkeypatch, tiny_clip, images):
    assert optim.stuck_hint(200, 0.10, 0.12) == pez.config.STUCK_HINT
    assert optim.stuck_hint(200, 0.10, 0.40) == ""
    assert optim.stuck_hint(10, 0.10, 0.10) == ""  # too early to say
    stats = {"search_score": 0.06, "refine_score": 0.58}  # swaps lifted it far: the search was stuck
    assert polish.polish_hint("", stats) == pez.config.STUCK_HINT
    assert polish.polish_hint("", {"search_score": 0.30, "refine_score": 0.32}) == ""
    rescued = {"search_score": 0.08, "refine_score": 0.59, "prune_score": 0.96}  # pruning found it
    assert polish.polish_hint(pez.config.STUCK_HINT, rescued) == ""
    monkeypatch.setattr(optim, "STUCK_MIN_STEPS", 4)
    monkeypatch.setattr(optim, "STUCK_MIN_GAIN", 10.0)  # nothing can gain this much: always stuck
    reports, res = _run(tiny_clip, images[:1], PLAIN.replace(steps=12))
    at_8 = next(r for r in reports if r.step == 8)
    assert at_8.hint == pez.config.STUCK_HINT and res.hint == pez.config.STUCK_HINT
    assert "hint" in res.to_dict()


def test_init_prompt_starts_from_the_users_text(tiny_clip, images):
    cfg = PLAIN.replace(steps=1, prompt_len=6, candidates=1, init_prompt="a photo of a cat", whole_words=False)
    _, res = _run(tiny_clip, images[:1], cfg)
    assert res.prompt.startswith("a photo of a cat")  # step 1 projects the start prompt itself
    # Truncated to prompt_len; disallowed tokens are re-projected onto allowed ones.
    cfg = cfg.replace(prompt_len=3, blocklist=("cat",), init_prompt="cat photo of a dog")
    _, res = _run(tiny_clip, images[:1], cfg)
    words = res.prompt.split()
    assert "cat" not in res.prompt and words[1:3] == ["photo", "of"]


def test_cli_flags_for_the_new_settings():
    args = build_parser().parse_args(
        ["distill", "x", "--no-safe", "--no-whole-words", "--refine-steps", "3", "--init-prompt", "a cat"]
    )
    cfg = config_from_args(args)
    assert (cfg.safe, cfg.whole_words, cfg.refine_steps, cfg.init_prompt) == (False, False, 3, "a cat")
    assert config_from_args(build_parser().parse_args(["distill", "x"])) == pez.InvertConfig()
    with pytest.raises(pez.ConfigError, match="prune_tolerance"):
        pez.InvertConfig(prune_tolerance=0.5).validate()


# ---------------------------------------------------------------------------------------------
# The toy world's modules


def _imports(path: Path) -> set[str]:
    """The modules `path` imports relatively, as written ("..errors", ".world")."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            out.add("." * node.level + (node.module or ""))
    return out


def test_toy_package_has_no_import_cycle_and_keeps_names():
    from pez import toy
    from pez.toy import clip, generator, train, world

    folder = Path(toy.__file__).parent
    for path in folder.glob("*.py"):
        assert not any(m.lstrip(".").startswith("models") for m in _imports(path)), path
    assert _imports(folder / "world.py") <= {"..config", "..errors", "..quiet"}  # the world needs no model
    assert toy.render is world.render and toy.create_toy_clip is clip.create_toy_clip
    assert toy.toy_generate is generator.toy_generate and toy.TrainConfig is train.TrainConfig
    assert pez.WeightsNotFoundError is pez.errors.WeightsNotFoundError


def test_result_score_is_finite_with_defaults(tiny_clip, images):
    _, res = _run(tiny_clip, images[:1], pez.InvertConfig(prompt_len=4, steps=10, refine_steps=2, seed=1))
    assert math.isfinite(res.score) and res.prompt and isinstance(res.stats["search_steps"], int)
    assert torch.is_tensor(vocabulary(tiny_clip).mask(VocabFilter(safe=True, whole_words=True)))


def test_stuck_hint_is_measured_on_the_objectives_scale():
    """A run at 2.3-2.6 with images to avoid at weight 3 (scale 4): refinement gains 0.15-0.2,
    which is 0.04-0.05 of the scale, not a poor basin."""
    stats = {"search_score": 2.283, "refine_score": 2.432, "prune_score": 2.432, "order_score": 2.441}
    assert polish.polish_hint("", stats, scale=4.0) == ""
    low = {"search_score": 0.06, "refine_score": 0.58, "prune_score": 0.58}  # README's green triangle, seed 0
    assert polish.polish_hint("", low, scale=1.0) == pez.config.STUCK_HINT
    assert polish.polish_hint("", {k: 4 * v for k, v in low.items()}, scale=4.0) == pez.config.STUCK_HINT
    assert optim.stuck_hint(200, 1.40, 1.485, scale=4.0) == pez.config.STUCK_HINT  # gained 0.02 of 4
    assert optim.stuck_hint(200, 1.44, 1.485, scale=1.5) == ""  # 1.485 is 99% of what 1.5 allows
    assert optim.stuck_hint(200, 0.90, 0.93) == ""  # a high score is never stuck
    high = {"search_score": 0.21, "refine_score": 0.919, "prune_score": 0.919}
    assert polish.polish_hint("", high) == ""  # swaps got it out of its basin: a good prompt


def test_targets_scale():
    unit = torch.nn.functional.normalize(torch.randn(2, 8), dim=-1)
    assert optim.Targets(unit, unit[:0]).scale == pytest.approx(1.0)
    assert optim.Targets(unit, unit[:1], negative_weight=3.0).scale == pytest.approx(4.0)
    assert optim.Targets(unit[:0], unit[:1], negative_weight=2.0).scale == pytest.approx(2.0)
    mixed = (unit[:1] + unit[1:]) / 2  # an image and a text mixed: shorter than a unit row
    assert optim.Targets(mixed, unit[:0]).scale < 1.0


def test_a_high_scoring_toy_run_is_not_called_stuck():
    """The green triangle (toy, prompt length 8, seed 0): refinement lifts the search's best from
    ~0.2 to ~0.92; that run is good and no longer gets "the search looks stuck"."""
    from pez.toy.world import render

    res = pez.invert([render("green", "triangle", 0)], "toy", pez.InvertConfig(prompt_len=8, seed=0, patience=150))
    assert res.score >= pez.config.STUCK_MAX_SCORE and res.hint == ""
