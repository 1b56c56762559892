"""Fixtures for tests and benchmarks, apart from the engine: models with random weights.

    tiny_clip.py      the tiny random CLIPs behind the specs "random:tiny" and "random:tiny-wide"
                      (real 49,408-token tokenizer)
    tiny_sd.py        a tiny random Stable Diffusion pipeline, built from configs (no download)
    hub_files.py      writing a hub cache of random weights, tensor by tensor (the replicas' parts)
    replica.py        full-size replicas of the pairs' hub repos with random weights (`python -m pez replica`)
    flux_replica.py   FLUX.1-schnell's repo for the replica (full size or a small same-layout one)

Importing this package registers the tiny CLIPs with the loader (pez.models.register_random_clip):
the core never imports pez.testing; the test suite and the front-ends that offer "random:tiny" for
smoke runs (the `pez` command, the app) do.
"""

from functools import partial

from ..models import register_random_clip
from .tiny_clip import TINY_CONFIGS, tiny_clip

for _name in TINY_CONFIGS:
    register_random_clip(_name, partial(tiny_clip, _name))
