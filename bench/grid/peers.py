"""The fixed recipes of the grid: zoo's arms (one shared recipe, differing only in strategy and
depth) and the peers' recipes as their documentation describes them, epochs scaled for a CPU.

Peers (research note anchors-recommender.md, sections 1.4, 1.5 and 4):

* ``fastai``: ``Learner.fine_tune(epochs)`` defaults: ``freeze()`` then ``fit_one_cycle(1,
  slice(2e-3), pct_start=0.99)``; ``unfreeze()`` then ``fit_one_cycle(epochs, slice(1e-5, 1e-3),
  pct_start=0.3, div=5)`` over fastai's three parameter groups (lower body, upper body, head: 1e-5,
  1e-4, 1e-3); Adam with decoupled weight decay 0.01, betas (0.9, 0.99), one-cycle momentum
  0.95-0.85-0.95; ``train_bn=True`` (BatchNorm trains while frozen); ``create_head`` (concat pool,
  BN, dropout 0.25, Linear 512, ReLU, BN, dropout 0.5, Linear); batch 64.
* ``keras``: the transfer-learning guide: frozen base (BatchNorm in inference mode), new head
  (dropout 0.2, Dense) trained with ``Adam()`` (1e-3), then everything unfrozen with
  ``Adam(1e-5)``, BatchNorm still in inference mode; batch 32.
* ``autotrain``: Hugging Face AutoTrain image/text classification defaults: full fine-tune with a
  new head, AdamW lr 5e-5, weight decay 0, warm-up 0.1 then linear decay, batch 8, 3 epochs,
  gradients clipped to norm 1 (``max_grad_norm``, handed to the Hugging Face Trainer).
* ``flash``: Lightning Flash ``finetune(strategy=("freeze_unfreeze", k))``: head only for ``k``
  epochs (``train_bn=True``), then the whole backbone joins parameter group 0 at the same learning
  rate; Adam at 1e-3; ``k`` = half the epochs.

CPU scaling: every recipe whose epoch count is the user's choice (all but AutoTrain's fixed 3)
gets the epochs that give about the same number of optimizer steps as the grid's fine-tuning arms
(``target_steps`` in its main phase, at its own batch size, and at least ``arms.MIN_EPOCHS``);
augmentation is off for every arm and peer so that activations can be cached (the Keras guide's
flip/rotation and any fastai ``aug_transforms`` are therefore not applied).
"""

from __future__ import annotations

from bench.grid.arms import Head, Phase

PEERS = ("fastai", "keras", "autotrain", "flash")
ARMS = ("lp", "lp-concat", "lpft-1", "lpft-2", "lpft-all", "full-ft", "surgical")
#: zoo's recommendation in metadata mode (what the task declares) and in data mode (measured on the training items)
RECOMMENDATIONS = ("recommended", "recommended-data", "recommended-run")  # metadata mode, data mode, metadata mode run by `zoo run` itself
# the arms' shared recipe (fixed a priori, not tuned on the grid): VTAB/TLlib SGD 0.01 for CNNs,
# BERT-style AdamW for text; per-group decay 1/2.6 (ULMFiT) below the head. A run that diverges (training
# loss ends above its start) is run again at a tenth of these rates (``cell.run_cell``, ``arms.diverged``)
ARM_LR = {"image": ("sgd", 0.01, 1 / 2.6, 0.0), "text": ("adamw", 1e-3, 0.1, 0.01)}


def arm_phases(arm: str, n: int, modality: str, epochs: int) -> tuple[list[Phase], str]:
    """Phases of a fine-tuning arm and its head initialisation (``lp`` or ``random``)."""
    opt, base, decay, wd = ARM_LR[modality]
    if arm.startswith("lpft-"):
        k = n if arm == "lpft-all" else int(arm.split("-")[1])
        groups = list(range(n - k, n))
        lr = {"head": base, **{i: base * decay ** (n - i) for i in groups}}
        return [Phase(groups, lr, epochs, optimizer=opt, weight_decay=wd)], "lp"
    if arm == "full-ft":  # plain fine-tuning: new head, one flat learning rate everywhere
        groups = list(range(n))
        flat = base * decay
        return [Phase(groups, {"head": flat, **{i: flat for i in groups}}, epochs, optimizer=opt, weight_decay=wd)], "random"
    if arm == "surgical":  # Lee et al. 2023: the first two groups (and the LP head)
        groups = [0, 1]
        return [Phase(groups, {"head": base, **{i: base * decay for i in groups}}, epochs, optimizer=opt, weight_decay=wd)], "lp"
    raise ValueError(arm)


def peer_phases(peer: str, n: int, epochs: int, dim: int, n_classes: int, modality: str, n_train: int = 0, target_steps: int = 0) -> tuple[list[Phase], Head]:
    """Phases and the new head of a peer recipe; ``epochs`` is the arms' count at batch 32 (fastai, at batch 64, gets its own for the same steps)."""
    from bench.grid.arms import ft_epochs

    all_groups = list(range(n))
    if peer == "fastai":
        concat = modality == "image"
        head = Head(dim * (2 if concat else 1), n_classes, kind="fastai", concat=concat)
        one = {"pct_start": 0.99, "div": 25.0, "div_final": 1e5}
        lower, upper = all_groups[: n // 2], all_groups[n // 2 :]
        lr2 = {"head": 1e-3, **{i: 1e-5 for i in lower}, **{i: 1e-4 for i in upper}}
        epochs = ft_epochs(n_train, 64, target_steps) if n_train and target_steps else epochs
        common = {"batch_size": 64, "optimizer": "adamw", "weight_decay": 0.01, "schedule": "onecycle", "adam_betas": (0.9, 0.99)}
        return [
            Phase([], {"head": 2e-3}, 1, bn="train-all", onecycle=one, **common),
            Phase(all_groups, lr2, epochs, bn="train", onecycle={"pct_start": 0.3, "div": 5.0, "div_final": 1e5}, **common),
        ], head
    if peer == "keras":
        head = Head(dim, n_classes, dropout=0.2)
        return [
            Phase([], {"head": 1e-3}, epochs, optimizer="adam", schedule="constant", warmup_frac=0.0, bn="frozen"),
            Phase(all_groups, {"head": 1e-5, **{i: 1e-5 for i in all_groups}}, epochs, optimizer="adam", schedule="constant", warmup_frac=0.0, bn="frozen"),
        ], head
    if peer == "autotrain":
        head = Head(dim, n_classes)
        return [Phase(all_groups, {"head": 5e-5, **{i: 5e-5 for i in all_groups}}, 3, batch_size=8, optimizer="adamw", schedule="linear", warmup_frac=0.1, bn="train", max_grad_norm=1.0)], head
    if peer == "flash":
        head = Head(dim, n_classes)
        k = max(1, epochs // 2)
        return [
            Phase([], {"head": 1e-3}, k, optimizer="adam", schedule="constant", warmup_frac=0.0, bn="train-all"),
            Phase(all_groups, {"head": 1e-3, **{i: 1e-3 for i in all_groups}}, max(1, epochs - k), optimizer="adam", schedule="constant", warmup_frac=0.0, bn="train"),
        ], head
    raise ValueError(peer)
