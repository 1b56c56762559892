"""`python -m pez_app [--offline-demo] [--port N] ...`: start the app (see pez_app/main.py)."""

from .main import main

if __name__ == "__main__":
    main(prog="python -m pez_app")
