"""Train a benchmark world's CLIP with a plain CLIP recipe, and write it to bench/worlds/<name>/.

Plain on purpose, unlike pez/toy_clip.py: captions are natural sentences in a few wordings
(some leave an attribute out, as alt-texts do), every parameter learns (all 49,408 token
embedding rows, dense AdamW, open_clip's weight-decay rule), and the loss is the standard
symmetric InfoNCE over the batch with a learned temperature: no random tokens scattered in
captions, no frozen embedding rows, no junk or near-miss negatives. So tokens PEZ can find by
accident behave as in a real CLIP.

    PYTHONPATH=. python bench/worlds/train.py patterns            # ~15 min on one core
    PYTHONPATH=. python bench/worlds/train.py atelier --seconds 900

One torch thread. The learning-rate schedule follows max(step / steps, elapsed / seconds), so a
time-limited run still decays to zero. Writes open_clip_config.json (with the training metrics)
and open_clip_model.safetensors (fp16).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


import numpy as np
import torch
import torch.nn.functional as F

from bench.worlds import get_world
from bench.worlds.world import EVAL_SEED_BASE, SIZE, World

MEAN = STD = (0.5, 0.5, 0.5)
MODEL_CFG = {  # open_clip.model.CLIP(**MODEL_CFG); the real 49,408-token BPE vocabulary
    "embed_dim": 64,
    "vision_cfg": {"image_size": SIZE, "layers": [1, 1, 1, 1], "width": 16, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 3},
}
TEXT_LEN = 20  # token positions used in training (captions are shorter); exact: causal mask


def tokenizer():
    import open_clip

    return open_clip.get_tokenizer("ViT-B-32")


def to_batch(images) -> torch.Tensor:
    """PIL images of the model's size -> normalised (N, 3, S, S), as the eval preprocess does."""
    x = torch.from_numpy(np.stack([np.asarray(im) for im in images])).permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def text_ids(tok, captions: list[str]) -> torch.Tensor:
    """(B, TEXT_LEN) ids: the tokenizer's rows, cut after the longest EOT."""
    return tok(captions)[:, :TEXT_LEN]


def param_groups(model, weight_decay: float) -> list[dict]:
    """open_clip's rule: no decay for gains, biases, norms and the temperature."""
    exclude = lambda n, p: p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n  # noqa: E731
    named = list(model.named_parameters())
    return [
        {"params": [p for n, p in named if exclude(n, p)], "weight_decay": 0.0},
        {"params": [p for n, p in named if not exclude(n, p)], "weight_decay": weight_decay},
    ]


def clip_loss(img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE: image i matches caption i. img, txt (B, E) unit rows."""
    logits = scale * img @ txt.T  # (B, B)
    labels = torch.arange(img.shape[0])
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def train(world: World, steps: int, seconds: float, batch: int, pool: int, lr: float, seed: int, log=print):
    import open_clip

    from pez.toy import encode_ids  # exact text features of short id rows (causal mask)

    start = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    tok = tokenizer()
    # 1. A pool of training images (seeds below EVAL_SEED_BASE), captions drawn fresh each step.
    labels = [world.random_labels(rng) for _ in range(pool)]
    images = to_batch([world.render(lb, seed * 10_000_000 + i) for i, lb in enumerate(labels)])
    log(f"rendered {pool} images in {time.perf_counter() - start:.0f} s")
    # 2. Model and optimiser.
    model = open_clip.model.CLIP(**MODEL_CFG).train()
    opt = torch.optim.AdamW(param_groups(model, 0.1), lr=lr, betas=(0.9, 0.98), eps=1e-6)
    t0, done, warmup = time.perf_counter(), 0, 100
    while done < steps and time.perf_counter() - t0 < seconds:
        progress = max(done / steps, (time.perf_counter() - t0) / seconds)
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (done + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * progress))
        idx = rng.integers(pool, size=batch)
        x = images[idx]
        if rng.uniform() < 0.5:
            x = x.flip(3)  # every object and scene is still itself mirrored
        caps = [world.train_caption(labels[i], rng) for i in idx]
        img = F.normalize(model.encode_image(x), dim=-1)
        txt = F.normalize(encode_ids(model, text_ids(tok, caps)), dim=-1)
        loss = clip_loss(img, txt, model.logit_scale.exp())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        done += 1
        if done % 100 == 0:
            log(f"step {done:5d}  loss {loss.item():.3f}  {time.perf_counter() - t0:.0f} s")
    model.eval().requires_grad_(False)
    metrics = {
        "steps": done,
        "final_loss": round(float(loss.detach()), 4),
        "train_seconds": round(time.perf_counter() - t0),
    }
    metrics.update(evaluate(model, world))
    return model, metrics


@torch.no_grad()
def evaluate(model, world: World, n: int = 240) -> dict:
    """On n held-out renders: accuracy over every combo's true caption, accuracy per slot (the
    caption with only that slot changed), mean cosine of the true caption, of the best other
    caption and of the best of 512 random-token strings (how much room PEZ has off the words)."""
    tok = tokenizer()
    combos = world.combos()
    caps = [world.caption(c) for c in combos]
    txt = F.normalize(model.encode_text(tok(caps)), dim=-1)  # (K, E)
    cases = world.eval_cases(n)
    img = F.normalize(model.encode_image(to_batch([world.render(lb, s) for lb, s in cases])), dim=-1)
    sims = img @ txt.T  # (n, K)
    truth = torch.tensor([combos.index(lb) for lb, _ in cases])
    true_cos = sims[torch.arange(n), truth]
    other = sims.clone()
    other[torch.arange(n), truth] = -2
    per_slot = {}
    for slot, values in world.slots.items():
        right = 0
        for i, (lb, _) in enumerate(cases):
            alts = [combos.index({**lb, slot: v}) for v in values]
            right += int(alts[int(sims[i, alts].argmax())] == truth[i])
        per_slot[slot] = round(right / n, 3)
    gen = torch.Generator().manual_seed(0)
    junk = torch.randint(1, 49406, (512, 8), generator=gen)
    junk_ids = torch.zeros(512, 77, dtype=torch.long)
    junk_ids[:, 0], junk_ids[:, 1:9], junk_ids[:, 9] = 49406, junk, 49407  # [SOT, 8 random tokens, EOT]
    junk_cos = (img @ F.normalize(model.encode_text(junk_ids), dim=-1).T).max(1).values
    return {
        "eval_images": n,
        "combo_accuracy": round(float((sims.argmax(1) == truth).float().mean()), 3),
        "slot_accuracy": per_slot,
        "true_caption_cosine": round(float(true_cos.mean()), 4),
        "best_other_caption_cosine": round(float(other.max(1).values.mean()), 4),
        "best_junk_cosine": round(float(junk_cos.mean()), 4),
    }


def save(model, metrics: dict, world: World) -> Path:
    from safetensors.torch import save_file

    out = world.model_dir
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "model_cfg": MODEL_CFG,
        "preprocess_cfg": {"mean": list(MEAN), "std": list(STD), "interpolation": "bicubic", "resize_mode": "shortest"},
        "world": {"name": world.name, "slots": {k: list(v) for k, v in world.slots.items()}, "metrics": metrics},
    }
    (out / "open_clip_config.json").write_text(json.dumps(config, indent=2) + "\n")
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "open_clip_model.safetensors"), metadata={"format": "pt", "source": "pez bench world"})
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("world", help="patterns or atelier")
    ap.add_argument("--steps", type=int, default=2400)
    ap.add_argument("--seconds", type=float, default=900, help="wall-clock limit of the training loop")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--pool", type=int, default=24_000, help="pre-rendered training images")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    world = get_world(args.world)
    assert args.seed * 10_000_000 + args.pool < EVAL_SEED_BASE
    model, metrics = train(world, args.steps, args.seconds, args.batch, args.pool, args.lr, args.seed)
    out = save(model, metrics, world)
    print(json.dumps(metrics, indent=1))
    print(f"wrote {out}")
    return metrics


if __name__ == "__main__":
    main()
