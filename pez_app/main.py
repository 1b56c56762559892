"""Starting the app: its flags and launch, shared by `app.py` (the Space's entry), `python -m pez_app`
and `pez app`.

    python -m pez_app                      # default pair; the toy world if its weights cannot be had
    python -m pez_app --offline-demo       # toy world model: works with no download at all
    pez app --port 7861 --no-mcp           # the same through the `pez` command
"""

from __future__ import annotations

import argparse
import logging

import gradio as gr

import pez
import pez.testing  # noqa: F401  registers "random:tiny", which an operator may offer (PEZ_EXTRA_MODELS) for smoke tests

from .components import LAUNCH_KWARGS
from .layout import build_demo
from .server import SERVER

log = logging.getLogger("pez.app")


def parse_args(argv: list[str] | None = None, prog: str | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=prog, description="pez: find readable prompts for images (Gradio app)")
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


def build_or_exit(prog: str) -> gr.Blocks:
    """build_demo(), or exit with one line when a server setting (PEZ_*) is mistyped."""
    try:
        return build_demo()
    except pez.ConfigError as e:
        raise SystemExit(f"{prog}: {e}") from None


def main(argv: list[str] | None = None, demo: gr.Blocks | None = None, prog: str | None = None) -> None:
    """Parse the flags, build the app (unless `demo` is given and fits them) and serve it."""
    args = parse_args(argv, prog)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per HTTP request is noise
    if args.device:
        try:
            pez.resolve_device(args.device)
        except pez.ConfigError as e:
            raise SystemExit(f"{prog or 'pez app'}: {e}") from e
        SERVER.device = args.device
    rebuild = bool(args.allow_model) or (args.offline_demo and not SERVER.offline_demo)
    SERVER.offline_demo = SERVER.offline_demo or args.offline_demo
    SERVER.allowed_models = tuple(args.allow_model)
    if rebuild or demo is None:  # the flags change what the page offers
        demo = build_or_exit(prog or "pez app")
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


__all__ = ["build_or_exit", "main", "parse_args"]
