"""Offline use of cached models, lock -> bundle -> import on an empty machine, and `zoo cache verify`.

Random weights written where torchvision's download puts them stand in for the real checkpoints.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.models as tvm
from skimage import data

import zoo
from zoo import cli, hookimpl
from zoo.cache import records
from zoo.cache.errors import IntegrityError
from zoo.cache.lockfile import LockFile
from zoo.errors import NotCachedError
from zoo.testing import CACHE_VARS

RESNET18 = tvm.ResNet18_Weights.IMAGENET1K_V1
MBV3S = tvm.MobileNet_V3_Small_Weights.IMAGENET1K_V1
R18 = "torchvision:resnet18.IMAGENET1K_V1"
MB = "torchvision:mobilenet_v3_small.IMAGENET1K_V1"


def checkpoint(member: object) -> Path:
    return Path(os.environ["TORCH_HOME"]) / "hub" / "checkpoints" / os.path.basename(member.url)  # type: ignore[attr-defined]


def write_random(name: str, member: object, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = tvm.get_model(name, weights=None, num_classes=1000)
    path = checkpoint(member)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return path


def images() -> list[np.ndarray]:
    return [data.chelsea(), data.coffee()]


@pytest.fixture
def tv(zoo_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("ZOO_PLUGINS", "torchvision")
    monkeypatch.delenv("ZOO_DISABLE_PLUGINS", raising=False)
    zoo.reset()
    yield zoo_home
    zoo.reset()


def _sockets_fail(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    calls: list[tuple] = []

    def refuse(*args: object, **kwargs: object) -> None:
        calls.append(args)
        raise OSError("network disabled in this test")

    for target, name in ((socket.socket, "connect"), (socket.socket, "connect_ex"), (socket, "create_connection"), (socket, "getaddrinfo")):
        monkeypatch.setattr(target, name, refuse)
    return calls


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_offline_lookup_load_predict_on_cached_model(tv: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    write_random("resnet18", RESNET18)
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    calls = _sockets_fail(monkeypatch)
    assert zoo.info(R18).feature_dim == 512
    assert R18 in [c.id for c in zoo.list_models("torchvision:resnet18*")]
    bb = zoo.load(R18)
    feats = bb.embed(images())
    assert feats.shape == (2, 512) and np.isfinite(feats).all()
    top = bb.predict(images()[:1], top_k=3)
    assert len(top[0]) == 3 and all(lab in RESNET18.meta["categories"] for lab, _ in top[0])
    code, out, err = run(capsys, "info", R18)
    assert code == 0 and "resnet" in out
    # a model that is not cached fails at once, naming the model and the cache path
    with pytest.raises(NotCachedError) as exc:
        zoo.load(MB)
    assert MB in str(exc.value) and str(checkpoint(MBV3S)) in str(exc.value) and "zoo pull" in str(exc.value)
    assert calls == []  # nothing even tried to open a socket


def _second_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "offline-machine"
    for var, sub in CACHE_VARS.items():
        (root / sub).mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(var, str(root / sub))
    zoo.reset()
    return root


def test_lock_bundle_import_on_empty_home_gives_same_embeddings(tv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    write_random("resnet18", RESNET18, seed=1)
    write_random("mobilenet_v3_small", MBV3S, seed=2)
    first = {i: zoo.load(i).embed(images()) for i in (R18, MB)}
    lock_path, tar = tmp_path / "zoo.lock", tmp_path / "bundles" / "models.tar"  # a parent folder to make, as -o does elsewhere
    code, out, err = run(capsys, "lock", R18, MB, "-o", str(lock_path))
    assert code == 0, err
    lock = LockFile.read(lock_path)
    assert [m.id for m in lock.models] == [R18, MB]
    f = lock.models[0].files[0]
    assert f.key == "TORCH_HOME/hub/checkpoints/" + os.path.basename(RESNET18.url) and f.url == RESNET18.url
    assert (f.sha256, f.size) == records.sha256_file(checkpoint(RESNET18))
    code, out, err = run(capsys, "bundle", str(lock_path), "-o", str(tmp_path))  # a folder: one line, nothing written
    assert code == 2 and err.count("\n") == 1 and "is a folder; give the bundle a file name" in err
    code, out, err = run(capsys, "bundle", str(lock_path), "-o", str(tar))
    assert code == 0, err

    root = _second_machine(tmp_path, monkeypatch)
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    calls = _sockets_fail(monkeypatch)
    with pytest.raises(NotCachedError):
        zoo.load(R18)
    for bad in (tmp_path / "empty.tar", tmp_path / "notes.tar"):  # not tar files: one line, tarfile's list of methods left out
        bad.write_bytes(b"" if bad.name == "empty.tar" else b"not a tar archive at all" * 40)
        code, _, err = run(capsys, "cache", "import", str(bad))
        assert code == 2 and err.count("\n") == 1 and f"{bad}: not a readable tar file" in err, err
    code, out, err = run(capsys, "cache", "import", str(tar))
    assert code == 0, err
    assert checkpoint(RESNET18).is_relative_to(root)
    for i in (R18, MB):
        np.testing.assert_allclose(zoo.load(i).embed(images()), first[i], rtol=1e-5, atol=1e-5)
    code, out, err = run(capsys, "pull", "--lock", str(lock_path))  # offline: verifies what is there
    assert code == 0 and "verified" in out, err
    assert calls == []


def test_bundle_member_altered_is_refused(tv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import tarfile

    from zoo.cache.bundle import bundle, import_bundle
    from zoo.cache.lockfile import lock_models

    write_random("mobilenet_v3_small", MBV3S)
    lock = lock_models([MB])
    tar = bundle(lock, tmp_path / "ok.tar")
    bad = tmp_path / "bad.tar"
    with tarfile.open(tar) as src, tarfile.open(bad, "w") as dst:
        for m in src.getmembers():
            payload = src.extractfile(m).read()  # type: ignore[union-attr]
            if m.name.startswith("files/"):
                payload = payload[:100] + bytes([payload[100] ^ 1]) + payload[101:]
            import io

            dst.addfile(m, io.BytesIO(payload))
    _second_machine(tmp_path, monkeypatch)
    with pytest.raises(IntegrityError, match="damaged"):
        import_bundle(bad)
    assert not checkpoint(MBV3S).exists() and not list(checkpoint(MBV3S).parent.glob(".*part"))


def test_verify_names_truncated_and_flipped_files_and_repair_removes_them(tv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    a, b = write_random("resnet18", RESNET18), write_random("mobilenet_v3_small", MBV3S)
    assert run(capsys, "lock", R18, MB, "-o", str(tmp_path / "zoo.lock"))[0] == 0
    assert run(capsys, "cache", "verify")[0] == 0
    raw = a.read_bytes()
    a.write_bytes(raw[:-1])  # truncated by one byte
    raw = bytearray(b.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # one flipped bit
    b.write_bytes(bytes(raw))
    code, out, err = run(capsys, "cache", "verify")
    assert code == 1
    lines = out.strip().splitlines()
    assert any(str(a) in line and "truncated" in line for line in lines), out
    assert any(str(b) in line and "altered" in line for line in lines), out
    code, out, err = run(capsys, "cache", "ls", "--json")
    assert code == 0 and {R18, MB} <= {m for row in __import__("json").loads(out) for m in row["models"]}
    monkeypatch.setenv("ZOO_OFFLINE", "1")  # nothing to re-fetch from: repair removes them
    code, out, err = run(capsys, "cache", "verify", "--repair")
    assert code == 0 and out.count("removed") == 2
    assert not a.exists() and not b.exists()
    assert run(capsys, "cache", "verify")[1].strip() == "all recorded files verify"


def test_cache_rm_deletes_a_models_files(tv: Path, tmp_path: Path, capsys) -> None:
    a = write_random("resnet18", RESNET18)
    assert run(capsys, "lock", R18, "-o", str(tmp_path / "zoo.lock"))[0] == 0
    code, out, err = run(capsys, "cache", "rm", R18)
    assert code == 0 and "removed TORCH_HOME/hub/checkpoints/" in out
    assert not a.exists() and records.files() == {}
    code, out, err = run(capsys, "cache", "rm", "torchvision:nothing")
    assert code == 2 and "cache ls" in err


def test_cache_rm_of_a_mistyped_id_suggests_the_recorded_one(tv: Path, tmp_path: Path, capsys) -> None:
    a = write_random("resnet18", RESNET18)
    assert run(capsys, "lock", R18, "-o", str(tmp_path / "zoo.lock"))[0] == 0
    code, out, err = run(capsys, "cache", "rm", R18.replace("resnet18", "resnt18"))
    assert code == 2 and f"Did you mean {R18!r}?" in err and err.count("\n") == 1 and a.exists()


def test_cache_rm_keeps_a_file_another_model_still_uses(tv: Path, tmp_path: Path, capsys) -> None:
    """Keras' ImageNet class index serves every Keras application and TF Hub classifier: removing one model's files
    deleted it from under the others; the file stays while a model other than the removed ones is recorded for it."""
    shared = Path(os.environ["KERAS_HOME"]) / "models" / "imagenet_class_index.json"
    shared.parent.mkdir(parents=True)
    shared.write_text("{}")
    digest, size = records.sha256_file(shared)
    key = "KERAS_HOME/models/imagenet_class_index.json"
    for model in ("keras:ResNet50.imagenet", "keras:VGG16.imagenet"):
        records.record(key, digest, size, model=model)
    code, out, err = run(capsys, "cache", "rm", "keras:ResNet50.imagenet")
    assert code == 0 and shared.is_file() and records.files()[key]["models"] == ["keras:VGG16.imagenet"]
    code, out, err = run(capsys, "cache", "rm", "keras:VGG16.imagenet")
    assert code == 0 and f"removed {key}" in out and not shared.exists() and records.files() == {}
    assert not shared.parent.exists() and Path(os.environ["KERAS_HOME"]).is_dir()  # the folder it emptied, not the root


def test_cache_rm_removes_the_folders_it_empties(tv: Path, tmp_path: Path, capsys) -> None:
    """A TF Hub module is a folder in TFHUB_CACHE_DIR, and tensorflow_hub takes any folder with entries for a cached
    module: `zoo cache rm` left its empty variables/ and assets/ folders, and the next load failed on the empty module."""
    module = Path(os.environ["TFHUB_CACHE_DIR"]) / ("ab" * 20)
    (module / "variables").mkdir(parents=True)
    (module / "assets").mkdir()
    for rel in ("saved_model.pb", "variables/variables.index"):
        (module / rel).write_bytes(rel.encode())
        digest, size = records.sha256_file(module / rel)
        records.record(f"TFHUB_CACHE_DIR/{'ab' * 20}/{rel}", digest, size, model="tfhub:some/handle/1")
    code, out, err = run(capsys, "cache", "rm", "tfhub:some/handle/1")
    assert code == 0 and out.count("removed") == 2
    assert not module.exists() and Path(os.environ["TFHUB_CACHE_DIR"]).is_dir()


# ---- `zoo cache import DIR --as ID`, and the zoo_model_files hook of a third-party source -------
class FolderSource:
    """A plugin whose model is one weights file in ``$ZOO_HOME/folder/<name>/``."""

    @hookimpl
    def zoo_register_sources(self, register):
        register(zoo.Source(name="folder", framework="torch", loader="nowhere:load", requires=(), install="-", description="test"))

    @hookimpl
    def zoo_model_files(self, model_id, card):
        if model_id.source != "folder":
            return None
        base = Path(os.environ["ZOO_HOME"]) / "folder" / model_id.name
        return {"revision": "v1", "files": [{"path": str(base / "weights.safetensors"), "url": None}, {"path": str(base / "sub" / "config.json")}]}


def test_import_dir_adopts_a_hand_carried_folder(tv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("ZOO_PLUGINS", "")
    zoo.reset(extra_plugins={"folder": FolderSource()})
    carried = tmp_path / "usb"
    (carried / "sub").mkdir(parents=True)
    (carried / "weights.safetensors").write_bytes(b"w" * 1000)
    (carried / "sub" / "config.json").write_text('{"a": 1}')
    code, out, err = run(capsys, "cache", "import", str(carried), "--as", "folder:tiny")
    assert code == 0, err
    dest = Path(os.environ["ZOO_HOME"]) / "folder" / "tiny"
    assert (dest / "weights.safetensors").read_bytes() == b"w" * 1000 and (dest / "sub" / "config.json").is_file()
    assert set(records.files()) == {"ZOO_HOME/folder/tiny/weights.safetensors", "ZOO_HOME/folder/tiny/sub/config.json"}
    (carried / "sub" / "config.json").unlink()
    code, out, err = run(capsys, "cache", "import", str(carried), "--as", "folder:other")
    assert code == 2 and "config.json" in err


def test_import_dir_checks_the_sources_published_hash(tv: Path, tmp_path: Path, capsys) -> None:
    carried = tmp_path / "usb"
    carried.mkdir()
    torch.save({"not": torch.zeros(1)}, carried / os.path.basename(RESNET18.url))
    code, out, err = run(capsys, "cache", "import", str(carried), "--as", R18)
    assert code == 2 and "published by the source" in err
    assert not checkpoint(RESNET18).exists()


# ---- bad input to lock, bundle and import: one line, nothing half-written ------------------------
def _one_line(code: int, err: str, *needles: str) -> None:
    assert code == 2 and err.count("\n") == 1 and err.startswith("zoo: error: "), err
    for needle in needles:
        assert needle in err, err


def _bundle_two(tmp_path: Path, capsys) -> tuple[Path, Path]:
    write_random("resnet18", RESNET18, seed=1)
    write_random("mobilenet_v3_small", MBV3S, seed=2)
    lock_path, tar = tmp_path / "zoo.lock", tmp_path / "two.tar"
    assert run(capsys, "lock", R18, MB, "-o", str(lock_path))[0] == 0
    assert run(capsys, "bundle", str(lock_path), "-o", str(tar))[0] == 0
    return lock_path, tar


def _nothing_imported(root: Path) -> None:
    left = [p for p in root.rglob("*") if p.is_file() and "locks" not in p.parts]
    assert left == [], left  # no checkpoint, no .part file, no manifest entry


def test_truncated_bundle_is_one_line_and_installs_nothing(tv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import gzip
    import tarfile

    _, tar = _bundle_two(tmp_path, capsys)
    raw = tar.read_bytes()
    with tarfile.open(tar) as t:
        last = t.getmembers()[-1]
    end = last.offset_data + last.size  # the zero blocks after it are padding: cut into the data itself
    cuts = {"mid-first-file.tar": raw[: len(raw) // 3], "mid-last-file.tar": raw[: end - 1000], "in-a-header.tar": raw[:1536]}
    cuts["cut.tar.gz"] = gzip.compress(raw)[:-5000]  # a compressed bundle cut off: gzip's EOFError
    root = _second_machine(tmp_path, monkeypatch)
    for name, payload in cuts.items():
        bad = tmp_path / name
        bad.write_bytes(payload)
        code, out, err = run(capsys, "cache", "import", str(bad))
        _one_line(code, err, str(bad))
        assert "the bundle is truncated" in err and "nothing was imported" in err, err
        _nothing_imported(root)
    assert records.files() == {}


def test_bad_bundle_manifest_is_one_line(tv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import io
    import json
    import tarfile

    _, tar = _bundle_two(tmp_path, capsys)
    with tarfile.open(tar) as src:
        good = json.loads(src.extractfile("zoo-bundle.json").read())  # type: ignore[union-attr]
        members = [(m, src.extractfile(m).read()) for m in src.getmembers() if m.name != "zoo-bundle.json"]  # type: ignore[union-attr]
    cases = {
        "notjson.tar": (b"{not json", "invalid bundle manifest"),
        "extra.tar": (json.dumps({**good, "extra": 1}).encode(), "extra: Extra inputs are not permitted"),
        "badv.tar": (json.dumps({**good, "version": 2}).encode(), "bundle manifest version 2 is not supported"),
        "list.tar": (b"[]", "invalid bundle manifest"),
        "nomodels.tar": (json.dumps({"version": 1, "models": []}).encode(), "locks no models"),
        "nofiles.tar": (json.dumps({"version": 1, "models": [{**good["models"][0], "files": []}]}).encode(), "is locked with no files"),
    }
    root = _second_machine(tmp_path, monkeypatch)
    for name, (manifest, needle) in cases.items():
        bad = tmp_path / name
        with tarfile.open(bad, "w") as dst:
            info = tarfile.TarInfo("zoo-bundle.json")
            info.size = len(manifest)
            dst.addfile(info, io.BytesIO(manifest))
            for m, payload in members:
                dst.addfile(m, io.BytesIO(payload))
        code, out, err = run(capsys, "cache", "import", str(bad))
        _one_line(code, err, f"{bad}: zoo-bundle.json", needle, "zoo bundle")
        assert out == ""
        _nothing_imported(root)


def test_bundle_is_world_readable_and_lock_rejects_files_less_entries(tv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import json
    import stat

    lock_path, tar = _bundle_two(tmp_path, capsys)
    assert stat.S_IMODE(tar.stat().st_mode) == 0o644  # like every file zoo writes, not mkstemp's 0600
    data = json.loads(lock_path.read_text())
    for bad_id in ("torchvision:nope", R18):
        broken = tmp_path / "broken.lock"
        broken.write_text(json.dumps({**data, "models": data["models"] + [{"id": bad_id, "source": "torchvision", "revision": None, "files": []}]}))
        code, out, err = run(capsys, "bundle", str(broken), "-o", str(tmp_path / "out.tar"))
        _one_line(code, err, f"{broken}: {bad_id} is locked with no files", "zoo lock")
        assert not (tmp_path / "out.tar").exists() and not list(tmp_path.glob(".out.tar*"))
        code, out, err = run(capsys, "pull", "--lock", str(broken))
        if bad_id == R18:
            _one_line(code, err, f"{broken}: {bad_id} is locked with no files")
        else:  # an id its source does not know: the source's own error
            _one_line(code, err, "Unknown model 'torchvision:nope'")
        assert "verified" not in out


def test_lock_checks_its_output_before_loading_anything(tv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    write_random("resnet18", RESNET18)
    loads: list[str] = []
    real = zoo.load
    monkeypatch.setattr(zoo, "load", lambda text, **kw: loads.append(text) or real(text, **kw))
    folder = tmp_path / "existing"
    folder.mkdir()
    code, out, err = run(capsys, "lock", R18, "-o", str(folder))
    _one_line(code, err, f"{folder} is a folder; give the lock file a file name")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code, out, err = run(capsys, "lock", R18, "-o", str(blocker / "sub" / "zoo.lock"))
    _one_line(code, err, f"{blocker} is a file")
    assert loads == [] and list(folder.iterdir()) == []  # refused before any model was loaded
    target = tmp_path / "new" / "dir" / "x.lock"  # a missing parent folder is made, as `bundle -o` does
    code, out, err = run(capsys, "lock", R18, "-o", str(target))
    assert code == 0, err
    assert LockFile.read(target).models[0].id == R18 and loads == [R18]
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.lock"]  # no temporary file left


@pytest.mark.parametrize("content", ["[]", '{"files": []}', '"manifest"'])
def test_manifest_of_the_wrong_shape_is_one_line_and_kept(tv: Path, tmp_path: Path, capsys, content: str) -> None:
    path = records.manifest_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    for argv in (("cache", "ls"), ("cache", "verify")):
        code, out, err = run(capsys, *argv)
        _one_line(code, err, f"{path} is not a zoo manifest", "delete it")
    assert path.read_text() == content  # nothing lost


def test_manifest_entries_of_the_wrong_shape_are_skipped_with_a_warning(tv: Path, tmp_path: Path, capsys) -> None:
    import json

    a = write_random("resnet18", RESNET18)
    assert run(capsys, "lock", R18, "-o", str(tmp_path / "zoo.lock"))[0] == 0
    path = records.manifest_path()
    data = json.loads(path.read_text())
    data["files"]["ZOO_HOME/x"] = {"size": 1}
    data["files"]["ZOO_HOME/y"] = ["not", "an", "object"]
    path.write_text(json.dumps(data))
    for argv in (("cache", "ls"), ("cache", "verify")):
        records._warned.clear()
        code, out, err = run(capsys, *argv)
        assert code == 0, err
        assert err.count("zoo: warning:") == 2 and "'ZOO_HOME/x' is skipped (no sha256)" in err and "'ZOO_HOME/y' is skipped" in err
    assert "resnet18" in run(capsys, "cache", "ls")[1]
    records.record("ZOO_HOME/z", "0" * 64, 0)  # writing the manifest keeps the entries it cannot use
    kept = json.loads(path.read_text())["files"]
    assert kept["ZOO_HOME/x"] == {"size": 1} and kept["ZOO_HOME/y"] == ["not", "an", "object"] and "ZOO_HOME/z" in kept
    assert records.files()[records.key_of(a)]["size"] == a.stat().st_size


def test_record_keeps_mtime_and_old_manifests_still_work(tv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import json

    a = write_random("resnet18", RESNET18)
    assert run(capsys, "lock", R18, "-o", str(tmp_path / "zoo.lock"))[0] == 0
    key = records.key_of(a)
    assert records.files()[key]["mtime_ns"] == a.stat().st_mtime_ns
    calls: list[Path] = []
    real = records.sha256_file
    monkeypatch.setattr(records, "sha256_file", lambda p: calls.append(Path(p)) or real(p))
    assert records.changed(a) is None and calls == []  # unchanged: one stat, no hashing
    path = records.manifest_path()  # a manifest written before mtimes were recorded
    data = json.loads(path.read_text())
    del data["files"][key]["mtime_ns"]
    path.write_text(json.dumps(data))
    assert records.changed(a) is None and calls == [a]  # hashed once ...
    assert records.files()[key]["mtime_ns"] == a.stat().st_mtime_ns
    assert records.changed(a) is None and calls == [a]  # ... then trusted again
    raw = bytearray(a.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    a.write_bytes(bytes(raw))
    assert (records.changed(a) or "").startswith("altered")


def test_require_unchanged_refuses_a_damaged_recorded_file_in_one_line(tv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """The load-time check a loader calls on a recorded file: a stat when unchanged, one line when not."""
    a = write_random("resnet18", RESNET18)
    records.require_unchanged(a, R18)  # not recorded yet: nothing to hold it to
    assert run(capsys, "lock", R18, "-o", str(tmp_path / "zoo.lock"))[0] == 0
    calls: list[object] = []
    real = records.sha256_file
    monkeypatch.setattr(records, "sha256_file", lambda p: calls.append(p) or real(p))
    records.require_unchanged(a, R18)
    assert calls == []
    raw = bytearray(a.read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 16] = bytes(16)  # 16 bytes altered, same size
    a.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError) as exc:
        records.require_unchanged(a, R18)
    text = str(exc.value)
    assert "\n" not in text and str(a) in text and "altered" in text and "zoo cache verify --repair" in text
    os.truncate(a, 1000)
    with pytest.raises(IntegrityError, match="truncated: 1000 bytes"):
        records.require_unchanged(a, R18)


def test_a_recorded_torchvision_checkpoint_altered_in_place_is_refused_at_load(tv: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """A cached checkpoint zoo recorded and someone changed (same size, new bytes) is refused in one line at load,
    not used; an unchanged one loads with one stat (no hashing)."""
    path = write_random("resnet18", RESNET18)
    digest, size = records.sha256_file(path)
    records.record(records.key_of(path), digest, size, url=RESNET18.url, mtime_ns=path.stat().st_mtime_ns)
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    hashed: list[Path] = []
    real_hash = records.sha256_file
    monkeypatch.setattr(records, "sha256_file", lambda p: hashed.append(Path(p)) or real_hash(p))
    zoo.load(R18)
    assert hashed == []  # unchanged: size and modification time match the record
    raw = bytearray(path.read_bytes())
    raw[size // 2 : size // 2 + 16] = bytes(16)
    path.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError) as exc:
        zoo.load(R18)
    assert "\n" not in str(exc.value) and str(path) in str(exc.value) and "zoo cache verify --repair" in str(exc.value)
    code, _, err = run(capsys, "info", R18)  # lookups do not read weights
    assert code == 0


def test_a_killed_bundle_leaves_nothing_after_the_next_one(tv: Path, tmp_path: Path, capsys) -> None:
    """`zoo bundle -o` killed midway leaves its temporary tar beside the output (a folder zoo does not own); the next
    bundle to that name removes it, and leaves a running bundle's alone."""
    import signal
    import subprocess
    import sys

    write_random("resnet18", RESNET18, seed=1)
    lock_path, out = tmp_path / "zoo.lock", tmp_path / "bundles" / "models.tar"
    assert run(capsys, "lock", R18, "-o", str(lock_path))[0] == 0
    out.parent.mkdir()
    killed = ("import os, signal, tarfile\nfrom zoo import cli\n"
              "real = tarfile.TarFile.addfile\n"  # killed while the weights are being packed
              "def addfile(self, info, fh=None):\n"
              "    real(self, info, fh)\n"
              "    if info.name.startswith('files/'): os.kill(os.getpid(), signal.SIGKILL)\n"
              "tarfile.TarFile.addfile = addfile\n"
              f"cli.main(['bundle', {str(lock_path)!r}, '-o', {str(out)!r}])\n")
    proc = subprocess.run([sys.executable, "-c", killed], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    (left,) = list(out.parent.iterdir())
    assert left.name.startswith(".models.tar.") and left.name.endswith(".part") and left.stat().st_size > 0
    from zoo._io import owned_temp

    live = owned_temp(out.parent, out.name, ".part")  # a bundle still being written (this process)
    code, _, err = run(capsys, "bundle", str(lock_path), "-o", str(out))
    assert code == 0, err
    assert sorted(p.name for p in out.parent.iterdir()) == sorted([live.name, "models.tar"])


def test_repair_leaves_a_file_that_another_zoo_fetched_again_meanwhile(tv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """verify --repair offline removes a damaged file, but re-checks under the file's lock first: a `zoo pull` that
    wrote the good bytes back between the check and the removal must not lose them."""
    from zoo.cache import verify as V

    a = write_random("resnet18", RESNET18)
    assert run(capsys, "lock", R18, "-o", str(tmp_path / "zoo.lock"))[0] == 0
    good = a.read_bytes()
    a.write_bytes(good[:-1])
    real_check = V.check
    calls = []

    def check_then_pull_again(key, rec):  # the other zoo's pull lands right after this zoo's check
        calls.append(key)
        reason = real_check(key, rec)
        if len(calls) == 1:
            a.write_bytes(good)
        return reason

    monkeypatch.setattr(V, "check", check_then_pull_again)
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    code, out, err = run(capsys, "cache", "verify", "--repair")
    assert code == 0 and "left: another zoo fetched it again meanwhile" in out, out + err
    assert a.read_bytes() == good and len(calls) == 2
    monkeypatch.setattr(V, "check", real_check)
    assert run(capsys, "cache", "verify")[1].strip() == "all recorded files verify"


def test_offline_pull_lock_with_a_hash_the_cached_file_lacks_says_it_differs(tv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """A lock whose sha256 the cached file does not have (stale, or edited): offline, `zoo pull --lock` said the model
    "is not cached" and to `zoo pull` it; the file is cached and differs. One line with both hashes; the file is kept."""
    import json

    a = write_random("resnet18", RESNET18)
    before = a.read_bytes()
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    lock = tmp_path / "zoo.lock"
    assert run(capsys, "lock", R18, "-o", str(lock))[0] == 0
    data = json.loads(lock.read_text())
    data["models"][0]["files"][0]["sha256"] = "0" * 64
    lock.write_text(json.dumps(data))
    code, out, err = run(capsys, "pull", "--lock", str(lock))
    assert code == 2 and err.count("\n") == 1 and "not cached" not in err
    assert "the cached file differs from the lock" in err and "expected sha256 000000000000" in err and "zoo is offline" in err
    assert a.read_bytes() == before


def test_a_full_disk_during_import_is_one_line_naming_the_file(tv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """`zoo cache import` onto a full disk said "[Errno 28] No space left on device; check the path and its permissions"
    (no path: the write names none). It names the file being installed and says to free space or point elsewhere;
    nothing of it is kept."""
    import errno

    write_random("resnet18", RESNET18)
    lock, tar = tmp_path / "zoo.lock", tmp_path / "models.tar"
    assert run(capsys, "lock", R18, "-o", str(lock))[0] == 0
    assert run(capsys, "bundle", str(lock), "-o", str(tar))[0] == 0
    root = _second_machine(tmp_path, monkeypatch)
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.fh.close()

        def write(self, b):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("zoo.cache.bundle.os.fdopen", lambda fd, mode="r", *a, **k: Full(real_fdopen(fd, mode, *a, **k)))
    code, out, err = run(capsys, "cache", "import", str(tar))
    dest = checkpoint(RESNET18)
    assert code == 2 and err.count("\n") == 1, err
    assert f"No space left on device: {dest}" in err and "free some space on the disk of" in err and "check the path" not in err
    assert not [p for p in root.rglob("*") if p.is_file() and "checkpoints" in p.parts] and records.files() == {}
