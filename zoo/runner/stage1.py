"""Stage 1: the new head as a multinomial logistic regression on frozen, cached features.

Full-batch L-BFGS in torch on centred features scaled by one global factor, the L2 strength picked
on the held-out split, then centring and scale folded back into the weights so the head reads raw
pooled features (the initial head of stage 2, LP-FT). lp-concat fits the same head on the middle
layer group's pooled output next to the final features, each block at unit RMS (:func:`fit_concat_head`).
A probe that is the saved model is refit on every item with the chosen L2 (:func:`refit`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

L2_GRID = (1e-3, 1e-2, 1e-1)


@dataclass
class Stage1Result:
    """The fitted head (on raw features) and its accuracies."""

    weight: np.ndarray  # (C, d) float32
    bias: np.ndarray  # (C,) float32
    l2: float
    train_acc: float
    val_acc: float
    val_loss: float
    val_pred: np.ndarray
    grid: dict[str, float] = field(default_factory=dict)
    concat: dict[str, Any] | None = None  # lp-concat: the mid-level group, its width and the two block scales
    refit: dict[str, Any] | None = None  # the head refit on every item with the chosen L2 (weight/bias are that head)

    def metrics(self) -> dict[str, Any]:
        """What metrics.jsonl records for stage 1."""
        out = {"stage": "stage1", "l2": self.l2, "train_acc": round(self.train_acc, 6), "val_acc": round(self.val_acc, 6), "val_loss": round(self.val_loss, 6), "grid": self.grid}
        return {**out, **{k: v for k, v in (("concat", self.concat), ("refit", self.refit)) if v is not None}}


def concat_group(names: Sequence[str]) -> str:
    """The layer group whose pooled output lp-concat reads next to the final features: the middle one
    (index ``len // 2``, input to output), as the transfer grid's lp-concat arm."""
    return names[len(names) // 2]


def block_scale(x: np.ndarray) -> float:
    """Root mean square of every entry of ``x`` (the training rows of one feature block)."""
    return max(1e-6, float(np.sqrt(np.mean(np.square(np.asarray(x, dtype=np.float64))))))


def fit_concat_head(
    mid: np.ndarray, final: np.ndarray, labels: np.ndarray, train: np.ndarray, val: np.ndarray, n_classes: int, *, group: str, max_iter: int = 100,
    l2_grid: Sequence[float] = L2_GRID,
) -> Stage1Result:
    """lp-concat: :func:`fit_head` on ``[mid / s_mid, final / s_final]``, each block scaled to unit RMS
    over the training rows (a wide block must not drown the other), the scales then folded into the
    head, which reads the raw ``[mid, final]`` concatenation (``ClassifierModel`` with ``mid``).
    """
    s_mid, s_fin = block_scale(mid[train]), block_scale(final[train])

    def blocks(rows: np.ndarray) -> np.ndarray:  # [mid / s_mid, final / s_fin] of these rows only (not of every item, then cut)
        x = np.empty((len(rows), mid.shape[1] + final.shape[1]), dtype=np.float64)
        np.divide(mid[rows], s_mid, out=x[:, : mid.shape[1]], dtype=np.float64)
        np.divide(final[rows], s_fin, out=x[:, mid.shape[1] :], dtype=np.float64)
        return x

    r = _fit_head_owned(blocks(train), labels[train], blocks(val), labels[val], n_classes, max_iter, tuple(l2_grid))
    d = mid.shape[1]
    w = r.weight.astype(np.float64)
    w[:, :d] /= s_mid
    w[:, d:] /= s_fin
    r.weight = w.astype(np.float32)
    r.concat = {"group": group, "mid_dim": int(d), "scales": [round(s_mid, 6), round(s_fin, 6)]}
    return r


def _fit(x: Any, y: Any, n_classes: int, l2: float, max_iter: int) -> tuple[Any, Any]:
    import torch

    torch.manual_seed(0)
    w = torch.zeros(n_classes, x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, history_size=10, line_search_fn="strong_wolfe", tolerance_grad=1e-7, tolerance_change=1e-10)

    def closure() -> Any:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ w.T + b, y) + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def fit_head(
    train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray, n_classes: int, *, max_iter: int = 100, l2_grid: Sequence[float] = L2_GRID
) -> Stage1Result:
    """Fit the linear head on features; the L2 strength with the best held-out accuracy wins (ties: stronger L2).

    Args:
        train_x, train_y: training features ``(n, d)`` and labels.
        val_x, val_y: held-out features and labels (choose L2, report accuracy).
        n_classes: number of classes (the head's outputs).
        l2_grid: the L2 strengths tried (one: fit with it).

    Returns:
        :class:`Stage1Result` whose ``weight``/``bias`` apply to raw (unstandardised) features.
    """
    # a float64 copy of the caller's training rows, which _fit_head_owned then standardises in place (the held-out rows are only read)
    return _fit_head_owned(np.array(train_x, dtype=np.float64), train_y, np.asarray(val_x, dtype=np.float64), val_y, n_classes, max_iter, tuple(l2_grid))


def _fit_head_owned(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray, n_classes: int, max_iter: int,
                    l2_grid: tuple[float, ...]) -> Stage1Result:
    """:func:`fit_head` on float64 arrays it may overwrite (the training rows are standardised in place)."""
    import torch

    threads = torch.get_num_threads()
    if train_x.size < 4_000_000:
        torch.set_num_threads(1)  # L-BFGS on small problems is thousands of tiny ops: threads only add overhead
    try:
        return _fit_head(train_x, train_y, val_x, val_y, n_classes, max_iter, l2_grid)
    finally:
        torch.set_num_threads(threads)


def _fit_head(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray, n_classes: int, max_iter: int, l2_grid: tuple[float, ...]) -> Stage1Result:
    import torch

    xv = torch.as_tensor(np.asarray(val_x, dtype=np.float64))
    yt = torch.as_tensor(np.asarray(train_y, dtype=np.int64))
    yv = torch.as_tensor(np.asarray(val_y, dtype=np.int64))
    # the training rows are standardised in place (train_x is this fit's own float64 copy): one (n, d) float64 array,
    # where raw rows, standardised rows and the temporaries of the scale were three to four
    zt = torch.from_numpy(train_x)
    # centre per feature, scale by one number: folding a per-feature scale back into the head would
    # blow up the weights of near-constant features, which fine-tuning then moves (LP-FT diverges)
    mu = zt.mean(0)
    # floor relative to the features' own magnitude: near-constant features (e.g. random weights) would
    # otherwise fold into a head of ~1e6 weights whose float32 logits are noise
    floor = max(1e-6, 1e-4 * float(torch.linalg.vector_norm(zt)) / math.sqrt(max(1, zt.numel())))
    zt.sub_(mu)
    sd = (torch.linalg.vector_norm(zt) / math.sqrt(max(1, zt.numel()))).clamp(min=floor)
    zt.div_(sd)
    zv = (xv - mu) / sd
    # fewer rows than features: the optimum and every L-BFGS iterate (started at 0) lie in the span of the
    # training rows, so fit A in the basis V of that span (w = A V^T, Z w^T = (Z V) A^T, |w| = |A|), an exact
    # change of variables that makes each iteration O(n r) instead of O(n d)
    basis = None
    if zt.shape[0] < zt.shape[1]:
        _, s, vh = torch.linalg.svd(zt, full_matrices=False)
        basis = vh[s > s[0] * 1e-12].T  # (d, r)
        zt_fit, zv_fit = zt @ basis, zv @ basis
    else:
        zt_fit, zv_fit = zt, zv
    best: tuple[float, float, float, Any, Any] | None = None
    grid: dict[str, float] = {}
    for l2 in sorted(l2_grid, reverse=True):
        w, b = _fit(zt_fit, yt, n_classes, l2, max_iter)
        logits = zv_fit @ w.T + b
        acc = float((logits.argmax(1) == yv).double().mean())
        loss = float(torch.nn.functional.cross_entropy(logits, yv))
        grid[f"{l2:g}"] = round(acc, 6)
        if best is None or acc > best[0] + 1e-12 or (abs(acc - best[0]) <= 1e-12 and loss < best[1]):
            best = (acc, loss, l2, w, b)
    assert best is not None
    acc, loss, l2, w, b = best
    train_acc = float(((zt_fit @ w.T + b).argmax(1) == yt).double().mean())  # the standardised rows' logits: the raw rows' under the folded head
    if basis is not None:
        w = w @ basis.T
    w_raw = w / sd  # fold the standardisation into the head: (x - mu)/sd @ w.T + b
    b_raw = b - (mu / sd) @ w.T
    val_logits = xv @ w_raw.T + b_raw
    return Stage1Result(
        weight=w_raw.float().numpy(),
        bias=b_raw.float().numpy(),
        l2=l2,
        train_acc=train_acc,
        val_acc=float((val_logits.argmax(1) == yv).double().mean()),
        val_loss=float(torch.nn.functional.cross_entropy(val_logits, yv)),
        val_pred=val_logits.argmax(1).numpy(),
        grid=grid,
    )


def probe(fs: Any, labels: np.ndarray, train: np.ndarray, val: np.ndarray, n_classes: int, *, group: str | None = None) -> Stage1Result:
    """Stage 1 on a feature set: the head on the final features (or, with ``group``, lp-concat's
    ``[group, final]``), its L2 strength and accuracy from the ``train`` / ``val`` split."""
    if group is not None:
        return fit_concat_head(fs.groups[group], fs.final, labels, train, val, n_classes, group=group)
    return fit_head(fs.final[train], labels[train], fs.final[val], labels[val], n_classes)


def refit(r: Stage1Result, fs: Any, labels: np.ndarray, train: np.ndarray, val: np.ndarray, n_classes: int) -> Stage1Result:
    """:func:`probe`'s result with its head fit once more on every item (``train`` and ``val``) at the
    L2 strength the split chose, as scikit-learn's ``LogisticRegressionCV(refit=True)`` does.

    ``weight``/``bias`` (and lp-concat's block scales) are the new head's; the accuracies stay the
    split fit's, the estimate that chose it. Only for a probe that is the saved model: a head that
    stage 2 starts from must not have seen the held-out items that judge its epochs.
    """
    every = np.sort(np.concatenate([train, val]))
    if r.concat is not None:
        full = fit_concat_head(fs.groups[r.concat["group"]], fs.final, labels, every, every, n_classes, group=r.concat["group"], l2_grid=(r.l2,))
    else:
        full = fit_head(fs.final[every], labels[every], fs.final[every], labels[every], n_classes, l2_grid=(r.l2,))
    info = {"items": int(len(every)), "l2": r.l2, "train_acc": round(full.train_acc, 6)}
    return replace(r, weight=full.weight, bias=full.bias, concat=full.concat, refit=info)
