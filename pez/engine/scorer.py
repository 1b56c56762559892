"""The one honest text scorer: the score of a prompt is the score of the text the user copies.

A projected prompt (token ids) is decoded to text, and that text is what a user copies; when it
does not re-tokenise to the same ids (sub-word pieces glue, spaces move), its score can differ.
`TextScorer.score` decodes id bodies, re-tokenises each text and scores exactly that text in fp32
(one batched forward for all texts not yet known), caching scores by text. Where a caller already
holds the fp32 score of exactly those ids (an fp32 gradient pass, a refine batch) and the text
round-trips, that score is kept instead of a second forward. Rejected texts (pez.engine.vocab.
text_rejector) and empty ones are never scored: they score -inf and are never returned.

In a joint search (several CLIPs) the score is the weighted sum of the per-CLIP scores (the
encoder's features are joined, pez.models.clip.JointClip); `clip_scores` tells them apart.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from ..models.clip import TextSpace
from .tower import SpaceEncoder
from .vocab import clean_text, text_ids


class TextScorer:
    """Honest scores of decoded texts against `targets`, through fp32 encoders, cached by text.

    `texts` (id body -> decoded text) may be shared between scorers: decoding never changes. The
    score cache is each scorer's own, so a caller that must decide the same way whatever another
    cached (pez.engine.polish) keeps its own scorer."""

    def __init__(
        self,
        clip: TextSpace,
        encoder: SpaceEncoder,
        targets,
        reject: Callable[[str], bool],
        texts: dict[tuple[int, ...], str] | None = None,
    ):
        self.clip, self.encoder, self.targets, self.reject = clip, encoder, targets, reject
        self.scores: dict[str, float] = {}  # decoded text -> honest score
        self.texts = {} if texts is None else texts  # id body -> decoded text
        self._parts: dict[str, tuple[float, ...]] = {}  # decoded text -> its score in each CLIP

    def decode(self, ids: Sequence[int]) -> str:
        key = tuple(ids)
        if key not in self.texts:
            self.texts[key] = clean_text(self.clip.tokenizer.decode(list(ids)))
        return self.texts[key]

    def score(
        self, bodies: Sequence[Sequence[int]], id_scores: Sequence[float] | None = None
    ) -> list[tuple[str, float]]:
        """(decoded text, honest score) of each id body; -inf for an empty or rejected text.
        `id_scores`, when given, are fp32 scores of the bodies themselves: a text that re-tokenises
        to its body keeps it. The other new texts are scored in one batched forward."""
        texts = [self.decode(b) for b in bodies]
        pending: dict[str, list[int]] = {}  # text -> its re-tokenised body, when not yet scored
        for i, (text, body) in enumerate(zip(texts, bodies)):
            if not text or text in self.scores or self.reject(text):
                continue
            retok = text_ids(self.clip, text)
            if id_scores is not None and retok == list(body):  # already scored: this exact text
                self.scores[text] = id_scores[i]
            else:
                pending[text] = retok
        if pending:
            self.scores.update(zip(pending, self.objective(list(pending.values())).tolist()))
        return [(t, self.scores[t]) if t in self.scores else (t, -math.inf) for t in texts]

    @torch.no_grad()
    def objective(self, bodies: list[list[int]]) -> torch.Tensor:
        """(n,) fp32 objective of id bodies (no SOT/EOT) in one batched forward."""
        return self.targets.objective(self.encoder.id_features(bodies))

    @torch.no_grad()
    def clip_scores(self, text: str) -> dict[str, float]:
        """{CLIP name: the text's honest score in that CLIP alone}; with one CLIP, its score."""
        clips = self.clip.clips
        if not text:
            return {}
        if len(clips) == 1 and text in self.scores:
            return {clips[0].name: self.scores[text]}
        if text not in self._parts:
            parts = self.clip.split(self.encoder.id_features([text_ids(self.clip, text)]))
            per_clip = self.targets.split(self.clip)
            self._parts[text] = tuple(float(t.objective(f)[0]) for t, f in zip(per_clip, parts))
        return {c.name: s for c, s in zip(clips, self._parts[text])}


__all__ = ["TextScorer"]
