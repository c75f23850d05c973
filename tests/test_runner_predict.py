"""``zoo predict RUN_DIR`` and ``zoo export RUN_DIR``: a tiny real run on digits, reloaded offline."""

from __future__ import annotations

import importlib.util
import sys
import json
from pathlib import Path

import numpy as np
import pytest

import zoo
from zoo.cli import main
from zoo.errors import InvalidInputError
from zoo.testing import CACHE_VARS

LITE0 = "timm:efficientnet_lite0.pypi_in1k"
ROOT = Path(__file__).resolve().parents[1]
SEED = 5


def _digits(tmp_path: Path, limit: int) -> Path:
    spec = importlib.util.spec_from_file_location("make_digits_folder", ROOT / "scripts" / "make_digits_folder.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.write_digits(tmp_path / "digits", limit=limit)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A stage-1 run (linear probe on lite0 features) of 150 digits at 64 px, in its own ZOO_HOME."""
    from zoo.recommender.plan import Optimizer, Schedule

    tmp = tmp_path_factory.mktemp("predict")
    mp = pytest.MonkeyPatch()
    for var, sub in CACHE_VARS.items():  # what the zoo_home fixture does, for the whole module
        (tmp / "cache" / sub).mkdir(parents=True, exist_ok=True)
        mp.setenv(var, str(tmp / "cache" / sub))
    mp.setenv("ZOO_OFFLINE", "1")
    mp.setenv("HF_HUB_OFFLINE", "1")
    zoo.reset()
    plan = zoo.recommend(samples=150, classes=10, domain="documents", image_size=8)
    plan = plan.model_copy(update={
        "backbone": LITE0, "strategy": "linear-probe", "unfreeze": [], "resolution": 64,
        "optimizer": Optimizer(name="sgd", momentum=0.9, weight_decay=0.0),
        "schedule": Schedule(epochs=0, batch_size=32, steps=0, warmup_frac=0.0, early_stop_patience=3),
    })
    root = _digits(tmp, 150)
    out = tmp / "run"
    result = zoo.run(plan, root, out=out, seed=SEED, progress=False, refit=False)  # the saved head is the one the held-out split scored
    yield out, root, result
    zoo.reset()
    mp.undo()


def _held_out(root: Path) -> tuple[list, np.ndarray]:
    from zoo.recommender.data import load_dataset
    from zoo.runner.pipeline import split

    ds = load_dataset(root)
    _, va = split(ds.labels, 0.2, SEED)
    return [ds.items[i] for i in va], ds.labels[va]


@pytest.mark.slow
def test_load_run_rebuilds_the_trained_classifier(run_dir, no_network):
    from zoo.runner.predict import load_run

    out, root, result = run_dir
    m = load_run(out)
    assert m.classes == [str(i) for i in range(10)] and m.resolution == 64 and m.model.head.out_features == 10
    items, labels = _held_out(root)
    logits = m.logits(items)
    acc = float((logits.argmax(1).numpy() == labels).mean())
    assert acc == pytest.approx(result.final_val_acc)  # the run's own figure: same weights, same preprocessing
    assert acc >= 0.5  # chance is 0.1 on 10 digits
    top = m.predict(items[:4], top_k=3)
    assert [len(r) for r in top] == [3] * 4
    for row, lg in zip(top, logits[:4]):
        assert row[0][0] == m.classes[int(lg.argmax())]
        assert row[0][1] >= row[1][1] >= row[2][1] and 0 < sum(p for _, p in row) <= 1 + 1e-6


@pytest.mark.slow
def test_cli_predict_on_a_run_dir(run_dir, no_network, capsys):
    from zoo.runner.predict import load_run

    out, root, _ = run_dir
    items, labels = _held_out(root)
    files = [str(p) for p in items[:6]]
    assert main(["predict", str(out), *files, "--json", "--top-k", "2"]) == 0
    printed = json.loads(capsys.readouterr().out)
    direct = load_run(out).logits(files).argmax(1).tolist()
    assert [r["input"] for r in printed] == files
    assert [r["top"][0]["label"] for r in printed] == [str(i) for i in direct]
    assert all(len(r["top"]) == 2 for r in printed)
    assert sum(r["top"][0]["label"] == str(y) for r, y in zip(printed, labels[:6])) >= 3
    # plain output: one row per rank, the same top-1
    assert main(["predict", str(out), files[0], "--top-k", "3"]) == 0
    rows = [r.split("\t") for r in capsys.readouterr().out.splitlines()[1:]]
    assert [r[1] for r in rows] == ["1", "2", "3"] and rows[0][0] == files[0] and rows[0][2] == str(direct[0])


@pytest.mark.slow
def test_a_torch_run_loads_in_a_process_that_imported_tensorflow_first(run_dir, no_network):
    """`import tensorflow` before zoo, then loading a torch run, segfaulted (Triton loaded after TensorFlow)."""
    import subprocess

    out, root, _ = run_dir
    items, _ = _held_out(root)
    code = (
        "import sys, tensorflow, zoo\n"
        "from zoo.runner.predict import load_run\n"
        "print(load_run(sys.argv[1]).predict([sys.argv[2]], top_k=1)[0][0][0])\n"
    )
    got = subprocess.run([sys.executable, "-c", code, str(out), str(items[0])], capture_output=True, text=True, timeout=300)
    assert got.returncode == 0, got.stderr[-2000:]
    from zoo.runner.predict import load_run

    assert got.stdout.split()[-1] == load_run(out).predict([items[0]], top_k=1)[0][0][0]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*torch.jit.*:FutureWarning")
def test_export_torchscript_matches_the_model(run_dir, no_network, capsys, tmp_path):
    import torch

    from zoo.runner.predict import load_run

    out, root, _ = run_dir
    target = tmp_path / "exported" / "digits.pt"
    assert main(["export", str(out), "--format", "torchscript", "-o", str(target), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["path"] == str(target)
    assert [p.name for p in target.parent.iterdir()] == ["digits.pt"]  # no temporary left behind
    extra = {"config.json": ""}
    scripted = torch.jit.load(str(target), _extra_files=extra)
    assert json.loads(extra["config.json"])["classes"] == [str(i) for i in range(10)]
    m = load_run(out)
    items, _ = _held_out(root)
    batch = m.preprocess(items[:5])
    with torch.no_grad():
        torch.testing.assert_close(scripted(batch), m.model(batch), atol=1e-5, rtol=0)


@pytest.mark.slow
def test_export_onnx_runs_in_onnxruntime_like_the_model(run_dir, no_network, capsys, tmp_path, monkeypatch):
    import onnxruntime as ort
    import torch

    from zoo.runner.predict import load_run

    out, root, _ = run_dir
    target = tmp_path / "exported" / "digits.onnx"
    assert main(["export", str(out), "--format", "onnx", "-o", str(target), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["path"] == str(target)
    assert [p.name for p in target.parent.iterdir()] == ["digits.onnx"]  # one self-contained file, no temporary left
    sess = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    assert json.loads(meta["config.json"])["classes"] == [str(i) for i in range(10)]
    m = load_run(out)
    items, labels = _held_out(root)
    batch = m.preprocess(items[:5])  # 5: not the batch size the export traced (2)
    with torch.no_grad():
        want = m.model(batch)
    got = torch.as_tensor(sess.run(["logits"], {"pixel_values": batch.numpy()})[0])
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    # an export that does not match is refused in one line and leaves no file (nor temporary) behind
    import zoo.runner.predict as predict

    monkeypatch.setattr(predict, "ONNX_TOLERANCE", -1.0)
    refused = tmp_path / "refused" / "digits.onnx"
    assert main(["export", str(out), "--format", "onnx", "-o", str(refused)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ONNX export differs from the model" in err and "not written" in err
    assert not refused.parent.exists() or list(refused.parent.iterdir()) == []


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*torch.jit.*:FutureWarning")
def test_export_without_o_writes_model_onnx_and_model_torchscript_pt(run_dir, no_network, capsys):
    """Without -o an export goes to RUN/model/model.onnx (not model.onnx.onnx) or RUN/model/model.torchscript.pt."""
    out, _, _ = run_dir
    written = []
    try:
        for fmt, name in (("onnx", "model.onnx"), ("torchscript", "model.torchscript.pt")):
            assert main(["export", str(out), "--format", fmt, "--json"]) == 0
            path = Path(json.loads(capsys.readouterr().out)["path"])
            written.append(path)
            assert path == out / "model" / name and path.is_file()
        assert not list((out / "model").glob("*.onnx.onnx"))
        with pytest.raises(SystemExit):
            main(["export", "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "RUN_DIR/model/model.onnx (onnx)" in text and "model.torchscript.pt (torchscript)" in text and "<format>" not in text
    finally:  # the module's run folder stays as the other tests expect it
        for path in written:
            path.unlink(missing_ok=True)


@pytest.mark.slow
def test_export_onnx_and_savedmodel_say_what_to_do(run_dir, no_network, capsys, tmp_path, monkeypatch):
    out, _, _ = run_dir
    monkeypatch.setitem(sys.modules, "onnx", None)  # a machine without the onnx package
    assert main(["export", str(out), "--format", "onnx", "-o", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install onnx onnxscript" in err
    assert not (tmp_path / "m.onnx").exists()
    assert main(["export", str(out), "--format", "savedmodel"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Keras runs" in err and "not supported yet" in err


def test_a_folder_that_is_not_a_run_is_a_one_line_error(tmp_path, capsys):
    from zoo.runner.predict import load_run

    (tmp_path / "model").mkdir()
    img = tmp_path / "x.png"
    img.write_bytes(b"")
    for argv in (["predict", str(tmp_path), str(img)], ["export", str(tmp_path), "--format", "torchscript"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "not a run folder" in err and "zoo run" in err
    with pytest.raises(InvalidInputError, match="not a run folder"):
        load_run(tmp_path / "missing")


def test_a_run_without_weights_or_with_bad_config_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "model").mkdir()
    cfg = {"backbone": LITE0, "framework": "torch", "modality": "image", "classes": ["a", "b"], "num_classes": 2,
           "preprocessor": {"resolution": 32, "mean": [0.5] * 3, "std": [0.5] * 3}}
    (tmp_path / "model" / "config.json").write_text(json.dumps(cfg))
    assert main(["export", str(tmp_path), "--format", "torchscript"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model.safetensors: missing" in err
    (tmp_path / "model" / "config.json").write_text("{not json")
    assert main(["export", str(tmp_path), "--format", "torchscript"]) == 2
    assert "unreadable run config" in capsys.readouterr().err


def test_what_export_cannot_write_is_refused_before_the_model_loads(tmp_path, capsys, monkeypatch):
    """A text run as a SavedModel, or a modality zoo does not export, is said in one line before the weights load."""
    import zoo.runner.predict as predict

    run = tmp_path / "text-run"
    (run / "model").mkdir(parents=True)
    monkeypatch.setattr(predict, "load_run", lambda *a, **k: pytest.fail("export loaded the model"))
    for modality, fmt, said in (("text", "savedmodel", "use --format torchscript (or onnx) for this text run"),
                                ("audio", "onnx", "export supports image and text runs; this run is audio")):
        (run / "model" / "config.json").write_text(json.dumps({"modality": modality, "backbone": "hf:sentence-transformers/all-MiniLM-L6-v2"}))
        assert main(["export", str(run), "--format", fmt]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and said in err, err


# ---- text runs: a tiny fine-tune of the packaged MiniLM, exported --------------------------------------------------

MINILM = "hf:sentence-transformers/all-MiniLM-L6-v2"
TEXT_SEED = 3


def _sentences(per_class: int) -> list[tuple[str, str]]:
    """Real sentences: the first ``per_class`` short ones of three scikit-learn dataset descriptions, labelled by dataset."""
    import sklearn.datasets as d

    rows = []
    for name in ("iris", "wine", "breast_cancer"):
        kept = [" ".join(s.split()) for s in getattr(d, f"load_{name}")().DESCR.replace("\n", " ").split(". ")]
        rows += [(s, name) for s in kept if 5 <= len(s.split()) <= 40][:per_class]
    return rows


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    """One epoch of LP-FT (the top layer group) of MiniLM on 36 sentences of 3 classes, in its own ZOO_HOME."""
    import csv

    from zoo.recommender.plan import Optimizer, Schedule

    tmp = tmp_path_factory.mktemp("text-predict")
    mp = pytest.MonkeyPatch()
    for var, sub in CACHE_VARS.items():
        (tmp / "cache" / sub).mkdir(parents=True, exist_ok=True)
        mp.setenv(var, str(tmp / "cache" / sub))
    mp.setenv("ZOO_OFFLINE", "1")
    mp.setenv("HF_HUB_OFFLINE", "1")
    zoo.reset()
    rows = _sentences(12)
    data = tmp / "sentences.csv"
    with data.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([("text", "label"), *rows])
    plan = zoo.recommend(samples=len(rows), classes=3, modality="text")
    plan = plan.model_copy(update={
        "backbone": MINILM, "strategy": "lp-ft", "unfreeze": ["top-1"], "lr": {"head": 1e-3, "top-1": 1e-4},
        "optimizer": Optimizer(name="adamw", weight_decay=0.0),
        "schedule": Schedule(epochs=1, batch_size=16, steps=2, warmup_frac=0.0, early_stop_patience=3),
    })
    out = tmp / "run"
    result = zoo.run(plan, data, out=out, seed=TEXT_SEED, progress=False)
    yield out, rows, result
    zoo.reset()
    mp.undo()


@pytest.mark.slow
def test_a_text_run_predicts_from_its_folder(text_run, no_network, capsys):
    from zoo.runner.predict import load_run

    out, rows, result = text_run
    m = load_run(out)
    assert m.modality == "text" and m.classes == ["breast_cancer", "iris", "wine"] and result.epochs_run == 1
    texts = [t for t, _ in rows[::6]]
    assert main(["predict", str(out), *texts, "--json", "--top-k", "2"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [r["input"] for r in printed] == texts
    assert [r["top"][0]["label"] for r in printed] == [m.classes[int(i)] for i in m.logits(texts).argmax(1)]
    with pytest.raises(InvalidInputError, match=r"input #1 is only blanks: a text run classifies text; pass the text itself"):
        m.predict([texts[0], " \n"])  # it got a class, as any text


def test_export_help_says_what_a_text_run_exports(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "a text run's takes the tokenizer's input_ids, attention_mask (and token_type_ids)" in text
    assert "a text run's tokenizer files go to the same folder" in text and "not exported yet" not in text


def test_an_empty_text_for_a_text_run_is_refused_before_the_model_loads(tmp_path, capsys, monkeypatch):
    """`zoo predict RUN ""` printed a class and a probability for no text at all (the run skipped blank rows when it trained)."""
    import zoo.runner.predict as predict

    run = tmp_path / "text-run"
    (run / "model").mkdir(parents=True)
    (run / "model" / "config.json").write_text(json.dumps({"modality": "text", "backbone": MINILM}))
    monkeypatch.setattr(predict, "load_run", lambda *a, **k: pytest.fail("predict loaded the model"))
    assert main(["predict", str(run), "a real sentence", ""]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "input #1 is empty: a text run classifies text; pass the text itself" in err


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*torch.jit.*:FutureWarning")
@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_a_text_run_takes_the_saved_tokenizers_output(text_run, no_network, capsys, tmp_path, fmt):
    """The export of a fine-tuned text run and the tokenizer written beside it give the run's logits for new sentences,
    offline: other batch sizes and sequence lengths than the export traced, padding, and a text over the run's max_length."""
    import torch
    from transformers import AutoTokenizer

    from zoo.runner.predict import load_run

    out, rows, _ = text_run
    target = tmp_path / "exported" / ("minilm.pt" if fmt == "torchscript" else "minilm.onnx")
    assert main(["export", str(out), "--format", fmt, "-o", str(target), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["path"] == str(target) and printed["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    names = sorted(p.name for p in target.parent.iterdir())
    assert target.name in names and "tokenizer_config.json" in names and not [n for n in names if n.startswith(".")]  # no temporary left
    m = load_run(out)
    texts = ["An unrelated sentence about the weather in Lisbon.", rows[0][0], rows[-1][0], "word " * 400, "Ça marche."]
    tok = AutoTokenizer.from_pretrained(str(target.parent))
    enc = tok(texts, padding=True, truncation=True, return_tensors="pt")
    ours = m.preprocess(texts)
    assert enc["input_ids"].shape[1] == m.config["preprocessor"]["max_length"]  # the run's truncation, from the saved files alone
    for k in ours:
        assert torch.equal(enc[k], ours[k]), k
    with torch.no_grad():
        want = m.model(**ours)
    inputs = [enc[k] for k in printed["inputs"]]
    if fmt == "torchscript":
        extra = {"config.json": ""}
        scripted = torch.jit.load(str(target), _extra_files=extra)
        with torch.no_grad():
            got = scripted(*inputs)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    else:
        import onnxruntime as ort

        sess = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
        assert [i.name for i in sess.get_inputs()] == printed["inputs"]
        extra = sess.get_modelmeta().custom_metadata_map
        got = torch.as_tensor(sess.run(["logits"], {k: x.numpy() for k, x in zip(printed["inputs"], inputs)})[0])
        torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    config = json.loads(extra["config.json"])
    assert config["classes"] == m.classes and config["inputs"] == printed["inputs"]
    assert got.argmax(1).tolist() == m.logits(texts).argmax(1).tolist()


@pytest.mark.slow
def test_a_text_export_that_does_not_match_leaves_nothing(text_run, no_network, capsys, tmp_path, monkeypatch):
    import zoo.runner.predict as predict

    out, _, _ = text_run
    monkeypatch.setattr(predict, "EXPORT_TOLERANCE", -1.0)
    refused = tmp_path / "refused" / "minilm.pt"
    assert main(["export", str(out), "--format", "torchscript", "-o", str(refused)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "TorchScript export differs from the model" in err and "not written" in err
    assert list(refused.parent.iterdir()) == []  # neither the model nor the tokenizer's files, nor a temporary


@pytest.mark.slow
def test_zoo_export_of_a_text_run_prints_only_what_it_wrote(text_run, no_network, tmp_path):
    """`zoo export` of a text run printed transformers' "`loss_type=None` was set in the config but it is unrecognized" (logged once a
    process, as the tracer reads the model's attributes) ahead of its own line."""
    import os
    import subprocess

    out, _, _ = text_run
    target = tmp_path / "minilm.pt"
    got = subprocess.run([sys.executable, "-m", "zoo", "export", str(out), "--format", "torchscript", "-o", str(target)],
                         capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert got.returncode == 0, got.stderr[-2000:]
    assert got.stderr == "" and got.stdout.startswith(f"wrote {target} (torchscript; inputs: input_ids, attention_mask, token_type_ids"), got.stderr
