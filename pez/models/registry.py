"""The registry of model pairs: which CLIP PEZ optimises against for which diffusion generator.

`PAIRS` is the single source of truth the CLI (`python -m pez models`), the app's dropdown, the
loaders and the replica builder read; `list_pairs()` names them, default first, and
`pair_availability()` says, without downloading anything, whether a pair's weights can be had
(the app asks at start-up before it falls back to the toy world). Pairings follow the text
encoders the generators read (PEZ paper, section 4; the generators' model cards).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from .hub import Availability, availability, open_clip_files


@dataclass(frozen=True)
class ModelPair:
    """A diffusion generator and the CLIP text encoder PEZ should optimise against for it."""

    name: str  # registry key, e.g. "sd-turbo"
    label: str  # human-readable, for dropdowns
    clip: str  # CLIP spec ("ARCH/TAG" or "toy")
    generator: str | None  # diffusers hub id; None: no diffusion generator
    kind: str = "sd"  # pipeline family: "sd", "sdxl" or "toy"
    steps: int = 25  # default sampling steps
    guidance: float = 7.5  # default classifier-free guidance
    size: int = 512  # default width and height
    scheduler: str | None = None  # "dpm-multistep" or None (the pipeline's own)
    note: str = ""


PAIRS: dict[str, ModelPair] = {
    p.name: p
    for p in [
        ModelPair(
            "sd-turbo",
            "SD-Turbo (fast, 1-4 steps)",
            "ViT-H-14/laion2b_s32b_b79k",
            "stabilityai/sd-turbo",
            steps=1,
            guidance=0.0,
            size=512,
            note="Fast default for interactive use on a GPU; guidance 0 ignores negative prompts.",
        ),
        ModelPair(
            "sd-2.1-base",
            "Stable Diffusion 2.1-base (paper setting)",
            "ViT-H-14/laion2b_s32b_b79k",
            "stabilityai/stable-diffusion-2-1-base",
            steps=25,
            guidance=9.0,
            size=512,
            scheduler="dpm-multistep",
            note="The PEZ paper's generation setting.",
        ),
        ModelPair(
            "sd-1.5",
            "Stable Diffusion 1.5",
            "ViT-L-14/openai",
            "stable-diffusion-v1-5/stable-diffusion-v1-5",
            steps=25,
            guidance=7.5,
            size=512,
        ),
        ModelPair(
            "sdxl",
            "SDXL base 1.0",
            "ViT-bigG-14/laion2b_s39b_b160k",
            "stabilityai/stable-diffusion-xl-base-1.0",
            kind="sdxl",
            steps=30,
            guidance=7.0,
            size=1024,
            note="PEZ optimises for the bigG encoder only; SDXL also has a ViT-L encoder.",
        ),
        ModelPair(
            "sdxl-turbo",
            "SDXL-Turbo (fast, 1-4 steps)",
            "ViT-bigG-14/laion2b_s39b_b160k",
            "stabilityai/sdxl-turbo",
            kind="sdxl",
            steps=1,
            guidance=0.0,
            size=512,
        ),
        ModelPair(
            "toy",
            "Toy world (offline demo, no download)",
            "toy",
            None,
            kind="toy",
            steps=1,
            guidance=0.0,
            size=64,
            note="A small CLIP trained on coloured shapes; its 'generator' draws the shapes named.",
        ),
    ]
}
DEFAULT_PAIR = "sd-turbo"


def list_pairs() -> list[str]:
    """Names of the registered model pairs, default first."""
    return [DEFAULT_PAIR] + [name for name in PAIRS if name != DEFAULT_PAIR]


def get_pair(name: str) -> ModelPair:
    if name not in PAIRS:
        raise ConfigError(f"model pair: expected one of {list_pairs()}, received {name!r}")
    return PAIRS[name]


def pair_availability(name: str = DEFAULT_PAIR, timeout: float = 3.0) -> Availability:
    """Quickly learn (no download, one connection probe at most) whether pair `name` can run.

    The app calls this at start-up to decide whether to fall back to the toy world; the CLI never
    falls back and keeps its clear WeightsNotFoundError."""
    pair = get_pair(name)
    wanted: list[tuple[str, tuple[str, ...]]] = []  # (hub repo, any of these files)
    if pair.kind != "toy" and "/" in pair.clip:
        repo, names = open_clip_files(*pair.clip.split("/", 1))
        wanted.append((repo, tuple(names)))
    if pair.generator and not Path(pair.generator).is_dir():
        wanted.append((pair.generator, ("model_index.json",)))
    return availability(pair.name, wanted, timeout)


__all__ = ["DEFAULT_PAIR", "PAIRS", "ModelPair", "get_pair", "list_pairs", "pair_availability"]
