"""Signals against independent computations and cases with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from zoo.recommender import signals as S


def _closed_form_evidence(f: np.ndarray, y: np.ndarray, alpha: float, beta: float) -> float:
    """Bishop (3.86): log p(y | alpha, beta) of Bayesian linear regression, per sample, from the D x D matrices."""
    n, d = f.shape
    a = alpha * np.eye(d) + beta * f.T @ f
    m = beta * np.linalg.solve(a, f.T @ y)
    e = beta / 2 * np.sum((y - f @ m) ** 2) + alpha / 2 * m @ m
    _, logdet = np.linalg.slogdet(a)
    return (d / 2 * math.log(alpha) + n / 2 * math.log(beta) - e - 0.5 * logdet - n / 2 * math.log(2 * math.pi)) / n


@pytest.mark.parametrize("n, d, c", [(300, 24, 4), (40, 60, 3)])
def test_logme_matches_closed_form_evidence_at_the_fixed_point(n, d, c):
    rng = np.random.default_rng(7)
    y = np.arange(n) % c
    centers = rng.normal(size=(c, d))
    f = centers[y] * 0.8 + rng.normal(size=(n, d))
    per = S.logme_per_class(f, y)
    assert len(per) == c
    for cls, ev in enumerate(per):
        yc = (y == cls).astype(float)
        ref = _closed_form_evidence(f, yc, ev.alpha, ev.beta)
        assert ev.evidence == pytest.approx(ref, abs=1e-6)
        if n <= d:
            continue  # N <= D: y is interpolated exactly and the evidence has no interior maximum (EPS stops it)
        # the fixed point maximises the evidence: any nearby (alpha, beta) is no better
        for da, db in ((1.01, 1), (0.99, 1), (1, 1.01), (1, 0.99)):
            assert _closed_form_evidence(f, yc, ev.alpha * da, ev.beta * db) <= ref + 1e-12
    assert S.logme(f, y) == pytest.approx(np.mean([e.evidence for e in per]), abs=1e-12)


def test_logme_prefers_informative_features():
    rng = np.random.default_rng(0)
    y = np.arange(400) % 5
    good = np.eye(5)[y] * 3 + rng.normal(size=(400, 5)) * 0.5
    noise = rng.normal(size=(400, 5))
    assert S.logme(good, y) > S.logme(noise, y)


def test_knn_loo_known_answer():
    deg = np.array([0, 10, 20, 90, 100, 110, 95], dtype=float)
    f = np.stack([np.cos(np.radians(deg)), np.sin(np.radians(deg))], axis=1) * np.array([[1], [2], [3], [1], [2], [3], [5]])
    y = np.array([0, 0, 0, 1, 1, 1, 0])
    # k=1 with cosine: 0,10,20 and 110 find their own class; 90 and 100 find the 95-degree point; 95 finds class 1
    assert S.knn_loo_accuracy(f, y, k=1) == pytest.approx(4 / 7)
    assert S.knn_loo_accuracy(f[:6], y[:6], k=2) == 1.0


def test_knn_accuracy_against_a_gallery_known_answer():
    deg = np.array([0, 10, 20, 90, 100, 110, 95], dtype=float)
    f = np.stack([np.cos(np.radians(deg)), np.sin(np.radians(deg))], axis=1) * np.array([[1], [2], [3], [1], [2], [3], [5]])
    y = np.array([0, 0, 0, 1, 1, 1, 0])
    # each row as a query against the whole set with itself excluded is leave-one-out
    for k in (1, 2, 3):
        assert S.knn_accuracy(f, f, y, y, exclude=np.arange(7), k=k) == pytest.approx(S.knn_loo_accuracy(f, y, k=k))
    # without the exclusion every point finds itself first (k=1: all correct)
    assert S.knn_accuracy(f, f, y, y, k=1) == 1.0
    # mirrored queries (x -> -x) of the 0..20-degree points land at 160..180 degrees: nearest is 110 (class 1)
    q = f[:3] * np.array([[-1.0, 1.0]])
    assert S.knn_accuracy(q, f, y, y[:3], exclude=np.arange(3), k=1) == 0.0
    assert S.knn_accuracy(f[:3], f, y, y[:3], exclude=np.array([0, -1, 2]), k=1) == 1.0


def test_probe_accuracy_and_profile_known_answers():
    rng = np.random.default_rng(1)
    n = 200
    y = np.arange(n) % 2
    separable = np.c_[np.where(y == 1, 2.0, -2.0) + rng.uniform(-1, 1, n), rng.normal(size=(n, 3))]
    noise = rng.normal(size=(n, 4))
    assert S.probe_accuracy(separable, y) == 1.0
    assert S.probe_accuracy(noise, y) < 0.7
    prof = S.probe_profile({"stem": noise, "stage1": separable, "stage2": noise + 0.0, "top": rng.normal(size=(n, 4))}, y)
    assert prof.best == "stage1" and prof.best_index == 1
    assert prof.unfreeze_from_best() == 3  # stage1, stage2, top
    assert prof.delta_top < -0.2
    # ties within one point go to the deeper group
    tie = S.probe_profile({"a": separable, "b": separable * 2}, y)
    assert tie.best == "b" and tie.delta_top == 0.0


def test_stratified_folds_balance_classes():
    y = np.repeat(np.arange(3), [10, 11, 12])
    fold = S.stratified_folds(y, 5)
    for c in range(3):
        counts = np.bincount(fold[y == c], minlength=5)
        assert counts.max() - counts.min() <= 1


def test_head_scores_and_mean_ranks():
    s = S.head_scores(np.zeros((3, 4)))
    assert s["msp"] == pytest.approx(0.25) and s["energy"] == pytest.approx(math.log(4))
    s = S.head_scores(np.array([[100.0, 0.0]]))
    assert s["msp"] == pytest.approx(1.0) and s["energy"] == pytest.approx(100.0)
    assert S.mean_ranks([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]]) == [2.0, 2.0, 2.0]
    assert S.mean_ranks([[3.0, 2.0, 1.0], [None, 5.0, 5.0]]) == [1.0, 1.75, 2.25]


def test_masked_lm_perplexity_of_an_untrained_head_is_about_the_vocabulary_size(tmp_path):
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    from zoo.recommender.datamode import _lm_perplexity

    words = "the a model zoo learns features from images and text with layers of weights".split()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab), encoding="utf-8")
    tok = BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt"))
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, initializer_range=1e-4)
    lm = BertForMaskedLM(cfg).eval()

    class _Text:  # the attributes of an HFTextBackbone that the signal uses
        source_head, tokenizer, causal, device = lm, tok, False, torch.device("cpu")

        def preprocess(self, texts):
            return dict(tok(texts, padding=True, return_tensors="pt"))

    texts = [" ".join(words[i:] + words[:i]) for i in range(len(words))]
    ppl = _lm_perplexity(_Text(), texts)
    # near-zero weights give near-uniform predictions: perplexity close to |V|
    assert ppl == pytest.approx(len(vocab), rel=0.05)


def _knn_loo_reference(f: np.ndarray, y: np.ndarray, k: int) -> float:
    """Leave-one-out k-NN on the whole n x n similarity matrix (what knn_loo_accuracy computed before it went blockwise)."""
    z = f / np.linalg.norm(f, axis=1, keepdims=True)
    sim = z @ z.T
    np.fill_diagonal(sim, -np.inf)
    idx = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    votes = np.zeros((len(y), int(y.max()) + 1))
    w = 1.0 + 1e-6 * (k - np.arange(k)) / k
    np.add.at(votes, (np.repeat(np.arange(len(y)), k), y[idx].ravel()), np.tile(w, len(y)))
    return float((votes.argmax(1) == y).mean())


@pytest.mark.parametrize("block", [1, 7, 64, 100_000])
def test_knn_loo_in_blocks_of_rows_matches_the_whole_matrix(monkeypatch, block):
    rng = np.random.default_rng(3)
    y = np.arange(150) % 4
    f = np.eye(4)[y] + rng.normal(size=(150, 4)) * 0.8
    monkeypatch.setattr(S, "KNN_BLOCK", block)
    for k in (1, 5, 10):
        assert S.knn_loo_accuracy(f, y, k=k) == pytest.approx(_knn_loo_reference(f, y, k))


def test_knn_loo_never_holds_the_n_by_n_similarity_matrix():
    """--max-samples 20000 made a 3.2 GB similarity matrix (and as much again for its negation and argpartition);
    a block of rows at a time keeps the peak far below one n x n float64 matrix."""
    import tracemalloc

    n = 4000
    rng = np.random.default_rng(0)
    y = np.arange(n) % 10
    f = rng.normal(size=(n, 8))
    tracemalloc.start()
    try:
        S.knn_loo_accuracy(f, y, k=10)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < n * n * 8 * 0.75, f"peak {peak / 2**20:.0f} MiB for n={n}"
