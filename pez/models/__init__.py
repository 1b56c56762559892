"""Models: which CLIP goes with which generator, loading CLIPs, and the Hugging Face Hub.

    registry.py   ModelPair, PAIRS, DEFAULT_PAIR, list_pairs, get_pair, pair_availability
    clip.py       CLIP spec strings, LoadedClip, JointClip (several CLIPs, one prompt), TextSpace (what
                  both offer the engine), load_clip (cached), devices and precision; get_clip (a model and its clip_weights, resolved once)
    hub.py        the Hub in one place: cached, offline, reachable, download, availability

The generators' pipelines are loaded by pez.generate.pipeline (diffusers is slow to import).
"""

from .clip import (
    ClipSpec,
    JointClip,
    LoadedClip,
    TextSpace,
    clear_cache,
    clip_specs,
    get_clip,
    has_weights,
    load_clip,
    parse_clip_spec,
    register_random_clip,
    resolve_device,
    resolve_precision,
)
from .hub import Availability, hub_cached, hub_offline, hub_reachable
from .registry import DEFAULT_PAIR, PAIRS, ModelPair, get_pair, list_pairs, pair_availability

__all__ = [
    "DEFAULT_PAIR",
    "PAIRS",
    "Availability",
    "ClipSpec",
    "JointClip",
    "LoadedClip",
    "ModelPair",
    "TextSpace",
    "clear_cache",
    "clip_specs",
    "get_clip",
    "has_weights",
    "get_pair",
    "hub_cached",
    "hub_offline",
    "hub_reachable",
    "list_pairs",
    "load_clip",
    "pair_availability",
    "parse_clip_spec",
    "register_random_clip",
    "resolve_device",
    "resolve_precision",
]
