"""Stage 2: fine-tune as the plan says (LP-FT), on Hugging Face Accelerate, resumable per epoch.

The head starts from stage 1; the plan's ``unfreeze`` selectors pick layer groups (``top-i``,
``early-i``, ``middle``, ``all``); each group gets its learning rate from ``plan.lr`` (or
``lr["head"] * lr_decay ** distance`` for groups the plan did not name); linear warm-up then cosine
(or constant); BatchNorm frozen or trained as the plan says; augmentation as ``plan.augment``
(no flips unless ``hflip``); early stopping on the held-out split; optional gradual unfreezing (one
more selected group per epoch, from the top). Every epoch starts from a seed derived from the run
seed and the epoch, so a run resumed from a checkpoint replays exactly what an uninterrupted run does.
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from zoo._io import atomic_write
from zoo.errors import CheckpointError, DivergedError, InvalidInputError, LayerGroupRangeError
from zoo.frameworks.torch import _BN, call_model, decay_groups, move
from zoo.runner import checkpoint
from zoo.runner.checkpoint import DIVERGED_RERUN
from zoo.runner.shards import Collate, Indices, Order, _batches, any_failed, evaluate_sharded, n_batches



@dataclass
class Stage2Result:
    """Per-epoch history and the best held-out accuracy (stage 1 counts as epoch 0)."""

    history: list[dict[str, Any]]
    best_epoch: int
    best_val_acc: float
    best_val_loss: float
    best_val_pred: list[int]
    stopped_early: bool
    resumed_from: int | None = None
    groups: list[str] = field(default_factory=list)
    train_images_per_s: list[float] = field(default_factory=list)  # per epoch run here: training steps incl. data loading


# ---- plan -> groups and learning rates ------------------------------------------------------------


def resolve_selectors(selectors: Sequence[str], n: int) -> list[int]:
    """Layer-group indices (input = 0) the selectors name, ordered from the output down.

    Raises:
        LayerGroupRangeError: ``top-i``/``early-i`` outside ``1..n``.
        InvalidInputError: an unknown selector.
    """
    out: list[int] = []
    for sel in selectors:
        if sel == "all":
            idx = list(range(n))
        elif sel == "middle":
            idx = list(range(n // 3, max(n // 3 + 1, 2 * n // 3)))
        elif sel.startswith(("top-", "early-")) and sel.split("-", 1)[1].isdigit():
            i = int(sel.split("-", 1)[1])
            if not 1 <= i <= n:
                raise LayerGroupRangeError(i, n)
            idx = [n - i] if sel.startswith("top-") else [i - 1]
        else:
            raise InvalidInputError(f"unknown unfreeze selector {sel!r}; use top-i, early-i, middle or all.")
        out.extend(j for j in idx if j not in out)
    return sorted(out, reverse=True)


def group_lr(plan: Any, index: int, n: int) -> float:
    """Learning rate of group ``index``: the plan's own for the selector naming it, else head LR x decay^distance.

    ``top-i`` / ``early-i`` name one group: its rate. ``middle`` / ``all`` name several: the rate is the
    selector's top group's, x ``lr_decay`` per group below it (the recommender writes ``all`` as head x decay,
    which is then exactly head x decay^distance for every group).
    """
    for sel in (f"top-{n - index}", f"early-{index + 1}"):
        if sel in plan.lr:
            return float(plan.lr[sel])
    for sel in ("middle", "all"):
        if sel in plan.lr:
            named = resolve_selectors([sel], n)
            if index in named:
                return float(plan.lr[sel]) * plan.lr_decay ** (max(named) - index)
    return float(plan.lr["head"]) * plan.lr_decay ** (n - index)


def lr_lambda(total: int, warmup_frac: float, decay: str) -> Callable[[int], float]:
    """Linear warm-up over ``warmup_frac`` of ``total`` steps, then cosine to zero (or constant)."""
    warm = int(math.ceil(warmup_frac * total)) if warmup_frac > 0 else 0

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if decay == "constant" or total <= warm:
            return 1.0
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warm) / (total - warm))))

    return f


# ---- data -----------------------------------------------------------------------------------------


def image_transforms(backbone: Any, resolution: int, augment: Any) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    """``(train, eval)`` transforms: eval exactly as the feature cache (bicubic resize + centre crop), train per ``augment``."""
    from torchvision import transforms as T

    from zoo.recommender.features import _image_transform

    spec = backbone.input_spec
    steps: list[Any] = []
    if augment.random_resized_crop:
        steps.append(T.RandomResizedCrop(resolution, scale=tuple(augment.crop_scale), interpolation=T.InterpolationMode.BICUBIC))
    else:
        steps += [T.Resize(resolution, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(resolution)]
    if augment.hflip:
        steps.append(T.RandomHorizontalFlip())
    if augment.trivial_augment:
        steps.append(T.TrivialAugmentWide())
    steps.append(T.ToTensor())
    if spec.mean is not None and spec.std is not None:
        steps.append(T.Normalize(spec.mean, spec.std))
    return T.Compose(steps), _image_transform(backbone, resolution)


def make_prep(backbone: Any, resolution: int | None, augment: Any) -> Callable[..., Any]:
    """``prep(items, train, seeds=None)`` -> a native batch (image tensor, or the tokenizer's dict for text).

    With ``seeds`` (one integer per item), each item's random augmentation is drawn from its own
    seed, so it depends on the item and the epoch only, not on the batch or the process it lands in:
    one process and N processes (each with a slice of the global batch) augment identically.
    """
    if backbone.input_spec.modality != "image":
        return lambda items, train, seeds=None: backbone.preprocess(list(items))
    from zoo.inputs import load_images_for

    train_tf, eval_tf = image_transforms(backbone, resolution or backbone.input_spec.size or 224, augment)

    def prep(items: Sequence[Any], train: bool, seeds: Sequence[int] | None = None) -> Any:
        images = load_images_for(backbone, list(items))
        if not train:
            return torch.stack([eval_tf(im.convert("RGB")) for im in images])
        if seeds is None:
            return torch.stack([train_tf(im.convert("RGB")) for im in images])
        out = []
        for im, s in zip(images, seeds):
            torch.default_generator.manual_seed(int(s))  # torchvision draws from the CPU generator (torch.manual_seed costs ~1 ms: it seeds every device)
            out.append(train_tf(im.convert("RGB")))
        return torch.stack(out)

    return prep


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    st = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [st[0], torch.from_numpy(st[1].astype(np.int64)), int(st[2]), int(st[3]), float(st[4])],
        "python": list(random.getstate()[1]),
    }


def _set_rng_state(s: dict[str, Any]) -> None:
    torch.set_rng_state(s["torch"])
    n = s["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
    random.setstate((3, tuple(s["python"]), None))


def _write_best(path: Path, model_state: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().cpu() for k, v in model_state.items()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp)))


class _Bar:
    """A progress bar with ETA on a terminal (rich), silent otherwise."""

    def __init__(self, enabled: bool, total: int, label: str) -> None:
        self.p = None
        if enabled and sys.stderr.isatty():
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self.p = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"), TimeRemainingColumn(), transient=True)
            self.p.start()
            self.task = self.p.add_task(label, total=total)

    def advance(self) -> None:
        if self.p is not None:
            self.p.advance(self.task)

    def close(self) -> None:
        if self.p is not None:
            self.p.stop()


# ---- training -------------------------------------------------------------------------------------


def evaluate(model: nn.Module, prep: Callable[..., Any], items: Sequence[Any], labels: np.ndarray, batch_size: int, device: Any, autocast: Any) -> tuple[float, float, np.ndarray]:
    """``(loss, accuracy, predictions)`` on held-out items with the eval preprocessing."""
    model.eval()
    losses, preds = [], []
    with torch.inference_mode():
        for idx in _batches(len(items), batch_size, None):
            batch = move(prep([items[i] for i in idx], False), device)
            with autocast():
                logits = call_model(model, batch).float()
            y = torch.as_tensor(labels[idx], device=logits.device)
            losses.append(float(nn.functional.cross_entropy(logits, y, reduction="sum")))
            preds.append(logits.argmax(1).cpu().numpy())
    pred = np.concatenate(preds)
    return sum(losses) / len(items), float((pred == labels).mean()), pred


def fine_tune(
    backbone: Any,
    plan: Any,
    head_weight: np.ndarray,
    head_bias: np.ndarray,
    train: tuple[Sequence[Any], np.ndarray],
    val: tuple[Sequence[Any], np.ndarray],
    stage1: dict[str, Any],
    *,
    out: Path,
    epochs: int,
    batch_size: int,
    seed: int,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[list[dict[str, Any]]], None] | None = None,
    processes: int = 1,
) -> Stage2Result:
    """Run stage 2 (see the module docstring); writes ``out/model/model.safetensors`` on each improvement.

    ``stage1`` (``val_acc``, ``val_loss``, ``val_pred``) is the baseline that epoch 0 stands for.
    ``log`` receives the stage-2 history (every finished epoch) after each checkpoint is written.
    ``processes > 1`` trains on that many worker processes (gloo on CPU, one GPU each when there are
    enough), see :mod:`zoo.runner.distributed`; ``batch_size`` stays the global batch. Under
    ``accelerate launch`` the other ranks already wait (``zoo run`` serves them) and join this one.

    Raises:
        DivergedError: the loss became NaN or infinite (the last checkpoint is kept).
        CheckpointError: a checkpoint could not be written (the previous one is kept).
    """
    from zoo.runner import distributed

    job = dict(
        plan=plan, head_weight=head_weight, head_bias=head_bias, train=train, val=val, stage1=stage1, out=Path(out), epochs=epochs,
        batch_size=batch_size, seed=seed, resume=resume, progress=progress,
    )
    if distributed.launched():  # rank 0 of `accelerate launch` / torchrun: hand the job to the waiting ranks
        distributed.share(backbone, job)
        return train_job(backbone, log=log, **job)
    if processes > 1:
        return distributed.launch(backbone, job, processes, log=log)
    return train_job(backbone, log=log, **job)


def _cpu_only(world: int) -> bool:
    if not torch.cuda.is_available() or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes"):
        return True
    return world > torch.cuda.device_count()


def train_job(
    backbone: Any,
    plan: Any,
    head_weight: np.ndarray,
    head_bias: np.ndarray,
    train: tuple[Sequence[Any], np.ndarray],
    val: tuple[Sequence[Any], np.ndarray],
    stage1: dict[str, Any],
    *,
    out: Path,
    epochs: int,
    batch_size: int,
    seed: int,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[list[dict[str, Any]]], None] | None = None,
) -> Stage2Result:
    """The stage-2 loop on the current process, one of ``WORLD_SIZE`` (default 1) when launched; see :func:`fine_tune`.

    Every process holds the whole model; Accelerate gives each its slice of every global batch
    (``split_batches``) and all-reduces the gradients (DDP). The loss is the global batch mean over
    real items (Accelerate's padding of a short last batch weighs zero), so any number of processes
    takes the same steps as one. Only the main process writes the best model and checkpoints and
    calls ``log``; every process reads a checkpoint to resume.
    """
    from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs

    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    cpu = _cpu_only(world)
    # gradual unfreezing leaves selected groups without gradients in early epochs: DDP must expect that
    ddp = DistributedDataParallelKwargs(find_unused_parameters=bool(plan.schedule.gradual_unfreeze))
    acc = Accelerator(
        cpu=cpu, mixed_precision="no" if cpu else "bf16", rng_types=[], kwargs_handlers=[ddp],
        dataloader_config=DataLoaderConfiguration(split_batches=True, even_batches=True),
    )
    cuda = acc.device.type == "cuda"
    n_proc, rank, main = acc.num_processes, acc.process_index, acc.is_main_process
    if batch_size % n_proc:
        batch_size = max(n_proc, batch_size - batch_size % n_proc)
        if main:
            print(f"zoo run: global batch rounded to {batch_size}, a multiple of the {n_proc} processes", file=sys.stderr)
    per = batch_size // n_proc
    groups = list(backbone.layer_groups)
    n = len(groups)
    chosen = resolve_selectors(plan.unfreeze, n)
    if not chosen:
        raise InvalidInputError("the plan unfreezes no layer group; stage 2 has nothing to train (strategy linear-probe).")
    _seed_all(seed)
    model = backbone.with_head(int(head_weight.shape[0]))
    with torch.no_grad():
        model.head.weight.copy_(torch.as_tensor(head_weight))
        model.head.bias.copy_(torch.as_tensor(head_bias))
    backbone.freeze()
    for i in chosen:
        backbone._set_group_trainable(groups[i], True)
    pgroups = [{"params": list(model.head.parameters()), "lr": float(plan.lr["head"]), "name": "head"}]
    for i in chosen:
        params = [p for m in groups[i].modules for p in m.parameters()]
        pgroups.append({"params": params, "lr": group_lr(plan, i, n), "name": groups[i].name})
    pgroups = decay_groups(model, pgroups, plan.optimizer.weight_decay)  # none on biases and norm weights
    if plan.optimizer.name == "sgd":
        opt: Any = torch.optim.SGD(pgroups, lr=pgroups[0]["lr"], momentum=plan.optimizer.momentum or 0.0, nesterov=bool(plan.optimizer.momentum))
    else:
        opt = torch.optim.AdamW(pgroups, lr=pgroups[0]["lr"])
    train_items, train_y = train
    val_items, val_y = val
    n_train = len(train_items)
    steps_per_epoch = n_batches(n_train, batch_size)
    state: dict[str, Any] = {
        "epoch": 0, "epochs": epochs, "history": [], "best_epoch": 0, "best_val_acc": float(stage1["val_acc"]),
        "best_val_loss": float(stage1["val_loss"]), "best_val_pred": [int(v) for v in stage1["val_pred"]], "bad_epochs": 0, "stopped_early": False,
    }
    ckpt_root = out / "checkpoints"
    best_path = out / "model" / "model.safetensors"
    resumed_from = None
    loaded = checkpoint.load(ckpt_root) if resume else None
    if loaded is not None:
        epochs = int(loaded[1]["epochs"])
    # the scheduler first: its constructor rewrites every group's lr, which the optimizer state then restores
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(epochs * steps_per_epoch, plan.schedule.warmup_frac, plan.schedule.decay))
    if loaded is not None:
        model_state, saved = loaded
        model.load_state_dict(model_state)
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
        _set_rng_state(saved["rng"])
        state.update({k: saved[k] for k in state})
        resumed_from = int(saved["epoch"])
        if main and int(state["best_epoch"]) == resumed_from:
            # the checkpoint is written before the best model: a kill between the two left the best model of an
            # earlier epoch; this checkpoint's weights are the best epoch's, so the best model is rewritten from them
            _write_best(best_path, model_state)
    elif main:
        _write_best(best_path, model.state_dict())  # stage 1's head on the pretrained backbone: epoch 0
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    prep = make_prep(backbone, plan.resolution, plan.augment)
    order = Order(n_train, batch_size, seed)
    collate = Collate(prep, train_items, train_y, True, seed)
    train_dl = torch.utils.data.DataLoader(Indices(n_train), batch_sampler=order, collate_fn=collate)
    val_dl = torch.utils.data.DataLoader(Indices(len(val_items)), batch_sampler=Order(len(val_items), batch_size, None), collate_fn=Collate(prep, val_items, val_y, False, seed))
    model, opt, train_dl, val_dl = acc.prepare(model, opt, train_dl, val_dl)
    smoothing = plan.augment.label_smoothing
    patience = plan.schedule.early_stop_patience
    mixup = plan.augment.mixup
    val_y = np.asarray(val_y)
    throughput: list[float] = []
    for epoch in range(state["epoch"] + 1, epochs + 1):
        if state["stopped_early"]:
            break
        _seed_all(seed * 100_003 + epoch)
        order.epoch = collate.epoch = epoch
        if plan.schedule.gradual_unfreeze:
            active = set(chosen[: min(epoch, len(chosen))])
            for i in chosen:
                backbone._set_group_trainable(groups[i], i in active)
        model.train()
        if plan.bn == "frozen-stats":
            for m in model.modules():
                if isinstance(m, _BN):
                    m.eval()
        t0 = time.perf_counter()
        totals = torch.zeros(3, dtype=torch.float64)  # global: loss sum, correct, items
        bar = _Bar(progress and main, steps_per_epoch, f"epoch {epoch}/{epochs}")
        for step, (x, y) in enumerate(train_dl):
            real = min(batch_size, n_train - step * batch_size)  # items in this global batch; the rest is padding
            mine = min(max(real - per * rank, 0), per)
            if cuda and isinstance(x, torch.Tensor):
                x = x.contiguous(memory_format=torch.channels_last)
            with acc.autocast():
                if mixup > 0 and isinstance(x, torch.Tensor):
                    lam = float(np.random.beta(mixup, mixup))
                    perm = torch.randperm(len(y)).to(y.device)
                    logits = call_model(model, lam * x + (1 - lam) * x[perm]).float()
                    per_item = lam * nn.functional.cross_entropy(logits, y, reduction="none", label_smoothing=smoothing) + (1 - lam) * nn.functional.cross_entropy(
                        logits, y[perm], reduction="none", label_smoothing=smoothing)
                else:
                    logits = call_model(model, x).float()
                    per_item = nn.functional.cross_entropy(logits, y, reduction="none", label_smoothing=smoothing)
            weight = (torch.arange(len(y), device=y.device) < mine).to(per_item.dtype)
            loss_sum = (per_item * weight).sum()
            # DDP averages gradients over processes: scale so the average is the global mean over real items
            loss = loss_sum * (n_proc / real)
            step_totals = torch.stack([loss_sum.detach().double().cpu(), ((logits.detach().argmax(1) == y) * weight).sum().double().cpu(), torch.tensor(float(mine), dtype=torch.float64)])
            if n_proc > 1:
                step_totals = acc.reduce(step_totals.to(acc.device), "sum").cpu()
            if not torch.isfinite(step_totals[0]):  # the same verdict on every process: all stop together
                bar.close()
                kept = checkpoint.latest(ckpt_root)
                raise DivergedError(f"the training loss became {float(step_totals[0]) / real} at epoch {epoch}, step {step + 1}; {'kept ' + str(kept) if kept else 'no checkpoint yet'}; lower the learning rates in the plan and rerun{DIVERGED_RERUN}.")
            opt.zero_grad(set_to_none=True)
            acc.backward(loss)
            opt.step()
            sched.step()
            totals += step_totals
            bar.advance()
        bar.close()
        train_s = time.perf_counter() - t0
        throughput.append(float(totals[2]) / max(train_s, 1e-9))
        val_loss, val_acc, val_pred = evaluate_sharded(acc, model, val_dl, val_y)
        seen = float(totals[2])
        rec = {
            "stage": "stage2", "epoch": epoch, "train_loss": round(float(totals[0]) / seen, 6), "train_acc": round(float(totals[1]) / seen, 6),
            "val_loss": round(val_loss, 6), "val_acc": round(val_acc, 6), "lr": list({g["name"]: round(g["lr"], 10) for g in opt.param_groups}.values()),  # one per layer group
            "seconds": round(time.perf_counter() - t0, 3),
        }
        state["history"].append(rec)
        state["epoch"] = epoch
        improved = val_acc > state["best_val_acc"] + 1e-12
        if improved:
            state.update(best_epoch=epoch, best_val_acc=val_acc, best_val_loss=val_loss, best_val_pred=[int(v) for v in val_pred], bad_epochs=0)
        else:
            state["bad_epochs"] += 1
            if patience and state["bad_epochs"] >= patience:
                state["stopped_early"] = True
        failure = None
        if main:
            try:
                # the checkpoint first, then the best model: killed between the two, --resume continues after this
                # epoch and rewrites the best model from its checkpoint. (The other way round, the resumed run trained
                # this epoch again, and where that is not bit-reproducible (a GPU) the folder could keep a model
                # of no epoch the report names.)
                saved = dict(state, optimizer=opt.state_dict(), scheduler=sched.state_dict(), rng=_rng_state(), seed=seed)
                checkpoint.save(ckpt_root, epoch, acc.unwrap_model(model).state_dict(), saved)
                if improved:
                    _write_best(best_path, acc.unwrap_model(model).state_dict())
            except (OSError, CheckpointError) as exc:
                failure = exc
        if n_proc > 1 and any_failed(acc, failure is not None):  # every process stops when the main one cannot save
            if failure is None:
                raise CheckpointError(f"{ckpt_root}: the main process could not write the epoch-{epoch} checkpoint; the previous checkpoint is kept, rerun with --resume.")
        if failure is not None:
            if isinstance(failure, CheckpointError):
                raise failure
            raise CheckpointError(f"{best_path}: cannot write the best model ({failure}); the epoch-{epoch} checkpoint is kept, free disk space and rerun with --resume.") from None
        if log is not None and main:
            log(list(state["history"]))
    return Stage2Result(
        history=list(state["history"]), best_epoch=int(state["best_epoch"]), best_val_acc=float(state["best_val_acc"]),
        best_val_loss=float(state["best_val_loss"]), best_val_pred=list(state["best_val_pred"]), stopped_early=bool(state["stopped_early"]),
        resumed_from=resumed_from, groups=[groups[i].name for i in chosen], train_images_per_s=throughput,
    )

