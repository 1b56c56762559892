"""Probe a pez server as an anonymous caller would: every endpoint through gradio_client, every MCP
tool through the MCP client, and the browser-only events by raw HTTP, with hostile values (server
paths, hub repos, format strings, huge sizes, wrong types, many files). Prints one line per call
(what came back, how long it took), then the server log's tracebacks and the server's memory.

    PYTHONPATH=. python scripts/probe_public.py              # starts `python app.py --offline-demo`
    PYTHONPATH=. python scripts/probe_public.py --url http://127.0.0.1:7860/   # a running server

Loopback only: it never calls anything but the server it is given. With --url, the log and memory
of the server are not read.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import time
import uuid
from pathlib import Path

import httpx

from tests.public_server import start_server

ROOT = Path(__file__).resolve().parent.parent

TOY = sorted((ROOT / "assets" / "examples").glob("toy_*.png"))[0]
PHOTO = ROOT / "assets" / "photos" / "cat.jpg"
DATA_URL = "data:image/png;base64," + base64.b64encode(TOY.read_bytes()).decode()
FAST = dict(model="toy", prompt_len=2, steps=2, candidates=1, seed=0, refine_steps=0, patience=0)
GEN = dict(model="toy", negative_prompt="", seed=0, steps=1, guidance=0.0, num_images=1)
HOSTILE_MODELS = ["ViT-B-32@/etc/passwd", "local-dir:/root", "hf-hub:org/repo", "random:RN50", "{0.__class__}", "x" * 10_000, 5, ["toy"]]  # fmt: skip
HOSTILE_IMAGES = [
    "/etc/passwd",
    {"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}},
    {"path": "/etc/passwd"},
    "http://127.0.0.1:22/",
    "data:image/png;base64,!!!!",
    "data:text/plain,hello",
    "data:image/png;base64," + "A" * (30 << 20),  # 22 MB once decoded: over the default 20 MB
    12345,
]
HOSTILE_NUMBERS = {"prompt_len": [0, 76, -1, 10**30, "many", [4], None, 2.5], "steps": [0, 10**9, "1e9", True]}
HOSTILE_NUMBERS |= {"candidates": [0, 9, 32], "seed": [-1, 2.5, 2**40], "lr": ["nan", -5, 1e308]}
HOSTILE_TEXTS = ["{0}{1}%s%n", "\x00" * 100, "x" * 1_000_000]


class Probe:
    def __init__(self, url: str, server=None):
        from gradio_client import Client

        self.url, self.server, self.rows = url, server, []
        self.client = Client(url, verbose=False)

    def record(self, where: str, case: str, outcome: str, seconds: float) -> None:
        self.rows.append((where, case, outcome, seconds))
        print(f"{where:<22} {case[:46]:<46} {seconds:6.1f}s  {outcome[:150]}", flush=True)

    def call(self, api: str, case: str, *args, timeout: float = 60, **kwargs) -> None:
        start = time.monotonic()
        job = self.client.submit(*args, api_name=api, **kwargs)
        try:
            value = job.result(timeout=timeout)
            outcome = "ok: " + repr(value)[:140]
        except TimeoutError:
            job.cancel()
            outcome = f"NO ANSWER within {timeout:.0f} s"
        except Exception as e:  # noqa: BLE001 - what the caller saw
            outcome = f"refused: {e}"
        self.record(api, case, outcome.replace("\n", " "), time.monotonic() - start)

    def raw(self, where: str, case: str, path: str, body: dict) -> None:
        start = time.monotonic()
        try:
            r = httpx.post(self.url + path, json=body, timeout=60)
            outcome = f"{r.status_code}: {r.text[:140]}"
        except httpx.HTTPError as e:
            outcome = f"http error: {e}"
        self.record(where, case, outcome.replace("\n", " "), time.monotonic() - start)

    # -----------------------------------------------------------------------------------------

    def endpoints(self) -> None:
        from gradio_client import handle_file

        img = handle_file(str(TOY))
        for model in HOSTILE_MODELS:
            self.call("/invert", f"model={model!r:.40}", img, **{**FAST, "model": model})
            self.call("/score", f"model={model!r:.40}", "a red circle", img, model)
            self.call("/regenerate", f"model={model!r:.40}", "a red circle", img, **{**GEN, "model": model})
        for image in HOSTILE_IMAGES:
            self.call("/invert", f"image={image!r:.40}", image, **FAST)
            self.call("/invert_multi", f"images=[{image!r:.38}]", [image], **FAST)
            self.call("/regenerate_multi", f"images=[{image!r:.34}]", "a circle", [image], **GEN)
        self.call("/invert_multi", "100 images", [img] * 100, **FAST)
        self.call("/invert", "40 negative images", img, negative_images=[img] * 40, **FAST)
        self.call("/invert_multi", "nested list", [[img, [img]]], **FAST)
        self.call("/concatenate", "32 images x 2 steps", [img] * 32, **FAST, timeout=300)
        for name, values in HOSTILE_NUMBERS.items():
            for v in values:
                self.call("/invert", f"{name}={v!r:.30}", img, **{**FAST, name: v})
        for name, v in [("num_images", 0), ("num_images", 9), ("steps", 1000), ("guidance", "high"), ("seed", -1)]:
            self.call("/regenerate", f"{name}={v!r}", "a red circle", img, **{**GEN, name: v})
        for text in HOSTILE_TEXTS:
            self.call("/distill", f"text={text!r:.30}", text, **FAST)
            self.call("/invert", f"init_prompt={text!r:.24}", img, **{**FAST, "init_prompt": text})
            self.call("/invert", f"blocklist={text!r:.26}", img, **{**FAST, "blocklist": text})
            self.call(
                "/regenerate", f"negative_prompt={text!r:.20}", "a circle", img, **{**GEN, "negative_prompt": text}
            )
        for template in ["{style} {subject:>100000000}", "{subject.__init__.__globals__}", "{0}", "{style!r}", "{"]:
            self.call("/regenerate_style", f"template={template!r:.30}", "red", "a circle", template, **GEN)
        self.call("/regenerate_style", "10,000 subjects", "red", "a circle\n" * 10_000, "{subject} in {style}", **GEN)
        self.call("/regenerate_distill", "empty prompts", "", "", **GEN)
        self.call("/invert", "photo, 3000 steps x 8 candidates", handle_file(str(PHOTO)), **{**FAST, "steps": 3000, "candidates": 8}, timeout=400)  # fmt: skip

    def raw_http(self) -> None:
        config = httpx.get(self.url + "config").json()
        # Around the queue (api_open=False must refuse it).
        self.raw("raw /run/score", "skip the queue", "gradio_api/run/score", {"data": ["x", None, "toy"]})
        # Through the queue, a file the caller never uploaded: gradio must refuse to read it.
        for path in ["/etc/passwd", "/etc/no-such-file", str(ROOT / "README.md")]:
            start = time.monotonic()
            file = {"path": path, "meta": {"_type": "gradio.FileData"}}
            event = httpx.post(self.url + "gradio_api/call/score", json={"data": ["x", file, "toy"]}).json()
            reply = httpx.get(self.url + f"gradio_api/call/score/{event['event_id']}", timeout=60).text
            self.record("raw /call/score", f"server file {path}", reply.replace("\n", " "), time.monotonic() - start)
        # Every browser-only event, with hostile data of the right arity.
        hostile = [{"x": "y" * 100}] * 5_000
        for dep in config["dependencies"]:
            if dep.get("api_name") and dep.get("api_visibility", "public") == "public":
                continue
            n = len(dep["inputs"])
            for case, value in [("5,000 dicts", hostile), ("server path", "/etc/passwd"), ("format", "{0:>99999999}")]:
                data = [value] * n
                body = {"fn_index": dep["id"], "data": data, "session_hash": uuid.uuid4().hex[:10]}
                self.raw(f"ui fn {dep['id']}", f"{case} x{n}", "gradio_api/run/predict", body)

    def budgets(self) -> None:
        """Issue 23: what one caller can hold (queue places, request bodies, log lines)."""
        config = httpx.get(self.url + "config").json()
        dep = next(d for d in config["dependencies"] if d.get("api_name") == "distill")
        comps = {c["id"]: c for c in config["components"]}
        data = [comps[i].get("props", {}).get("value") for i in dep["inputs"]]
        data[0] = "a red circle on a grey picture"
        session, start = uuid.uuid4().hex[:10], time.monotonic()
        codes = []
        for _ in range(8):
            body = {"data": data, "fn_index": dep["id"], "session_hash": session, "trigger_id": None}
            codes.append(httpx.post(self.url + "gradio_api/queue/join", json=body, timeout=30).status_code)
        self.record("queue/join", "8 joins, one session", f"status codes {codes}", time.monotonic() - start)
        stream = {"params": {"session_hash": session}, "timeout": 600}
        with httpx.stream("GET", self.url + "gradio_api/queue/data", **stream) as r:
            for line in r.iter_lines():  # listen until the session's jobs are done
                if line.startswith("data:") and '"close_stream"' in line:
                    break
        start = time.monotonic()
        codes = [
            httpx.get(self.url + "gradio_api/queue/data", params={"session_hash": f"x{i}"}).status_code
            for i in range(20)
        ]
        self.record("queue/data", "20 unknown sessions", f"status codes {sorted(set(codes))}", time.monotonic() - start)
        start = time.monotonic()
        r = httpx.post(self.url + "gradio_api/run/predict", content=b"x" * (80 << 20), timeout=120)
        self.record("run/predict", "80 MB body", f"{r.status_code} {r.text[:120]}", time.monotonic() - start)

    def mcp(self) -> None:
        from mcp import ClientSession
        from mcp.client.streamable_http import streamablehttp_client

        calls = [
            ("invert_image", {"image": "/etc/passwd", **FAST}),
            ("invert_image", {"image": DATA_URL, **FAST, "steps": 0}),
            ("invert_image", {"image": DATA_URL, **FAST, "negative_images": ["/etc/passwd"]}),
            ("invert_multi", {"images": [DATA_URL] * 40, **FAST}),
            ("invert_multi", {"images": "not a list", **FAST}),
            ("score_prompt", {"prompt": "x", "image": DATA_URL, "model": "local-dir:/root"}),
            ("regenerate_style", {"style": "red", "subjects": "a", "template": "{subject:>99999999}", **GEN}),
            ("distill_prompt", {"text": "a red circle on grey " * 4, **FAST, "steps": 30}),
            ("regenerate", {"prompt": "a red circle", "image": DATA_URL, **GEN, "seed": -1}),
        ]

        async def go():
            async with streamablehttp_client(self.url + "gradio_api/mcp/") as (read, write, _):
                async with ClientSession(read, write) as s:
                    await s.initialize()
                    tools = (await s.list_tools()).tools
                    self.record("mcp list_tools", f"{len(tools)} tools", json.dumps([t.name for t in tools]), 0)
                    for name, args in calls:
                        start = time.monotonic()
                        res = await s.call_tool(name, args)
                        text = " ".join(c.text for c in res.content if getattr(c, "type", "") == "text")
                        how = "error" if res.isError else "ok"
                        self.record(f"mcp {name}", json.dumps(args)[:46], f"{how}: {text}", time.monotonic() - start)

        asyncio.run(asyncio.wait_for(go(), 600))

    def report(self) -> int:
        slow = [r for r in self.rows if r[3] > 30]
        print(f"\n{len(self.rows)} calls; {len(slow)} took over 30 s")
        if self.server is None:
            return 0
        log = self.server.log_since(0)
        tracebacks = log.count("Traceback")
        print(f"server log: {tracebacks} traceback(s); server memory now {self.server.rss_mb():.0f} MiB")
        if tracebacks:
            print(log[log.index("Traceback") - 300 :][:3000])
        return 1 if tracebacks else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", help="a running server (default: start python app.py --offline-demo)")
    ap.add_argument("--log-dir", default="/tmp", help="where the started server's log goes")
    args = ap.parse_args()
    server = None if args.url else start_server(Path(args.log_dir))
    try:
        probe = Probe(args.url or server.url, server)
        if server is not None:
            print(f"server {server.url}: {server.rss_mb():.0f} MiB after start; log {server.log_path}")
        probe.endpoints()
        probe.raw_http()
        probe.budgets()
        probe.mcp()
        return probe.report()
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
