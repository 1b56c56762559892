"""Procedural painting for the benchmark worlds: silhouettes, surfaces, grounds, scenes, styles.

Everything is numpy on small square canvases (float32 RGB in [0, 255], shape (S, S, 3)) and is
deterministic in the numpy Generator it is given. Silhouettes are drawn with PIL on a canvas
SUPERSAMPLE times larger and box-filtered down (anti-aliasing). Nothing here knows captions:
bench/worlds/patterns.py and bench/worlds/atelier.py map words to these painters.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SUPERSAMPLE = 4

# ---------------------------------------------------------------------------------------------
# Silhouettes: (S, S, 1) coverage masks in [0, 1] of one randomly placed object


def _polygon(name: str) -> list[tuple[float, float]] | None:
    """Outline of a polygonal object centred on 0 with radius ~1 (image y points down)."""
    if name == "box":
        return [(-0.85, -0.85), (0.85, -0.85), (0.85, 0.85), (-0.85, 0.85)]
    if name == "kite":
        return [(0, -1.05), (0.6, -0.15), (0, 1.05), (-0.6, -0.15)]
    if name == "vase":
        t = np.linspace(-1, 1, 24)
        half = 0.25 + 0.45 * np.sin((t + 1) * math.pi * 0.55) ** 2  # neck, belly, narrow foot
        right = [(float(h), float(y)) for h, y in zip(half, t)]
        return [(-0.32, -1.0), (0.32, -1.0)] + right + [(-x, y) for x, y in reversed(right)]
    if name == "bell":
        t = np.linspace(-0.85, 0.8, 20)
        half = 0.2 + 0.7 * ((t + 0.85) / 1.65) ** 1.6
        right = [(float(h), float(y)) for h, y in zip(half, t)]
        return right + [(0.98, 0.95), (-0.98, 0.95)] + [(-x, y) for x, y in reversed(right)]
    if name == "fish":
        t = np.linspace(0, 2 * math.pi, 28, endpoint=False)
        body = [(0.25 + 0.7 * math.cos(a), 0.42 * math.sin(a)) for a in t]
        start = min(range(len(body)), key=lambda i: body[i][0])  # the tail joins the body's back
        body = body[start:] + body[:start]
        return [(-0.4, 0.0), (-1.0, -0.5), (-0.95, 0.5)] + body[1:] + [body[0]]
    if name == "key":
        return None  # drawn with ellipses and rectangles
    return None


def silhouette(name: str, size: int, rng: np.random.Generator, scale=(0.26, 0.4)) -> np.ndarray:
    """(size, size, 1) mask of object `name` at a random place, size and small rotation."""
    big = size * SUPERSAMPLE
    r = rng.uniform(*scale) * big
    cx, cy = rng.uniform(r * 1.05, big - r * 1.05, size=2)
    angle = rng.uniform(-0.35, 0.35)
    canvas = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(canvas)
    if name == "ball":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    elif name == "ring":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        q = 0.55 * r
        draw.ellipse([cx - q, cy - q, cx + q, cy + q], fill=0)
    elif name == "moon":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        dx, dy = 0.55 * r * math.cos(angle * 4), 0.55 * r * math.sin(angle * 4)
        draw.ellipse([cx + dx - 0.9 * r, cy + dy - 0.9 * r, cx + dx + 0.9 * r, cy + dy + 0.9 * r], fill=0)
    elif name == "bowl":
        draw.chord([cx - r, cy - 1.1 * r, cx + r, cy + 0.9 * r], 0, 180, fill=255)
        draw.rectangle([cx - 0.3 * r, cy + 0.75 * r, cx + 0.3 * r, cy + 0.95 * r], fill=255)
    elif name == "key":
        draw.ellipse([cx - r, cy - 0.45 * r, cx - 0.1 * r, cy + 0.45 * r], fill=255)
        draw.ellipse([cx - 0.75 * r, cy - 0.2 * r, cx - 0.35 * r, cy + 0.2 * r], fill=0)
        draw.rectangle([cx - 0.15 * r, cy - 0.12 * r, cx + r, cy + 0.12 * r], fill=255)
        for x in (0.45, 0.8):
            draw.rectangle([cx + x * r, cy, cx + (x + 0.14) * r, cy + 0.45 * r], fill=255)
        canvas = canvas.rotate(math.degrees(angle), center=(cx, cy))
    else:
        outline = _polygon(name)
        if outline is None:
            raise ValueError(f"silhouette: unknown object {name!r}")
        rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        pts = np.array(outline) @ rot.T * r + (cx, cy)
        draw.polygon([tuple(p) for p in pts], fill=255)
    small = canvas.resize((size, size), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32)[..., None] / 255.0


# ---------------------------------------------------------------------------------------------
# Surfaces: (S, S, 3) fills that the silhouette cuts out


def _grid(size: int, rng: np.random.Generator, angle: float | None = None):
    """Pixel coordinates (y, x) rotated by a random (or given) angle, in pixels."""
    a = rng.uniform(0, math.pi) if angle is None else angle
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    return x * math.cos(a) + y * math.sin(a), -x * math.sin(a) + y * math.cos(a)


def jitter(rgb, rng: np.random.Generator, amount: float = 18.0) -> np.ndarray:
    return np.clip(np.asarray(rgb, np.float32) + rng.uniform(-amount, amount, size=3), 0, 255)


LIGHT = np.array([245, 242, 235], np.float32)  # the second colour of patterns


def pattern(kind: str, rgb, size: int, rng: np.random.Generator) -> np.ndarray:
    """A colour fill: plain, striped, dotted or checkered (the colour against a light one)."""
    rgb = jitter(rgb, rng)
    period = rng.uniform(6.0, 9.0)
    u, v = _grid(size, rng)
    if kind == "plain":
        on = np.ones((size, size), np.float32)
    elif kind == "striped":
        on = (np.sin(2 * math.pi * u / period) > 0).astype(np.float32)
    elif kind == "checkered":
        on = ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
    elif kind == "dotted":
        du = (u / period) % 1 - 0.5
        dv = (v / period) % 1 - 0.5
        on = 1.0 - (du**2 + dv**2 < 0.09).astype(np.float32)  # light dots on the colour
    else:
        raise ValueError(f"pattern: unknown kind {kind!r}")
    on = on[..., None]
    return rgb * on + LIGHT * (1 - on)


def _turbulence(size: int, rng: np.random.Generator, octaves: int = 3) -> np.ndarray:
    """Smooth noise (size, size) in about [-1, 1]: upsampled random grids summed over octaves."""
    out = np.zeros((size, size), np.float32)
    for o in range(octaves):
        cells = 2 ** (o + 2)
        grid = rng.normal(size=(cells, cells)).astype(np.float32)
        img = Image.fromarray(grid).resize((size, size), Image.Resampling.BICUBIC)
        out += np.asarray(img, np.float32) / (2**o)
    return out / 1.75


def material(kind: str, size: int, rng: np.random.Generator, behind: np.ndarray) -> np.ndarray:
    """A material fill: wooden, marble, glass (shows `behind`, tinted) or golden."""
    u, v = _grid(size, rng, angle=rng.uniform(-0.3, 0.3) + (math.pi / 2 if rng.uniform() < 0.5 else 0))
    t = _turbulence(size, rng)
    if kind == "wooden":
        rings = np.sin(2 * math.pi * (u / rng.uniform(4.0, 6.0) + 1.2 * t)) * 0.5 + 0.5
        dark, light = jitter((105, 62, 28), rng, 12), jitter((175, 118, 62), rng, 12)
        return dark + (light - dark) * rings[..., None]
    if kind == "marble":
        veins = np.abs(np.sin(2 * math.pi * (u / rng.uniform(14.0, 22.0) + 2.5 * t))) ** 0.25
        base = jitter((232, 230, 226), rng, 8)
        return base * (0.55 + 0.45 * veins[..., None])
    if kind == "glass":
        tint = np.array([170, 225, 235], np.float32)
        shine = np.clip(1 - np.abs(u - rng.uniform(0.3, 0.6) * size) / 3.0, 0, 1)[..., None]
        return 0.45 * behind + 0.55 * tint * 0.9 + shine * 90
    if kind == "golden":
        ramp = (np.sin(2 * math.pi * u / size * rng.uniform(0.6, 1.2)) * 0.5 + 0.5)[..., None]
        return jitter((150, 105, 20), rng, 10) + ramp * np.array([100, 110, 60], np.float32) + 12 * t[..., None]
    raise ValueError(f"material: unknown kind {kind!r}")


# ---------------------------------------------------------------------------------------------
# Grounds and scenes: (S, S, 3) backgrounds


def ground(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A whole-image ground: grass, sand, snow or water."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    noise = rng.normal(size=(size, size)).astype(np.float32)
    if kind == "grass":
        blades = np.asarray(Image.fromarray(noise).filter(ImageFilter.BoxBlur(0)), np.float32)
        streak = np.repeat(rng.normal(size=(1, size)).astype(np.float32), size, 0) * 0.6 + blades
        return jitter((60, 140, 45), rng, 12) + streak[..., None] * np.array([10, 22, 8], np.float32)
    if kind == "sand":
        ripple = np.sin(2 * math.pi * (y / rng.uniform(7, 11) + 0.3 * np.sin(x / 9)))
        return jitter((215, 190, 135), rng, 10) + (ripple * 9 + noise * 6)[..., None]
    if kind == "snow":
        soft = _turbulence(size, rng)
        return jitter((238, 242, 250), rng, 6) + (soft * 8 + noise * 3)[..., None]
    if kind == "water":
        waves = np.sin(2 * math.pi * (y / rng.uniform(5, 8) + 0.15 * np.sin(x / 5)))
        return jitter((40, 95, 185), rng, 12) + (waves[..., None] * np.array([10, 18, 25], np.float32))
    raise ValueError(f"ground: unknown kind {kind!r}")


def scene(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A scene behind an object: "sea" (sky over sea), "desert" (dunes under a hot sky), "night"
    (dark sky with stars) or "forest" (trunks among leaves)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    noise = rng.normal(size=(size, size, 1)).astype(np.float32)
    horizon = rng.uniform(0.35, 0.6)
    if kind == "sea":
        sky = jitter((150, 200, 240), rng, 10) + 40 * (1 - y[..., None])
        sea = jitter((25, 80, 150), rng, 10) + 12 * np.sin(y * size * 1.3)[..., None]
        return np.where(y[..., None] < horizon, sky, sea) + 3 * noise
    if kind == "desert":
        dune = horizon + 0.08 * np.sin(2 * math.pi * (x * rng.uniform(0.8, 1.6) + rng.uniform()))
        sky = jitter((245, 190, 120), rng, 10)
        sand = jitter((205, 140, 70), rng, 10) - 30 * (y[..., None] - horizon)
        return np.where(y[..., None] < dune[..., None], sky, sand) + 4 * noise
    if kind == "night":
        base = jitter((18, 22, 60), rng, 8) + 25 * y[..., None]
        stars = (rng.uniform(size=(size, size, 1)) > 0.975) * 200.0
        return base + stars + 2 * noise
    if kind == "forest":
        leaves = jitter((40, 100, 45), rng, 12) + 25 * _turbulence(size, rng)[..., None]
        out = leaves.copy()
        for _ in range(rng.integers(3, 6)):
            x0 = rng.uniform(0, 1)
            w = rng.uniform(0.04, 0.09)
            out = np.where((np.abs(x - x0) < w)[..., None], jitter((80, 55, 35), rng, 10), out)
        return out + 4 * noise
    raise ValueError(f"scene: unknown kind {kind!r}")


# ---------------------------------------------------------------------------------------------
# Styles: image -> image


def style(kind: str, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """photo (camera noise), watercolor (soft, bleeding, paper grain), sketch (pencil lines on
    paper, no colour) or mosaic (flat tiles with grout lines)."""
    size = img.shape[0]
    if kind == "photo":
        return img + rng.normal(0, 4, size=img.shape)
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    if kind == "watercolor":
        soft = np.asarray(pil.filter(ImageFilter.GaussianBlur(rng.uniform(1.2, 1.8))), np.float32)
        washed = 0.7 * soft + 0.3 * 250  # pale, as pigment on paper
        grain = _turbulence(size, rng, octaves=2)[..., None] * 10
        edges = np.asarray(pil.filter(ImageFilter.FIND_EDGES).convert("L"), np.float32)[..., None]
        return washed + grain - 0.25 * edges
    if kind == "sketch":
        grey = np.asarray(pil.convert("L").filter(ImageFilter.GaussianBlur(0.6)), np.float32)
        edges = np.asarray(Image.fromarray(grey.astype(np.uint8)).filter(ImageFilter.FIND_EDGES), np.float32)
        u, _ = _grid(size, rng, angle=rng.uniform(0.6, 1.0))
        hatch = (np.sin(u * 1.6) > 0.4) * np.clip((140 - grey) / 140, 0, 1) * 70  # dark areas hatched
        paper = 238 + rng.normal(0, 3, size=(size, size))
        line = np.clip(paper - 2.2 * edges - hatch, 0, 255)
        return np.repeat(line[..., None], 3, axis=2)
    if kind == "mosaic":
        tile = int(rng.integers(4, 6))
        small = pil.resize((size // tile, size // tile), Image.Resampling.BOX)
        flat = np.asarray(small.resize((size, size), Image.Resampling.NEAREST), np.float32)
        y, x = np.mgrid[0:size, 0:size]
        grout = ((y % tile == 0) | (x % tile == 0))[..., None]
        return np.where(grout, 70.0, flat)
    raise ValueError(f"style: unknown kind {kind!r}")


def to_image(img: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(img, 0, 255).round().astype(np.uint8), "RGB")


__all__ = ["ground", "material", "pattern", "scene", "silhouette", "style", "to_image"]
