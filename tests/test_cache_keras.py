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


@pytest.fixture
def served(tmp_path: Path):
    body = write_random_h5(tmp_path / FILE)
    gets: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            gets.append(self.path)
            ok = self.path.endswith("/" + FILE)
            self.send_response(200 if ok else 404)
            self.send_header("Content-Length", str(len(body) if ok else 0))
            self.end_headers()
            if ok:
                self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    stopper = threading.Timer(90, server.shutdown)
    stopper.daemon = True
    thread.start()
    stopper.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/keras/", body, gets
    stopper.cancel()
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
