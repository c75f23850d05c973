"""How many copies of every item's features zoo holds while it extracts and caches them (tracemalloc, numpy's allocations).

    .venv/bin/python bench/feature_copies.py [n]

A backbone whose layer outputs are numpy arrays (so tracemalloc sees every row kept), lite0-sized groups and 1000
logits; the old way (per-batch chunks joined at the end, astype copies on save) is replayed beside zoo's in the same run.
"""

from __future__ import annotations

import os
import sys
import tempfile
import tracemalloc

import numpy as np

os.environ.setdefault("ZOO_HOME", tempfile.mkdtemp())
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

from test_recommend_data import _NumpyBackedBackbone  # noqa: E402

from zoo.recommender import features as F  # noqa: E402


class Lite0Shaped(_NumpyBackedBackbone):
    dims = (32, 16, 24, 40, 80, 112, 192, 320, 1280)


def old_extract(bb, n, batch_size=32):
    outs = {g.name: [] for g in bb.layer_groups}
    batch = bb.preprocess(["x"] * batch_size)
    for start in range(0, n, batch_size):
        for g, layer in zip(bb.layer_groups, bb.layers):
            outs[g.name].append(layer(batch[: min(batch_size, n - start)]).numpy())
    return {k: np.concatenate(v) for k, v in outs.items()}


def peak(fn):
    tracemalloc.start()
    try:
        out = fn()
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    bb = Lite0Shaped()
    one = n * sum(bb.dims) * 4
    _, old_x = peak(lambda: old_extract(bb, n))
    fs, new_x = peak(lambda: F.extract(bb, ["x"] * n, np.zeros(n), count_flops=False))
    arrays = {k: v for k, v in fs.groups.items()}
    _, old_s = peak(lambda: [a.astype(np.float32) for a in arrays.values()])  # what save() made before writing
    _, new_s = peak(lambda: F.save(fs, "bench"))
    mb = 2**20
    print(f"n={n}, one copy {one / mb:.0f} MiB: extract old {old_x / one:.2f} copies, zoo {new_x / one:.2f}; "
          f"save's extra old {old_s / one:.2f}, zoo {new_s / one:.2f} ({old_s / max(new_s, 1):.0f}x less)")
