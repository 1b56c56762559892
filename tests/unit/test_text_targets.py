"""Image + text targets (pez.inversion.image_targets with texts): one combined positive row whose
cosine is the weighted mean of the image and the text similarity."""

from __future__ import annotations

import pytest
import torch

import pez
from pez.engine.features import image_features, text_features
from pez.images import load_images

from ..conftest import noise_image


def test_text_target_is_the_weighted_mean_of_image_and_text_similarity(tiny_clip):
    img = noise_image(1)
    t = pez.image_targets(tiny_clip, [img], texts=["a red circle"], text_weight=3.0)
    assert t.positive.shape == (1, tiny_clip.feature_dim) and t.negative.shape[0] == 0
    f_img = image_features(tiny_clip, load_images([img]))
    f_txt = text_features(tiny_clip, ["a red circle"])
    probe = torch.nn.functional.normalize(torch.randn(4, tiny_clip.feature_dim), dim=-1)
    expected = ((probe @ f_img.T).squeeze(1) + 3.0 * (probe @ f_txt.T).squeeze(1)) / 4.0
    assert torch.allclose(t.objective(probe), expected, atol=1e-5)
    # Without text nothing changes; a bad weight is a clear error.
    assert torch.equal(pez.image_targets(tiny_clip, [img]).positive, f_img)
    with pytest.raises(pez.ConfigError, match="text_weight"):
        pez.image_targets(tiny_clip, [img], texts=["x"], text_weight=-1)


def test_invert_with_a_text_target_runs(tiny_clip):
    cfg = pez.InvertConfig(prompt_len=3, steps=4, report_every=2)
    res = pez.invert([noise_image(2)], tiny_clip, cfg, texts=["a blue star"], text_weight=1.0)
    assert res.prompt and res.steps_run == 4
