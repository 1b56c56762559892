"""Turning whatever a user hands us into RGB PIL images, or a clear InvalidImageError (pez.errors).

Accepts paths, bytes, file objects, numpy arrays and PIL images. Respects EXIF orientation,
takes the first frame of animations, flattens alpha onto white, converts every mode (P, LA,
CMYK, 16-bit, ...) to RGB, and refuses files that are not images, truncated, too large (possible
decompression bombs), too small or of an extreme aspect ratio.

Decoding has a budget (DecodeBudget), counted from each image's header before any pixel is
decoded: the bytes one image's decode needs (size x bytes per pixel of its mode: a 16-bit
greyscale PNG costs twice an 8-bit one, a palette image its RGB conversion too), and the pixels and
bytes of every image of one request together. `load_images` checks every header first, so a
request over budget (or a bomb at the end of a list) is refused before its first decode;
`check_request` does the same without decoding, for a server's checks before it queues a job. A
JPEG decodes at a reduced scale where that still leaves CLIP enough pixels (Image.draft); every
image is shrunk right after decoding to WORK_SIDE pixels on its shorter side (CLIP reads 224-448),
and the full-size buffer is dropped at once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import io
import os
import struct
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from .config import MAX_ASPECT_RATIO, MAX_IMAGE_PIXELS, MAX_IMAGES, MIN_IMAGE_SIDE
from .errors import ConfigError, InvalidImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")

WORK_SIDE = 512  # a loaded image's shorter side is shrunk to this (CLIP's preprocess reads 224-448)
MAX_IMAGE_BYTES = MAX_IMAGE_PIXELS * 4  # one image's decode buffers (an 8-bit RGB one at the pixel limit)
REQUEST_PIXELS = 4 * MAX_IMAGE_PIXELS  # decoded pixels of all images of one request (decoding time)
REQUEST_BYTES = 4 * MAX_IMAGE_BYTES  # decoded bytes of all images of one request


@dataclass(frozen=True)
class DecodeBudget:
    """How much decoding one image and one request may cost; a server may pass a tighter one."""

    image_bytes: int = MAX_IMAGE_BYTES
    request_pixels: int = REQUEST_PIXELS
    request_bytes: int = REQUEST_BYTES


@dataclass(frozen=True)
class DecodeCost:
    """What decoding costs, read from headers: pixels decoded (after a JPEG's reduced-scale draft)
    and bytes of the buffers the decode and the conversion before shrinking hold."""

    pixels: int = 0
    bytes: int = 0

    def __add__(self, other: DecodeCost) -> DecodeCost:
        return DecodeCost(self.pixels + other.pixels, self.bytes + other.bytes)


def load_image(
    source: Any, name: str | None = None, budget: DecodeBudget | None = None, work_side: int | None = WORK_SIDE
) -> Image.Image:
    """Return `source` as an RGB PIL image whose shorter side is at most `work_side` (None: full
    size), or raise InvalidImageError saying why not (over `budget` included, before decoding)."""
    label = name or _label(source)
    return _decode(_header(source, label, budget or DecodeBudget()), label, work_side)


def decode_cost(source: Any, name: str | None = None, budget: DecodeBudget | None = None) -> DecodeCost:
    """What decoding `source` would cost, from its header alone; raises InvalidImageError for an
    image pez refuses (size limits, over the budget's bytes for one image)."""
    label = name or _label(source)
    img = _header(source, label, budget or DecodeBudget())
    try:
        return _cost(img)
    finally:
        _close(img, source)


def check_request(
    sources: Iterable[Any] | None, budget: DecodeBudget | None = None, limit: int = MAX_IMAGES
) -> DecodeCost:
    """Check a request's images from their headers alone (count, size limits, the budget for one
    image and for all together) without decoding any; return the total cost. For a server's
    checks before it queues a job; `load_images` makes the same checks itself."""
    items = _items(sources, limit)
    budget = budget or DecodeBudget()
    total = DecodeCost()
    for s in items:
        total += decode_cost(s, budget=budget)
        _check_request_cost(total, budget, len(items))
    return total


def check_image(source: Any, name: str | None = None) -> None:
    """A quick check that the file at `source` is an image pez can use, without decoding its
    pixels (the header, the size limits and, where the format allows, the file's structure);
    raises InvalidImageError like load_image. For checks that must stay cheap (an upload)."""
    label = name or _label(source)
    with _header(source, label, DecodeBudget()) as img:
        try:
            img.verify()
        except Exception as e:  # noqa: BLE001 - PIL raises many kinds for a broken file
            raise InvalidImageError(f"{label}: the image file is corrupt or truncated ({e})") from None


def load_images(
    sources: Iterable[Any] | None,
    limit: int = MAX_IMAGES,
    budget: DecodeBudget | None = None,
    work_side: int | None = WORK_SIDE,
) -> list[Image.Image]:
    """Load several images; zero images or more than `limit` is an error. Every header is read and
    checked against `budget` (each image and the request's total) before the first decode; the
    images are then decoded one at a time, each shrunk to `work_side` before the next."""
    items = _items(sources, limit)
    budget = budget or DecodeBudget()
    opened: list[tuple[Image.Image, str, Any]] = []
    try:
        total = DecodeCost()
        for s in items:  # 1. headers only
            label = _label(s)
            opened.append((_header(s, label, budget), label, s))
            total += _cost(opened[-1][0])
            _check_request_cost(total, budget, len(items))
        out = []
        for i, (img, label, s) in enumerate(opened):  # 2. decode, one full-size buffer at a time
            out.append(_decode(img, label, work_side, own=s))
            opened[i] = (None, label, s)  # type: ignore[assignment]  # _decode closed it
        return out
    finally:
        for img, _, s in opened:
            if img is not None:
                _close(img, s)
        release_memory()


def _items(sources: Iterable[Any] | None, limit: int) -> list[Any]:
    items = [] if sources is None else list(sources)
    if not items:
        raise ConfigError("images: expected at least one image, received none")
    if len(items) > limit:
        raise ConfigError(f"images: expected at most {limit} images, received {len(items)}")
    return items


def _check_request_cost(total: DecodeCost, budget: DecodeBudget, n: int) -> None:
    if total.pixels > budget.request_pixels or total.bytes > budget.request_bytes:
        raise InvalidImageError(
            f"images: too much to decode in one request ({n} images, at least {total.pixels / 1e6:,.0f} "
            f"megapixels and {total.bytes >> 20:,} MB; at most {budget.request_pixels / 1e6:,.0f} megapixels "
            f"and {budget.request_bytes >> 20:,} MB together); send fewer or smaller images"
        )


# ---------------------------------------------------------------------------------------------
# One image: its header and cost, then its decode


def _header(source: Any, label: str, budget: DecodeBudget) -> Image.Image:
    """`source` opened lazily (no pixels decoded; a JPEG set to decode at a reduced scale), its
    size and cost checked against the limits and `budget`."""
    if isinstance(source, np.ndarray):
        img = _from_array(source, label)
    elif isinstance(source, Image.Image):
        img = source
    elif not isinstance(source, (str, os.PathLike, bytes, bytearray)) and not hasattr(source, "read"):
        raise InvalidImageError(
            f"{label}: expected a file path, bytes, a file object, a numpy array or a PIL image, "
            f"received {type(source).__name__}"
        )
    else:
        img = _open(source, label, decode=False)  # checks the size limits
        _draft(img)
    try:
        _check_size(img, label)
        cost = _cost(img)
        if cost.bytes > budget.image_bytes:
            raise InvalidImageError(
                f"{label}: image too large to decode ({img.width}x{img.height} {img.mode}, {cost.bytes >> 20:,} MB; "
                f"at most {budget.image_bytes >> 20:,} MB); downscale it first"
            )
    except BaseException:
        _close(img, source)
        raise
    return img


def _draft(img: Image.Image) -> None:
    """A JPEG decodes at 1/2, 1/4 or 1/8 scale where its shorter side stays >= WORK_SIDE."""
    if getattr(img, "format", None) != "JPEG":
        return
    w, h = img.size
    short = min(w, h)
    if short >= 2 * WORK_SIDE:
        try:
            img.draft(None, (max(1, w * WORK_SIDE // short), max(1, h * WORK_SIDE // short)))
        except (OSError, ValueError):  # a JPEG PIL cannot draft decodes at full size (and costs so)
            pass


def _pixel_bytes(mode: str) -> int:
    """Bytes per pixel held while decoding an image of `mode` and converting it before shrinking."""
    if mode.startswith("I;16"):
        per = 2
    elif mode in ("1", "L", "P"):
        per = 1
    else:
        per = 4  # PIL keeps RGB, RGBA, LA, CMYK, I, F... in 4 bytes a pixel
    if mode in ("1", "P", "PA"):  # converted at full size first (PIL shrinks them by nearest pixel only)
        per += 4
    return per


def _cost(img: Image.Image) -> DecodeCost:
    pixels = img.width * img.height  # an image handed in decoded costs its conversion alike
    return DecodeCost(pixels, pixels * _pixel_bytes(img.mode))


def _decode(img: Image.Image, label: str, work_side: int | None, own: Any = None) -> Image.Image:
    """Decode `img` (opened by _header), shrink it to `work_side`, make it upright RGB; the
    full-size image is closed before returning when it came from a file."""
    source = img if own is None else own
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            try:
                img.load()
                frame = _first_frame(img)
                turn = _orientation(frame)
                if frame.mode in ("1", "P", "PA"):
                    frame = _to_rgb(frame)
                small = _shrink(frame, work_side)
                small = _turn(small, turn)
                out = _to_rgb(small)
            except (OSError, ValueError, SyntaxError) as e:  # truncated or corrupt pixel data
                raise InvalidImageError(f"{label}: the image data is corrupt or truncated ({e})") from e
        return out.copy() if out is img else out  # never hand out the image being closed
    finally:
        _close(img, source)


def _shrink(img: Image.Image, work_side: int | None) -> Image.Image:
    w, h = img.size
    if work_side is None or min(w, h) <= work_side:
        return img
    scale = work_side / min(w, h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    gap = None if img.mode.startswith("I;16") else 3.0  # PIL's reduce() (the fast first pass) has no I;16
    return img.resize(size, Image.Resampling.BICUBIC, reducing_gap=gap)


def _close(img: Image.Image, source: Any) -> None:
    """Close an image pez opened (never one the caller handed in)."""
    if img is not source and not isinstance(source, np.ndarray):
        img.close()


_LIBC = ctypes.CDLL(ctypes.util.find_library("c")) if os.name == "posix" and ctypes.util.find_library("c") else None


def release_memory() -> None:
    """Hand freed heap memory back to the OS (glibc keeps large freed image buffers otherwise, so a
    process's RSS stays at its peak after a big decode). A no-op where there is no malloc_trim."""
    trim = getattr(_LIBC, "malloc_trim", None)
    if trim is not None:
        trim(0)


def _label(source: Any) -> str:
    if isinstance(source, (str, os.PathLike)):
        return Path(source).name
    return getattr(source, "filename", None) or getattr(source, "name", None) or type(source).__name__


def _open(source: Any, label: str, decode: bool = True) -> Image.Image:
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    elif isinstance(source, (str, os.PathLike)):
        try:
            is_dir, is_file = Path(source).is_dir(), Path(source).is_file()
        except (OSError, ValueError) as e:  # e.g. a name too long, a NUL byte
            raise InvalidImageError(f"{label}: not a usable file path ({e})") from e
        if is_dir:
            raise InvalidImageError(f"{label}: is a folder, not an image file")
        if not is_file:
            shown = os.fspath(source) if label == _label(source) else label  # the path as given: which cat.jpg?
            raise InvalidImageError(f"{shown}: file not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(source)
            _check_size(img, label)  # before decoding pixels: refuse bombs cheaply
            if decode:
                img.load()
    except InvalidImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise InvalidImageError(
            f"{label}: image too large (more than {MAX_IMAGE_PIXELS:,} pixels); downscale it first"
        ) from e
    except UnidentifiedImageError as e:
        raise InvalidImageError(f"{label}: not an image file (or a format PIL cannot read)") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise InvalidImageError(f"{label}: the image file is corrupt or truncated ({e})") from e
    return img


def _from_array(arr: np.ndarray, label: str) -> Image.Image:
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
        raise InvalidImageError(
            f"{label}: expected an (H, W), (H, W, 3) or (H, W, 4) array, received shape {arr.shape}"
        )
    if arr.dtype != np.uint8:
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
            raise InvalidImageError(f"{label}: expected a numeric array, received dtype {arr.dtype}")
        arr = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        if arr.max(initial=0) <= 1.0:  # floats in [0, 1] (and booleans)
            arr = arr * 255
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return Image.fromarray(arr[..., 0] if arr.ndim == 3 and arr.shape[2] == 1 else arr)


def _check_size(img: Image.Image, label: str) -> None:
    w, h = img.size
    if w * h > MAX_IMAGE_PIXELS:
        raise InvalidImageError(
            f"{label}: image too large ({w}x{h}; at most {MAX_IMAGE_PIXELS:,} pixels); downscale it first"
        )
    if min(w, h) < MIN_IMAGE_SIDE:
        raise InvalidImageError(
            f"{label}: image too small ({w}x{h}; each side must be at least {MIN_IMAGE_SIDE} pixels)"
        )
    if max(w, h) / min(w, h) > MAX_ASPECT_RATIO:
        raise InvalidImageError(
            f"{label}: extreme aspect ratio {w}x{h} (at most {MAX_ASPECT_RATIO:g}:1); crop it first"
        )


def _first_frame(img: Image.Image) -> Image.Image:
    if getattr(img, "n_frames", 1) > 1:
        img.seek(0)  # no full-size copy: the shrink or conversion that follows makes a new image
    return img


_TURNS = {  # EXIF orientation -> the transpose that makes the image upright (as ImageOps.exif_transpose)
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation (1: upright); unreadable EXIF is ignored (the pixels are still fine).
    Read from the full-size image: a shrunk copy may not keep the tag."""
    try:
        value = img.getexif().get(0x0112, 1)
    except (OSError, ValueError, SyntaxError, KeyError, TypeError, struct.error):
        return 1
    return value if value in _TURNS else 1


def _turn(img: Image.Image, orientation: int) -> Image.Image:
    return img.transpose(_TURNS[orientation]) if orientation in _TURNS else img


def _to_8bit(arr: np.ndarray, mode: str) -> np.ndarray:
    """Greyscale of any depth -> uint8: 16-bit by its full range, floats in [0, 1] by 255,
    anything else by its own min..max."""
    arr = np.nan_to_num(arr)
    lo, hi = arr.min(initial=0), arr.max(initial=0)
    if mode.startswith("I;16") or (mode == "I" and lo >= 0 and hi <= 65535 and hi > 255):
        arr = arr / 257
    elif mode == "F" and lo >= 0 and hi <= 1:
        arr = arr * 255
    elif lo < 0 or hi > 255:
        arr = (arr - lo) / ((hi - lo) or 1) * 255
    return np.clip(np.round(arr), 0, 255).astype(np.uint8)


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode.startswith("I") or img.mode == "F":  # 16/32-bit integer or float greyscale
        return Image.fromarray(_to_8bit(np.asarray(img, dtype=np.float64), img.mode)).convert("RGB")
    if img.mode in ("La", "RGBa"):  # premultiplied alpha
        img = img.convert(img.mode[:-1] + "A")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return img.convert("RGB")


__all__ = [
    "IMAGE_SUFFIXES",
    "WORK_SIDE",
    "DecodeBudget",
    "DecodeCost",
    "check_image",
    "check_request",
    "decode_cost",
    "load_image",
    "load_images",
    "release_memory",
]
