"""Peak memory of the recommender's leave-one-out k-NN: blockwise (zoo now) against the whole n x n matrix (zoo before).

    .venv/bin/python bench/knn_memory.py [n ...]

Prints, per n, both peaks (tracemalloc, numpy's allocations) and their ratio; the results agree.
"""

from __future__ import annotations

import sys
import time
import tracemalloc

import numpy as np

from zoo.recommender import signals as S


def whole_matrix(f: np.ndarray, y: np.ndarray, k: int = 10) -> float:
    """The old knn_loo_accuracy: the whole n x n similarity matrix at once."""
    z = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    sim = z @ z.T
    np.fill_diagonal(sim, -np.inf)
    idx = np.argpartition(-sim, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(sim, idx, axis=1), axis=1)
    idx = np.take_along_axis(idx, order, axis=1)
    votes = np.zeros((len(y), int(y.max()) + 1))
    w = 1.0 + 1e-6 * (k - np.arange(k)) / k
    np.add.at(votes, (np.repeat(np.arange(len(y)), k), y[idx].ravel()), np.tile(w, len(y)))
    return float((votes.argmax(1) == y).mean())


def peak(fn, *args):
    tracemalloc.start()
    t = time.perf_counter()
    try:
        out = fn(*args)
        return out, tracemalloc.get_traced_memory()[1], time.perf_counter() - t
    finally:
        tracemalloc.stop()


if __name__ == "__main__":
    for n in [int(a) for a in sys.argv[1:]] or [2000, 4000, 8000]:
        rng = np.random.default_rng(0)
        y = np.arange(n) % 10
        f = (np.eye(10)[y] @ rng.normal(size=(10, 384)) + rng.normal(size=(n, 384))).astype(np.float32)
        a, pa, ta = peak(whole_matrix, f.astype(np.float64), y)
        b, pb, tb = peak(S.knn_loo_accuracy, f, y)
        assert a == b, (a, b)
        print(f"n={n}: whole matrix {pa / 2**20:.0f} MiB {ta:.1f}s, blockwise {pb / 2**20:.0f} MiB {tb:.1f}s: {pa / pb:.1f}x less memory")
