"""pez app: find readable hard prompts for images with PEZ, watch them improve live, regenerate.

The entry point only: the UI lives in the `pez_app` package (one module per tab, one regenerate
panel, shared settings; its flags and launch in pez_app/main.py); all the work is done by `pez`.

    python app.py                      # default pair; the toy world if its weights cannot be had
    python app.py --offline-demo       # toy world model: works with no download at all
    python app.py --no-mcp             # do not serve the endpoints as MCP tools
    PEZ_OFFLINE_DEMO=1 python app.py   # the same as --offline-demo, e.g. for a Space without a GPU

A Hugging Face Space runs this file as is (README front matter). Installed with pip, the same app
starts with `pez app` or `python -m pez_app`.
"""

from __future__ import annotations

import sys

from pez_app import LAUNCH_KWARGS, build_demo
from pez_app.main import build_or_exit, main, parse_args

# Built once, at import (a Space imports this file): with the environment's PEZ_* settings and, run
# as a script, the command line's flags (so main() need not build it again).
demo = build_or_exit("app.py", parse_args(sys.argv[1:], "app.py") if __name__ == "__main__" else None)

__all__ = ["LAUNCH_KWARGS", "build_demo", "demo", "main", "parse_args"]

if __name__ == "__main__":
    main(demo=demo, prog="app.py")
