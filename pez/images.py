"""Turning whatever a user hands us into RGB PIL images, or a clear InvalidImageError (pez.errors).

Accepts paths, bytes, file objects, numpy arrays and PIL images. Respects EXIF orientation,
takes the first frame of animations, flattens alpha onto white, converts every mode (P, LA,
CMYK, 16-bit, ...) to RGB, and refuses files that are not images, truncated, too large (possible
decompression bombs), too small or of an extreme aspect ratio.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .config import MAX_ASPECT_RATIO, MAX_IMAGE_PIXELS, MAX_IMAGES, MIN_IMAGE_SIDE
from .errors import ConfigError, InvalidImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def load_image(source: Any, name: str | None = None) -> Image.Image:
    """Return `source` as an RGB PIL image, or raise InvalidImageError saying why not."""
    label = name or _label(source)
    if isinstance(source, np.ndarray):
        return _normalise(_from_array(source, label), label)
    if isinstance(source, Image.Image):
        return _normalise(source, label)
    if not isinstance(source, (str, os.PathLike, bytes, bytearray)) and not hasattr(source, "read"):
        raise InvalidImageError(
            f"{label}: expected a file path, bytes, a file object, a numpy array or a PIL image, "
            f"received {type(source).__name__}"
        )
    with _open(source, label) as img:  # closes the file (animations keep it open otherwise)
        out = _normalise(img, label)
        return img.copy() if out is img else out  # never hand out the image being closed


def check_image(source: str | os.PathLike, name: str | None = None) -> None:
    """A quick check that the file at `source` is an image pez can use, without decoding its
    pixels (the header, the size limits and, where the format allows, the file's structure);
    raises InvalidImageError like load_image. For checks that must stay cheap (an upload)."""
    label = name or _label(source)
    with _open(source, label, decode=False) as img:
        try:
            img.verify()
        except Exception as e:  # noqa: BLE001 - PIL raises many kinds for a broken file
            raise InvalidImageError(f"{label}: the image file is corrupt or truncated ({e})") from None


def _normalise(img: Image.Image, label: str) -> Image.Image:
    """Size checks, first frame, EXIF orientation, RGB."""
    _check_size(img, label)
    try:
        img = _first_frame(img)
        img = _exif_upright(img)
        return _to_rgb(img)
    except (OSError, ValueError, SyntaxError) as e:  # truncated or corrupt pixel data
        raise InvalidImageError(f"{label}: the image data is corrupt or truncated ({e})") from e


def load_images(sources: Iterable[Any] | None, limit: int = MAX_IMAGES) -> list[Image.Image]:
    """Load several images; zero images or more than `limit` is an error."""
    items = [] if sources is None else list(sources)
    if not items:
        raise ConfigError("images: expected at least one image, received none")
    if len(items) > limit:
        raise ConfigError(f"images: expected at most {limit} images, received {len(items)}")
    return [load_image(s) for s in items]


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
        img.seek(0)
        img = img.copy()
    return img


def _exif_upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; unreadable EXIF is ignored (the pixels are still fine)."""
    try:
        return ImageOps.exif_transpose(img)
    except (OSError, ValueError, SyntaxError, KeyError, TypeError, struct.error):
        return img


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


__all__ = ["IMAGE_SUFFIXES", "check_image", "load_image", "load_images"]
