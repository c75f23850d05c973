"""Metadata-mode recommender: size regime x similarity -> strategy, depth, LRs, schedule, cost.

The table and its sources are in shared/research/anchors-recommender.md, sections 6.3-6.4: CS231n's
four quadrants, Yosinski et al. 2014, Kornblith et al. 2019, BiT (Kolesnikov et al. 2020), LP-FT
(Kumar et al. 2022), surgical fine-tuning (Lee et al. 2023), ULMFiT (Howard & Ruder 2018), Li et al.
2020 (hyper-parameters for fine-tuning). Loads no ML framework.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

from zoo.catalog import ModelCard
from zoo.errors import InvalidInputError, UnknownFilterValueError
from zoo.recommender.plan import Augment, Cost, Optimizer, Plan, Reason, Schedule

DOMAINS = ("natural", "fine-grained", "medical", "satellite", "documents", "synthetic")
SIMILARITIES = ("high", "medium", "low")
SHIFTS = ("input", "feature", "label")
DEVICES = ("cpu", "gpu")
PRIORITIES = ("balanced", "accuracy", "cost")
ORIENTATION_SENSITIVE = ("documents", "synthetic")
DOMAIN_SIMILARITY = {
    "natural": "high",
    "fine-grained": "medium",
    "medical": "low",
    "satellite": "low",
    "documents": "low",
    "synthetic": "low",
}
# effective training throughput assumed by the cost model (FLOP/s); the runner reports the truth
CPU_FLOPS_PER_CORE = 2.0e10
GPU_FLOPS = 5.0e13
DEFAULT_BUDGET_S = {"cpu": 30 * 60, "gpu": 2 * 3600}

SRC_CS231N = "CS231n transfer-learning notes (four quadrants)"
SRC_BIT = "Kolesnikov et al. 2020, BiT (size regimes, schedule, resolution)"
SRC_LPFT = "Kumar et al. 2022, LP-FT"
SRC_SURGICAL = "Lee et al. 2023, surgical fine-tuning"
SRC_ULMFIT = "Howard & Ruder 2018, ULMFiT (discriminative LRs, gradual unfreezing)"
SRC_KORNBLITH = "Kornblith et al. 2019, Do better ImageNet models transfer better?"
SRC_LI2020 = "Li et al. 2020, Rethinking the hyperparameters for fine-tuning"
SRC_YOSINSKI = "Yosinski et al. 2014, How transferable are features"
SRC_HEAD2TOE = "Evci et al. 2022, Head2Toe (mid-level features for different domains)"
SRC_KERAS = "Keras transfer-learning guide (BatchNorm in inference mode)"


@dataclass(frozen=True)
class Request:
    """What metadata mode knows about the task."""

    samples: int
    classes: int
    modality: str = "image"
    similarity: str | None = None
    domain: str | None = None
    shift: str | None = None
    device: str = "cpu"
    time_budget_s: float | None = None
    max_params: float | None = None
    smallest_class: int | None = None
    image_size: int | None = None
    priority: str = "balanced"
    orientation_sensitive: bool | None = None  # measured in data mode (flip test); else from the domain
    throughput: float | None = None  # measured forward FLOP/s on this device (data mode)
    resolution: int | None = None  # images: train (and, in data mode, measure) at this side instead of the rule's
    resolution_measured: bool = False  # data mode: ``resolution`` is the side the signals were measured at, not the user's


def similarity_level(value: str | float | None) -> str | None:
    """``high``/``medium``/``low`` or a number in [0, 1] (>= 2/3 high, >= 1/3 medium) -> a level.

    Raises:
        InvalidInputError: a number outside [0, 1].
        UnknownFilterValueError: any other word.
    """
    if value is None:
        return None
    text = str(value).strip().lower()
    if text in SIMILARITIES:
        return text
    try:
        x = float(text)
    except ValueError:
        raise UnknownFilterValueError("similarity", str(value), [*SIMILARITIES, "a number in [0, 1]"]) from None
    if not 0.0 <= x <= 1.0 or x != x:
        raise InvalidInputError(f"similarity {value} is out of range: give high, medium, low or a number between 0 and 1.")
    return "high" if x >= 2 / 3 else "medium" if x >= 1 / 3 else "low"


def parse_duration(text: str | float | None) -> float | None:
    """``30m``, ``2h``, ``90s`` or seconds -> seconds."""
    if text is None or isinstance(text, (int, float)):
        return None if text is None else float(text)
    t = str(text).strip().lower()
    mult = {"s": 1, "m": 60, "h": 3600, "d": 86400}.get(t[-1:], None)
    try:
        return float(t[:-1]) * mult if mult else float(t)
    except ValueError:
        raise UnknownFilterValueError("time budget", str(text), ["a duration like 90s, 30m or 2h"]) from None


MIN_RESOLUTION, MAX_RESOLUTION = 32, 1024  # the deepest CNN groups downsample 32x


def _check(req: Request) -> None:
    if req.samples < 1 or req.classes < 2:
        raise InvalidInputError(f"need at least 1 sample and 2 classes, got samples={req.samples} classes={req.classes}.")
    if req.classes > req.samples:
        raise InvalidInputError(f"{req.classes} classes but only {req.samples} samples: every class needs at least one example.")
    for field, value, valid in (
        ("modality", req.modality, ("image", "text")),
        ("similarity", req.similarity, SIMILARITIES),
        ("domain", req.domain, DOMAINS),
        ("shift", req.shift, SHIFTS),
        ("device", req.device, DEVICES),
        ("priority", req.priority, PRIORITIES),
    ):
        if value is not None and value not in valid:
            raise UnknownFilterValueError(field, value, valid)
    if req.smallest_class is not None and not 1 <= req.smallest_class <= req.samples // req.classes:
        raise InvalidInputError(f"smallest class {req.smallest_class}: with {req.samples} samples in {req.classes} classes it is between 1 and "
                                f"{req.samples // req.classes}; pass the number of examples in the smallest class.")
    if req.image_size is not None and req.image_size < 1:
        raise InvalidInputError(f"image size {req.image_size}: give the typical image side in pixels (a positive number).")
    if req.time_budget_s is not None and not req.time_budget_s > 0:
        raise InvalidInputError(f"time budget {req.time_budget_s:g} s: give a positive duration like 30m or 2h, or drop it.")
    if req.max_params is not None and not req.max_params > 0:
        raise InvalidInputError(f"max params {req.max_params:g}: give a positive count like 25M, or drop it.")
    if req.resolution is not None:
        if req.modality != "image":
            raise InvalidInputError(f"--resolution is the image side in pixels; {req.modality} has none: drop it.")
        if not MIN_RESOLUTION <= req.resolution <= MAX_RESOLUTION:
            raise InvalidInputError(f"resolution {req.resolution} is outside {MIN_RESOLUTION}..{MAX_RESOLUTION} pixels: pass an image side in that range.")


def regime(samples: int, per_class: float) -> str:
    """BiT-style size regime with a small-data cut on examples per class."""
    if samples < 1000 or per_class < 10:
        return "tiny"
    if samples < 20_000:
        return "small"
    if samples < 500_000:
        return "medium"
    return "large"


def _throughput(device: str, measured: float | None = None) -> float:
    if measured:
        return measured
    return GPU_FLOPS if device == "gpu" else CPU_FLOPS_PER_CORE * (os.cpu_count() or 1)


def _fwd_flops(card: ModelCard, resolution: int | None) -> float:
    if card.modality == "text":
        if card.gflops is not None:  # measured in data mode, on the task's own texts
            return card.gflops * 1e9
        tokens = 128
        return 2.0 * (card.params or 110e6) * tokens
    if card.gflops is None:  # no measured FLOPs: an estimate from the parameter count at 224 px (as _card_flops)
        g = 2.0 * (card.params or 25e6) * 224 * 224 / 1e9 / 1000
        return g * (resolution / 224) ** 2 * 1e9 if resolution else g * 1e9
    g = card.gflops
    if resolution and card.input_size:
        g *= (resolution / card.input_size) ** 2
    return g * 1e9


def _candidates(cards: Sequence[ModelCard], req: Request) -> list[ModelCard]:
    out = []
    for c in cards:
        if c.modality != req.modality or c.origin != "registry":
            continue
        if req.max_params is not None and (c.params is None or c.params > req.max_params):
            continue
        if req.modality == "image" and (c.top1 is None or c.params is None):
            continue
        if req.modality == "text" and c.params is None:
            continue
        out.append(c)
    return out


def _card_flops(card: ModelCard) -> float:
    return card.gflops if card.gflops is not None else 2.0 * (card.params or 25e6) * 224 * 224 / 1e12


def _rank(cands: list[ModelCard], req: Request, reasons: list[Reason]) -> list[ModelCard]:
    if req.modality == "image" and req.priority == "cost":
        # compute first: the cheapest forward pass among models within 5 top-1 points of the best
        best = max(c.top1 or 0 for c in cands)
        near = sorted((c for c in cands if (c.top1 or 0) >= best - 5.0), key=lambda c: (_card_flops(c), -(c.top1 or 0)))
        rest = sorted((c for c in cands if c not in near), key=lambda c: (-(c.top1 or 0), _card_flops(c)))
        reasons.append(Reason(text=f"cost priority: the cheapest forward pass within 5 top-1 points of the best ({best:.1f})", source="Tan & Le 2019, EfficientNet; Howard et al. 2019, MobileNetV3 (accuracy per FLOP)"))
        return near + rest
    if req.modality == "image" and req.priority == "accuracy":
        # accuracy first: top-1 counts only at the resolution it was measured at; fine-tuning runs
        # at 224 px (the resolution transfer benchmarks use), so checkpoints measured above it rank behind
        cap = 224
        fits = [c for c in cands if (c.input_size or 224) <= cap]
        ordered = sorted(fits, key=lambda c: (-(c.top1 or 0), c.gflops or 1e9)) + sorted((c for c in cands if c not in fits), key=lambda c: -(c.top1 or 0))
        reasons.append(Reason(text=f"accuracy priority: top-1 among checkpoints evaluated at <= {cap}px, the resolution the plan trains at", source="Touvron et al. 2019, FixRes (train-test resolution discrepancy); Kornblith et al. 2019"))
        cands = ordered
    if req.modality == "image":
        # static prior (ImageNet top-1); within 1 point, the cheaper model first
        ordered = sorted(cands, key=lambda c: (-(c.top1 or 0), c.gflops or 1e9)) if req.priority != "accuracy" else list(cands)
        best = ordered[0]
        pool = [c for c in ordered[1:] if req.priority != "accuracy" or (c.input_size or 224) <= 224]
        ties = [c for c in pool if (best.top1 or 0) - (c.top1 or 0) < 1.0 and (c.gflops or 1e9) < (best.gflops or 1e9)]
        if ties:
            cheap = min(ties, key=lambda c: c.gflops or 1e9)
            ordered.remove(cheap)
            ordered.insert(0, cheap)
            reasons.append(Reason(text=f"{cheap.id} is within 1 top-1 point of {best.id} and cheaper: near-ties go to the cheaper model", source="zoo rule: near-ties go to the cheaper model"))
        return ordered
    # text: sentence-embedding models transfer best as frozen features on little data; bigger encoders with more
    small = req.samples < 20_000
    def key(c: ModelCard) -> tuple:
        sentence = "sentence-similarity" in c.tasks
        encoder = "fill-mask" in c.tasks or sentence
        return (0 if (sentence and small) else 1, 0 if encoder else 1, c.params or 1e12)
    return sorted(cands, key=key)


def recommend_metadata(
    req: Request,
    cards: Sequence[ModelCard],
    *,
    ranked: Sequence[ModelCard] | None = None,
    reasons: list[Reason] | None = None,
) -> Plan:
    """Build a plan from the task's metadata and the curated catalog alone.

    Data mode passes ``ranked`` (candidates already ordered by measured signals, skipping the
    catalog ranking) and its own ``reasons`` to start from.
    """
    _check(req)
    reasons = list(reasons or [])
    per_class = req.samples / req.classes
    smallest = req.smallest_class or int(per_class)
    reg = regime(req.samples, min(per_class, smallest))
    similarity = req.similarity or (DOMAIN_SIMILARITY[req.domain] if req.domain else "medium")
    if req.similarity is None:
        how = f"from domain '{req.domain}'" if req.domain else "no domain or measurement given (use --data to measure)"
        reasons.append(Reason(text=f"similarity taken as {similarity}: {how}", source=SRC_YOSINSKI))
    budget = req.time_budget_s or DEFAULT_BUDGET_S[req.device]

    ranked_given = ranked is not None
    cands = list(ranked) if ranked is not None else _candidates(cards, req)
    if not cands:
        raise InvalidInputError(
            f"no curated {req.modality} backbone fits (max params {req.max_params:.0f}); raise --max-params or check `zoo list --curated --modality {req.modality}`."
            if req.max_params else f"no curated {req.modality} backbone in the catalog; check `zoo list --curated`."
        )
    ranked = cands if ranked is not None else _rank(cands, req, reasons)

    # --- strategy and depth from the table --------------------------------------------------
    if req.shift == "input":
        # Lee et al. tune the first block alone to adapt a model to corrupted inputs of the task it was
        # trained on; here the head (and the top) must learn a new task as well, from inputs unlike the
        # pretraining data: plan as for a different domain, so that fine-tuning reaches the first groups
        similarity = "low"
        reasons.append(Reason(text="input-level shift on a new task: planned as a different domain (mid-level features when probing; fine-tuning reaches the first groups, not them alone: surgical tuning adapts a model to shifted inputs of its own task)", source=f"{SRC_SURGICAL}; {SRC_HEAD2TOE}"))
    image = req.modality == "image"
    table = {
        ("tiny", "high"): ("lp-concat" if image else "linear-probe", 0),
        ("tiny", "medium"): ("lp-concat" if image else "linear-probe", 0),
        ("tiny", "low"): ("lp-concat", 0),
        ("small", "high"): ("lp-ft", -1),
        ("small", "medium"): ("lp-ft", -1),
        ("small", "low"): ("lp-ft", -1),
        ("medium", "high"): ("lp-ft", -1),
        ("medium", "medium"): ("lp-ft", -1),
        ("medium", "low"): ("full-finetune", -1),
        ("large", "high"): ("full-finetune", -1),
        ("large", "medium"): ("full-finetune", -1),
        ("large", "low"): ("full-finetune", -1),
    }
    strategy, k = table[(reg, similarity)]
    quadrant = {"high": "similar", "medium": "moderately similar", "low": "different"}[similarity]
    src = {"tiny": SRC_CS231N, "small": SRC_LPFT, "medium": SRC_ULMFIT, "large": SRC_BIT}[reg]
    if strategy == "lp-concat":
        src = SRC_HEAD2TOE
    if k == 0:  # every tiny row
        why = "head only" + (": the probe reads mid-level and final features" if strategy == "lp-concat" else "") + " (no deep fine-tuning: few-shot fine-tuning varies widely between seeds)"
    else:
        why = "all groups" + (": the probe, then every group, each at its own learning rate (the lower groups move least)" if reg == "small" else "")
    size = f"{req.samples} samples, {per_class:.0f} per class" + (f", smallest class {smallest}" if smallest < per_class else "")
    reasons.append(Reason(text=f"{reg} data ({size}) and {quadrant} domain: {strategy}, {why}", source=src))
    if req.shift == "label":
        # Image labels that the pretraining labels did not ask for (where, how many, which way) can rest
        # on what the last stage pools away: Head2Toe's largest gains over a last-layer probe are on
        # such tasks (dSprites location and orientation, sNORB), so an image head reads mid-level
        # features too. No text row probes on mid-level features (the encoder's mean-pooled last layer)
        strategy, k = ("lp-concat" if image else "head-only"), 0
        reasons.append(Reason(
            text="label shift: same inputs, new label semantics: train the head only"
            + (", on mid-level and final features (new labels may rest on what the last stage pools away)" if image else ""),
            source=SRC_SURGICAL + (f"; {SRC_HEAD2TOE}" if image else "")))
    elif req.shift == "feature" and strategy not in ("linear-probe", "lp-concat"):
        strategy, k = "surgical", -2
        reasons.append(Reason(text="feature-level shift: tune the middle groups", source=SRC_SURGICAL))

    # --- pick the best-ranked backbone whose cost fits the budget, shrinking the plan if needed
    chosen = None
    for card in ranked:
        plan_parts = _schedule(req, reg, similarity, strategy, k, card, budget)
        if plan_parts["cost"].total_seconds <= budget:
            chosen = (card, plan_parts)
            break
    if chosen is None:
        card = min(ranked, key=lambda c: _fwd_flops(c, None))
        parts = _schedule(req, reg, similarity, "linear-probe", 0, card, budget)
        reasons.append(Reason(text=f"no plan fits the {budget / 60:.0f} min budget: the cheapest backbone with a linear probe", source="zoo cost model"))
        chosen = (card, parts)
        strategy, k = "linear-probe", 0
    card, parts = chosen
    if card is not ranked[0]:
        reasons.append(Reason(text=f"{ranked[0].id} would not fit the {budget / 60:.0f} min {req.device} budget; {card.id} is the best that does", source="zoo cost model"))
    if ranked_given:
        pass  # data mode explains its choice from the measured signals
    elif req.modality == "image" and req.priority == "cost":
        best_top1 = max(c.top1 or 0 for c in cands)
        if (card.top1 or 0) >= best_top1 - 5.0:
            reasons.append(Reason(text=f"backbone {card.id}: cheapest forward pass ({_card_flops(card):.2f} GFLOPs) near the best top-1, within budget", source="zoo cost model"))
        else:  # every model near the best top-1 missed the budget: the rest are ranked by top-1
            reasons.append(Reason(text=f"backbone {card.id}: no model within 5 top-1 points of the best fits the budget; the best top-1 ({card.top1}) that does", source="zoo cost model"))
    else:
        reasons.append(Reason(text=f"backbone {card.id}: " + (f"best ImageNet top-1 ({card.top1}) within budget" if req.modality == "image" else "text encoder chosen by size regime and budget"), source=SRC_KORNBLITH if req.modality == "image" else SRC_ULMFIT))
    reasons.extend(parts["reasons"])
    unfreeze = _selectors(strategy, k)
    decay = parts["decay"]
    lr = {"head": parts["base_lr"]}
    for i, sel in enumerate(unfreeze):
        lr[sel] = parts["base_lr"] * decay ** (i + 1)
    return Plan(
        modality=req.modality,
        backbone=card.id,
        alternatives=[c.id for c in ranked if c.id != card.id][:3],
        strategy=strategy,
        unfreeze=unfreeze,
        lr=lr,
        lr_decay=decay,
        optimizer=parts["optimizer"],
        schedule=parts["schedule"],
        augment=parts["augment"],
        bn=parts["bn"],
        resolution=parts["resolution"],
        expected_cost=parts["cost"],
        signals={
            "mode": "metadata",
            "samples": req.samples,
            "classes": req.classes,
            "smallest_class": smallest,
            "per_class": round(per_class, 2),
            "regime": reg,
            "similarity": similarity,
            "domain": req.domain,
            "shift": req.shift,
            "prior_top1": card.top1,
            "budget_seconds": budget,
            "priority": req.priority,
        },
        rationale=reasons,
    )


#: the depths the rules plan, as the plan's ``unfreeze`` selectors: a probe (0), every group (-1), the
#: middle third (-2, surgical tuning for a feature-level shift)
DEPTHS = {0: [], -1: ["all"], -2: ["middle"]}


def _selectors(strategy: str, k: int) -> list[str]:
    return [] if strategy in ("linear-probe", "lp-concat", "head-only") else list(DEPTHS[k])


def _schedule(req: Request, reg: str, similarity: str, strategy: str, k: int, card: ModelCard, budget: float) -> dict:
    reasons: list[Reason] = []
    image = req.modality == "image"
    # resolution (BiT rule, CPU-friendly)
    resolution = None
    if image:
        native = card.input_size or 224
        if req.image_size is not None and req.image_size ** 2 < 96 ** 2:
            resolution = 128
            rule = Reason(text=f"small images ({req.image_size}px): train at 128px", source=SRC_BIT)
        else:
            resolution = min(native, 224) if req.device == "cpu" else native
            rule = None
        if req.resolution is not None and req.resolution_measured and req.resolution != resolution:
            reasons.append(Reason(text=f"train at {req.resolution}px (not {resolution}px), the side the data-mode signals were measured at: they describe that input, and zoo run reuses their features", source="zoo cost model"))
            resolution = req.resolution
        elif req.resolution is not None and not req.resolution_measured:
            resolution = req.resolution
            reasons.append(Reason(text=f"train at {resolution}px as given", source="user"))
        elif rule is not None:
            reasons.append(rule)
    fine_tune = strategy not in ("linear-probe", "lp-concat", "head-only")
    batch = 32 if req.device == "cpu" else 64
    # samples seen in stage 2 (BiT: ~256k for N < 20k, 10k/20k steps above), scaled to the budget
    target = {"tiny": 0, "small": 256_000, "medium": 10_000 * batch, "large": 20_000 * batch}[reg] if fine_tune else 0
    epochs = max(1, min(50, round(target / req.samples))) if fine_tune else 0
    fwd = _fwd_flops(card, resolution)
    thr = _throughput(req.device, req.throughput)
    n_groups = card.layer_groups or (14 if card.modality == "text" else 5)
    trained = n_groups if k == -1 else max(1, n_groups // 3)  # stage-2 cost: every group, or the middle third (k == -2)
    frac = min(1.0, trained / n_groups)
    stage1 = fwd * req.samples / thr  # one forward pass: lp-concat's mid-level features come from the same pass (pooled per group)

    def stage2(ep: int) -> float:
        return (1 + 2 * frac) * fwd * req.samples * ep / thr

    if fine_tune and stage1 + stage2(epochs) > budget:
        fit = int((budget - stage1) / max(stage2(1), 1e-9))
        if fit >= 1:  # LP-FT starts from the probe and keeps the best held-out epoch: a short stage 2 cannot end below it
            reasons.append(Reason(text=f"epochs cut from {epochs} to {fit} to fit the {budget / 60:.0f} min budget", source="zoo cost model"))
            epochs = fit
        else:
            epochs = 1
    steps = math.ceil(req.samples / batch) * epochs
    cost = Cost(device=req.device, stage1_seconds=round(stage1, 1), stage2_seconds=round(stage2(epochs) if fine_tune else 0.0, 1), total_seconds=round(stage1 + (stage2(epochs) if fine_tune else 0.0), 1), flops=fwd)
    # learning rates
    cnn = image and card.family not in ("vit", "deit", "swin", "beit")
    per_block = 0.75 if reg in ("tiny", "small") else 0.9  # timm/BEiT layer decay on small data, AutoGluon's above
    # ULMFiT's 1/2.6 (1/1.5 for a different domain) is per stage of a CNN cut into <= 5 groups; a finer cut
    # (EfficientNet: stem, 7 stages, top) would compound it to ~1/5,000 at the input: the per-block decay there
    stages = cnn and n_groups <= 5
    if not fine_tune:  # the optimizer and learning rates below are used only if the plan is edited to unfreeze groups
        reasons.append(Reason(text="the head is a multinomial logistic regression on the cached features, fit by L-BFGS with its L2 strength chosen on the held-out split (no learning rate; the plan's AdamW rates apply only once it is edited into a fine-tuning plan: strategy lp-ft, unfreeze e.g. [all], schedule.epochs N)",
                              source=f"{SRC_KORNBLITH} (L-BFGS logistic regression, L2 chosen on a validation split)"))
    if cnn:
        base = 5e-4
        opt = Optimizer(name="adamw", weight_decay=0.01)
        decay = (1 / 2.6 if similarity != "low" else 1 / 1.5) if stages else per_block
        if fine_tune:
            reasons.append(Reason(text="CNN: AdamW from 5e-4 (scaled by similarity below); Adam's per-parameter steps do not depend on the scale of the pooled features, and short CPU schedules still move", source="fastai vision fine_tune (Adam); measured in zoo's runner on digits, LP-FT 2 epochs: SGD 0.0025 stays at the probe, SGD 0.02 diverges, AdamW 1e-3 0.944 -> 0.967"))
    else:
        base = 1e-4 if image else 5e-5
        opt = Optimizer(name="adamw", weight_decay=0.01)
        decay = per_block
    if fine_tune:
        if similarity == "high":
            base *= 0.5
            reasons.append(Reason(text="similar domain: half the base learning rate", source=SRC_LI2020))
        elif similarity == "low":
            base *= 2.0
            reasons.append(Reason(text="different domain: twice the base learning rate" + (" and a flatter per-group decay" if stages else ""), source=SRC_LI2020))
        reasons.append(Reason(text=f"per-group learning rates: x{decay:.2f} per group below the head" + ("" if stages else f" ({n_groups} groups: the per-block decay)"),
                              source=SRC_ULMFIT if stages else "timm / BEiT layer-wise LR decay (0.75 on small data; AutoGluon 0.9 above)"))
    # augmentation
    if image:
        sensitive = req.orientation_sensitive if req.orientation_sensitive is not None else req.domain in ORIENTATION_SENSITIVE
        flips = not sensitive
        if not flips:
            why = "measured: flipped images lose k-NN accuracy" if req.orientation_sensitive else f"{req.domain}"
            reasons.append(Reason(text=f"{why}: orientation carries meaning, so no flips or rotations", source="Zhai et al. 2019, VTAB (structured tasks)"))
        crop_scale = (0.35, 1.0) if flips else (0.8, 1.0)
        if fine_tune and not flips:
            reasons.append(Reason(text="glyphs and structured images: mild crops only (scale 0.8-1), a crop that cuts the object away changes its label", source="measured in zoo's runner on digits (LP-FT, 2 epochs: 0.897 with scale 0.35-1, 0.947 without crops)"))
        aug = Augment(random_resized_crop=fine_tune, crop_scale=crop_scale, hflip=flips and fine_tune, trivial_augment=fine_tune and flips and req.samples >= 1000 and req.domain in (None, "natural", "fine-grained"), mixup=0.1 if req.samples >= 20_000 and fine_tune else 0.0, label_smoothing=0.1 if fine_tune else 0.0, resolution=resolution)
    else:
        aug = Augment(random_resized_crop=False, hflip=False, trivial_augment=False, label_smoothing=0.1 if fine_tune else 0.0)
    bn = "frozen-stats" if (batch < 32 or req.samples < 5000) else "train"
    if image and bn == "frozen-stats":
        reasons.append(Reason(text="little data or small batches: BatchNorm statistics stay frozen (inference mode)", source=SRC_KERAS))
    # no gradual unfreezing (ULMFiT): a plan trains every chosen group from its first epoch, as the strategy grid
    # measured it; `gradual_unfreeze: true` in a plan file still makes zoo run add one group per epoch from the top
    sched = Schedule(epochs=epochs, batch_size=batch, steps=steps if fine_tune else 0, warmup_frac=0.05 if fine_tune else 0.0, decay="cosine", gradual_unfreeze=False, early_stop_patience=5)
    return {"cost": cost, "schedule": sched, "augment": aug, "bn": bn, "resolution": resolution, "optimizer": opt, "base_lr": base, "decay": decay, "reasons": reasons}
