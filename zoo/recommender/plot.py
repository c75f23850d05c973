"""``zoo recommend --plot``: the size x similarity plane with its regimes and this dataset's point;
in data mode also the probe profile per layer group and the candidates' scores. Matplotlib, Agg."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

SIZE_CUTS = (1_000, 20_000, 500_000)
LEVEL_Y = {"low": 1 / 6, "medium": 0.5, "high": 5 / 6}
#: each cell's strategy as ``zoo.recommender.rules.recommend_metadata`` plans it (images; a text plan's
#: tiny rows with similar data are a plain linear probe, see :func:`cell`)
CELLS = {
    ("tiny", "high"): "LP on\nconcat stages", ("tiny", "medium"): "LP on\nconcat stages", ("tiny", "low"): "LP on\nconcat stages",
    ("small", "high"): "LP-FT all\ndiscr. LR", ("small", "medium"): "LP-FT all\ndiscr. LR", ("small", "low"): "LP-FT all\ndiscr. LR",
    ("medium", "high"): "LP-FT all\ndiscr. LR", ("medium", "medium"): "LP-FT all\ndiscr. LR", ("medium", "low"): "full FT\nflat decay",
    ("large", "high"): "full FT\nlow LR", ("large", "medium"): "full FT", ("large", "low"): "full FT\nflat LR",
}


def cell(reg: str, level: str, modality: str = "image") -> str:
    """The label of the plane's cell for size regime ``reg`` and similarity ``level``."""
    if modality == "text" and reg == "tiny" and level != "low":
        return "linear probe"
    return CELLS[(reg, level)]


def point_y(sig: dict[str, Any]) -> float:
    """The data point's height: the measured score, inside the band of the level the plan used (a level
    given with --similarity or --shift input over the measured one: that band's middle)."""
    y = sig.get("similarity_score")
    if y is None or sig.get("similarity_measured", sig["similarity"]) != sig["similarity"]:
        return LEVEL_Y[sig["similarity"]]
    return float(y)


def _plane(ax: Any, plan: Any) -> None:
    xs = [1.0, *[math.log10(c) for c in SIZE_CUTS], 7.0]
    regimes = ("tiny", "small", "medium", "large")
    colors = {"linear": "#d7ecff", "LP-FT": "#e2f5dc", "full": "#fde6cf", "LP on": "#efe0fa"}
    for i, reg in enumerate(regimes):
        for lvl, y in LEVEL_Y.items():
            text = cell(reg, lvl, plan.modality)
            color = next((v for k, v in colors.items() if text.startswith(k)), "#eeeeee")
            ax.add_patch(__import__("matplotlib").patches.Rectangle((xs[i], y - 1 / 6), xs[i + 1] - xs[i], 1 / 3, color=color, ec="white"))
            ax.text((xs[i] + xs[i + 1]) / 2, y, text, ha="center", va="center", fontsize=7)
    sig = plan.signals
    n = sig["samples"]
    y = point_y(sig)
    ax.plot([math.log10(max(n, 10))], [y], marker="*", ms=18, color="crimson", mec="black", zorder=5)
    label = f"this data\nN={n}, {plan.strategy}"
    column = next((r for r, cut in zip(("tiny", "small", "medium"), SIZE_CUTS) if n < cut), "large")
    if sig.get("regime") and sig["regime"] != column:  # the smallest class set the regime, not N: the column's cell is not the plan
        label += f"\n{sig['regime']} data: smallest class {sig.get('smallest_class')}"
    ax.annotate(label, (math.log10(max(n, 10)), y), textcoords="offset points", xytext=(10, -22), fontsize=8, color="crimson")
    ax.set_xlim(1, 7)
    ax.set_ylim(0, 1)
    ax.set_xticks([1, 2, 3, math.log10(20_000), 5, math.log10(500_000), 7])
    ax.set_xticklabels(["10", "100", "1k", "20k", "100k", "500k", "10M"])
    ax.set_yticks([1 / 6, 0.5, 5 / 6])
    ax.set_yticklabels(["low", "medium", "high"])
    ax.set_xlabel("labelled examples (log)")
    ax.set_ylabel("similarity to pre-training data")
    ax.set_title("size x similarity: regimes")


def _profile(ax: Any, plan: Any) -> None:
    for name, sig in plan.signals["candidates"].items():
        prof = sig["probe_profile"]
        if not prof:  # measured for the chosen backbone only: no legend entry without a curve
            continue
        ax.plot(range(len(prof)), list(prof.values()), marker="o", label=name.split(":")[-1])
        if name == plan.backbone:
            ax.set_xticks(range(len(prof)))
            ax.set_xticklabels(list(prof), rotation=45, ha="right", fontsize=7)
    ax.axhline(plan.signals["chosen"]["chance"], color="gray", ls=":", lw=1, label="chance")
    ax.set_ylabel("linear-probe accuracy (5-fold)")
    ax.set_title("probe profile per layer group")
    ax.legend(fontsize=7)


def _scores(ax: Any, plan: Any) -> None:
    import numpy as np

    cands = plan.signals["candidates"]
    names = list(cands)
    metrics = [("logme", "LogME"), ("knn_acc", "k-NN acc"), ("lp_acc", "probe acc")]
    width = 0.8 / len(metrics)
    for j, (key, label) in enumerate(metrics):
        vals = np.array([cands[n][key] for n in names], dtype=float)
        span = vals.max() - vals.min()
        norm = (vals - vals.min()) / span if span > 0 else np.ones_like(vals)
        bars = ax.bar(np.arange(len(names)) + j * width, 0.1 + 0.9 * norm, width, label=label)
        for b, v in zip(bars, vals):
            ax.text(b.get_x() + b.get_width() / 2, b.get_height(), f"{v:.3g}", ha="center", va="bottom", fontsize=6)
    ax.set_xticks(np.arange(len(names)) + width)
    ax.set_xticklabels([n.split(":")[-1] + (" *" if n == plan.backbone else "") for n in names], fontsize=7)
    ax.set_yticks([])
    ax.set_ylabel("relative (min..max across candidates)")
    ax.set_title("candidates' scores (* chosen)")
    ax.legend(fontsize=7)


def plot_plan(plan: Any, path: str | Path) -> Path:
    """Draw the plan's picture into ``path`` (PNG, SVG or PDF by suffix) and return the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = plan.signals.get("mode") == "data"
    fig, axes = plt.subplots(1, 3 if data else 1, figsize=(17 if data else 6.5, 5), squeeze=False)
    _plane(axes[0][0], plan)
    if data:
        _profile(axes[0][1], plan)
        _scores(axes[0][2], plan)
    fig.suptitle(f"zoo recommend: {plan.backbone}, {plan.strategy}" + (f", unfreeze {', '.join(plan.unfreeze)}" if plan.unfreeze else ""), fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
