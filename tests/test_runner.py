"""zoo run on real digits, offline: stage 1 on the recommender's feature cache, stage 2 LP-FT, the run folder."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest

import zoo
from zoo.cli import main
from zoo.errors import InvalidInputError, LayerGroupRangeError
from zoo.recommender.plan import Optimizer, Plan, Schedule

LITE0 = "timm:efficientnet_lite0.pypi_in1k"
ROOT = Path(__file__).resolve().parents[1]


def digits(tmp_path: Path, limit: int) -> Path:
    """scikit-learn's first ``limit`` digits as an image folder (scripts/make_digits_folder.py)."""
    spec = importlib.util.spec_from_file_location("make_digits_folder", ROOT / "scripts" / "make_digits_folder.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.write_digits(tmp_path / "digits", limit=limit)


def tiny_plan(*, strategy: str = "lp-ft", unfreeze: tuple[str, ...] = ("top-1",), epochs: int = 2, resolution: int = 64, lr: float = 0.01, hflip: bool = False, patience: int = 3) -> Plan:
    """A recommender plan (metadata mode) for digits, made tiny: lite0, small images, few epochs."""
    plan = zoo.recommend(samples=200, classes=10, domain="documents", image_size=8)
    lrs = {"head": lr, **{sel: lr * 0.5 ** (i + 1) for i, sel in enumerate(unfreeze)}}
    return plan.model_copy(update={
        "backbone": LITE0, "strategy": strategy, "unfreeze": list(unfreeze), "lr": lrs, "resolution": resolution,
        "optimizer": Optimizer(name="sgd", momentum=0.9, weight_decay=0.0),
        "schedule": Schedule(epochs=epochs, batch_size=32, steps=epochs * 5, warmup_frac=0.1, early_stop_patience=patience),
        "augment": plan.augment.model_copy(update={"hflip": hflip, "random_resized_crop": False, "trivial_augment": False, "resolution": resolution}),
    })


# ---- units: selectors, schedule, augmentation ------------------------------------------------------


def test_selectors_resolve_onto_layer_groups():
    from zoo.runner.stage2 import resolve_selectors

    assert resolve_selectors(["top-1"], 9) == [8]
    assert resolve_selectors(["top-1", "top-2", "top-3"], 9) == [8, 7, 6]
    assert resolve_selectors(["early-1", "early-2"], 9) == [1, 0]
    assert resolve_selectors(["middle"], 9) == [5, 4, 3]
    assert resolve_selectors(["all"], 4) == [3, 2, 1, 0]
    with pytest.raises(LayerGroupRangeError):
        resolve_selectors(["top-10"], 9)
    with pytest.raises(InvalidInputError, match="top-i, early-i, middle or all"):
        resolve_selectors(["bottom-1"], 9)


def test_stage1_head_stays_finite_on_near_constant_features():
    from zoo.runner.stage1 import fit_head

    rng = np.random.default_rng(0)
    x = (1.0 + 3e-7 * rng.standard_normal((60, 16))).astype(np.float32)  # spread of a few float32 ulps
    y = np.arange(60) % 3
    r = fit_head(x[:45], y[:45], x[45:], y[45:], 3)
    # an absolute 1e-6 floor folds into weights of ~4e5 here; cancellation then makes float32 logits noise
    assert np.isfinite(r.weight).all() and np.abs(r.weight).max() < 1e4


def test_stage1_head_with_fewer_rows_than_features_is_the_full_space_optimum():
    """n < d is fitted in the span of the training rows; the result must still minimise the full objective."""
    import torch

    from zoo.runner.stage1 import fit_head

    rng = np.random.default_rng(1)
    y = np.arange(80) % 4
    x = np.maximum(rng.normal(size=(4, 300))[y] * 0.5 + rng.normal(size=(80, 300)), 0).astype(np.float32)
    r = fit_head(x[:60], y[:60], x[60:], y[60:], 4)
    xt = torch.as_tensor(x[:60], dtype=torch.float64)
    mu, sd = xt.mean(0), (xt - xt.mean(0)).pow(2).mean().sqrt()
    w = (torch.as_tensor(r.weight, dtype=torch.float64) * sd).requires_grad_(True)  # head on standardised features
    b = (torch.as_tensor(r.bias, dtype=torch.float64) + (mu / sd) @ w.detach().T).requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(((xt - mu) / sd) @ w.T + b, torch.as_tensor(y[:60])) + 0.5 * r.l2 * (w * w).sum()
    loss.backward()
    # observed 2e-7 at the optimum; scaling the weights by 1.001 gives 1e-5
    assert float(w.grad.norm()) < 5e-6 * float(w.detach().norm()) and float(b.grad.norm()) < 1e-5


def test_group_lrs_and_warmup_cosine():
    from zoo.runner.stage2 import group_lr, lr_lambda

    plan = tiny_plan(unfreeze=("top-1", "top-2"), lr=0.1)
    assert group_lr(plan, 8, 9) == pytest.approx(0.05)  # the plan's own top-1
    assert group_lr(plan, 7, 9) == pytest.approx(0.025)
    assert group_lr(plan, 5, 9) == pytest.approx(0.1 * plan.lr_decay ** 4)  # not named: head x decay^distance
    f = lr_lambda(100, 0.1, "cosine")
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(55) == pytest.approx(0.5) and f(100) == pytest.approx(0.0)
    assert lr_lambda(100, 0.0, "constant")(80) == 1.0


def test_augmentation_follows_the_plan():
    from torchvision import transforms as T

    from zoo.runner.stage2 import image_transforms

    bb = zoo.load(LITE0)
    no_flip = tiny_plan(hflip=False).augment
    train, _ = image_transforms(bb, 64, no_flip)
    assert not any(isinstance(t, T.RandomHorizontalFlip) for t in train.transforms)
    flip = no_flip.model_copy(update={"hflip": True, "random_resized_crop": True, "trivial_augment": True})
    train, evaluate = image_transforms(bb, 64, flip)
    kinds = {type(t) for t in train.transforms}
    assert {T.RandomHorizontalFlip, T.RandomResizedCrop, T.TrivialAugmentWide} <= kinds
    assert T.RandomHorizontalFlip not in {type(t) for t in evaluate.transforms}


# ---- stage 1 -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_stage1_reuses_the_recommender_cache_and_beats_chance(tmp_path, zoo_home, no_network, capsys):
    from zoo.recommender.data import load_dataset
    from zoo.recommender.features import features_for

    root = digits(tmp_path, 200)
    (root / "3" / "broken.png").write_bytes(b"not a png at all")  # skipped and counted, not fatal
    plan = tiny_plan(strategy="linear-probe", unfreeze=(), epochs=0)
    bb = zoo.load(LITE0)
    features_for(bb, load_dataset(root), 64)  # what `zoo recommend --data` leaves behind
    before = sorted((zoo_home / "features").iterdir())
    r = zoo.run(plan, root, out=tmp_path / "run")
    assert r.features_cached and sorted((zoo_home / "features").iterdir()) == before
    assert r.epochs_run == 0 and r.final_val_acc == r.stage1_val_acc
    assert r.stage1_val_acc >= 0.75  # chance is 0.1 on 10 digits
    s1 = json.loads((tmp_path / "run" / "stage1.json").read_text())
    assert s1["train_acc"] >= s1["val_acc"] and len(s1["val_pred"]) == 40
    assert r.skipped_unreadable == 1 and "1 unreadable file(s) skipped" in (tmp_path / "run" / "report.md").read_text()
    # the CLI: same figures, human-readable; an occupied folder needs --resume (one-line error, exit 2)
    plan_path = plan.write(tmp_path / "plan.yaml")
    assert main(["run", str(plan_path), "--data", str(root), "--out", str(tmp_path / "cli")]) == 0
    printed = capsys.readouterr().out
    assert f"stage 1 (linear probe) held-out accuracy: {r.stage1_val_acc:.4f}" in printed and "skipped 1 unreadable" in printed
    assert main(["run", str(plan_path), "--data", str(root), "--out", str(tmp_path / "cli")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pass --resume" in err


def test_lp_concat_reads_the_middle_group_and_reloads_as_it_ran(tmp_path, zoo_home, no_network):
    """An lp-concat plan runs a probe on a middle group's pooled output and the final features; the saved
    classifier computes exactly that head, reloads with it, and exports."""
    import torch

    from zoo.recommender.data import load_dataset
    from zoo.recommender.features import features_for
    from zoo.runner.pipeline import split
    from zoo.runner.predict import load_run

    root = digits(tmp_path, 200)
    out = tmp_path / "run"
    r = zoo.run(tiny_plan(strategy="lp-concat", unfreeze=(), epochs=0), root, out=out, seed=1, refit=False)
    bb = zoo.load(LITE0)
    names = [g.name for g in bb.layer_groups]
    s1 = json.loads((out / "stage1.json").read_text())
    mid = names[len(names) // 2]
    assert s1["concat"]["group"] == mid and json.loads((out / "model" / "config.json").read_text())["concat_group"] == mid
    assert r.stage1_val_acc >= 0.75 and f"layer group {mid}'s pooled output" in (out / "report.md").read_text()
    # the reloaded classifier is the stage-1 head on [mid, final] of the cached features, item for item
    ds = load_dataset(root)
    fs = features_for(bb, ds, 64)
    assert fs.cached
    _, va = split(ds.labels, 0.2, 1)
    m = load_run(out)
    assert m.model.head.in_features == fs.groups[mid].shape[1] + bb.feature_dim == s1["concat"]["mid_dim"] + bb.feature_dim
    got = m.logits([ds.items[i] for i in va])
    x = torch.as_tensor(np.concatenate([fs.groups[mid], fs.final], 1)[va])
    with torch.no_grad():
        want = m.model.head(x)
    assert torch.allclose(got, want, atol=1e-3 * float(want.abs().max()))
    assert got.argmax(1).tolist() == s1["val_pred"]
    # the hook holds no activation outside the classifier's own forward: the backbone called alone keeps nothing
    with torch.no_grad():
        m.model.backbone(x.new_zeros(2, 3, 64, 64))
    assert m.model._mid == {}
    # a plain probe's head reads the final features only
    plain = zoo.run(tiny_plan(strategy="linear-probe", unfreeze=(), epochs=0), root, out=tmp_path / "plain", seed=1, refit=False)
    assert "concat" not in json.loads((tmp_path / "plain" / "stage1.json").read_text()) and load_run(tmp_path / "plain").model.head.in_features == bb.feature_dim
    assert plain.features_cached
    # TorchScript keeps the mid-level input (checked against the eager model before it is written)
    assert m.export("torchscript").is_file()
    assert m.export("onnx").is_file()  # so does ONNX (export refuses a file that differs from the eager model)
    # the from-scratch baseline of an lp-concat plan trains every group (no probe, no mid-level head)
    base = zoo.run(tiny_plan(strategy="lp-concat", unfreeze=(), epochs=1), root, out=tmp_path / "scratch", seed=1, from_scratch=True, epochs=1)
    assert base.from_scratch and base.epochs_run == 1 and load_run(tmp_path / "scratch").model.head.in_features == bb.feature_dim
    # a probe plan that also unfreezes groups is refused before anything is written
    bad = tiny_plan(strategy="lp-concat", unfreeze=("top-1",), epochs=1)
    with pytest.raises(InvalidInputError, match="unfreeze"):
        zoo.run(bad, root, out=tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_lp_concat_without_a_pooled_middle_group_runs_as_a_probe_and_says_why():
    """A backbone whose features hold no middle group (a TF Hub model exposes no intermediate output) runs lp-concat
    as a probe on the final features, and the report's note says so; other strategies get no note."""
    from types import SimpleNamespace

    from zoo.runner.pipeline import mid_group

    bb = SimpleNamespace(layer_groups=[SimpleNamespace(name=n) for n in ("stem", "block1", "block2", "top")])
    fs = SimpleNamespace(groups={"top": np.zeros((4, 8))}, final=np.zeros((4, 8)))
    group, note = mid_group(tiny_plan(strategy="lp-concat", unfreeze=()), bb, fs)
    assert group is None and "ran as a linear probe on the final features" in note and "\n" not in note
    fs.groups = {"stem": np.zeros((4, 3)), "block1": np.zeros((4, 5)), "block2": np.zeros((4, 6)), "top": np.zeros((4, 8))}
    group, note = mid_group(tiny_plan(strategy="lp-concat", unfreeze=()), bb, fs)
    assert group == "block2" and "(6 features)" in note
    assert mid_group(tiny_plan(strategy="linear-probe", unfreeze=()), bb, fs) == (None, None)


def test_a_probe_plan_is_refit_on_every_item_with_the_chosen_l2(tmp_path, zoo_home, no_network, capsys):
    """By default the saved head of a probe plan is refit on train + held-out items with the L2 strength the held-out
    split chose (LogisticRegressionCV's refit); the reported figures are the split fit's; --no-refit saves that head."""
    from safetensors.torch import load_file

    from zoo.recommender.data import load_dataset
    from zoo.recommender.features import features_for
    from zoo.runner.stage1 import fit_head

    root = digits(tmp_path, 200)
    plan = tiny_plan(strategy="linear-probe", unfreeze=(), epochs=0)
    split_run = zoo.run(plan, root, out=tmp_path / "split", seed=2, refit=False)
    r = zoo.run(plan, root, out=tmp_path / "refit", seed=2)
    assert r.refit_items == 200 and split_run.refit_items == 0
    assert r.stage1_val_acc == r.final_val_acc == split_run.stage1_val_acc  # the estimate that chose L2, both times
    s1 = json.loads((tmp_path / "refit" / "stage1.json").read_text())
    assert s1["refit"]["items"] == 200 and s1["refit"]["l2"] == s1["l2"] and "refit" not in json.loads((tmp_path / "split" / "stage1.json").read_text())
    fs = features_for(zoo.load(LITE0), load_dataset(root), 64)
    want = fit_head(fs.final, fs.labels, fs.final, fs.labels, 10, l2_grid=(s1["l2"],))
    saved = load_file(str(tmp_path / "refit" / "model" / "model.safetensors"))
    assert np.allclose(saved["head.weight"].numpy(), want.weight, atol=1e-5) and np.allclose(saved["head.bias"].numpy(), want.bias, atol=1e-5)
    assert not np.allclose(load_file(str(tmp_path / "split" / "model" / "model.safetensors"))["head.weight"].numpy(), want.weight, atol=1e-5)
    assert "refit on all 200 items" in (tmp_path / "refit" / "report.md").read_text()
    capsys.readouterr()
    assert main(["run", str(plan.write(tmp_path / "plan.yaml")), "--data", str(root), "--out", str(tmp_path / "cli"), "--no-refit", "--seed", "2"]) == 0
    assert "refit on all" not in capsys.readouterr().out
    assert main(["run", str(tmp_path / "plan.yaml"), "--data", str(root), "--out", str(tmp_path / "cli2"), "--seed", "2"]) == 0
    assert "refit on all 200 items" in capsys.readouterr().out
    # a fine-tuning plan whose epochs never beat the probe (learning rates of 1e-12) saves the probe: refit the same way,
    # on the pretrained backbone (stage 2 itself started from the split fit's head)
    ft = zoo.run(tiny_plan(unfreeze=("top-1",), epochs=1, lr=1e-12), root, out=tmp_path / "ft", seed=2)
    assert ft.best_epoch == 0 and ft.epochs_run == 1 and ft.refit_items == 200 and ft.final_val_acc == ft.stage1_val_acc == r.stage1_val_acc
    saved = load_file(str(tmp_path / "ft" / "model" / "model.safetensors"))
    assert np.allclose(saved["head.weight"].numpy(), want.weight, atol=1e-5)
    pretrained = zoo.load(LITE0).model.state_dict()
    assert all(np.array_equal(saved[f"backbone.{k}"].numpy(), v.numpy()) for k, v in pretrained.items())
    assert json.loads((tmp_path / "ft" / "stage1.json").read_text())["refit"]["items"] == 200


# ---- stage 2 and the run folder ------------------------------------------------------------------


@pytest.mark.slow
def test_stage2_lp_ft_top1_and_the_run_folder(tmp_path, zoo_home, no_network):
    import torch
    from safetensors.torch import load_file

    from zoo.runner.stage2 import evaluate, make_prep

    root = digits(tmp_path, 200)
    plan = tiny_plan(epochs=2)
    out = tmp_path / "run"
    r = zoo.run(plan, root, out=out, seed=3, refit=False)  # the saved best model is the one the held-out split scored
    assert r.epochs_run == 2 and [h["epoch"] for h in r.history] == [1, 2]
    assert r.final_val_acc >= r.stage1_val_acc  # LP-FT improves or holds the probe
    assert all(h["val_acc"] >= r.stage1_val_acc - 0.1 and np.isfinite(h["train_loss"]) for h in r.history)
    assert r.history[0]["lr"][0] > 0 and r.history[-1]["lr"][0] == pytest.approx(0.0, abs=1e-9)  # cosine to zero
    # the run folder
    assert Plan.read(out / "plan.yaml") == plan
    cfg = json.loads((out / "model" / "config.json").read_text())
    assert cfg["backbone"] == LITE0 and cfg["classes"] == [str(i) for i in range(10)] and cfg["preprocessor"]["resolution"] == 64
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["stage"] for x in lines] == ["stage1", "stage2", "stage2"]
    for png in ("curves.png", "confusion.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG" and (out / png).stat().st_size > 5_000
    text = (out / "report.md").read_text()
    assert f"{r.final_val_acc:.4f}" in text and "stage 1" in text and "0 unreadable" in text
    # only the top group moved; frozen-stats BatchNorm kept every running mean
    bb = zoo.load(LITE0)
    ref = {f"backbone.{k}": v for k, v in bb.model.state_dict().items()}
    last = load_file(str(out / "checkpoints" / "epoch-0002" / "model.safetensors"))
    top = {f"backbone.{n}" for m in bb.layer_groups[-1].modules for n, _ in bb.model.named_parameters() if any(p is _ for p in m.parameters())}
    moved = {k for k, v in ref.items() if v.is_floating_point() and not torch.equal(v, last[k])}
    assert moved and moved <= top and not any("running_" in k for k in moved)
    # the best model reloads with its own preprocessing and scores what the run says
    best = bb.with_head(10)
    best.load_state_dict(load_file(str(out / "model" / "model.safetensors")))
    from zoo.recommender.data import load_dataset
    from zoo.runner.pipeline import split

    ds = load_dataset(root)
    _, va = split(ds.labels, 0.2, 3)
    _, acc, _ = evaluate(best, make_prep(bb, 64, plan.augment), [ds.items[i] for i in va], ds.labels[va], 32, "cpu", _nullctx)
    assert acc == pytest.approx(r.final_val_acc)


def _nullctx():
    import contextlib

    return contextlib.nullcontext()


@pytest.mark.slow
def test_nan_loss_stops_with_a_clear_message(tmp_path, zoo_home, no_network):
    from zoo.runner.stage2 import DivergedError

    root = digits(tmp_path, 100)
    plan = tiny_plan(epochs=1, lr=1e37, resolution=32)
    with pytest.raises(DivergedError, match=r"loss became (nan|inf) at epoch 1, step \d+; no checkpoint yet; lower the learning rates in the plan "
                                            r"and rerun with a new --out \(a --resume continues this plan, and would diverge again\)\.$"):
        zoo.run(plan, root, out=tmp_path / "run")
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()  # stage 1's model is kept
    # the folder holds that run: a rerun there with lower rates is refused (the advice was "rerun", with no word of --out)
    with pytest.raises(InvalidInputError, match="holds a run of a different plan; pass a new --out"):
        zoo.run(tiny_plan(epochs=1, lr=0.01, resolution=32), root, out=tmp_path / "run")


def test_occupied_out_needs_resume(tmp_path, zoo_home):
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    with pytest.raises(InvalidInputError, match="--resume"):
        zoo.run(tiny_plan(), tmp_path / "data", out=out)  # refused before the data is read (tmp_path itself would hold the run folder)


def _one_line_error(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("zoo: error: ") and err.count("\n") == 1, err
    return err


def test_bad_options_are_refused_before_anything_is_written(tmp_path, zoo_home, no_network, capsys):
    """--batch-size < 1, --seed < 0 and --epochs < 0 are one-line errors before the run folder is made
    (a negative batch size crashed in torch.cat after writing plan.yaml, stage1.json and model/;
    --batch-size 0 fell back to the plan's, --epochs -1 skipped stage 2)."""
    root = digits(tmp_path, 20)
    plan = tiny_plan()
    plan_path = str(plan.write(tmp_path / "plan.yaml"))
    out = tmp_path / "runs" / "f3"
    for opts, message in [
        (["--batch-size=-4"], "batch size must be at least 1, got -4; pass --batch-size 1 or more, or leave it out for the plan's (32)."),
        (["--batch-size", "0"], "batch size must be at least 1, got 0;"),
        (["--seed=-1"], "seed must be at least 0, got -1; pass --seed 0"),
        (["--epochs", "-1"], "epochs must be at least 0, got -1; pass --epochs 0 for stage 1 only"),
        (["--val-frac", "1.5"], "val_frac must be a finite number in (0, 1), got 1.5"),
    ]:
        err = _one_line_error(["run", plan_path, "--data", str(root), "--out", str(out), *opts], capsys)
        assert message in err, (opts, err)
        assert not (tmp_path / "runs").exists(), opts
    for kwargs, message in [({"batch_size": 0}, "batch size must be at least 1"), ({"seed": -1}, "seed must be at least 0"), ({"epochs": -2}, "epochs must be at least 0")]:
        with pytest.raises(InvalidInputError, match=message):  # the Python API checks the same, before anything is written
            zoo.run(plan, root, out=out, **kwargs)
        assert not (tmp_path / "runs").exists(), kwargs
    # the from-scratch baseline reads the batch size for its learning rate: checked before that too
    with pytest.raises(InvalidInputError, match="batch size must be at least 1"):
        zoo.run(plan, root, out=out, batch_size=0, from_scratch=True)
    assert not (tmp_path / "runs").exists()


def test_api_arguments_and_plans_no_run_can_use_are_refused_before_anything_is_written(tmp_path, zoo_home, no_network):
    """Wrong types through the Python API, and plans with selectors or learning rates no run can use, are one-line
    errors before the run folder is made (seed=1.5 raised numpy's TypeError after writing plan.yaml; a plan's
    unfreeze: [top-99] failed after stage 1; a negative learning rate ended in torch's traceback)."""
    root = digits(tmp_path, 20)
    plan = tiny_plan()
    out = tmp_path / "runs" / "x"
    for kwargs, message in [
        ({"seed": 1.5}, r"seed must be a whole number of at least 0, got 1\.5"), ({"seed": None}, "seed must be a whole number of at least 0, got None"),
        ({"epochs": "2"}, "epochs must be a whole number of at least 0, got '2'"), ({"val_frac": "0.2"}, r"val_frac must be a finite number in \(0, 1\), got '0.2'"),
        ({"processes": 0}, "processes must be at least 1, got 0"), ({"batch_size": 2.5}, "batch size must be a whole number"),
    ]:
        with pytest.raises(InvalidInputError, match=message):
            zoo.run(plan, root, out=out, **kwargs)
        assert not (tmp_path / "runs").exists(), kwargs
    with pytest.raises(InvalidInputError, match="plan must be a zoo.Plan, a dict or the path of a plan file, got NoneType"):
        zoo.run(None, root, out=out)
    with pytest.raises(InvalidInputError, match="data must be the path of an image folder"):
        zoo.run(plan, None, out=out)
    # a plan's fields are checked when it is made or read, naming the field
    data = plan.model_dump(mode="json")
    for field, value, message in [("unfreeze", ["bogus"], "unfreeze: unknown layer-group selector(s) 'bogus'"),
                                  ("lr", {"head": -0.001}, "lr: learning rates must be finite and above 0 (head: -0.001)"),
                                  ("lr", {"head": 0.0}, "above 0"), ("lr", {"top-1": 0.01}, "lr: needs a 'head' learning rate")]:
        with pytest.raises(InvalidInputError, match=re.escape(message)) as exc:
            zoo.run({**data, field: value}, root, out=out)
        assert "\n" not in str(exc.value) and not (tmp_path / "runs").exists()
    bad = plan.write(tmp_path / "nan.yaml")
    bad.write_text(bad.read_text().replace("head: 0.01", "head: .nan"))
    with pytest.raises(InvalidInputError, match=re.escape(f"{bad}: lr: learning rates must be finite and above 0 (head: nan)")):
        zoo.run(bad, root, out=out)
    # a selector beyond the backbone's groups: refused once the backbone is known, before stage 1
    deep = tiny_plan(unfreeze=("top-99",))
    with pytest.raises(InvalidInputError, match=r"the plan's unfreeze names group 99 from one end, but timm:efficientnet_lite0.pypi_in1k has 9 layer groups"):
        zoo.run(deep, root, out=out)
    assert not (tmp_path / "runs").exists()
    # a plan given as the dict it was written from runs like the plan itself
    r = zoo.run(data | {"unfreeze": [], "strategy": "linear-probe", "lr": {"head": 0.01}}, root, out=out, epochs=0, refit=False)
    assert r.best_epoch == 0 and (out / "plan.yaml").is_file()


def test_out_that_is_a_file_is_a_one_line_error(tmp_path, zoo_home, no_network, capsys):
    root = digits(tmp_path, 20)
    plan_path = tiny_plan().write(tmp_path / "p1.yaml")
    before = plan_path.read_bytes()
    err = _one_line_error(["run", str(plan_path), "--data", str(root), "--out", str(plan_path)], capsys)
    assert f"{plan_path}: is a file; pass a folder to --out." in err
    err = _one_line_error(["run", str(plan_path), "--data", str(root), "--out", str(plan_path / "run")], capsys)
    assert f"{plan_path} is a file; pass a folder to --out." in err  # a file on the way there: mkdir would fail as well
    assert plan_path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["cache", "digits", "p1.yaml"]


_NO_WRITE_IN = r"""
import os, sys
from pathlib import Path
ro = Path(sys.argv[1]).resolve()
real = os.mkdir
def mkdir(path, *args, **kwargs):  # the folder refuses new entries, as a read-only mount (or a 0555 folder for non-root) does
    if Path(path).resolve().parent == ro:
        raise PermissionError(13, "Permission denied", str(path))
    return real(path, *args, **kwargs)
os.mkdir = mkdir
from zoo.cli import main
rc = main(sys.argv[2:])
print(rc, sorted(m for m in ("tensorflow", "timm", "torch", "transformers") if m in sys.modules))
"""


def test_an_out_that_cannot_be_written_is_one_line_before_any_framework_loads(tmp_path, zoo_home):
    """--out in a folder that refuses writes failed only when the run folder was made, after torch was imported, the
    data read and the backbone loaded (seconds to minutes later); the first line of the run is now that error."""
    import subprocess
    import sys

    plan_path = tiny_plan().write(tmp_path / "p1.yaml")
    ro = tmp_path / "ro"
    ro.mkdir()
    for out in (ro / "run", ro / "runs" / "deeper"):
        proc = subprocess.run([sys.executable, "-c", _NO_WRITE_IN, str(ro), "run", str(plan_path), "--data", str(tmp_path / "nowhere"), "--out", str(out)],
                              capture_output=True, text=True, timeout=300)
        assert proc.stdout.split("\n")[0] == "2 []", proc.stdout + proc.stderr  # exit 2, no framework imported
        assert proc.stderr == f"zoo: error: {out}: cannot write in {ro} (Permission denied); pass an --out in a folder you can write to.\n"
        assert list(ro.iterdir()) == []


def test_an_out_in_the_data_folder_is_refused_before_anything_is_written(tmp_path, zoo_home, no_network, capsys, monkeypatch):
    """--out equal to the image folder (or inside it, or the default runs/ when run from inside it) wrote plan.yaml, model/
    and checkpoints/ among the classes: the next run on that folder read model/ and checkpoints/ as two more classes."""
    from zoo.runner import pipeline

    root = digits(tmp_path, 20)
    plan_path = str(tiny_plan(epochs=0).write(tmp_path / "p1.yaml"))
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    for out, message in [(root, f"{root}: is the data folder;"), (root / "runs" / "a", f"{root / 'runs' / 'a'}: is inside the data folder {root};"),
                         (root / "3" / "run", "is inside the data folder")]:
        err = _one_line_error(["run", plan_path, "--data", str(root), "--out", str(out)], capsys)
        assert message in err and "pass an --out outside it." in err, err
    monkeypatch.chdir(root / "3")
    err = _one_line_error(["run", plan_path, "--data", "..", "--out", "."], capsys)  # the same folder by other names
    assert ".: is inside the data folder ..;" in err, err
    monkeypatch.chdir(root)
    err = _one_line_error(["run", plan_path, "--data", "."], capsys)  # the default runs/<backbone>-<time>
    assert "is inside the data folder .;" in err, err
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before
    # a hidden folder inside it is not data: accepted
    monkeypatch.setattr(pipeline, "_load", lambda *a: pytest.fail("reached the model load"))
    with pytest.raises(pytest.fail.Exception, match="reached the model load"):
        zoo.run(plan_path, root, out=root / ".runs" / "a", progress=False)


def test_a_plan_whose_backbone_reads_another_modality_is_refused_before_the_run_folder(tmp_path, zoo_home, no_network, capsys, monkeypatch):
    """An image plan edited to a text backbone read the data, loaded the model, made the run folder, then failed in
    feature extraction ("input #0 is a PosixPath; text models take strings"), leaving plan.yaml behind (a folder that
    then needed --resume). The catalog's modality refuses it before the data is read; an id the catalog does not list
    is refused once loaded, before the run folder is made."""
    from zoo.runner import pipeline

    root = digits(tmp_path, 20)
    text_bb = "hf:sentence-transformers/all-MiniLM-L6-v2"
    plan = tiny_plan(strategy="linear-probe", unfreeze=(), epochs=0).model_copy(update={"backbone": text_bb})
    plan_path = str(plan.write(tmp_path / "p1.yaml"))
    out = tmp_path / "run"
    with monkeypatch.context() as m:
        m.setattr(pipeline, "_dataset", lambda data: pytest.fail("the data was read"))
        err = _one_line_error(["run", plan_path, "--data", str(root), "--out", str(out)], capsys)
    assert f"{text_bb} is a text model but the plan is for image data; put an image backbone in the plan" in err, err
    monkeypatch.setattr(zoo._api, "catalog_modality", lambda model_id: None)  # as for an id the catalog does not list
    err = _one_line_error(["run", plan_path, "--data", str(root), "--out", str(out)], capsys)
    assert f"{text_bb} is a text model but {root} holds image data;" in err, err
    assert not out.exists()


def test_an_out_starting_with_a_tilde_is_in_the_home_folder(tmp_path, zoo_home, no_network, monkeypatch, capsys):
    """`--out=~/runs/a` (no shell expands a ~ after --out=) made a folder named ~ in the current folder; --data's ~ was
    already the home folder."""
    root = digits(tmp_path, 20)
    plan_path = str(tiny_plan(strategy="linear-probe", unfreeze=(), epochs=0, resolution=32).write(tmp_path / "p1.yaml"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert main(["run", plan_path, "--data", str(root), "--out=~/runs/a"]) == 0
    assert (tmp_path / "home" / "runs" / "a" / "result.json").is_file() and not (tmp_path / "~").exists()
    assert f"run folder: {tmp_path / 'home' / 'runs' / 'a'} " in capsys.readouterr().out


def test_a_folder_holding_a_run_stopped_in_stage_1_is_not_overwritten(tmp_path, zoo_home, monkeypatch):
    """A run stopped before its first checkpoint (Ctrl-C in stage 1) leaves plan.yaml and data.json: a new run into that
    folder, of any plan, silently overwrote them; it now needs --resume (same plan) or a new --out, before any model loads."""
    from zoo.runner import pipeline

    monkeypatch.setattr(pipeline, "_load", lambda *a: pytest.fail("the backbone was loaded"))
    plan = tiny_plan()
    out = tmp_path / "run"
    out.mkdir()
    (out / "plan.yaml").write_text(plan.to_yaml(), encoding="utf-8")
    (out / "data.json").write_text("{}", encoding="utf-8")
    with pytest.raises(InvalidInputError, match=re.escape(f"{out}: holds a run that stopped before it finished; pass --resume to continue it or a new --out.")):
        zoo.run(plan, tmp_path / "data", out=out)
    with pytest.raises(InvalidInputError, match=re.escape(f"{out}: holds a run of a different plan; pass a new --out (or --resume with that run's plan).")):
        zoo.run(tiny_plan(epochs=3), tmp_path / "data", out=out)
    assert (out / "plan.yaml").read_text(encoding="utf-8") == plan.to_yaml() and sorted(p.name for p in out.iterdir()) == ["data.json", "plan.yaml"]


def test_resume_with_nothing_to_resume_is_a_one_line_error(tmp_path, zoo_home, no_network, capsys, monkeypatch):
    """--resume on a folder without a run (missing, empty) or without --out used to start a fresh run silently."""
    from zoo.runner.pipeline import _check_out

    root = digits(tmp_path, 20)
    plan = tiny_plan()
    plan_path = str(plan.write(tmp_path / "p1.yaml"))
    missing = tmp_path / "runs" / "e8"
    err = _one_line_error(["run", plan_path, "--data", str(root), "--out", str(missing), "--resume"], capsys)
    assert f"{missing}: nothing to resume (no run there); drop --resume to start one." in err
    assert not (tmp_path / "runs").exists()
    missing.mkdir(parents=True)  # an empty folder holds no run either
    err = _one_line_error(["run", plan_path, "--data", str(root), "--out", str(missing), "--resume"], capsys)
    assert "nothing to resume (no run there)" in err and list(missing.iterdir()) == []
    monkeypatch.chdir(tmp_path)  # without --out the default folder runs/<backbone>-<time> never holds a run
    err = _one_line_error(["run", plan_path, "--data", str(root), "--resume"], capsys)
    assert "--resume needs the run folder to continue: pass it with --out" in err
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["e8"]
    with pytest.raises(InvalidInputError, match="nothing to resume"):
        zoo.run(plan, root, out=tmp_path / "elsewhere", resume=True)
    assert not (tmp_path / "elsewhere").exists()
    # a run killed during stage 1 leaves plan.yaml (written first): it stays resumable; another plan does not
    (missing / "plan.yaml").write_text(plan.to_yaml(), encoding="utf-8")
    _check_out(missing, plan, resume=True)
    with pytest.raises(InvalidInputError, match="holds a run of a different plan"):
        _check_out(missing, tiny_plan(epochs=3), resume=True)


def test_a_second_run_into_a_folder_in_use_is_a_one_line_error(tmp_path, zoo_home, no_network, capsys):
    """Two `zoo run` with one --out at once both used to pass the occupied-folder check and write the same folder:
    one's checkpoint cleanup deleted the other's temporary epoch folder (a traceback from safetensors, or 'cannot write
    the epoch-1 checkpoint ... free disk space'), or both ended 'successfully' with their files mixed."""
    import subprocess
    import sys

    from zoo.cache.records import lock_path

    root = digits(tmp_path, 20)
    plan_path = str(tiny_plan().write(tmp_path / "p1.yaml"))
    out = tmp_path / "runs" / "r1"
    holder = subprocess.Popen(  # another process holding the folder, as a running `zoo run` does
        [sys.executable, "-c", "import sys; from filelock import FileLock; lock = FileLock(sys.argv[1]); lock.acquire(); print('held', flush=True); "
         "sys.stdin.read()", str(lock_path(out))], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        err = _one_line_error(["run", plan_path, "--data", str(root), "--out", str(out)], capsys)
        assert f"{out}: another `zoo run` is writing this run folder now" in err and not out.exists()
        out.mkdir(parents=True)  # a run in progress has written plan.yaml: --resume is refused the same way
        (out / "plan.yaml").write_text(tiny_plan().to_yaml(), encoding="utf-8")
        err = _one_line_error(["run", plan_path, "--data", str(root), "--out", str(out), "--resume"], capsys)
        assert f"{out}: another `zoo run` is writing this run folder now" in err
        assert sorted(p.name for p in out.iterdir()) == ["plan.yaml"]  # nothing written by the refused runs
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    result = zoo.run(tiny_plan(epochs=0), root, out=tmp_path / "runs" / "r2", progress=False)  # a free folder runs
    assert Path(result.out, "result.json").is_file()


def test_a_run_with_a_read_only_zoo_home_holds_its_folder_with_a_lock_file_inside(tmp_path, zoo_home, no_network, monkeypatch):
    """$ZOO_HOME/locks cannot be made in a read-only shared cache: the run folder's lock goes in the run folder."""
    import subprocess
    import sys

    from zoo.cache import records

    root = digits(tmp_path, 20)
    out = tmp_path / "runs" / "r1"
    real = records.lock_path

    def read_only(target):
        if Path(target) == out:
            raise PermissionError(13, "Permission denied", str(zoo_home / "locks"))
        return real(target)

    monkeypatch.setattr(records, "lock_path", read_only)
    out.mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from filelock import FileLock; lock = FileLock(sys.argv[1]); lock.acquire(); print('held', flush=True); "
         "sys.stdin.read()", str(out / ".zoo-run.lock")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(InvalidInputError, match="another `zoo run` is writing this run folder now"):
            zoo.run(tiny_plan(epochs=0), root, out=out, progress=False)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    result = zoo.run(tiny_plan(epochs=0), root, out=out, progress=False)
    assert Path(result.out, "result.json").is_file()


def test_resume_on_other_data_or_split_settings_is_refused(tmp_path, zoo_home, no_network, capsys):
    """The run folder records a fingerprint of the data (relative paths, sizes, class names) and the split settings;
    --resume with other data, --seed or --val-frac is a one-line error that changes nothing. Folders from before the
    fingerprint resume unchecked; copies of the same data (other path, other file times) resume."""
    import os
    import shutil

    from zoo.recommender.data import load_dataset
    from zoo.runner.pipeline import data_stamp

    root = digits(tmp_path, 60)
    plan_path = str(tiny_plan(strategy="linear-probe", unfreeze=(), epochs=0, resolution=32).write(tmp_path / "ft.yaml"))
    out = tmp_path / "runs" / "ft"
    assert main(["run", plan_path, "--data", str(root), "--out", str(out), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    stamp = json.loads((out / "data.json").read_text())
    assert {k: v for k, v in stamp.items() if k not in ("epochs", "batch_size")} == data_stamp(load_dataset(root), 0, 0.2)
    assert stamp["items"] == 60 and stamp["seed"] == 0 and (stamp["epochs"], stamp["batch_size"]) == (0, 32)
    other = tmp_path / "digits2"  # digits minus one image
    shutil.copytree(root, other)
    next(iter(sorted((other / "7").iterdir()))).unlink()

    def snapshot() -> dict[str, bytes]:
        return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}

    before = snapshot()
    err = _one_line_error(["run", plan_path, "--data", str(other), "--out", str(out), "--resume"], capsys)
    assert f"{out}: holds a run on other data; resume with the same data or pass a new --out." in err
    err = _one_line_error(["run", plan_path, "--data", str(root), "--out", str(out), "--resume", "--seed", "3"], capsys)
    assert "holds a run with --seed 0 --val-frac 0.2; resume with those (and the same data) or pass a new --out." in err
    err = _one_line_error(["run", plan_path, "--data", str(root), "--out", str(out), "--resume", "--val-frac", "0.3"], capsys)
    assert "holds a run with --seed 0 --val-frac 0.2" in err
    # the schedule is fixed when the run starts: --resume with another --epochs or --batch-size was silently ignored
    for opts in (["--epochs", "3"], ["--batch-size", "4"]):
        err = _one_line_error(["run", plan_path, "--data", str(root), "--out", str(out), "--resume", *opts], capsys)
        assert "holds a run with --epochs 0 --batch-size 32; resume with those" in err, opts
    with pytest.raises(InvalidInputError, match="holds a run on other data"):
        zoo.run(plan_path, other, out=out, resume=True)
    assert snapshot() == before
    # the same data elsewhere, every file touched: the same fingerprint
    same = tmp_path / "copy"
    shutil.copytree(root, same)
    for f in same.rglob("*.png"):
        os.utime(f, (1_000_000_000, 1_000_000_000))
    assert main(["run", plan_path, "--data", str(same), "--out", str(out), "--resume", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["final_val_acc"] == first["final_val_acc"]
    # a run folder from before data.json resumes (and records the data from then on)
    (out / "data.json").unlink()
    assert main(["run", plan_path, "--data", str(other), "--out", str(out), "--resume", "--json"]) == 0
    capsys.readouterr()
    assert json.loads((out / "data.json").read_text())["items"] == 59


@pytest.mark.slow
def test_gradual_unfreeze_and_trained_batchnorm(tmp_path, zoo_home, no_network):
    import torch
    from safetensors.torch import load_file

    root = digits(tmp_path, 100)
    plan = tiny_plan(unfreeze=("top-1", "top-2"), epochs=1, resolution=32)
    plan = plan.model_copy(update={"bn": "train", "schedule": plan.schedule.model_copy(update={"gradual_unfreeze": True})})
    r = zoo.run(plan, root, out=tmp_path / "run")
    assert r.epochs_run == 1 and len(r.history[0]["lr"]) == 3  # head + two groups in the optimizer
    bb = zoo.load(LITE0)
    ref = {f"backbone.{k}": v for k, v in bb.model.state_dict().items()}
    last = load_file(str(tmp_path / "run" / "checkpoints" / "epoch-0001" / "model.safetensors"))
    names = {id(p): f"backbone.{n}" for n, p in bb.model.named_parameters()}
    names.update({id(b): f"backbone.{n}" for n, b in bb.model.named_buffers()})

    def keys(group):
        return {names[id(t)] for m in group.modules for t in [*m.parameters(), *m.buffers()] if id(t) in names}

    top, second = keys(bb.layer_groups[-1]), keys(bb.layer_groups[-2])
    moved = {k for k, v in ref.items() if v.is_floating_point() and not torch.equal(v, last[k])}
    assert moved <= top and moved & second == set()  # epoch 1 of gradual unfreezing: only the top group
    assert any("running_mean" in k for k in moved)  # bn: train updates the trainable group's statistics


def test_an_epoch_never_ends_on_a_training_batch_of_one(tmp_path, zoo_home, no_network):
    """BatchNorm in training mode cannot normalise one item: a shuffled epoch folds a last batch of one into the batch
    before it (zoo run crashed with torch's "Expected more than 1 value per channel" and left a half-written folder)."""
    from zoo.recommender.data import load_dataset
    from zoo.runner.pipeline import split
    from zoo.runner.shards import Order, _batches, n_batches

    import torch

    for n, bs in [(18, 17), (33, 32), (65, 32), (64, 32), (5, 8), (1, 4)]:
        got = _batches(n, bs, torch.Generator().manual_seed(0))
        assert sorted(int(i) for b in got for i in b) == list(range(n)) and len(got) == n_batches(n, bs) == len(Order(n, bs, 0))
        assert n == 1 or min(len(b) for b in got) > 1
        assert [len(b) for b in _batches(n, bs, None)] == [min(bs, n - i) for i in range(0, n, bs)]  # evaluation keeps every batch
    root = digits(tmp_path, 60)
    _, va = split(load_dataset(root).labels, 0.2, 0)
    n_train = 60 - len(va)
    plan = tiny_plan(epochs=1).model_copy(update={"bn": "train"})
    r = zoo.run(plan, root, out=tmp_path / "run", batch_size=n_train - 1, refit=False)
    assert r.epochs_run == 1 and (tmp_path / "run" / "result.json").is_file()


def test_a_plan_without_a_resolution_gives_a_run_that_predict_and_export_reload(tmp_path, zoo_home, no_network):
    """`resolution: null` trains at the backbone's own side; the run's config recorded null and `zoo predict` /
    `zoo export` then failed with a TypeError traceback."""
    from zoo.runner.predict import load_run

    root = digits(tmp_path, 30)
    plan = tiny_plan(strategy="linear-probe", unfreeze=(), epochs=0).model_copy(update={"resolution": None})
    zoo.run(plan, root, out=tmp_path / "run")
    cfg = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert cfg["preprocessor"]["resolution"] == zoo.load(LITE0).input_spec.size
    assert f"resolution {cfg['preprocessor']['resolution']}," in (tmp_path / "run" / "report.md").read_text()
    m = load_run(tmp_path / "run")
    files = sorted(root.rglob("*.png"))[:2]
    assert len(m.predict(files, top_k=1)) == 2


def test_a_resumed_run_removes_the_temporary_files_of_the_killed_one(tmp_path, zoo_home, no_network):
    """A run killed while writing (SIGKILL) left its ``.<name>.<random>.tmp`` in the run folder for good, one per kill:
    a whole model (``model/.model.safetensors.*.tmp``, or safetensors' own ``model/.tmpXXXXXX``), ``.metrics.jsonl.*.tmp``, ``checkpoints/.LATEST.*.tmp``. The
    next run there, holding the folder, removes them; other files' temporary files (an export's) are left alone."""
    root = digits(tmp_path, 20)
    plan = tiny_plan(epochs=0)
    out = tmp_path / "runs" / "r1"
    zoo.run(plan, root, out=out, progress=False)
    stale = [out / "model" / ".model.safetensors.k1ll3d_x.tmp", out / "model" / ".tmpvG2Ia5", out / ".metrics.jsonl.k1ll3d_x.tmp",
             out / "checkpoints" / ".LATEST.k1ll3d_x.tmp"]
    export = out / "model" / ".model.onnx.k1ll3d_x.tmp"
    for p in [*stale, export]:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"half a file")
    zoo.run(plan, root, out=out, resume=True, progress=False)
    assert [p for p in stale if p.exists()] == [] and export.exists()


def test_group_lrs_of_middle_and_all_are_the_plans_own():
    """A plan's ``lr["middle"]`` / ``lr["all"]`` is the rate of that selection's top group (x lr_decay per group
    below it), not dropped for head x decay^distance: an edited ``all: 1e-6`` trains the backbone at 1e-6."""
    from zoo.runner.stage2 import group_lr

    base = tiny_plan(unfreeze=("all",), lr=0.1)
    decay = base.lr_decay
    plan = base.model_copy(update={"lr": {"head": 0.1, "all": 1e-6}})
    assert [group_lr(plan, i, 9) for i in (8, 7, 0)] == pytest.approx([1e-6, 1e-6 * decay, 1e-6 * decay**8])
    plan = base.model_copy(update={"unfreeze": ["middle"], "lr": {"head": 0.1, "middle": 1e-3}})
    assert [group_lr(plan, i, 9) for i in (5, 4, 3)] == pytest.approx([1e-3, 1e-3 * decay, 1e-3 * decay**2])
    # the recommender's own plans (all = head x decay) keep head x decay^distance for every group
    rec = zoo.recommend(samples=2000, classes=10)
    assert rec.unfreeze == ["all"]
    assert [group_lr(rec, i, 9) for i in range(9)] == pytest.approx([rec.lr["head"] * rec.lr_decay ** (9 - i) for i in range(9)])


def test_run_reads_the_data_once_and_keeps_every_readable_image(tmp_path, monkeypatch):
    """zoo run's data: one pass over the folder (each file opened once for its header and once to decode it), every
    readable image kept. It used to read a recommender-sized sample first and then the whole folder again with
    max_samples = n; a truncated file in that sample made n fall short of the readable files, so the second
    stratified draw dropped readable images (here 8 of 24) without a word."""
    from PIL import Image

    from zoo.recommender.data import check_decoding, load_dataset
    from zoo.runner import pipeline
    from zoo.testing import write_photo_folder

    root = write_photo_folder(tmp_path / "photos", per_class=8, side=32, min_crop=32)
    for cls in ("chelsea", "coffee", "astronaut"):
        data = (root / cls / "000.png").read_bytes()
        for j in range(4):  # a readable header, truncated pixels: skipped when decoded
            (root / cls / f"cut{j}.png").write_bytes(data[: len(data) // 2])
    monkeypatch.setattr(pipeline, "RECOMMENDER_MAX_SAMPLES", 30)  # the sample holds most of the 36 files
    opened: list[str] = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda fp, *a, **k: (opened.append(str(fp)), real_open(fp, *a, **k))[1])
    ds = check_decoding(pipeline._dataset(root))  # the run decodes each image once (unless the feature cache vouches for them)
    assert len(ds.items) == ds.n == 24 and ds.skipped == 12
    assert sorted(str(p.relative_to(root)) for p in ds.items) == sorted(f"{c}/{j:03d}.png" for c in ("chelsea", "coffee", "astronaut") for j in range(8))
    assert len(opened) == 2 * 36, f"{len(opened)} opens of 36 files"
    # the fingerprint (the feature cache's key) of data no larger than the recommender's sample is the recommender's
    monkeypatch.setattr(pipeline, "RECOMMENDER_MAX_SAMPLES", 2000)
    assert check_decoding(pipeline._dataset(root)).fingerprint == load_dataset(root, max_samples=2000).fingerprint


def test_reading_headers_then_decoding_draws_what_decoding_at_once_draws(tmp_path):
    """load_dataset(decode=False) then check_decoding: the items, labels, counts, skipped files and fingerprint (the
    feature cache's key) of load_dataset(decode=True), truncated files and files that are no image at all skipped alike."""
    from zoo.recommender.data import check_decoding, load_dataset
    from zoo.testing import write_photo_folder

    root = write_photo_folder(tmp_path / "photos", per_class=5, side=32, min_crop=32)
    (root / "coffee" / "junk.png").write_bytes(b"not a png")  # no header: skipped by the listing
    data = (root / "chelsea" / "000.png").read_bytes()
    (root / "chelsea" / "cut.png").write_bytes(data[: len(data) // 2])  # a header, truncated pixels: skipped when decoded
    (root / "astronaut" / "cut.png").write_bytes(data[: len(data) // 2])
    for whole, max_samples in ((True, 2000), (False, 2000), (False, 9)):
        at_once = load_dataset(root, max_samples=max_samples, whole=whole)
        listed = load_dataset(root, max_samples=max_samples, whole=whole, decode=False)
        assert not listed.decoded and len(listed.items) >= len(at_once.items)
        assert len(listed.items) == len(at_once.items) + 2 or max_samples == 9  # the 2 cut files are listed (a sample of 9 may miss them)
        later = check_decoding(listed)
        assert later.decoded and check_decoding(later) is later
        for name in ("items", "counts", "skipped", "skipped_examples", "image_sizes", "fingerprint", "classes"):
            assert getattr(later, name) == getattr(at_once, name), (name, whole, max_samples)
        assert np.array_equal(later.labels, at_once.labels) and later.skipped_note == at_once.skipped_note
    one = tmp_path / "one"  # a class left with one image once its truncated file is skipped: the same one-line error
    for cls, n in (("a", 2), ("b", 2)):
        (one / cls).mkdir(parents=True)
        for j in range(n):
            (one / cls / f"{j}.png").write_bytes((root / "coffee" / f"{j:03d}.png").read_bytes())
    (one / "b" / "1.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidInputError, match="class 'b' has 1 readable image"):
        load_dataset(one)
    with pytest.raises(InvalidInputError, match="class 'b' has 1 readable image"):
        check_decoding(load_dataset(one, decode=False))


def test_a_run_on_cached_features_decodes_no_image_to_check_it(tmp_path, zoo_home, no_network, monkeypatch):
    """zoo run decoded every image to check it before stage 1; on the recommender's cached features that was the only
    decode of the run's start (the features were read from the cache), on a miss the extraction decoded them all again.
    The cache vouches for the files (its key holds their paths, sizes and times, and zoo's reading rules): no image is
    decoded then. Files that do not decode are still skipped and counted (their data misses the cache: decoded once)."""
    import zoo.inputs
    from zoo.recommender.data import load_dataset
    from zoo.recommender.features import features_for
    from zoo.testing import write_photo_folder

    decoded: list[str] = []
    real = zoo.inputs.iter_images

    def counting(inputs, **kwargs):
        for img in real(inputs, **kwargs):
            decoded.append("image")
            yield img

    root = write_photo_folder(tmp_path / "photos", per_class=6, side=32, min_crop=32)
    plan = tiny_plan(strategy="linear-probe", unfreeze=(), epochs=0, resolution=32)
    bb = zoo.load(LITE0)
    features_for(bb, load_dataset(root), 32)  # what `zoo recommend --data` leaves behind
    monkeypatch.setattr(zoo.inputs, "iter_images", counting)
    r = zoo.run(plan, root, out=tmp_path / "run", progress=False)
    assert r.features_cached and r.skipped_unreadable == 0 and decoded == []
    # files whose header reads but whose pixels do not: the listing keeps them, the cache misses, each image is decoded once
    data = (root / "chelsea" / "000.png").read_bytes()
    for cls in ("chelsea", "coffee"):
        (root / cls / "cut.png").write_bytes(data[: len(data) // 2])
    r = zoo.run(plan, root, out=tmp_path / "run2", progress=False)
    assert r.features_cached and r.skipped_unreadable == 2 and len(decoded) == 18  # the 18 readable ones (the 2 cut ones raise)
    assert "2 unreadable file(s) skipped" in (tmp_path / "run2" / "report.md").read_text()
    # --resume of that run: the data check passes once the cut files are skipped again
    decoded.clear()
    r = zoo.run(plan.model_copy(update={"strategy": "lp-ft", "unfreeze": ["top-1"], "lr": {"head": 0.01, "top-1": 0.005}}), root,
                out=tmp_path / "run3", epochs=0, progress=False)
    assert r.features_cached and r.skipped_unreadable == 2 and len(decoded) == 18


@pytest.mark.parametrize("strategy", ["linear-probe", "lp-concat"])
def test_stage1_reads_only_the_features_it_fits_on_from_the_cache(tmp_path, zoo_home, no_network, monkeypatch, strategy):
    """A run's stage 1 fits on the final features (and lp-concat's middle group); it used to read every group and the
    source head's logits from the cache (EfficientNet-Lite0: 12 KB an image, against 5) and hold them through stage 2."""
    from zoo.recommender import features as F
    from zoo.recommender.data import load_dataset
    from zoo.runner.stage1 import concat_group

    root = digits(tmp_path, 100)
    bb = zoo.load(LITE0)
    whole = F.features_for(bb, load_dataset(root), 64)  # what zoo recommend (or an earlier run) left behind
    names = list(whole.groups)
    read: list[str] = []
    real = np.lib.npyio.NpzFile.__getitem__
    monkeypatch.setattr(np.lib.npyio.NpzFile, "__getitem__", lambda self, key: (read.append(key), real(self, key))[1])
    held = {}
    real_probe = __import__("zoo.runner.stage1", fromlist=["probe"]).probe

    def probe(fs, *a, **k):
        held.update(groups=list(fs.groups), logits=fs.logits is not None)
        return real_probe(fs, *a, **k)

    monkeypatch.setattr("zoo.runner.stage1.probe", probe)
    r = zoo.run(tiny_plan(strategy=strategy, unfreeze=(), epochs=0), root, out=tmp_path / "run")
    assert r.features_cached
    want = [names[-1]] if strategy == "linear-probe" else [concat_group(names), names[-1]]
    assert held == {"groups": want, "logits": False}
    arrays = sorted(k for k in read if k.startswith("group_") or k == "logits")
    assert arrays == sorted(f"group_{names.index(g):02d}" for g in want), arrays


_STAGE1_MEMORY = r"""
import resource, sys
import numpy as np
from zoo.runner.stage1 import fit_concat_head, fit_head
n, d = 20000, 512
rng = np.random.default_rng(0)
y = np.arange(n) % 10
x = rng.standard_normal((n, d), dtype=np.float32) + (y[:, None] * 0.05).astype(np.float32)
tr, va = np.flatnonzero(np.arange(n) % 5 != 0), np.flatnonzero(np.arange(n) % 5 == 0)
xt, xv = x[tr], x[va]
fit_head(xt[:50], y[tr][:50], xv[:10], y[va][:10], 10, max_iter=1)  # torch's own start-up memory before the baseline
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if sys.argv[1] == "lp":
    fit_head(xt, y[tr], xv, y[va], 10, max_iter=1, l2_grid=(0.01,))
else:
    fit_concat_head(x[:, :128], x, y, tr, va, 10, group="mid", max_iter=1, l2_grid=(0.01,))
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024 / (len(tr) * d * 8))
"""


@pytest.mark.parametrize("how, most", [("lp", 2.4), ("concat", 3.5)])
def test_stage1_holds_the_training_rows_in_float64_about_once(how, most):
    """Stage 1's L-BFGS fit works on float64 rows; it held the raw rows, the standardised rows and the temporaries of
    their scale at once (3.25 float64 copies of the training rows at its peak; lp-concat 5.6, having built the
    concatenation for every item before cutting train and held-out rows out of it). The rows are now standardised
    in place: 1.75 and 2.5 (peak RSS growth of a fresh process, in float64 copies of the final features' training rows)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _STAGE1_MEMORY, how], capture_output=True, text=True, check=True)
    copies = float(out.stdout.split()[-1])
    assert copies < most, f"{how}: peak {copies:.2f} float64 copies of the training rows"


@pytest.mark.parametrize("ranked", [False, True])
def test_a_run_on_data_larger_than_the_recommenders_sample_reuses_its_rows(tmp_path, zoo_home, no_network, monkeypatch, ranked):
    """zoo recommend measures a stratified sample (2000 items by default); zoo run trains on every item. On data larger
    than the sample the run's fingerprint differs, and it extracted every item again, the sample's included (a folder
    of 2005 images: all 2005 re-extracted, 42 s here). It now finds the sample's file (or its ranking sub-sample's)
    by the sample's fingerprint and extracts only the other items; the file it writes is a single pass's."""
    from zoo.recommender import features as F
    from zoo.recommender.data import load_dataset
    from zoo.runner import pipeline

    root = digits(tmp_path, 60)
    monkeypatch.setattr(pipeline, "RECOMMENDER_MAX_SAMPLES", 40)
    bb = zoo.load(LITE0)
    sample = load_dataset(root, max_samples=40)  # what zoo recommend --data measured
    rows = np.arange(0, len(sample.items), 2) if ranked else None  # several candidates: ranked on a sub-sample of it
    F.features_for(bb, sample, 64, rows=rows)
    extracted: list[int] = []
    real = F.extract
    monkeypatch.setattr(F, "extract", lambda backbone, items, *a, **k: (extracted.append(len(items)), real(backbone, items, *a, **k))[1])
    r = zoo.run(tiny_plan(strategy="linear-probe", unfreeze=(), epochs=0), root, out=tmp_path / "run")
    reused = len(rows) if ranked else len(sample.items)
    assert extracted == [60 - reused] and not r.features_cached
    assert json.loads((tmp_path / "run" / "result.json").read_text())["features_cached"] is False
    whole = F.cached(bb, load_dataset(root, max_samples=40, whole=True), 64)
    assert whole is not None and whole.meta["reused"] == reused
    single = real(bb, load_dataset(root, max_samples=40, whole=True).items, whole.labels, resolution=64)
    for g in single.groups:
        np.testing.assert_allclose(whole.groups[g], single.groups[g], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_plan_fields_a_run_would_leave_unused_are_refused_before_anything_is_written(tmp_path, zoo_home, no_network, capsys):
    """A probe strategy that unfreezes groups, epochs with nothing unfrozen, and a learning rate for a group the plan
    does not unfreeze each ran without a word (a probe fine-tuned; the epochs, or the rate, silently unused)."""
    root = digits(tmp_path, 20)
    out = tmp_path / "runs" / "x"
    plan = tiny_plan(unfreeze=("top-1",))
    probe = plan.model_copy(update={"strategy": "linear-probe", "unfreeze": [], "lr": {"head": 0.01}})
    for bad, message in [
        (plan.model_copy(update={"strategy": "linear-probe"}), "the plan is linear-probe (a probe) but unfreezes top-1; set unfreeze: [] or strategy: lp-ft."),
        (plan.model_copy(update={"strategy": "head-only"}), "the plan is head-only (a probe) but unfreezes top-1"),
        (probe, "the plan's schedule.epochs is 2 but its unfreeze is empty, so no epoch would train"),
        (plan.model_copy(update={"lr": {"head": 0.01, "top-1": 0.005, "top-3": 0.001}}), "the plan's lr names top-3, which its unfreeze (top-1) does not select"),
        (plan.model_copy(update={"lr": {"head": 0.01, "top-1": 0.005, "middle": 0.001}}), "the plan's lr names middle, which its unfreeze (top-1) does not select"),
        (plan.model_copy(update={"lr": {"head": 0.01, "top-1": 0.005, "early-12": 0.001}}), "the plan's lr names early-12"),
    ]:
        with pytest.raises(InvalidInputError, match=re.escape(message)) as exc:
            zoo.run(bad, root, out=out)
        assert "\n" not in str(exc.value) and not (tmp_path / "runs").exists()
    # what stays allowed: --epochs overrides the plan's (the benchmark grid runs probe plans so), 'all' covers any selection
    r = zoo.run(probe, root, out=out, epochs=0, refit=False)
    assert r.epochs_run == 0 and "trains nothing" not in capsys.readouterr().err
    r = zoo.run(probe, root, out=tmp_path / "runs" / "z", epochs=3, refit=False)  # --epochs on a probe plan: said, not silent
    assert r.epochs_run == 0 and "zoo run: --epochs 3 trains nothing: the plan unfreezes no layer group (a linear-probe plan)" in capsys.readouterr().err
    all_rate = plan.model_copy(update={"lr": {"head": 0.01, "all": 0.001}, "schedule": plan.schedule.model_copy(update={"epochs": 0})})
    zoo.run(all_rate, root, out=tmp_path / "runs" / "y", refit=False)


def test_weight_decay_skips_biases_norm_weights_and_the_models_own_names():
    """timm's param_groups_weight_decay / the Hugging Face Trainer: no decay on biases, norm weights and the
    names a timm model lists in no_weight_decay() (a ViT's pos_embed and cls_token), also inside a classifier."""
    import timm
    import torch
    from torch import nn

    from zoo.frameworks.torch import decay_groups

    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=32, patch_size=16)
    model = nn.Sequential(vit, nn.Linear(vit.num_features, 3))
    names = {id(p): n for n, p in model.named_parameters()}
    groups = decay_groups(model, [{"params": list(vit.parameters()), "lr": 0.1, "name": "body"},
                                  {"params": list(model[1].parameters()), "lr": 1.0, "name": "head"}], 0.05)
    assert [(g["name"], g["weight_decay"], g["lr"]) for g in groups] == [("body", 0.05, 0.1), ("body", 0.0, 0.1), ("head", 0.05, 1.0), ("head", 0.0, 1.0)]
    plain = {names[id(p)] for g in groups if g["weight_decay"] == 0.0 for p in g["params"]}
    decayed = {names[id(p)] for g in groups if g["weight_decay"] for p in g["params"]}
    assert {"0.pos_embed", "0.cls_token", "0.norm.weight", "0.blocks.0.norm1.weight", "0.blocks.0.attn.qkv.bias", "1.bias"} <= plain
    assert {"0.patch_embed.proj.weight", "0.blocks.0.attn.qkv.weight", "1.weight"} <= decayed
    assert not plain & decayed and len(plain | decayed) == len(names)
    # no decay asked: nothing split, every group says 0
    assert [(g["name"], g["weight_decay"], len(g["params"])) for g in decay_groups(model, [{"params": list(model.parameters()), "name": "all"}], 0.0)] == [
        ("all", 0.0, len(names))]
    opt = torch.optim.AdamW(groups, lr=1.0)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0, 0.05, 0.0]


def test_an_adamw_run_decays_no_bias_or_norm_weight_and_logs_one_lr_per_group(tmp_path, zoo_home, no_network):
    import torch

    data = digits(tmp_path, 120)
    plan = tiny_plan(unfreeze=("top-1", "top-2"), epochs=1).model_copy(update={"optimizer": Optimizer(name="adamw", weight_decay=0.05)})
    r = zoo.run(plan, data, out=tmp_path / "run", seed=0)
    assert len(r.history[0]["lr"]) == 3  # head + two groups, each once though its decayed and plain halves are two optimizer groups
    ckpt = next((tmp_path / "run" / "checkpoints").glob("*/state.pt"))
    groups = torch.load(ckpt, map_location="cpu", weights_only=True)["optimizer"]["param_groups"]
    top2 = [g.name for g in zoo.load(LITE0).layer_groups[-1:-3:-1]]
    assert [(g["name"], g["weight_decay"]) for g in groups] == [(n, w) for n in ("head", *top2) for w in (0.05, 0.0)]
