"""pez app: find readable hard prompts for images with PEZ, watch them improve live, regenerate.

The entry point only: the UI lives in the `pez_app` package (one module per tab, one regenerate
panel, shared settings); all the work is done by `pez`.

    python app.py                      # default pair; the toy world if its weights cannot be had
    python app.py --offline-demo       # toy world model: works with no download at all
    python app.py --no-mcp             # do not serve the endpoints as MCP tools
    PEZ_OFFLINE_DEMO=1 python app.py   # the same as --offline-demo, e.g. for a Space without a GPU

A Hugging Face Space runs this file as is (README front matter).
"""

from __future__ import annotations

import argparse
import logging
import sys

import pez
from pez_app import LAUNCH_KWARGS, SERVER, build_demo

log = logging.getLogger("pez.app")

if __name__ == "__main__" and "--offline-demo" in sys.argv[1:]:
    SERVER.offline_demo = True  # build the module-level demo once, in the mode asked for
try:
    demo = build_demo()
except pez.ConfigError as e:  # a server setting (PEZ_*) the operator mistyped
    raise SystemExit(f"app.py: {e}") from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="pez: find readable prompts for images (Gradio app)")
    p.add_argument("--device", default=None, help="auto (default: cuda, then mps, then cpu), cpu, cuda, cuda:1, mps")
    p.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=None, help="port (default 7860 or the next free one)")
    p.add_argument("--share", action="store_true", help="create a public gradio.live link")
    p.add_argument(
        "--offline-demo",
        action="store_true",
        help="use the toy world model by default: works with no download (also PEZ_OFFLINE_DEMO=1)",
    )
    p.add_argument(
        "--allow-model",
        action="append",
        default=[],
        metavar="SPEC",
        help="also offer this CLIP spec (e.g. ViT-L-14/openai; repeatable; also PEZ_EXTRA_MODELS=a,b)",
    )
    p.add_argument(
        "--no-mcp",
        dest="mcp",
        action="store_false",
        default=SERVER.mcp,
        help="do not serve the endpoints as MCP tools at /gradio_api/mcp/ (also PEZ_MCP=0)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    global demo
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per HTTP request is noise
    if args.device:
        try:
            pez.resolve_device(args.device)
        except pez.ConfigError as e:
            raise SystemExit(f"app.py: {e}") from e
        SERVER.device = args.device
    rebuild = bool(args.allow_model) or (args.offline_demo and not SERVER.offline_demo)
    SERVER.offline_demo = SERVER.offline_demo or args.offline_demo
    SERVER.allowed_models = tuple(args.allow_model)
    if rebuild:  # the flags change what the page offers
        demo = build_demo()
    start = demo.pez_start
    if start.fallback:
        log.warning(
            "default pair %r unavailable (%s): starting with the toy world. %s",
            start.wanted,
            start.reason,
            start.how_to,
        )
    elif start.pair == "toy":
        log.info("offline demo mode: default model pair 'toy' (no download)")
    elif start.downloads:
        log.info("default pair %r: weights download on first use (%s)", start.pair, ", ".join(start.missing))
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, mcp_server=args.mcp, **LAUNCH_KWARGS)


if __name__ == "__main__":
    main()
