"""The run folder's record: ``metrics.jsonl``, learning curves and confusion matrix (PNG), ``report.md``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from zoo._io import atomic_write_text


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` atomically (temporary file in the same folder, then rename)."""
    return atomic_write_text(path, text)


def write_metrics(path: Path, records: Sequence[dict[str, Any]]) -> Path:
    """Rewrite ``metrics.jsonl`` (one JSON object per line) from the full history, atomically."""
    return write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts ``m[true, pred]``."""
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return m


def plot_curves(path: Path, stage1: dict[str, Any], history: Sequence[dict[str, Any]]) -> Path:
    """Loss and accuracy per epoch (train and held-out), stage 1 as epoch 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ep = [0] + [h["epoch"] for h in history]
    ax1.plot(ep, [stage1["val_loss"]] + [h["val_loss"] for h in history], "o-", label="held-out")
    ax2.plot(ep, [stage1["val_acc"]] + [h["val_acc"] for h in history], "o-", label="held-out")
    if history:
        ax1.plot(ep[1:], [h["train_loss"] for h in history], "s--", label="train")
        ax2.plot(ep[1:], [h["train_acc"] for h in history], "s--", label="train")
    ax2.axhline(stage1["val_acc"], color="grey", lw=0.8, ls=":", label="stage 1 (linear probe)")
    for ax, name in ((ax1, "loss"), (ax2, "accuracy")):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch (0 = stage 1)")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("zoo run: learning curves")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_confusion(path: Path, matrix: np.ndarray, classes: Sequence[str]) -> Path:
    """The held-out confusion matrix of the best model, counts in the cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(classes)
    side = max(4.0, 0.45 * n + 2)
    fig, ax = plt.subplots(figsize=(side, side))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n), [str(c) for c in classes], rotation=90 if n > 10 else 0)
    ax.set_yticks(range(n), [str(c) for c in classes])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 30:
        hi = matrix.max() or 1
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8, color="white" if matrix[i, j] > hi / 2 else "black")
    ax.set_title("held-out confusion matrix (best model)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def refit_note(stage1: dict[str, Any]) -> list[str]:
    """The report's note on a probe refit on every item (:func:`zoo.runner.stage1.probe`), if it was."""
    r = stage1.get("refit")
    if not r:
        return []
    return [f"the saved head was refit on all {r['items']} items (train and held-out) with the L2 strength the held-out split chose "
            f"({r['l2']:g}), as scikit-learn's LogisticRegressionCV refits; the held-out accuracy above is that of the head fit on the "
            "train split, the estimate that chose it (`zoo run --no-refit` saves that head instead)."]


def write_report(path: Path, summary: dict[str, Any]) -> Path:
    """A short Markdown report of the run's final metrics."""
    from zoo.recommender.data import skipped_what

    s = summary
    lines = [
        f"# zoo run: {s['backbone']}",
        "",
        f"- data: `{s['data']}` ({s['samples']} items, {s['classes']} classes; {s['train']} train / {s['val']} held-out; "
        f"{s['skipped_unreadable']} {skipped_what(s['data'])} skipped)",
        f"- plan: strategy **{s['strategy']}**, unfreeze {', '.join(s['unfreeze']) or 'nothing'} (groups: {', '.join(s['groups']) or '-'}), "
        f"resolution {s['resolution']}, seed {s['seed']}",
        f"- stage 1 features: {'reused from the recommender cache' if s['features_cached'] else 'extracted'}"
        + (f" ({s['features_reused']} of {s['samples']} rows reused from the recommender's sub-sample)" if not s["features_cached"] and s.get("features_reused") else "")
        + (f" (`{s['features']}`)" if s.get("features") else " (not kept: the feature cache could not be written)")
        if not s.get("from_scratch") else "- **from-scratch baseline**: random initial weights, no stage-1 probe",
        "",
        "| stage | held-out accuracy | held-out loss |",
        "|---|---|---|",
        f"| stage 1 (linear probe{' on ' + s['stage1']['concat']['group'] + ' + final features' if s['stage1'].get('concat') else ''}, L2 {s['stage1']['l2']:g}) | {s['stage1']['val_acc']:.4f} | {s['stage1']['val_loss']:.4f} |"
        if not s.get("from_scratch") else f"| epoch 0 (untrained) | {s['stage1']['val_acc']:.4f} | {s['stage1']['val_loss']:.4f} |",
    ]
    for h in s["history"]:
        lines.append(f"| stage 2 epoch {h['epoch']} | {h['val_acc']:.4f} | {h['val_loss']:.4f} |")
    lines += [
        "",
        f"**Final (best model, epoch {s['best_epoch']}): held-out accuracy {s['final_val_acc']:.4f}.**"
        + (" Stopped early." if s["stopped_early"] else ""),
        "",
        *[f"Note: {n}" for n in s.get("notes", [])],
        *([""] if s.get("notes") else []),
        "Files: `plan.yaml`, `data.json` (what `--resume` checks), `model/` (weights + preprocessor config), `metrics.jsonl`, `curves.png`, `confusion.png`.",
        "",
    ]
    return write_text(path, "\n".join(lines))
