"""`python -m pez.toy train [--out DIR] [--seed N] [--steps N] [--seconds S]`: see pez/toy/train.py."""

import logging

from .train import main

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
