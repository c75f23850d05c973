"""Transferability signals computed on a backbone's features of the user's labelled sample. Numpy only.

* :func:`logme`: LogME (You et al., ICML 2021; fixed-point version of You et al., JMLR 2022,
  "Ranking and Tuning Pre-trained Models"), the mean per-class log maximum evidence of a Bayesian
  linear model on the features.
* :func:`knn_loo_accuracy`: leave-one-out k-NN accuracy with cosine similarity, k = 10 (Sorkhei et
  al. 2025, "k-NN as a simple and effective estimator of transferability").
* :func:`probe_accuracy` / :func:`probe_profile`: a stratified k-fold linear probe (ridge
  classifier on standardised features, closed form) per layer group: which depth carries the task
  (CS231n transfer notes; Head2Toe, Evci et al. 2022).
* :func:`head_scores`: energy (log-sum-exp of logits, Liu et al. 2020) and maximum softmax
  probability (Hendrycks & Gimpel 2017) of the pre-training head: a source-free "does this look
  like the pre-training data" score (ETran, Gholami et al. 2023).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

EPS = 1e-5  # the reference implementation's guard in the fixed-point denominators


@dataclass(frozen=True)
class ClassEvidence:
    """Converged LogME quantities for one class (one-vs-rest target)."""

    evidence: float  # log evidence / N at (alpha, beta)
    alpha: float
    beta: float
    iterations: int


def _svd(f: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n, d = f.shape
    if n > d:  # SVD through the d x d Gram matrix, as the reference does
        w, v = np.linalg.eigh(f.T @ f)
        order = np.argsort(w)[::-1]
        w, v = np.clip(w[order], 0, None), v[:, order]
        s = np.sqrt(w)
        k = int((s > 1e-10 * max(s[0], 1e-300)).sum())
        s, vh = s[:k], v[:, :k].T
        u = (f @ vh.T) / s
        return u, s, vh
    # N <= D: the same through the N x N Gram matrix (an eigh of N x N is several times cheaper
    # than the full SVD of the N x D matrix, e.g. 300 x 1280 features)
    w, u = np.linalg.eigh(f @ f.T)
    order = np.argsort(w)[::-1]
    w, u = np.clip(w[order], 0, None), u[:, order]
    s = np.sqrt(w)
    k = int((s > 1e-10 * max(s[0], 1e-300)).sum())
    s, u = s[:k], u[:, :k]
    vh = (f.T @ u / s).T
    return u, s, vh


def logme_per_class(f: np.ndarray, y: np.ndarray, *, tol: float = 1e-10, max_iter: int = 1000) -> list[ClassEvidence]:
    """LogME's fixed-point iteration for each class; see :func:`logme`.

    For target ``y_c`` (1 for class c, else 0) and features ``F`` (N x D) with singular values
    ``s_i`` and ``x = U^T y_c``, iterate ``t = alpha / beta``,
    ``gamma = sum s_i^2 / (s_i^2 + t)``, ``|m|^2 = sum s_i^2 x_i^2 / (s_i^2 + t)^2``,
    ``|y - F m|^2 = sum x_i^2 / (1 + s_i^2 / t)^2 + (|y|^2 - |x|^2)``,
    ``alpha = gamma / |m|^2``, ``beta = (N - gamma) / |y - F m|^2`` until ``t`` is stable; the log
    evidence is evaluated at the converged ``(alpha, beta)`` with ``m`` at ``t = alpha / beta``.
    """
    f = np.asarray(f, dtype=np.float64)
    y = np.asarray(y)
    n, d = f.shape
    u, s, _ = _svd(f)
    sigma = s**2
    k = len(sigma)
    out = []
    for c in range(int(y.max()) + 1):
        yc = (y == c).astype(np.float64)
        x = u.T @ yc
        x2 = x**2
        res_x2 = float(yc @ yc - x2.sum())
        alpha, beta = 1.0, 1.0
        it = 0
        for it in range(1, max_iter + 1):
            t = alpha / beta
            gamma = float((sigma / (sigma + t)).sum())
            m2 = float((sigma * x2 / (t + sigma) ** 2).sum())
            res2 = float((x2 / (1 + sigma / t) ** 2).sum()) + res_x2
            alpha = gamma / (m2 + EPS)
            beta = (n - gamma) / (res2 + EPS)
            if abs(alpha / beta - t) / t <= tol:
                break
        t = alpha / beta
        m2 = float((sigma * x2 / (t + sigma) ** 2).sum())
        res2 = float((x2 / (1 + sigma / t) ** 2).sum()) + res_x2
        logdet = float(np.log(alpha + beta * sigma).sum()) + (d - k) * math.log(alpha)
        ev = d / 2 * math.log(alpha) + n / 2 * math.log(beta) - 0.5 * logdet - beta / 2 * res2 - alpha / 2 * m2 - n / 2 * math.log(2 * math.pi)
        out.append(ClassEvidence(ev / n, alpha, beta, it))
    return out


def logme(f: np.ndarray, y: np.ndarray) -> float:
    """LogME score of features ``f`` (N x D) for integer labels ``y`` in ``0..C-1``: higher is better.

    The mean over classes of the maximum log evidence per sample, maximised over the prior
    precision ``alpha`` and noise precision ``beta`` by the fixed-point iteration of You et al.
    (iterated here to a relative tolerance of 1e-10 instead of the reference's 1e-3).
    """
    return float(np.mean([c.evidence for c in logme_per_class(f, y)]))


def knn_loo_accuracy(f: np.ndarray, y: np.ndarray, k: int = 10) -> float:
    """Leave-one-out k-NN accuracy with cosine similarity (majority vote, ties to the nearer neighbours).

    The similarities are computed :data:`KNN_BLOCK` rows at a time: memory grows with ``n`` (one
    block of rows against all items), not ``n^2``.
    """
    y = np.asarray(y)
    n = len(y)
    return float(knn_correct(f, f, y, y, exclude=np.arange(n), k=k).mean())


def knn_accuracy(query: np.ndarray, gallery: np.ndarray, y_gallery: np.ndarray, y_query: np.ndarray, exclude: np.ndarray | None = None, k: int = 10) -> float:
    """k-NN accuracy of ``query`` rows against a labelled ``gallery`` (cosine, majority vote, ties to the nearer).

    ``exclude[i]`` is a gallery row query ``i`` may not use (its own original), or ``-1`` for none.
    """
    return float(knn_correct(query, gallery, y_gallery, y_query, exclude, k).mean())


KNN_BLOCK = 1024  # query rows scored at once: (KNN_BLOCK x gallery) similarities, not (queries x gallery)


def knn_correct(query: np.ndarray, gallery: np.ndarray, y_gallery: np.ndarray, y_query: np.ndarray, exclude: np.ndarray | None = None, k: int = 10) -> np.ndarray:
    """Per query row, whether its k-NN vote is right (see :func:`knn_accuracy`); :data:`KNN_BLOCK` query rows at a time."""
    q = np.asarray(query, dtype=np.float64)
    g = np.asarray(gallery, dtype=np.float64)
    y_gallery = np.asarray(y_gallery)
    y_query = np.asarray(y_query)
    m = len(q)
    k = max(1, min(k, len(g) - (1 if exclude is not None else 0)))
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    g = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
    ex = None if exclude is None else np.asarray(exclude)
    n_cls = int(max(y_gallery.max(), y_query.max())) + 1
    w = 1.0 + 1e-6 * (k - np.arange(k)) / k
    out = np.empty(m, dtype=bool)
    for lo in range(0, m, KNN_BLOCK):
        hi = min(m, lo + KNN_BLOCK)
        sim = q[lo:hi] @ g.T
        if ex is not None:
            rows = np.flatnonzero(ex[lo:hi] >= 0)
            sim[rows, ex[lo:hi][rows]] = -np.inf
        np.negative(sim, out=sim)  # ascending order of -sim: nearest first
        idx = np.argpartition(sim, k - 1, axis=1)[:, :k]
        order = np.argsort(np.take_along_axis(sim, idx, axis=1), axis=1)
        idx = np.take_along_axis(idx, order, axis=1)
        votes = np.zeros((hi - lo, n_cls))
        np.add.at(votes, (np.repeat(np.arange(hi - lo), k), y_gallery[idx].ravel()), np.tile(w, hi - lo))
        out[lo:hi] = votes.argmax(1) == y_query[lo:hi]
    return out


def stratified_folds(y: np.ndarray, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Fold index per item, each class spread evenly over the folds."""
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype=np.int64)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        fold[idx] = np.arange(len(idx)) % folds
    return fold


def probe_accuracy(f: np.ndarray, y: np.ndarray, folds: int = 5, ridge: float = 1.0, seed: int = 0) -> float:
    """Cross-validated accuracy of a linear probe (ridge classifier on one-hot targets, closed form).

    Features are standardised with the training folds' statistics; each class needs at least
    ``folds`` examples for every fold to see it (fewer folds are used otherwise, at least 2).
    """
    f = np.asarray(f, dtype=np.float64)
    y = np.asarray(y)
    smallest = int(np.bincount(y).min())
    folds = max(2, min(folds, smallest))
    fold = stratified_folds(y, folds, seed)
    n_cls = int(y.max()) + 1
    correct = 0
    for i in range(folds):
        tr, te = fold != i, fold == i
        mu, sd = f[tr].mean(0), f[tr].std(0) + 1e-6
        a, b = (f[tr] - mu) / sd, (f[te] - mu) / sd
        a = np.hstack([a, np.ones((len(a), 1))])
        b = np.hstack([b, np.ones((len(b), 1))])
        t = np.eye(n_cls)[y[tr]]
        if a.shape[0] < a.shape[1]:  # dual form: (AA^T + rI)^-1
            w = a.T @ np.linalg.solve(a @ a.T + ridge * np.eye(len(a)), t)
        else:
            w = np.linalg.solve(a.T @ a + ridge * np.eye(a.shape[1]), a.T @ t)
        correct += int(((b @ w).argmax(1) == y[te]).sum())
    return correct / len(y)


@dataclass(frozen=True)
class Profile:
    """Per-group probe accuracies (input to output) and what they say about depth."""

    groups: list[str]
    accuracy: list[float]
    best: str  # j*: the best-probed group (ties within ``tie`` go to the deeper group)
    best_index: int
    delta_top: float  # a_J - max_{j<J} a_j

    def unfreeze_from_best(self) -> int:
        """k = J - j* + 1 in group units: how many top groups to unfreeze, from the best-probed one up."""
        return len(self.groups) - self.best_index


def probe_profile(stage_features: Mapping[str, np.ndarray], y: np.ndarray, tie: float = 0.01, folds: int = 5) -> Profile:
    """Linear-probe accuracy of each group's pooled features, ``stage_features`` ordered input to output."""
    names = list(stage_features)
    acc = [probe_accuracy(stage_features[g], y, folds=folds) for g in names]
    top = max(acc)
    best = max(i for i, a in enumerate(acc) if a >= top - tie)
    delta = acc[-1] - max(acc[:-1]) if len(acc) > 1 else 0.0
    return Profile(groups=names, accuracy=[round(a, 4) for a in acc], best=names[best], best_index=best, delta_top=round(delta, 4))


def head_scores(logits: np.ndarray) -> dict[str, float]:
    """Mean energy score (log-sum-exp of the logits) and mean maximum softmax probability."""
    z = np.asarray(logits, dtype=np.float64)
    mx = z.max(1, keepdims=True)
    lse = (mx + np.log(np.exp(z - mx).sum(1, keepdims=True))).ravel()
    msp = np.exp(mx.ravel() - lse)
    return {"energy": float(lse.mean()), "msp": float(msp.mean())}


def mean_ranks(scores: Sequence[Sequence[float | None]]) -> list[float]:
    """Mean rank (1 = best, higher score better) of each candidate over several signals.

    ``scores[s][i]`` is signal ``s`` for candidate ``i``; ``None`` entries are skipped for that
    signal (the candidate gets the mean of its other ranks). Ties share the average rank.
    """
    n = len(scores[0]) if scores else 0
    total = np.zeros(n)
    count = np.zeros(n)
    for row in scores:
        known = [(v, i) for i, v in enumerate(row) if v is not None and not (isinstance(v, float) and math.isnan(v))]
        for v, i in known:
            better = sum(1 for w, _ in known if w > v)
            equal = sum(1 for w, _ in known if w == v)
            total[i] += better + (equal + 1) / 2
            count[i] += 1
    return [float(total[i] / count[i]) if count[i] else float("inf") for i in range(n)]


def rank_candidates(scores: Sequence[Sequence[float | None]], cost: Sequence[float]) -> list[int]:
    """Candidate indices, best first: by :func:`mean_ranks` over ``scores``, then the cheaper (lower ``cost``).

    This is zoo's backbone ranking rule (the recommender's data mode and ``bench/replay_rankings.py``).
    """
    ranks = mean_ranks(scores)
    return sorted(range(len(cost)), key=lambda i: (ranks[i], cost[i]))
