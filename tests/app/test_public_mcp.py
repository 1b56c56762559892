"""Issue 15, black-box: the app's MCP server as an assistant meets it (finding 6, and findings 1
and 5 through MCP).

`python app.py --offline-demo` runs in a subprocess on loopback; the official MCP client lists
the tools and calls every one that takes images, with images given as data: URLs (what an MCP
client can send to a server it shares no files with; the server refuses http(s) URLs and paths).
Lists of images are lists of such strings.

Each test's docstring says what an assistant met before issue 15 was fixed.
"""

from __future__ import annotations

import asyncio
import base64
import re
from contextlib import asynccontextmanager

import pytest

from ..public_server import ROOT

pytest.importorskip("mcp", reason="the gradio[mcp] extra is not installed")

TOYS = sorted((ROOT / "assets" / "examples").glob("toy_*.png"))
URLS = ["data:image/png;base64," + base64.b64encode(p.read_bytes()).decode() for p in TOYS[:3]]
FAST = {"model": "toy", "prompt_len": 3, "steps": 3, "candidates": 1, "seed": 0, "refine_steps": 0, "patience": 0}
GEN = {"model": "toy", "seed": 0, "steps": 1, "guidance": 0, "num_images": 1}
IMAGE_TOOLS = {"invert_image", "invert_multi", "concatenate", "find_style", "score_prompt"}
IMAGE_TOOLS |= {"regenerate", "regenerate_multi"}


@pytest.fixture(scope="module")
def server(public_server):
    """The server this folder's public tests share (conftest.public_server: PUBLIC_ENV)."""
    return public_server


@asynccontextmanager
async def session(server):
    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    async with streamablehttp_client(server.url + "gradio_api/mcp/") as (read, write, _):
        async with ClientSession(read, write) as s:
            await s.initialize()
            yield s


def run(coro, timeout: float = 120):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def _list(server):
    async with session(server) as s:
        return (await s.list_tools()).tools


async def _call(server, name: str, args: dict):
    async with session(server) as s:
        return await s.call_tool(name, args)


@pytest.fixture(scope="module")
def tools(server) -> dict:
    return {t.name: t for t in run(_list(server))}


def texts(result) -> list[str]:
    return [c.text for c in result.content if getattr(c, "type", "") == "text"]


def refs(node, found=None) -> list[str]:
    found = [] if found is None else found
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                found.append(value)
            else:
                refs(value, found)
    elif isinstance(node, list):
        for value in node:
            refs(value, found)
    return found


def resolves(schema: dict, ref: str) -> bool:
    """A local JSON pointer ('#/$defs/X') names something in the schema it appears in."""
    if not ref.startswith("#"):
        return False
    node = schema
    for part in [p for p in ref[1:].split("/") if p]:
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def test_every_image_tool_is_listed(tools):
    assert IMAGE_TOOLS <= set(tools), sorted(tools)


def test_every_tool_input_schema_resolves(tools):
    """Before issue 15: invert_image, invert_multi, concatenate, find_style, regenerate_multi point to '#/$defs/GalleryImage', which is not there."""
    dangling = {
        name: ref for name, t in tools.items() for ref in refs(t.inputSchema) if not resolves(t.inputSchema, ref)
    }
    assert not dangling, f"dangling $refs (an MCP client cannot validate the arguments): {dangling}"


def test_tool_descriptions_name_only_tools_that_exist(tools):
    """Before issue 15: 'use the upload_file_to_gradio tool, if present' in every tool that takes a file."""
    named = {
        name: set(re.findall(r"\b(\w+) tool\b", t.description or "")) - {"the", "this", "a"}
        for name, t in tools.items()
    }
    unknown = {name: sorted(n - set(tools)) for name, n in named.items() if n - set(tools)}
    assert not unknown, f"descriptions name tools that are not listed: {unknown}"


CALLS = [
    pytest.param("invert_image", {"image": URLS[0], **FAST}, id="invert_image"),
    pytest.param("score_prompt", {"prompt": "a red circle", "image": URLS[0], "model": "toy"}, id="score_prompt"),
    pytest.param("regenerate", {"prompt": "a red circle", "image": URLS[0], **GEN}, id="regenerate"),
    pytest.param(
        "invert_image",
        {"image": URLS[0], "negative_images": [URLS[1]], **FAST},
        id="invert_image-negative_images",
    ),
    *[
        pytest.param(
            tool,
            {"images": URLS[:2], **FAST},
            id=tool,
        )
        for tool in ("invert_multi", "concatenate", "find_style")
    ],
    pytest.param(
        "regenerate_multi",
        {"prompt": "a red circle", "images": URLS[:2], **GEN},
        id="regenerate_multi",
    ),
]


@pytest.mark.parametrize("tool, args", CALLS)
def test_every_tool_that_takes_images_is_callable_through_mcp(server, tool, args):
    """Before issue 15: every list-of-images input fails before the call (the argument schema has dangling refs)."""
    result = run(_call(server, tool, args))
    shown = " ".join(texts(result))[:400]
    assert not result.isError, f"{tool} failed: {shown}"
    assert texts(result) and texts(result)[0].strip(), f"{tool} returned no text: {result.content}"


@pytest.mark.parametrize(
    "tool, args",
    [
        ("distill_prompt", {"text": "a big red star in the middle of a plain grey picture", **FAST, "steps": 60}),
        ("invert_image", {"image": URLS[0], **FAST, "steps": 60}),
    ],
)
def test_search_tools_return_text_an_assistant_can_read(server, tool, args):
    """Before issue 15: the plot's rows come back as text (kilobytes of '[step, loss, curve]' triples)."""
    result = run(_call(server, tool, args))
    assert not result.isError, texts(result)
    text = "\n".join(texts(result))
    assert "loss (moving average)" not in text and len(text) < 2000, f"{len(text)} characters: {text[:300]}…"


@pytest.mark.parametrize(
    "tool, args",
    [
        ("invert_image", {"image": URLS[0], **FAST}),
        ("invert_multi", {"images": URLS[:2], **FAST}),
        ("distill_prompt", {"text": "a big red star on a plain grey picture", **FAST}),
    ],
    ids=["invert_image", "invert_multi", "distill_prompt"],
)
def test_search_tools_return_the_prompt_and_status_as_plain_text(server, tool, args):
    """Before (issue 23): one text, the Python repr of the outputs: "('a prompt', 'Done … score …', None,
    {'headers': [...], 'data': [...]})". Now: the prompt, then the status with its score, as texts."""
    from gradio_client import Client

    result = run(_call(server, tool, args))
    assert not result.isError, texts(result)
    shown = texts(result)
    assert len(shown) == 2, shown
    prompt, status = shown
    assert prompt.strip() and not prompt.startswith(("(", "[")), prompt
    assert "score" in status and "None" not in status and "headers" not in status, status
    # gradio_client callers keep the endpoint's four outputs (prompt, status, plot, candidates)
    api = {"invert_image": "/invert", "invert_multi": "/invert_multi", "distill_prompt": "/distill"}[tool]
    value = Client(server.url, verbose=False).predict(**_client_args(tool, args), api_name=api)
    assert isinstance(value, (list, tuple)) and len(value) == 4 and isinstance(value[0], str), value
    assert value[0].strip() and "score" in value[1] and isinstance(value[3], dict), value


def _client_args(tool: str, args: dict) -> dict:
    from gradio_client import handle_file

    out = dict(args)
    if "image" in out:
        out["image"] = handle_file(str(TOYS[0]))
    if "images" in out:
        out["images"] = [handle_file(str(p)) for p in TOYS[:2]]
    return out


MISTAKES = [
    ("invert_image", {"image": URLS[0], **FAST, "steps": 0}, ["steps", "expected", "0"]),
    ("invert_image", {"image": URLS[0], **FAST, "candidates": 0}, ["candidates", "expected", "0"]),
    ("regenerate", {"prompt": "a red circle", "image": URLS[0], **GEN, "seed": -1}, ["seed", "expected", "-1"]),
]


def mcp_refusal(server, tool: str, args: dict, needles: list[str]) -> None:
    mark = server.mark()
    result = run(_call(server, tool, args))
    text = " ".join(texts(result))
    assert result.isError, f"{tool} accepted {args}: {text[:300]}"
    missing = [n for n in needles if n.lower() not in text.lower()]
    assert not missing, f"the message does not mention {missing}: {text[:300]}"
    server.assert_quiet(mark)


@pytest.mark.parametrize("tool, args, needles", MISTAKES, ids=["steps=0", "candidates=0", "regenerate-seed=-1"])
def test_mcp_mistakes_get_a_message_naming_the_field(server, tool, args, needles):
    """Before issue 15: 'Value 0 is less than minimum value 1.' or the generic error, and a traceback in the log."""
    mcp_refusal(server, tool, args, needles)


@pytest.mark.parametrize(
    "tool, args, needles",
    [
        ("score_prompt", {"prompt": "a red circle", "image": URLS[0], "model": "local-dir:/root"}, ["sd-turbo", "toy"]),
        ("invert_image", {"image": URLS[0], **FAST, "seed": 2.5}, ["2.5", "integer"]),
    ],
    ids=["model-not-offered", "seed=2.5"],
)
def test_mcp_argument_validation_refuses_what_the_schema_excludes(server, tool, args, needles):
    """Guard (it passed before issue 15): the MCP library checks arguments against the tool's schema (the model
    is an enum of the offered pairs, the seed an integer); the fix must keep the schema that tight
    (PEZ_EXTRA_MODELS joins the enum). The library's message names the value, not the field."""
    mcp_refusal(server, tool, args, needles)
