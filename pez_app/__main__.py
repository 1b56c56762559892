"""`python -m pez_app [--offline-demo] [--port N] ...`: start the app (see pez_app/main.py). Without
the app's dependencies (gradio) it says what to install, as `pez app` does, instead of a traceback."""

import sys

from pez.cli import app_missing


def _main() -> None:
    try:
        from .main import main
    except ModuleNotFoundError as e:
        message = app_missing(e)
        if message is None:
            raise
        sys.stderr.write(f"error: {message}\n")
        sys.exit(2)
    main(prog="python -m pez_app")


if __name__ == "__main__":
    _main()
