"""`zoo run --from-scratch`: the plan's architecture from random weights, the README demo's baseline."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

import zoo
from zoo.runner.baseline import scratch_lr, scratch_plan

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_runner import LITE0, digits, tiny_plan  # noqa: E402


def test_scratch_plan_trains_everything_at_one_rate():
    plan = tiny_plan(unfreeze=("top-1", "top-2"), lr=0.01)
    base = scratch_plan(plan)
    assert base.unfreeze == ["all"] and base.bn == "train" and base.lr_decay == 1.0
    assert base.lr == {"head": pytest.approx(0.1 * 32 / 256)} == {"head": scratch_lr(plan, 32)}
    assert not base.schedule.gradual_unfreeze
    # what the plan says about data, schedule and augmentation stays
    assert (base.schedule.epochs, base.schedule.batch_size, base.augment, base.resolution) == (
        plan.schedule.epochs, plan.schedule.batch_size, plan.augment, plan.resolution)
    adam = plan.model_copy(update={"optimizer": plan.optimizer.model_copy(update={"name": "adamw"})})
    assert scratch_plan(adam).lr == {"head": 1e-3}


@pytest.mark.slow
def test_from_scratch_run_starts_from_random_weights(tmp_path, zoo_home, no_network, capsys):
    from safetensors.torch import load_file

    from zoo.cli import main

    root = digits(tmp_path, 120)
    plan_path = tiny_plan(epochs=1, resolution=32).write(tmp_path / "plan.yaml")
    out = tmp_path / "scratch"
    assert main(["run", str(plan_path), "--data", str(root), "--out", str(out), "--from-scratch", "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    r = json.loads((out / "result.json").read_text())
    assert r["from_scratch"] and r["epochs_run"] == 1 and not r["features_cached"]
    assert "from scratch" in printed and f"{r['final_val_acc']:.4f}" in printed
    assert "from-scratch baseline" in (out / "report.md").read_text()
    assert zoo.recommender.plan.Plan.read(out / "plan.yaml").unfreeze == ["all"]
    # nothing of the random model entered the pretrained feature cache
    assert not (zoo.constants.zoo_home() / "features").exists() or not any((zoo.constants.zoo_home() / "features").iterdir())
    # the trained stem is neither the pretrained one nor untouched by training
    pretrained = zoo.load(LITE0).model.state_dict()
    trained = load_file(str(out / "checkpoints" / "epoch-0001" / "model.safetensors"))
    stem = "backbone.conv_stem.weight"
    assert stem in trained and not torch.allclose(trained[stem], pretrained["conv_stem.weight"])
    # every BatchNorm was trained (running statistics moved away from their initial 0 / 1)
    assert any(k.endswith("running_mean") and trained[k].abs().sum() > 0 for k in trained)


@pytest.mark.slow
def test_from_scratch_initialisation_follows_the_seed(zoo_home, no_network):
    from zoo.runner.pipeline import _load

    a, b, c = (_load(LITE0, True, s).model.state_dict()["conv_stem.weight"] for s in (5, 5, 6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_from_scratch_of_a_plan_without_epochs_is_refused_before_anything_is_written(tmp_path, zoo_home, no_network):
    """A probe plan trains 0 epochs: its baseline was an untrained zero-head model scored at chance, saved as a run."""
    from zoo.errors import InvalidInputError

    plan = tiny_plan(epochs=0, resolution=32).model_copy(update={"strategy": "lp-concat", "unfreeze": [], "lr": {"head": 1e-3}})
    out = tmp_path / "scratch"
    with pytest.raises(InvalidInputError, match="--epochs N") as err:
        zoo.run(plan, digits(tmp_path, 30), out=out, from_scratch=True)
    assert "\n" not in str(err.value) and not out.exists()


def test_from_scratch_of_a_keras_plan_is_refused_naming_the_reason(tmp_path, zoo_home, no_network):
    """The baseline re-initialises torch modules; a Keras plan was refused by the Keras loader as 'unknown option(s)
    pretrained for keras'. Now one line says what --from-scratch supports, before anything is loaded or written."""
    from zoo.errors import InvalidInputError

    plan = tiny_plan(epochs=1, resolution=32).model_copy(update={"backbone": "keras:MobileNetV3Small.imagenet"})
    out = tmp_path / "scratch"
    with pytest.raises(InvalidInputError, match=r"--from-scratch supports torch sources \(timm, torchvision, hf\), not tensorflow") as err:
        zoo.run(plan, digits(tmp_path, 30), out=out, from_scratch=True)
    assert "\n" not in str(err.value) and not out.exists()
