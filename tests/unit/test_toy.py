"""Tests of the toy world (pez.toy): rendering, words, the toy generator, the shipped toy CLIP.

Fast (a few seconds): no PEZ runs here; see test_toy_quality.py for PEZ against the toy CLIP.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

from pez import toy
from pez.config import ConfigError
from pez.errors import WeightsNotFoundError
from pez.toy.train import CaptionSampler
from pez.toy.world import tokenizer

needs_weights = pytest.mark.skipif(
    not (toy.ASSETS_DIR / toy.WEIGHTS_FILE).is_file(), reason="toy CLIP not built (python -m pez.toy train)"
)


@pytest.fixture(scope="module")
def shipped():
    """The shipped toy CLIP and its preprocess."""
    return toy.create_toy_clip()


def test_render_is_deterministic_and_rgb():
    a = toy.render("red", "circle", seed=3)
    b = toy.render("red", "circle", seed=3)
    c = toy.render("red", "circle", seed=4)
    assert a.mode == "RGB" and a.size == (toy.DEFAULT_SIZE, toy.DEFAULT_SIZE)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))
    assert toy.render("blue", "star", seed=0, size=32).size == (32, 32)


def test_render_draws_the_colour():
    img = np.asarray(toy.render("red", "square", seed=1)).astype(int)  # (H, W, 3)
    reddish = (img[..., 0] > 150) & (img[..., 1] < 90) & (img[..., 2] < 90)
    assert reddish.mean() > 0.03  # the shape covers a visible part of the image


def test_invalid_words_list_the_choices():
    with pytest.raises(ConfigError, match="expected one of"):
        toy.render("pink", "circle", seed=0)
    with pytest.raises(ConfigError, match="shape"):
        toy.caption("red", "blob")


def test_words_are_single_distinct_tokens():
    ids = toy.word_ids(toy.COLOURS + toy.SHAPES)  # raises when a word is not one BPE token
    assert len(set(ids)) == len(toy.COLOURS) + len(toy.SHAPES)
    assert toy.caption("red", "circle") == "a red circle"
    tok = tokenizer()
    assert tok.encode(toy.caption("yellow", "heart")) == toy.word_ids(["a", "yellow", "heart"])


def test_caption_sampler_batches():
    cfg = toy.TrainConfig(batch_size=8, junk_captions=4, near_misses=6, text_len=12)
    sampler = CaptionSampler(cfg, torch.Generator().manual_seed(0))
    labels = torch.arange(8) * 5  # label = colour * len(SHAPES) + shape
    ids = sampler.batch(labels)  # (8 captions + 4 junk + 6 near misses, text_len)
    assert ids.shape == (18, 12)
    assert (ids[:, 0] == sampler.sot).all() and ((ids == sampler.eot).sum(1) == 1).all()
    words = torch.tensor(sampler.colour_ids + sampler.shape_ids)
    for row, label in zip(ids[:8], labels.tolist()):
        assert sampler.colour_ids[label // len(toy.SHAPES)] in row.tolist()
        assert sampler.shape_ids[label % len(toy.SHAPES)] in row.tolist()
        assert torch.isin(row, words).sum() == 2
    assert not torch.isin(ids[8:12], words).any()  # junk strings hold no colour or shape word
    assert set(torch.isin(ids[12:], words).sum(1).tolist()) <= {1, 3}  # one word off


def test_encode_ids_matches_encode_text():
    model = toy.build_model(0).eval()
    tokens = tokenizer()(["a red circle", "star blue with some other words"])  # (2, 77)
    with torch.no_grad():
        full = model.encode_text(tokens)
        short = toy.encode_ids(model, tokens[:, :10])
    torch.testing.assert_close(short, full)


def test_toy_generate_draws_the_named_words():
    images = toy.toy_generate("a photo of a blue star, trending", seed=5, num_images=2)
    assert len(images) == 2
    assert np.array_equal(np.asarray(images[0]), np.asarray(toy.render("blue", "star", 5)))
    assert np.array_equal(np.asarray(images[1]), np.asarray(toy.render("blue", "star", 6)))
    # First colour and first shape win; glued sub-words still count, plural forms do not.
    assert toy.find_words("Green hearts and a red circle, then a square") == ("green", "circle")
    assert toy.find_words("xyzsquare purple") == ("purple", "square")


def test_toy_generate_without_words_still_draws():
    images = toy.toy_generate("a photograph of nothing much", seed=1, num_images=3, size=32)
    assert [im.size for im in images] == [(32, 32)] * 3
    again = toy.toy_generate("a photograph of nothing much", seed=1, num_images=3, size=32)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(images, again))


def test_missing_weights_say_how_to_build(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="python -m pez.toy train"):
        toy.create_toy_clip(tmp_path)


def test_save_and_load_round_trip(tmp_path):
    model = toy.build_model(1).eval()
    toy.save_assets(model, {"note": "untrained"}, tmp_path)
    loaded, preprocess = toy.create_toy_clip(tmp_path)
    assert not loaded.training and next(loaded.parameters()).dtype == torch.float32
    x = preprocess(toy.render("green", "cross", 0)).unsqueeze(0)  # (1, 3, S, S)
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_image(x), model.encode_image(x), atol=2e-2, rtol=2e-2)


def test_training_smoke():
    cfg = toy.TrainConfig(steps=2, batch_size=8, junk_captions=4, images_per_combo=1, eval_per_combo=1)
    model, metrics = toy.train_model(cfg)
    assert metrics["steps"] == 2 and 0.0 <= metrics["zero_shot_accuracy"] <= 1.0
    assert not model.training and not model.token_embedding.sparse


@needs_weights
def test_shipped_model_zero_shot_accuracy(shipped):
    model, _ = shipped
    # Two held-out renders of each of the 48 combos, seeds never used in training.
    assert toy.zero_shot_accuracy(model, per_combo=2) >= 0.9


@needs_weights
def test_shipped_model_through_load_clip(shipped):
    import pez

    clip = pez.load_clip("toy", device="cpu")
    assert clip.tokenizer.vocab_size == 49408 if hasattr(clip.tokenizer, "vocab_size") else True
    assert clip.context_length == 77 and clip.model.token_embedding.weight.shape[0] == 49408
    images = [toy.render("orange", "triangle", toy.EVAL_SEED_BASE + 7)]
    right, wrong = pez.score_texts(clip, ["a orange triangle", "a blue circle"], images)
    assert right > wrong


@needs_weights
def test_shipped_assets_are_small():
    size = (toy.ASSETS_DIR / toy.WEIGHTS_FILE).stat().st_size
    assert size < 10_000_000
    for colour, shape in toy.EXAMPLES:
        assert (toy.EXAMPLES_DIR / f"toy_{colour}_{shape}.png").is_file()
