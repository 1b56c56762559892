"""The vocabulary PEZ projects onto, and the texts it decodes to.

`vocabulary(clip)` builds a CLIP's Vocabulary once (the embedding matrix never changes, so it is
normalised once, not per step) and keeps it while the CLIP lives. Vocabulary control (special
tokens, blocklists, ASCII-only, words-only, whole words, dictionary words (pez.engine.readability),
offensive words (pez.engine.safety)) is a mask of allowed ids, cached per `VocabFilter`; projection adds -inf at disallowed ids before the argmax.
Tokens whose text is not valid on its own (partial UTF-8 bytes, which decode to U+FFFD) are
never allowed, in any mode. `Projector` is the exact projection that skips most scans, onto one
token for one CLIP or for several at once (a joint search, JointClip).

Texts: `text_ids` reads a text as the tokenizer does (the body between SOT and EOT),
`clean_text` tidies a decoded prompt, `text_rejector` refuses decoded texts that glue pieces into
a blocked word.
"""

from __future__ import annotations

import re
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..config import InvertConfig
from ..errors import ConfigError
from ..models.clip import LoadedClip
from .readability import is_dictionary_token
from .safety import WordFilter


@dataclass(frozen=True)
class VocabFilter:
    """Which tokens the projection may choose. Special tokens are always excluded. The defaults
    are InvertConfig's (one source); `Vocabulary.mask()` without a filter allows every token."""

    blocklist: tuple[str, ...] = ()  # words; every token whose text contains one is excluded
    ascii_only: bool = InvertConfig.ascii_only  # only tokens made of printable ASCII
    words_only: bool = InvertConfig.words_only  # only tokens made of ASCII letters
    whole_words: bool = InvertConfig.whole_words  # only tokens that end a word in the BPE ("cat</w>")
    safe: bool = InvertConfig.safe  # exclude offensive words (pez.engine.safety.WordFilter)
    dictionary: bool = InvertConfig.dictionary_words  # only whole-word tokens that are dictionary words

    @classmethod
    def from_config(cls, config: InvertConfig) -> VocabFilter:
        words = tuple(sorted({w.strip().lower() for w in config.blocklist if w and w.strip()}))
        return cls(
            words, config.ascii_only, config.words_only, config.whole_words, config.safe, config.dictionary_words
        )


EVERY_TOKEN = VocabFilter(ascii_only=False, words_only=False, whole_words=False, safe=False, dictionary=False)


@dataclass(eq=False)
class Vocabulary:
    embeddings: torch.Tensor  # (V, d) raw token embedding rows, model dtype, on the model's device
    unit: torch.Tensor  # (V, d) the same rows L2-normalised, float32
    texts: list[str]  # decoded text of each id, e.g. "cat " for "cat</w>"
    special_ids: tuple[int, ...]  # SOT, EOT and any other special tokens
    _masks: dict = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_clip(cls, clip: LoadedClip) -> Vocabulary:
        emb = clip.model.token_embedding.weight.detach()
        unit = F.normalize(emb.float(), dim=-1)
        tok = clip.tokenizer
        texts = [tok.decode([i]) for i in range(emb.shape[0])]
        special = tuple(sorted({clip.sot_id, clip.eot_id} | set(getattr(tok, "all_special_ids", []) or [])))
        return cls(emb, unit, texts, special)

    @property
    def size(self) -> int:
        return self.unit.shape[0]

    def mask(self, vf: VocabFilter = EVERY_TOKEN) -> torch.Tensor:
        """(V,) float32 additive mask: 0 where allowed, -inf where not. Cached per filter."""
        with self._lock:
            if vf not in self._masks:
                allowed = torch.tensor([self._allowed(i, vf) for i in range(self.size)], dtype=torch.bool)
                if not allowed.any():
                    raise ConfigError(f"vocabulary: the filter {vf} leaves no token to choose from")
                mask = torch.zeros(self.size, dtype=torch.float32)
                mask[~allowed] = float("-inf")
                self._masks[vf] = mask.to(self.unit.device)
            return self._masks[vf]

    def allowed_ids(self, vf: VocabFilter = EVERY_TOKEN) -> torch.Tensor:
        return torch.nonzero(self.mask(vf) == 0).flatten()

    def _allowed(self, i: int, vf: VocabFilter) -> bool:
        if i in self.special_ids or "\ufffd" in self.texts[i]:  # partial UTF-8 bytes: never valid text
            return False
        text = self.texts[i].strip().lower()
        if not text:
            return False
        if vf.whole_words and not self.texts[i][-1:].isspace():  # "cat</w>" decodes to "cat "
            return False
        if vf.dictionary and not is_dictionary_token(self.texts[i]):  # "cat " yes; "ulty ", "check" no
            return False
        if vf.safe and WordFilter.default().blocks_word(text):
            return False
        if vf.ascii_only and not all(32 <= ord(c) < 127 for c in text):
            return False
        if vf.words_only and not (text.isascii() and text.isalpha()):
            return False
        return not any(w in text for w in vf.blocklist)

    def project(self, soft: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Nearest allowed token by cosine for each row: (..., d) -> (...) long ids. Exact search."""
        flat = F.normalize(soft.detach().float().reshape(-1, soft.shape[-1]), dim=-1)  # (R, d)
        return self.similarities(flat, mask).argmax(dim=-1).reshape(soft.shape[:-1])

    def similarities(self, flat: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(R, d) unit rows -> (R, V) cosines to every token, -inf where the mask disallows."""
        return torch.addmm(mask.unsqueeze(0), flat, self.unit.T)


_VOCABS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # LoadedClip -> Vocabulary
_VOCABS_LOCK = threading.Lock()


def vocabulary(clip: LoadedClip) -> Vocabulary:
    """The vocabulary of a loaded CLIP, built on first use and kept as long as the CLIP lives."""
    with _VOCABS_LOCK:
        if clip not in _VOCABS:
            _VOCABS[clip] = Vocabulary.from_clip(clip)
        return _VOCABS[clip]


# ---------------------------------------------------------------------------------------------
# Texts


_SPACES = re.compile(r"\s+")


def clean_text(text: str) -> str:
    """A decoded prompt as it is shown and returned: single spaces, no space at either end."""
    return _SPACES.sub(" ", text).strip()


def text_ids(clip: LoadedClip, text: str) -> list[int]:
    """The prompt body of `text` as the tokenizer reads it (no SOT/EOT, truncated to context)."""
    row = clip.tokenizer([text])[0].tolist()  # [SOT, body..., EOT, pad...]
    end = row.index(clip.eot_id) if clip.eot_id in row else len(row)
    return row[1:end]


def text_rejector(config: InvertConfig) -> Callable[[str], bool]:
    """True for decoded texts that must never be returned: an offensive word (with `safe`,
    pez.engine.safety) or a user blocklist word inside them, e.g. formed by sub-word pieces glued
    together."""
    words = tuple(w.strip().lower() for w in config.blocklist if w and w.strip())
    safety = WordFilter.default() if config.safe else None

    def reject(text: str) -> bool:
        low = text.lower()
        return any(w in low for w in words) or (safety is not None and safety.blocks_text(text))

    return reject


# ---------------------------------------------------------------------------------------------
# Projection


class Projector:
    """Exact projection of one soft prompt per CLIP onto ONE token per slot:

        id = argmax_v  sum_t w_t cos(p_t, e_t[v])       over the allowed ids, one table per CLIP

    With one CLIP (weight 1) that is the nearest allowed token by cosine; with several (a joint
    search, JointClip) the tables share ids (one tokenizer), so the chosen token is the same word
    in every CLIP. Called with one soft prompt per table: project(p_1, p_2, ...) -> ids.

    It avoids most full vocabulary scans during a run. After a full scan of row r at anchor
    directions a_t we keep its top-k allowed ids and the k-th best score s_k. For unit vectors,
    |p.e - a.e| <= |p - a|, so at later directions p_t no token's score moved by more than
    delta = sum_t w_t |p_t - a_t| and none outside the kept set can score above s_k + delta. If
    the best kept token scores above that, it is the exact argmax; otherwise the row is scanned
    again (with every other row: a scan is bound by reading the vocabulary, so one row costs
    about as much as all). Soft prompts move little per step once optimisation settles, so most
    steps cost a (k x d) re-rank instead of a (V x d) scan. Ties resolve to the lowest id, as in
    a full scan. With `skip=False` every call is a full scan (on a GPU: no host sync).
    """

    EPS = 1e-5  # slack for float32 rounding in the bound

    def __init__(
        self,
        vocabs: Vocabulary | Sequence[Vocabulary],
        mask: torch.Tensor,
        weights: Sequence[float] = (1.0,),
        keep: int = 256,
        skip: bool = True,
    ):
        self.vocabs = [vocabs] if isinstance(vocabs, Vocabulary) else list(vocabs)
        self.weights = tuple(weights)
        if len(self.weights) != len(self.vocabs):
            raise ValueError(f"expected one weight per vocabulary ({len(self.vocabs)}), received {len(self.weights)}")
        self.vocab, self.mask, self.skip = self.vocabs[0], mask, skip
        self.keep = min(keep, int((mask == 0).sum()))
        self.anchor: list[torch.Tensor] | None = None  # (R, d_t) unit directions per table at the last scan
        self.kept: torch.Tensor | None = None  # (R, k) kept ids per row, ascending
        self.floor: torch.Tensor | None = None  # (R,) k-th best score at the last scan
        self.scans = 0  # projections that needed a full vocabulary scan (for benchmarks)
        self.calls = 0  # projections

    def scores(self, flats: list[torch.Tensor]) -> torch.Tensor:
        """(R, d_t) unit rows per table -> (R, V) joint scores, -inf where the mask disallows."""
        out = self.mask.unsqueeze(0).expand(flats[0].shape[0], -1)
        for flat, vocab, w in zip(flats, self.vocabs, self.weights):
            out = torch.addmm(out, flat, vocab.unit.T, alpha=w)
        return out

    def rerank(self, flats: list[torch.Tensor], kept: torch.Tensor) -> torch.Tensor:
        """(R, d_t) unit rows per table, (R, k) ids -> (R, k) their joint scores, in fp32."""
        return sum(
            w * torch.einsum("rd,rkd->rk", f, v.unit.index_select(0, kept.flatten()).view(*kept.shape, -1))
            for f, v, w in zip(flats, self.vocabs, self.weights)
        )

    def __call__(self, *softs: torch.Tensor) -> torch.Tensor:
        """(..., d_t) soft prompts, one per table -> (...) ids of the allowed tokens that score best."""
        if len(softs) != len(self.vocabs):
            raise ValueError(f"expected one soft prompt per vocabulary ({len(self.vocabs)}), received {len(softs)}")
        shape = softs[0].shape[:-1]
        flats = [F.normalize(s.detach().float().reshape(-1, s.shape[-1]), dim=-1) for s in softs]  # (R, d_t)
        self.calls += 1
        if not self.skip or self.anchor is None or self.anchor[0].shape != flats[0].shape:
            return self._scan(flats).reshape(shape)
        delta = sum(w * (f - a).norm(dim=-1) for f, a, w in zip(flats, self.anchor, self.weights))  # (R,) moves
        best, pos = self.rerank(flats, self.kept).max(dim=-1)  # (R,)
        ids = self.kept.gather(1, pos.unsqueeze(1)).squeeze(1)
        if bool((best <= self.floor + delta + self.EPS).any()):
            # Some row may have a new best token. A scan costs about the same for one row as for
            # all (it is bound by reading the vocabulary), so refresh every row's anchor.
            ids = self._scan(flats)
        return ids.reshape(shape)

    def _scan(self, flats: list[torch.Tensor]) -> torch.Tensor:
        """Full scan of every row; refreshes the anchors and kept sets. Returns the ids (R,)."""
        self.scans += 1
        sims = self.scores(flats)  # (R, V)
        if self.skip:
            top, top_ids = sims.topk(self.keep, dim=-1)  # (R, k), descending
            self.anchor = [f.clone() for f in flats]
            self.kept, self.floor = top_ids.sort(dim=-1).values, top[:, -1].clone()
        return sims.argmax(dim=-1)  # exact, lowest id among ties


__all__ = [
    "EVERY_TOKEN",
    "Projector",
    "VocabFilter",
    "Vocabulary",
    "clean_text",
    "text_ids",
    "text_rejector",
    "vocabulary",
]
