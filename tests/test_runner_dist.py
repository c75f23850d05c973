"""zoo run on two CPU processes (gloo): the same optimisation as one process, resumable, one writer.

Tolerance. The plan's batch is the global batch: each of the two processes takes one half of every
global batch (Accelerate ``split_batches``), augmentation is seeded per item, padding of the short last
batch weighs zero and DDP averages the half-batch gradients, so both runs take the same SGD steps on
the same numbers. What differs is floating-point summation order only (two 16-image halves summed by
the all-reduce instead of one 32-image batch; oneDNN may pick other kernels for the smaller batch):
about 1e-7 relative per step, and a few steps cannot grow that past 1e-3. So: every epoch's train and
held-out loss within 1e-3 relative, held-out accuracy within one sample (a logit tie may flip), the
learning-rate schedule identical, the best weights within 1e-3 absolute.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import zoo
from zoo.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_runner import digits, tiny_plan  # noqa: E402

REL = 1e-3


def _files(run: Path) -> list[str]:
    return sorted(str(p.relative_to(run)) for p in run.rglob("*"))


def _same_optimisation(ref: list[dict], got: list[dict], n_val: int) -> None:
    assert [h["epoch"] for h in got] == [h["epoch"] for h in ref]
    for a, b in zip(ref, got):
        assert b["lr"] == a["lr"]
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=REL)
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=REL)
        assert abs(b["val_acc"] - a["val_acc"]) <= 1 / n_val + 1e-9
        assert abs(b["train_acc"] - a["train_acc"]) <= 1 / 80 + 1e-9


@pytest.mark.slow
def test_two_processes_match_one_and_resume_on_two(tmp_path, zoo_home, no_network, monkeypatch, capsys):
    from safetensors.torch import load_file

    from zoo.runner import checkpoint, report

    root = digits(tmp_path, 100)  # 80 train (batches 32, 32, 16: the last is padding on process 1), 20 held out
    plan = tiny_plan(epochs=2, resolution=48, lr=0.05, patience=0)
    # random crops (seeded per item: the same crop whichever process draws it) and label smoothing (gradients
    # stay large after the stage-1 head fits the training set)
    plan = plan.model_copy(update={"augment": plan.augment.model_copy(update={"random_resized_crop": True, "label_smoothing": 0.1})})
    plan_path = plan.write(tmp_path / "plan.yaml")
    one, two, resumed = tmp_path / "one", tmp_path / "two", tmp_path / "resumed"
    # one process; snapshot its run folder right after epoch 1 (checkpoint written, then metrics logged)
    real = report.write_metrics

    def snapshot(path, records):
        out = real(path, records)
        if Path(path).parent == one and [r.get("epoch") for r in records if r["stage"] == "stage2"] == [1]:
            shutil.copytree(one, resumed)
        return out

    monkeypatch.setattr(report, "write_metrics", snapshot)
    r1 = zoo.run(plan, root, out=one, seed=5, progress=False)
    monkeypatch.setattr(report, "write_metrics", real)
    assert r1.epochs_run == 2 and r1.stage1_val_acc >= 0.5
    # the weights moved by far more than the tolerance below (the comparison is not vacuous)
    start = {f"backbone.{k}": v for k, v in zoo.load(plan.backbone).model.state_dict().items()}
    end = load_file(str(one / "checkpoints" / "epoch-0002" / "model.safetensors"))
    assert max(float((end[k].double() - start[k].double()).abs().max()) for k in start if start[k].is_floating_point()) > 2e-2
    # two processes through the CLI
    assert main(["run", str(plan_path), "--data", str(root), "--out", str(two), "--seed", "5", "--processes", "2", "--json"]) == 0
    r2 = json.loads(capsys.readouterr().out)
    h2 = [json.loads(x) for x in (two / "metrics.jsonl").read_text().splitlines()][1:]
    _same_optimisation(r1.history, h2, 20)
    assert abs(r2["final_val_acc"] - r1.final_val_acc) <= 1 / 20 + 1e-9 and r2["epochs_run"] == 2
    wa, wb = load_file(str(one / "model" / "model.safetensors")), load_file(str(two / "model" / "model.safetensors"))
    assert wa.keys() == wb.keys()
    assert max(float((wa[k].double() - wb[k].double()).abs().max()) for k in wa) < 1e-3
    # one writer: the same files, one checkpoint folder, no strays from a second process
    assert _files(two) == _files(one)
    assert sorted(p.name for p in (two / "checkpoints").iterdir()) == ["LATEST", "epoch-0002"]
    # resume on two processes from the one-process checkpoint of epoch 1: finishes like the uninterrupted run
    assert checkpoint.latest(resumed / "checkpoints").name == "epoch-0001"
    r3 = zoo.run(plan, root, out=resumed, seed=5, resume=True, processes=2, progress=False)
    assert r3.resumed_from == 1 and r3.epochs_run == 2
    _same_optimisation(r1.history, r3.history, 20)
    lines = [json.loads(x) for x in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert [x.get("epoch") for x in lines] == [None, 1, 2]
    wc = load_file(str(resumed / "checkpoints" / "epoch-0002" / "model.safetensors"))
    wl = load_file(str(one / "checkpoints" / "epoch-0002" / "model.safetensors"))
    assert max(float((wl[k].double() - wc[k].double()).abs().max()) for k in wl) < 1e-3
    assert np.isfinite([h["train_loss"] for h in r3.history]).all()


def test_global_batch_slices_and_padding_weights():
    """Accelerate's split of a short last batch: the real items come first, the padding weighs zero."""
    from accelerate.data_loader import BatchSamplerShard

    from zoo.runner.shards import Order, item_seed

    order = Order(80, 32, seed=5)
    order.epoch = 1
    batches = list(order)
    assert [len(b) for b in batches] == [32, 32, 16] and sorted(sum(batches, [])) == list(range(80))
    shards = [list(BatchSamplerShard(order, 2, r, split_batches=True, even_batches=True)) for r in (0, 1)]
    for step, (a, b) in enumerate(zip(*shards)):
        real = min(32, 80 - step * 32)
        assert len(a) == len(b) == 16 and (a + b)[:real] == batches[step]  # halves of the same global batch
    assert order.epoch == 1 and list(order) == batches  # the same epoch replays the same order (resume)
    order.epoch = 2
    assert list(order) != batches
    assert item_seed(0, 1, 3) != item_seed(0, 2, 3) != item_seed(1, 1, 3)


def test_workers_stop_when_the_launching_process_is_killed(tmp_path):
    """`zoo run --processes N` killed with SIGKILL (or SIGTERM) runs no cleanup: its workers went on training for good,
    writing checkpoints into the run folder that a `--resume` then wrote too, and the job folder (the pickled backbone)
    stayed in the temp dir. A worker now watches its launcher: once it is gone, it removes the job folder and exits."""
    import os
    import signal
    import subprocess
    import time

    box = tmp_path / "zoo-run-job"
    box.mkdir()
    worker = (
        "import sys, time; from pathlib import Path; from zoo.runner.distributed import _exit_with_parent\n"
        "_exit_with_parent(int(sys.argv[1]), Path(sys.argv[2])); print('watching', flush=True); time.sleep(120)\n"
    )
    launcher = (  # starts the worker as launch() does (a child process), then waits to be killed
        "import os, subprocess, sys, time\n"
        f"w = subprocess.Popen([sys.executable, '-c', {worker!r}, str(os.getpid()), sys.argv[1]], stdout=subprocess.PIPE, text=True)\n"
        "print(w.pid, w.stdout.readline().strip(), flush=True); time.sleep(120)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", launcher, str(box)], stdout=subprocess.PIPE, text=True)
    pid, state = proc.stdout.readline().split()
    assert state == "watching" and box.is_dir()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 20
    while box.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not box.exists()
    while time.monotonic() < deadline:  # gone, or a zombie waiting for a reaper
        try:
            if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
                break
        except OSError:
            break
        time.sleep(0.05)
    else:
        os.kill(int(pid), signal.SIGKILL)
        pytest.fail("the worker outlived its launcher")
