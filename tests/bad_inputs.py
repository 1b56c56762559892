"""Bad and odd inputs for the bad-input tests of every tier: small image files made on the fly.

The decompression bombs are a PNG header that claims 30000x30000 and a zlib-compressed all-zero
7000x7000 image; every file stays under 200 kB. `BAD` maps each bad case to (part of) the message
every front-end must give; `make_files(folder)` writes them all (plus "ok" and a "missing" path).
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from .conftest import noise_image


def png_bytes(width: int, height: int, depth: int = 8, color: int = 2, rows: bytes | None = None) -> bytes:
    """A PNG written by hand: lets a header claim any size and lets us write 16-bit RGB."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0))
    if rows is not None:
        out += chunk(b"IDAT", zlib.compress(rows, 9))
    return out + chunk(b"IEND", b"")


def encoded(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _zero_bomb() -> bytes:
    side = 7000  # 49 Mpx > pez's 40 Mpx limit, below PIL's own bomb check; ~50 kB on disk
    return png_bytes(side, side, 8, 0, bytes(side * (side + 1)))  # grey, each row: filter byte + zeros


# name -> (file name, bytes maker, expected words in the message)
BAD_IMAGES: dict[str, tuple[str, Callable[[], bytes], str]] = {
    "not_an_image": ("notes.png", lambda: b"just some text, renamed .png", "not an image file"),
    "empty_file": ("empty.jpg", lambda: b"", "not an image file"),
    "truncated_png": ("cut.png", lambda: encoded(noise_image(0, 64), "PNG")[:2000], "corrupt or truncated"),
    "truncated_jpeg": ("cut.jpg", lambda: encoded(noise_image(0, 64), "JPEG")[:900], "corrupt or truncated"),
    "bomb_header": ("bomb.png", lambda: png_bytes(30000, 30000), "image too large"),
    "bomb_zeros": ("zeros.png", _zero_bomb, "image too large"),
    "one_pixel": ("dot.png", lambda: encoded(Image.new("RGB", (1, 1)), "PNG"), "too small"),
    "extreme_aspect": ("strip.png", lambda: encoded(Image.new("RGB", (400, 4)), "PNG"), "aspect ratio"),
}


def _exif_rotated() -> bytes:
    img = Image.new("RGB", (40, 20), (200, 30, 30))
    exif = img.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    return encoded(img, "JPEG", exif=exif)


def _animated() -> bytes:
    frames = [Image.new("RGB", (16, 16), c) for c in [(255, 0, 0), (0, 0, 255), (0, 255, 0)]]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return buf.getvalue()


def _palette(transparent: bool) -> bytes:
    img = Image.new("P", (16, 16), 1)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    return encoded(img, "PNG", **({"transparency": 1} if transparent else {}))


def _gray16() -> bytes:
    return encoded(Image.fromarray(np.full((16, 16), 65535, np.uint16)), "PNG")


def _rgb48() -> bytes:
    row = b"\x00" + b"\xff\xff\x00\x00\x00\x00" * 16  # 16-bit red pixels
    return png_bytes(16, 16, 16, 2, row * 16)


def _rgb(color: tuple) -> Callable[[Image.Image], bool]:
    return lambda im: all(abs(a - b) <= 8 for a, b in zip(im.getpixel((4, 4)), color))


# name -> (file name, bytes maker, check of the loaded RGB image)
ODD_IMAGES: dict[str, tuple[str, Callable[[], bytes], Callable[[Image.Image], bool]]] = {
    "rgba_transparent": (
        "rgba.png",
        lambda: encoded(Image.new("RGBA", (16, 16), (255, 0, 0, 0)), "PNG"),
        _rgb((255, 255, 255)),
    ),
    "rgba_opaque": (
        "rgba2.png",
        lambda: encoded(Image.new("RGBA", (16, 16), (255, 0, 0, 255)), "PNG"),
        _rgb((255, 0, 0)),
    ),
    "la": ("la.png", lambda: encoded(Image.new("LA", (16, 16), (0, 255)), "PNG"), _rgb((0, 0, 0))),
    "palette": ("p.png", lambda: _palette(False), _rgb((255, 0, 0))),
    "palette_transparent": ("pt.png", lambda: _palette(True), _rgb((255, 255, 255))),
    "cmyk_jpeg": (
        "cmyk.jpg",
        lambda: encoded(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG"),
        _rgb((255, 0, 0)),
    ),
    "cmyk_tiff": (
        "cmyk.tif",
        lambda: encoded(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "TIFF"),
        _rgb((255, 0, 0)),
    ),
    "gray16": ("g16.png", _gray16, _rgb((255, 255, 255))),
    "rgb48": ("rgb48.png", _rgb48, _rgb((255, 0, 0))),
    "animated_gif": ("anim.gif", _animated, _rgb((255, 0, 0))),  # the first frame
    "exif_rotated": ("rotated.jpg", _exif_rotated, lambda im: im.size == (20, 40)),  # upright
    "wide_but_allowed": ("wide.png", lambda: encoded(noise_image(1, 160).resize((200, 20)), "PNG"), lambda im: True),
}


def make_files(folder: Path) -> dict[str, Path]:
    """Every bad and odd image as a file in `folder`, by case name."""
    out = {}
    for name, (fname, make, _) in {**BAD_IMAGES, **ODD_IMAGES}.items():
        out[name] = folder / fname
        out[name].write_bytes(make())
    out["missing"] = folder / "missing.png"
    out["ok"] = folder / "ok.png"
    noise_image(7).save(out["ok"])
    assert max(p.stat().st_size for p in out.values() if p.exists()) < 200_000  # small test files
    return out


BAD = {**{k: v[2] for k, v in BAD_IMAGES.items()}, "missing": "file not found"}
