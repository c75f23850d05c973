"""Data mode: measure the dataset and each candidate backbone's signals, then decide.

One forward pass per candidate over a stratified sample (features cached on disk, see
:mod:`zoo.recommender.features`), then the signals of :mod:`zoo.recommender.signals`. With several
candidates the pass covers a fixed-seed stratified sub-sample of about 300 items (at least 5 per
class): model selection needs a ranking, not the whole sample. Backbone: mean rank of the static
prior, LogME and k-NN (near-ties to the cheaper model). Then, for the chosen backbone only, on the
same items: the per-group probe profile and the flip test. Similarity: from the probe profile's
top-vs-best gap, the linear-probe accuracy and the source head's maximum softmax (research note
6.3). The profile's depth (``k_from_profile``: unfreeze from the best-probed group upward) is
recorded in the signals; the plan's depth comes from the table (every group on small data: LP-FT
of fewer groups lost to it in the strategy grid). ``zoo run`` reuses the
chosen backbone's cached rows and extracts the rest of the sample for its stage 1.
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
from zoo.recommender.data import Dataset, load_dataset, stratified_sample
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
RANK_SAMPLES = 300  # candidates are ranked on a stratified sub-sample of about this many items
RANK_MIN_PER_CLASS = 5  # ... with at least this many per class (research note 6.1: at least 5 per class)
PROBE_FOLDS = 5
SRC_LOGME = "You et al. 2021, LogME"
SRC_KNN = "Sorkhei et al. 2025, k-NN as a transferability estimator"
SRC_PROBE = "CS231n notes (probe earlier layers when different); Evci et al. 2022, Head2Toe"
SRC_MSP = "Hendrycks & Gimpel 2017 (max softmax); ETran, Gholami et al. 2023 (energy)"
SRC_RANK = "zoo rule: rank-mean of a static prior and feature scores"
SRC_SIZE_PRIOR = "Singh, Hess, Vanschoren 2025 (a size-ordered static ranker)"


def _resolution(ds: Dataset, device: str) -> int | None:
    if ds.modality != "image":
        return None
    side = ds.image_side or 224
    if side * side < 96 * 96:
        return 128  # BiT: small images at 128 px
    return 160 if device == "cpu" else 224


def _orientation_drop(backbone: Any, ds: Dataset, fs: FeatureSet, rows: np.ndarray, resolution: int | None, n_max: int = 150, step: int = 50) -> tuple[float, int]:
    """k-NN accuracy lost when images are mirrored, and how many images the test used.

    ``fs`` holds the features of the sample's items at ``rows``. Images drawn stratified from them
    (round-robin over the classes) are mirrored, ``step`` at a time, and classified by k-NN against
    all of ``fs`` (their own original excluded); the same images unmirrored, classified the same
    way, are the baseline (a paired difference). A sequential test: it stops once the mean drop is
    more than two standard errors (at least 1/m each) from ``FLIP_DROP``, else at ``n_max`` images.
    """
    from PIL import ImageOps

    from zoo.inputs import load_images_for
    from zoo.recommender.features import extract

    y = fs.labels
    folds = S.stratified_folds(y, max(1, math.ceil(len(y) / n_max)))
    local = np.flatnonzero(folds == 0)
    turn = np.empty(len(local), dtype=np.int64)  # position within its class: round-robin order
    for c in np.unique(y[local]):
        at = np.flatnonzero(y[local] == c)
        turn[at] = np.arange(len(at))
    local = local[np.lexsort((y[local], turn))][:n_max]
    base = S.knn_correct(fs.final[local], fs.final, y, y[local], exclude=local).astype(float)
    drops: list[np.ndarray] = []
    for start in range(0, len(local), step):
        chunk = local[start : start + step]
        flipped = [ImageOps.mirror(im) for im in load_images_for(backbone, [ds.items[int(rows[i])] for i in chunk])]
        mirrored = extract(backbone, flipped, y[chunk], resolution=resolution, count_flops=False)
        drops.append(base[start : start + len(chunk)] - S.knn_correct(mirrored.final, fs.final, y, y[chunk], exclude=chunk))
        d = np.concatenate(drops)
        m = len(d)
        se = max(float(d.std(ddof=1)) / math.sqrt(m) if m > 1 else 1.0, 1.0 / m)
        if abs(float(d.mean()) - FLIP_DROP) > 2 * se:
            break
    return float(d.mean()), m


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


def _rank_signals(fs: FeatureSet, n_classes: int) -> dict[str, Any]:
    """What ranks a candidate (LogME, k-NN), its linear-probe accuracy and its source head's scores."""
    y = fs.labels
    out: dict[str, Any] = {
        "n": int(len(y)),
        "logme": round(S.logme(fs.final, y), 6),
        "knn_acc": round(S.knn_loo_accuracy(fs.final, y, k=10), 4),
        "lp_acc": round(S.probe_accuracy(fs.final, y, folds=PROBE_FOLDS), 4),
        "probe_folds": max(2, min(PROBE_FOLDS, int(np.bincount(y).min()))),
        "probe_profile": {},  # per group: the chosen backbone's only
        "chance": round(1.0 / n_classes, 4),
        "feature_seconds": fs.meta.get("seconds"),
        "features_cached": fs.cached,
        "features": str(fs.path) if fs.path else None,
    }
    if fs.logits is not None:
        out.update({k: round(v, 4) for k, v in S.head_scores(fs.logits).items()})
    return out


def _profile_signals(fs: FeatureSet) -> dict[str, Any]:
    """The per-group probe profile: which depth carries the task (the top group's entry is ``lp_acc``)."""
    groups = dict(fs.groups)
    prof = S.probe_profile(groups, fs.labels, folds=PROBE_FOLDS)
    return {
        "lp_acc": prof.accuracy[-1],
        "probe_profile": dict(zip(prof.groups, prof.accuracy)),
        "best_group": prof.best,
        "delta_top": prof.delta_top,
        "k_from_profile": prof.unfreeze_from_best(),
    }


def _available(ids: Sequence[str]) -> list[str]:
    """The default candidates whose weights are here (an installed weights package, a carried bundle):
    a plugin that can tell they are not (zoo_resolve_weights raises) drops them. None here: all of them,
    so that loading the first says what to install."""
    from zoo._api import weights_resolve

    return [i for i in ids if weights_resolve(i)] or list(ids)


def rank_index(ds: Dataset, n_candidates: int, rank_samples: int, min_per_class: int = RANK_MIN_PER_CLASS) -> np.ndarray | None:
    """Sample positions the candidates are ranked on, or ``None`` to rank on the whole sample.

    A fixed-seed stratified sub-sample of about ``rank_samples`` items (at least ``min_per_class``
    per class) when there is more than one candidate and it saves at least a fifth of the sample.
    """
    if n_candidates < 2 or rank_samples <= 0:
        return None
    idx = stratified_sample(ds.labels, rank_samples, seed=0, min_per_class=min_per_class)
    if len(idx) > 0.8 * len(ds.labels):
        return None
    return idx


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
    rank_samples: int = RANK_SAMPLES,
) -> Plan:
    """Measure ``path`` and the candidates, then build the plan (see :func:`zoo.recommend`).

    With several candidates, they are ranked on a stratified sub-sample of about ``rank_samples``
    items (at least 5 per class; 0: on the whole sample), and the chosen backbone's probe profile
    and flip test use the same items. ``plan.features`` is then the chosen backbone's sub-sample
    file: ``zoo run`` takes those rows from it and extracts only the rest of the sample.
    """
    import zoo

    ds = load_dataset(path, max_samples=max_samples)
    if resolution is not None and ds.modality != "image":
        raise InvalidInputError(f"--resolution is the image side in pixels; {path} holds {ds.modality}: drop it.")
    ids = list(candidates) if candidates else _available(DEFAULT_CANDIDATES[ds.modality])
    cards = list({c.id: c for c in (zoo.info(i) for i in ids)}.values())  # a candidate named twice is measured once
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
        reasons.append(Reason(text=ds.skipped_note, source="zoo data loader"))

    per: dict[str, dict[str, Any]] = {}
    loaded: dict[str, Any] = {}
    ranked_fs: dict[str, FeatureSet] = {}
    flip_drop = None
    timings: dict[str, Any] = {}
    ridx = rank_index(ds, len(fits), rank_samples)
    rows = np.arange(len(ds.items)) if ridx is None else ridx
    for card in fits:
        t0 = time.perf_counter()
        bb = zoo.load(card.id)
        t1 = time.perf_counter()
        fs = features_for(bb, ds, res) if ridx is None else features_for(bb, ds, res, rows=ridx)
        t2 = time.perf_counter()
        sig = _rank_signals(fs, len(ds.classes))
        t3 = time.perf_counter()
        timings[card.id] = {"load": round(t1 - t0, 2), "features": round(t2 - t1, 2), "signals": round(t3 - t2, 2)}
        flops = fs.meta.get("flops_per_item")
        sig["gflops_at_resolution"] = round(flops / 1e9, 4) if flops else None
        sig["throughput_flops"] = flops / fs.meta["seconds_per_item"] if flops and fs.meta.get("seconds_per_item") else None
        sig["prior_top1"] = card.top1
        sig["params"] = card.params
        sig["groups"] = [g.name for g in bb.layer_groups]
        if ds.modality == "text":
            sig["lm_perplexity"] = _lm_perplexity(bb, [ds.items[int(i)] for i in rows])
        per[card.id] = sig
        loaded[card.id] = bb
        ranked_fs[card.id] = fs
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
    order = S.rank_candidates([prior_vals, logmes, knns], [cost[n] for n in names])
    if len(order) > 1:
        a, b = order[0], order[1]
        if ranks[b] - ranks[a] <= 1.0 and abs(knns[a] - knns[b]) < 0.01 and cost[names[b]] < cost[names[a]]:
            order[0], order[1] = b, a
            reasons.append(Reason(text=f"{names[b]} and {names[a]} are within one rank and 1 k-NN point: near-tie goes to the cheaper {names[b]}", source="zoo rule: near-ties go to the cheaper model"))
    chosen = names[order[0]]
    for i, n in enumerate(names):
        per[n]["mean_rank"] = round(ranks[i], 3)
    n_ranked = len(rows)
    on = f"on all {n_ranked} sampled items" if ridx is None else f"on a stratified sub-sample of {n_ranked} of the {len(ds.items)} sampled items (at least {RANK_MIN_PER_CLASS} per class)"
    reasons.append(Reason(text=f"backbone {chosen}: best mean rank {ranks[order[0]]:.2f} over {prior_name}, LogME ({per[chosen]['logme']:.3f}) and k-NN accuracy ({per[chosen]['knn_acc']:.3f}), {on}", source=f"{SRC_RANK}; {SRC_LOGME}; {SRC_KNN}"))
    if prior_name.startswith("model size"):
        reasons.append(Reason(text="the catalog has no top-1 for these candidates: the static prior is model size", source=SRC_SIZE_PRIOR))

    # ---- the chosen backbone only: the per-group probe profile on the same items -------------
    t0 = time.perf_counter()
    sig = per[chosen]
    sig.update(_profile_signals(ranked_fs[chosen]))
    timings["chosen_profile"] = round(time.perf_counter() - t0, 2)
    if ridx is not None:
        reasons.append(Reason(text=f"probe profile and flip test on {chosen} only, on the same {n_ranked} items; zoo run extracts the other {len(ds.items) - n_ranked} for its stage 1 and reuses these", source="zoo cost model (model selection on a sub-sample)"))
    bb = loaded[chosen]
    loaded.clear()

    # ---- similarity and orientation from the chosen backbone's signals --------------------
    level, score, why = _similarity(sig, domain)
    if similarity is not None:
        reasons.append(Reason(text=f"similarity {similarity} as given (measured: {level}, {'; '.join(why)})", source="user"))
        level_used = similarity
    else:
        reasons.append(Reason(text=f"measured similarity {level} ({score:.2f}): {'; '.join(why)}", source=f"{SRC_PROBE}; {SRC_MSP}"))
        level_used = level
    orientation = None
    n_flipped = 0
    if ds.modality == "image":
        t0 = time.perf_counter()
        flip_drop, n_flipped = _orientation_drop(bb, ds, ranked_fs[chosen], rows, res)
        orientation = flip_drop > FLIP_DROP
        timings["flip_test"] = round(time.perf_counter() - t0, 2)
    n_groups = len(bb.layer_groups)
    dev = getattr(bb, "device", None)  # where the throughput was measured (torch backbones say; Keras ones do not)
    measured_on = None if dev is None else ("cpu" if getattr(dev, "type", str(dev)) == "cpu" else "gpu")
    del bb
    throughput = sig.get("throughput_flops")
    if throughput and measured_on not in (None, device):
        reasons.append(Reason(text=f"throughput measured on this machine's {measured_on}, not a {device}: the expected cost uses zoo's {device} estimate", source="zoo cost model"))
        throughput = None
    ranked_fs.clear()
    gc.collect()
    # the loaded handle's group count: a catalog card may not know it (timm's), and the per-group LR decay depends on it
    card = next(c for c in fits if c.id == chosen)
    flops = sig.get("gflops_at_resolution")
    measured = {"layer_groups": n_groups}
    if flops and res and card.input_size:
        measured["gflops"] = flops * (card.input_size / res) ** 2
    elif flops and ds.modality == "text":  # the measured texts' cost, the unit of the measured throughput
        measured["gflops"] = flops
    card = card.model_copy(update=measured)
    ranked_cards = [card] + [c for c in (fits[i] for i in order[1:])]
    req = Request(
        samples=ds.n, classes=len(ds.classes), modality=ds.modality, similarity=level_used, domain=domain, shift=shift,
        device=device, time_budget_s=budget, max_params=max_params, smallest_class=ds.smallest_class,
        image_size=ds.image_side, priority=priority, orientation_sensitive=orientation, throughput=throughput,
        resolution=res, resolution_measured=resolution is None and res is not None,
    )
    plan = recommend_metadata(req, [], ranked=ranked_cards, reasons=reasons)
    signals = dict(plan.signals)
    signals.update(
        mode="data",
        data=ds.summary(),
        similarity_measured=level,
        similarity_score=score,
        flip_knn_drop=None if flip_drop is None else round(flip_drop, 4),
        flip_items=n_flipped,
        n_ranked=n_ranked,
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
