"""``zoo.run``: execute a plan end to end (stage 1 on cached features, stage 2 as the plan says).

The run folder holds ``plan.yaml``, ``model/`` (``model.safetensors`` of the best model, or
``model.weights.h5`` for Keras / TF Hub sources (:mod:`zoo.runner.keras_run`), and
``config.json``: backbone, classes, preprocessing), ``stage1.json``, ``metrics.jsonl``,
``curves.png``, ``confusion.png``, ``report.md``, ``result.json``, ``checkpoints/`` and
``data.json`` (a fingerprint of the data and the split settings, so ``--resume`` refuses other data).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zoo.errors import InvalidInputError
from zoo.runner.baseline import SCRATCH_NOTE

RECOMMENDER_MAX_SAMPLES = 2000  # zoo recommend's default sample: same sample, same fingerprint, same cache
DATA_STAMP = "data.json"  # what the run was started on: data fingerprint, seed, val_frac (checked on --resume)
#: the files a run writes (atomically: ``.<name>.<random>.tmp``, renamed into place), by folder under the run folder
RUN_FILES = {
    ".": (DATA_STAMP, "plan.yaml", "stage1.json", "metrics.jsonl", "curves.png", "confusion.png", "report.md", "result.json"),
    "model": ("config.json", "model.safetensors", "model.weights.h5"),
    "checkpoints": ("LATEST",),
}


@dataclass
class RunResult:
    """What a run produced (also ``RUN/result.json``)."""

    out: str
    backbone: str
    stage1_val_acc: float
    final_val_acc: float
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    skipped_unreadable: int
    features_cached: bool
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: int | None = None
    from_scratch: bool = False
    refit_items: int = 0  # a probe refit on every item (train + held-out) with the chosen L2; 0: not refit


def split(labels: np.ndarray, val_frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified train / held-out indices: ``val_frac`` of each class (at least one, never all)."""
    rng = np.random.default_rng(seed)
    tr, va = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = min(len(idx) - 1, max(1, int(round(val_frac * len(idx)))))
        va.append(idx[:k])
        tr.append(idx[k:])
    return np.sort(np.concatenate(tr)), np.sort(np.concatenate(va))


def mid_group(plan: Any, backbone: Any, fs: Any) -> tuple[str | None, str | None]:
    """lp-concat's mid-level group (:func:`zoo.runner.stage1.concat_group`) and the report's note about it;
    ``(None, None)`` for any other strategy, ``(None, why)`` when the features hold no such group
    (a TF Hub model exposes no intermediate output): the run is then a probe on the final features."""
    if plan.strategy != "lp-concat":
        return None, None
    from zoo.runner.stage1 import concat_group

    names = [g.name for g in backbone.layer_groups]
    group = concat_group(names) if len(names) > 1 else None
    if group is None or group not in fs.groups:
        return None, f"lp-concat ran as a linear probe on the final features: {plan.backbone} exposes no pooled output of a middle layer group."
    d = fs.groups[group].shape[1]
    return group, f"lp-concat: the head reads layer group {group}'s pooled output ({d} features) and the final features ({fs.final.shape[1]}), each block scaled to unit RMS on the training items."


def _dataset(data: Any) -> Any:
    from zoo.recommender.data import load_dataset

    # training uses every readable item (the recommender saw a sample), read in one pass; the fingerprint is the
    # recommender's for data of at most its sample size (a sample first, then load_dataset(max_samples=n), listed and
    # opened every file twice, and when the sample held a truncated file, n fell short and dropped readable items).
    # Headers only: each image is decoded by check_decoding, or vouched for by the feature cache (see _run_in)
    return load_dataset(data, max_samples=RECOMMENDER_MAX_SAMPLES, whole=True, decode=False)


def _load(model_id: str, from_scratch: bool, seed: int) -> Any:
    """``zoo.load``; for the baseline, random weights drawn from ``seed``: the source's own
    initialisation when its loader takes ``pretrained=False`` (timm), else every module's ``reset_parameters``."""
    import torch

    import zoo

    if not from_scratch:
        return zoo.load(model_id)
    torch.manual_seed(seed)
    try:
        return zoo.load(model_id, pretrained=False)
    except TypeError:
        torch.manual_seed(seed)
    backbone = zoo.load(model_id)
    if backbone.framework != "torch":
        raise InvalidInputError(f"{model_id}: --from-scratch supports torch sources; pick a timm or torchvision backbone for the baseline.")
    for module in backbone.model.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return backbone


def _framework(model_id: str) -> str | None:
    """The framework of ``model_id``'s source (``torch``, ``tensorflow``, ...) as its plugin declares it, no model loaded."""
    import zoo

    return zoo.sources().get(str(model_id).split(":", 1)[0], {}).get("framework")


def _check_options(plan: Any, epochs: int | None, seed: int, batch_size: int | None, val_frac: float, processes: int) -> None:
    """One-line errors for options no run can use (of the wrong type or range), before anything is written."""
    from zoo._args import real, whole

    if batch_size is not None:
        whole("batch size", batch_size, 1, f"pass --batch-size 1 or more, or leave it out for the plan's ({plan.schedule.batch_size}).")
    whole("seed", seed, 0, "pass --seed 0 or another non-negative integer.")
    if epochs is not None:
        whole("epochs", epochs, 0, f"pass --epochs 0 for stage 1 only, or leave it out for the plan's ({plan.schedule.epochs}).")
    real("val_frac", val_frac, low=0, high=1, open_low=True, open_high=True, hint="the share of each class held out, e.g. 0.2.")
    whole("processes", processes, 1, "pass 1 or more.")
    if processes > 1 and _framework(plan.backbone) not in (None, "torch"):  # the Keras path trains on MirroredStrategy, never on processes
        raise InvalidInputError(f"{plan.backbone}: --processes applies to torch sources; a Keras or TF Hub run trains in one process, "
                                "on every visible GPU (tf.distribute.MirroredStrategy); drop --processes.")


def _check_unfreeze(plan: Any, backbone: Any) -> None:
    """The plan's ``unfreeze`` selectors name groups this backbone has, and each of its ``lr`` group keys a group they select
    (before stage 1 writes anything)."""
    from zoo.errors import LayerGroupRangeError
    from zoo.runner.stage2 import resolve_selectors

    n = len(backbone.layer_groups)
    try:
        chosen = set(resolve_selectors(plan.unfreeze, n))
    except LayerGroupRangeError as exc:
        raise InvalidInputError(f"the plan's unfreeze names group {exc.k} from one end, but {plan.backbone} has {exc.n_groups} layer groups; "
                                f"use top-1..top-{exc.n_groups} or early-1..early-{exc.n_groups} (or all), or regenerate the plan for this backbone.") from None
    # a learning rate for groups the plan does not unfreeze (or the backbone does not have) would be silently unused
    unused = []
    for key in plan.lr if plan.unfreeze else ():  # a probe trains no group (nor uses the head's rate: its head is fit by L-BFGS)
        try:
            if key != "head" and not set(resolve_selectors([key], n)) & chosen:
                unused.append(key)
        except LayerGroupRangeError:
            unused.append(key)
    if unused:
        raise InvalidInputError(f"the plan's lr names {', '.join(unused)}, which its unfreeze ({', '.join(plan.unfreeze) or 'empty'}) does not select on {plan.backbone} "
                                f"({n} layer groups), so that rate would be unused; remove it or add the group to unfreeze.")


def _check_out(out: Path, plan: Any, resume: bool) -> None:
    """One-line errors for a run folder no run can use, before any framework is imported or model loaded: a file in the
    way, a folder this process cannot write in, a folder holding a run (without ``resume``, or of another plan)."""
    near = Path(".")
    for p in (out, *out.parents):  # the nearest existing ancestor must be a folder, else mkdir fails
        if p.exists():
            if not p.is_dir():
                raise InvalidInputError(f"{out}: is a file; pass a folder to --out." if p == out else f"{out}: {p} is a file; pass a folder to --out.")
            near = p
            break
    saved = out / "plan.yaml"  # written by every run before any result: a folder without it holds nothing to continue
    if resume:
        if not saved.is_file():
            raise InvalidInputError(f"{out}: nothing to resume (no run there); drop --resume to start one.")
        if saved.read_text(encoding="utf-8") != plan.to_yaml():
            raise InvalidInputError(f"{out}: holds a run of a different plan; resume with the same plan or pass a new --out.")
    elif (out / "checkpoints").exists() or (out / "result.json").exists():
        raise InvalidInputError(f"{out}: already holds a run; pass --resume to continue it or a new --out.")
    elif saved.is_file():  # a run stopped before its first checkpoint (in stage 1): starting over would overwrite it
        same = saved.read_text(encoding="utf-8") == plan.to_yaml()
        raise InvalidInputError(f"{out}: holds a run that stopped before it finished; pass --resume to continue it or a new --out." if same
                                else f"{out}: holds a run of a different plan; pass a new --out (or --resume with that run's plan).")
    _check_writable(out, near)


def _check_backbone_modality(plan: Any, modality: str | None, data: Any = None) -> None:
    """The plan's backbone reads the plan's (and the data's) modality: a plan edited to another backbone, or to another
    modality, failed in feature extraction after the run folder was made ("input #0 is a PosixPath; text models take strings")."""
    if modality is None or modality == plan.modality:
        return
    where = f"{data} holds {plan.modality} data" if data is not None else f"the plan is for {plan.modality} data"
    raise InvalidInputError(f"{plan.backbone} is a{'n' if modality == 'image' else ''} {modality} model but {where}; put a{'n' if plan.modality == 'image' else ''} "
                            f"{plan.modality} backbone in the plan (`zoo recommend --data DATA -o plan.yaml` writes one that fits).")


def _check_out_of_data(out: Path, data: str | Path) -> None:
    """The run folder is neither the image folder ``data`` nor inside it (except under a hidden folder, which is not data):
    its files (``model/``, ``checkpoints/``, ``curves.png``) would be read as classes or images by the next run on it."""
    root = Path(data).expanduser()
    if not root.is_dir():
        return
    try:
        o, r = out.expanduser().resolve(), root.resolve()
    except (OSError, RuntimeError):
        return
    if o == r:
        raise InvalidInputError(f"{out}: is the data folder; the run's files (model/, checkpoints/) would be read as classes by the next run on it: "
                                "pass an --out outside it.")
    if r in o.parents and not any(part.startswith(".") for part in o.relative_to(r).parts):
        raise InvalidInputError(f"{out}: is inside the data folder {data}; the run's files (model/, checkpoints/, curves.png) would be read as "
                                "classes or images by the next run on it: pass an --out outside it.")


def _check_writable(out: Path, near: Path) -> None:
    """``out`` can be made and written: a folder is made and removed in ``near``, its nearest existing ancestor (``out``
    itself when it exists). Permissions alone do not say it (a read-only file system, an ACL, root on a 0555 folder)."""
    import os
    import tempfile

    try:
        os.rmdir(tempfile.mkdtemp(prefix=".zoo-write-check-", dir=near))
    except OSError as exc:
        where = "in it" if near == out else f"in {near}"
        raise InvalidInputError(f"{out}: cannot write {where} ({exc.strerror or type(exc).__name__}); pass an --out in a folder you can write to.") from None


def data_stamp(ds: Any, seed: int, val_frac: float) -> dict[str, Any]:
    """What a run is started on: a sha256 over the sorted (item, class name) pairs of the loaded dataset
    (image folders: each file's path relative to the folder and its size; tables: each text), with the
    split settings (``seed``, ``val_frac``). Written to ``RUN/data.json``; ``--resume`` requires the same."""
    rows = []
    for item, label in zip(ds.items, ds.labels):
        name = ds.classes[int(label)]
        if isinstance(item, str):
            rows.append(json.dumps(["text", hashlib.sha256(item.encode("utf-8")).hexdigest(), name]))
        else:
            f = Path(item)
            rows.append(json.dumps([f.relative_to(ds.path).as_posix(), f.stat().st_size, name]))
    h = hashlib.sha256(f"{ds.modality}\n".encode())
    for row in sorted(rows):
        h.update(row.encode("utf-8") + b"\n")
    return {"fingerprint": h.hexdigest(), "items": len(rows), "classes": len(ds.classes), "seed": int(seed), "val_frac": float(val_frac)}


def _check_data(out: Path, stamp: dict[str, Any], resume: bool) -> None:
    """On ``resume``, refuse a run folder started on other data or split settings (folders from before
    ``data.json`` resume unchecked)."""
    path = out / DATA_STAMP
    if not resume or not path.is_file():
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
        then = (str(old["fingerprint"]), int(old["seed"]), float(old["val_frac"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidInputError(f"{path}: unreadable ({type(exc).__name__}); delete it to resume without the data check, or pass a new --out.") from None
    if then[1:] != (stamp["seed"], stamp["val_frac"]):
        raise InvalidInputError(f"{out}: holds a run with --seed {then[1]} --val-frac {then[2]:g}; resume with those (and the same data) or pass a new --out.")
    if then[0] != stamp["fingerprint"]:
        raise InvalidInputError(f"{out}: holds a run on other data; resume with the same data or pass a new --out.")
    # the schedule (cosine over epochs x steps) and the batches are fixed when a run starts: a resume keeps them
    was = {k: old.get(k) for k in ("epochs", "batch_size")}
    if all(isinstance(v, int) for v in was.values()) and (was["epochs"], was["batch_size"]) != (stamp.get("epochs"), stamp.get("batch_size")):
        raise InvalidInputError(f"{out}: holds a run with --epochs {was['epochs']} --batch-size {was['batch_size']}; resume with those (other values would "
                                "change its learning-rate schedule and batches) or pass a new --out.")


def start_folder(out: Path, plan: Any, stamp: dict[str, Any]) -> None:
    """Create the run folder and write what the run starts from: ``data.json``, then ``plan.yaml``
    (a folder with ``plan.yaml`` is one ``--resume`` continues)."""
    from zoo.runner import report

    out.mkdir(parents=True, exist_ok=True)
    report.write_text(out / DATA_STAMP, json.dumps(stamp, indent=2))
    report.write_text(out / "plan.yaml", plan.to_yaml())


def run(
    plan: Any,
    data: str | Path,
    *,
    out: str | Path | None = None,
    resume: bool = False,
    epochs: int | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    val_frac: float = 0.2,
    progress: bool = True,
    processes: int = 1,
    from_scratch: bool = False,
    refit: bool = True,
) -> RunResult:
    """Execute ``plan`` on ``data`` and write the run folder.

    Args:
        plan: a :class:`zoo.Plan` or the path of one (``zoo recommend -o plan.yaml``).
        data: an image folder (one sub-folder per class) or a CSV/JSONL of text and label.
        out: the run folder (default ``runs/<backbone>-<time>``, a ``/`` in the backbone's name as ``--``).
        resume: continue from the last checkpoint in ``out`` (which must hold a run of the same
            plan, started on the same data with the same ``seed`` and ``val_frac``).
        epochs: stage-2 epochs (default: the plan's); 0: stage 1 only.
        seed: fixes the split, the head, the data order and the augmentation (0 or more).
        batch_size: default the plan's (at least 1).
        val_frac: share of each class held out for early stopping and the report.
        processes: stage-2 worker processes (gloo on CPU); ``batch_size`` stays the global batch.
        from_scratch: the baseline: the plan's architecture from random weights, every group
            trained at a from-scratch learning rate, no stage-1 probe (:mod:`zoo.runner.baseline`).
        refit: when the saved model is the probe (a probe plan, or a fine-tuning plan whose best
            held-out epoch is the probe's, epoch 0), fit its head once more on every item, held-out
            ones included, with the L2 strength the held-out split chose (scikit-learn's
            ``LogisticRegressionCV`` refit); the reported held-out accuracy is the split fit's.
            ``False``: the saved head is the one the held-out split scored. Stage 2 always starts
            from the split fit's head (the held-out items judge its epochs).

    Returns:
        :class:`RunResult`; the same figures are in ``out/result.json``.

    Raises:
        InvalidInputError: bad data or options, text data for a Keras/TF Hub source, an occupied ``out`` (or one another run is writing)
            without ``resume``, ``out`` a file, or ``resume`` without a run (of the same plan and data) in ``out``.
        DivergedError: the loss became NaN (the last checkpoint is kept).

    Example:
        >>> result = zoo.run("plan.yaml", "digits/", out="runs/digits")   # doctest: +SKIP
        >>> result.final_val_acc                                            # doctest: +SKIP
        0.97
    """
    from zoo.recommender.plan import Plan

    if isinstance(plan, dict):
        plan = Plan.parse(plan)
    elif not isinstance(plan, Plan):
        if not isinstance(plan, (str, Path)):
            raise InvalidInputError(f"plan must be a zoo.Plan, a dict or the path of a plan file, got {type(plan).__name__}; write one with `zoo recommend -o plan.yaml`.")
        plan = Plan.read(plan)
    if not isinstance(data, (str, Path)):
        raise InvalidInputError(f"data must be the path of an image folder or a CSV/JSONL file, got {type(data).__name__}.")
    if plan.strategy == "lp-concat" and plan.unfreeze:
        raise InvalidInputError(f"the plan is lp-concat (a probe) but unfreezes {', '.join(plan.unfreeze)}; set unfreeze: [] or strategy: lp-ft.")
    if plan.strategy in ("linear-probe", "head-only") and plan.unfreeze:
        raise InvalidInputError(f"the plan is {plan.strategy} (a probe) but unfreezes {', '.join(plan.unfreeze)}; set unfreeze: [] or strategy: lp-ft.")
    if not plan.unfreeze and plan.schedule.epochs > 0 and epochs is None and not from_scratch:
        raise InvalidInputError(f"the plan's schedule.epochs is {plan.schedule.epochs} but its unfreeze is empty, so no epoch would train (stage 1 only); "
                                "set unfreeze (e.g. [top-1]) and a fine-tuning strategy, or schedule.epochs: 0.")
    _check_options(plan, epochs, seed, batch_size, val_frac, processes)
    if _framework(plan.backbone) == "tensorflow":  # before anything is written (zoo-hub[tf] installs none of them)
        from zoo.runner.keras_model import RUN_NEEDS, require

        require(RUN_NEEDS, f"zoo run on {plan.backbone} (a Keras / TF Hub source)")
    if resume and out is None:
        raise InvalidInputError("--resume needs the run folder to continue: pass it with --out (or drop --resume to start a new run).")
    if from_scratch and (plan.schedule.epochs if epochs is None else int(epochs)) == 0:
        raise InvalidInputError(f"the plan trains no epochs (a {plan.strategy} plan), so a from-scratch baseline would be an untrained model; pass --epochs N for the baseline.")
    if from_scratch:
        from zoo.runner.baseline import scratch_plan

        framework = _framework(plan.backbone)
        if framework not in (None, "torch"):  # before anything is loaded or written (the Keras loader named an option instead)
            raise InvalidInputError(f"{plan.backbone}: --from-scratch supports torch sources (timm, torchvision, hf), not {framework}; "
                                    "run the baseline with a torch backbone of the same family.")
        plan = scratch_plan(plan, batch_size)
    from zoo._api import catalog_modality

    _check_backbone_modality(plan, catalog_modality(plan.backbone))  # an unknown source is its one line now, not after the data is read
    named = out is not None
    # ~ as in the data's path (`--out=~/runs/a`: no shell expands that ~)
    out = Path(out).expanduser() if named else Path("runs") / f"{plan.backbone.split(':', 1)[-1].replace('/', '--')}-{time.strftime('%Y%m%d-%H%M%S')}"
    _check_out_of_data(out, data)
    _check_out(out, plan, resume)
    with _hold(out):
        _check_out(out, plan, resume)  # again, holding the folder: a run that just ended there may have filled it
        try:
            return _run_in(plan, data, out, named, resume, epochs, seed, batch_size, val_frac, progress, processes, from_scratch, refit)
        except KeyboardInterrupt as exc:
            exc.zoo_run_dir = str(out)  # type: ignore[attr-defined]  # the CLI's hint: what to --resume, if anything
            raise


@contextmanager
def _hold(out: Path) -> Iterator[None]:
    """Hold run folder ``out`` for this process (a lock under ``$ZOO_HOME/locks``): two runs writing one folder would
    delete each other's checkpoints and mix their files, so a second one is refused in one line."""
    from filelock import FileLock, Timeout

    from zoo.cache.records import lock_path

    busy = (f"{out}: another `zoo run` is writing this run folder now; wait for it to end (then --resume it if it was stopped), "
            "or pass a new --out.")
    try:
        lock = FileLock(str(lock_path(out)))
        lock.acquire(timeout=0)
    except Timeout:
        raise InvalidInputError(busy) from None
    except OSError:  # a read-only $ZOO_HOME (a shared cache): the lock file goes in the run folder, which is written anyway
        out.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(out / ".zoo-run.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise InvalidInputError(busy) from None
    try:
        yield
    finally:
        lock.release()


def _run_in(plan: Any, data: str | Path, out: Path, named: bool, resume: bool, epochs: int | None, seed: int, batch_size: int | None,
            val_frac: float, progress: bool, processes: int, from_scratch: bool, refit: bool) -> RunResult:
    """The rest of :func:`run`, holding the run folder ``out``."""
    import torch

    from zoo._io import remove_dead_temps, remove_stale_temps

    from zoo.recommender.data import check_decoding
    from zoo.recommender.features import cached, features_for
    from zoo.runner import report
    from zoo.runner.stage1 import probe
    from zoo.runner.stage1 import refit as refit_probe

    for sub, names in RUN_FILES.items():  # a run killed midway left its temporary files (a whole model's among them)
        for name in names:
            remove_stale_temps(out / sub, f".{name}.", ".tmp")
    remove_dead_temps(out / "model", "keras-weights", "")  # a Keras run's scratch folder (zoo.runner.keras_model.save_weights): a whole model
    if (out / "checkpoints").is_dir():  # a checkpoint folder being written (checkpoint.commit_epoch): LATEST never names one
        for p in (out / "checkpoints").iterdir():
            if p.is_dir() and re.fullmatch(r"\.epoch-\d{4,}\.[A-Za-z0-9_]{8}", p.name):
                shutil.rmtree(p, ignore_errors=True)
    if (out / "model").is_dir():  # and safetensors' own (save_file's .tmpXXXXXX), which only a run writes there
        for p in (out / "model").iterdir():
            if re.fullmatch(r"\.tmp[A-Za-z0-9]{6}", p.name):
                p.unlink(missing_ok=True)
    if progress and not named:  # where it goes, before the minutes of training (a Ctrl-C's resume needs --out it)
        print(f"run folder: {out}", file=sys.stderr)
    ds = _dataset(data)
    if ds.modality != plan.modality:
        raise InvalidInputError(f"{data}: {ds.modality} data but the plan is for {plan.modality}; run `zoo recommend --data {data}` again.")
    # what fixes the schedule, as asked (the from-scratch plan already carries its own epochs and batch)
    n_epochs = plan.schedule.epochs if epochs is None else int(epochs)
    bs = plan.schedule.batch_size if batch_size is None else int(batch_size)

    def decoded(ds: Any) -> tuple[Any, dict[str, Any]]:
        """``ds`` with each image decoded once (files whose header reads but whose pixels do not are skipped), its stamp checked."""
        ds = check_decoding(ds)
        stamp = dict(data_stamp(ds, seed, val_frac), epochs=n_epochs, batch_size=bs)
        _check_data(out, stamp, resume)
        return ds, stamp

    stamp = dict(data_stamp(ds, seed, val_frac), epochs=n_epochs, batch_size=bs)
    try:
        _check_data(out, stamp, resume)
    except InvalidInputError:
        if ds.decoded:
            raise
        ds, stamp = decoded(ds)  # the run may have started without a file that reads but does not decode
    if epochs is not None and int(epochs) > 0 and not plan.unfreeze and not from_scratch:  # accepted (the benchmark grid passes it), but
        # said, once the run is past its checks (a refused run prints its one error line alone)
        print(f"zoo run: --epochs {epochs} trains nothing: the plan unfreezes no layer group (a {plan.strategy} plan), so the run is its stage-1 probe; "
              "set unfreeze (and a fine-tuning strategy) in the plan to fine-tune.", file=sys.stderr)
    backbone = _load(plan.backbone, from_scratch, seed)
    _check_backbone_modality(plan, backbone.input_spec.modality, data)  # an id the catalog does not list (checked above otherwise)
    _check_unfreeze(plan, backbone)
    res = plan.resolution if ds.modality == "image" else None
    only: set[str] = set()  # stage 1 (and its refit) reads the final features, and lp-concat's middle group
    if plan.strategy == "lp-concat" and len(backbone.layer_groups) > 1:
        from zoo.runner.stage1 import concat_group

        only = {concat_group([g.name for g in backbone.layer_groups])}
    # the sample's features in the cache were extracted from these very files (paths, sizes and times, under zoo's
    # current reading rules: the cache key): each of them decoded, and decoding them all once more to check is not needed
    hit = cached(backbone, ds, res, only) if not from_scratch and backbone.framework == "torch" else None
    if hit is None and not ds.decoded:
        ds, stamp = decoded(ds)
    if backbone.framework != "torch":  # Keras / TF Hub: stage 2 on fit (zoo.runner.keras_run)
        from zoo.runner.keras_run import run as run_keras

        return run_keras(
            plan, data, ds, backbone, out=out, resume=resume, epochs=epochs, seed=seed, batch_size=batch_size, val_frac=val_frac, progress=progress,
            refit=refit, stamp=stamp,
        )
    start_folder(out, plan, stamp)
    torch.manual_seed(seed)
    tr, va = split(ds.labels, val_frac, seed)
    n_classes = len(ds.classes)
    stage2 = bool(plan.unfreeze) and n_epochs > 0
    if from_scratch:  # no probe on random features (and they must not enter the pretrained feature cache)
        from zoo.runner.baseline import zero_head

        head_w, head_b, stage1 = zero_head(n_classes, backbone.feature_dim, ds.labels[va])
        mid, concat_note = None, None
        s1_metrics = {k: v for k, v in stage1.items() if k != "val_pred"}
        s1_acc, s1_pred, feats_cached, feats_path = stage1["val_acc"], np.asarray(stage1["val_pred"]), False, None
        feats_reused = 0
    else:
        # stage 1 (and its refit, after stage 2) reads the final features and lp-concat's middle group only: the other
        # groups and the source head's logits are neither read from the cache nor held through fine-tuning
        fs = hit if hit is not None else features_for(
            backbone, ds, res, only=only, sample=RECOMMENDER_MAX_SAMPLES)  # data larger than the recommender's sample: the rows it extracted are reused
        mid, concat_note = mid_group(plan, backbone, fs)
        s1 = probe(fs, ds.labels, tr, va, n_classes, group=mid)
        if refit and not stage2:  # the probe is the saved model
            s1 = refit_probe(s1, fs, ds.labels, tr, va, n_classes)
        stage1 = dict(s1.metrics(), val_pred=[int(v) for v in s1.val_pred])
        head_w, head_b, s1_metrics = s1.weight, s1.bias, s1.metrics()
        s1_acc, s1_pred, feats_cached, feats_path = s1.val_acc, s1.val_pred, fs.cached, str(fs.path) if fs.path else None
        feats_reused = len(fs.labels) if fs.cached else int(fs.meta.get("reused", 0))
    report.write_text(out / "stage1.json", json.dumps(stage1))
    spec = backbone.input_spec
    config = {
        "backbone": plan.backbone, "framework": backbone.framework, "modality": ds.modality, "classes": list(ds.classes),
        "num_classes": n_classes, "feature_dim": backbone.feature_dim, "concat_group": mid,
        "architecture": f"ClassifierModel(backbone -> [pooled {mid}, pooled features] -> dropout -> linear head)" if mid else "ClassifierModel(backbone -> dropout -> linear head)",
        "preprocessor": {"resolution": res or spec.size or 224, "resize": "bicubic-shorter-side+center-crop", "mean": spec.mean, "std": spec.std, "input_range": spec.input_range}
        if ds.modality == "image" else {"tokenizer": plan.backbone, "max_length": getattr(backbone, "max_length", None)},
    }
    report.write_text(out / "model" / "config.json", json.dumps(config, indent=2))
    records: list[dict[str, Any]] = [s1_metrics]
    train_items = [ds.items[i] for i in tr]
    val_items = [ds.items[i] for i in va]
    if stage2:
        from zoo.runner.stage2 import fine_tune

        def log(hist: list[dict[str, Any]]) -> None:
            report.write_metrics(out / "metrics.jsonl", records + hist)

        r2 = fine_tune(
            backbone, plan, head_w, head_b, (train_items, ds.labels[tr]), (val_items, ds.labels[va]), stage1,
            out=out, epochs=n_epochs, batch_size=bs, seed=seed, resume=resume, progress=progress, log=log, processes=processes,
        )
        history, best_epoch, final_acc, pred = r2.history, r2.best_epoch, r2.best_val_acc, np.asarray(r2.best_val_pred)
        stopped, resumed_from, groups = r2.stopped_early, r2.resumed_from, r2.groups
        if refit and best_epoch == 0 and not from_scratch:
            # no epoch beat the probe: the saved model is stage 1's head on the pretrained backbone, refit like a probe plan's
            from safetensors.torch import load_file

            from zoo.runner.stage2 import _write_best

            full = refit_probe(s1, fs, ds.labels, tr, va, n_classes)
            best = load_file(str(out / "model" / "model.safetensors"))
            best["head.weight"], best["head.bias"] = torch.as_tensor(full.weight), torch.as_tensor(full.bias)
            _write_best(out / "model" / "model.safetensors", best)
            stage1["refit"] = full.refit
            report.write_text(out / "stage1.json", json.dumps(stage1))
    else:
        from zoo.runner.stage2 import _write_best

        model = backbone.with_head(n_classes, concat_group=mid) if mid else backbone.with_head(n_classes)
        with torch.no_grad():
            model.head.weight.copy_(torch.as_tensor(head_w))
            model.head.bias.copy_(torch.as_tensor(head_b))
        _write_best(out / "model" / "model.safetensors", model.state_dict())
        history, best_epoch, final_acc, pred, stopped, resumed_from, groups = [], 0, s1_acc, s1_pred, False, None, []
    records += history
    report.write_metrics(out / "metrics.jsonl", records)
    report.plot_curves(out / "curves.png", stage1, history)
    report.plot_confusion(out / "confusion.png", report.confusion(ds.labels[va], pred, n_classes), ds.classes)
    result = RunResult(
        out=str(out), backbone=plan.backbone, stage1_val_acc=s1_acc, final_val_acc=float(final_acc), best_epoch=best_epoch,
        epochs_run=len(history), stopped_early=stopped, skipped_unreadable=ds.skipped, features_cached=feats_cached,
        history=history, resumed_from=resumed_from, from_scratch=from_scratch, refit_items=int((stage1.get("refit") or {}).get("items", 0)),
    )
    summary = dict(
        backbone=plan.backbone, data=str(data), samples=ds.n, classes=n_classes, train=len(tr), val=len(va), skipped_unreadable=ds.skipped,
        strategy=plan.strategy, unfreeze=plan.unfreeze, groups=groups, resolution=config["preprocessor"].get("resolution"), seed=seed, features_cached=feats_cached,
        features=feats_path, features_reused=feats_reused, stage1=stage1, from_scratch=from_scratch,
        notes=([concat_note] if concat_note else []) + report.refit_note(stage1)
        + ([f"baseline {SCRATCH_NOTE}, learning rate {plan.lr['head']:g}; the plan's epochs, schedule and augmentation."] if from_scratch else []), history=history, best_epoch=best_epoch, final_val_acc=float(final_acc), stopped_early=stopped,
    )
    report.write_report(out / "report.md", summary)
    report.write_text(out / "result.json", json.dumps(asdict(result), indent=2))
    return result
