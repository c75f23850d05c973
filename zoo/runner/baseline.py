"""The from-scratch baseline: the plan's architecture, data, augmentation and schedule, random weights.

``zoo run PLAN --data D --from-scratch`` answers "what did pre-training buy?": every layer group is
trained from random initialisation (no stage-1 probe: features of random weights carry nothing to
reuse, and they must not land in the pretrained model's feature cache), BatchNorm statistics are
trained, and one learning rate serves every group: the usual from-scratch rates, 0.1 per 256 images
for SGD (Goyal et al. 2017, linear scaling) and 1e-3 for Adam-type optimizers (Kingma & Ba 2015),
instead of the small fine-tuning rates of the plan. Epochs, batch size, warm-up and cosine schedule,
augmentation and label smoothing stay the plan's, so the two runs differ only in the starting
weights and what that implies.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

SCRATCH_NOTE = "from scratch: random initialisation, every group trained, BatchNorm trained, one learning rate for all groups"


def scratch_lr(plan: Any, batch_size: int) -> float:
    """From-scratch learning rate for the plan's optimizer (see the module docstring)."""
    if plan.optimizer.name == "sgd":
        return 0.1 * batch_size / 256
    return 1e-3


def scratch_plan(plan: Any, batch_size: int | None = None) -> Any:
    """``plan`` turned into its from-scratch baseline: all groups, one LR, trained BatchNorm, no gradual unfreezing."""
    bs = batch_size or plan.schedule.batch_size
    schedule = plan.schedule.model_copy(update={"gradual_unfreeze": False})
    return plan.model_copy(update={
        "unfreeze": ["all"], "lr": {"head": scratch_lr(plan, bs)}, "lr_decay": 1.0, "bn": "train", "schedule": schedule,
    })


def zero_head(n_classes: int, feature_dim: int, val_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """A zero-initialised head and what it scores on the held-out split (epoch 0 of the baseline).

    Zero weights give equal logits: the loss is ``log(C)`` and argmax picks class 0.
    """
    weight = np.zeros((n_classes, feature_dim), dtype=np.float32)
    bias = np.zeros(n_classes, dtype=np.float32)
    pred = np.zeros(len(val_labels), dtype=np.int64)
    stage1 = {
        "stage": "stage1", "note": "from scratch: no linear probe; epoch 0 is the untrained model",
        "val_acc": float((pred == val_labels).mean()), "val_loss": math.log(n_classes), "train_acc": None,
        "val_pred": [int(v) for v in pred],
    }
    return weight, bias, stage1
