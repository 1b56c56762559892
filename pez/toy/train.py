"""Training the toy world's CLIP: `python -m pez.toy train` writes assets/toy_clip and the examples.

Real CLIP weights cannot always be downloaded, so pez ships a tiny CLIP (pez.toy.clip) trained in
a couple of minutes on synthetic images whose right prompt is known ("a red circle").
bench/quality.py measures how often PEZ finds the right words.

PEZ-friendliness: PEZ projects onto the whole vocabulary, and any token that carries a little
meaning by accident, or gives junk features, can win. So training (see `TrainConfig`):
  (a) writes captions as bags of words with random vocabulary tokens scattered among them, so
      the text tower learns to ignore everything but colour and shape words;
  (b) trains only the embedding rows of the caption words (and SOT/EOT): the other 49k rows
      keep their random initialisation, so none soaks up meaning from the few captions it
      happened to appear in;
  (c) adds negatives for every image: strings of random tokens, and near misses, captions one
      word off ("a red circle square", "a red"), so that hedging or naming one word costs.
scripts/train_plain_toy.py trains the same model without (b) and (c), as real CLIPs are.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .clip import ASSETS_DIR, MEAN, STD, TOY_CONFIG, build_model, save_assets
from .generator import EXAMPLES_DIR, write_examples
from .world import COLOURS, EVAL_SEED_BASE, SHAPES, caption, render, tokenizer, word_ids

log = logging.getLogger(__name__)


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


class CaptionSampler:
    """Builds token-id batches: true captions with scattered distractors, and junk strings."""

    def __init__(self, cfg: TrainConfig, gen: torch.Generator):
        tok = tokenizer()
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


@torch.no_grad()
def zero_shot_accuracy(model, per_combo: int = 5, seed_base: int = EVAL_SEED_BASE) -> float:
    """Fraction of held-out renders whose best-scoring caption (of all combos) is the true one."""
    model.eval()
    images, labels = _render_set(per_combo, seed_base)
    tok = tokenizer()
    txt = F.normalize(model.encode_text(tok([caption(c, s) for c, s in _combos()])), dim=-1)  # (K, E)
    img = F.normalize(model.encode_image(_normalise(images)), dim=-1)  # (N, E)
    return float(((img @ txt.T).argmax(1) == labels).float().mean())


@torch.no_grad()
def junk_margin(model, sampler: CaptionSampler, n: int = 256) -> float:
    """Mean over held-out images of (true-caption cosine - best cosine of n junk strings)."""
    images, labels = _render_set(2, EVAL_SEED_BASE)
    tok = tokenizer()
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
    sampler = CaptionSampler(cfg, gen)
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


__all__ = [
    "CaptionSampler",
    "TrainConfig",
    "encode_ids",
    "junk_margin",
    "main",
    "train",
    "train_model",
    "zero_shot_accuracy",
]
