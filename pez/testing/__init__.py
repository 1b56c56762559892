"""Fixtures for tests and benchmarks, apart from the engine: models with random weights.

    tiny_clip.py   the tiny random CLIP behind the spec "random:tiny" (real 49,408-token tokenizer)
    tiny_sd.py     a tiny random Stable Diffusion pipeline, built from configs (no download)
    replica.py     full-size replicas of the pairs' hub repos with random weights (`python -m pez replica`)

Nothing in the engine imports these; the loader reaches tiny_clip only for "random:tiny".
"""
