"""The input components every caller reaches (browser, gradio_client, raw HTTP, MCP): what each one
accepts, and one message naming the field for anything else.

gradio's own components check some values before a handler runs, each in its own way: sliders
and number boxes refuse out-of-range values without naming the field (and log a traceback), round
floats silently, clamp in the browser; a dropdown names no field; a gallery takes only
`[{"image": file}]`, and its API schema has references MCP clients cannot resolve. These
subclasses (same browser frontends: `is_template`) hand the value on as sent, so pez's checks (the
config's expected vs received) and the server's (server.check_model) name the field, the same way
whoever calls. Images arrive as uploaded files (gradio_client: `handle_file(path)`, anywhere in a
list) or data: URLs (what an MCP client can send); a plain string is never read as a server path.

The few gradio internals this relies on are here, each in one small function: the MCP client's
header (`is_mcp_call`) and the queue's length (`queue_full`); tests/app/test_public_mcp.py and
tests/app/test_app.py fail loudly if gradio changes them.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import gradio as gr
from gradio import processing_utils
from gradio.data_classes import GradioRootModel
from gradio_client.utils import is_file_obj_with_meta

from pez.config import MAX_IMAGES

from .server import SERVER, check_model, user_error

IMAGE_DOC = "an image: an uploaded file (gradio_client: handle_file(path)) or a data: URL (base64)"


class AnyPayload(GradioRootModel):
    """What the browser or a client sent, unchanged: the component's preprocess checks it (a
    pydantic error here would reach the caller as gradio's generic error, with a traceback)."""

    root: Any = None


# ---------------------------------------------------------------------------------------------
# Images


def image_path(item: Any, field: str, cache_dir: str) -> str:
    """One image as a caller sent it -> a local file for pez to open. Accepted: a file gradio
    received (a FileData dict with its meta: gradio has checked it was uploaded), a gallery item
    `{"image": file}`, a data: URL (decoded here, size-checked first). Anything else, a plain
    path or an http(s) URL included, is refused by name."""
    if isinstance(item, dict) and "path" not in item:
        item = item.get("image", item.get("video", item))
    if is_file_obj_with_meta(item):
        url = item.get("url") or ""
        if url.startswith("data:"):
            return data_url_file(url, field, cache_dir)
        if not item["path"].startswith(("http://", "https://")):
            return item["path"]
    elif isinstance(item, str) and item.startswith("data:"):
        return data_url_file(item, field, cache_dir)
    shown = item if isinstance(item, str) else type(item).__name__
    raise user_error(f"{field}: expected {IMAGE_DOC}, received {shown!r:.80}")


def data_url_file(url: str, field: str, cache_dir: str) -> str:
    """A data: URL -> a file in gradio's cache. Its size is checked before it is decoded."""
    limit = SERVER.limits.max_file_mb
    head, _, body = url.partition(",")
    if len(body) * 3 // 4 > limit << 20:
        raise user_error(f"{field}: expected an image of at most {limit} MB, received {len(body) * 3 // 4 >> 20} MB")
    if not head.endswith(";base64"):
        raise user_error(f"{field}: expected a base64 data: URL, received {head[:60]!r}")
    try:
        base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise user_error(f"{field}: the data: URL is not valid base64") from None
    return processing_utils.save_base64_to_cache(url, cache_dir)


class TargetImage(gr.Image):
    """One image, handed to pez unopened: pez's loader then reports a bad file (not an image,
    empty, a decompression bomb) clearly. API type: a string (a data: URL), so MCP schemas carry
    no file reference; gradio_client's handle_file(...) works as with gr.Image."""

    is_template = True  # gradio: render with the parent's (gr.Image's) frontend
    data_model = AnyPayload
    field = "image"  # its name in messages (no __init__ of its own: gradio sends __init__'s props)

    def api_info(self) -> dict:
        return {"type": "string", "description": IMAGE_DOC}

    def preprocess(self, payload):
        item = payload.root if isinstance(payload, AnyPayload) else payload
        return None if item is None else image_path(item, self.field, self.GRADIO_CACHE)


class ImageList(gr.Gallery):
    """Several images: what the browser's gallery sends, or a plain list of images (files or data:
    URLs) from an API or MCP caller. API type: an array of strings (no dangling $defs in MCP)."""

    is_template = True  # gradio: render with the parent's (gr.Gallery's) frontend
    data_model = AnyPayload
    field = "images"  # its name in messages; set per instance (see TargetImage.field)

    def api_info(self) -> dict:
        return {"type": "array", "items": {"type": "string", "description": IMAGE_DOC}}

    def example_payload(self) -> Any:
        return []

    def example_value(self) -> Any:
        return []

    def preprocess(self, payload) -> list[str]:
        items = payload.root if isinstance(payload, AnyPayload) else payload
        if items is None:
            return []
        if not isinstance(items, list):
            raise user_error(f"{self.field}: expected a list of images, received {type(items).__name__}")
        if len(items) > MAX_IMAGES:
            raise user_error(f"{self.field}: expected at most {MAX_IMAGES} images, received {len(items)}")
        return [image_path(item, self.field, self.GRADIO_CACHE) for item in items]


# ---------------------------------------------------------------------------------------------
# Settings


class ModelDropdown(gr.Dropdown):
    """The model pair: only what this server offers (server.check_model), refused by name; the API
    and MCP schemas list the offered values (an enum)."""

    is_template = True

    def preprocess(self, payload):
        return check_model(payload)


class SettingNumber(gr.Number):
    """A number box that hands the value on as sent (no gradio range check, no rounding: whole
    floats become ints when the setting is an integer), so pez's check names the field. No
    minimum/maximum: the browser does not clamp either; the range is in the box's hint."""

    is_template = True

    def preprocess(self, payload):
        if self.precision == 0 and isinstance(payload, float) and payload.is_integer():
            return int(payload)
        return payload


# ---------------------------------------------------------------------------------------------
# gradio internals, each in one place


MCP_HEADER = ("x-gradio-user", "mcp")  # what gradio's MCP server sends when it calls an endpoint


def is_mcp_call(request: gr.Request | None) -> bool:
    """Whether gradio's MCP server made this call (gradio 6.31 calls endpoints through its own
    gradio_client, whose headers carry MCP_HEADER)."""
    headers = getattr(request, "headers", None) or {}
    return headers.get(MCP_HEADER[0]) == MCP_HEADER[1]


def queue_full(blocks: gr.Blocks | None) -> bool:
    """Whether the demo's queue refuses new runs now (gradio 6.31: Blocks._queue, its len() and
    max_size, as gradio's own 'queue full' check reads them)."""
    queue = getattr(blocks, "_queue", None)
    try:
        return queue is not None and queue.max_size is not None and len(queue) >= queue.max_size
    except Exception:  # noqa: BLE001 - an internal that changed: say nothing rather than fail
        return False


__all__ = ["ImageList", "ModelDropdown", "SettingNumber", "TargetImage", "image_path", "is_mcp_call", "queue_full"]
