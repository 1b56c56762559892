"""Turning whatever a user hands us into RGB PIL images, or a clear InvalidImageError.

Accepts paths, bytes, file objects, numpy arrays and PIL images. Respects EXIF orientation,
takes the first frame of animations, flattens alpha onto white, converts every mode (P, LA,
CMYK, 16-bit, ...) to RGB, and refuses files that are not images, truncated, too large (possible
decompression bombs), too small or of an extreme aspect ratio.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .config import MAX_ASPECT_RATIO, MAX_IMAGE_PIXELS, MAX_IMAGES, MIN_IMAGE_SIDE, ConfigError


class InvalidImageError(ValueError):
    """An input is not a usable image; the message names the input and the reason."""


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def load_image(source: Any, name: str | None = None) -> Image.Image:
    """Return `source` as an RGB PIL image, or raise InvalidImageError saying why not."""
    label = name or _label(source)
    if isinstance(source, np.ndarray):
        img = _from_array(source, label)
    elif isinstance(source, Image.Image):
        img = source
    else:
        img = _open(source, label)
    _check_size(img, label)
    try:
        img = _first_frame(img)
        img = ImageOps.exif_transpose(img)
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


def _open(source: Any, label: str) -> Image.Image:
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    elif isinstance(source, (str, os.PathLike)) and not Path(source).is_file():
        raise InvalidImageError(f"{label}: file not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(source)
            _check_size(img, label)  # before decoding pixels: refuse bombs cheaply
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
        arr = np.clip(arr.astype(np.float64) * (255 if arr.max(initial=0) <= 1.0 else 1), 0, 255).astype(np.uint8)
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


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16/32-bit greyscale: rescale to 8 bits
        arr = np.asarray(img, dtype=np.float64)
        span = arr.max() - arr.min()
        arr = (arr - arr.min()) / (span if span > 0 else 1) * 255
        return Image.fromarray(arr.astype(np.uint8)).convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return img.convert("RGB")


__all__ = ["IMAGE_SUFFIXES", "InvalidImageError", "load_image", "load_images"]
