"""`python -m pez ...`: see pez/cli.py."""

from .cli import main

if __name__ == "__main__":
    main()
