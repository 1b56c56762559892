"""The joint search: one prompt for several CLIPs (SDXL's ViT-L/14 and bigG/14), on two tiny random
towers of two widths with the real tokenizer ("random:tiny" and "random:tiny-wide").

What is checked: the joint projection is exact (against a full scan, while it skips most scans),
the joined features make every score the weighted sum of the per-CLIP cosines, the loop's and the
refine phase's gradients are the weighted per-CLIP ones, the reported scores are honest in each
CLIP, weight 0 gives the plain single-CLIP search, and bad weights or CLIPs are clear errors.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

import pez
from pez import cli
from pez.engine.accel import CoarseScanProjector, projector
from pez.engine.polish import Polisher
from pez.engine.scorer import TextScorer
from pez.engine.tower import PromptEncoder, SpaceEncoder
from pez.engine.vocab import Projector, VocabFilter, text_ids, text_rejector, vocabulary
from pez.models import JointClip

JOINT = "random:tiny+random:tiny-wide"
FAST = pez.InvertConfig(steps=30, prompt_len=4, candidates=2, seed=0, refine_steps=3, prune_tolerance=0.02)


@pytest.fixture(scope="module")
def towers():
    return pez.load_clip("random:tiny", device="cpu"), pez.load_clip("random:tiny-wide", device="cpu")


@pytest.fixture(scope="module")
def joint(towers):
    return JointClip(towers, (0.3, 0.7))


def _honest(clip, text: str, images) -> float:
    """The text's mean cosine to the images in one CLIP, through open_clip's own encoders."""
    return float((pez.text_features(clip, [text]) @ pez.image_features(clip, images).T).mean())


# ---------------------------------------------------------------------------------------------
# The text space


def test_joint_features_score_the_weighted_sum_of_the_cosines(joint, towers, images):
    texts = ["a red circle", "trending on artstation"]
    got = pez.score_texts(joint, texts, images)
    parts = [pez.score_texts(c, texts, images) for c in towers]
    for i in range(len(texts)):
        assert got[i] == pytest.approx(0.3 * parts[0][i] + 0.7 * parts[1][i], abs=1e-6)
    feats = pez.image_features(joint, images)
    assert feats.shape == (3, 32 + 40) and torch.allclose(feats.norm(dim=-1), torch.ones(3))
    for part, clip in zip(joint.split(feats), towers):  # split undoes join
        assert torch.allclose(part, pez.image_features(clip, images), atol=1e-6)


@pytest.mark.parametrize("cls", [Projector, CoarseScanProjector])
def test_joint_projection_is_exact_and_skips_most_scans(towers, cls):
    """fp32 scans, and scans that read bf16 copies of the tables (a CPU with fast bf16)."""
    vocabs = [vocabulary(c) for c in towers]
    mask = vocabs[0].mask(VocabFilter())
    gen = torch.Generator().manual_seed(0)
    softs = [v.embeddings[torch.randint(v.size, (3, 5), generator=gen)].clone() for v in vocabs]
    project = cls(vocabs, mask, (0.4, 0.6), keep=64)
    assert isinstance(projector(vocabs, mask, (0.4, 0.6)), Projector)
    for step in range(60):
        big = step % 20 == 0  # now and then a jump that must force a rescan
        softs = [s + (0.5 if big else 0.003) * torch.randn(s.shape, generator=gen) for s in softs]
        ids = project(*softs)  # (3, 5)
        flats = [torch.nn.functional.normalize(s.reshape(-1, s.shape[-1]), dim=-1) for s in softs]
        full = project.scores(flats).argmax(dim=-1).reshape(3, 5)
        assert torch.equal(ids, full), step
        assert bool((mask[ids] == 0).all())
    assert 3 <= project.scans < project.calls / 2  # exact, yet most steps re-rank the kept tokens only
    assert getattr(project, "fallbacks", 0) < project.scans  # the bf16 reads mostly suffice


def test_one_table_joint_projection_is_the_plain_one(towers):
    vocab = vocabulary(towers[0])
    mask = vocab.mask(VocabFilter())
    soft = vocab.embeddings[torch.arange(100, 110)].reshape(2, 5, -1) + 0.01
    assert torch.equal(Projector([vocab], mask, (1.0,), skip=False)(soft), vocab.project(soft, mask))
    assert torch.equal(Projector(vocab, mask)(soft), vocab.project(soft, mask))  # one table: the plain call
    with pytest.raises(ValueError, match="one soft prompt per vocabulary"):
        Projector(vocab, mask)(soft, soft)
    with pytest.raises(ValueError, match="one weight per vocabulary"):
        Projector([vocab, vocab], mask, (1.0,))


def test_the_gradients_are_each_clips_weighted_gradient(joint, towers, images):
    """d(joint objective)/d(E_t[ids]) = w_t * d(objective in CLIP t)/d(E_t[ids]), and refine's
    swap gains are the weighted sum of the per-CLIP gains."""
    targets = pez.image_targets(joint, images)
    enc = SpaceEncoder(joint, [PromptEncoder(c) for c in towers])
    ids = torch.tensor([[320, 1929, 2866, 530]])
    leaves = enc.embed(ids)
    grads = torch.autograd.grad(targets.objective(enc.features(leaves)).sum(), leaves)
    for clip, w, t, g in zip(towers, joint.weights, targets.split(joint), grads):
        single = SpaceEncoder(clip, [PromptEncoder(clip)])
        (leaf,) = single.embed(ids)
        (ref,) = torch.autograd.grad(t.objective(single.features([leaf])).sum(), [leaf])
        assert torch.allclose(g, w * ref, atol=1e-6)

    cfg, gen, mask = pez.InvertConfig(), torch.Generator(), vocabulary(towers[0]).mask(VocabFilter())

    def gains(clip, enc, t):
        return Polisher(TextScorer(clip, enc, t, text_rejector(cfg)), mask, cfg, gen, {})._gains(ids[0].tolist())

    joint_gains = gains(joint, enc, targets)
    per_clip = [gains(c, SpaceEncoder(c, [PromptEncoder(c)]), t) for c, t in zip(towers, targets.split(joint))]
    finite = torch.isfinite(joint_gains)
    expected = 0.3 * per_clip[0] + 0.7 * per_clip[1]
    assert torch.equal(finite, torch.isfinite(expected))
    assert torch.allclose(joint_gains[finite], expected[finite], atol=1e-5)


def test_targets_split_back_into_each_clips(joint, towers, images):
    targets = pez.image_targets(joint, images[:2], negative_images=images[2:], negative_weight=0.5)
    feats = pez.text_features(joint, ["a cat", "a dog"])
    parts = [t.objective(f) for t, f in zip(targets.split(joint), joint.split(feats))]
    assert torch.allclose(targets.objective(feats), 0.3 * parts[0] + 0.7 * parts[1], atol=1e-6)
    alone = pez.image_targets(towers[1], images[:2], negative_images=images[2:], negative_weight=0.5)
    wide = alone.objective(pez.text_features(towers[1], ["a cat", "a dog"]))
    assert torch.allclose(targets.split(joint)[1].objective(joint.split(feats)[1]), wide, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# The search


def test_joint_search_reports_honest_scores_in_each_clip(images):
    res = pez.invert(images, model=JOINT, config=FAST.replace(clip_weights=(0.3, 0.7)), device="cpu")
    assert res.model == JOINT and res.prompt.strip() and res.steps_run == 30
    assert res.clip_weights == {"random:tiny": 0.3, "random:tiny-wide": 0.7}
    towers = [pez.load_clip(s, device="cpu") for s in JOINT.split("+")]
    for clip in towers:  # each CLIP's score is the text's, re-encoded by the model's own encoder
        assert res.clip_scores[clip.name] == pytest.approx(_honest(clip, res.prompt, images), abs=1e-5)
    tiny, wide = res.clip_scores["random:tiny"], res.clip_scores["random:tiny-wide"]
    assert res.score == pytest.approx(0.3 * tiny + 0.7 * wide, abs=1e-6)
    assert res.stats["refine_rounds"] >= 1 and res.stats["refine_score"] >= res.stats["search_score"]
    assert [p.score for p in res.top_k] == sorted((p.score for p in res.top_k), reverse=True)
    assert res.top_k[0].prompt == res.prompt
    assert json.loads(json.dumps(res.to_dict()))["clip_scores"] == res.clip_scores


def test_weight_zero_is_the_plain_single_clip_search(images):
    """Weights (1, 0) load and search the first CLIP alone: the same prompt and score, bit for bit."""
    alone = pez.invert(images, model="random:tiny", config=FAST, device="cpu")
    first = pez.invert(images, model=JOINT, config=FAST.replace(clip_weights=(1, 0)), device="cpu")
    assert first.model == alone.model and first.prompt == alone.prompt
    assert first.score == alone.score and first.history == alone.history
    assert first.clip_scores == {"random:tiny": alone.score} and first.clip_weights == {"random:tiny": 1.0}


def test_a_clip_joined_with_itself_searches_like_the_clip(tiny_clip, images):
    """The joint loop is a generalisation: one CLIP twice (half weight each) finds the same prompt."""
    cfg = FAST.replace(refine_steps=0, prune_tolerance=0.0)
    alone = pez.invert(images, model=tiny_clip, config=cfg)
    twice = pez.invert(images, model=JointClip((tiny_clip, tiny_clip), (0.5, 0.5)), config=cfg)
    assert twice.prompt == alone.prompt and twice.score == pytest.approx(alone.score, abs=1e-6)


def test_distill_and_stop_work_jointly(joint, images):
    res = pez.distill("a red circle on a white background", model=joint, config=FAST.replace(steps=10))
    assert res.prompt and math.isfinite(res.score) and len(res.clip_scores) == 2
    stopped = pez.invert_stream(images, model=joint, config=FAST)
    start, first = next(stopped), next(stopped)  # the search's start (step 0), then a step report
    stopped.close()  # closing the stream after a report keeps the best
    assert start.step == 0 and 1 <= first.step <= FAST.report_every  # reports come by steps or by time


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        ((0.5,), "expected 2 weight"),
        ((0.5, 0.5, 0.5), "expected 2 weight"),
        ((0, 0), "above 0"),
        ((2, 1), r"\[0.0, 1.0\]"),
    ],
)
def test_bad_weights_are_clear_errors(weights, match, images):
    with pytest.raises(pez.ConfigError, match=match):
        pez.invert(images, model=JOINT, config=FAST.replace(clip_weights=weights), device="cpu")


def test_weights_must_match_the_loaded_model(joint, images):
    targets = pez.image_targets(joint, images)
    with pytest.raises(pez.ConfigError, match="loaded with weights"):
        next(pez.optimize(joint, targets, FAST.replace(clip_weights=(0.5, 0.5))))
    with pytest.raises(pez.ConfigError, match="expected 1 weight"):
        pez.invert(images, model=joint.clips[0], config=FAST.replace(clip_weights=(0.5, 0.5)))


def test_clip_weights_are_resolved_where_the_clip_is_got(towers):
    """pez.models.get_clip resolves clip_weights once: a space loaded with weights comes back as
    itself for the same weights (no second JointClip), a weight of 0 leaves a CLIP out, and a
    loaded JointClip given other weights is re-weighted."""
    from pez.models import get_clip, has_weights

    space = get_clip(JOINT, "cpu", (0.25, 0.75))
    assert isinstance(space, JointClip) and space.weights == pytest.approx((0.25, 0.75))
    assert get_clip(space, weights=(0.1, 0.3)) is space and has_weights(space, (0.25, 0.75))
    assert get_clip(JOINT, "cpu", (1, 0)) is towers[0] and get_clip(towers[0], weights=(1, 0)) is towers[0]
    again = get_clip(space, weights=(0.5, 0.5))
    assert again is not space and again.weights == (0.5, 0.5) and again.clips == space.clips
    assert not has_weights(space, (0.5, 0.5))
    with pytest.raises(pez.ConfigError, match="expected 2 weight"):
        get_clip(space, weights=(0.2, 0.3, 0.5))


def test_clips_must_read_text_alike(towers):
    import dataclasses

    class OtherTokenizer:
        sot_token_id, eot_token_id = towers[0].sot_id, towers[0].eot_id
        encoder = {"a": 0}

        def __call__(self, texts):
            return towers[0].tokenizer(texts)

    odd = dataclasses.replace(towers[1], tokenizer=OtherTokenizer())
    with pytest.raises(pez.ConfigError, match="read text differently"):
        JointClip((towers[0], odd), (0.5, 0.5))
    with pytest.raises(pez.ConfigError, match="two or more"):
        JointClip((towers[0],), (1.0,))


# ---------------------------------------------------------------------------------------------
# Registry, CLI, batch


def test_pairs_name_their_clips_and_models_lists_them(capsys):
    from pez.models.clip import clip_specs, clip_weights  # the pairs' weights are not here: specs only

    assert clip_specs("sdxl") == ("ViT-L-14/openai", "ViT-bigG-14/laion2b_s39b_b160k")
    assert clip_weights("sdxl") == (0.5, 0.5) and clip_weights("sdxl", (0, 1)) == (0.0, 1.0)
    assert clip_specs("flux-schnell") == ("ViT-L-14/openai",)
    missing = pez.models.pair_availability("sdxl", timeout=0.1).missing  # offline: nothing cached
    assert {"timm/vit_large_patch14_clip_224.openai", "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k"} <= set(missing)
    assert cli.run(["models"]) == 0
    out = capsys.readouterr().out
    sdxl = next(line for line in out.splitlines() if line.startswith("sdxl "))
    assert "ViT-L-14/openai x0.5 + ViT-bigG-14/laion2b_s39b_b160k x0.5" in sdxl
    flux = next(line for line in out.splitlines() if line.startswith("flux-schnell"))
    assert "ViT-L-14/openai" in flux and "black-forest-labs/FLUX.1-schnell" in flux and "T5" in out


def test_cli_joint_invert_and_batch_report_each_clip(tmp_path, capsys):
    from ..conftest import noise_image

    path = tmp_path / "a.png"
    noise_image(0).save(path)
    args = ["--model", JOINT, "--steps", "8", "--prompt-len", "3", "--refine-steps", "1", "--device", "cpu", "-q"]
    assert cli.run(["invert", str(path), *args, "--clip-weights", "0.25", "0.75", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["clip_scores"]) == {"random:tiny", "random:tiny-wide"}
    assert out["config"]["clip_weights"] == [0.25, 0.75]
    assert cli.run(["invert", str(path), *args]) == 0
    assert "# per CLIP: random:tiny " in capsys.readouterr().out
    assert cli.run(["invert", str(path), *args, "--clip-weights", "0.5"]) == 2
    assert "expected 2 weight" in capsys.readouterr().err

    jsonl = tmp_path / "out.jsonl"
    assert cli.run(["batch", str(tmp_path), "--out", str(jsonl), *args]) == 0
    [row] = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert set(row["clip_scores"]) == {"random:tiny", "random:tiny-wide"}
    assert row["settings"]["clip_weights"] == [0.5, 0.5] and row["clip_weights"]["random:tiny"] == 0.5
    assert row["score"] == pytest.approx(sum(0.5 * s for s in row["clip_scores"].values()), abs=1e-6)
    capsys.readouterr()
    assert cli.run(["batch", str(tmp_path), "--out", str(jsonl), *args, "--json"]) == 0  # resumes: nothing new
    assert json.loads(capsys.readouterr().out)["skipped"] == 1


def test_text_ids_read_the_joint_tokenizer(joint, towers):
    assert text_ids(joint, "a red circle") == text_ids(towers[1], "a red circle")
