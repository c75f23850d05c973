"""``zoo run`` for Keras and TF Hub sources: stage 1 on cached features, stage 2 on ``Model.fit``.

Same run folder as the torch path (:mod:`zoo.runner.pipeline`), with ``model/model.weights.h5``
instead of ``model.safetensors``. What differs, and why:

* **Features** (stage 1): the pooled output of every layer group in one pass of a multi-output
  Keras model, written in the recommender's cache format under the same key
  (:mod:`zoo.recommender.features`), so a cache left by ``zoo recommend`` is reused and the run's
  own extraction is there for the next one. The head is fitted by the framework-neutral
  :func:`zoo.runner.stage1.fit_head` on those arrays.
* **Stage 2** runs ``fit`` on a small ``Model`` subclass whose ``train_step`` applies one
  optimizer per layer group. Keras has no per-variable learning rate, so per-group learning
  rates are per-group optimizers (SGD with momentum or AdamW, the plan's), each driven by the
  plan's warm-up + cosine schedule (:func:`zoo.runner.stage2.lr_lambda`) times the group's own
  base rate (:func:`zoo.runner.stage2.group_lr`), all on the head optimizer's step counter. For
  SGD the weight decay is added to the gradient (as torch's SGD does); AdamW's is Keras' own
  (decoupled, as torch's AdamW).
* **BatchNorm**: with ``plan.bn == "frozen-stats"`` the backbone runs in inference mode (the Keras
  transfer-learning guide's ``training=False``; ``train_step`` passes it to the classifier call,
  since Keras 3 lets the outer ``training=True`` override the flag recorded on the nested
  backbone): every BatchNormalization layer keeps its moving statistics while its weights train. With
  ``bn == "train"`` the unfrozen groups' BatchNorm trains its statistics; frozen layers never do
  (Keras runs a non-trainable BatchNormalization in inference mode).
* **Distribution**: ``tf.distribute.MirroredStrategy`` when several GPUs are visible (the backbone
  is then rebuilt inside its scope), else the default strategy (one GPU or the CPU).
* **Checkpoints** each epoch (:mod:`zoo.runner.keras_checkpoint`): ``model.weights.h5``, every
  optimizer variable, and a JSON state, written atomically. Every batch's order and augmentation
  derive from ``(seed, epoch, batch)``, so ``resume=True`` replays what an uninterrupted run does.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zoo._compat import import_tensorflow
from zoo.errors import CheckpointError, DivergedError, InvalidInputError
from zoo.runner.checkpoint import DIVERGED_RERUN
from zoo.runner.keras_checkpoint import STATE, latest_checkpoint, load_checkpoint, save_checkpoint
from zoo.runner.keras_model import WEIGHTS_NAME, build_classifier, eval_batch, run_resolution, save_weights, set_head, to_batch, train_image

tf = import_tensorflow()

VAL_CACHE_BYTES = 256 * 2**20  # held-out batches kept in memory below this size (else re-read each epoch)


# ---- stage 1: features in the recommender's cache ------------------------------------------------


def _tf_fn(model: Any) -> Callable[[np.ndarray], Any]:
    return tf.function(lambda x: model(x, training=False), reduce_retracing=True)


def _group_model(backbone: Any) -> tuple[Any, list[str]]:
    """A model giving the pooled output of each layer group (the last one = the backbone's features)."""
    k, base = backbone.keras, backbone.model
    groups = list(backbone.layer_groups)
    outs, names = [], []
    try:
        for g in groups[:-1]:
            t = g.modules[-1].output  # the group's last layer in execution order (a Keras layer)
            if len(t.shape) == 4:
                t = k.layers.GlobalAveragePooling2D(name=f"zoo_pool_{len(outs)}")(t)
            elif len(t.shape) != 2:
                raise ValueError("unpoolable")
            outs.append(t)
            names.append(g.name)
    except (AttributeError, ValueError, TypeError):  # TF Hub: groups of variables, no intermediate outputs
        outs, names = [], []
    outs.append(base.output)
    names.append(groups[-1].name)
    return k.Model(base.inputs, outs), names


def _head_logits(head: Any) -> Callable[[np.ndarray], np.ndarray] | None:
    """Pooled features -> the source head's logits (before its final softmax), for the recommender's source-head
    scores; ``None`` without a head of that shape. A Dense top's pre-activation (Keras: after the layers before it,
    MobileNetV3's conv_2 + hard-swish), or a softmax layer's input (TF Hub classification handles, whose features
    are the logits)."""
    if head is None:
        return None
    layers = list(getattr(head, "layers", None) or [head])
    body, last = layers[:-1], layers[-1]
    weights = last.get_weights()
    if type(last).__name__ == "Softmax" and not weights:
        final = None
    elif len(weights) == 2:
        final = weights
    else:
        return None

    def logits(x: np.ndarray) -> np.ndarray:
        for layer in body:
            x = np.asarray(layer(x, training=False), dtype=np.float32)
        return np.asarray(x if final is None else x @ final[0] + final[1], dtype=np.float32)

    return logits


def extract(
    backbone: Any, items: Sequence[Any], labels: np.ndarray, *, resolution: int | None = None, batch_size: int = 64, count_flops: bool = True,
    positions: np.ndarray | None = None, size: int | None = None,
) -> Any:
    """Pooled output of every layer group of a Keras backbone (and its source head's logits), one forward pass.

    Eval preprocessing (:func:`zoo.runner.keras_model.eval_batch`), inference mode. Returns a
    :class:`zoo.recommender.features.FeatureSet` in the cache's format (``flops_per_item`` is
    ``None``: no FLOP counter for Keras graphs here, whatever ``count_flops`` asks).
    Same signature as :func:`zoo.recommender.features.extract`, which can hand Keras backbones here: ``positions``,
    ``size``: item ``i``'s rows go to row ``positions[i]`` of arrays of ``size`` rows. Each batch's rows go straight
    into one array per group, allocated at the first batch, as the torch path does: the features exist once.
    """
    resolution = run_resolution(backbone, resolution)
    from zoo.recommender.features import FeatureSet

    model, names = _group_model(backbone)
    fn = _tf_fn(model)
    head_logits = _head_logits(backbone.source_head)
    n_rows = len(items) if positions is None or size is None else int(size)
    rows_of = np.arange(len(items)) if positions is None else np.asarray(positions)
    groups: dict[str, np.ndarray] = {}
    logits: np.ndarray | None = None

    def put(into: np.ndarray | None, rows: np.ndarray, start: int) -> np.ndarray:
        if into is None:
            into = np.empty((n_rows, *rows.shape[1:]), dtype=np.float32)
        into[rows_of[start : start + len(rows)]] = rows
        return into

    t0 = time.perf_counter()
    for start in range(0, len(items), batch_size):
        res = fn(tf.constant(eval_batch(items[start : start + batch_size], backbone, resolution)))
        res = res if isinstance(res, (list, tuple)) else [res]
        for n, r in zip(names, res):
            groups[n] = put(groups.get(n), np.asarray(r, dtype=np.float32).reshape(len(r), -1), start)
        if head_logits is not None:
            logits = put(logits, head_logits(np.asarray(res[-1], dtype=np.float32).reshape(len(res[-1]), -1)), start)
    seconds = time.perf_counter() - t0
    meta = {
        "seconds": round(seconds, 3), "seconds_per_item": seconds / max(1, len(items)), "flops_per_item": None,
        "n": len(items), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return FeatureSet(str(backbone.id), {n: groups[n] for n in names if n in groups}, np.asarray(labels, dtype=np.int64), logits, meta)


def features_for(backbone: Any, dataset: Any, resolution: int, batch_size: int = 64) -> Any:
    """The recommender's cached features of ``dataset`` for ``backbone``, extracted and saved on a miss."""
    from zoo.recommender import features as F

    prep = F.preprocessing_for(backbone, resolution)
    key = F.cache_key(str(backbone.id), dataset.fingerprint, prep)
    hit = F.load(key)
    if hit is not None and len(hit.labels) == len(dataset.labels):
        return hit
    fs = extract(backbone, dataset.items, dataset.labels, resolution=resolution, batch_size=batch_size)
    fs.meta.update(fingerprint=dataset.fingerprint, preprocessing=prep, classes=list(dataset.classes))
    F.keep(fs, key)  # a cache that cannot take them: a warning, the run goes on
    return fs


# ---- stage 2 --------------------------------------------------------------------------------------


def strategy() -> Any:
    """``MirroredStrategy`` over the visible GPUs when there are several, else the default strategy."""
    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()


class _Feeder:
    """Training batches of one epoch: order and augmentation from ``(seed, epoch, batch)`` only."""

    def __init__(self, backbone: Any, items: Sequence[Any], labels: np.ndarray, n_classes: int, resolution: int, augment: Any, batch_size: int, seed: int) -> None:
        self.backbone, self.items, self.labels, self.n_classes = backbone, list(items), np.asarray(labels), n_classes
        self.resolution, self.augment, self.batch_size, self.seed = resolution, augment, batch_size, seed
        self.epoch = 1
        self.steps = -(-len(self.items) // batch_size)

    def __call__(self) -> Any:
        from zoo.inputs import load_images_for

        epoch = self.epoch
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.items))
        for b in range(self.steps):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            rng = np.random.default_rng([self.seed, epoch, b])
            images = [train_image(im.convert("RGB"), self.resolution, self.augment, rng) for im in load_images_for(self.backbone, [self.items[i] for i in idx])]
            x = to_batch(images, self.backbone)
            y = self.labels[idx].astype(np.int64)
            soft = np.eye(self.n_classes, dtype=np.float32)[y]
            if self.augment.mixup > 0:  # CE(lam*y + (1-lam)*y[perm]) == lam*CE(y) + (1-lam)*CE(y[perm])
                lam = float(rng.beta(self.augment.mixup, self.augment.mixup))
                perm = rng.permutation(len(idx))
                x = lam * x + (1 - lam) * x[perm]
                soft = lam * soft + (1 - lam) * soft[perm]
            yield x.astype(np.float32), (soft, y)

    def dataset(self) -> Any:
        r, c = self.resolution, self.n_classes
        sig = (tf.TensorSpec((None, r, r, 3), tf.float32), (tf.TensorSpec((None, c), tf.float32), tf.TensorSpec((None,), tf.int64)))
        ds = tf.data.Dataset.from_generator(self, output_signature=sig)
        return ds.apply(tf.data.experimental.assert_cardinality(self.steps)).prefetch(1)


def _schedule(k: Any, base: float, factors: Sequence[float], counter: Callable[[], Any] | None) -> Any:
    """Learning rate ``base * factors[step]``; ``step`` from ``counter()`` (the head optimizer's) when given."""

    class GroupSchedule(k.optimizers.schedules.LearningRateSchedule):
        def __init__(self) -> None:
            self.base, self.table, self.counter = float(base), tf.constant(list(factors), tf.float32), counter

        def __call__(self, step: Any) -> Any:
            s = self.counter() if self.counter is not None else step
            i = tf.minimum(tf.cast(s, tf.int32), len(factors) - 1)
            return self.base * tf.gather(self.table, i)

        def get_config(self) -> dict[str, Any]:
            return {"base": self.base}

    return GroupSchedule()


def _no_decay(v: Any) -> bool:
    """A bias or a norm layer's scale/offset: one axis or none (weight decay skips them)."""
    return len(v.shape) <= 1


def _build(opt: Any, variables: list[Any]) -> None:
    """Build ``opt`` for ``variables``; its weight decay (AdamW) skips biases and norm weights (timm, Hugging Face Trainer)."""
    if getattr(opt, "weight_decay", None):
        opt.exclude_from_weight_decay(var_list=[v for v in variables if _no_decay(v)])
    opt.build(variables)


def _optimizer(k: Any, plan: Any, lr: Any) -> Any:
    o = plan.optimizer
    if o.name == "sgd":
        return k.optimizers.SGD(learning_rate=lr, momentum=o.momentum or 0.0, nesterov=bool(o.momentum))
    return k.optimizers.AdamW(learning_rate=lr, weight_decay=o.weight_decay, beta_1=0.9, beta_2=0.999, epsilon=1e-8)


@dataclass
class _Parts:
    """What ``train_step`` works with (a plain object: Keras does not track it)."""

    net: Any
    head_vars: list[Any]
    group_vars: dict[int, list[Any]]
    head_opt: Any
    group_opts: dict[int, Any]
    active: list[int]
    sgd_wd: float
    smoothing: float
    n_classes: int
    training: bool  # False for bn == "frozen-stats": the whole classifier in inference mode (see fine_tune)


def _trainer(k: Any, parts: _Parts) -> Any:
    """A Keras model whose ``train_step`` applies one optimizer per layer group (``fit`` drives it)."""

    class Trainer(k.Model):
        def __init__(self) -> None:
            super().__init__()
            self.net = parts.net
            self.parts = parts
            self.loss_tracker = k.metrics.Mean(name="loss")
            self.acc_tracker = k.metrics.Mean(name="acc")

        def call(self, x: Any, training: bool = False) -> Any:
            return self.net(x, training=training)

        @property
        def metrics(self) -> list[Any]:
            return [self.loss_tracker, self.acc_tracker]

        def train_step(self, data: Any) -> dict[str, Any]:
            p = self.parts
            x, (soft, y) = data
            lists = [p.group_vars[i] for i in p.active] + [p.head_vars]  # head last: its step counter drives every schedule
            opts = [p.group_opts[i] for i in p.active] + [p.head_opt]
            flat = [v for vl in lists for v in vl]
            with tf.GradientTape() as tape:
                logits = tf.cast(self.net(x, training=p.training), tf.float32)
                target = soft * (1.0 - p.smoothing) + p.smoothing / p.n_classes
                per = -tf.reduce_sum(target * tf.nn.log_softmax(logits), axis=-1)
                loss = tf.nn.compute_average_loss(per)
            grads = tape.gradient(loss, flat)
            start = 0
            for vl, opt in zip(lists, opts):
                g = grads[start : start + len(vl)]
                start += len(vl)
                if p.sgd_wd:  # coupled L2, none on biases and norm weights
                    g = [gi + p.sgd_wd * v if gi is not None and not _no_decay(v) else gi for gi, v in zip(g, vl)]
                opt.apply_gradients([(gi, v) for gi, v in zip(g, vl) if gi is not None])
            n = tf.cast(tf.shape(y)[0], tf.float32)
            self.loss_tracker.update_state(tf.reduce_mean(per), sample_weight=n)
            self.acc_tracker.update_state(tf.cast(tf.equal(tf.argmax(logits, -1), y), tf.float32))
            return {"loss": self.loss_tracker.result(), "acc": self.acc_tracker.result()}

    return Trainer()


def evaluate(predict: Callable[[Any], Any], batches: Callable[[], Any], labels: np.ndarray) -> tuple[float, float, np.ndarray]:
    """``(loss, accuracy, predictions)`` over the held-out batches (eval preprocessing, inference mode)."""
    logits = np.concatenate([np.asarray(predict(tf.constant(b)), dtype=np.float64) for b in batches()])
    z = logits - logits.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    pred = logits.argmax(1)
    return float(-logp[np.arange(len(labels)), labels].mean()), float((pred == labels).mean()), pred


def fine_tune(backbone: Any, plan: Any, s1: Any, train: tuple[Sequence[Any], np.ndarray], val: tuple[Sequence[Any], np.ndarray], stage1: dict[str, Any], *, out: Path, epochs: int, batch_size: int, seed: int, resume: bool = False, progress: bool = True, log: Callable[[list[dict[str, Any]]], None] | None = None) -> Any:
    """Stage 2 on ``fit`` (see the module docstring); writes ``out/model/model.weights.h5`` on each improvement.

    Raises:
        DivergedError: the loss became NaN or infinite (the last checkpoint is kept).
        CheckpointError: a checkpoint could not be written or read.
    """
    import zoo
    from zoo.runner.stage2 import Stage2Result, _Bar, group_lr, lr_lambda, resolve_selectors

    k = backbone.keras
    n_classes = int(s1.weight.shape[0])
    resolution = run_resolution(backbone, plan.resolution)
    strat = strategy()
    if strat.num_replicas_in_sync > 1:  # variables must be created in the strategy's scope
        with strat.scope():
            backbone = zoo.load(plan.backbone)
    groups = list(backbone.layer_groups)
    n = len(groups)
    chosen = resolve_selectors(plan.unfreeze, n)
    if not chosen:
        raise InvalidInputError("the plan unfreezes no layer group; stage 2 has nothing to train (strategy linear-probe).")
    k.utils.set_random_seed(seed)
    train_items, train_y = train
    val_items, val_y = val
    feeder = _Feeder(backbone, train_items, train_y, n_classes, resolution, plan.augment, batch_size, seed)
    ckpt_root, best_path = out / "checkpoints", out / "model" / WEIGHTS_NAME
    saved_epochs = None
    if resume and (p := latest_checkpoint(ckpt_root)) is not None:
        saved_epochs = int(json.loads((p / STATE).read_text(encoding="utf-8"))["epochs"])
    epochs = saved_epochs or epochs
    factors = [lr_lambda(epochs * feeder.steps, plan.schedule.warmup_frac, plan.schedule.decay)(s) for s in range(max(1, epochs * feeder.steps))]
    with strat.scope():
        net = build_classifier(backbone, n_classes, inference_bn=plan.bn == "frozen-stats")
        set_head(net, s1.weight, s1.bias)
        backbone.freeze()
        for i in chosen:
            backbone._set_group_trainable(groups[i], True)
        group_vars = {i: list(backbone.group_variables(groups[i], trainable_only=True)) for i in chosen}
        head_vars = list(net.get_layer("head").trainable_weights)
        head_opt = _optimizer(k, plan, _schedule(k, float(plan.lr["head"]), factors, None))
        group_opts = {i: _optimizer(k, plan, _schedule(k, group_lr(plan, i, n), factors, lambda: head_opt.iterations)) for i in chosen}
        for opt, vl in [(head_opt, head_vars), *((group_opts[i], group_vars[i]) for i in chosen)]:
            _build(opt, vl)
        wd = plan.optimizer.weight_decay if plan.optimizer.name == "sgd" else 0.0
        # Keras 3 passes the outer call's `training` into nested models, overriding the training=False
        # recorded when the classifier was built (keras-team/keras#20285), so BatchNorm in inference
        # mode means calling the classifier itself with training=False (its head is Dense + Dropout(0)).
        parts = _Parts(net, head_vars, group_vars, head_opt, group_opts, list(chosen), float(wd), float(plan.augment.label_smoothing), n_classes, plan.bn != "frozen-stats")
        trainer = _trainer(k, parts)
        trainer.compile(optimizer=k.optimizers.SGD(learning_rate=0.0), jit_compile=False)  # unused: train_step applies the group optimizers
    optimizers = [head_opt, *(group_opts[i] for i in chosen)]
    state: dict[str, Any] = {
        "epoch": 0, "epochs": epochs, "history": [], "best_epoch": 0, "best_val_acc": float(stage1["val_acc"]),
        "best_val_loss": float(stage1["val_loss"]), "best_val_pred": [int(v) for v in stage1["val_pred"]], "bad_epochs": 0,
        "stopped_early": False, "seed": seed,
    }
    resumed_from = None
    saved = load_checkpoint(ckpt_root, net, optimizers) if resume else None
    if saved is not None:
        state.update({key: saved[key] for key in state})
        resumed_from = int(saved["epoch"])
        if int(state["best_epoch"]) == resumed_from:
            save_weights(net, best_path)  # written after the checkpoint: a kill between the two is repaired here
    else:
        save_weights(net, best_path)  # stage 1's head on the pretrained backbone: epoch 0
    predict = _tf_fn(net)
    val_arrays: list[np.ndarray] | None = None
    if len(val_items) * resolution * resolution * 3 * 4 <= VAL_CACHE_BYTES:
        val_arrays = [eval_batch(val_items[i : i + batch_size], backbone, resolution) for i in range(0, len(val_items), batch_size)]

    def val_batches() -> Any:
        if val_arrays is not None:
            return iter(val_arrays)
        return (eval_batch(val_items[i : i + batch_size], backbone, resolution) for i in range(0, len(val_items), batch_size))

    patience = plan.schedule.early_stop_patience
    bases = [float(plan.lr["head"]), *(group_lr(plan, i, n) for i in chosen)]
    lr_at = lr_lambda(epochs * feeder.steps, plan.schedule.warmup_frac, plan.schedule.decay)

    class Epochs(k.callbacks.Callback):
        """Gradual unfreezing, NaN check, held-out evaluation, best model, checkpoint, early stopping."""

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            e = epoch + 1
            feeder.epoch = e
            self.t0 = time.perf_counter()
            self.bar = _Bar(progress, feeder.steps, f"epoch {e}/{epochs}")
            active = chosen[: min(e, len(chosen))] if plan.schedule.gradual_unfreeze else list(chosen)
            for i in chosen:
                backbone._set_group_trainable(groups[i], i in active)
            if active != parts.active:
                parts.active = list(active)
                trainer.make_train_function(force=True)  # the set of trained variables is part of the graph

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            self.bar.advance()
            loss = float((logs or {}).get("loss", 0.0))
            if not np.isfinite(loss):
                self.bar.close()
                kept = latest_checkpoint(ckpt_root)
                raise DivergedError(f"the training loss became {loss} at epoch {feeder.epoch}, step {batch + 1}; {'kept ' + str(kept) if kept else 'no checkpoint yet'}; lower the learning rates in the plan and rerun{DIVERGED_RERUN}.")

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.bar.close()
            e = epoch + 1
            val_loss, val_acc, val_pred = evaluate(predict, val_batches, np.asarray(val_y))
            rec = {
                "stage": "stage2", "epoch": e, "train_loss": round(float(trainer.loss_tracker.result()), 6),
                "train_acc": round(float(trainer.acc_tracker.result()), 6), "val_loss": round(val_loss, 6), "val_acc": round(val_acc, 6),
                "lr": [round(b * lr_at(int(head_opt.iterations.numpy())), 10) for b in bases], "seconds": round(time.perf_counter() - self.t0, 3),
            }
            state["history"].append(rec)
            state["epoch"] = e
            improved = val_acc > state["best_val_acc"] + 1e-12
            if improved:
                state.update(best_epoch=e, best_val_acc=val_acc, best_val_loss=val_loss, best_val_pred=[int(v) for v in val_pred], bad_epochs=0)
            else:
                state["bad_epochs"] += 1
                if patience and state["bad_epochs"] >= patience:
                    state["stopped_early"] = True
                    trainer.stop_training = True
            # the checkpoint first, then the best model: killed between the two, --resume continues after this epoch
            # and rewrites the best model from its checkpoint (as the torch path)
            save_checkpoint(ckpt_root, e, net, optimizers, state)
            if improved:
                try:
                    save_weights(net, best_path)
                except OSError as exc:  # as the torch path: one line, the last checkpoint is what --resume continues
                    kept = latest_checkpoint(ckpt_root)
                    raise CheckpointError(f"{best_path}: cannot write the best model ({str(exc).splitlines()[0]}); "
                                          f"{'kept ' + str(kept) if kept else 'no checkpoint yet'}; free disk space and rerun with --resume.") from None
            if log is not None:
                log(list(state["history"]))

    if not state["stopped_early"] and state["epoch"] < epochs:
        # verbose=0: the progress bar with ETA is the torch path's (rich, on a terminal's stderr), stdout stays the CLI's
        trainer.fit(feeder.dataset(), epochs=epochs, initial_epoch=int(state["epoch"]), callbacks=[Epochs()], verbose=0, shuffle=False)
    return Stage2Result(
        history=list(state["history"]), best_epoch=int(state["best_epoch"]), best_val_acc=float(state["best_val_acc"]),
        best_val_loss=float(state["best_val_loss"]), best_val_pred=list(state["best_val_pred"]), stopped_early=bool(state["stopped_early"]),
        resumed_from=resumed_from, groups=[groups[i].name for i in chosen],
    )


# ---- the run --------------------------------------------------------------------------------------


def _bn_note(plan: Any, backbone: Any, groups: Sequence[str]) -> str:
    """What stage 2 did with BatchNorm, for the report. A TF Hub SavedModel takes one ``training`` flag for all
    its layers, so it runs in inference mode while any layer group is frozen (:class:`zoo_tfhub.GroupedHubLayer`)."""
    if plan.bn == "frozen-stats":
        return "BatchNorm in inference mode"
    if getattr(backbone, "hub_layer", None) is not None and (len(groups) < len(backbone.layer_groups) or plan.schedule.gradual_unfreeze):
        return ("BatchNorm in inference mode while any layer group is frozen, although the plan says train: "
                "a TF Hub SavedModel takes one training flag for all its layers")
    return "BatchNorm of unfrozen groups trains"




def run(
    plan: Any, data: Any, ds: Any, backbone: Any, *, out: Path, resume: bool, epochs: int | None, seed: int, batch_size: int | None, val_frac: float, progress: bool,
    refit: bool = True, stamp: dict[str, Any] | None = None,
) -> Any:
    """:func:`zoo.runner.pipeline.run` for a Keras / TF Hub backbone (``pipeline.run`` has checked plan, options, data and
    ``out``, and passes ``stamp``, the data fingerprint :func:`zoo.runner.pipeline.data_stamp` that ``--resume`` checks)."""
    from zoo.runner import report
    from zoo.runner.pipeline import RunResult, data_stamp, mid_group, split, start_folder
    from zoo.runner.stage1 import probe
    from zoo.runner.stage1 import refit as refit_probe

    if backbone.input_spec.modality != "image" or ds.modality != "image":
        raise InvalidInputError(f"{plan.backbone}: zoo run supports image data for Keras and TF Hub sources; pick a torch backbone for text.")
    start_folder(out, plan, stamp if stamp is not None else data_stamp(ds, seed, val_frac))
    res = run_resolution(backbone, plan.resolution)
    fs = features_for(backbone, ds, res)
    tr, va = split(ds.labels, val_frac, seed)
    n_classes = len(ds.classes)
    n_epochs = plan.schedule.epochs if epochs is None else int(epochs)
    stage2 = bool(plan.unfreeze) and n_epochs > 0
    mid, concat_note = mid_group(plan, backbone, fs)
    s1 = probe(fs, ds.labels, tr, va, n_classes, group=mid)
    if refit and not stage2:  # the probe is the saved model
        s1 = refit_probe(s1, fs, ds.labels, tr, va, n_classes)
    stage1 = dict(s1.metrics(), val_pred=[int(v) for v in s1.val_pred])
    report.write_text(out / "stage1.json", json.dumps(stage1))
    pi = backbone.preprocess_input
    config = {
        "backbone": plan.backbone, "framework": backbone.framework, "keras": backbone.keras.__name__, "modality": ds.modality,
        "classes": list(ds.classes), "num_classes": n_classes, "feature_dim": backbone.feature_dim, "weights": WEIGHTS_NAME, "concat_group": mid,
        "architecture": f"keras Model(backbone(training=False) -> [pooled {mid}, pooled features] -> Dropout -> Dense head)" if mid else "keras Model(backbone(training=False) -> Dropout -> Dense head)",
        "preprocessor": {
            "resolution": res, "resize": "bicubic-shorter-side+center-crop", "input_range": [0.0, 255.0], "channels_last": True,
            "preprocess_input": f"{getattr(pi, '__module__', '')}.{getattr(pi, '__qualname__', '')}" if pi is not None else None,
            "mean": None, "std": None,
        },
    }
    report.write_text(out / "model" / "config.json", json.dumps(config, indent=2))
    records: list[dict[str, Any]] = [s1.metrics()]
    bs = plan.schedule.batch_size if batch_size is None else int(batch_size)
    if stage2:
        def log(hist: list[dict[str, Any]]) -> None:
            report.write_metrics(out / "metrics.jsonl", records + hist)

        r2 = fine_tune(
            backbone, plan, s1, ([ds.items[i] for i in tr], ds.labels[tr]), ([ds.items[i] for i in va], ds.labels[va]), stage1,
            out=out, epochs=n_epochs, batch_size=bs, seed=seed, resume=resume, progress=progress, log=log,
        )
        history, best_epoch, final_acc, pred = r2.history, r2.best_epoch, r2.best_val_acc, np.asarray(r2.best_val_pred)
        stopped, resumed_from, groups = r2.stopped_early, r2.resumed_from, r2.groups
        if refit and best_epoch == 0:
            # no epoch beat the probe: the saved model (epoch 0: the pretrained backbone) gets the probe's refit head
            full = refit_probe(s1, fs, ds.labels, tr, va, n_classes)
            net = build_classifier(backbone, n_classes, inference_bn=True, concat_group=mid)
            net.load_weights(str(out / "model" / WEIGHTS_NAME))
            set_head(net, full.weight, full.bias)
            save_weights(net, out / "model" / WEIGHTS_NAME)
            stage1["refit"] = full.refit
            report.write_text(out / "stage1.json", json.dumps(stage1))
    else:
        net = build_classifier(backbone, n_classes, inference_bn=True, concat_group=mid)
        set_head(net, s1.weight, s1.bias)
        save_weights(net, out / "model" / WEIGHTS_NAME)
        history, best_epoch, final_acc, pred, stopped, resumed_from, groups = [], 0, s1.val_acc, s1.val_pred, False, None, []
    records += history
    report.write_metrics(out / "metrics.jsonl", records)
    report.plot_curves(out / "curves.png", stage1, history)
    report.plot_confusion(out / "confusion.png", report.confusion(ds.labels[va], pred, n_classes), ds.classes)
    result = RunResult(
        out=str(out), backbone=plan.backbone, stage1_val_acc=s1.val_acc, final_val_acc=float(final_acc), best_epoch=best_epoch,
        epochs_run=len(history), stopped_early=stopped, skipped_unreadable=ds.skipped, features_cached=fs.cached,
        history=history, resumed_from=resumed_from, refit_items=int((stage1.get("refit") or {}).get("items", 0)),
    )
    summary = dict(
        backbone=plan.backbone, data=str(data), samples=ds.n, classes=n_classes, train=len(tr), val=len(va), skipped_unreadable=ds.skipped,
        strategy=plan.strategy, unfreeze=plan.unfreeze, groups=groups, resolution=res, seed=seed, features_cached=fs.cached,
        features=str(fs.path) if fs.path else None, stage1=stage1, history=history, best_epoch=best_epoch, final_val_acc=float(final_acc), stopped_early=stopped,
        notes=[f"Keras stage 2 on fit ({_bn_note(plan, backbone, groups)}); per-group learning rates as one optimizer per layer group."]
        + ([f"{plan.backbone} takes {res} px inputs only; the plan's resolution {plan.resolution} was not used."] if plan.resolution and plan.resolution != res else [])
        + ([concat_note] if concat_note else []) + report.refit_note(stage1),
    )
    report.write_report(out / "report.md", summary)
    report.write_text(out / "result.json", json.dumps(asdict(result), indent=2))
    return result
