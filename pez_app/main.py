"""Starting the app: its flags and launch, shared by `app.py` (the Space's entry), `python -m pez_app`
and `pez app`.

    python -m pez_app                      # default pair; the toy world if its weights cannot be had
    python -m pez_app --offline-demo       # toy world model: works with no download at all
    pez app --port 7861 --no-mcp           # the same through the `pez` command
"""

from __future__ import annotations

import argparse
import dataclasses
import logging

import gradio as gr

import pez
import pez.testing  # noqa: F401  registers "random:tiny", which an operator may offer (PEZ_EXTRA_MODELS) for smoke tests

from .layout import build_demo
from .server import ServerSettings

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
        default=None,
        help="do not serve the endpoints as MCP tools at /gradio_api/mcp/ (also PEZ_MCP=0)",
    )
    return p.parse_args(argv)


def settings_from(args: argparse.Namespace | None = None) -> ServerSettings:
    """The server's settings: PEZ_* from the environment, then the flags (a ConfigError names a
    mistyped variable or a device that does not exist)."""
    flags: dict = {}
    if args is not None:
        if args.device:
            pez.resolve_device(args.device)
            flags["device"] = args.device
        if args.offline_demo:
            flags["offline_demo"] = True
        if args.mcp is False:
            flags["mcp"] = False
        if args.allow_model:
            flags["allowed_models"] = tuple(args.allow_model)
    return ServerSettings.from_env(**flags)


def build_or_exit(prog: str, args: argparse.Namespace | None = None) -> gr.Blocks:
    """build_demo() with the settings of the environment and `args`, or exit with one line when a
    server setting (PEZ_*) or a flag is wrong."""
    try:
        return build_demo(settings_from(args))
    except pez.ConfigError as e:
        raise SystemExit(f"{prog}: {e}") from None


def main(argv: list[str] | None = None, demo: gr.Blocks | None = None, prog: str | None = None) -> None:
    """Parse the flags, build the app (unless `demo` is given and fits them) and serve it."""
    args = parse_args(argv, prog)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per HTTP request is noise
    prog = prog or "pez app"
    try:
        wanted = settings_from(args)
    except pez.ConfigError as e:
        raise SystemExit(f"{prog}: {e}") from None
    built = getattr(demo, "pez", None)
    if built is None or _differs(built.settings, wanted):  # the flags change what the page offers
        demo = build_or_exit(prog, args)
    start = demo.pez.start
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
    mcp = demo.pez.settings.mcp
    quiet_gradio_notes()
    demo.launch(
        server_name=args.host, server_port=args.port, share=args.share, mcp_server=mcp, **demo.pez.launch_kwargs
    )


# gradio's start-up notes that do not apply to pez, and how pez words them instead (None: dropped).
# gr.State inputs: the tools' `control` parameter is the browser tab's run record, never an input.
GRADIO_NOTES = {"set `share=True` in `launch()`": "start with `--share`"}
STATE_IN_MCP_WARNING = "This MCP server includes a tool that has a gr.State input"


def quiet_gradio_notes() -> None:
    """gradio's launch prints advice for its own API ("set `share=True` in `launch()`": pez's flag
    is --share) and warns that MCP tools have a gr.State input (pez's run control, not a tool
    argument): the first is reworded on stdout, the second not shown."""
    import sys
    import warnings

    warnings.filterwarnings("ignore", message=STATE_IN_MCP_WARNING)
    if not isinstance(sys.stdout, _Reworded):
        sys.stdout = _Reworded(sys.stdout, GRADIO_NOTES)


class _Reworded:
    """A text stream that rewrites a few fixed phrases of what is written through it."""

    def __init__(self, stream, replacements: dict[str, str]):
        self._stream, self._replacements = stream, replacements

    def write(self, text: str) -> int:
        for old, new in self._replacements.items():
            text = text.replace(old, new)
        return self._stream.write(text)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _differs(built: ServerSettings, wanted: ServerSettings) -> bool:
    """Whether a demo built with `built` cannot serve `wanted` (mcp is a launch argument only)."""
    return dataclasses.replace(built, mcp=wanted.mcp) != wanted


__all__ = ["build_or_exit", "main", "parse_args", "settings_from"]
