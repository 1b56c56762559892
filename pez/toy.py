"""The toy world: coloured shapes, captions, a small CLIP trained on them, and a toy generator.

Real CLIP weights cannot always be downloaded, so pez ships a tiny open_clip CLIP trained in a
couple of minutes on synthetic images whose right prompt is known ("a red circle"). It uses the
real ViT-B-32 tokenizer and its whole 49,408-token vocabulary, so PEZ runs on it exactly as on
a real CLIP and can be tested with real signal.

The world: every image is one shape of one colour drawn with PIL at a random position, size
and rotation (hearts stay upright) on a noisy grey background; `render(colour, shape, seed)`
is deterministic. Seeds below `EVAL_SEED_BASE` are for training, seeds from it on are held out.

PEZ-friendliness: PEZ projects onto the whole vocabulary, and any token that carries a little
meaning by accident, or gives junk features, can win. So training (see `TrainConfig`):
  (a) writes captions as bags of words with random vocabulary tokens scattered among them, so
      the text tower learns to ignore everything but colour and shape words;
  (b) trains only the embedding rows of the caption words (and SOT/EOT): the other 49k rows
      keep their random initialisation, so none soaks up meaning from the few captions it
      happened to appear in;
  (c) adds negatives for every image: strings of random tokens, and near misses, captions one
      word off ("a red circle square", "a red"), so that hedging or naming one word costs.
bench/quality.py measures how often PEZ then finds the right words.

Build the shipped assets with `python -m pez.toy train` (writes `assets/toy_clip/`).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import cache, lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from .config import ConfigError

log = logging.getLogger(__name__)

COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange", "white", "black")
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "heart")

# Base RGB of each colour; each render jitters it a little.
_RGB: dict[str, tuple[int, int, int]] = {
    "red": (215, 30, 30),
    "green": (35, 165, 55),
    "blue": (35, 65, 215),
    "yellow": (240, 215, 35),
    "purple": (135, 45, 175),
    "orange": (245, 135, 25),
    "white": (248, 248, 248),
    "black": (12, 12, 12),
}
EVAL_SEED_BASE = 1_000_000_000  # render seeds >= this are never used in training
DEFAULT_SIZE = 64  # pixels; the toy CLIP resizes to its own input size (TOY_CONFIG)
_SUPERSAMPLE = 4  # shapes are drawn this many times larger, then downsampled (anti-aliasing)
_RADIUS = (0.24, 0.42)  # shape radius range, as a fraction of the image side
_MAX_NOISE = 22.0  # background noise std is drawn from [0, _MAX_NOISE] (pixel values)
_MAX_SLOPE = 30.0  # background grey may change by up to this much across the image
_MAX_ANGLE = 2 * math.pi  # shapes are rotated by an angle drawn from [0, _MAX_ANGLE] ...
_HEART_TILT = math.pi / 6  # ... except hearts, which stay upright within +-30 degrees


def caption(colour: str, shape: str) -> str:
    """The true caption of an image of `shape` in `colour`."""
    _check_words(colour, shape)
    return f"a {colour} {shape}"


def _check_words(colour: str, shape: str) -> None:
    if colour not in COLOURS:
        raise ConfigError(f"colour: expected one of {list(COLOURS)}, received {colour!r}")
    if shape not in SHAPES:
        raise ConfigError(f"shape: expected one of {list(SHAPES)}, received {shape!r}")


# ---------------------------------------------------------------------------------------------
# Rendering


@cache
def _outline(shape: str) -> np.ndarray:
    """Polygon of `shape` centred on 0 with radius ~1, as (K, 2) points; circle is not a polygon."""
    if shape == "square":
        t = np.arange(4) * math.pi / 2 + math.pi / 4
        return np.stack([np.cos(t), np.sin(t)], 1) * 0.95
    if shape == "triangle":
        t = np.arange(3) * 2 * math.pi / 3 - math.pi / 2
        return np.stack([np.cos(t), np.sin(t)], 1) * 1.1
    if shape == "star":
        t = np.arange(10) * math.pi / 5 - math.pi / 2
        r = np.where(np.arange(10) % 2 == 0, 1.1, 0.45)
        return np.stack([r * np.cos(t), r * np.sin(t)], 1)
    if shape == "cross":
        a, b = 0.3, 0.95  # half arm width, arm length
        pts = [(a, b), (a, a), (b, a), (b, -a), (a, -a), (a, -b)]
        pts += [(-x, -y) for x, y in pts]
        return np.array(pts, dtype=float)
    if shape == "heart":
        t = np.linspace(0, 2 * math.pi, 64, endpoint=False)
        x = 16 * np.sin(t) ** 3
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))  # image y is down
        return np.stack([x, y + 2.5], 1) / 16.5
    raise ConfigError(f"shape: expected one of {list(SHAPES)}, received {shape!r}")


def _shape_mask(shape: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """Anti-aliased coverage mask (size, size) in [0, 1] of one randomly placed shape."""
    big = size * _SUPERSAMPLE
    radius = rng.uniform(*_RADIUS) * big
    cx, cy = rng.uniform(radius, big - radius, size=2)
    spin = rng.uniform()
    angle = (spin - 0.5) * 2 * _HEART_TILT if shape == "heart" else spin * _MAX_ANGLE
    canvas = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(canvas)
    if shape == "circle":
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=255)
    else:
        rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        pts = _outline(shape) @ rot.T * radius + (cx, cy)  # (K, 2)
        draw.polygon([tuple(p) for p in pts], fill=255)
    small = canvas.resize((size, size), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32)[..., None] / 255.0  # (size, size, 1)


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
    """Grey background (size, size, 3) with a random level, gradient and noise, in [0, 255]."""
    level = rng.uniform(60, 195)
    slope = rng.uniform(-_MAX_SLOPE, _MAX_SLOPE, size=2)  # grey change across the image, per axis
    ramp = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    grey = level + slope[0] * ramp[None, :] + slope[1] * ramp[:, None]  # (size, size)
    noise = rng.normal(0, rng.uniform(0, _MAX_NOISE), size=(size, size, 1)).astype(np.float32)
    return np.repeat(grey[..., None], 3, axis=2) + noise


def render(colour: str, shape: str, seed: int, size: int = DEFAULT_SIZE) -> Image.Image:
    """An RGB image of one `colour` `shape` on a noisy grey background; deterministic in seed."""
    _check_words(colour, shape)
    rng = np.random.default_rng(seed)
    bg = _background(size, rng)  # (size, size, 3)
    mask = _shape_mask(shape, size, rng)  # (size, size, 1)
    rgb = np.clip(np.array(_RGB[colour], np.float32) + rng.uniform(-22, 22, size=3), 0, 255)
    img = bg * (1 - mask) + rgb * mask + rng.normal(0, 4, size=(size, size, 3))  # sensor noise
    return Image.fromarray(np.clip(img, 0, 255).round().astype(np.uint8), "RGB")


# ---------------------------------------------------------------------------------------------
# The toy CLIP: architecture, text batches, training

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets" / "toy_clip"
CONFIG_FILE = "open_clip_config.json"  # open_clip's hub layout, so "local-dir:" loading works too
WEIGHTS_FILE = "open_clip_model.safetensors"
MEAN = STD = (0.5, 0.5, 0.5)
TOY_CONFIG = {  # open_clip.model.CLIP(**TOY_CONFIG); the real 49,408-token BPE vocabulary
    "embed_dim": 64,
    # A ModifiedResNet: on this data a tiny ViT needs far more steps to tell shapes apart.
    "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 8, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
}


@dataclass
class TrainConfig:
    """Training settings of the toy CLIP (defaults build the shipped weights)."""

    seed: int = 0
    steps: int = 1200  # optimiser steps
    seconds: float | None = None  # wall-clock budget; stops early when reached
    batch_size: int = 64  # images per step, each with its own caption
    junk_captions: int = 32  # strings of random tokens per step, negatives for every image
    near_misses: int = 32  # captions one word off (a word added or left out), negatives too
    max_distractors: int = 4  # random vocabulary tokens scattered among a caption's words
    clean_fraction: float = 0.4  # captions written exactly as caption() / "{colour} {shape}"
    images_per_combo: int = 160  # pre-rendered training images per colour x shape
    lr: float = 3e-3
    weight_decay: float = 0.1
    warmup: int = 50  # linear warm-up steps, then cosine decay
    train_all_tokens: bool = False  # False: only caption words, SOT and EOT rows of the token
    # embedding learn; the other 49k keep their random init, so no random token can soak up
    # meaning from the few captions it happened to appear in (PEZ would find such tokens).
    text_len: int = 12  # token positions used in training; exact, thanks to the causal mask
    eval_per_combo: int = 5  # held-out images per colour x shape for the reported accuracy
    threads: int | None = 1  # torch CPU threads; 1 is reproducible and robust on a shared CPU


@lru_cache(maxsize=1)
def _tokenizer():
    import open_clip

    return open_clip.get_tokenizer("ViT-B-32")


@cache
def _word_ids(words: tuple[str, ...]) -> tuple[int, ...]:
    """Token ids of single-token words; raises ConfigError for a word that is not one token."""
    tok = _tokenizer()
    ids = []
    for w in words:
        enc = tok.encode(w)
        if len(enc) != 1:
            raise ConfigError(f"toy word: expected a single BPE token, received {w!r} -> {enc}")
        ids.append(enc[0])
    return tuple(ids)


def word_ids(words) -> list[int]:
    """Token ids of single-token words (e.g. COLOURS); ConfigError for a multi-token word."""
    return list(_word_ids(tuple(words)))


def encode_ids(model, ids: torch.Tensor) -> torch.Tensor:
    """Text features (B, E) of token ids (B, L), L <= context; equals model.encode_text.

    The causal mask means positions after EOT never reach the EOT output, so a batch of short
    sequences gives exactly the features of the same sequences padded to the full context.
    """
    n = ids.shape[1]
    x = model.token_embedding(ids) + model.positional_embedding[:n]  # (B, L, d)
    x = model.transformer(x, attn_mask=model.attn_mask[:n, :n])
    x = model.ln_final(x)
    x = x[torch.arange(ids.shape[0]), ids.argmax(dim=-1)]  # EOT has the largest id; (B, d)
    proj = model.text_projection
    return proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj  # (B, E)


class _CaptionSampler:
    """Builds token-id batches: true captions with scattered distractors, and junk strings."""

    def __init__(self, cfg: TrainConfig, gen: torch.Generator):
        tok = _tokenizer()
        self.cfg, self.gen = cfg, gen
        self.sot, self.eot = int(tok.sot_token_id), int(tok.eot_token_id)
        self.colour_ids, self.shape_ids = word_ids(COLOURS), word_ids(SHAPES)
        self.a_id = word_ids(["a"])[0]
        allowed = torch.ones(self.eot + 1, dtype=torch.bool)  # every id up to EOT is a word
        allowed[[self.sot, self.eot, *self.colour_ids, *self.shape_ids]] = False
        self.distractors = allowed.nonzero().squeeze(1)  # (V',) ids a caption may hide among
        self.word_ids = [self.sot, self.eot, self.a_id, *self.colour_ids, *self.shape_ids]

    def _random_tokens(self, *shape: int) -> torch.Tensor:
        idx = torch.randint(len(self.distractors), shape, generator=self.gen)
        return self.distractors[idx]

    def _finish(self, words: torch.Tensor) -> torch.Tensor:
        """(N, K) word ids, -1 = unused, unused last -> (N, text_len) [SOT, words, EOT, 0...]."""
        n, k = words.shape
        ids = torch.zeros(n, self.cfg.text_len, dtype=torch.long)
        ids[:, 0] = self.sot
        ids[:, 1 : 1 + k] = words.clamp(min=0)
        ids[torch.arange(n), 1 + (words >= 0).sum(1)] = self.eot
        return ids

    def captions(
        self, labels: torch.Tensor, wrong: torch.Tensor | None = None, drop: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, text_len) ids: per label (colour * len(SHAPES) + shape), its colour and shape words,
        maybe "a", and up to max_distractors random tokens, shuffled; or a clean caption.
        For near misses: `wrong` (B,) ids adds a word (-1: none); `drop` (B,) leaves out the
        colour (1) or the shape (2) word (0: neither)."""
        b, d = len(labels), self.cfg.max_distractors
        colour = torch.tensor(self.colour_ids)[labels // len(SHAPES)]
        shape = torch.tensor(self.shape_ids)[labels % len(SHAPES)]
        with_a = torch.rand(b, generator=self.gen) < 0.5
        article = torch.where(with_a, self.a_id, -1)
        wrong = torch.full((b,), -1) if wrong is None else wrong
        n_extra = torch.randint(d + 1, (b, 1), generator=self.gen)
        extra = torch.where(torch.arange(d) < n_extra, self._random_tokens(b, d), -1)  # (B, d)
        words = torch.cat([article[:, None], colour[:, None], shape[:, None], wrong[:, None], extra], 1)
        if drop is not None:
            words[drop == 1, 1] = -1
            words[drop == 2, 2] = -1
        clean = torch.rand(b, generator=self.gen) < self.cfg.clean_fraction
        words[clean, 4:] = -1  # (B, 4 + d): a clean caption has no distractors
        keys = torch.rand(words.shape, generator=self.gen)  # random order for bag-of-words rows
        keys[clean] = torch.arange(words.shape[1], dtype=keys.dtype)  # "a colour shape" order
        keys[words < 0] = math.inf  # unused slots go last
        return self._finish(words.gather(1, keys.argsort(1)))

    def near_misses(self, n: int) -> torch.Tensor:
        """(n, text_len) ids of captions of random classes one word off: a second colour or shape
        word added ("a red circle square") or the colour or shape left out ("a red"). Negatives
        for every image, so hedging between two words, or naming just one, costs score."""
        c, k = len(COLOURS), len(SHAPES)
        labels = torch.randint(c * k, (n,), generator=self.gen)
        other_colour = (labels // k + torch.randint(1, c, (n,), generator=self.gen)) % c
        other_shape = (labels % k + torch.randint(1, k, (n,), generator=self.gen)) % k
        kind = torch.randint(4, (n,), generator=self.gen)  # 0/1: add colour/shape, 2/3: drop one
        wrong = torch.where(kind == 0, torch.tensor(self.colour_ids)[other_colour], -1)
        wrong = torch.where(kind == 1, torch.tensor(self.shape_ids)[other_shape], wrong)
        drop = (kind - 1).clamp(min=0)  # 2 -> drop colour (1), 3 -> drop shape (2)
        return self.captions(labels, wrong, drop)

    def junk(self, n: int) -> torch.Tensor:
        """(n, text_len) ids of strings of 1..text_len-2 random tokens (no colour/shape word)."""
        k = self.cfg.text_len - 2
        length = torch.randint(1, k + 1, (n, 1), generator=self.gen)
        return self._finish(torch.where(torch.arange(k) < length, self._random_tokens(n, k), -1))

    def batch(self, labels: torch.Tensor) -> torch.Tensor:
        """(B + J, text_len) ids: a caption per label, then the negatives: junk_captions junk
        strings and near_misses near misses."""
        negatives = [self.junk(self.cfg.junk_captions), self.near_misses(self.cfg.near_misses)]
        return torch.cat([self.captions(labels), *negatives])


def _combos() -> list[tuple[str, str]]:
    """All (colour, shape) pairs; class label k is the k-th pair."""
    return [(c, s) for c in COLOURS for s in SHAPES]


def _to_tensor(images: list[Image.Image]) -> torch.Tensor:
    """uint8 (N, 3, H, W) of RGB images."""
    return torch.from_numpy(np.stack([np.asarray(im) for im in images])).permute(0, 3, 1, 2).contiguous()


def _normalise(x: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float, as the eval preprocess does for images of the model's size."""
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x.float() / 255.0 - mean) / std


def _model_input(image: Image.Image) -> Image.Image:
    """Resize a square render to the model's input size as the eval preprocess does (bicubic)."""
    size = TOY_CONFIG["vision_cfg"]["image_size"]
    return image if image.size == (size, size) else image.resize((size, size), Image.Resampling.BICUBIC)


def _render_set(seeds_per_combo: int, seed_base: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 model inputs (N, 3, S, S) and labels (N,) for every combo; seeds from seed_base."""
    images, labels = [], []
    for label, (colour, shape) in enumerate(_combos()):
        for k in range(seeds_per_combo):
            images.append(_model_input(render(colour, shape, seed_base + label * seeds_per_combo + k)))
            labels.append(label)
    return _to_tensor(images), torch.tensor(labels)


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flip of a batch (N, 3, H, W): every toy shape, upright hearts included,
    is still itself (no quarter turns: they would turn hearts upside down)."""
    return x.flip(3) if torch.rand(1, generator=gen) < 0.5 else x


def _contrastive_loss(img: torch.Tensor, txt: torch.Tensor, labels: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Multi-positive CLIP loss. img (B, E), txt (B + J, E) normalised; the J texts after the
    captions are negatives for every image; image i and caption j match when their labels are equal."""
    b = img.shape[0]
    logits = scale * img @ txt.T  # (B, B + J)
    same = labels[:, None] == labels[None, :]  # (B, B)
    pos = torch.cat([same, same.new_zeros(b, txt.shape[0] - b)], 1)  # (B, B + J)
    i2t = logits.logsumexp(1) - logits.masked_fill(~pos, -torch.inf).logsumexp(1)
    t_logits = logits[:, :b].T  # (B captions, B images)
    t2i = t_logits.logsumexp(1) - t_logits.masked_fill(~same.T, -torch.inf).logsumexp(1)
    return (i2t.mean() + t2i.mean()) / 2


def build_model(seed: int = 0):
    """A freshly initialised toy CLIP (fp32, CPU)."""
    import open_clip

    torch.manual_seed(seed)
    return open_clip.model.CLIP(**TOY_CONFIG)


def preprocess_for(image_size: int | None = None) -> Callable:
    """The eval preprocess of the toy CLIP: PIL image -> (3, S, S) tensor."""
    import open_clip

    size = image_size or TOY_CONFIG["vision_cfg"]["image_size"]
    return open_clip.image_transform(size, is_train=False, mean=MEAN, std=STD)


@torch.no_grad()
def zero_shot_accuracy(model, per_combo: int = 5, seed_base: int = EVAL_SEED_BASE) -> float:
    """Fraction of held-out renders whose best-scoring caption (of all combos) is the true one."""
    model.eval()
    images, labels = _render_set(per_combo, seed_base)
    tok = _tokenizer()
    txt = F.normalize(model.encode_text(tok([caption(c, s) for c, s in _combos()])), dim=-1)  # (K, E)
    img = F.normalize(model.encode_image(_normalise(images)), dim=-1)  # (N, E)
    return float(((img @ txt.T).argmax(1) == labels).float().mean())


@torch.no_grad()
def junk_margin(model, sampler: _CaptionSampler, n: int = 256) -> float:
    """Mean over held-out images of (true-caption cosine - best cosine of n junk strings)."""
    images, labels = _render_set(2, EVAL_SEED_BASE)
    tok = _tokenizer()
    img = F.normalize(model.encode_image(_normalise(images)), dim=-1)  # (N, E)
    true = F.normalize(model.encode_text(tok([caption(c, s) for c, s in _combos()])), dim=-1)[labels]
    junk_feat = F.normalize(encode_ids(model, sampler.junk(n)), dim=-1)  # (n, E)
    return float(((img * true).sum(1) - (img @ junk_feat.T).max(1).values).mean())


def _lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _optimizers(model, cfg: TrainConfig) -> list[torch.optim.Optimizer]:
    """AdamW for the network; sparse Adam for the 49,408-row token embedding, so a step only
    touches the rows its captions used (a dense update of every row would dominate the step)."""
    model.token_embedding.sparse = True
    emb = model.token_embedding.weight
    rest = [p for p in model.parameters() if p is not emb]
    return [
        torch.optim.AdamW(rest, lr=cfg.lr, weight_decay=cfg.weight_decay),
        torch.optim.SparseAdam([emb], lr=cfg.lr),
    ]


def _train_only_rows(model, rows: list[int]):
    """Let only `rows` of the token embedding learn; returns the hook handle (remove() undoes)."""
    keep = torch.zeros(model.token_embedding.weight.shape[0], dtype=torch.bool)
    keep[rows] = True
    return model.token_embedding.weight.register_hook(lambda grad: _keep_rows(grad, keep))


def _keep_rows(grad: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """A sparse (V, d) gradient restricted to the rows where keep (V,) is True."""
    grad = grad.coalesce()
    rows = keep[grad.indices()[0]]
    return torch.sparse_coo_tensor(grad.indices()[:, rows], grad.values()[rows], grad.shape, check_invariants=False)


def train_model(cfg: TrainConfig, on_step: Callable[[int, float], None] | None = None):
    """Train a toy CLIP from scratch; returns (model in eval mode, metrics dict)."""
    start = time.perf_counter()
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _train(cfg, on_step, start)
    finally:
        torch.set_num_threads(threads)


def _train_step(model, opts, lr: float, images: torch.Tensor, labels: torch.Tensor, sampler, gen) -> float:
    """One optimiser step on a batch of uint8 images (B, 3, S, S); returns the loss."""
    for opt in opts:
        for group in opt.param_groups:
            group["lr"] = lr
    x = _normalise(_augment(images, gen))  # (B, 3, S, S)
    img = F.normalize(model.encode_image(x), dim=-1)  # (B, E)
    txt = F.normalize(encode_ids(model, sampler.batch(labels)), dim=-1)  # (B + J, E)
    loss = _contrastive_loss(img, txt, labels, model.logit_scale.exp())
    for opt in opts:
        opt.zero_grad(set_to_none=True)
    loss.backward()
    for opt in opts:
        opt.step()
    with torch.no_grad():
        model.logit_scale.clamp_(0, math.log(100))
    return float(loss.detach())


def _train(cfg: TrainConfig, on_step, start: float):
    # 1. Data: pre-rendered training images (training seeds only) and a caption sampler.
    gen = torch.Generator().manual_seed(cfg.seed)
    images, labels = _render_set(cfg.images_per_combo, seed_base=cfg.seed * 10_000_000)
    sampler = _CaptionSampler(cfg, gen)
    render_s = time.perf_counter() - start
    # 2. Model and optimiser.
    model = build_model(cfg.seed).train()
    opts = _optimizers(model, cfg)
    hook = None if cfg.train_all_tokens else _train_only_rows(model, sampler.word_ids)
    # 3. Contrastive training, until cfg.steps or the time budget runs out.
    done, loss = 0, float("nan")
    while done < cfg.steps and not (cfg.seconds is not None and time.perf_counter() - start > cfg.seconds):
        idx = torch.randint(len(labels), (cfg.batch_size,), generator=gen)
        loss = _train_step(model, opts, _lr_at(done, cfg), images[idx], labels[idx], sampler, gen)
        if on_step is not None:
            on_step(done, loss)
        done += 1
    train_s = time.perf_counter() - start
    # 4. Held-out metrics.
    if hook is not None:
        hook.remove()
    model.token_embedding.sparse = False
    model.eval().requires_grad_(False)
    metrics = {
        "steps": done,
        "final_loss": round(loss, 4),
        "render_seconds": round(render_s, 1),
        "train_seconds": round(train_s - render_s, 1),  # the optimisation loop alone
        "zero_shot_accuracy": zero_shot_accuracy(model, cfg.eval_per_combo),
        "junk_margin": round(junk_margin(model, sampler), 4),
        "config": asdict(cfg),
    }
    return model, metrics


# ---------------------------------------------------------------------------------------------
# Assets: saving, loading


def save_assets(model, metrics: dict, out_dir: str | Path = ASSETS_DIR) -> Path:
    """Write the config (open_clip's hub layout) and fp16 safetensors weights to out_dir."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "model_cfg": TOY_CONFIG,
        "preprocess_cfg": {"mean": list(MEAN), "std": list(STD), "interpolation": "bicubic", "resize_mode": "shortest"},
        "toy_world": {"colours": list(COLOURS), "shapes": list(SHAPES), "metrics": metrics},
    }
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / WEIGHTS_FILE), metadata={"format": "pt", "source": "pez toy world"})
    return out


def create_toy_clip(path: str | Path | None = None) -> tuple:
    """The trained toy CLIP (CPU, fp32, eval mode) from `path` (default: the shipped assets)
    and its eval preprocess (PIL image -> (3, S, S) tensor)."""
    import open_clip
    from safetensors.torch import load_file

    from .models import WeightsNotFoundError

    folder = Path(path) if path is not None else ASSETS_DIR
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise WeightsNotFoundError(
            f"toy CLIP weights not found at {weights}. Build them (about two minutes on a CPU) with "
            f"`python -m pez.toy train --out {folder}`."
        )
    cfg = (
        json.loads((folder / CONFIG_FILE).read_text())["model_cfg"] if (folder / CONFIG_FILE).is_file() else TOY_CONFIG
    )
    model = open_clip.model.CLIP(**cfg)
    state = {k: v.float() for k, v in load_file(str(weights)).items()}
    model.load_state_dict(state)
    model.eval().requires_grad_(False)
    return model, preprocess_for(cfg["vision_cfg"]["image_size"])


# ---------------------------------------------------------------------------------------------
# The toy generator


def words_in(prompt: str) -> tuple[list[str], list[str]]:
    """All colour words and all shape words of `prompt` in order, as the toy CLIP's tokenizer
    reads them (so "reds" is not "red", while a glued "vedsquare" still holds "square")."""
    ids = _tokenizer().encode(prompt.lower())
    colour_of = dict(zip(word_ids(COLOURS), COLOURS))
    shape_of = dict(zip(word_ids(SHAPES), SHAPES))
    return [colour_of[i] for i in ids if i in colour_of], [shape_of[i] for i in ids if i in shape_of]


def find_words(prompt: str) -> tuple[str | None, str | None]:
    """The first colour and the first shape word of `prompt` (None where there is none)."""
    colours, shapes = words_in(prompt)
    return (colours[0] if colours else None), (shapes[0] if shapes else None)


def toy_generate(prompt: str, seed: int = 0, num_images: int = 1, size: int = DEFAULT_SIZE) -> list[Image.Image]:
    """The toy world's "generator": draws the first colour and shape the prompt names.

    Image k uses seed + k. A colour or shape the prompt does not name is picked at random
    (from the same seed), so every prompt gives an image.
    """
    if not isinstance(prompt, str):
        raise ConfigError(f"prompt: expected a string, received {type(prompt).__name__}")
    if num_images < 1 or size < 8:
        raise ConfigError(f"toy_generate: expected num_images >= 1 and size >= 8, received {num_images}, {size}")
    colour, shape = find_words(prompt)
    images = []
    for k in range(num_images):
        pick = np.random.default_rng([seed + k, 1])  # independent of render's own stream
        c = colour or COLOURS[pick.integers(len(COLOURS))]
        s = shape or SHAPES[pick.integers(len(SHAPES))]
        images.append(render(c, s, seed + k, size))
    return images


# ---------------------------------------------------------------------------------------------
# Building the assets: `python -m pez.toy train`

EXAMPLES_DIR = ASSETS_DIR.parent / "examples"
EXAMPLES: tuple[tuple[str, str], ...] = (
    ("red", "circle"),
    ("blue", "star"),
    ("green", "triangle"),
    ("yellow", "heart"),
    ("purple", "square"),
    ("orange", "cross"),
)


def write_examples(out_dir: str | Path = EXAMPLES_DIR) -> list[Path]:
    """Render the app's example images (held-out seeds) as toy_{colour}_{shape}.png."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (colour, shape) in enumerate(EXAMPLES):
        path = out / f"toy_{colour}_{shape}.png"
        render(colour, shape, EVAL_SEED_BASE + 900_000 + i).save(path)
        paths.append(path)
    return paths


def train(
    out_dir: str | Path = ASSETS_DIR,
    seed: int = 0,
    steps: int | None = None,
    seconds: float | None = None,
    examples_dir: str | Path | None = EXAMPLES_DIR,
    on_step: Callable[[int, float], None] | None = None,
) -> dict:
    """Train the toy CLIP, write its assets to out_dir (and the example images); return metrics."""
    cfg = TrainConfig(seed=seed, seconds=seconds)
    if steps is not None:
        cfg.steps = steps
    model, metrics = train_model(cfg, on_step)
    save_assets(model, metrics, out_dir)
    if examples_dir is not None:
        write_examples(examples_dir)
    return metrics


def main(argv: list[str] | None = None) -> dict:
    """Command line: `python -m pez.toy train [--out DIR] [--seed N] [--steps N] [--seconds S]`."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m pez.toy", description="Build the toy world's CLIP.")
    sub = ap.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="train the toy CLIP and write its assets")
    tr.add_argument("--out", default=str(ASSETS_DIR), help="folder for config + weights")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--steps", type=int, default=None, help=f"optimiser steps (default {TrainConfig.steps})")
    tr.add_argument("--seconds", type=float, default=None, help="stop early after this wall time")
    tr.add_argument("--examples", default=str(EXAMPLES_DIR), help="folder for example PNGs ('' to skip)")
    args = ap.parse_args(argv)

    def progress(step: int, loss: float) -> None:
        if step % 100 == 0:
            log.info("step %5d  loss %.3f", step, loss)

    metrics = train(args.out, args.seed, args.steps, args.seconds, args.examples or None, progress)
    log.info("wrote %s: %s", args.out, json.dumps({k: v for k, v in metrics.items() if k != "config"}))
    return metrics


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
