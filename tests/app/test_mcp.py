"""The app as an MCP server (gradio's `mcp_server`): list the tools and call one, in-process on
loopback, through the real MCP client over streamable HTTP."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("mcp", reason="the gradio[mcp] extra is not installed")

import app  # noqa: E402


@pytest.fixture(scope="module")
def mcp_url():
    demo = app.build_demo(offline_demo=True)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, server_name="127.0.0.1", mcp_server=True)
    try:
        yield url.rstrip("/") + "/gradio_api/mcp/"
    finally:
        demo.close()


async def _list_and_call(url: str):
    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    async with streamablehttp_client(url) as (read, write, _):
        async with ClientSession(read, write) as session:
            await session.initialize()
            tools = {t.name: t for t in (await session.list_tools()).tools}
            args = {"text": "a big red star in the middle of a grey picture", "model": "toy", "prompt_len": 3}
            result = await session.call_tool("distill_prompt", {**args, "steps": 8, "candidates": 1, "seed": 0})
            return tools, result


def test_mcp_lists_described_tools_and_calls_one(mcp_url):
    tools, result = asyncio.run(asyncio.wait_for(_list_and_call(mcp_url), timeout=120))
    assert {"invert_image", "invert_multi", "concatenate", "find_style", "distill_prompt", "score_prompt"} <= set(tools)
    assert {"regenerate", "regenerate_multi", "regenerate_style", "regenerate_distill"} <= set(tools)
    invert = tools["invert_image"]
    assert invert.description.startswith("Find a readable text prompt that describes an image")
    props = invert.inputSchema["properties"]
    assert props["steps"]["type"] == "integer" and "optimisation steps" in props["steps"]["description"]
    assert not result.isError, result
    texts = [c.text for c in result.content if getattr(c, "type", "") == "text"]
    assert any("CLIP text similarity" in t for t in texts), texts  # the plain-text status came back
