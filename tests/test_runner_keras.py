"""zoo run for a Keras source (keras:MobileNetV3Small, random weights in Keras' cache), offline, on real digits.

Stage 1 on the recommender's feature cache, stage 2 on ``fit`` with BatchNorm in inference mode,
the run folder, resume after an interrupted epoch, ``zoo predict RUN_DIR`` and SavedModel export.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from zoo._compat import prepare_tensorflow

prepare_tensorflow()

import keras  # noqa: E402

import zoo  # noqa: E402
from zoo.cli import main  # noqa: E402
from zoo.errors import InvalidInputError  # noqa: E402
from zoo.recommender.plan import Optimizer, Plan, Schedule  # noqa: E402
from zoo.testing import write_keras_h5  # noqa: E402

APP = "MobileNetV3Small"
KERAS_ID = f"keras:{APP}.imagenet"
NO_TOP = "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5"  # the file Keras' own download writes
ROOT = Path(__file__).resolve().parents[1]
RES = 48
SEED = 7

pytestmark = pytest.mark.slow  # loads a real Keras model and trains it


def write_random_weights(models_dir: Path, seed: int = 0) -> Path:
    """``MobileNetV3Small(include_top=False)`` with random weights, in Keras' legacy HDF5 layout (the downloaded file's).

    A randomly initialised deep network maps every image to nearly the same features (the signal
    vanishes with depth), so the BatchNorm statistics are calibrated once, as pretraining would
    leave them: one training-mode pass with momentum 0 over random crops of scikit-image photos
    (not digits) sets every layer's moving mean and variance to that batch's.
    """
    from PIL import Image
    from skimage import data as skd

    rng = np.random.default_rng(seed)
    keras.utils.set_random_seed(seed)
    model = keras.applications.MobileNetV3Small(include_top=False, pooling="avg", weights=None)
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in bns:
        gamma, beta, mean, var = layer.get_weights()
        layer.set_weights([rng.normal(1.0, 0.2, gamma.shape).astype("float32"), rng.normal(0.0, 0.2, beta.shape).astype("float32"), mean, var])
        layer.momentum = 0.0
    crops = []
    for name in ("chelsea", "coffee", "astronaut", "camera"):
        im = Image.fromarray(getattr(skd, name)()).convert("RGB")
        for _ in range(16):
            side = int(rng.integers(RES, min(im.size)))
            left, top = int(rng.integers(0, im.size[0] - side + 1)), int(rng.integers(0, im.size[1] - side + 1))
            crops.append(np.asarray(im.crop((left, top, left + side, top + side)).resize((RES, RES), Image.BICUBIC), dtype=np.float32))
    model(keras.applications.mobilenet_v3.preprocess_input(np.stack(crops)), training=True)
    return write_keras_h5(model, models_dir / NO_TOP)


def digits(root: Path, limit: int) -> Path:
    spec = importlib.util.spec_from_file_location("make_digits_folder", ROOT / "scripts" / "make_digits_folder.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.write_digits(root / "digits", limit=limit)


def keras_plan(*, strategy: str = "lp-ft", unfreeze: tuple[str, ...] = ("top-1", "top-2"), epochs: int = 2, lr: float = 0.01, bn: str = "frozen-stats") -> Plan:
    plan = zoo.recommend(samples=150, classes=10, domain="documents", image_size=8)
    lrs = {"head": lr, **{sel: lr * 0.5 ** (i + 1) for i, sel in enumerate(unfreeze)}}
    return plan.model_copy(update={
        "backbone": KERAS_ID, "strategy": strategy, "unfreeze": list(unfreeze), "lr": lrs, "resolution": RES, "bn": bn,
        "optimizer": Optimizer(name="sgd", momentum=0.9, weight_decay=1e-4),
        "schedule": Schedule(epochs=epochs, batch_size=32, steps=epochs * 4, warmup_frac=0.1, early_stop_patience=3),
        "augment": plan.augment.model_copy(update={"hflip": False, "random_resized_crop": False, "trivial_augment": False, "resolution": RES}),
    })


@pytest.fixture(scope="module")
def env(tmp_path_factory: Any) -> Any:
    """Random MobileNetV3Small weights (made once) and 150 digits; the folder shared runs go into."""
    tmp = tmp_path_factory.mktemp("keras_run")
    yield {"tmp": tmp, "data": digits(tmp, 150), "weights": write_random_weights(tmp / "weights")}
    keras.backend.clear_session()


@pytest.fixture(autouse=True)
def _keras_cache(env: Any, zoo_home: Path) -> None:
    """Each test's isolated cache (``zoo_home``, from tests/conftest.py) holds the weights where Keras' download puts them.

    Once a run has extracted the digits' features, later tests find them in their cache as a
    ``zoo recommend --data`` would have left them (same backbone, data and preprocessing).
    """
    models = zoo_home.parent / "keras" / "models"
    models.mkdir(parents=True, exist_ok=True)
    shutil.copy(env["weights"], models / NO_TOP)
    if (env["tmp"] / "features").is_dir():
        shutil.copytree(env["tmp"] / "features", zoo_home / "features", dirs_exist_ok=True)


_FULL: dict[str, Any] = {}


@pytest.fixture
def full_run(env: Any, zoo_home: Path, no_network: None) -> Any:
    """An uninterrupted two-epoch LP-FT run (top-2 groups, BatchNorm in inference mode), made once for the module."""
    if "run" not in _FULL:
        out = env["tmp"] / "full"
        _FULL["run"] = (out, zoo.run(keras_plan(), env["data"], out=out, seed=SEED, progress=False))
        shutil.copytree(zoo_home / "features", env["tmp"] / "features", dirs_exist_ok=True)
    return _FULL["run"]


def _bn_stats(model: Any) -> dict[str, np.ndarray]:
    return {
        f"{layer.name}/{w.name}": np.asarray(w.numpy()).copy()
        for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)
        for w in layer.weights if "moving" in w.name
    }


def _trainable_by_group(bb: Any) -> dict[str, dict[str, np.ndarray]]:
    return {g.name: {f"{l.name}/{w.name}": np.asarray(w.numpy()).copy() for l in g.modules for w in l.trainable_weights} for g in bb.layer_groups}


def test_stage1_on_the_feature_cache_then_predict_the_run(env, zoo_home, no_network, capsys):
    from zoo.recommender.features import cache_dir
    from zoo.runner.predict import load_run

    shutil.rmtree(cache_dir(), ignore_errors=True)  # this test starts from an empty feature cache

    plan = keras_plan(strategy="linear-probe", unfreeze=(), epochs=0)
    out = env["tmp"] / "probe"
    r = zoo.run(plan, env["data"], out=out, seed=SEED, progress=False, refit=False)  # the saved head is the one the held-out split scored
    assert not r.features_cached and r.epochs_run == 0 and r.final_val_acc == r.stage1_val_acc
    files = sorted(cache_dir().iterdir())
    assert len(files) == 1  # the run left its features in the recommender's cache ...
    with np.load(files[0]) as z:
        meta = json.loads(str(z["meta"]))
        assert meta["backbone"] == KERAS_ID and len(meta["groups"]) >= 3 and z["group_00"].shape[0] == 150
        bb = zoo.load(KERAS_ID)
        final = z[f"group_{len(meta['groups']) - 1:02d}"]
        assert final.shape[1] == bb.feature_dim
    r2 = zoo.run(plan, env["data"], out=env["tmp"] / "probe2", seed=SEED, progress=False, refit=False)
    assert r2.features_cached and sorted(cache_dir().iterdir()) == files  # ... and the next run reuses them
    assert r2.stage1_val_acc == r.stage1_val_acc
    assert r.stage1_val_acc >= 0.4  # random conv features on 10 digits; chance is 0.1
    for name in ("plan.yaml", "stage1.json", "metrics.jsonl", "curves.png", "confusion.png", "report.md", "result.json", "model/config.json", "model/model.weights.h5"):
        assert (out / name).is_file(), name
    cfg = json.loads((out / "model" / "config.json").read_text())
    assert cfg["framework"] == "tensorflow" and cfg["preprocessor"]["resolution"] == RES and cfg["classes"] == [str(i) for i in range(10)]

    # the run reloads offline with its own preprocessing and scores what the run says
    from zoo.recommender.data import load_dataset
    from zoo.runner.pipeline import split

    ds = load_dataset(env["data"])
    _, va = split(ds.labels, 0.2, SEED)
    m = load_run(out)
    acc = float((m.logits([ds.items[i] for i in va]).argmax(1) == ds.labels[va]).mean())
    assert acc == pytest.approx(r.final_val_acc)
    capsys.readouterr()
    picked = ds.items[int(va[0])]
    assert main(["predict", str(out), str(picked), "--top-k", "3", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert len(printed) == 1 and len(printed[0]["top"]) == 3
    assert printed[0]["top"][0]["label"] == m.predict([picked], top_k=1)[0][0][0]


def test_lp_concat_reads_the_middle_group_and_reloads(env, zoo_home, no_network):
    """The Keras classifier of an lp-concat run reads a middle group's pooled output and the final features."""
    from zoo.recommender.data import load_dataset
    from zoo.runner.keras_run import features_for
    from zoo.runner.pipeline import split
    from zoo.runner.predict import load_run

    out = env["tmp"] / "concat"
    r = zoo.run(keras_plan(strategy="lp-concat", unfreeze=(), epochs=0), env["data"], out=out, seed=SEED, progress=False, refit=False)
    bb = zoo.load(KERAS_ID)
    names = [g.name for g in bb.layer_groups]
    s1 = json.loads((out / "stage1.json").read_text())
    mid = names[len(names) // 2]
    assert s1["concat"]["group"] == mid and json.loads((out / "model" / "config.json").read_text())["concat_group"] == mid
    ds = load_dataset(env["data"])
    fs = features_for(bb, ds, RES)
    _, va = split(ds.labels, 0.2, SEED)
    m = load_run(out)
    w, b = m.model.get_layer("head").get_weights()
    assert w.shape == (fs.groups[mid].shape[1] + bb.feature_dim, 10)
    got = np.asarray(m.logits([ds.items[i] for i in va]))
    want = np.concatenate([fs.groups[mid], fs.final], 1)[va] @ w + b
    assert np.allclose(got, want, atol=1e-3 * float(np.abs(want).max()))
    assert got.argmax(1).tolist() == s1["val_pred"] and r.final_val_acc == r.stage1_val_acc and r.refit_items == 0
    # the default refits the probe on all 150 items: same figures reported, the saved head fit on every item
    refit = zoo.run(keras_plan(strategy="lp-concat", unfreeze=(), epochs=0), env["data"], out=env["tmp"] / "concat-refit", seed=SEED, progress=False)
    assert refit.refit_items == 150 and refit.stage1_val_acc == r.stage1_val_acc
    w2, _ = load_run(env["tmp"] / "concat-refit").model.get_layer("head").get_weights()
    assert w2.shape == w.shape and not np.allclose(w2, w)


def test_a_fine_tuning_run_that_keeps_the_probe_saves_the_refit_probe(env, zoo_home, no_network):
    """Stage 2 at learning rates of 1e-12 never beats the probe: the saved classifier is the pretrained backbone with the
    probe's head refit on every item (stage 2 itself started from the split fit's head)."""
    from zoo.recommender.data import load_dataset
    from zoo.runner.keras_run import features_for
    from zoo.runner.predict import load_run
    from zoo.runner.stage1 import fit_head

    out = env["tmp"] / "ft-probe"
    r = zoo.run(keras_plan(unfreeze=("top-1",), epochs=1, lr=1e-12), env["data"], out=out, seed=SEED, progress=False)
    assert r.best_epoch == 0 and r.epochs_run == 1 and r.refit_items == 150 and r.final_val_acc == r.stage1_val_acc
    s1 = json.loads((out / "stage1.json").read_text())
    bb = zoo.load(KERAS_ID)
    fs = features_for(bb, load_dataset(env["data"]), RES)
    want = fit_head(fs.final, fs.labels, fs.final, fs.labels, 10, l2_grid=(s1["l2"],))
    assert s1["refit"]["items"] == 150
    w, b = load_run(out).model.get_layer("head").get_weights()
    assert np.allclose(w, want.weight.T, atol=1e-5) and np.allclose(b, want.bias, atol=1e-5)


def test_stage2_fit_keeps_frozen_batchnorm_and_writes_the_run_folder(env, full_run, no_network):
    out, r = full_run
    assert r.epochs_run == 2 and [h["epoch"] for h in r.history] == [1, 2]
    losses = [h["train_loss"] for h in r.history]
    assert all(np.isfinite(losses)) and losses[1] < losses[0]  # fixed seed: the loss goes down
    assert r.final_val_acc >= r.stage1_val_acc  # LP-FT keeps the best model, stage 1 counts as epoch 0
    assert len(r.history[0]["lr"]) == 3 and r.history[-1]["lr"][0] == pytest.approx(0.0, abs=1e-9)  # head + 2 groups; cosine to 0
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["stage"] for x in lines] == ["stage1", "stage2", "stage2"]
    for png in ("curves.png", "confusion.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG" and (out / png).stat().st_size > 5_000
    assert f"{r.final_val_acc:.4f}" in (out / "report.md").read_text()
    assert (out / "checkpoints" / "LATEST").read_text().strip() == "epoch-0002"
    state = json.loads((out / "checkpoints" / "epoch-0002" / "state.json").read_text())
    assert state["epoch"] == 2 and state["seed"] == SEED and len(state["history"]) == 2

    # the last checkpoint against the pretrained backbone: only the two top groups moved, no BatchNorm statistic
    bb = zoo.load(KERAS_ID)
    before_bn, before = _bn_stats(bb.model), _trainable_by_group(bb)
    from zoo.runner.keras_model import build_classifier

    net = build_classifier(bb, 10, inference_bn=True)
    net.load_weights(str(out / "checkpoints" / "epoch-0002" / "model.weights.h5"))
    after_bn, after = _bn_stats(bb.model), _trainable_by_group(bb)
    assert before_bn and all(np.array_equal(before_bn[k], after_bn[k]) for k in before_bn)
    names = [g.name for g in bb.layer_groups]
    for name in names:
        moved = [k for k in before[name] if not np.array_equal(before[name][k], after[name][k])]
        if name in names[-2:]:
            assert moved, name
        else:
            assert not moved, name


def test_resume_after_an_interrupted_epoch_matches_the_uninterrupted_run(env, full_run, no_network, monkeypatch):
    from zoo.runner import keras_run

    _, full = full_run
    out = env["tmp"] / "resumed"
    real_call = keras_run._Feeder.__call__

    class Killed(Exception):
        pass

    def dying(self):  # dies inside epoch 2, after its first batch
        for b, batch in enumerate(real_call(self)):
            if self.epoch == 2 and b == 1:
                raise Killed("simulated kill")
            yield batch

    monkeypatch.setattr(keras_run._Feeder, "__call__", dying)
    with pytest.raises(Exception):  # noqa: B017 - tf.data wraps the generator's error
        zoo.run(keras_plan(), env["data"], out=out, seed=SEED, progress=False)
    assert (out / "checkpoints" / "LATEST").read_text().strip() == "epoch-0001"
    assert not (out / "result.json").exists()
    monkeypatch.setattr(keras_run._Feeder, "__call__", real_call)
    r = zoo.run(keras_plan(), env["data"], out=out, seed=SEED, resume=True, progress=False)
    assert r.resumed_from == 1 and r.epochs_run == 2
    for got, want in zip(r.history, full.history):  # same seed, same batches, same optimizer state: same figures
        for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
            assert got[key] == pytest.approx(want[key], rel=1e-6, abs=1e-7), key
    assert r.final_val_acc == full.final_val_acc and r.best_epoch == full.best_epoch


def test_a_full_disk_in_stage2_stops_in_one_line_and_resume_matches_the_uninterrupted_run(env, full_run, no_network, monkeypatch):
    """The disk fills after epoch 1's checkpoint: the weights file of epoch 2 is refused before HDF5 writes it (HDF5
    failing midway leaves its file open, Keras prints lines of h5py text and the interpreter crashes at exit), the
    run stops with a CheckpointError as the torch path does, leaving no temporary file, and --resume once there is
    room again finishes as the uninterrupted run."""
    from zoo.errors import CheckpointError

    _, full = full_run
    out = env["tmp"] / "full-disk"
    real = shutil.disk_usage

    def full_after_epoch_1(path):
        usage = real(path)
        return usage._replace(free=0) if (out / "checkpoints" / "LATEST").exists() else usage

    monkeypatch.setattr(shutil, "disk_usage", full_after_epoch_1)
    with pytest.raises(CheckpointError, match=r"No space left on device \(the weights need about [\d.]+ MiB, 0.0 MiB free\).*free disk space and rerun with --resume\.$"):
        zoo.run(keras_plan(), env["data"], out=out, seed=SEED, progress=False)
    monkeypatch.setattr(shutil, "disk_usage", real)
    assert (out / "checkpoints" / "LATEST").read_text().strip() == "epoch-0001" and not (out / "result.json").exists()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["LATEST", "epoch-0001"]
    assert sorted(p.name for p in (out / "model").iterdir()) == ["config.json", "model.weights.h5"]
    r = zoo.run(keras_plan(), env["data"], out=out, seed=SEED, resume=True, progress=False)
    assert r.resumed_from == 1 and r.epochs_run == 2
    for got, want in zip(r.history, full.history):
        for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
            assert got[key] == pytest.approx(want[key], rel=1e-6, abs=1e-7), key
    assert r.final_val_acc == full.final_val_acc and r.best_epoch == full.best_epoch


def test_from_scratch_on_a_keras_plan_is_refused_in_one_line(env, no_network, capsys):
    """The baseline is torch-only: the refusal names --from-scratch, not an option the user never passed
    (the Keras and TF Hub loaders reject the `pretrained` option the baseline tries first)."""
    plan_path = keras_plan(epochs=1).write(env["tmp"] / "scratch.yaml")
    out = env["tmp"] / "scratch"
    assert main(["run", str(plan_path), "--data", str(env["data"]), "--out", str(out), "--from-scratch"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{KERAS_ID}: --from-scratch supports torch sources" in err and not out.exists()


def test_without_torch_a_keras_run_and_its_predict_say_what_to_install(env, full_run, no_network, capsys, monkeypatch):
    """zoo-hub[tf] installs neither torch, torchvision nor matplotlib, which a Keras run uses (the probe, the image
    geometry, the curves): `zoo run` ended in a ModuleNotFoundError traceback (also raised again by the accelerate
    clean-up), `zoo predict RUN` too. Each is one line naming the packages, before anything is written."""
    import importlib.util
    import sys

    real = importlib.util.find_spec
    gone = ("torch", "torchvision", "matplotlib")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, package=None: None if name.split(".")[0] in gone else real(name, package))
    monkeypatch.setitem(sys.modules, "torch.distributed", None)  # an import of torch now fails as it would without torch
    plan_path = keras_plan(epochs=1).write(env["tmp"] / "no_torch.yaml")
    out = env["tmp"] / "no_torch"
    assert main(["run", str(plan_path), "--data", str(env["data"]), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs torch, torchvision, matplotlib, which are not installed: run `pip install torch torchvision matplotlib`" in err
    assert not out.exists()
    image = next(p for p in sorted(env["data"].rglob("*.png")))
    assert main(["predict", str(full_run[0]), str(image)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs torchvision, which is not installed: run `pip install torchvision`" in err


def test_processes_on_a_keras_plan_is_refused_not_ignored(env, no_network):
    """--processes N runs torch's stage 2 on N processes; the Keras path has no such mode, so N > 1 is refused before
    anything is written rather than silently trained in one process."""
    out = env["tmp"] / "processes"
    with pytest.raises(InvalidInputError, match=r"--processes applies to torch sources; a Keras or TF Hub run trains in one process"):
        zoo.run(keras_plan(epochs=1), env["data"], out=out, seed=SEED, processes=2, progress=False)
    assert not out.exists()


def test_resume_removes_what_a_run_killed_while_saving_left(env, full_run, no_network):
    """SIGKILL while a Keras run writes its best model leaves the scratch folder holding a whole model
    (``model/.keras-weights.<host>-<pid>.*``), and while it writes a checkpoint a hidden ``checkpoints/.epoch-*``
    folder: the next run in the folder (here a --resume that writes no weights) removes both, as it removes the
    torch path's temporary files."""
    import subprocess

    from zoo._io import _host

    src, _ = full_run
    out = env["tmp"] / "killed-while-saving"
    shutil.copytree(src, out)
    dead = subprocess.Popen(["true"])
    dead.wait()
    scratch = out / "model" / f".keras-weights.{_host()}-{dead.pid}.abcd1234"
    half = out / "checkpoints" / ".epoch-0003.k1ll_3d9"
    for folder in (scratch, half):
        folder.mkdir()
        (folder / "model.weights.h5").write_bytes(b"\0" * 1000)
    before = (out / "model" / "model.weights.h5").read_bytes()
    zoo.run(keras_plan(), env["data"], out=out, seed=SEED, resume=True, progress=False, refit=False)
    assert not scratch.exists() and not half.exists()
    assert (out / "model" / "model.weights.h5").read_bytes() == before


def test_a_keras_run_records_its_data_and_refuses_to_resume_on_other_data(env, no_network, capsys):
    """The Keras path writes the same data fingerprint as the torch path (RUN/data.json) and --resume checks it; bad
    options and a missing run are refused before anything is written, as on the torch path."""
    from zoo.recommender.data import load_dataset
    from zoo.runner.pipeline import data_stamp

    plan = keras_plan(strategy="linear-probe", unfreeze=(), epochs=0)
    out = env["tmp"] / "stamped"
    with pytest.raises(InvalidInputError, match="batch size must be at least 1, got 0"):
        zoo.run(plan, env["data"], out=out, seed=SEED, batch_size=0, progress=False)
    with pytest.raises(InvalidInputError, match="nothing to resume"):
        zoo.run(plan, env["data"], out=out, seed=SEED, resume=True, progress=False)
    assert not out.exists()
    r = zoo.run(plan, env["data"], out=out, seed=SEED, progress=False, refit=False)
    recorded = json.loads((out / "data.json").read_text())
    assert {k: v for k, v in recorded.items() if k not in ("epochs", "batch_size")} == data_stamp(load_dataset(env["data"]), SEED, 0.2)
    other = env["tmp"] / "digits-1"
    shutil.copytree(env["data"], other)
    next(iter(sorted((other / "3").iterdir()))).unlink()
    before = {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    plan_path = plan.write(env["tmp"] / "stamped.yaml")
    assert main(["run", str(plan_path), "--data", str(other), "--out", str(out), "--seed", str(SEED), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{out}: holds a run on other data; resume with the same data or pass a new --out." in err
    with pytest.raises(InvalidInputError, match="holds a run with --seed 7"):
        zoo.run(plan, env["data"], out=out, seed=SEED + 1, resume=True, progress=False)
    assert {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == before
    again = zoo.run(plan, env["data"], out=out, seed=SEED, resume=True, progress=False, refit=False)
    assert again.final_val_acc == r.final_val_acc


def test_export_savedmodel_of_a_keras_run(env, full_run, no_network):
    import tensorflow as tf

    from zoo.runner.predict import load_run

    out, r = full_run
    m = load_run(out)  # what `zoo export RUN_DIR --format savedmodel` calls
    path = m.export("savedmodel")
    assert path == out / "model" / "savedmodel" and (path / "saved_model.pb").is_file()
    batch = m.example_batch(4, seed=3)
    loaded = tf.saved_model.load(str(path))  # keep a reference: its variables live as long as it does
    got = loaded.serve(tf.constant(batch)).numpy()
    want = m.model(batch, training=False).numpy()
    assert np.abs(got - want).max() <= 1e-5 * max(1.0, np.abs(want).max())
    assert json.loads((path / "assets" / "config.json").read_text())["backbone"] == KERAS_ID
    with pytest.raises(InvalidInputError, match="savedmodel"):
        m.export("torchscript")


def test_export_savedmodel_on_a_full_disk_is_one_line_and_writes_nothing(env, full_run, no_network, monkeypatch, capsys, tmp_path):
    """TensorFlow writes a SavedModel's variables with its own file I/O: a full disk comes back as a
    ResourceExhaustedError (not an OSError), which `zoo export` printed as a traceback through TensorFlow."""
    import tensorflow as tf

    out, _ = full_run
    dest = tmp_path / "export" / "savedmodel"
    dest.parent.mkdir()

    def full_disk(self, *args, **kwargs):
        raise tf.errors.ResourceExhaustedError(None, None, "{{function_node __wrapped__SaveV2}} /x/variables/variables_temp/part-00000-of-00001; No space left on device [Op:SaveV2]")

    monkeypatch.setattr(keras.Model, "export", full_disk)
    assert main(["export", str(out), "--format", "savedmodel", "-o", str(dest)]) == 2
    err = capsys.readouterr().err
    assert err == f"zoo: error: {dest}: cannot write the SavedModel (No space left on device); nothing was written, free disk space or pass another -o.\n"
    assert list(dest.parent.iterdir()) == []


def test_gradual_unfreezing_with_trained_batchnorm(env, no_network):
    plan = keras_plan(epochs=1, bn="train")
    plan = plan.model_copy(update={"schedule": plan.schedule.model_copy(update={"gradual_unfreeze": True})})
    out = env["tmp"] / "gradual"
    r = zoo.run(plan, env["data"], out=out, seed=SEED, progress=False)
    assert r.epochs_run == 1 and len(r.history[0]["lr"]) == 3  # head + the two selected groups
    bb = zoo.load(KERAS_ID)
    top, second = (g.modules for g in bb.layer_groups[-2:][::-1])

    def values(layers):
        return {f"{l.name}/{w.name}": np.asarray(w.numpy()).copy() for l in layers for w in l.weights}

    from zoo.runner.keras_model import build_classifier

    before_top, before_second = values(top), values(second)
    build_classifier(bb, 10, inference_bn=False).load_weights(str(out / "checkpoints" / "epoch-0001" / "model.weights.h5"))
    after_top, after_second = values(top), values(second)
    moved = {k for k in before_top if not np.array_equal(before_top[k], after_top[k])}
    assert any("moving_mean" in k for k in moved) and any("kernel" in k for k in moved)  # bn: train updates the statistics
    assert all(np.array_equal(before_second[k], after_second[k]) for k in before_second)  # epoch 1: only the top group


def test_nan_loss_stops_with_a_clear_message(env, no_network):
    from zoo.errors import DivergedError

    out = env["tmp"] / "nan"
    with pytest.raises(DivergedError, match=r"loss became (nan|inf) at epoch 1, step \d+; no checkpoint yet; lower the learning rates"):
        zoo.run(keras_plan(epochs=1, lr=1e37), env["data"], out=out, seed=SEED, progress=False)
    assert (out / "model" / "model.weights.h5").is_file() and not (out / "checkpoints" / "LATEST").exists()  # stage 1's model is kept


def test_a_loss_that_diverges_after_a_checkpoint_advises_a_new_run_not_a_resume(env, no_network, monkeypatch):
    """After epoch 1's checkpoint the loss becomes NaN: the advice was "lower the learning rates in the plan and
    rerun with --resume", but --resume refuses a plan with other learning rates (and with the same plan replays
    the same NaN, bit-exactly), so the advice is a new --out."""
    from zoo.errors import DivergedError
    from zoo.runner import keras_run

    real_call = keras_run._Feeder.__call__

    def nan_in_epoch_2(self):
        for x, y in real_call(self):
            yield (x * np.float32("nan") if self.epoch == 2 else x), y

    monkeypatch.setattr(keras_run._Feeder, "__call__", nan_in_epoch_2)
    out = env["tmp"] / "nan-after-epoch-1"
    with pytest.raises(DivergedError, match=r"at epoch 2, step 1; kept \S+epoch-0001; lower the learning rates in the plan and rerun with a new --out "
                                            r"\(a --resume continues this plan, and would diverge again\)\.$"):
        zoo.run(keras_plan(epochs=2), env["data"], out=out, seed=SEED, progress=False)
    with pytest.raises(InvalidInputError, match="holds a run of a different plan"):  # what the old advice led to
        zoo.run(keras_plan(epochs=2, lr=0.001), env["data"], out=out, seed=SEED, resume=True, progress=False)


def test_adamw_in_a_keras_run_decays_kernels_but_no_bias_or_norm_weight(env):
    from zoo.runner.keras_run import _build

    dense, norm = keras.layers.Dense(3), keras.layers.BatchNormalization()
    dense.build((None, 4))
    norm.build((None, 3))
    variables = [*dense.trainable_weights, *norm.trainable_weights]
    before = [np.array(v.numpy()) + 1.0 for v in variables]
    for v, b in zip(variables, before):
        v.assign(b)
    opt = keras.optimizers.AdamW(learning_rate=1.0, weight_decay=0.5)
    _build(opt, variables)
    opt.apply_gradients([(keras.ops.zeros_like(v), v) for v in variables])  # zero gradients: only the decay moves a weight
    after = {v.path.split("/")[-1]: (np.array(v.numpy()), b) for v, b in zip(variables, before)}
    np.testing.assert_allclose(after["kernel"][0], after["kernel"][1] * 0.5, rtol=1e-6)
    for name in ("bias", "gamma", "beta"):
        np.testing.assert_array_equal(after[name][0], after[name][1])


def test_feature_extraction_holds_the_features_once(env, no_network, monkeypatch):
    """Stage 1's (and the recommender's) Keras extraction joined per-batch pieces at the end: the features of every
    item existed twice at the peak. Rows now go straight into arrays allocated at the first batch, as on the torch
    path; ``positions`` puts them in place (the recommender's sub-sample) without another copy."""
    import tracemalloc

    import zoo.runner.keras_run as keras_run
    from zoo.recommender.features import extract

    bb = zoo.load(KERAS_ID)
    rng = np.random.default_rng(0)
    items = [rng.integers(0, 256, (24, 24, 3), dtype=np.uint8) for _ in range(600)]
    labels = np.arange(len(items)) % 10
    real = keras_run._tf_fn

    def numpy_outputs(model: Any) -> Any:  # each batch's outputs as numpy copies, so that tracemalloc sees them
        fn = real(model)
        return lambda x: [np.array(t) for t in fn(x)]

    monkeypatch.setattr(keras_run, "_tf_fn", numpy_outputs)
    whole = extract(bb, items[:40], labels[:40], resolution=32, batch_size=8)  # also traces the graph before measuring
    tracemalloc.start()
    try:
        fs = extract(bb, items, labels, resolution=32, batch_size=8)
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    held = sum(a.nbytes for a in fs.groups.values())
    assert peak - kept < 0.5 * held, f"{(peak - kept) / 2**20:.1f} MiB above the {held / 2**20:.1f} MiB of features kept"
    np.testing.assert_allclose(fs.final[:40], whole.final, rtol=1e-5, atol=1e-6)
    # a sub-sample's rows at their positions of a larger array (the recommender's)
    pos = np.arange(40)[::-1] + 5
    part = extract(bb, items[:40], labels[:40], resolution=32, batch_size=8, positions=pos, size=50)
    assert all(a.shape[0] == 50 for a in part.groups.values())
    np.testing.assert_allclose(part.final[pos], whole.final, rtol=1e-5, atol=1e-6)


def _h5_arrays(path: Path) -> dict[str, np.ndarray]:
    import h5py

    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, np.asarray(obj)) if isinstance(obj, h5py.Dataset) else None)
    return out


def test_a_kill_between_the_checkpoint_and_the_best_model_is_repaired_by_resume(env, no_network, monkeypatch):
    """As the torch path: an improving epoch writes its checkpoint, then the best model; killed between the two,
    --resume continues after that epoch and rewrites the best model from its checkpoint. (Before, the best model came
    first, and a kill before the checkpoint made the resumed run train the epoch again; where that rerun is not
    bit-reproducible, here simulated by a resumed run that never improves, the folder kept a model of no epoch the
    report names.)"""
    from zoo.runner import keras_run

    out = env["tmp"] / "killed-between"
    real_save, real_eval = keras_run.save_weights, keras_run.evaluate
    seen: dict = {}

    def killed(net, path):
        if "calls" in seen:  # the first call is epoch 0 (stage 1's head); the next is epoch 1, which improves
            seen["ckpt"] = latest = keras_run.latest_checkpoint(out / "checkpoints")
            if latest is not None:  # epoch 1's weights, as its checkpoint holds them (later checkpoints replace it)
                seen["weights"] = _h5_arrays(latest / "model.weights.h5")
            raise KeyboardInterrupt
        seen["calls"] = 1
        real_save(net, path)

    def shifted(by: float):
        def evaluate(*a, **k):
            loss, acc, pred = real_eval(*a, **k)
            return loss, (acc + 1.0 if by > 0 else 0.0), pred
        return evaluate

    monkeypatch.setattr(keras_run, "save_weights", killed)
    monkeypatch.setattr(keras_run, "evaluate", shifted(1.0))
    with pytest.raises(KeyboardInterrupt):
        zoo.run(keras_plan(), env["data"], out=out, seed=SEED, progress=False)
    assert seen["ckpt"] is not None and seen["ckpt"].name == "epoch-0001"
    monkeypatch.setattr(keras_run, "save_weights", real_save)
    monkeypatch.setattr(keras_run, "evaluate", shifted(-1.0))
    r = zoo.run(keras_plan(), env["data"], out=out, seed=SEED, resume=True, progress=False)
    assert r.resumed_from == 1 and r.best_epoch == 1
    best, ckpt = _h5_arrays(out / "model" / "model.weights.h5"), seen["weights"]
    assert best and best.keys() == ckpt.keys() and all(np.array_equal(best[k], ckpt[k]) for k in best)
