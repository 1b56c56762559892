"""The one text-tower forward: CLIP's text transformer run from token embeddings.

`TextTower` maps (N, L, d) input embeddings and the (N,) EOT positions to (N, D) pooled,
projected text features, exactly as the model's own `encode_text` does after its token
embedding (a parity test checks it). Every text forward of a search goes through it: the
gradient pass (in the search precision, see pez.engine.accel) and the fp32 honest scores.
`PromptEncoder` frames what it runs: [SOT, prompt slots, EOT] for soft or projected prompts,
[SOT, token ids, EOT] for decoded texts. Only those positions are run: attention is causal and
pooling is at EOT, so the padding after EOT cannot change the features. `SpaceEncoder` gives the
unit features of a search's text space: one CLIP's, or several CLIPs' joined (a JointClip: one
PromptEncoder per CLIP, one prompt of token ids embedded in each CLIP's own table).

Layout. On standard pre-norm blocks the tower runs the transformer on (N * L, d) rows with its own
attention call. Going through `nn.MultiheadAttention` with batch-first input hands every
projection a transposed (L, N, d) view; matmul then falls back to a batched matmul over an
expanded copy of the weight (L copies), which oneDNN's bf16 path materialises: 4 prompts in bf16
cost 5-10x one prompt. Contiguous 2-D rows keep every projection a single matmul in any precision.
Several candidates run as one batch or one after the other; with `time_layouts`, the first calls
on a CPU time both (they compute the same thing) and the faster is kept for that batch size.
"""

from __future__ import annotations

import copy
import logging
import statistics
import threading
import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..models.clip import LoadedClip, TextSpace
from .vocab import vocabulary

log = logging.getLogger(__name__)


class _TextParts(torch.nn.Module):
    """The pieces of an open_clip text tower that run after the token embedding."""

    def __init__(self, model):
        super().__init__()
        self.transformer = model.transformer
        self.ln_final = model.ln_final
        self.positional_embedding = model.positional_embedding
        self.text_projection = model.text_projection
        self.register_buffer("attn_mask", model.attn_mask, persistent=False)


def _plain_block(blk) -> bool:
    """A standard pre-norm block with nn.MultiheadAttention that _block() reproduces exactly."""
    attn = getattr(blk, "attn", None)
    return (
        type(blk).__name__ == "ResidualAttentionBlock"
        and isinstance(attn, torch.nn.MultiheadAttention)
        and attn._qkv_same_embed_dim
        and attn.bias_k is None
        and not attn.add_zero_attn
        and not hasattr(blk, "ln_1_kv")
    )


def _block(blk, x: torch.Tensor, n: int, length: int, mask: torch.Tensor) -> torch.Tensor:
    """One residual attention block on (N * L, d) rows, the same maths as the module's forward."""
    attn = blk.attn
    d, heads = x.shape[-1], attn.num_heads
    qkv = F.linear(blk.ln_1(x), attn.in_proj_weight, attn.in_proj_bias)  # (N*L, 3d)
    q, k, v = qkv.view(n, length, 3, heads, d // heads).permute(2, 0, 3, 1, 4)  # (N, H, L, d/H) each
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (N, H, L, d/H)
    o = o.transpose(1, 2).reshape(n * length, d)
    x = x + blk.ls_1(F.linear(o, attn.out_proj.weight, attn.out_proj.bias))
    return x + blk.ls_2(blk.mlp(blk.ln_2(x)))


class TextTower:
    """Text features from input embeddings in `dtype`: (N, L, d), (N,) EOT positions -> (N, D).

    Runs the model's own modules when `dtype` is the model's, else its own copy of them in `dtype`
    (the shared CLIP keeps its weights). Holds no per-run state: shared between runs on one loaded
    CLIP (cached by pez.engine.accel), except which candidate layout is faster, a property of the
    machine. `reimplement=False` runs the blocks through their own modules (the reference the
    reimplementation is tested against)."""

    TRIALS = 3  # timed calls per layout before choosing (after one warm-up call); private detail

    def __init__(
        self,
        model,
        dtype: torch.dtype,
        compile_mode: str | None = None,
        time_layouts: bool = False,
        reimplement: bool = True,
        parts: torch.nn.Module | None = None,
    ):
        if parts is None:  # else another tower's parts in `dtype` (one copy per CLIP and dtype)
            parts = _TextParts(model)
            if parts.transformer.get_cast_dtype() != dtype:
                parts = copy.deepcopy(parts).to(dtype)  # the search's own copy; the CLIP keeps its weights
        self.parts, self.dtype = parts.eval().requires_grad_(False), dtype
        self.plain = reimplement and all(_plain_block(b) for b in parts.transformer.resblocks)
        self.batch_first = getattr(parts.transformer, "batch_first", True)
        self.time_layouts = time_layouts
        self._eager = self._forward
        self._run = self._eager
        self.compile_mode = compile_mode
        if compile_mode is not None:
            self._run = torch.compile(self._forward, mode=compile_mode, dynamic=False)
        self._layout: dict[int, str] = {}  # batch size -> "batched" | "sequential"
        self._trials: dict[int, dict[str, list[float]]] = {}
        self._lock = threading.Lock()

    def __call__(self, x: torch.Tensor, eot_pos: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        layout = self._choose_layout(n, x.device)
        start = time.perf_counter()
        if layout == "batched":
            out = self._call(x, eot_pos)
        else:
            out = torch.cat([self._call(x[i : i + 1], eot_pos[i : i + 1]) for i in range(n)])
        self._record(n, layout, time.perf_counter() - start)
        return out

    def layout(self, n: int) -> str | None:
        """The layout chosen for batch size n, None while still timing."""
        return "batched" if n == 1 or not self.time_layouts else self._layout.get(n)

    def _choose_layout(self, n: int, device: torch.device) -> str:
        if n == 1 or device.type != "cpu" or not self.time_layouts:
            return "batched"  # on a GPU one batch is always cheaper; timing would need a sync
        with self._lock:
            if n in self._layout:
                return self._layout[n]
            trials = self._trials.setdefault(n, {"batched": [], "sequential": []})
            done = len(trials["batched"]) + len(trials["sequential"])
            return "batched" if done % 2 == 0 else "sequential"

    def _record(self, n: int, layout: str, seconds: float) -> None:
        if n == 1 or n in self._layout or n not in self._trials:
            return
        with self._lock:
            trials = self._trials[n]
            trials[layout].append(seconds)
            if min(len(t) for t in trials.values()) > self.TRIALS:  # first of each is warm-up
                med = {k: statistics.median(v[1:]) for k, v in trials.items()}
                self._layout[n] = min(med, key=med.get)
                log.info("candidates=%d: %s layout (forward %s s)", n, self._layout[n], med)

    def _call(self, x: torch.Tensor, eot_pos: torch.Tensor) -> torch.Tensor:
        if self._run is self._eager:
            return self._eager(x, eot_pos)
        try:
            if x.device.type == "cuda":
                torch.compiler.cudagraph_mark_step_begin()
            return self._run(x, eot_pos).clone()  # clone: graph outputs are overwritten next step
        except Exception as e:  # noqa: BLE001 - any compiler failure: fall back to eager, once
            log.warning("torch.compile failed (%s: %s); running eagerly", type(e).__name__, e)
            self._run = self._eager
            return self._eager(x, eot_pos)

    def _forward(self, x: torch.Tensor, eot_pos: torch.Tensor) -> torch.Tensor:
        p = self.parts
        n, length, d = x.shape
        x = x.to(self.dtype) + p.positional_embedding[:length].to(self.dtype)
        mask = p.attn_mask[:length, :length].to(self.dtype)
        if self.plain:
            h = x.reshape(n * length, d)  # contiguous rows: every projection is one matmul
            for blk in p.transformer.resblocks:
                h = _block(blk, h, n, length, mask)
            x = h.view(n, length, d)
        elif self.batch_first:
            x = p.transformer(x, attn_mask=mask)
        else:
            x = p.transformer(x.permute(1, 0, 2), attn_mask=mask).permute(1, 0, 2)
        x = p.ln_final(x)
        pooled = x[torch.arange(n, device=x.device), eot_pos]  # (N, d)
        proj = p.text_projection
        if proj is None:
            return pooled
        return proj(pooled) if isinstance(proj, torch.nn.Linear) else pooled @ proj


class PromptEncoder:
    """Encodes prompts through a TextTower over just the positions that matter: [SOT, body, EOT].

    Without a tower it runs the model's own weights in the model's precision."""

    def __init__(self, clip: LoadedClip, tower: TextTower | None = None):
        m = clip.model
        if getattr(m, "text_pool_type", "argmax") not in ("argmax", "eos") or getattr(m, "attn_mask", None) is None:
            raise ConfigError(
                f"model: {clip.name} needs a causal text encoder pooled at EOT (open_clip CLIP "
                f"with text_pool_type 'argmax'), received pool type {getattr(m, 'text_pool_type', None)!r}"
            )
        self.clip = clip
        self.tower = tower if tower is not None else TextTower(m, m.transformer.get_cast_dtype())
        emb = vocabulary(clip).embeddings
        self.sot = emb[clip.sot_id]  # (d,)
        self.eot = emb[clip.eot_id]  # (d,)

    def encode_prompt_embeddings(self, prompt: torch.Tensor) -> torch.Tensor:
        """(N, M, d) prompt slot embeddings -> (N, D) unnormalised features of [SOT, slots, EOT]."""
        n, m, d = prompt.shape
        x = torch.cat(
            [self.sot.expand(n, 1, d).to(prompt.dtype), prompt, self.eot.expand(n, 1, d).to(prompt.dtype)], dim=1
        )  # (N, M + 2, d)
        eot_pos = torch.full((n,), m + 1, device=prompt.device)
        return self.tower(x, eot_pos)

    def encode_ids(self, ids: list[list[int]]) -> torch.Tensor:
        """Token ids of prompt bodies (no SOT/EOT, any lengths) -> (n, D) unnormalised features."""
        ctx = self.clip.context_length
        bodies = [list(b)[: ctx - 2] for b in ids]
        length = max(len(b) for b in bodies) + 2
        rows = [[self.clip.sot_id, *b, self.clip.eot_id] + [0] * (length - len(b) - 2) for b in bodies]
        tokens = torch.tensor(rows, device=self.clip.device)  # (n, L)
        eot_pos = torch.tensor([len(b) + 1 for b in bodies], device=self.clip.device)
        return self.tower(self.clip.model.token_embedding(tokens), eot_pos)


class SpaceEncoder:
    """Unit features of prompts in a search's text space (pez.models.clip): for one CLIP its unit
    features, for a JointClip every CLIP's joined (`clip.join`), one PromptEncoder per CLIP.

    `embed(ids)` gives each CLIP's raw embeddings of the ids as fresh leaves (where PEZ takes its
    gradients); `features(leaves)` encodes them, `id_features(bodies)` encodes token id bodies."""

    def __init__(self, clip: TextSpace, encoders: Sequence[PromptEncoder]):
        self.clip, self.encoders = clip, list(encoders)
        self.vocabs = [vocabulary(c) for c in clip.clips]

    def embed(self, ids: torch.Tensor) -> list[torch.Tensor]:
        """(..., M) ids -> one (..., M, d_t) leaf per CLIP, requiring grad."""
        return [v.embeddings[ids].detach().requires_grad_(True) for v in self.vocabs]

    def features(self, leaves: Sequence[torch.Tensor]) -> torch.Tensor:
        """One (N, M, d_t) prompt per CLIP -> (N, D) unit features of [SOT, prompt, EOT]."""
        parts = [F.normalize(e.encode_prompt_embeddings(x).float(), dim=-1) for e, x in zip(self.encoders, leaves)]
        return self.clip.join(parts)

    def id_features(self, bodies: list[list[int]]) -> torch.Tensor:
        """Token id bodies (no SOT/EOT) -> (n, D) unit features."""
        return self.clip.join([F.normalize(e.encode_ids(bodies).float(), dim=-1) for e in self.encoders])


__all__ = ["PromptEncoder", "SpaceEncoder", "TextTower"]
