"""The vocabulary PEZ projects onto: unit-normalised token embeddings and which ids are allowed.

Built once per loaded CLIP (the embedding matrix never changes, so it is normalised once, not
per step). Vocabulary control (special tokens, blocklists, ASCII-only, words-only) is a mask of
allowed ids, cached per setting; projection adds -inf at disallowed ids before the argmax.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class VocabFilter:
    """Which tokens the projection may choose. Special tokens are always excluded."""

    blocklist: tuple[str, ...] = ()  # words; every token whose text contains one is excluded
    ascii_only: bool = False  # only tokens made of printable ASCII
    words_only: bool = False  # only tokens made of ASCII letters

    @classmethod
    def from_config(cls, config) -> VocabFilter:
        words = tuple(sorted({w.strip().lower() for w in config.blocklist if w and w.strip()}))
        return cls(words, bool(config.ascii_only), bool(config.words_only))


@dataclass(eq=False)
class Vocabulary:
    embeddings: torch.Tensor  # (V, d) raw token embedding rows, model dtype, on the model's device
    unit: torch.Tensor  # (V, d) the same rows L2-normalised, float32
    texts: list[str]  # decoded text of each id, e.g. "cat " for "cat</w>"
    special_ids: tuple[int, ...]  # SOT, EOT and any other special tokens
    _masks: dict = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_clip(cls, clip) -> Vocabulary:
        emb = clip.model.token_embedding.weight.detach()
        unit = F.normalize(emb.float(), dim=-1)
        tok = clip.tokenizer
        texts = [tok.decode([i]) for i in range(emb.shape[0])]
        special = tuple(sorted({clip.sot_id, clip.eot_id} | set(getattr(tok, "all_special_ids", []) or [])))
        return cls(emb, unit, texts, special)

    @property
    def size(self) -> int:
        return self.unit.shape[0]

    def mask(self, vf: VocabFilter = VocabFilter()) -> torch.Tensor:
        """(V,) float32 additive mask: 0 where allowed, -inf where not. Cached per filter."""
        with self._lock:
            if vf not in self._masks:
                allowed = torch.tensor([self._allowed(i, vf) for i in range(self.size)], dtype=torch.bool)
                if not allowed.any():
                    from .config import ConfigError

                    raise ConfigError(f"vocabulary: the filter {vf} leaves no token to choose from")
                mask = torch.zeros(self.size, dtype=torch.float32)
                mask[~allowed] = float("-inf")
                self._masks[vf] = mask.to(self.unit.device)
            return self._masks[vf]

    def allowed_ids(self, vf: VocabFilter = VocabFilter()) -> torch.Tensor:
        return torch.nonzero(self.mask(vf) == 0).flatten()

    def _allowed(self, i: int, vf: VocabFilter) -> bool:
        if i in self.special_ids:
            return False
        text = self.texts[i].strip().lower()
        if not text:
            return False
        if vf.ascii_only and not all(32 <= ord(c) < 127 for c in text):
            return False
        if vf.words_only and not (text.isascii() and text.isalpha()):
            return False
        return not any(w in text for w in vf.blocklist)

    def project(self, soft: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Nearest allowed token by cosine for each row: (..., d) -> (...) long ids. Exact search."""
        flat = F.normalize(soft.detach().float().reshape(-1, soft.shape[-1]), dim=-1)  # (R, d)
        sims = torch.addmm(mask.unsqueeze(0), flat, self.unit.T)  # (R, V): mask + cosines
        return sims.argmax(dim=-1).reshape(soft.shape[:-1])


__all__ = ["VocabFilter", "Vocabulary"]
