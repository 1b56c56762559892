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
import functools
import io
from typing import Any, ClassVar

import gradio as gr
from gradio import processing_utils
from gradio.data_classes import GradioRootModel
from gradio.utils import get_upload_folder
from gradio_client.utils import is_file_obj_with_meta
from pydantic import model_validator

import pez
from pez.config import MAX_IMAGES
from pez.errors import quote_value

from .guard import DiskBudget
from .server import Limits, ServerSettings, user_error

IMAGE_DOC = "an image: an uploaded file (gradio_client: handle_file(path)) or a data: URL (base64)"


class Refused(str):
    """Why a value sent as an image cannot be used (made only here: JSON cannot make one)."""


def image_item(item: Any, max_mb: int = Limits.max_file_mb, disk: DiskBudget | None = None) -> dict | Refused:
    """One image as a caller sent it -> a file dict (`{"path", "meta"}`: a file gradio received
    and checked was uploaded, or a data: URL decoded into gradio's cache now, its size checked
    first), or a Refused. A plain string, a server path or an http(s) URL included, is refused."""
    if isinstance(item, dict) and "path" not in item:
        item = item.get("image", item.get("video", item))
    if is_file_obj_with_meta(item):
        url = item.get("url") or ""
        if url.startswith("data:"):  # a pasted or webcam image the browser did not upload
            return data_url_file(url, max_mb, disk)
        if not item["path"].startswith(("http://", "https://")):
            return {"path": item["path"], "meta": {"_type": "gradio.FileData"}}
    elif isinstance(item, str) and item.startswith("data:"):
        return data_url_file(item, max_mb, disk)
    shown = item if isinstance(item, str) else type(item).__name__
    return Refused(f"expected {IMAGE_DOC}, received {shown!r:.80}")


def data_url_file(url: str, limit: int = Limits.max_file_mb, disk: DiskBudget | None = None) -> dict | Refused:
    """A data: URL -> a file dict, or a Refused (larger than `limit` MB, not base64, not an image
    pez can read). Its size is checked from the URL's length before decoding, and its bytes are
    checked to be an image before anything is written: into `disk` (a DiskBudget: bounded in
    bytes, files and age; the server's, demo.pez.disk) or, without one, gradio's cache."""
    head, _, body = url.partition(",")
    if len(body) * 3 // 4 > limit << 20:
        return Refused(f"expected an image of at most {limit} MB, received {len(body) * 3 // 4 >> 20} MB")
    if not head.endswith(";base64"):
        return Refused(f"expected a base64 data: URL, received {quote_value(head)}")
    try:
        data = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        return Refused("the data: URL is not valid base64")
    try:
        if disk is not None:
            path = str(disk.write_image(data, "the data: URL"))
        else:
            pez.images.check_image(io.BytesIO(data), name="the data: URL")
            path = processing_utils.save_bytes_to_cache(data, "image", get_upload_folder())
    except (pez.InvalidImageError, pez.ConfigError) as e:  # not an image, a bomb, too large
        return Refused(str(e))
    return {"path": path, "meta": {"_type": "gradio.FileData"}}


def image_path(item: Any, field: str, max_mb: int = Limits.max_file_mb) -> str:
    """A normalised image (image_item's result) -> its file, or a refusal naming `field`."""
    item = item if isinstance(item, (dict, Refused)) else image_item(item, max_mb)
    if isinstance(item, Refused):
        raise user_error(f"{field}: {item}")
    return item["path"]


class ImagePayload(GradioRootModel):
    """One image as sent, normalised when gradio validates it (image_item), so that what gradio
    keeps of each request in its session state is small (never a whole data: URL), and nothing
    fails in pydantic (its error would reach the caller as gradio's generic one, with a traceback)."""

    root: Any = None
    max_mb: ClassVar[int] = Limits.max_file_mb  # this server's PEZ_MAX_FILE_MB (payload_models)
    disk: ClassVar[DiskBudget | None] = None  # where this server writes data: URLs (payload_models)

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, value: Any) -> Any:
        return None if value is None else image_item(value, cls.max_mb, cls.disk)


class ImagesPayload(GradioRootModel):
    """Several images as sent (a list), normalised item by item; a list that is not one, or is
    too long, is refused whole (and not kept)."""

    root: Any = None
    max_mb: ClassVar[int] = Limits.max_file_mb  # this server's PEZ_MAX_FILE_MB (payload_models)
    disk: ClassVar[DiskBudget | None] = None  # where this server writes data: URLs (payload_models)

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, list):
            return Refused(f"expected a list of images, received {type(value).__name__}")
        if len(value) > MAX_IMAGES:
            return Refused(f"expected at most {MAX_IMAGES} images, received {len(value)}")
        items = [image_item(item, cls.max_mb, cls.disk) for item in value]
        return [i if isinstance(i, Refused) else {"image": i, "caption": None} for i in items]


@functools.cache
def payload_models(max_mb: int, disk: DiskBudget | None = None) -> tuple[type[ImagePayload], type[ImagesPayload]]:
    """The image payloads of a server whose uploads are at most `max_mb` MB, its data: URLs
    written into `disk` (gradio validates a component's value with its `data_model`, a class: one
    pair per limit and disk, made once)."""
    attrs = {"max_mb": max_mb, "disk": disk, "__module__": __name__}
    one = type(f"ImagePayload{max_mb}", (ImagePayload,), attrs)
    many = type(f"ImagesPayload{max_mb}", (ImagesPayload,), attrs)
    return one, many


def limit_uploads(component: TargetImage | ImageList, max_mb: int, disk: DiskBudget | None = None) -> None:
    """Hold `component`'s images (uploads and data: URLs) to this server's PEZ_MAX_FILE_MB, its
    data: URLs written into `disk`."""
    one, many = payload_models(max_mb, disk)
    component.data_model = one if isinstance(component, TargetImage) else many


class TargetImage(gr.Image):
    """One image, handed to pez unopened: pez's loader then reports a bad file (not an image,
    empty, a decompression bomb) clearly. API type: a string (a data: URL), so MCP schemas carry
    no file reference; gradio_client's handle_file(...) works as with gr.Image."""

    is_template = True  # gradio: render with the parent's (gr.Image's) frontend
    data_model = ImagePayload
    field = "image"  # its name in messages (no __init__ of its own: gradio sends __init__'s props)

    def api_info(self) -> dict:
        return {"type": "string", "description": IMAGE_DOC}

    def preprocess(self, payload):
        item = payload.root if isinstance(payload, ImagePayload) else payload
        return None if item is None else image_path(item, self.field, self.data_model.max_mb)


class ImageList(gr.Gallery):
    """Several images: what the browser's gallery sends, or a plain list of images (files or data:
    URLs) from an API or MCP caller. API type: an array of strings (no dangling $defs in MCP)."""

    is_template = True  # gradio: render with the parent's (gr.Gallery's) frontend
    data_model = ImagesPayload
    field = "images"  # its name in messages; set per instance (see TargetImage.field)

    def api_info(self) -> dict:
        return {"type": "array", "items": {"type": "string", "description": IMAGE_DOC}}

    def example_payload(self) -> Any:
        return []

    def example_value(self) -> Any:
        return []

    def preprocess(self, payload) -> list[str]:
        items = payload.root if isinstance(payload, ImagesPayload) else self.data_model.model_validate(payload).root
        if items is None:
            return []
        if isinstance(items, Refused):
            raise user_error(f"{self.field}: {items}")
        return [image_path(i["image"] if isinstance(i, dict) else i, self.field, self.data_model.max_mb) for i in items]


# ---------------------------------------------------------------------------------------------
# Settings


class ModelDropdown(gr.Dropdown):
    """The model pair: only what this server offers (ServerSettings.check_model; `server` is set
    when the panel is built), refused by name; the API and MCP schemas list the offered values."""

    is_template = True
    server = ServerSettings()  # replaced per instance by the panel (settings.control)

    def preprocess(self, payload):
        return self.server.check_model(payload)


class Choice(gr.Radio):
    """A radio whose refusal of a value outside its choices names the value without a traceback
    (browser-only events are callable by anyone who posts to them)."""

    is_template = True

    def preprocess(self, payload):
        values = [value for _, value in self.choices]
        if payload not in values:
            raise user_error(f"{self.label or 'choice'}: expected one of {values}, received {quote_value(payload)}")
        return payload


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


SERVER_PATH_REFUSAL = (
    "A file must be uploaded first (gradio_client: handle_file(path)) or sent as a data: URL (base64): "
    "a path on the server is not read."
)


def refuse_server_paths(demo: gr.Blocks) -> None:
    """Make gradio's refusal of a file path it did not receive (a caller naming a server path as
    an image) a message, not `{"error": null}` and a traceback in the log. gradio 6.31 checks such
    paths in Blocks.preprocess_data, before any component sees the value (InvalidPathError, not a
    gr.Error); this wraps that method on `demo` only (queued and un-queued events both call it)."""
    from gradio.exceptions import InvalidPathError

    original = demo.preprocess_data

    async def preprocess_data(*args, **kwargs):
        try:
            return await original(*args, **kwargs)
        except InvalidPathError:
            raise user_error(SERVER_PATH_REFUSAL) from None

    demo.preprocess_data = preprocess_data


def queue_full(blocks: gr.Blocks | None) -> bool:
    """Whether the demo's queue refuses new runs now (gradio 6.31: Blocks._queue, its len() and
    max_size, as gradio's own 'queue full' check reads them)."""
    queue = getattr(blocks, "_queue", None)
    try:
        return queue is not None and queue.max_size is not None and len(queue) >= queue.max_size
    except Exception:  # noqa: BLE001 - an internal that changed: say nothing rather than fail
        return False


__all__ = [
    "Choice",
    "ImageList",
    "ModelDropdown",
    "SettingNumber",
    "TargetImage",
    "image_item",
    "image_path",
    "is_mcp_call",
    "limit_uploads",
    "queue_full",
    "refuse_server_paths",
]
