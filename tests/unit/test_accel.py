"""pez.engine.accel and tower: the search precision choice, the text tower and fp32-honest scores."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import pez
from pez import toy
from pez.engine import accel
from pez.engine.tower import TextTower
from pez.engine.vocab import vocabulary
from pez.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------
# Precision "auto"


def test_no_native_bf16_means_fp32_without_probing():
    def probe():
        raise AssertionError("the probe must not run on a CPU without native bf16")

    assert accel.decide_cpu_precision(False, probe) == "fp32"


@pytest.mark.parametrize(
    ("speedup", "expected"), [(3.0, "bf16"), (accel.BF16_MIN_GAIN, "bf16"), (1.05, "fp32"), (0.3, "fp32")]
)
def test_native_bf16_is_chosen_only_when_the_probe_finds_it_faster(speedup, expected):
    assert accel.decide_cpu_precision(True, lambda: speedup) == expected


def test_capability_needs_a_bf16_cpu_flag():
    assert not accel.cpu_has_native_bf16(frozenset({"avx2", "fma", "avx512f", "avx512bw"}))
    assert not accel.cpu_has_native_bf16(frozenset())


def test_probe_returns_a_positive_ratio():
    assert accel.probe_bf16_speedup(width=64, rows=4, repeats=2) > 0


def test_search_precision(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    for p in ("fp32", "bf16", "fp16"):
        assert accel.search_precision(p, cpu) == p
    with pytest.raises(ConfigError, match="precision"):
        accel.search_precision("int8", cpu)
    monkeypatch.setattr(accel, "cpu_auto_precision", lambda: "bf16")
    assert accel.search_precision("auto", cpu, width=1024) == "bf16"
    assert accel.search_precision(None, cpu, width=64) == "fp32"  # small towers are overhead-bound
    monkeypatch.setattr(accel, "cpu_auto_precision", lambda: "fp32")
    assert accel.search_precision("auto", cpu, width=1024) == "fp32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert accel.search_precision("auto", cuda) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert accel.search_precision("auto", cuda) == "fp16"


def test_config_rejects_an_unknown_precision():
    with pytest.raises(ConfigError, match="precision"):
        pez.InvertConfig(precision="fp8").validate()


def test_compile_is_off_on_cpu_unless_asked(monkeypatch):
    monkeypatch.delenv("PEZ_COMPILE", raising=False)
    assert not accel.compile_enabled(torch.device("cpu"))
    assert accel.compile_enabled(torch.device("cuda"))
    monkeypatch.setenv("PEZ_COMPILE", "1")
    assert accel.compile_enabled(torch.device("cpu"))
    monkeypatch.setenv("PEZ_COMPILE", "0")
    assert not accel.compile_enabled(torch.device("cuda"))


# ---------------------------------------------------------------------------------------------
# The search tower


def _inputs(clip, n: int, m: int = 5, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 40000, (n, m), generator=gen)
    return vocabulary(clip).embeddings[ids].float()  # (N, M, d)


@pytest.mark.parametrize("spec", ["random:tiny", "toy"])
def test_fp32_tower_equals_the_models_own_modules(spec):
    clip = pez.load_clip(spec, device="cpu")
    x = _inputs(clip, 3)
    tower = accel.search_tower(clip, "fp32")
    assert tower.plain  # the model's blocks are the standard ones the tower reimplements
    modules = TextTower(clip.model, torch.float32, reimplement=False)  # the model's own modules
    reference, fast = pez.PromptEncoder(clip, modules), pez.PromptEncoder(clip, tower)
    torch.testing.assert_close(
        fast.encode_prompt_embeddings(x), reference.encode_prompt_embeddings(x), rtol=1e-5, atol=1e-5
    )

    def input_grad(enc):  # the search uses only the gradient at the input
        xi = x.clone().requires_grad_(True)
        return torch.autograd.grad(enc.encode_prompt_embeddings(xi).pow(2).sum(), xi)[0]

    g, g_ref = input_grad(fast), input_grad(reference)
    assert float((g - g_ref).norm() / g_ref.norm()) < 1e-5  # float32 rounding only


def test_bf16_tower_is_a_copy_close_to_fp32():
    clip = pez.load_clip("toy", device="cpu")
    tower = accel.search_tower(clip, "bf16")
    assert tower.parts.transformer is not clip.model.transformer  # the shared CLIP keeps fp32 weights
    assert clip.model.transformer.get_cast_dtype() == torch.float32
    x = _inputs(clip, 2)
    a = F.normalize(pez.PromptEncoder(clip).encode_prompt_embeddings(x), dim=-1)
    b = F.normalize(pez.PromptEncoder(clip, tower).encode_prompt_embeddings(x).float(), dim=-1)
    assert float((a * b).sum(-1).min()) > 0.99


def test_a_bf16_clip_holds_one_fp32_copy_of_its_text_tower():
    """A CLIP loaded in bf16 (low memory): the scores' fp32 tower and an fp32 search share one copy."""
    clip = pez.load_clip("toy", device="cpu", precision="bf16")
    assert clip.dtype == torch.bfloat16
    scoring, search = accel.scoring_tower(clip), accel.search_tower(clip, "fp32", compile=False)
    assert scoring is not search and scoring.parts is search.parts
    assert scoring.parts.transformer.get_cast_dtype() == torch.float32
    assert accel.search_tower(clip, "bf16", compile=False).parts.transformer is clip.model.transformer  # no copy


def test_both_candidate_layouts_agree_and_one_is_chosen():
    clip = pez.load_clip("random:tiny", device="cpu")
    tower = TextTower(clip.model, torch.float32, time_layouts=True)
    x = _inputs(clip, 3)  # (3, 5, d)
    eot = torch.full((3,), 4)
    outs = {}
    for _ in range(2 * (tower.TRIALS + 1)):
        layout = tower._choose_layout(3, x.device)
        outs[layout] = tower(x, eot)
    assert set(outs) == {"batched", "sequential"}
    torch.testing.assert_close(outs["batched"], outs["sequential"], rtol=1e-5, atol=1e-6)
    assert tower.layout(3) in ("batched", "sequential")
    assert tower.layout(1) == "batched"


# ---------------------------------------------------------------------------------------------
# Searches: bf16 agrees with fp32, reported scores are fp32-honest


@pytest.fixture(scope="module")
def toy_runs():
    """fp32 and bf16 searches of one toy image, with every report."""
    clip = pez.load_clip("toy", device="cpu")
    image = toy.render("red", "circle", toy.EVAL_SEED_BASE + 710_000)
    runs = {}
    for precision in ("fp32", "bf16"):
        cfg = pez.InvertConfig(prompt_len=4, steps=120, candidates=4, seed=0, report_every=20, precision=precision)
        reports = list(pez.invert_stream([image], model=clip, config=cfg))
        runs[precision] = reports
    return clip, image, runs


def test_bf16_and_fp32_searches_reach_similar_scores(toy_runs):
    _, _, runs = toy_runs
    fp32, bf16 = runs["fp32"][-1].result, runs["bf16"][-1].result
    assert fp32.stats["fp32_search"] == 1.0 and bf16.stats["fp32_search"] == 0.0
    assert abs(fp32.score - bf16.score) < 0.03, (fp32.prompt, fp32.score, bf16.prompt, bf16.score)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_reported_scores_are_fp32_scores_of_the_returned_text(toy_runs, precision):
    clip, image, runs = toy_runs
    result = runs[precision][-1].result
    texts = [result.prompt] + [p.prompt for p in result.top_k]
    honest = pez.score_texts(clip, texts, [image])
    reported = [result.score] + [p.score for p in result.top_k]
    assert reported == pytest.approx(honest, abs=2e-5)
    for rep in runs[precision]:  # every report's best and current prompt, too
        shown = [(rep.best_prompt, rep.best_score), (rep.current_prompt, rep.current_score)]
        shown = [(t, s) for t, s in shown if t]
        assert [s for _, s in shown] == pytest.approx(pez.score_texts(clip, [t for t, _ in shown], [image]), abs=2e-5)


# ---------------------------------------------------------------------------------------------
# torch.compile path and the GPU check script


@pytest.mark.slow
def test_compiled_tower_equals_eager_on_cpu():
    clip = pez.load_clip("random:tiny", device="cpu")
    eager = TextTower(clip.model, torch.float32)
    compiled = TextTower(clip.model, torch.float32, compile_mode="default")
    x = _inputs(clip, 2).requires_grad_(True)
    eot = torch.full((2,), 4)
    a = eager(x, eot)
    b = compiled(x, eot)
    assert compiled._run is not compiled._eager, "compile fell back to eager"
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
    (ga,) = torch.autograd.grad(a.sum(), x)
    (gb,) = torch.autograd.grad(b.sum(), x)
    assert float((gb - ga).norm() / ga.norm()) < 1e-5  # float32 rounding only


# ---------------------------------------------------------------------------------------------
# Exact projection with bf16 scans


def _random_vocab(v: int = 6000, d: int = 96, seed: int = 0, copies: int = 0):
    from pez.engine.vocab import Vocabulary

    emb = torch.randn(v, d, generator=torch.Generator().manual_seed(seed)) * 0.02
    emb[100 : 100 + copies] = emb[100]  # `copies` identical rows: exact ties across the coarse top-k
    return Vocabulary(emb, F.normalize(emb, dim=-1), [""] * v, (0,))


def test_coarse_scan_projector_matches_the_full_fp32_scan():
    vocab = _random_vocab()
    mask = torch.zeros(vocab.size)
    mask[torch.arange(0, vocab.size, 7)] = float("-inf")  # some disallowed ids
    project = accel.CoarseScanProjector(vocab, mask, keep=32)
    gen = torch.Generator().manual_seed(1)
    soft = torch.randn(3, 4, 96, generator=gen) * 0.02
    for step in range(60):
        scale = 0.02 if step % 15 == 0 else 0.02 * 10 ** -(1 + step % 3)  # jumps and small moves
        soft = soft + scale * torch.randn(soft.shape, generator=gen)
        assert torch.equal(project(soft), vocab.project(soft, mask)), step
    assert 4 <= project.scans < project.calls
    assert project.fallbacks == 0


def test_coarse_scan_falls_back_on_ties_and_keeps_the_lowest_id():
    vocab = _random_vocab(copies=64)
    mask = torch.zeros(vocab.size)
    project = accel.CoarseScanProjector(vocab, mask, keep=16)
    soft = vocab.embeddings[100].expand(1, 2, -1).clone()  # right on the 64 identical rows
    assert project(soft).tolist() == [[100, 100]] == vocab.project(soft, mask).tolist()
    assert project.fallbacks == 1


def test_projector_choice_is_plain_on_small_vocabularies():
    vocab = _random_vocab(d=32)
    assert type(accel.projector([vocab], torch.zeros(vocab.size))).__name__ == "Projector"


def test_full_scan_projector_is_the_full_scan():
    vocab = _random_vocab()
    mask = torch.zeros(vocab.size)
    project = accel.Projector(vocab, mask, skip=False)
    soft = torch.randn(2, 3, 96, generator=torch.Generator().manual_seed(2))
    assert torch.equal(project(soft), vocab.project(soft, mask))
    assert project.scans == project.calls == 1


def test_alternatives_never_carry_a_nan_score(tiny_clip, images):
    """CI once saw a bf16 run's top-k lead with a nan score (not reproduced since): whatever a
    scorer holds, the alternatives are ranked by finite, honest scores only."""
    from pez.engine.optim import _BestTracker

    tracker = _BestTracker.__new__(_BestTracker)
    tracker.scorer = type("S", (), {"scores": {"a b": float("nan"), "c d": 0.5, "e f": 0.7}})()
    assert [p.prompt for p in tracker.top_k(5)] == ["e f", "c d"]
