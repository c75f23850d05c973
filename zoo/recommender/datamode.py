"""Data mode: measure the dataset and each candidate backbone's signals, then decide.

One forward pass per candidate over a stratified sample (features cached on disk, see
:mod:`zoo.recommender.features`), then the signals of :mod:`zoo.recommender.signals`. Backbone:
mean rank of the static prior, LogME and k-NN (near-ties to the cheaper model). Similarity: from
the probe profile's top-vs-best gap, the linear-probe accuracy and the source head's maximum
softmax (research note 6.3). Depth: unfreeze from the best-probed group upward (k = J - j* + 1).
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from zoo.errors import InvalidInputError
from zoo.recommender import signals as S
from zoo.recommender.data import Dataset, load_dataset
from zoo.recommender.features import FeatureSet, features_for
from zoo.recommender.plan import Plan, Reason
from zoo.recommender.rules import (
    DEFAULT_BUDGET_S,
    Request,
    _fwd_flops,
    _throughput,
    recommend_metadata,
    regime,
)

DEFAULT_CANDIDATES = {
    "image": ("timm:efficientnet_lite0.pypi_in1k", "timm:efficientnet_lite1.pypi_in1k", "timm:efficientnet_lite2.pypi_in1k"),
    "text": ("hf:sentence-transformers/all-MiniLM-L6-v2",),
}
SPECIALISED = ("medical", "satellite", "documents", "synthetic")
MSP_OOD = 0.3  # mean max-softmax below this: out of the pre-training distribution (Hendrycks & Gimpel 2017)
MSP_IN = 0.5
FLIP_DROP = 0.02  # k-NN accuracy lost when images are mirrored: orientation carries the label
SRC_LOGME = "You et al. 2021, LogME"
SRC_KNN = "Sorkhei et al. 2025, k-NN as a transferability estimator"
SRC_PROBE = "CS231n notes (probe earlier layers when different); Evci et al. 2022, Head2Toe"
SRC_MSP = "Hendrycks & Gimpel 2017 (max softmax); ETran, Gholami et al. 2023 (energy)"
SRC_RANK = "research note 2.4: rank-mean of a static prior and feature scores"
SRC_SIZE_PRIOR = "Singh, Hess, Vanschoren 2025 (a size-ordered static ranker)"


def _resolution(ds: Dataset, device: str) -> int | None:
    if ds.modality != "image":
        return None
    side = ds.image_side or 224
    if side * side < 96 * 96:
        return 128  # BiT: small images at 128 px
    return 160 if device == "cpu" else 224


def _orientation_drop(backbone: Any, ds: Dataset, final: np.ndarray, resolution: int | None, n_max: int = 200) -> float:
    """k-NN accuracy of horizontally flipped images against the originals, minus the LOO accuracy."""
    from PIL import ImageOps

    from zoo.inputs import load_images
    from zoo.recommender.features import extract

    idx = S.stratified_folds(ds.labels, max(1, math.ceil(len(ds.labels) / n_max)))
    pick = np.flatnonzero(idx == 0)[:n_max]
    flipped = [ImageOps.mirror(im) for im in load_images([ds.items[i] for i in pick])]
    fs = extract(backbone, flipped, ds.labels[pick], resolution=resolution)
    q = fs.final / np.maximum(np.linalg.norm(fs.final, axis=1, keepdims=True), 1e-12)
    z = final / np.maximum(np.linalg.norm(final, axis=1, keepdims=True), 1e-12)
    sim = q @ z.T
    sim[np.arange(len(pick)), pick] = -np.inf  # not its own original
    k = min(10, len(final) - 1)
    nn = np.argpartition(-sim, k - 1, axis=1)[:, :k]
    votes = np.zeros((len(pick), int(ds.labels.max()) + 1))
    np.add.at(votes, (np.repeat(np.arange(len(pick)), k), ds.labels[nn].ravel()), 1.0)
    flip_acc = float((votes.argmax(1) == ds.labels[pick]).mean())
    base = S.knn_loo_accuracy(final, ds.labels)
    return base - flip_acc


def _lm_perplexity(backbone: Any, texts: Sequence[str], n_max: int = 64) -> float | None:
    """Perplexity of the pre-training LM head: causal LM loss, or masked-LM loss with 15% of tokens masked once."""
    head = getattr(backbone, "source_head", None)
    tok = getattr(backbone, "tokenizer", None)
    if head is None or tok is None:
        return None
    import torch

    from zoo.frameworks.torch import move

    batch = move(backbone.preprocess(list(texts[:n_max])), backbone.device)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    labels = ids.clone()
    labels[mask == 0] = -100
    inputs = dict(batch)
    if not getattr(backbone, "causal", False):
        if tok.mask_token_id is None:
            return None
        g = torch.Generator().manual_seed(0)
        chosen = (torch.rand(ids.shape, generator=g) < 0.15) & (mask == 1)
        chosen[:, 0] = False
        labels[~chosen] = -100
        inputs["input_ids"] = ids.masked_fill(chosen, tok.mask_token_id)
    head.eval()
    with torch.inference_mode():
        out = head(**inputs, labels=labels)
    return float(math.exp(min(float(out.loss), 50.0)))


def _candidate_signals(fs: FeatureSet, n_classes: int) -> dict[str, Any]:
    y = fs.labels
    prof = S.probe_profile(fs.groups, y)
    out: dict[str, Any] = {
        "logme": round(S.logme(fs.final, y), 6),
        "knn_acc": round(S.knn_loo_accuracy(fs.final, y, k=10), 4),
        "lp_acc": prof.accuracy[-1],
        "probe_profile": dict(zip(prof.groups, prof.accuracy)),
        "best_group": prof.best,
        "delta_top": prof.delta_top,
        "k_from_profile": prof.unfreeze_from_best(),
        "chance": round(1.0 / n_classes, 4),
        "feature_seconds": fs.meta.get("seconds"),
        "features_cached": fs.cached,
        "features": str(fs.path) if fs.path else None,
    }
    if fs.logits is not None:
        out.update({k: round(v, 4) for k, v in S.head_scores(fs.logits).items()})
    return out


def _similarity(sig: dict[str, Any], domain: str | None) -> tuple[str, float, list[str]]:
    """Level, a score in [0, 1] for the plot, and the evidence, from the chosen backbone's signals."""
    chance = sig["chance"]
    lp_norm = max(0.0, (sig["lp_acc"] - chance) / max(1e-9, 1 - chance))
    delta = sig["delta_top"]
    msp = sig.get("msp")
    why = [f"probe top-vs-best gap {delta:+.3f}", f"probe accuracy {sig['lp_acc']:.3f}"]
    if msp is not None:
        why.append(f"source-head max-softmax {msp:.3f}")
    if delta < -0.01 or (msp is not None and msp < MSP_OOD) or domain in SPECIALISED:
        level = "low"
    elif delta >= 0 and (lp_norm >= 0.7 or (msp is not None and msp >= MSP_IN)) and domain in (None, "natural", "fine-grained"):
        level = "high"
    else:
        level = "medium"
    parts = [lp_norm, 1.0 if delta >= 0 else max(0.0, 1.0 + 10 * delta)] + ([min(1.0, msp / MSP_IN * 0.5 + (0.5 if msp >= MSP_IN else 0))] if msp is not None else [])
    raw = float(np.mean(parts))
    lo, hi = {"low": (0.0, 0.33), "medium": (0.34, 0.66), "high": (0.67, 1.0)}[level]
    return level, round(min(hi, max(lo, raw)), 3), why


def recommend_data(
    path: Any,
    *,
    candidates: Sequence[str] | None = None,
    similarity: str | None = None,
    domain: str | None = None,
    shift: str | None = None,
    device: str = "cpu",
    time_budget_s: float | None = None,
    max_params: float | None = None,
    priority: str = "balanced",
    max_samples: int = 2000,
    resolution: int | None = None,
    plot: Any = None,
) -> Plan:
    """Measure ``path`` and the candidates, then build the plan (see :func:`zoo.recommend`)."""
    import zoo

    ds = load_dataset(path, max_samples=max_samples)
    ids = list(candidates) if candidates else list(DEFAULT_CANDIDATES[ds.modality])
    cards = [zoo.info(i) for i in ids]
    wrong = [c.id for c in cards if c.modality != ds.modality]
    if wrong:
        raise InvalidInputError(f"{', '.join(wrong)} cannot read {ds.modality} data; pass {ds.modality} backbones with --candidates.")
    reasons: list[Reason] = []
    fits = [c for c in cards if max_params is None or (c.params is not None and c.params <= max_params)]
    if not fits:
        small = min(cards, key=lambda c: c.params or math.inf)
        raise InvalidInputError(f"no candidate fits --max-params {max_params:.3g}: the smallest, {small.id}, has {small.params or 0:.3g} parameters; raise --max-params to at least {small.params or 0:.3g} or pass smaller --candidates.")
    res = resolution or _resolution(ds, device)
    budget = time_budget_s or DEFAULT_BUDGET_S[device]
    est = {c.id: _fwd_flops(c, res) * len(ds.items) / _throughput(device) for c in fits}
    if min(est.values()) > budget:
        need = min(est.values())
        raise InvalidInputError(f"no candidate fits the {budget:.0f}s time budget: measuring the cheapest on {len(ds.items)} items takes about {need:.0f}s; raise --time-budget to at least {math.ceil(need / 60)}m.")
    fits = [c for c in fits if est[c.id] <= budget]
    if len(fits) < len(cards):
        reasons.append(Reason(text=f"left out by --max-params or the time budget: {', '.join(c.id for c in cards if c not in fits)}", source="zoo cost model"))
    if ds.skipped:
        reasons.append(Reason(text=f"skipped {ds.skipped} unreadable file(s), e.g. {ds.skipped_examples[0]}", source="zoo data loader"))

    per: dict[str, dict[str, Any]] = {}
    loaded: dict[str, Any] = {}
    finals: dict[str, np.ndarray] = {}
    flip_drop = None
    timings: dict[str, float] = {}
    for card in fits:
        t0 = time.perf_counter()
        bb = zoo.load(card.id)
        t1 = time.perf_counter()
        fs = features_for(bb, ds, res)
        t2 = time.perf_counter()
        sig = _candidate_signals(fs, len(ds.classes))
        t3 = time.perf_counter()
        timings[card.id] = {"load": round(t1 - t0, 2), "features": round(t2 - t1, 2), "signals": round(t3 - t2, 2)}
        flops = fs.meta.get("flops_per_item")
        sig["gflops_at_resolution"] = round(flops / 1e9, 4) if flops else None
        sig["throughput_flops"] = flops / fs.meta["seconds_per_item"] if flops and fs.meta.get("seconds_per_item") else None
        sig["prior_top1"] = card.top1
        sig["params"] = card.params
        sig["groups"] = [g.name for g in bb.layer_groups]
        if ds.modality == "text":
            sig["lm_perplexity"] = _lm_perplexity(bb, ds.items)
        per[card.id] = sig
        loaded[card.id] = bb if ds.modality == "image" else None
        finals[card.id] = fs.final
        del bb

    # ---- backbone: mean rank of prior, LogME, k-NN; near-ties to the cheaper ------------------
    names = [c.id for c in fits]
    prior_vals: list[float | None] = [c.top1 for c in fits]
    prior_name = "ImageNet top-1"
    if all(v is None for v in prior_vals):
        prior_vals = [float(c.params) if c.params else None for c in fits]
        prior_name = "model size (no top-1 in the catalog)"
    logmes = [per[n]["logme"] for n in names]
    knns = [per[n]["knn_acc"] for n in names]
    ranks = S.mean_ranks([prior_vals, logmes, knns])
    cost = {n: per[n]["gflops_at_resolution"] or _fwd_flops(c, res) / 1e9 for n, c in zip(names, fits)}
    order = sorted(range(len(names)), key=lambda i: (ranks[i], cost[names[i]]))
    if len(order) > 1:
        a, b = order[0], order[1]
        if ranks[b] - ranks[a] <= 1.0 and abs(knns[a] - knns[b]) < 0.01 and cost[names[b]] < cost[names[a]]:
            order[0], order[1] = b, a
            reasons.append(Reason(text=f"{names[b]} and {names[a]} are within one rank and 1 k-NN point: near-tie goes to the cheaper {names[b]}", source="zoo rule (DESIGN.md)"))
    chosen = names[order[0]]
    for i, n in enumerate(names):
        per[n]["mean_rank"] = round(ranks[i], 3)
    sig = per[chosen]
    reasons.append(Reason(text=f"backbone {chosen}: best mean rank {ranks[order[0]]:.2f} over {prior_name}, LogME ({sig['logme']:.3f}) and k-NN accuracy ({sig['knn_acc']:.3f})", source=f"{SRC_RANK}; {SRC_LOGME}; {SRC_KNN}"))
    if prior_name.startswith("model size"):
        reasons.append(Reason(text="the catalog has no top-1 for these candidates: the static prior is model size", source=SRC_SIZE_PRIOR))

    # ---- similarity, depth, orientation from the chosen backbone's signals --------------------
    level, score, why = _similarity(sig, domain)
    if similarity is not None:
        reasons.append(Reason(text=f"similarity {similarity} as given (measured: {level}, {'; '.join(why)})", source="user"))
        level_used = similarity
    else:
        reasons.append(Reason(text=f"measured similarity {level} ({score:.2f}): {'; '.join(why)}", source=f"{SRC_PROBE}; {SRC_MSP}"))
        level_used = level
    k = int(sig["k_from_profile"])
    depth = (k, Reason(text=f"probe profile peaks at {sig['best_group']}: unfreeze from it upward, k = {k} group(s)", source=f"{SRC_PROBE}; Kumar et al. 2022, LP-FT"))
    orientation = None
    if ds.modality == "image":
        t0 = time.perf_counter()
        flip_drop = _orientation_drop(loaded[chosen], ds, finals[chosen], res)
        orientation = flip_drop > FLIP_DROP
        timings["flip_test"] = round(time.perf_counter() - t0, 2)
    loaded.clear()
    gc.collect()
    card = next(c for c in fits if c.id == chosen)
    flops = sig.get("gflops_at_resolution")
    if flops and res and card.input_size:
        card = card.model_copy(update={"gflops": flops * (card.input_size / res) ** 2})
    ranked_cards = [card] + [c for c in (fits[i] for i in order[1:])]
    req = Request(
        samples=ds.n, classes=len(ds.classes), modality=ds.modality, similarity=level_used, domain=domain, shift=shift,
        device=device, time_budget_s=budget, max_params=max_params, smallest_class=ds.smallest_class,
        image_size=ds.image_side, priority=priority, orientation_sensitive=orientation, throughput=sig.get("throughput_flops"),
    )
    plan = recommend_metadata(req, [], ranked=ranked_cards, depth=depth, reasons=reasons)
    signals = dict(plan.signals)
    signals.update(
        mode="data",
        data=ds.summary(),
        similarity_measured=level,
        similarity_score=score,
        flip_knn_drop=None if flip_drop is None else round(flip_drop, 4),
        resolution_measured=res,
        prior=prior_name,
        timings_seconds=timings,
        candidates=per,
        chosen=sig,
    )
    signals["regime"] = regime(ds.n, min(ds.n / len(ds.classes), ds.smallest_class))
    plan = plan.model_copy(update={"signals": signals, "features": sig.get("features")})
    if plot:
        from zoo.recommender.plot import plot_plan

        plot_plan(plan, plot)
    return plan
