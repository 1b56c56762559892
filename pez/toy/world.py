"""The toy world: coloured shapes on noisy backgrounds, their captions and their words.

Every image is one shape of one colour drawn with PIL at a random position, size and rotation
(hearts stay upright) on a noisy grey background; `render(colour, shape, seed)` is
deterministic. Seeds below `EVAL_SEED_BASE` are for training, seeds from it on are held out.
Words are read as the real ViT-B-32 BPE tokenizer reads them (the toy CLIP uses it).
"""

from __future__ import annotations

import math
from functools import cache, lru_cache

import numpy as np
from PIL import Image, ImageDraw

from ..errors import ConfigError

COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange", "white", "black")
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "heart")

# Base RGB of each colour; each render jitters it a little.
_RGB: dict[str, tuple[int, int, int]] = {
    "red": (215, 30, 30),
    "green": (35, 165, 55),
    "blue": (35, 65, 215),
    "yellow": (240, 215, 35),
    "purple": (135, 45, 175),
    "orange": (245, 135, 25),
    "white": (248, 248, 248),
    "black": (12, 12, 12),
}
EVAL_SEED_BASE = 1_000_000_000  # render seeds >= this are never used in training
DEFAULT_SIZE = 64  # pixels; the toy CLIP resizes to its own input size (TOY_CONFIG)
_SUPERSAMPLE = 4  # shapes are drawn this many times larger, then downsampled (anti-aliasing)
_RADIUS = (0.24, 0.42)  # shape radius range, as a fraction of the image side
_MAX_NOISE = 22.0  # background noise std is drawn from [0, _MAX_NOISE] (pixel values)
_MAX_SLOPE = 30.0  # background grey may change by up to this much across the image
_MAX_ANGLE = 2 * math.pi  # shapes are rotated by an angle drawn from [0, _MAX_ANGLE] ...
_HEART_TILT = math.pi / 6  # ... except hearts, which stay upright within +-30 degrees


def caption(colour: str, shape: str) -> str:
    """The true caption of an image of `shape` in `colour`."""
    _check_words(colour, shape)
    return f"a {colour} {shape}"


def _check_words(colour: str, shape: str) -> None:
    if colour not in COLOURS:
        raise ConfigError(f"colour: expected one of {list(COLOURS)}, received {colour!r}")
    if shape not in SHAPES:
        raise ConfigError(f"shape: expected one of {list(SHAPES)}, received {shape!r}")


# ---------------------------------------------------------------------------------------------
# Rendering


@cache
def _outline(shape: str) -> np.ndarray:
    """Polygon of `shape` centred on 0 with radius ~1, as (K, 2) points; circle is not a polygon."""
    if shape == "square":
        t = np.arange(4) * math.pi / 2 + math.pi / 4
        return np.stack([np.cos(t), np.sin(t)], 1) * 0.95
    if shape == "triangle":
        t = np.arange(3) * 2 * math.pi / 3 - math.pi / 2
        return np.stack([np.cos(t), np.sin(t)], 1) * 1.1
    if shape == "star":
        t = np.arange(10) * math.pi / 5 - math.pi / 2
        r = np.where(np.arange(10) % 2 == 0, 1.1, 0.45)
        return np.stack([r * np.cos(t), r * np.sin(t)], 1)
    if shape == "cross":
        a, b = 0.3, 0.95  # half arm width, arm length
        pts = [(a, b), (a, a), (b, a), (b, -a), (a, -a), (a, -b)]
        pts += [(-x, -y) for x, y in pts]
        return np.array(pts, dtype=float)
    if shape == "heart":
        t = np.linspace(0, 2 * math.pi, 64, endpoint=False)
        x = 16 * np.sin(t) ** 3
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))  # image y is down
        return np.stack([x, y + 2.5], 1) / 16.5
    raise ConfigError(f"shape: expected one of {list(SHAPES)}, received {shape!r}")


def _shape_mask(shape: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """Anti-aliased coverage mask (size, size) in [0, 1] of one randomly placed shape."""
    big = size * _SUPERSAMPLE
    radius = rng.uniform(*_RADIUS) * big
    cx, cy = rng.uniform(radius, big - radius, size=2)
    spin = rng.uniform()
    angle = (spin - 0.5) * 2 * _HEART_TILT if shape == "heart" else spin * _MAX_ANGLE
    canvas = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(canvas)
    if shape == "circle":
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=255)
    else:
        rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        pts = _outline(shape) @ rot.T * radius + (cx, cy)  # (K, 2)
        draw.polygon([tuple(p) for p in pts], fill=255)
    small = canvas.resize((size, size), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32)[..., None] / 255.0  # (size, size, 1)


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
    """Grey background (size, size, 3) with a random level, gradient and noise, in [0, 255]."""
    level = rng.uniform(60, 195)
    slope = rng.uniform(-_MAX_SLOPE, _MAX_SLOPE, size=2)  # grey change across the image, per axis
    ramp = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    grey = level + slope[0] * ramp[None, :] + slope[1] * ramp[:, None]  # (size, size)
    noise = rng.normal(0, rng.uniform(0, _MAX_NOISE), size=(size, size, 1)).astype(np.float32)
    return np.repeat(grey[..., None], 3, axis=2) + noise


def render(colour: str, shape: str, seed: int, size: int = DEFAULT_SIZE) -> Image.Image:
    """An RGB image of one `colour` `shape` on a noisy grey background; deterministic in seed."""
    _check_words(colour, shape)
    rng = np.random.default_rng(seed)
    bg = _background(size, rng)  # (size, size, 3)
    mask = _shape_mask(shape, size, rng)  # (size, size, 1)
    rgb = np.clip(np.array(_RGB[colour], np.float32) + rng.uniform(-22, 22, size=3), 0, 255)
    img = bg * (1 - mask) + rgb * mask + rng.normal(0, 4, size=(size, size, 3))  # sensor noise
    return Image.fromarray(np.clip(img, 0, 255).round().astype(np.uint8), "RGB")


# ---------------------------------------------------------------------------------------------
# Words, as the toy CLIP's tokenizer (ViT-B-32's BPE) reads them


@lru_cache(maxsize=1)
def tokenizer():
    """The toy CLIP's tokenizer: open_clip's ViT-B-32 BPE (the real 49,408-token vocabulary)."""
    import open_clip

    from ..quiet import quiet_open_clip

    with quiet_open_clip():
        return open_clip.get_tokenizer("ViT-B-32")


@cache
def _word_ids(words: tuple[str, ...]) -> tuple[int, ...]:
    """Token ids of single-token words; raises ConfigError for a word that is not one token."""
    tok = tokenizer()
    ids = []
    for w in words:
        enc = tok.encode(w)
        if len(enc) != 1:
            raise ConfigError(f"toy word: expected a single BPE token, received {w!r} -> {enc}")
        ids.append(enc[0])
    return tuple(ids)


def word_ids(words) -> list[int]:
    """Token ids of single-token words (e.g. COLOURS); ConfigError for a multi-token word."""
    return list(_word_ids(tuple(words)))


def words_in(prompt: str) -> tuple[list[str], list[str]]:
    """All colour words and all shape words of `prompt` in order, as the toy CLIP's tokenizer
    reads them (so "reds" is not "red", while a glued "vedsquare" still holds "square")."""
    ids = tokenizer().encode(prompt.lower())
    colour_of = dict(zip(word_ids(COLOURS), COLOURS))
    shape_of = dict(zip(word_ids(SHAPES), SHAPES))
    return [colour_of[i] for i in ids if i in colour_of], [shape_of[i] for i in ids if i in shape_of]


def find_words(prompt: str) -> tuple[str | None, str | None]:
    """The first colour and the first shape word of `prompt` (None where there is none)."""
    colours, shapes = words_in(prompt)
    return (colours[0] if colours else None), (shapes[0] if shapes else None)


__all__ = [
    "COLOURS",
    "DEFAULT_SIZE",
    "EVAL_SEED_BASE",
    "SHAPES",
    "caption",
    "find_words",
    "render",
    "tokenizer",
    "word_ids",
    "words_in",
]
