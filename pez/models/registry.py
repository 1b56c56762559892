"""The registry of model pairs: which CLIP(s) PEZ optimises against for which diffusion generator.

`PAIRS` is the single source of truth the CLI (`python -m pez models`), the app's dropdown, the
loaders and the replica builder read; `list_pairs()` names them, default first, and
`pair_availability()` says, without downloading anything, whether a pair's weights can be had
(the app asks at start-up before it falls back to the toy world). Pairings follow the text
encoders the generators read (PEZ paper, section 4; the generators' model cards).

A pair whose generator reads the prompt through several CLIP text encoders (SDXL: OpenAI's ViT-L/14
and OpenCLIP's ViT-bigG/14, one BPE vocabulary) names them all, joined by "+", with their default
weights: PEZ then searches one prompt scored in every CLIP space (pez.models.clip.JointClip).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from .hub import Availability, availability, open_clip_files


@dataclass(frozen=True)
class ModelPair:
    """A diffusion generator and the CLIP text encoder(s) PEZ should optimise against for it."""

    name: str  # registry key, e.g. "sd-turbo"
    label: str  # human-readable, for dropdowns
    clip: str  # CLIP spec ("ARCH/TAG" or "toy"); several joined by "+" are searched jointly
    generator: str | None  # diffusers hub id; None: no diffusion generator
    kind: str = "sd"  # pipeline family: "sd", "sdxl", "flux" or "toy"
    steps: int = 25  # default sampling steps
    guidance: float = 7.5  # default classifier-free guidance
    size: int = 512  # default width and height
    scheduler: str | None = None  # "dpm-multistep" or None (the pipeline's own)
    note: str = ""
    clip_weights: tuple[float, ...] | None = None  # default weight of each CLIP in the objective; None: equal

    @property
    def clips(self) -> tuple[str, ...]:
        """The CLIP specs PEZ searches for this pair (one, or several scored jointly)."""
        return tuple(self.clip.split("+"))

    @property
    def weights(self) -> tuple[float, ...]:
        """The default weight of each CLIP in the objective (they sum to 1)."""
        weights = self.clip_weights or (1.0,) * len(self.clips)
        return tuple(w / sum(weights) for w in weights)

    def describe_clips(self) -> str:
        """'ViT-L-14/openai' or 'ViT-L-14/openai x0.5 + ViT-bigG-14/laion2b_s39b_b160k x0.5'."""
        if len(self.clips) == 1:
            return self.clip
        return " + ".join(f"{c} x{w:g}" for c, w in zip(self.clips, self.weights))


# SDXL reads every prompt through two text encoders sharing one BPE vocabulary: OpenAI's CLIP
# ViT-L/14 and OpenCLIP ViT-bigG/14 (its pooled output also conditions the UNet). PEZ searches one
# prompt scored in both CLIP spaces; the weights were measured with bench/joint.py (BENCHMARKS.md).
SDXL_CLIPS = "ViT-L-14/openai+ViT-bigG-14/laion2b_s39b_b160k"
SDXL_WEIGHTS = (0.5, 0.5)
SDXL_NOTE = "One prompt scored in both of SDXL's CLIP spaces (ViT-L/14, ViT-bigG/14); CLIP weights 0 1: bigG alone."

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
            SDXL_CLIPS,
            "stabilityai/stable-diffusion-xl-base-1.0",
            kind="sdxl",
            steps=30,
            guidance=7.0,
            size=1024,
            clip_weights=SDXL_WEIGHTS,
            note=SDXL_NOTE,
        ),
        ModelPair(
            "sdxl-turbo",
            "SDXL-Turbo (fast, 1-4 steps)",
            SDXL_CLIPS,
            "stabilityai/sdxl-turbo",
            kind="sdxl",
            steps=1,
            guidance=0.0,
            size=512,
            clip_weights=SDXL_WEIGHTS,
            note=SDXL_NOTE,
        ),
        ModelPair(
            "flux-schnell",
            "FLUX.1 [schnell] (Apache-2.0, 1-4 steps)",
            "ViT-L-14/openai",
            "black-forest-labs/FLUX.1-schnell",
            kind="flux",
            steps=4,
            guidance=0.0,
            size=1024,
            note="PEZ optimises for the CLIP ViT-L/14 encoder (Flux reads its pooled output); Flux also "
            "reads the prompt with T5-XXL, which is not searched.",
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
    for clip in pair.clips if pair.kind != "toy" else ():
        if "/" in clip:
            repo, names = open_clip_files(*clip.split("/", 1))
            wanted.append((repo, tuple(names)))
    if pair.generator and not Path(pair.generator).is_dir():
        wanted.append((pair.generator, ("model_index.json",)))
    return availability(pair.name, wanted, timeout)


__all__ = ["DEFAULT_PAIR", "PAIRS", "ModelPair", "get_pair", "list_pairs", "pair_availability"]
