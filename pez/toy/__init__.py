"""The toy world: coloured shapes whose right prompt is known, a tiny CLIP trained on them, and a
"generator" that draws the shapes a prompt names. Works with no download at all.

    world.py       colours, shapes, the renderer, words as the tokenizer reads them
    clip.py        the toy CLIP: its configuration and its shipped weights (assets/toy_clip)
    generator.py   toy_generate (the toy pair's generator) and the app's example images
    train.py       training the toy CLIP: `python -m pez.toy train` rebuilds the shipped assets

The public names of all four are re-exported here.
"""

from .clip import (
    ASSETS_DIR,
    CONFIG_FILE,
    MEAN,
    STD,
    TOY_CONFIG,
    WEIGHTS_FILE,
    build_model,
    create_toy_clip,
    preprocess_for,
    save_assets,
)
from .generator import EXAMPLES, EXAMPLES_DIR, toy_generate, write_examples
from .train import TrainConfig, encode_ids, junk_margin, train_model, zero_shot_accuracy
from .world import COLOURS, DEFAULT_SIZE, EVAL_SEED_BASE, SHAPES, caption, find_words, render, word_ids, words_in

__all__ = [
    "ASSETS_DIR",
    "COLOURS",
    "CONFIG_FILE",
    "DEFAULT_SIZE",
    "EVAL_SEED_BASE",
    "EXAMPLES",
    "EXAMPLES_DIR",
    "MEAN",
    "SHAPES",
    "STD",
    "TOY_CONFIG",
    "TrainConfig",
    "WEIGHTS_FILE",
    "build_model",
    "caption",
    "create_toy_clip",
    "encode_ids",
    "find_words",
    "junk_margin",
    "preprocess_for",
    "render",
    "save_assets",
    "toy_generate",
    "train_model",
    "word_ids",
    "words_in",
    "write_examples",
    "zero_shot_accuracy",
]
