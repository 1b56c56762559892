"""CLIP features of images and texts, and the scores built on them (cosine similarities).

All features are returned L2-normalised as float32 on the model's device, so a score is a dot
product. These are the targets PEZ optimises towards and the metric the app shows. For a JointClip
(several CLIPs, pez.models.clip) they are the CLIPs' features joined (`JointClip.join`), so the dot
product, and so every score, is the weighted sum of the per-CLIP cosines.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ..config import MAX_TEXT_CHARS
from ..errors import ConfigError
from ..images import load_image
from ..models.clip import TextSpace

IMAGE_BATCH = 16  # images per encode_image call (bounds memory; a private detail, not a setting)


@torch.no_grad()
def image_features(clip: TextSpace, images: Sequence[Any]) -> torch.Tensor:
    """(K, D) unit CLIP features of K images (PIL images, paths, arrays...)."""
    if len(images) == 0:
        raise ConfigError("images: expected at least one image, received none")
    if len(clip.clips) > 1:  # each CLIP's vision tower in turn (an offloaded one visits the device only then)
        pil = [load_image(im) for im in images]
        return clip.join([image_features(c, pil) for c in clip.clips])
    pixels = torch.stack([clip.preprocess(load_image(im)) for im in images])  # (K, 3, H, W)
    out = []
    with clip.vision() as model:  # an offloaded vision tower visits the accelerator only here
        for chunk in pixels.split(IMAGE_BATCH):
            chunk = chunk.to(clip.device, clip.dtype)
            out.append(model.encode_image(chunk).float())
    return F.normalize(torch.cat(out), dim=-1)


def check_texts(texts: Sequence[str], what: str = "prompt") -> list[str]:
    if isinstance(texts, str):
        texts = [texts]
    out = []
    for t in texts:
        if not isinstance(t, str) or not t.strip():
            raise ConfigError(f"{what}: expected non-empty text, received {t!r}")
        if len(t) > MAX_TEXT_CHARS:
            raise ConfigError(f"{what}: expected at most {MAX_TEXT_CHARS} characters, received {len(t)}")
        out.append(t)
    return out


@torch.no_grad()
def text_features(clip: TextSpace, texts: Sequence[str]) -> torch.Tensor:
    """(n, D) unit CLIP features of texts, via the model's own encode_text (truncated to context)."""
    if len(clip.clips) > 1:
        return clip.join([text_features(c, texts) for c in clip.clips])
    ids = clip.tokenizer(check_texts(texts)).to(clip.device)  # (n, context)
    return F.normalize(clip.model.encode_text(ids).float(), dim=-1)


def score_texts(clip: TextSpace, texts: Sequence[str], images: Sequence[Any]) -> list[float]:
    """Mean cosine of each text against the images (the PEZ score of a prompt)."""
    sims = text_features(clip, texts) @ image_features(clip, images).T  # (n, K)
    return sims.mean(dim=1).tolist()


def image_similarity(clip: TextSpace, images: Sequence[Any], targets: Sequence[Any]) -> torch.Tensor:
    """(n, K) cosine between each image and each target image (the paper's image metric)."""
    return image_features(clip, images) @ image_features(clip, targets).T


__all__ = ["check_texts", "image_features", "image_similarity", "score_texts", "text_features"]
