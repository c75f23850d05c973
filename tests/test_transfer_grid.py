"""The strategy grid's pieces (bench/transfer_grid.py): tasks, the cached-activation harness, the
regret and CI maths and the generated table. The grid itself runs in CI as ``--quick``."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.grid import arms as A  # noqa: E402
from bench.grid import report as R  # noqa: E402
from bench.grid.peers import ARMS, PEERS, arm_phases, peer_phases  # noqa: E402
from bench.grid.tasks import FAMILIES, build_task, n_test_items, text_corpus  # noqa: E402


@pytest.mark.parametrize("family", ["shapes", "digits", "position", "numpy-topics"])
def test_tasks_are_deterministic_balanced_and_keep_a_fixed_test_split(family: str) -> None:
    a, b, other = build_task(family, 5, 0), build_task(family, 5, 0), build_task(family, 5, 1)
    assert np.bincount(a.train_y).tolist() == [5] * a.n_classes
    assert len(set(np.bincount(a.test_y).tolist())) == 1 and len(a.test_y) == n_test_items(a.modality, family)  # 4 and 10 classes alike
    same = (lambda u, v: u == v) if a.modality == "text" else np.array_equal
    assert all(same(u, v) for u, v in zip(a.train_x, b.train_x)) and np.array_equal(a.train_y, b.train_y)
    assert all(same(u, v) for u, v in zip(a.test_x, other.test_x)), "the test split must not depend on the seed"
    assert not all(same(u, v) for u, v in zip(a.train_x, other.train_x)), "another seed must draw other training items"
    if a.modality == "image":
        assert a.train_x[0].shape == (64, 64, 3) and a.train_x[0].dtype == np.uint8
        assert len({x.tobytes() for x in a.train_x}) == len(a.train_x)
    else:
        assert not set(a.train_x) & set(a.test_x), "a sentence is in both splits"


def test_positions_larger_test_split_holds_the_300_item_one() -> None:
    """``position`` is scored on 1,200 items: the same draw continued, so the earlier 300-item split is the first 75 of each class."""
    from bench.grid.tasks import _image_pool

    _, small, ys = _image_pool("position", 75, 10_007)
    task = build_task("position", 5, 0)
    xs, big_y = task.test_x, task.test_y
    assert len(xs) == 1200 and np.bincount(big_y).tolist() == [300] * 4
    for q in range(4):
        old = [x for x, y in zip(small, ys) if y == q]
        new = [x for x, y in zip(xs, big_y) if y == q][:75]
        assert all(np.array_equal(u, v) for u, v in zip(old, new)) and len(old) == 75


def test_text_corpora_have_enough_distinct_sentences_per_topic() -> None:
    for family in [f for f in FAMILIES if f.endswith("topics")]:
        classes, sents = text_corpus(family)
        assert len(classes) == 5 and min(len(s) for s in sents) >= 125
        flat = [s for group in sents for s in group]
        assert len(flat) == len(set(flat)), "a sentence is shared by two topics"


@pytest.fixture(scope="module")
def lite0():
    import timm

    from zoo._ids import ModelId  # noqa: F401  (the zoo package is importable)
    from zoo_timm._backbone import TimmBackbone, layer_groups
    from zoo.backbone import InputSpec

    torch.manual_seed(0)
    model = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=0).eval()
    spec = InputSpec(modality="image", size=224, mean=(0.5,) * 3, std=(0.5,) * 3, input_range=(0.0, 1.0))
    bb = TimmBackbone("timm:efficientnet_lite0", None, model, groups=layer_groups(model), feature_dim=model.num_features, input_spec=spec)
    # non-trivial BatchNorm statistics, as pretrained weights have
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return A.Split(bb)


def test_top_k_activation_cache_gives_the_full_models_output(lite0) -> None:
    task = build_task("shapes", 5, 0)
    items = task.train_x[:6]
    x, _ = lite0.prepare(items)
    with torch.no_grad():
        full = lite0.model(x)
    cache = A.build_cache(lite0, items, task.train_y[:6], [0, lite0.n - 2, lite0.n - 1, lite0.n])
    assert torch.allclose(cache.final, full, atol=1e-5)
    _assert_mid_is_zoo_runs(lite0, items, task.train_y[:6], cache)
    with torch.no_grad():
        for start in (0, lite0.n - 2, lite0.n - 1, lite0.n):
            assert (lite0.forward(start, cache.acts[start], None) - full).abs().max() < 1e-5


def test_harness_trains_only_the_unfrozen_groups_and_restores(lite0) -> None:
    task = build_task("shapes", 5, 0)
    n = lite0.n
    state = A.snapshot(lite0)
    tr = A.build_cache(lite0, task.train_x, task.train_y, [n - 1])
    te = A.build_cache(lite0, task.test_x[:24], task.test_y[:24], [n - 1])
    phases, init = arm_phases("lpft-1", n, "image", epochs=2)
    assert init == "lp" and phases[0].groups == [n - 1]
    head = A.Head(tr.final.shape[1], task.n_classes)
    before = {k: v.clone() for k, v in lite0.model.state_dict().items()}
    out = A.train(lite0, phases, head, tr, te, n - 1, seed=0)
    assert out["steps"] == 2 and 0.0 <= out["acc"] <= 1.0
    after = lite0.model.state_dict()
    top = {f"{k}" for k in after if k.startswith(("conv_head", "bn2"))}
    moved = {k for k in after if after[k].dtype.is_floating_point and not torch.equal(after[k], before[k])}
    assert moved and moved <= top, f"frozen groups changed: {sorted(moved - top)[:3]}"
    assert not any(k.endswith("running_mean") for k in moved), "BatchNorm statistics must stay frozen"
    A.restore(lite0, state)
    assert all(torch.equal(lite0.model.state_dict()[k], before[k]) for k in before)


def test_max_grad_norm_bounds_every_step(lite0) -> None:
    """A phase's ``max_grad_norm`` clips the global gradient norm before each step (AutoTrain's recipe)."""
    import dataclasses

    task = build_task("shapes", 5, 0)
    n = lite0.n
    state = A.snapshot(lite0)
    tr = A.build_cache(lite0, task.train_x, task.train_y, [n - 1])
    moved = []
    for clip in (None, 1e-9):
        phases, _ = arm_phases("lpft-1", n, "image", epochs=1)
        phases = [dataclasses.replace(phases[0], max_grad_norm=clip)]
        head = A.Head(tr.final.shape[1], task.n_classes)
        A.train(lite0, phases, head, tr, tr, n - 1, seed=0)
        after = lite0.model.state_dict()
        moved.append(max(float((after[k] - state[k]).abs().max()) for k in state if after[k].dtype.is_floating_point))
        A.restore(lite0, state)
    assert moved[0] > 1e-4 and moved[1] < 1e-9  # unclipped steps move the top group; a 1e-9 norm cap keeps it in place


def test_linear_probe_separates_separable_features() -> None:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(40) % 4
    x = torch.randn(40, 16, generator=g) * 0.1 + torch.nn.functional.one_hot(y, 16).float() * 3
    acc, (w, b) = A.probe(x, y, x, y, 4, seed=0)
    assert acc == 1.0 and w.shape == (4, 16) and b.shape == (4,)


def test_fine_tuning_budget_is_about_the_target_steps_but_never_under_three_epochs() -> None:
    assert A.ft_epochs(50, 32, 40) == 20  # 2 steps an epoch: 40 steps
    assert A.ft_epochs(200, 32, 40) == 6  # 7 steps an epoch: 42 steps
    assert A.ft_epochs(1000, 32, 40) == A.MIN_EPOCHS == 3  # 32 steps an epoch: one pass would be 40 steps' worth
    assert A.ft_epochs(1000, 64, 40) == 3 and A.ft_epochs(10, 32, 400) == 40  # the cap


def test_peer_recipes_follow_their_documented_defaults() -> None:
    fa, head = peer_phases("fastai", 9, 3, 1280, 5, "image", n_train=100, target_steps=40)
    assert fa[0].groups == [] and fa[0].lr["head"] == 2e-3 and fa[0].bn == "train-all" and fa[0].onecycle["pct_start"] == 0.99
    assert sorted(set(fa[1].lr.values())) == [1e-5, 1e-4, 1e-3] and fa[1].onecycle["div"] == 5.0 and head.concat
    ke, _ = peer_phases("keras", 9, 3, 1280, 5, "image")
    assert ke[0].lr["head"] == 1e-3 and set(ke[1].lr.values()) == {1e-5} and ke[1].bn == "frozen"
    (at,), _ = peer_phases("autotrain", 9, 3, 1280, 5, "image")
    assert at.epochs == 3 and at.batch_size == 8 and at.optimizer == "adamw" and set(at.lr.values()) == {5e-5} and at.warmup_frac == 0.1
    assert at.max_grad_norm == 1.0 and all(ph.max_grad_norm is None for ph in (*fa, *ke))
    fl, _ = peer_phases("flash", 9, 4, 1280, 5, "image")
    assert fl[0].groups == [] and fl[1].groups == list(range(9)) and set(fl[1].lr.values()) == {1e-3}


def _rows(accs: dict[str, list[float]], family: str = "natural", size: int = 5, rec_arm: str = "lp") -> list[dict]:
    rows = []
    for arm, values in accs.items():
        for seed, v in enumerate(values):
            r = {"family": family, "per_class": size, "backbone": "timm:x", "seed": seed, "arm": arm, "acc": v / 100, "seconds": 10.0}
            if arm in ("recommended", "recommended-data", "recommended-run"):
                r.update(plan_strategy="linear-probe", plan_unfreeze="-", mapped_arm=rec_arm, rec_seconds=0.5)
            rows.append(r)
    return rows


def test_regret_and_bootstrap_ci_on_a_hand_case() -> None:
    accs = {a: [50.0, 50.0, 50.0] for a in ARMS}
    accs["lpft-1"] = [80.0, 70.0, 90.0]  # the oracle (mean 80)
    accs["recommended"] = [78.0, 70.0, 84.0]  # regrets 2, 0, 6 -> mean 8/3
    accs.update({p: [60.0, 60.0, 60.0] for p in PEERS})
    (cell,) = R.cells(_rows(accs))
    assert cell["oracle_arm"] == "lpft-1" and cell["oracle_acc"] == pytest.approx(80.0)
    assert cell["regret"] == pytest.approx(8 / 3) and cell["rec_acc"] == pytest.approx(232 / 3)
    assert 0.0 <= cell["regret_ci_low"] <= 8 / 3 <= cell["regret_ci_high"] <= 6.0
    assert R.bootstrap_ci([1.5, 1.5, 1.5]) == (1.5, 1.5)
    lo, hi = R.bootstrap_ci([0.0, 2.0], n_boot=4000)
    assert lo == 0.0 and hi == 2.0  # resamples of two values: means 0, 1, 2; the 5-95 % band spans both ends
    # cost: 0.5 s of recommendation over 7 arms x 3 seeds x 10 s
    assert R.cost_ratio(_rows(accs)) == pytest.approx(100 * 1.5 / 210)
    # split of seeds and families for the held-out report
    assert R.split_of("natural", R.HELD_OUT_SEED) == "held-out seed" and R.split_of(R.HELD_OUT_FAMILY, 0) == "held-out family"


def test_seed_noise_floor_picks_each_seed_from_the_others() -> None:
    from bench.grid.report import seed_noise_floor

    accs = {a: [50.0, 50.0, 50.0] for a in ARMS}
    accs["lpft-1"] = [80.0, 70.0, 90.0]  # the oracle over all seeds (mean 80)
    accs["surgical"] = [75.0, 85.0, 60.0]  # best on seeds 0 and 1 together (80 vs 75): picked for seed 2, loses 30 there
    mean, median, p90, n = seed_noise_floor(_rows(accs))
    assert n == 1 and mean == median == pytest.approx(10.0) and p90 == pytest.approx(10.0)
    steady = {a: [50.0, 51.0, 52.0] for a in ARMS}
    steady["lp"] = [60.0, 61.0, 62.0]  # the same arm wins on every seed: nothing lost to noise
    assert seed_noise_floor(_rows(steady))[0] == 0.0
    assert seed_noise_floor(_rows({a: [50.0] for a in ARMS}))[3] == 0  # one seed: no floor


def test_depth_hit_is_within_one_group_and_a_run_that_kept_its_probe_counts_as_a_probe() -> None:
    assert R.depth_hit("lp", "lp-concat") and R.depth_hit("lp", "lpft-1") and R.depth_hit("lpft-all", "full-ft")
    assert not R.depth_hit("lp", "lpft-2") and not R.depth_hit("lpft-2", "lpft-all") and not R.depth_hit("surgical", "lpft-1")
    assert R.depth_hit("surgical", "surgical") and not R.depth_hit("", "lp")
    accs = {a: [50.0, 50.0, 50.0] for a in ARMS}
    accs["full-ft"] = [80.0, 80.0, 80.0]  # the oracle: every group
    accs["recommended"] = accs["recommended-run"] = [70.0, 70.0, 70.0]
    rows = _rows(accs, rec_arm="lpft-all")
    assert R.depth_hit_rate(rows) == (1.0, 1, 1)
    runs = [r for r in rows if r["arm"] == "recommended-run"]
    for r, best in zip(runs, (0, 0, 2)):  # two of three runs kept the probe (epoch 0): they served depth 0
        r["best_epoch"] = best
    rate, hit, n = R.depth_hit_rate(rows, "recommended-run")
    assert rate == pytest.approx(1 / 3) and (hit, n) == (0, 1)
    assert "metadata mode 100 % (1 of 1 cells)" in R.depth_sentence(rows) and "end to end 33 % (0 of 1 cells)" in R.depth_sentence(rows)


def test_table_has_every_required_column_and_marks_misses(tmp_path: Path) -> None:
    accs = {a: [50.0, 52.0, 51.0] for a in ARMS}
    accs["surgical"] = [90.0, 91.0, 92.0]
    accs["recommended"] = [50.0, 52.0, 51.0]
    accs.update({p: [40.0, 41.0, 42.0] for p in PEERS})
    md = R.markdown(_rows(accs), quick=True)
    header = next(line for line in md.splitlines() if line.startswith("| task |"))
    for col in ("oracle_arm", "recommended", "mapped_arm", "regret", "regret_ci_low", "regret_ci_high", *PEERS):
        assert col in header
    assert "MISS" in md and "mean regret" in md and md.startswith(R.BEGIN) and md.endswith(R.END)
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n<!-- replay:begin -->\nkept\n<!-- replay:end -->\n", encoding="utf-8")
    R.write_doc(doc, md)
    R.write_doc(doc, md.replace("MISS", "MISS2"))
    text = doc.read_text(encoding="utf-8")
    assert "kept" in text and text.count(R.BEGIN) == 1 and "MISS2" in text


def test_data_mode_rows_get_their_own_regret_and_section() -> None:
    accs = {a: [50.0, 50.0, 50.0] for a in ARMS}
    accs["lp-concat"] = [70.0, 70.0, 70.0]
    accs["recommended"] = [50.0, 50.0, 50.0]  # metadata mode: lp, regret 20
    accs["recommended-data"] = [70.0, 70.0, 70.0]  # data mode: lp-concat, regret 0
    accs["recommended-run"] = [48.0, 47.0, 46.0]  # the metadata plan run by zoo run: regret 23, 3 points under the harness's
    accs.update({p: [60.0, 60.0, 60.0] for p in PEERS})
    rows = _rows(accs)
    assert R.cells(rows)[0]["regret"] == pytest.approx(20.0)
    assert R.cells(rows, rec_arm="recommended-data")[0]["regret"] == pytest.approx(0.0)
    assert R.cells(rows, rec_arm="recommended-run")[0]["regret"] == pytest.approx(23.0)
    md = R.markdown(rows, quick=True)
    section = md.split("### Data mode:")[1].split("### `zoo run` end to end")[0]
    assert "| mean regret (pts) | <= 0.5 | 0 | PASS |" in section
    run = md.split("### `zoo run` end to end")[1]
    assert "| mean regret (pts) | <= 0.5 | 23 | MISS |" in run and "mean over cells: -3.00 points" in run
    for kind in R.RECOMMENDATIONS:
        assert R._done_seeds(rows) == 3 and R._done_seeds([r for r in rows if r["arm"] != kind]) == 0


@pytest.mark.parametrize("family", ["digits", "numpy-topics"])
def test_task_written_for_data_mode_reads_back_as_the_same_items(family: str, tmp_path: Path) -> None:
    """What ``zoo recommend --data`` reads is the cell's training set: same classes, counts and labels."""
    from bench.grid.cell import write_task
    from zoo.recommender.data import load_dataset

    task = build_task(family, 5, 0)
    ds = load_dataset(write_task(task, tmp_path / "data"), max_samples=10_000)
    assert ds.modality == task.modality and len(ds.items) == len(task.train_y)
    assert sorted(ds.classes) == sorted(task.classes)
    assert sorted(ds.classes[i] for i in ds.labels) == sorted(task.classes[int(y)] for y in task.train_y)
    if family == "numpy-topics":
        assert sorted(ds.items) == sorted(task.train_x)


def _assert_mid_is_zoo_runs(split: A.Split, items: list, labels: np.ndarray, cache: A.Cache) -> None:
    """The lp-concat arm reads what ``zoo run``'s lp-concat reads: the middle group's pooled output of zoo's feature
    extraction, the same block scaling, and a reloadable classifier computing that concatenation."""
    from zoo.recommender.features import extract
    from zoo.runner.stage1 import block_scale, concat_group

    names = [g.name for g in split.groups]
    fs = extract(split.bb, items, labels, resolution=A.RESOLUTION if not split.text else None, count_flops=False)
    mid = concat_group(names)
    assert torch.allclose(cache.mid, torch.as_tensor(fs.groups[mid]), atol=1e-4, rtol=1e-4)
    x = A.concat_features(cache, cache)
    assert torch.allclose(x[:, : cache.mid.shape[1]] * block_scale(fs.groups[mid]), cache.mid, rtol=1e-4, atol=1e-5)
    model = split.bb.with_head(3, concat_group=mid).eval()
    assert model.head.in_features == x.shape[1]


def test_text_layer_cache_gives_the_encoders_output(zoo_home, no_network) -> None:
    import zoo

    zoo.reset()
    split = A.Split(zoo.load("hf:sentence-transformers/all-MiniLM-L6-v2"))
    task = build_task("sklearn-topics", 5, 0)
    items = task.train_x[:5]
    x, mask = split.prepare(items)
    with torch.no_grad():
        full = split.model(input_ids=x, attention_mask=mask)
    cache = A.build_cache(split, items, task.train_y[:5], [0, split.n - 1, split.n])
    assert torch.allclose(cache.final, full, atol=1e-5)
    # items the harness does not truncate (zoo's tokenizer call then sees the same tokens)
    short = [i for i, n in enumerate(mask.sum(1).tolist()) if n < A.TEXT_MAX_TOKENS]
    assert len(short) >= 2
    items = [items[i] for i in short]
    _assert_mid_is_zoo_runs(split, items, task.train_y[short], A.build_cache(split, items, task.train_y[short], [split.n]))
    with torch.no_grad():
        for start in (0, split.n - 1, split.n):
            assert (split.forward(start, cache.acts[start], cache.ctx) - full).abs().max() < 1e-5


def test_data_mode_measurement_starts_from_an_empty_feature_cache(zoo_home, no_network) -> None:
    """The grid's data-mode cost is a first measurement: the same texts written again for another row must not
    reuse the features an earlier row left in ZOO_HOME (they did: 120 s of text measurement had shrunk to 14 s)."""
    import zoo
    from bench.grid.cell import recommend_data_for

    zoo.reset()
    task = build_task("sklearn-topics", 5, 0)
    for _ in range(2):
        plan, seconds = recommend_data_for(task, "hf:sentence-transformers/all-MiniLM-L6-v2")
        assert plan.signals["candidates"]["hf:sentence-transformers/all-MiniLM-L6-v2"]["features_cached"] is False and seconds > 0
    assert not (zoo_home / "features").exists() or not any((zoo_home / "features").iterdir())


def test_zoo_run_end_to_end_row_runs_the_plan_reloads_it_and_scores_the_test_split(zoo_home, no_network) -> None:
    """The ``recommended-run`` row: the metadata plan executed by ``zoo.run`` on the task's items, its saved model
    reloaded and scored on the test split, with the run's held-out figures; nothing is left in ZOO_HOME."""
    import zoo
    from bench.grid.cell import run_end_to_end

    zoo.reset()
    task = build_task("sklearn-topics", 5, 0)
    acc, plan, rec_s, seconds, result = run_end_to_end(task, "hf:sentence-transformers/all-MiniLM-L6-v2", 3)
    assert plan.backbone == "hf:sentence-transformers/all-MiniLM-L6-v2" and not plan.unfreeze and result.best_epoch == 0
    assert 1.5 / task.n_classes < acc <= 1.0 and 0 < result.final_val_acc <= 1.0 and seconds > 0 and rec_s > 0
    assert not (zoo_home / "features").exists() or not any((zoo_home / "features").iterdir())


def test_divergence_is_judged_on_the_training_loss_alone() -> None:
    assert A.diverged(0.4, 2.3) and A.diverged(0.4, float("nan")) and A.diverged(float("nan"), float("inf"))
    assert not A.diverged(2.3, 0.4) and not A.diverged(0.4, 0.4)
    (ph,) = A.scale_lr(arm_phases("lpft-2", 9, "image", 3)[0], 0.1)
    assert ph.lr == {k: v * 0.1 for k, v in arm_phases("lpft-2", 9, "image", 3)[0][0].lr.items()}


def test_a_diverged_arm_is_run_again_at_a_tenth_of_its_learning_rates(lite0, monkeypatch) -> None:
    """The arms' recipe: a run whose training loss ends above its start is rerun once at lr / 10 and the lower-loss run kept."""
    import dataclasses

    from bench.grid import cell as C

    task = build_task("shapes", 5, 0)
    state = A.snapshot(lite0)
    rows: list[dict] = []
    for scale in (1e6, 1.0):  # SGD at 10^4 blows the loss up; the arm's own recipe does not
        real = arm_phases
        monkeypatch.setattr(C, "arm_phases", lambda arm, n, m, e, s=scale: ([dataclasses.replace(p, lr={k: v * s for k, v in p.lr.items()}) for p in real(arm, n, m, e)[0]], "lp"))
        C.run_cell(lite0, state, task, "timm:x", target_steps=4, skip=set(), emit=rows.append, arms=("lp", "lpft-1"), peers=(), recommendations=())
    blown, normal = [r for r in rows if r["arm"] == "lpft-1"]
    assert blown["diverged"] == 1 and blown["lr_scale"] == A.RETRY_LR_SCALE and np.isfinite(blown["train_loss"])
    assert normal["diverged"] == 0 and normal["lr_scale"] == 1.0
    A.restore(lite0, state)


def test_an_older_csv_gets_the_new_columns_without_losing_a_row(tmp_path: Path) -> None:
    import csv

    from bench import transfer_grid as G

    path = tmp_path / "grid.csv"
    old = G.FIELDS[: G.FIELDS.index("train_loss")]  # the columns before the divergence rule and the end-to-end rows
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, old)
        w.writeheader()
        w.writerow({f: str(i) for i, f in enumerate(old)})
    G.upgrade_header(path)
    (row,) = R.read_rows(path)
    assert list(row) == G.FIELDS and row["acc"] == str(old.index("acc")) and row["lr_scale"] == row["best_epoch"] == ""
    G.upgrade_header(path)  # current header: untouched
    assert R.read_rows(path) == [row] and not path.with_suffix(".csv.tmp").exists()


def test_report_counts_diverged_arm_runs_and_kept_retries() -> None:
    rows = [{"kind": "arm", "diverged": d, "lr_scale": s} for d, s in (("0", "1.0"), ("1", "0.1"), ("1", "1.0"))]
    rows += [{"kind": "arm", "diverged": "", "lr_scale": ""}, {"kind": "peer", "diverged": "", "lr_scale": ""}]
    assert R.retry_counts(rows) == (3, 2, 1)
    assert "2 of the 3 fine-tuning arm runs diverged" in R._retry_sentence(rows) and R._retry_sentence(rows[3:]) == ""


def test_similar_cell_misses_are_set_against_the_test_splits_sampling_error() -> None:
    cell = {"task": "position", "size": 20, "rec_acc": 30.0, "test_items": 120, **{p: 30.0 for p in PEERS}}
    assert R.similar_gaps([cell]) == ""  # no peer ahead: nothing to explain
    cell["flash"] = 34.2
    text = R.similar_gaps([cell, {**cell, "task": "digits", "flash": 90.0}])  # a different-domain cell is not a similar one
    se = 100 * (0.3 * 0.7 / 120) ** 0.5
    assert f"flash on position@20 (-4.2 points = {4.2 / se:.1f} standard errors of {se:.1f}; 120 test items" in text
    assert "fastai" not in text
    rows = _rows({a: [50.0] * 3 for a in (*ARMS, *PEERS, "recommended")}, family="position")
    for r in rows:
        r.update(modality="image", n_classes="4")
    assert all(c["test_items"] == 1200 for c in R.cells(rows))  # position is scored on more items than other image tasks
    assert all(c["test_items"] == 300 for c in R.cells([{**r, "family": "natural"} for r in rows]))


def test_the_committed_grid_was_measured_with_the_rules_in_the_code() -> None:
    """docs/benchmarks.md reports the plans recorded in bench/results/transfer_grid.csv: each cell's metadata plan
    (strategy, unfrozen groups, head learning rate) must still be what zoo.recommend plans for it, so that a rule
    change without a rerun of the changed cells fails here instead of leaving the figures about other rules."""
    import csv

    from bench.grid.cell import recommend_for

    path = Path(__file__).resolve().parents[1] / "bench" / "results" / "transfer_grid.csv"
    recorded: dict[tuple[str, int], set[tuple[str, str, float]]] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            if r["kind"] == "recommended":
                recorded.setdefault((r["family"], int(r["per_class"])), set()).add((r["plan_strategy"], r["plan_unfreeze"], float(r["plan_head_lr"])))
    assert len(recorded) == len(FAMILIES) * 3  # every family at 5, 20 and 100 per class
    stale = []
    for (family, per_class), plans in sorted(recorded.items()):
        plan, _ = recommend_for(build_task(family, per_class, 0))
        now = (plan.strategy, ",".join(plan.unfreeze) or "-", float(plan.lr["head"]))
        if plans != {now}:
            stale.append(f"{family}@{per_class}: recorded {sorted(plans)}, now {now}")
    assert not stale, "rerun these cells of bench/transfer_grid.py: " + "; ".join(stale)
