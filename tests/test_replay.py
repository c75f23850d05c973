"""The replay of published transferability tables (bench/replay_rankings.py): data and pipeline."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _load_module():
    spec = importlib.util.spec_from_file_location("bench_replay_rankings", ROOT / "bench" / "replay_rankings.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


R = _load_module()


@pytest.fixture(scope="module")
def rp():
    return R.load()


def test_data_files_load_with_citations_and_consistent_models(rp):
    tl_models = set(rp.tllib_acc["aircraft"])
    assert len(tl_models) == 10 and set(rp.tllib_acc) == set(R.DATASETS)
    for d in R.DATASETS:  # same 10 models everywhere on the TLlib zoo
        assert set(rp.tllib_acc[d]) == tl_models
        assert all(set(rp.tllib_scores[m][d]) == tl_models for m in R.TLLIB_METHODS)
        assert all(set(rp.ms_scores[m][d]) == tl_models for m in R.MS_METHODS.values())
        assert set(rp.sfda_acc[d]) == tl_models | {"resnet34"}
    assert set(rp.sfda_acc) == set(R.SFDA_DATASETS) and all(len(v) == 11 for v in rp.sfda_acc.values())
    for table in (rp.tllib_acc, rp.sfda_acc):
        accs = [a for v in table.values() for a in v.values()]
        assert all(50.0 <= a <= 100.0 for a in accs)
    assert set(rp.top1) == set(R.TV_MODELS) and all(65.0 < v < 80.0 for v in rp.top1.values())
    assert all(0.2 < v < 12.0 for v in rp.gflops.values())
    # published tau_w are in [-1, 1]; the Model-Spider means agree with their 8 datasets
    for pub in (rp.tllib_published, rp.ms_published, rp.sfda_published):
        assert all(-1.0 <= t <= 1.0 for v in pub.values() for t in v.values())
    for m, v in rp.ms_published.items():
        assert abs(np.mean([v[d] for d in R.DATASETS]) - v["mean"]) < 0.0015, m
    # every data file has a citation; repository files name the 40-hex commit they were read at
    data_files = {p.name for p in R.DATA.glob("*.csv")}
    assert data_files == set(rp.sources)
    for name, src in rp.sources.items():
        assert src["repository"] and src["path"] and src["paper"]
        if name != "torchvision_imagenet1k_v1.csv":
            assert re.fullmatch(r"[0-9a-f]{40}", src["commit"]), name
    assert all(name in (R.DATA / "README.md").read_text() for name in data_files)


def test_scores_agree_across_the_two_sources(rp):
    """TLlib prints rounded LogME; Model-Spider's CSV has the same values on three datasets."""
    for d in ("aircraft", "cars", "cifar100"):
        for m, v in rp.tllib_scores["LogME"][d].items():
            assert abs(rp.ms_scores["LogME"][d][m] - v) <= 0.0005 + 1e-9, (d, m)


def test_top1_and_gflops_match_zoos_catalog(rp):
    reg = yaml.safe_load((ROOT / "zoo" / "registry.yaml").read_text())
    cards = {c["id"]: c for c in (reg["models"] if isinstance(reg, dict) else reg)}
    seen = 0
    for m in R.TV_MODELS:
        card = cards.get(f"torchvision:{m}.IMAGENET1K_V1")
        if card is None:
            continue
        seen += 1
        assert card["top1"] == pytest.approx(rp.top1[m]) and card["gflops"] == pytest.approx(rp.gflops[m])
    assert seen >= 3


def test_recomputed_tau_w_equals_the_tllib_readme(rp):
    """Pipeline validation: the TLlib README's tau_w follow from its own printed table."""
    _, status = R.validation_tllib(rp)
    lm = status["LogME"]
    assert {d for d, s in lm.items() if s == "="} == {"cars", "cifar10", "sun397"}
    assert {d for d, s in lm.items() if s == "~"} == {"caltech101", "cifar100", "dtd"}  # rounded, tied scores
    assert {d for d, s in lm.items() if s == "x"} == {"aircraft", "pets"}
    for d in ("cars", "cifar10", "sun397"):
        models = list(rp.tllib_acc[d])
        got = R.weighted_tau([rp.tllib_scores["LogME"][d][k] for k in models], [rp.tllib_acc[d][k] for k in models])
        assert round(got, 3) == rp.tllib_published["LogME"][d]
    flat = [s for v in status.values() for s in v.values()]
    assert (flat.count("="), flat.count("~"), flat.count("x")) == (20, 3, 9)


def test_metrics_on_hand_made_cases():
    acc = [80.0, 90.0, 85.0]
    assert R.top1_regret([3.0, 2.0, 1.0], acc) == pytest.approx(10.0)
    assert R.top1_regret([1.0, 3.0, 2.0], acc) == 0.0
    assert R.top1_regret([2.0, 2.0, 1.0], acc) == pytest.approx(5.0)  # tied top: mean of 80 and 90
    assert R.top3_hit([4.0, 3.0, 2.0, 1.0], [70.0, 80.0, 85.0, 90.0]) == 0.0
    assert R.top3_hit([1.0, 4.0, 2.0, 3.0], [70.0, 80.0, 85.0, 90.0]) == 1.0
    assert R.weighted_tau([1.0, 2.0, 3.0], [10.0, 20.0, 30.0]) == pytest.approx(1.0)
    assert R.weighted_tau([3.0, 2.0, 1.0], [10.0, 20.0, 30.0]) == pytest.approx(-1.0)
    assert R.tie_break_taus([1.0, 1.0, 2.0], [10.0, 20.0, 30.0]) == {1.0, round(R.weighted_tau([1.0, 0.9, 2.0], [10.0, 20.0, 30.0]), 3)}


def test_zoo_rule_is_the_recommenders_mean_rank_then_cost():
    # ranks: prior [1, 2, 3], LogME [3, 1, 2] -> means [2, 1.5, 2.5]
    assert R.zoo_rule([[3.0, 2.0, 1.0], [1.0, 3.0, 2.0]], [1.0, 2.0, 3.0]) == [2.0, 3.0, 1.0]
    # a tie in mean rank goes to the cheaper model
    assert R.zoo_rule([[2.0, 1.0], [1.0, 2.0]], [5.0, 1.0]) == [1.0, 2.0]
    assert R.zoo_rule([[2.0, 1.0], [1.0, 2.0]], [1.0, 5.0]) == [2.0, 1.0]


def test_docs_section_regenerates_identically(rp, tmp_path):
    found = R.read_section()
    assert found is not None, "docs/benchmarks.md has no replay section: run python bench/replay_rankings.py --write-docs"
    section, stamp = found
    assert stamp.startswith("on ") and "CPUs" in stamp
    assert section == R.render(rp, stamp).strip("\n")
    # writing keeps everything outside the markers (e.g. the grid section) and is idempotent
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nintro\n\n<!-- grid:begin -->\ngrid table\n<!-- grid:end -->\n")
    R.write_docs("first", doc)
    R.write_docs(section, doc)
    text = doc.read_text()
    assert text.startswith("# Benchmarks\n\nintro\n\n<!-- grid:begin -->\ngrid table\n<!-- grid:end -->\n")
    assert text.count(R.BEGIN) == 1 and "first" not in text
    assert R.read_section(doc) == (section, stamp)
    R.write_docs(section, doc)
    assert doc.read_text() == text


def test_targets_are_judged_and_misses_print_the_gap(rp):
    text = R.render(rp, "on 2000-01-01 (test, 1 CPUs)")
    lines = [ln for ln in text.splitlines() if "zoo's rule mean tau_w >=" in ln]
    assert len(lines) == 2
    for ln in lines:
        m = re.search(r"\*\*(PASS|MISS) \((\d\.\d+) ([<>]=?) (\d\.\d+)(?:, gap (\d\.\d+))?\)", ln)
        assert m, ln
        value, target = float(m.group(2)), float(m.group(4))
        assert (m.group(1) == "PASS") == (value >= target)
        if m.group(1) == "MISS":
            assert float(m.group(5)) == pytest.approx(target - value, abs=1e-3)
    json.dumps(R.summary(R.evaluate(R.rankers(rp, rp.ms_scores, R.DATASETS)[R.ZOO_RULE], rp.tllib_acc, R.DATASETS)))


def test_the_rule_family_holds_zoos_rule_and_the_prior(rp):
    """rule_family scores every subset with the rule the report grades: its (prior, LogME) member is zoo's rule and its
    (prior,) member the static prior, to the digit of the tables above; the ceiling is at least either."""
    fam = {sub: (tl, sf) for sub, tl, sf in R.rule_family(rp)}
    assert len(fam) == 2 ** (1 + len(rp.ms_scores)) - 1
    rk = R.rankers(rp, rp.ms_scores, R.DATASETS)
    for sub, name in (((R.PRIOR, "LogME"), R.ZOO_RULE), ((R.PRIOR,), R.PRIOR)):
        tl = R.summary(R.evaluate(rk[name], rp.tllib_acc, R.DATASETS))["tau_w"]
        sf = R.summary(R.evaluate(rk[name], rp.sfda_acc, R.DATASETS))["tau_w"]
        assert fam[sub] == pytest.approx((tl, sf), abs=1e-12)
    assert max(v[0] for v in fam.values()) >= fam[(R.PRIOR, "LogME")][0]


def test_the_weighted_rule_family_contains_zoos_rule_and_the_stored_search_reproduces(rp):
    """Equal weights on (prior, LogME) are zoo's rule and a lone weight the signal's own ranking, to the digit; the
    stored search result re-evaluates to the taus it states (the report recomputes them); a small search is
    deterministic under its seed and never ends below the best of its own random draws."""
    rk = R.rankers(rp, rp.ms_scores, R.DATASETS)
    for acc in (rp.tllib_acc, rp.sfda_acc):
        zoo = R.summary(R.evaluate(rk[R.ZOO_RULE], acc, R.DATASETS))["tau_w"]
        assert R.weighted_rule_tau(rp, {R.PRIOR: 1.0, "LogME": 1.0}, acc) == pytest.approx(zoo, abs=1e-12)
        assert R.weighted_rule_tau(rp, {R.PRIOR: 0.3, "LogME": 0.3, "NCE": 0.0}, acc) == pytest.approx(zoo, abs=1e-12)
        prior = R.summary(R.evaluate(rk[R.PRIOR], acc, R.DATASETS))["tau_w"]
        assert R.weighted_rule_tau(rp, {R.PRIOR: 1.0}, acc) == pytest.approx(prior, abs=1e-12)
    for run in json.loads(R.WEIGHTED.read_text())["runs"]:
        assert run["command"].startswith("python bench/replay_rankings.py --weighted-search ")
        for key in ("fit_tllib", "fit_both"):
            w = run[key]["weights"]
            assert set(w) == {R.PRIOR, *rp.ms_scores} and sum(w.values()) == pytest.approx(1.0, abs=1e-3)
            assert R.weighted_rule_tau(rp, w, rp.tllib_acc) == pytest.approx(run[key]["tllib"], abs=1e-4)
            assert R.weighted_rule_tau(rp, w, rp.sfda_acc) == pytest.approx(run[key]["sfda"], abs=1e-4)
    best = R.weighted_best(rp)
    assert best["fit_tllib"]["tllib"] >= best["fit_both"]["tllib"]
    a, b = R.weighted_search(rp, samples=4, steps=3, seed=7), R.weighted_search(rp, samples=4, steps=3, seed=7)
    assert a == b
    rng = np.random.default_rng(7)
    draws = [rng.dirichlet(np.full(1 + len(rp.ms_scores), 0.3)) for _ in range(4)]
    names = [R.PRIOR, *rp.ms_scores]
    best_draw = max(R.weighted_rule_tau(rp, {n: round(float(v), 4) for n, v in zip(names, w / w.sum())}, rp.tllib_acc)
                    for w in draws)
    assert a["fit_tllib"]["tllib"] >= round(best_draw, 4) - 1e-9
