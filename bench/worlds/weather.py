"""The "weather" world (HELD OUT, built after "atelier" was spent): a landmark on a terrain, in
some weather, at a time of day.

"a lighthouse on a cliff in fog at dusk", "a windmill in a meadow in rain at noon", "a tent by a
lake in snowfall at midnight", "a castle on a hill in lightning at dawn". Its words (buildings,
terrains, weather, times of day) appear in no other benchmark of the project, and its pictures
are whole scenes whose light and weather change every pixel (not an object on a background).

HELD-OUT RULE: measure on this world once, at the very end, with the final defaults fixed
beforehand. Never tune a default, a constant or a method on it. bench/worlds/weather/README.md
repeats this.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from . import paint
from .world import Labels, World

OBJECTS = ("lighthouse", "windmill", "tent", "castle", "barn")
TERRAINS = {"meadow": "in a meadow", "hill": "on a hill", "lake": "by a lake", "cliff": "on a cliff"}
WEATHERS = ("rain", "fog", "snowfall", "lightning")
TIMES = ("dawn", "noon", "dusk", "midnight")


def caption(lb: Labels) -> str:
    return f"a {lb['object']} {TERRAINS[lb['terrain']]} in {lb['weather']} at {lb['time']}"


def variant(lb: Labels, rng: np.random.Generator) -> str:
    """A training caption: the true one or another wording; some leave a slot out (alt-texts do)."""
    obj, where, weather, time = lb["object"], TERRAINS[lb["terrain"]], lb["weather"], lb["time"]
    if rng.uniform() < 0.12:
        where = ""
    if rng.uniform() < 0.1:
        weather = ""
    if rng.uniform() < 0.1:
        time = ""
    head = " ".join(w for w in (f"a {obj}", where) if w)
    tail = " ".join(w for w in (f"in {weather}" if weather else "", f"at {time}" if time else "") if w)
    templates = [
        f"{head} {tail}".strip(),
        f"a photo of {head} {tail}".strip(),
        ", ".join(w for w in (head, weather, time) if w),
        " ".join(w for w in (time, weather, "over", head) if w) if (time or weather) else head,
    ]
    return templates[int(rng.choice(4, p=[0.55, 0.15, 0.2, 0.1]))]


# ---------------------------------------------------------------------------------------------
# Painting: sky by the time of day, terrain, the landmark standing on it, then the weather

SKIES = {  # (top colour, horizon colour, light on the land (RGB multipliers))
    "dawn": ((120, 110, 170), (250, 175, 150), (0.85, 0.72, 0.7)),
    "noon": ((60, 120, 220), (175, 215, 245), (1.05, 1.05, 1.0)),
    "dusk": ((70, 40, 110), (245, 120, 50), (0.75, 0.5, 0.4)),
    "midnight": ((5, 8, 30), (25, 35, 70), (0.25, 0.3, 0.45)),
}
GREEN = (70, 135, 55)
WATER = (45, 95, 160)
ROCK = (120, 110, 100)


def _sky(time: str, size: int, rng: np.random.Generator, horizon: float) -> np.ndarray:
    top, bottom, _ = SKIES[time]
    y = np.linspace(0, 1, size, dtype=np.float32)[:, None, None] / max(horizon, 1e-3)
    t = np.clip(y, 0, 1)
    sky = paint.jitter(top, rng, 8) * (1 - t) + paint.jitter(bottom, rng, 8) * t
    sky = np.broadcast_to(sky, (size, size, 3)).copy()
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    if time == "midnight":  # stars and a moon
        sky += (rng.uniform(size=(size, size, 1)) > 0.985) * 170.0
        cx, cy = rng.uniform(0.15, 0.85) * size, rng.uniform(0.08, 0.25) * size
        sky = np.where((((xx - cx) ** 2 + (yy - cy) ** 2) < (0.06 * size) ** 2)[..., None], 225.0, sky)
    else:  # the sun: low at the left at dawn, high at noon, low at the right at dusk
        cx = {"dawn": rng.uniform(0.1, 0.3), "noon": rng.uniform(0.4, 0.6), "dusk": rng.uniform(0.7, 0.9)}[time]
        cy = (horizon - 0.06) if time != "noon" else rng.uniform(0.06, 0.14)
        d2 = (xx - cx * size) ** 2 + (yy - cy * size) ** 2
        colour = np.array((255, 250, 225) if time == "noon" else (255, 210, 120), np.float32)
        glow = np.exp(-d2 / (2 * (0.12 * size) ** 2))[..., None]
        sky = sky * (1 - 0.5 * glow) + colour * 0.5 * glow
        sky = np.where((d2 < (0.055 * size) ** 2)[..., None], colour, sky)
    return sky


def _terrain(kind: str, size: int, rng: np.random.Generator, horizon: float):
    """(land colours (S, S, 3), land mask (S, S, 1), ground line y (S,) in pixels where the object stands)."""
    y, x = (np.mgrid[0:size, 0:size].astype(np.float32) / size)[..., None]  # (S, S, 1) each
    xs = x[0, :, 0]  # (S,) column positions
    noise = rng.normal(size=(size, size, 1)).astype(np.float32)
    grass = paint.jitter(GREEN, rng, 12) + 6 * noise
    if kind == "meadow":
        line = np.full(size, horizon, np.float32) + 0.01 * np.sin(xs * 9)
        flowers = (rng.uniform(size=(size, size, 1)) > 0.97) * np.array([120, 60, 90], np.float32)
        land = grass + flowers
    elif kind == "hill":  # a rounded hill rising above the horizon; the landmark stands on its slopes
        c = rng.uniform(0.35, 0.65)
        line = horizon - rng.uniform(0.16, 0.22) * np.exp(-((xs - c) ** 2) / 0.035)
        land = grass * (0.8 + 0.35 * np.clip(y - horizon + 0.2, 0, 1))
    elif kind == "lake":
        line = np.full(size, horizon, np.float32)
        shore = horizon + rng.uniform(0.1, 0.16)
        water = paint.jitter(WATER, rng, 10) + 10 * np.sin(y * size * 1.7)
        land = np.where(y > shore, water, grass)
    elif kind == "cliff":
        edge = rng.uniform(0.45, 0.65)
        left = rng.uniform() < 0.5
        on = xs < edge if left else xs > 1 - edge
        line = np.where(on, horizon, 1.2).astype(np.float32)  # off the cliff: the sea far below
        rock_top = horizon + 0.05
        rock = paint.jitter(ROCK, rng, 10) + 10 * noise
        sea = paint.jitter(WATER, rng, 8) * 0.8 + 6 * np.sin(y * size * 2.1)
        column = on[None, :, None]
        land = np.where(column, np.where(y < rock_top, grass, rock), sea)
        mask = np.where(column, y >= horizon, y >= horizon + 0.22).astype(np.float32)
        return land, mask, line * size
    else:
        raise ValueError(f"terrain: unknown kind {kind!r}")
    mask = (y >= line[None, :, None]).astype(np.float32)
    return land, mask, line * size


def _landmark(name: str, size: int, rng: np.random.Generator, ground_y: np.ndarray):
    """(colours (S, S, 3), coverage (S, S, 1)) of the landmark standing on the ground line."""
    big = size * paint.SUPERSAMPLE
    s = paint.SUPERSAMPLE
    on = np.nonzero(ground_y < size * 0.95)[0]
    cx = float(rng.choice(on[(on > size * 0.2) & (on < size * 0.8)] if len(on) > 10 else on)) * s
    base = float(ground_y[int(cx / s)]) * s + 2 * s
    h = rng.uniform(0.32, 0.45) * big
    mask = Image.new("L", (big, big), 0)
    col = Image.new("RGB", (big, big), (0, 0, 0))
    dm, dc = ImageDraw.Draw(mask), ImageDraw.Draw(col)

    def part(shape, box_or_pts, colour):
        getattr(dm, shape)(box_or_pts, fill=255)
        getattr(dc, shape)(box_or_pts, fill=tuple(int(c) for c in colour))

    if name == "lighthouse":
        w0, w1 = 0.09 * h, 0.06 * h
        for k in range(5):  # red and white bands, tapering upwards
            y0, y1 = base - h * k / 5 * 0.85, base - h * (k + 1) / 5 * 0.85
            a, b = w0 + (w1 - w0) * k / 5, w0 + (w1 - w0) * (k + 1) / 5
            part(
                "polygon",
                [(cx - a, y0), (cx + a, y0), (cx + b, y1), (cx - b, y1)],
                (200, 40, 40) if k % 2 == 0 else (240, 240, 235),
            )
        part("rectangle", [cx - w1 * 1.2, base - h, cx + w1 * 1.2, base - 0.85 * h], (255, 230, 120))
    elif name == "windmill":
        w = 0.12 * h
        part(
            "polygon",
            [(cx - w, base), (cx + w, base), (cx + 0.6 * w, base - 0.7 * h), (cx - 0.6 * w, base - 0.7 * h)],
            (205, 195, 175),
        )
        hub = (cx, base - 0.72 * h)
        a0 = rng.uniform(0, math.pi / 2)
        for k in range(4):
            a = a0 + k * math.pi / 2
            tip = (hub[0] + 0.5 * h * math.cos(a), hub[1] + 0.5 * h * math.sin(a))
            side = (0.06 * h * -math.sin(a), 0.06 * h * math.cos(a))
            part("polygon", [hub, tip, (tip[0] + side[0], tip[1] + side[1])], (120, 85, 55))
    elif name == "tent":
        w = 0.55 * h
        part("polygon", [(cx - w, base), (cx + w, base), (cx, base - 0.6 * h)], (235, 130, 30))
        part("polygon", [(cx - 0.15 * w, base), (cx + 0.15 * w, base), (cx, base - 0.3 * h)], (60, 35, 20))
    elif name == "castle":
        w = 0.5 * h
        stone = (150, 145, 140)
        part("rectangle", [cx - w, base - 0.45 * h, cx + w, base], stone)
        for tx in (-w, w - 0.25 * w):
            part("rectangle", [cx + tx, base - 0.75 * h, cx + tx + 0.25 * w, base], stone)
        for k in range(5):  # crenels
            x0 = cx - w + k * 2 * w / 5
            part("rectangle", [x0, base - 0.53 * h, x0 + w / 5, base - 0.45 * h], stone)
        part("rectangle", [cx - 0.12 * w, base - 0.22 * h, cx + 0.12 * w, base], (50, 35, 25))
    elif name == "barn":
        w = 0.45 * h
        part(
            "polygon",
            [(cx - w, base), (cx + w, base), (cx + w, base - 0.4 * h), (cx, base - 0.68 * h), (cx - w, base - 0.4 * h)],
            (170, 40, 35),
        )
        part("rectangle", [cx - 0.3 * w, base - 0.3 * h, cx + 0.3 * w, base], (240, 235, 225))
        part("rectangle", [cx - 0.24 * w, base - 0.26 * h, cx + 0.24 * w, base], (150, 35, 30))
    else:
        raise ValueError(f"landmark: unknown object {name!r}")
    m = np.asarray(mask.resize((size, size), Image.Resampling.BOX), np.float32)[..., None] / 255.0
    c = np.asarray(col.resize((size, size), Image.Resampling.BOX), np.float32) / np.maximum(m, 1e-3)
    return np.clip(c, 0, 255), m


def _weather(kind: str, img: np.ndarray, rng: np.random.Generator, time: str) -> np.ndarray:
    size = img.shape[0]
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    if kind == "rain":  # darker, and slanted streaks all over
        canvas = Image.new("L", (size, size), 0)
        d = ImageDraw.Draw(canvas)
        slope = rng.uniform(0.25, 0.5)
        for _ in range(int(size * size * 0.02)):
            x0, y0, n = rng.uniform(-8, size), rng.uniform(-8, size), rng.uniform(5, 9)
            d.line([(x0, y0), (x0 + slope * n, y0 + n)], fill=int(rng.uniform(150, 255)), width=1)
        streak = np.asarray(canvas, np.float32)[..., None] / 255.0
        out = img * 0.72 + np.array([55, 60, 70], np.float32) * 0.28
        return out * (1 - 0.6 * streak) + 215 * 0.6 * streak
    if kind == "fog":  # contrast washed out towards a grey veil, thicker with distance (up)
        veil = np.array([195, 198, 202], np.float32) * (0.35 if time == "midnight" else 1.0)
        thick = (0.55 + 0.25 * (1 - y / size))[..., None]
        return img * (1 - thick) + veil * thick
    if kind == "snowfall":  # white flakes of a few sizes, slightly brighter land
        flakes = np.zeros((size, size), np.float32)
        for _ in range(int(size * size * 0.03)):
            fx, fy = rng.integers(0, size, size=2)
            r = rng.choice([0, 0, 1])
            flakes[max(fy - r, 0) : fy + r + 1, max(fx - r, 0) : fx + r + 1] = 1
        return np.where(flakes[..., None] > 0, 245.0, img * 0.9 + 20)
    if kind == "lightning":  # a dark storm sky split by a bright bolt
        canvas = Image.new("L", (size, size), 0)
        d = ImageDraw.Draw(canvas)
        px, py = rng.uniform(0.2, 0.8) * size, 0.0
        while py < size * 0.55:
            nx, ny = px + rng.uniform(-5, 5), py + rng.uniform(3, 7)
            d.line([(px, py), (nx, ny)], fill=255, width=2)
            px, py = nx, ny
        bolt = np.asarray(canvas.filter(ImageFilter.GaussianBlur(0.7)), np.float32)[..., None] / 255.0
        dark = img * 0.55 + np.array([40, 40, 60], np.float32) * 0.15
        return dark * (1 - bolt) + np.array([250, 250, 255], np.float32) * bolt
    raise ValueError(f"weather: unknown kind {kind!r}")


def render(lb: Labels, rng: np.random.Generator, size: int) -> np.ndarray:
    horizon = rng.uniform(0.5, 0.62)
    sky = _sky(lb["time"], size, rng, horizon)
    land, land_mask, ground_y = _terrain(lb["terrain"], size, rng, horizon)
    light = np.array(SKIES[lb["time"]][2], np.float32)
    img = sky * (1 - land_mask) + land * light * land_mask
    colours, cover = _landmark(lb["object"], size, rng, ground_y)
    img = img * (1 - cover) + colours * light * cover
    img = _weather(lb["weather"], img, rng, lb["time"])
    return img + rng.normal(0, 3, size=img.shape)  # camera noise


WORLD = World(
    name="weather",
    slots={"object": OBJECTS, "terrain": tuple(TERRAINS), "weather": WEATHERS, "time": TIMES},
    caption_fn=caption,
    variants_fn=variant,
    render_fn=render,
    held_out=True,
    notes="HELD-OUT world (fresh, issue 18): measure once at the end, never tune on it",
)
