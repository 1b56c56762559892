"""Build the toy world's CLIP and example images: a thin wrapper of `python -m pez.toy train`.

python scripts/train_toy.py                 # writes assets/toy_clip/ and assets/examples/
python scripts/train_toy.py --out /tmp/toy --examples ''   # elsewhere, no examples
"""

import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pez import toy  # noqa: E402

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    toy.main(["train", *sys.argv[1:]])
