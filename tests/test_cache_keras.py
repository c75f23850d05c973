"""Keras application weights downloaded through zoo's downloader, checked against Keras' published md5."""

from __future__ import annotations

import hashlib
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import keras
import numpy as np
import pytest
from skimage import data

import zoo
from zoo.cache import records
from zoo.cache.errors import IntegrityError
from zoo.testing import write_keras_h5

APP = "MobileNetV3Small"
FILE = "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5"


def write_random_h5(path: Path) -> bytes:
    """Random weights in the legacy HDF5 layout of the files Keras downloads."""
    rng = np.random.default_rng(0)
    model = keras.applications.MobileNetV3Small(include_top=False, pooling="avg", weights=None)

    def values(name: str, shape: tuple[int, ...]) -> np.ndarray:
        value = rng.uniform(0.5, 1.5, shape) if "variance" in name else rng.normal(0, 0.1, shape)
        return value.astype("float32")

    write_keras_h5(model, path, values)
    keras.backend.clear_session()
    return path.read_bytes()


def _serve(files: dict[str, bytes]):
    """A loopback server of ``files`` (URL path -> body); yields its base URL and the paths asked for."""
    gets: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            gets.append(self.path)
            body = files.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            if body:
                self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return server, f"http://127.0.0.1:{server.server_address[1]}", gets


@pytest.fixture
def served(tmp_path: Path):
    body = write_random_h5(tmp_path / FILE)
    server, base, gets = _serve({"/keras/" + FILE: body})
    yield f"{base}/keras/", body, gets
    server.shutdown()
    server.server_close()


def test_keras_download_goes_through_zoo_with_keras_md5(served, zoo_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from keras.src.applications import mobilenet_v3

    base, body, gets = served
    monkeypatch.setenv("ZOO_PLUGINS", "keras")
    monkeypatch.setattr(mobilenet_v3, "BASE_WEIGHT_PATH", base)
    hashes = dict(mobilenet_v3.WEIGHTS_HASHES)
    monkeypatch.setattr(mobilenet_v3, "WEIGHTS_HASHES", hashes)
    dest = Path(os.environ["KERAS_HOME"]) / "models" / FILE
    zoo.reset()
    try:
        hashes["small_224_1.0_float"] = ("0" * 32, "0" * 32)  # not the served file's md5
        with pytest.raises(IntegrityError, match="md5"):
            zoo.load(f"keras:{APP}.imagenet")
        assert not dest.exists() and not list(dest.parent.glob(".*"))
        hashes["small_224_1.0_float"] = ("0" * 32, hashlib.md5(body).hexdigest())
        bb = zoo.load(f"keras:{APP}.imagenet")
        assert dest.read_bytes() == body and len(gets) == 2
        assert records.files()[f"KERAS_HOME/models/{FILE}"]["sha256"] == hashlib.sha256(body).hexdigest()
        feats = bb.embed([data.chelsea()])
        assert feats.shape == (1, bb.feature_dim) and np.isfinite(feats).all()
    finally:
        zoo.reset()
        keras.backend.clear_session()


TOP = "weights_mobilenet_v3_small_224_1.0_float.h5"


@pytest.fixture
def keras_hub(tmp_path: Path, zoo_home: Path, monkeypatch: pytest.MonkeyPatch):
    """Keras' download server on loopback: MobileNetV3Small's no-top and with-top weights (random) and the ImageNet
    class index, at the URLs and with the md5s of this plugin's table (``weights.json``), as Keras publishes them."""
    import json

    from zoo_keras import _files

    notop = write_random_h5(tmp_path / FILE)
    top_model = keras.applications.MobileNetV3Small(include_top=True, weights=None)
    rng = np.random.default_rng(3)
    top = write_keras_h5(top_model, tmp_path / TOP, lambda name, shape: (rng.uniform(0.5, 1.5, shape) if "variance" in name else rng.normal(0, 0.1, shape)).astype("float32")).read_bytes()
    keras.backend.clear_session()
    index = json.dumps({str(i): [f"n{i:08d}", f"class_{i}"] for i in range(1000)}).encode()
    server, base, gets = _serve({"/models/" + FILE: notop, "/models/" + TOP: top, "/data/imagenet_class_index.json": index})
    md5 = {name: hashlib.md5(body).hexdigest() for name, body in ((FILE, notop), (TOP, top))}
    table = {"version": _files._keras_version(), "apps": {APP: {
        "notop": {"file": FILE, "url": f"{base}/models/{FILE}", "hash": md5[FILE]},
        "top": {"file": TOP, "url": f"{base}/models/{TOP}", "hash": md5[TOP]}}}}
    (tmp_path / "weights.json").write_text(json.dumps(table))
    monkeypatch.setattr(_files, "TABLE", tmp_path / "weights.json")
    from keras.src.applications import mobilenet_v3  # what zoo.load asks Keras for goes to the same server

    monkeypatch.setattr(mobilenet_v3, "BASE_WEIGHT_PATH", f"{base}/models/")
    monkeypatch.setattr(mobilenet_v3, "WEIGHTS_HASHES", {**mobilenet_v3.WEIGHTS_HASHES, "small_224_1.0_float": (md5[TOP], md5[FILE])})
    monkeypatch.setattr(_files, "CLASS_INDEX", ("imagenet_class_index.json", f"{base}/data/imagenet_class_index.json", hashlib.md5(index).hexdigest()))
    monkeypatch.setenv("ZOO_PLUGINS", "keras")
    for var in ("ZOO_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    zoo.reset()
    try:
        yield {"notop": notop, "top": top, "index": index, "gets": gets}
    finally:
        server.shutdown()
        server.server_close()
        zoo.reset()
        keras.backend.clear_session()


def _photo(tmp_path: Path) -> str:
    from PIL import Image

    path = tmp_path / "chelsea.png"
    Image.fromarray(data.chelsea()).save(path)
    return str(path)


def test_pull_brings_what_an_offline_predict_needs_and_the_bundle_carries_it(keras_hub, zoo_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """`zoo pull keras:...` fetched only the no-top weights: an offline `zoo predict` then had no head. It now fetches the
    with-top weights and Keras' class index too (Keras' md5s checked); the lock pins them and the bundle carries them, so
    a machine with other cache folders predicts the same named classes offline."""
    import json

    from zoo.cache.lockfile import LockFile
    from zoo.cli import main

    mid, photo = f"keras:{APP}.imagenet", _photo(tmp_path)
    models = Path(os.environ["KERAS_HOME"]) / "models"
    assert main(["pull", mid]) == 0, capsys.readouterr().err
    assert "2 more file(s) for `zoo predict`" in capsys.readouterr().out
    assert sorted(keras_hub["gets"]) == sorted(["/data/imagenet_class_index.json", f"/models/{FILE}", f"/models/{TOP}"])
    assert (models / TOP).read_bytes() == keras_hub["top"] and (models / "imagenet_class_index.json").read_bytes() == keras_hub["index"]
    assert not [p.name for p in models.iterdir() if p.name.startswith(".")]  # no temp file left

    monkeypatch.setenv("ZOO_OFFLINE", "1")
    zoo.reset()
    assert main(["predict", mid, photo, "--json"]) == 0, capsys.readouterr().err
    first = json.loads(capsys.readouterr().out)[0]["top"]
    assert all(row["label"].startswith("class_") for row in first)

    lock, tar = tmp_path / "zoo.lock", tmp_path / "models.tar"
    assert main(["lock", mid, "-o", str(lock)]) == 0, capsys.readouterr().err
    files = LockFile.read(lock).models[0].files
    assert sorted(f.key for f in files) == sorted(f"KERAS_HOME/models/{n}" for n in (FILE, TOP, "imagenet_class_index.json"))
    assert all(f.url for f in files)  # `zoo pull --lock` and `zoo cache verify --repair` can fetch each again
    assert main(["bundle", str(lock), "-o", str(tar)]) == 0, capsys.readouterr().err

    second = tmp_path / "second"  # another machine: every cache folder elsewhere, offline
    for var in ("ZOO_HOME", "TORCH_HOME", "HF_HOME", "KERAS_HOME", "TFHUB_CACHE_DIR"):
        monkeypatch.setenv(var, str(second / var.lower()))
    zoo.reset()
    capsys.readouterr()
    assert main(["cache", "import", str(tar)]) == 0, capsys.readouterr().err
    assert (second / "keras_home" / "models" / "imagenet_class_index.json").is_file()
    assert "keras:MobileNetV3Small.imagenet: imported (3 file(s) verified)" in capsys.readouterr().out
    zoo.reset()
    assert main(["predict", mid, photo, "--json"]) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)[0]["top"] == first


def test_online_predict_fetches_the_head_a_plain_load_left_out(keras_hub, zoo_home: Path, tmp_path: Path, capsys) -> None:
    """`zoo predict keras:...` on a machine that had only the no-top weights said the model has no head; it fetches the
    with-top weights and class index and names the classes."""
    import json

    from zoo.cli import main

    models = Path(os.environ["KERAS_HOME"]) / "models"
    models.mkdir(parents=True, exist_ok=True)
    (models / FILE).write_bytes(keras_hub["notop"])
    assert main(["predict", f"keras:{APP}.imagenet", _photo(tmp_path), "--json"]) == 0, capsys.readouterr().err
    assert all(r["label"].startswith("class_") for r in json.loads(capsys.readouterr().out)[0]["top"])
    assert sorted(keras_hub["gets"]) == ["/data/imagenet_class_index.json", f"/models/{TOP}"]


def test_offline_lock_leaves_out_what_only_predict_needs_with_a_warning(keras_hub, zoo_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from zoo.cache.lockfile import LockFile
    from zoo.cli import main

    models = Path(os.environ["KERAS_HOME"]) / "models"
    models.mkdir(parents=True, exist_ok=True)
    (models / FILE).write_bytes(keras_hub["notop"])
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    lock = tmp_path / "zoo.lock"
    with pytest.warns(UserWarning, match=rf"keras:{APP}.imagenet: {TOP} is not cached .*lock again online"):
        assert main(["lock", f"keras:{APP}.imagenet", "-o", str(lock)]) == 0
    assert [f.key for f in LockFile.read(lock).models[0].files] == [f"KERAS_HOME/models/{FILE}"]
    assert keras_hub["gets"] == []
    # a hand-carried folder with the no-top file alone is adopted (the optional files are not required)
    carried = tmp_path / "carried"
    carried.mkdir()
    (carried / FILE).write_bytes(keras_hub["notop"])
    (models / FILE).unlink()
    zoo.reset()
    assert main(["cache", "import", str(carried), "--as", f"keras:{APP}.imagenet"]) == 0, capsys.readouterr().err
    assert (models / FILE).read_bytes() == keras_hub["notop"]


def test_a_carried_file_that_is_not_keras_published_one_is_refused(keras_hub, zoo_home: Path, tmp_path: Path, capsys) -> None:
    from zoo.cli import main

    carried = tmp_path / "carried"
    carried.mkdir()
    (carried / FILE).write_bytes(keras_hub["notop"][:-1] + bytes([keras_hub["notop"][-1] ^ 1]))
    assert main(["cache", "import", str(carried), "--as", f"keras:{APP}.imagenet"]) == 2
    err = capsys.readouterr().err
    assert "md5" in err and "published by the source" in err and err.count("\n") == 1
    assert not (Path(os.environ["KERAS_HOME"]) / "models" / FILE).exists()


def test_a_pulled_weights_file_altered_in_place_is_refused_and_repair_fetches_it_again(keras_hub, zoo_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """The Keras loader passed a cached weights file to Keras as it was: one that zoo had pulled and recorded and that
    was altered since (a flipped bit, a copy gone wrong) loaded silently. It is refused in one line naming the file and
    the repair; `zoo cache verify` names it too, and `--repair` fetches it again from its URL."""
    from zoo.cli import main
    from zoo.errors import IntegrityError

    mid = f"keras:{APP}.imagenet"
    assert main(["pull", mid]) == 0, capsys.readouterr().err
    for name in (FILE, TOP):
        path = Path(os.environ["KERAS_HOME"]) / "models" / name
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 1
        path.write_bytes(bytes(data))
        zoo.reset()
        with pytest.raises(IntegrityError, match=rf"{name} \(weights of {mid}\).*zoo cache verify --repair") as info:
            zoo.load(mid)
        assert "\n" not in str(info.value)
        capsys.readouterr()
        assert main(["cache", "verify"]) == 1
        out = capsys.readouterr().out
        assert f"{path}: altered" in out
        assert main(["cache", "verify", "--repair"]) == 0, capsys.readouterr().err
        assert path.read_bytes() == keras_hub["notop" if name == FILE else "top"]
    zoo.reset()
    assert zoo.load(mid).source_head is not None
