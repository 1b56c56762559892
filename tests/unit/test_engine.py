"""The PEZ engine on a tiny random CLIP (real tokenizer): projection, parity, modes, seeds."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import pez
from pez.engine.tower import PromptEncoder
from pez.engine.vocab import VocabFilter, clean_text, vocabulary

from ..conftest import noise_image
from .conftest import PLAIN_SEARCH

FAST = PLAIN_SEARCH  # the plain PEZ search (refinement and pruning after it: test_polish.py)


# ---------------------------------------------------------------------------------------------
# Projection and the embedding-level encoder


def test_projection_is_exact_nearest_cosine(tiny_clip):
    vocab = vocabulary(tiny_clip)
    soft = torch.randn(3, 5, vocab.embeddings.shape[1], generator=torch.Generator().manual_seed(1))
    ids = vocab.project(soft, vocab.mask())
    sims = F.normalize(soft.reshape(-1, soft.shape[-1]), dim=-1) @ F.normalize(vocab.embeddings.float(), dim=-1).T
    sims[:, list(vocab.special_ids)] = -math.inf
    assert ids.shape == (3, 5)
    assert torch.equal(ids.flatten(), sims.argmax(dim=-1))


def test_projection_of_a_token_embedding_is_itself(tiny_clip):
    vocab = vocabulary(tiny_clip)
    ids = torch.tensor([[320, 1929, 2368, 49405]])
    assert torch.equal(vocab.project(vocab.embeddings[ids] * 3.0, vocab.mask()), ids)  # scale-free


def test_projection_never_picks_special_tokens(tiny_clip):
    vocab = vocabulary(tiny_clip)
    specials = vocab.embeddings[[tiny_clip.sot_id, tiny_clip.eot_id]].unsqueeze(0)  # aim right at them
    ids = vocab.project(specials, vocab.mask())
    assert not set(ids.flatten().tolist()) & {tiny_clip.sot_id, tiny_clip.eot_id}


def test_incremental_projector_matches_full_scan(tiny_clip):
    """The projector that skips scans must give exactly the full scan's ids, step after step."""
    from pez.engine.vocab import Projector

    vocab = vocabulary(tiny_clip)
    for vf in (
        VocabFilter(whole_words=False, safe=False),
        VocabFilter(words_only=True, blocklist=("a",), whole_words=False, safe=False),
    ):
        mask = vocab.mask(vf)
        project = Projector(vocab, mask, keep=32)
        gen = torch.Generator().manual_seed(0)
        soft = torch.randn(4, 3, vocab.embeddings.shape[1], generator=gen)
        for step in range(80):
            scale = 0.5 if step % 20 == 0 else 10 ** -(1 + step % 4)  # jumps and small moves
            soft = soft + scale * torch.randn(soft.shape, generator=gen)
            assert torch.equal(project(soft), vocab.project(soft, mask)), step
        assert project.scans < project.calls  # it did skip scans
        assert project.scans >= 4  # and it did rescan after each jump


def test_parity_with_encode_text(tiny_clip):
    texts = ["a photo of a cat", "x", "a red circle on a blue square, highly detailed, 8k, trending"]
    ids = tiny_clip.tokenizer(texts)
    ref = tiny_clip.model.encode_text(ids)
    bodies = [row[1 : row.index(tiny_clip.eot_id)] for row in ids.tolist()]
    enc = PromptEncoder(tiny_clip)
    assert torch.allclose(enc.encode_ids(bodies), ref, atol=1e-5)
    # the slot path: embeddings of the same bodies, one at a time (no padding at all)
    for body, r in zip(bodies, ref):
        emb = vocabulary(tiny_clip).embeddings[torch.tensor([body])]
        assert torch.allclose(enc.encode_prompt_embeddings(emb)[0], r, atol=1e-5)


def test_gradient_flows_to_prompt_slots(tiny_clip):
    enc = PromptEncoder(tiny_clip)
    x = vocabulary(tiny_clip).embeddings[torch.tensor([[320, 1929, 2368]])].clone().requires_grad_(True)
    enc.encode_prompt_embeddings(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in tiny_clip.model.parameters())  # the model stays frozen


# ---------------------------------------------------------------------------------------------
# Modes


def test_invert_returns_honest_scored_text(tiny_clip, images):
    res = pez.invert(images[:1], model=tiny_clip, config=FAST)
    assert res.prompt and res.prompt == clean_text(res.prompt)
    assert res.steps_run == FAST.steps and not res.stopped
    # the reported score is the score of exactly the returned text
    assert res.score == pytest.approx(pez.score_texts(tiny_clip, [res.prompt], images[:1])[0], abs=1e-4)
    assert res.top_k[0].prompt == res.prompt
    assert len({p.prompt for p in res.top_k}) == len(res.top_k) <= FAST.top_k
    assert [p.score for p in res.top_k] == sorted((p.score for p in res.top_k), reverse=True)


def test_optimisation_improves_on_random_prompts(tiny_clip, images):
    cfg = FAST.replace(steps=60, candidates=4, prompt_len=6)
    res = pez.invert(images[:1], model=tiny_clip, config=cfg)
    first_best = res.history[0][2]
    assert res.score > first_best  # it learned something beyond the first projection
    assert res.history[-1][2] == pytest.approx(res.score)


def test_stream_reports_and_final_result(tiny_clip, images):
    reports = list(pez.invert_stream(images[:1], model=tiny_clip, config=FAST))
    steps = [r.step for r in reports]
    # The search's start (step 0), its first step, every report_every steps (and, on a slow
    # machine, more often: at least every REPORT_SECONDS), the end.
    assert steps[:2] == [0, 1] and {4, 8, 12} <= set(steps) and steps == sorted(steps)
    assert all(not r.done for r in reports[:-1]) and reports[-1].done
    assert reports[-1].result.prompt == reports[-1].best_prompt
    best = [r.best_score for r in reports]
    assert best == sorted(best)  # best-so-far never gets worse
    assert all(r.steps_per_sec > 0 and r.elapsed > 0 for r in reports[1:])
    assert reports[0].best_prompt == "" and reports[0].phase == "search" and reports[-1].eta == 0.0


def test_stop_keeps_the_best(tiny_clip, images):
    calls = {"n": 0}

    def should_stop():
        calls["n"] += 1
        return calls["n"] > 5

    res = pez.invert(images[:1], model=tiny_clip, config=FAST.replace(steps=100), should_stop=should_stop)
    assert res.stopped and res.steps_run == 5
    assert res.prompt and math.isfinite(res.score)


def test_closing_the_stream_keeps_last_best(tiny_clip, images):
    stream = pez.invert_stream(images[:1], model=tiny_clip, config=FAST.replace(steps=100))
    first = next(rep for rep in stream if rep.step)  # the first report after a step
    stream.close()  # a UI that stops iterating
    assert first.best_prompt and math.isfinite(first.best_score)


def test_many_images_one_prompt_scores_all(tiny_clip, images):
    cfg = FAST.replace(batch_size=1)
    res = pez.invert(images, model=tiny_clip, config=cfg)
    assert res.score == pytest.approx(pez.score_texts(tiny_clip, [res.prompt], images)[0], abs=1e-4)


def test_negative_target_lowers_similarity(tiny_clip, images):
    cfg = FAST.replace(steps=40)
    away = pez.invert(None, model=tiny_clip, config=cfg, negative_images=images[:1])
    toward = pez.invert(images[:1], model=tiny_clip, config=cfg)
    s_away = pez.score_texts(tiny_clip, [away.prompt], images[:1])[0]
    s_toward = pez.score_texts(tiny_clip, [toward.prompt], images[:1])[0]
    assert away.score == pytest.approx(-s_away, abs=1e-4)
    assert s_away < s_toward


def test_distill_targets_text(tiny_clip):
    long = "a watercolor painting of a lighthouse on a cliff at sunset, dramatic clouds, seagulls"
    res = pez.distill(long, model=tiny_clip, config=FAST)
    ref = (pez.text_features(tiny_clip, [res.prompt]) @ pez.text_features(tiny_clip, [long]).T).item()
    assert res.score == pytest.approx(ref, abs=1e-4)
    assert len(tiny_clip.tokenizer.encode(res.prompt)) <= 3 * FAST.prompt_len


def test_concatenate_joins_per_image_prompts(tiny_clip, images):
    reports = list(pez.concatenate_stream(images[:2], model=tiny_clip, config=FAST, separator=" | "))
    assert {r.index for r in reports[:-1]} == {0, 1}
    res = reports[-1].result
    assert len(res.parts) == 2 and res.prompt == " | ".join(p.prompt for p in res.parts)
    assert res.score == pytest.approx(pez.score_texts(tiny_clip, [res.prompt], images[:2])[0], abs=1e-4)


def test_style_template():
    assert (
        pez.apply_style("the streets of Paris", " oil  impasto ") == "the streets of Paris in the style of oil impasto"
    )
    assert pez.apply_style("a cat", "ukiyo", "{style}, {subject}") == "ukiyo, a cat"
    assert pez.style_prompts(["a", "", "b"], "x") == ["a in the style of x", "b in the style of x"]
    with pytest.raises(pez.ConfigError, match="style"):
        pez.apply_style("a cat", "x", "no placeholder")
    with pytest.raises(pez.ConfigError, match="subject"):
        pez.apply_style("a cat", "x", "{style} {other}")
    assert pez.apply_style("a cat", "x", "{{not a field}} {subject}: {style}") == "{not a field} a cat: x"


@pytest.mark.parametrize(
    "template",
    [
        "{style} {subject:>100000000}",
        "{subject.__class__} {style}",
        "{subject} {style[0]}",
        "{subject!r} {style}",
        "{style",
    ],
)
def test_style_template_takes_only_bare_fields(template):
    """A template comes from users: no format spec, conversion, attribute or index is ever applied."""
    with pytest.raises(pez.ConfigError, match=r"only the bare fields \{subject\} and \{style\}"):
        pez.apply_style("a cat", "x", template)


def test_blocklist_is_bounded():
    assert pez.InvertConfig(blocklist=("cat",) * 400).blocklist  # 1,599 characters
    with pytest.raises(pez.ConfigError, match="blocklist: expected at most 2000 characters"):
        pez.InvertConfig(blocklist=tuple(f"w{i}x" for i in range(5000)))


# ---------------------------------------------------------------------------------------------
# Seeds and vocabulary control


def test_same_seed_same_prompt(tiny_clip, images):
    a = pez.invert(images[:1], model=tiny_clip, config=FAST.replace(seed=7))
    b = pez.invert(images[:1], model=tiny_clip, config=FAST.replace(seed=7))
    c = pez.invert(images[:1], model=tiny_clip, config=FAST.replace(seed=8))
    assert (a.prompt, a.score, a.seed) == (b.prompt, b.score, 7)
    assert c.prompt != a.prompt


def test_no_seed_draws_and_reports_one(tiny_clip, images):
    res = pez.invert(images[:1], model=tiny_clip, config=FAST.replace(seed=None, steps=2))
    assert isinstance(res.seed, int)
    again = pez.invert(images[:1], model=tiny_clip, config=FAST.replace(seed=res.seed, steps=2))
    assert again.prompt == res.prompt


def test_blocklist_excludes_every_containing_token(tiny_clip):
    vocab = vocabulary(tiny_clip)
    vf = VocabFilter(blocklist=("cat",), whole_words=False, safe=False)
    allowed = set(vocab.allowed_ids(vf).tolist())
    blocked = [i for i, t in enumerate(vocab.texts) if "cat" in t.lower()]
    assert len(blocked) > 50  # cat, cats, catch, education, ...
    assert not allowed & set(blocked)
    cat = tiny_clip.tokenizer.encode("cat")[0]
    ids = vocab.project(vocab.embeddings[torch.tensor([[cat]])], vocab.mask(vf))
    assert ids.item() != cat and "cat" not in vocab.texts[ids.item()]


def test_ascii_and_words_only(tiny_clip, images):
    vocab = vocabulary(tiny_clip)
    ascii_ids = vocab.allowed_ids(VocabFilter(ascii_only=True, whole_words=False, safe=False)).tolist()
    words_ids = vocab.allowed_ids(VocabFilter(words_only=True, whole_words=False, safe=False)).tolist()
    assert all(vocab.texts[i].strip().isascii() for i in ascii_ids)
    assert all(vocab.texts[i].strip().isalpha() for i in words_ids)
    assert len(words_ids) < len(ascii_ids) < vocab.size
    res = pez.invert(images[:1], model=tiny_clip, config=FAST.replace(words_only=True, blocklist=("the",)))
    assert all(w.isalpha() for w in res.prompt.split()) and "the" not in res.prompt


def test_blocklist_from_config_is_normalised():
    vf = VocabFilter.from_config(pez.InvertConfig(blocklist=(" Cat ", "", "dog", "cat")))
    assert vf.blocklist == ("cat", "dog")


# ---------------------------------------------------------------------------------------------
# Bad settings and inputs


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"prompt_len": 0}, r"prompt_len: expected a value in \[1, 75\], received 0"),
        ({"prompt_len": 76}, "prompt_len"),
        ({"steps": 0}, r"steps: expected a value in \[1, 10000\], received 0"),
        ({"steps": 2.5}, "steps: expected an integer"),
        ({"lr": -1.0}, "lr"),
        ({"candidates": 0}, "candidates"),
        ({"batch_size": 0}, "batch_size"),
        ({"seed": -3}, "seed"),
        ({"blocklist": "cat"}, "blocklist"),
    ],
)
def test_bad_settings_raise_clear_errors(tiny_clip, images, change, match):
    with pytest.raises(pez.ConfigError, match=match):
        pez.invert(images[:1], model=tiny_clip, config=pez.InvertConfig(**change))


def test_prompt_len_bounded_by_context(tiny_clip):
    with pytest.raises(pez.ConfigError, match="context length 40"):
        pez.InvertConfig(prompt_len=75).validate(context_length=40)


def test_empty_and_too_many_images(tiny_clip):
    with pytest.raises(pez.ConfigError, match="at least one image, received none"):
        pez.invert([], model=tiny_clip, config=FAST)
    with pytest.raises(pez.ConfigError, match="at most 32 images, received 33"):
        pez.invert([noise_image(0, 8)] * 33, model=tiny_clip, config=FAST)


def test_bad_text_inputs(tiny_clip):
    with pytest.raises(pez.ConfigError, match="non-empty"):
        pez.distill("   ", model=tiny_clip, config=FAST)
    with pytest.raises(pez.ConfigError, match="at most 2000 characters"):
        pez.distill("a" * 2001, model=tiny_clip, config=FAST)


def test_not_an_image(tmp_path, tiny_clip):
    fake = tmp_path / "fake.png"
    fake.write_text("this is not a png")
    with pytest.raises(pez.InvalidImageError, match="fake.png: not an image"):
        pez.invert([str(fake)], model=tiny_clip, config=FAST)


# ---------------------------------------------------------------------------------------------
# Models


def test_registry_is_listable_and_consistent():
    names = pez.list_pairs()
    assert names[0] == pez.DEFAULT_PAIR == "sd-turbo"
    assert pez.get_pair("sd-2.1-base").clip == pez.get_pair("sd-turbo").clip == "ViT-H-14/laion2b_s32b_b79k"
    assert pez.get_pair("sd-1.5").clip == "ViT-L-14/openai"
    # SDXL reads a prompt with two CLIPs: its pairs search both jointly; Flux's pooled CLIP is ViT-L/14
    sdxl = ("ViT-L-14/openai", "ViT-bigG-14/laion2b_s39b_b160k")
    assert pez.get_pair("sdxl").clips == pez.get_pair("sdxl-turbo").clips == sdxl
    assert pez.get_pair("sdxl").weights == (0.5, 0.5)
    assert pez.get_pair("flux-schnell").clips == ("ViT-L-14/openai",) and pez.get_pair("flux-schnell").kind == "flux"
    with pytest.raises(pez.ConfigError, match="expected one of"):
        pez.get_pair("sd-9")


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("ViT-B-32/nonexistent-tag", "expected a pretrained tag of ViT-B-32"),
        ("ViT-Q-99/openai", "unknown open_clip architecture"),
        ("nonsense", "expected a pair name"),
        ("", "expected a pair name"),
    ],
)
def test_bad_model_specs(spec, match):
    with pytest.raises(pez.ConfigError, match=match):
        pez.load_clip(spec)


def test_missing_local_file_and_folder(tmp_path):
    with pytest.raises(pez.WeightsNotFoundError, match="weights file not found"):
        pez.load_clip(f"ViT-B-32@{tmp_path / 'missing.bin'}")
    with pytest.raises(pez.WeightsNotFoundError, match="folder not found"):
        pez.load_clip(f"local-dir:{tmp_path / 'nope'}")


def test_device_validation():
    with pytest.raises(pez.ConfigError, match="device"):
        pez.resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(pez.ConfigError, match="no CUDA"):
            pez.resolve_device("cuda")
    assert pez.resolve_device("cpu").type == "cpu"


def test_clip_is_cached(tiny_clip):
    assert pez.load_clip("random:tiny", device="cpu") is tiny_clip


def test_result_serialises(tiny_clip, images):
    import json

    res = pez.invert(images[:1], model=tiny_clip, config=FAST.replace(blocklist=("cat",)))
    d = json.loads(json.dumps(res.to_dict()))
    assert d["prompt"] == res.prompt and d["config"]["blocklist"] == ["cat"] and d["seed"] == 0


# ---------------------------------------------------------------------------------------------
# Hygiene


def test_core_never_imports_gradio_or_prints():
    """The source of every module (a fresh interpreter importing pez: tests/e2e/test_processes.py)."""
    root = Path(pez.__file__).parent
    for path in root.rglob("*.py"):  # every module, subpackages included
        src = path.read_text()
        assert "import gradio" not in src and "from gradio" not in src, path
        assert not any(line.strip().startswith("print(") for line in src.splitlines()), path


def test_unreachable_hub_fails_fast_without_offline_flag(monkeypatch):
    """No HF_HUB_OFFLINE, no cache, no network: a clear error at once, not a minute of retries."""
    from pez.models import hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "hub_offline", lambda: False)
    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setattr("huggingface_hub.try_to_load_from_cache", lambda *a, **k: None)
    with pytest.raises(pez.WeightsNotFoundError, match="Hugging Face Hub is unreachable"):
        pez.load_clip("ViT-B-32/openai", device="cpu")
