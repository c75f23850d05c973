"""One grid cell (task x size x backbone x seed): every arm, every peer and the recommended plan."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.grid import arms as A
from bench.grid.peers import ARMS, PEERS, RECOMMENDATIONS, arm_phases, peer_phases
from bench.grid.tasks import Task


def recommend_for(task: Task) -> tuple[Any, float]:
    """``zoo.recommend`` in metadata mode with what the task declares; returns ``(plan, seconds)``."""
    import zoo

    t0 = time.perf_counter()
    plan = zoo.recommend(
        samples=len(task.train_y), classes=task.n_classes, modality=task.modality, domain=task.domain,
        shift=task.shift, image_size=task.image_size, device="cpu", smallest_class=task.per_class, resolution=_harness_side(task),
    )
    return plan, time.perf_counter() - t0


def _harness_side(task: Task) -> int | None:
    """Images: the side every arm trains at (:data:`bench.grid.arms.RESOLUTION`), so the plan is measured
    and made for the input the harness runs it on; text: ``None``."""
    return A.RESOLUTION if task.modality == "image" else None


def write_task(task: Task, folder: Path) -> Path:
    """The task's training items as a user would hand them to ``zoo recommend --data``.

    Images: one PNG per item in one sub-folder per class; text: a JSONL file of ``text``/``label``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    if task.modality == "text":
        path = folder / "train.jsonl"
        with path.open("w", encoding="utf-8") as fh:
            for x, y in zip(task.train_x, task.train_y):
                fh.write(json.dumps({"text": x, "label": task.classes[int(y)]}) + "\n")
        return path
    from PIL import Image

    for i, (x, y) in enumerate(zip(task.train_x, task.train_y)):
        sub = folder / task.classes[int(y)]
        sub.mkdir(exist_ok=True)
        Image.fromarray(np.asarray(x, dtype=np.uint8)).save(sub / f"{i:05d}.png")
    return folder


def recommend_data_for(task: Task, backbone: str) -> tuple[Any, float]:
    """``zoo.recommend`` in data mode on the task's training items, the cell's backbone the only candidate.

    The declared domain and shift go along (as in metadata mode); the similarity (from the probe
    profile, LogME and the source head) and the orientation sensitivity are measured, at the harness's image side (as every arm
    trains; the rule's own side for small images would be 128 px). Returns ``(plan, seconds)``; the seconds
    include nothing but the measurement (the files are written before the clock starts), from an empty feature cache.
    """
    from unittest import mock

    import zoo
    from zoo.recommender import features

    with tempfile.TemporaryDirectory() as tmp:
        path = write_task(task, Path(tmp) / "data")
        # a feature cache of its own: the cost is that of a first measurement (the same texts, written again
        # for another row, would otherwise hit the features an earlier row cached in ZOO_HOME)
        with mock.patch.object(features, "cache_dir", lambda: Path(tmp) / "features"):
            t0 = time.perf_counter()
            plan = zoo.recommend(data=path, candidates=[backbone], domain=task.domain, shift=task.shift, device="cpu", resolution=_harness_side(task))
            return plan, time.perf_counter() - t0


def run_end_to_end(task: Task, backbone: str, epochs: int) -> tuple[float, Any, float, float, Any]:
    """The metadata-mode plan executed by ``zoo run`` itself on the task's training items, its saved model
    reloaded (``zoo predict``'s :func:`zoo.runner.predict.load_run`) and scored on the test split.

    What a user gets, end to end: the run holds out 20 % of each class (stage 1's L2 strength, early
    stopping, the best epoch with the probe as epoch 0), trains the rest with the plan's augmentation,
    and keeps its best held-out epoch. The cell's backbone replaces the plan's choice and ``epochs``
    (the harness's CPU budget) the plan's epoch count, as for the harness-scored plan. The run has a
    feature cache of its own. Returns ``(test accuracy, plan, recommend seconds, run seconds, RunResult)``.
    """
    from unittest import mock

    import zoo
    from zoo.recommender import features
    from zoo.runner.predict import load_run

    plan, rec_s = recommend_for(task)
    plan = plan.model_copy(update={"backbone": backbone})
    with tempfile.TemporaryDirectory() as tmp:
        data = write_task(task, Path(tmp) / "data")
        with mock.patch.object(features, "cache_dir", lambda: Path(tmp) / "features"):
            t0 = time.perf_counter()
            result = zoo.run(plan, data, out=Path(tmp) / "run", epochs=epochs, seed=task.seed, progress=False)
            model = load_run(Path(tmp) / "run")
            logits = np.asarray(model.logits(list(task.test_x), batch_size=64))
            seconds = time.perf_counter() - t0
    # the run numbers the classes by their names' order in the folder (or file); compare names
    predicted = [model.classes[i] for i in logits.argmax(1)]
    acc = float(np.mean([p == task.classes[int(y)] for p, y in zip(predicted, task.test_y)]))
    return acc, plan, rec_s, seconds, result


def plan_phases(plan: Any, n: int, epochs: int) -> tuple[list[A.Phase] | None, str, str]:
    """The plan's strategy, groups and learning rates as harness phases, and the arm it maps onto.

    Returns ``(phases or None for a probe, mapped arm, head init)``.
    """
    from zoo.runner.stage2 import group_lr, resolve_selectors

    if plan.strategy in ("linear-probe", "head-only") or not plan.unfreeze:
        return None, "lp-concat" if plan.strategy == "lp-concat" else "lp", "lp"
    groups = sorted(resolve_selectors(plan.unfreeze, n))
    lr = {"head": float(plan.lr["head"]), **{i: group_lr(plan, i, n) for i in groups}}
    if groups == list(range(n - len(groups), n)):
        mapped = "lpft-all" if len(groups) == n else f"lpft-{len(groups)}"
    elif groups[0] == 0 and groups == list(range(len(groups))):
        mapped = "surgical"
    else:
        mapped = "custom"
    opt = plan.optimizer.name
    bn = "frozen" if plan.bn == "frozen-stats" else "train"
    ph = A.Phase(groups, lr, epochs, batch_size=plan.schedule.batch_size, optimizer=opt, weight_decay=plan.optimizer.weight_decay,
                 schedule="cosine" if plan.schedule.decay == "cosine" else "constant", warmup_frac=plan.schedule.warmup_frac, bn=bn,
                 label_smoothing=plan.augment.label_smoothing, no_decay_1d=True)  # as zoo run's decay_groups
    return [ph], mapped, "lp"


def _plan_extra(plan: Any, mapped: str, rec_s: float) -> dict[str, Any]:
    """The CSV columns that record a recommendation."""
    return {"plan_strategy": plan.strategy, "plan_unfreeze": "+".join(plan.unfreeze) or "-", "plan_backbone": plan.backbone,
            "plan_epochs": plan.schedule.epochs, "plan_head_lr": plan.lr["head"], "mapped_arm": mapped, "rec_seconds": round(rec_s, 4)}


def _text_bn(phases: list[A.Phase], modality: str) -> list[A.Phase]:
    # a transformer has no BatchNorm: "train BN while frozen" changes nothing and must not force a full forward
    return [dataclasses.replace(p, bn="frozen") if modality == "text" and p.bn == "train-all" else p for p in phases]


def run_cell(
    split: A.Split, state: dict[str, torch.Tensor], task: Task, backbone: str, *, target_steps: int,
    skip: set[str], emit: Callable[[dict[str, Any]], None], arms: tuple[str, ...] = ARMS, peers: tuple[str, ...] = PEERS,
    recommendations: tuple[str, ...] = RECOMMENDATIONS, known: dict[str, float] | None = None,
) -> None:
    """Train every arm, peer and recommended plan not in ``skip``; ``emit`` one row per result.

    ``recommended``: metadata mode (what the task declares); ``recommended-data``: data mode on the
    task's training items (:func:`recommend_data_for`). ``known``: the cell-seed's accuracies already
    in the CSV (arm -> accuracy).

    The activation caches are built once per cell; their time is charged to the ``lp`` row.
    """
    n = split.n
    seed = task.seed
    epochs = A.ft_epochs(len(task.train_y), 32, target_steps)
    base = {"family": task.family, "per_class": task.per_class, "backbone": backbone, "seed": seed, "modality": task.modality,
            "n_train": len(task.train_y), "n_classes": task.n_classes, "epochs": epochs}
    made: dict[str, tuple[Any, float]] = {}
    if "recommended-run" in recommendations and "recommended-run" not in skip:
        # zoo run end to end: its own process of the data, so it needs none of the harness's caches (and it leaves
        # torch's random state as it found it, so the rows after it do not depend on whether it ran)
        with torch.random.fork_rng(devices=[]):
            acc, plan, rec_s, seconds, res = run_end_to_end(task, backbone, epochs)
        _, mapped, _ = plan_phases(plan, n, epochs)
        emit({**base, "arm": "recommended-run", "kind": "recommended-run", "acc": acc, "seconds": round(seconds, 3), "steps": 0,
              **_plan_extra(plan, mapped, rec_s), "best_epoch": res.best_epoch, "epochs_run": res.epochs_run, "val_acc": round(res.final_val_acc, 5)})
        skip = skip | {"recommended-run"}
    pending = [a for a in (*arms, *peers, *recommendations) if a not in skip]
    if not pending:
        return
    if known and pending == ["recommended-data"]:
        # only the data-mode row is missing: a probe plan takes its arm's accuracy from the CSV (same cell,
        # seed and deterministic harness), so the activation caches are built only for a fine-tuning plan
        made["recommended-data"] = plan, rec_s = recommend_data_for(task, backbone)
        phases, mapped, _ = plan_phases(plan, n, epochs)
        if phases is None and mapped in known:
            emit({**base, "arm": "recommended-data", "kind": "recommended-data", "acc": known[mapped], "seconds": 0.0, "steps": 0,
                  **_plan_extra(plan, mapped, rec_s)})
            return
    A.restore(split, state)
    t0 = time.perf_counter()
    starts = sorted({0, max(0, n - 3), n - 2, n - 1, n})
    tr = A.build_cache(split, task.train_x, task.train_y, starts)
    te = A.build_cache(split, task.test_x, task.test_y, starts)
    cache_s = time.perf_counter() - t0
    t = time.perf_counter()
    lp_acc, lp_head = A.probe(tr.final, tr.y, te.final, te.y, task.n_classes, seed)
    lp_s = time.perf_counter() - t + cache_s
    results: dict[str, float] = {"lp": lp_acc}
    if "lp" not in skip:
        emit({**base, "arm": "lp", "kind": "arm", "acc": lp_acc, "seconds": round(lp_s, 3), "steps": 0})
    t = time.perf_counter()
    results["lp-concat"] = A.probe(A.concat_features(tr, tr), tr.y, A.concat_features(te, tr), te.y, task.n_classes, seed)[0]
    if "lp-concat" not in skip and "lp-concat" in arms:
        emit({**base, "arm": "lp-concat", "kind": "arm", "acc": results["lp-concat"], "seconds": round(time.perf_counter() - t, 3), "steps": 0})

    def fit(name: str, kind: str, phases: list[A.Phase], head: A.Head, extra: dict[str, Any] | None = None) -> None:
        A.restore(split, state)
        phases = _text_bn(phases, task.modality)
        start = max(k for k in starts if k <= A.start_of(phases))
        fresh = copy.deepcopy(head) if kind == "arm" else None  # the head a retry starts from (arms only)
        out = A.train(split, phases, head, tr, te, start, seed)
        first_diverged, scale, seconds = out["diverged"], 1.0, out["seconds"]
        if kind == "arm" and first_diverged:
            # the arms' shared recipe: a run whose training loss ends above where it started is run again once at a
            # tenth of every learning rate, and the run with the lower final training loss is kept (peers and
            # plans run as they are: their recipes are theirs)
            A.restore(split, state)
            retry = A.train(split, A.scale_lr(phases, A.RETRY_LR_SCALE), fresh, tr, te, start, seed)
            seconds += retry["seconds"]
            if not math.isfinite(out["loss_end"]) or retry["loss_end"] < out["loss_end"]:
                out, scale = retry, A.RETRY_LR_SCALE
        results[name] = out["acc"]
        emit({**base, "arm": name, "kind": kind, "acc": out["acc"], "seconds": round(seconds, 3), "steps": out["steps"],
              "train_loss": round(out["loss_end"], 5), "diverged": int(first_diverged), "lr_scale": scale, **(extra or {})})

    dim = tr.final.shape[1]
    for arm in arms:
        if arm in ("lp", "lp-concat") or arm in skip:
            continue
        phases, init = arm_phases(arm, n, task.modality, epochs)
        head = A.Head(dim, task.n_classes)
        if init == "lp":
            head.init_from(*lp_head)
        else:
            torch.manual_seed(seed)
            torch.nn.init.zeros_(head.net[-1].weight)
            torch.nn.init.zeros_(head.net[-1].bias)
        fit(arm, "arm", phases, head)
    for peer in peers:
        if peer in skip:
            continue
        torch.manual_seed(seed)
        phases, head = peer_phases(peer, n, epochs, dim, task.n_classes, task.modality, len(task.train_y), target_steps)
        fit(peer, "peer", phases, head)
    for name, recommend in (("recommended", lambda: recommend_for(task)), ("recommended-data", lambda: recommend_data_for(task, backbone))):  # recommended-run: above
        if name in skip or name not in recommendations:
            continue
        plan, rec_s = made[name] if name in made else recommend()
        phases, mapped, _ = plan_phases(plan, n, epochs)
        extra = _plan_extra(plan, mapped, rec_s)
        if phases is None:
            emit({**base, "arm": name, "kind": name, "acc": results[mapped], "seconds": 0.0, "steps": 0, **extra})
            continue
        head = A.Head(dim, task.n_classes).init_from(*lp_head)
        fit(name, name, phases, head, extra)
