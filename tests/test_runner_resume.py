"""zoo run: kill -9 during stage 2 then --resume equals an uninterrupted run; checkpoint writes are atomic."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import zoo
from zoo.runner import checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_runner import digits, tiny_plan  # noqa: E402


def _tensors(v: float) -> dict[str, torch.Tensor]:
    return {"w": torch.full((3, 4), v), "b": torch.arange(3, dtype=torch.float32) + v}


def _state(epoch: int) -> dict:
    return {"epoch": epoch, "history": [{"epoch": epoch, "val_acc": 0.5}], "rng": torch.get_rng_state()}


def test_checkpoint_roundtrip_and_pointer(tmp_path):
    root = tmp_path / "checkpoints"
    assert checkpoint.load(root) is None
    checkpoint.save(root, 1, _tensors(1.0), _state(1))
    checkpoint.save(root, 2, _tensors(2.0), _state(2))
    model, state = checkpoint.load(root)
    assert state["epoch"] == 2 and torch.equal(model["w"], torch.full((3, 4), 2.0))
    assert sorted(p.name for p in root.iterdir()) == ["LATEST", "epoch-0002"]  # older ones removed after the switch


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_checkpoint_folders_follow_the_umask_like_the_rest_of_the_run_folder(tmp_path, umask):
    """Checkpoint folders were mkdtemp's 0700 in a run folder of 0755 folders and 0644 files: a teammate (or another
    account on the same machine) could read the model but not the checkpoint to --resume or inspect it."""
    old = os.umask(umask)
    try:
        root = tmp_path / "run" / "checkpoints"
        checkpoint.save(root, 1, _tensors(1.0), _state(1))
    finally:
        os.umask(old)
    want = 0o777 & ~umask
    assert root.stat().st_mode & 0o777 == want
    assert (root / "epoch-0001").stat().st_mode & 0o777 == want


def test_interrupted_rename_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    root = tmp_path / "checkpoints"
    checkpoint.save(root, 1, _tensors(1.0), _state(1))
    real = os.replace

    def failing(src, dst):  # the pointer switch fails: as if killed between temp write and rename
        if Path(dst).name == checkpoint.POINTER:
            raise OSError(errno.EIO, "simulated failure during rename")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(checkpoint.CheckpointError, match="previous checkpoint is kept"):
        checkpoint.save(root, 2, _tensors(2.0), _state(2))
    monkeypatch.setattr(os, "replace", real)
    model, state = checkpoint.load(root)
    assert state["epoch"] == 1 and torch.equal(model["w"], torch.full((3, 4), 1.0))
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # temporary files cleaned


def test_full_disk_and_half_written_checkpoint_lose_nothing(tmp_path, monkeypatch):
    import safetensors.torch as st

    root = tmp_path / "checkpoints"
    checkpoint.save(root, 1, _tensors(1.0), _state(1))
    real = st.save_file

    def half_then_enospc(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\0" * 100)  # half a file on disk, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(st, "save_file", half_then_enospc)
    with pytest.raises(checkpoint.CheckpointError, match="free disk space"):
        checkpoint.save(root, 2, _tensors(2.0), _state(2))
    monkeypatch.setattr(st, "save_file", real)
    # a process killed mid-write leaves a hidden temporary folder: ignored
    stray = root / ".epoch-0002.killed"
    stray.mkdir()
    (stray / "model.safetensors").write_bytes(b"\0" * 10)
    model, state = checkpoint.load(root)
    assert state["epoch"] == 1 and torch.equal(model["b"], torch.tensor([1.0, 2.0, 3.0]))
    checkpoint.save(root, 2, _tensors(2.0), _state(2))  # the next good write cleans up
    assert sorted(p.name for p in root.iterdir()) == ["LATEST", "epoch-0002"]


def _cli(*args: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "zoo", "run", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _metrics(run: Path) -> list[dict]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    for r in rows:
        r.pop("seconds", None)
    return rows


@pytest.mark.slow
def test_kill_9_during_stage2_then_resume_equals_an_uninterrupted_run(tmp_path, zoo_home, no_network):
    from safetensors.torch import load_file

    root = digits(tmp_path, 150)
    plan_path = tiny_plan(epochs=4, resolution=48, patience=0).write(tmp_path / "plan.yaml")
    env = dict(os.environ)
    common = [str(plan_path), "--data", str(root), "--seed", "7", "--json"]
    # interrupted: SIGKILL as soon as epoch 1's checkpoint exists (stage 2 is running epoch 2)
    a = tmp_path / "a"
    proc = _cli(*common, "--out", str(a), env=env)
    deadline = time.monotonic() + 120
    while checkpoint.latest(a / "checkpoints") is None and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    done = int(checkpoint.latest(a / "checkpoints").name.split("-")[1])
    assert 1 <= done < 4 and not (a / "result.json").exists()
    resumed = _cli(*common, "--out", str(a), "--resume", env=env)
    out_a, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out_a
    # uninterrupted, same seed
    b = tmp_path / "b"
    ref = _cli(*common, "--out", str(b), env=env)
    out_b, _ = ref.communicate(timeout=300)
    assert ref.returncode == 0, out_b
    ra, rb = json.loads(out_a), json.loads(out_b)
    assert ra["resumed_from"] == done and rb["resumed_from"] is None
    assert ra["epochs_run"] == rb["epochs_run"] == 4
    assert ra["final_val_acc"] == rb["final_val_acc"] and ra["best_epoch"] == rb["best_epoch"]
    assert _metrics(a) == _metrics(b)  # every epoch's losses, accuracies and learning rates
    wa, wb = load_file(str(a / "model" / "model.safetensors")), load_file(str(b / "model" / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    # resuming a finished run is harmless and says the same
    again = _cli(*common, "--out", str(b), "--resume", env=env)
    out_c, _ = again.communicate(timeout=300)
    assert again.returncode == 0 and json.loads(out_c)["final_val_acc"] == rb["final_val_acc"]
    assert zoo.__name__  # zoo imported in-process only for the fixtures


def test_a_kill_between_the_checkpoint_and_the_best_model_is_repaired_by_resume(tmp_path, zoo_home, no_network, monkeypatch):
    """An improving epoch writes its checkpoint, then the best model. Killed between the two writes (here: Ctrl-C as
    the best model is about to be written), --resume continues after that epoch and rewrites the best model from its
    checkpoint, so ``model.safetensors`` is the model of the epoch ``result.json`` names as best. It used to write the
    best model first: a kill before the checkpoint made the resumed run train that epoch again, and where the rerun
    is not bit-reproducible (a GPU; simulated here by a resumed run whose held-out accuracy never improves) the
    folder kept a model of no epoch the report names."""
    from safetensors.torch import load_file

    from zoo.runner import stage2

    root = digits(tmp_path, 150)
    plan = tiny_plan(epochs=4, resolution=48, patience=0)
    out = tmp_path / "run"
    real_write, real_eval = stage2._write_best, stage2.evaluate_sharded
    seen: dict = {}

    def killed(path, state):
        if "calls" in seen:  # the first call is epoch 0 (stage 1's head); the next is the first improving epoch
            seen["weights"] = {k: v.detach().clone() for k, v in state.items()}
            seen["ckpt"] = checkpoint.latest(out / "checkpoints")  # the checkpoint of this epoch is already whole
            raise KeyboardInterrupt
        seen["calls"] = 1
        real_write(path, state)

    def better(*a, **k):  # epoch 1 beats stage 1's probe (the tiny run's probe is hard to beat for real)
        loss, acc, pred = real_eval(*a, **k)
        return loss, acc + 1.0, pred

    monkeypatch.setattr(stage2, "_write_best", killed)
    monkeypatch.setattr(stage2, "evaluate_sharded", better)
    with pytest.raises(KeyboardInterrupt):
        zoo.run(plan, root, out=out, seed=7, refit=False, progress=False)
    assert seen["ckpt"] is not None and seen["ckpt"].name == "epoch-0001"
    seen["epoch"] = 1
    monkeypatch.setattr(stage2, "_write_best", real_write)

    def never_better(*a, **k):
        loss, _, pred = real_eval(*a, **k)
        return loss, 0.0, pred

    monkeypatch.setattr(stage2, "evaluate_sharded", never_better)
    r = zoo.run(plan, root, out=out, seed=7, refit=False, progress=False, resume=True)
    assert r.best_epoch == seen["epoch"] and r.resumed_from == seen["epoch"]
    best = load_file(str(out / "model" / "model.safetensors"))
    assert best.keys() == seen["weights"].keys() and all(torch.equal(best[k], seen["weights"][k]) for k in best)


def _interrupt_at_batch(monkeypatch, k: int) -> list[int]:
    """Feature extraction counts the items of each batch it moves to the model (the first, of one item, counts FLOPs);
    the ``k``-th batch raises KeyboardInterrupt instead (Ctrl-C, or SIGTERM as the `zoo` command unwinds it); 0: never.
    Returns the list of batch sizes seen."""
    import zoo.frameworks.torch as zt

    seen: list[int] = []
    real = zt.move

    def counting(batch, device):
        seen.append(len(batch))
        if len(seen) == k:
            raise KeyboardInterrupt
        return real(batch, device)

    monkeypatch.setattr(zt, "move", counting)
    return seen


def test_an_interrupted_feature_extraction_keeps_its_finished_batches(tmp_path, zoo_home, no_network, monkeypatch):
    """Ctrl-C (or SIGTERM) while features were extracted threw every finished batch away: the next request extracted
    the whole sample again. The finished batches' rows are kept in a partial file; the next request extracts only the
    others, writes the whole-sample file (the same features as one pass) and removes the partial file."""
    import numpy as np

    from zoo.recommender import features
    from zoo.recommender.data import load_dataset

    ds = load_dataset(digits(tmp_path, 40))
    bb = zoo.load("timm:efficientnet_lite0.pypi_in1k")
    with monkeypatch.context() as m:
        _interrupt_at_batch(m, 5)  # FLOPs on one item, then batches of 8: 3 finished (24 rows), the 4th interrupted
        with pytest.raises(KeyboardInterrupt):
            features.features_for(bb, ds, 32, batch_size=8)
    prep = features.preprocessing_for(bb, 32)
    assert features.cached(bb, ds, 32) is None
    kept = features.load(features._partial_file(bb, ds, prep))
    assert sorted(kept.index.tolist()) == list(range(24)) and np.array_equal(kept.labels, ds.labels[kept.index]) and kept.logits is not None
    with monkeypatch.context() as m:
        seen = _interrupt_at_batch(m, 0)
        fs = features.features_for(bb, ds, 32, batch_size=8)
    assert seen == [8, 8] and fs.meta["reused"] == 24  # the 16 others only (the partial file kept the FLOPs count too)
    assert not features.cache_path(features._partial_file(bb, ds, prep)).exists() and features.cached(bb, ds, 32) is not None
    one_pass = features.extract(bb, ds.items, ds.labels, resolution=32, batch_size=8)
    assert fs.groups.keys() == one_pass.groups.keys()
    for g in fs.groups:
        np.testing.assert_allclose(fs.groups[g], one_pass.groups[g], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(fs.logits, one_pass.logits, rtol=1e-4, atol=1e-4)


def test_a_run_interrupted_in_stage_1_resumes_from_the_features_it_extracted(tmp_path, zoo_home, no_network, monkeypatch):
    """zoo run stopped during feature extraction, then --resume: only the items not yet extracted go through the model."""
    root = digits(tmp_path, 40)
    plan = tiny_plan(strategy="linear-probe", unfreeze=(), epochs=0, resolution=32)
    out = tmp_path / "run"
    with monkeypatch.context() as m:
        _interrupt_at_batch(m, 3)  # FLOPs on one item, then batches of 32: the first finished
        with pytest.raises(KeyboardInterrupt) as exc:
            zoo.run(plan, root, out=out, progress=False)
    assert exc.value.zoo_run_dir == str(out) and (out / "plan.yaml").is_file()
    with monkeypatch.context() as m:
        seen = _interrupt_at_batch(m, 0)
        r = zoo.run(plan, root, out=out, resume=True, progress=False)
    assert seen == [8], seen  # the 8 items left, nothing else
    assert not r.features_cached and r.final_val_acc == json.loads((out / "result.json").read_text())["final_val_acc"]
