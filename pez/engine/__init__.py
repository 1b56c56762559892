"""The search engine: PEZ and what pez adds to it, on a loaded CLIP (pez.models).

    optim.py      PEZ itself: Targets and the loss, the loop `optimize`, best tracking, early stop
    vocab.py      the vocabulary: projection, which tokens are allowed, the safety list, texts
    tower.py      the one text-tower forward (TextTower) and PromptEncoder ([SOT, prompt, EOT])
    accel.py      speed: search precision, torch.compile, cached towers, cheaper exact scans
    scorer.py     the one honest text scorer: the score of the text the user will copy
    polish.py     after the search: refine (token swaps) and prune (dropping tokens)
    features.py   CLIP features of images and texts, and scores built on them

Data flows one way: features -> Targets -> optimize (vocab, tower, accel, scorer) -> polish ->
pez.results. The tasks built on it (invert, distill, ...) are in pez.inversion.

The search runs in a text space of one CLIP or several (pez.models.clip.JointClip: SDXL's two
encoders, one prompt scored in both): one soft prompt and one tower per CLIP (tower.SpaceEncoder),
one token per slot for all (vocab.Projector), features joined so every score is the weighted
sum of the per-CLIP scores. With one CLIP it is exactly the single-tower search.
"""
