"""Text feature extraction with batches of similar length (zoo's default, as sentence-transformers does) against
the items' own order, in the same run, on the packaged all-MiniLM-L6-v2 and real text of mixed lengths (numpy's
docstrings, cut at sentence, paragraph and whole-docstring level).

    python bench/text_batching.py [--n 384] [--batch-size 32]

Prints seconds for each and the ratio, and the largest difference between the two feature sets.
"""

from __future__ import annotations

import argparse
import inspect
import random
import time

import numpy as np


def texts(n: int, seed: int = 0) -> list[str]:
    import numpy

    docs = [inspect.getdoc(getattr(numpy, name)) or "" for name in sorted(dir(numpy))]
    docs = [d for d in docs if len(d) > 40]
    pool = []
    for d in docs:
        paragraphs = [p for p in d.split("\n\n") if p.strip()]
        pool += [d[:2000], paragraphs[0], d.split(". ")[0]]
    random.Random(seed).shuffle(pool)
    return pool[:n]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=384)
    p.add_argument("--batch-size", type=int, default=32)
    a = p.parse_args(argv)
    import torch

    import zoo
    from zoo.recommender.features import extract

    torch.set_num_threads(1)
    bb = zoo.load("hf:sentence-transformers/all-MiniLM-L6-v2")
    items = texts(a.n)
    labels = np.zeros(len(items), dtype=np.int64)
    extract(bb, items[:8], labels[:8], count_flops=False)  # warm-up
    out = {}
    for sorted_ in (False, True):
        t0 = time.perf_counter()
        fs = extract(bb, items, labels, batch_size=a.batch_size, count_flops=False, length_sorted=sorted_)
        out[sorted_] = (time.perf_counter() - t0, fs)
    lens = [len(t) for t in items]
    diff = max(float(np.abs(out[True][1].groups[g] - out[False][1].groups[g]).max()) for g in out[True][1].groups)
    print(f"{len(items)} texts ({min(lens)}-{max(lens)} characters, median {int(np.median(lens))}), batch {a.batch_size}, 1 thread")
    print(f"items' order: {out[False][0]:.2f} s; longest first: {out[True][0]:.2f} s; speed-up x{out[False][0] / out[True][0]:.2f}")
    print(f"largest feature difference: {diff:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
