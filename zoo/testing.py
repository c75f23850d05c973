"""Fixtures and a contract suite that any zoo plugin package runs against itself.

In a plugin's ``conftest.py``::

    pytest_plugins = ["zoo.testing"]

gives the fixtures ``zoo_home`` (an isolated cache with every native cache redirected into it)
and ``no_network`` (any socket connection fails). To check a Backbone against the contract,
subclass :class:`BackboneContract` and provide a ``backbone`` fixture (and optionally
``sample_inputs``)::

    class TestMyBackbone(BackboneContract):
        @pytest.fixture
        def backbone(self):
            return zoo.load("mysource:model")

(use a module-scoped fixture outside the class to share one expensive model across the tests).

:class:`PluginContract` checks registration: give it a ``plugin_name`` fixture.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

CACHE_VARS = {
    "ZOO_HOME": "zoo",
    "TORCH_HOME": "torch",
    "HF_HOME": "huggingface",
    "KERAS_HOME": "keras",
    "TFHUB_CACHE_DIR": "tfhub",
    "XDG_CACHE_HOME": "xdg",
}


class NetworkBlocked(OSError):
    """Raised by every socket connection while ``no_network`` is active."""


@pytest.fixture
def zoo_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh cache root; TORCH_HOME, HF_HOME, KERAS_HOME, TFHUB_CACHE_DIR all point inside it."""
    root = tmp_path / "cache"
    for var, sub in CACHE_VARS.items():
        path = root / sub
        path.mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(var, str(path))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    return root / "zoo"


def _blocked(*args: Any, **kwargs: Any) -> Any:
    raise NetworkBlocked("network access is disabled in this test (zoo.testing.no_network)")


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every attempt to open a network connection raises :class:`NetworkBlocked`."""
    monkeypatch.setattr(socket.socket, "connect", _blocked)
    monkeypatch.setattr(socket.socket, "connect_ex", _blocked)
    monkeypatch.setattr(socket, "create_connection", _blocked)
    monkeypatch.setattr(socket, "getaddrinfo", _blocked)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    yield


def write_keras_h5(model: Any, path: Path, values: Any = None) -> Path:
    """Write ``model``'s weights in the legacy HDF5 layout of the files Keras downloads
    (``layer_names`` / ``weight_names`` attributes, one group per layer), as a test puts weights
    where a Keras download would leave them. ``values(name, shape)``, when given, supplies each
    array instead of the model's current value. Imports keras and h5py when called.
    """
    import h5py
    import keras
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [layer.name.encode("utf8") for layer in model.layers]
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = keras.__version__.encode("utf8")
        for layer in model.layers:
            g = f.create_group(layer.name)
            weights = layer.trainable_weights + layer.non_trainable_weights
            names = [f"{layer.name}/{w.name}_{i}:0".encode("utf8") for i, w in enumerate(weights)]
            g.attrs["weight_names"] = names
            for name, w in zip(names, weights):
                data = values(w.name, tuple(int(d) for d in w.shape)) if values is not None else keras.ops.convert_to_numpy(w)
                g.create_dataset(name.decode(), data=np.asarray(data))
    return path


#: The commit the loopback hub reports for every repo and file.
HUB_COMMIT = "0123456789abcdef0123456789abcdef01234567"
#: File types the Hugging Face Hub stores in LFS (named by sha256); the rest are git blobs (named by sha1).
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".keras", ".onnx", ".msgpack", ".ot", ".gz", ".tar")


def git_blob_sha1(data: bytes) -> str:
    """The git blob id of ``data`` (what the Hub publishes as the etag of a non-LFS file)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class LoopbackHub:
    """A loopback HTTP server (127.0.0.1 only) that serves files the way the model hubs do.

    ``files[path]`` are plain files (torch.hub / Keras style: ``ETag`` is the sha256). Hugging Face
    repos added with :meth:`add_hf_repo` answer ``/api/models/REPO/revision/REV``,
    ``/api/models/REPO/tree/REV`` and ``/REPO/resolve/REV/FILE`` like the Hub: LFS files with
    ``X-Linked-Etag`` (sha256) and ``X-Linked-Size``, the others with the git blob sha1 as ``ETag``,
    every answer with ``X-Repo-Commit``; point ``HF_ENDPOINT`` (and ``huggingface_hub.constants``)
    at :attr:`url`.

    ``plan[key]`` is a list of behaviours consumed one per GET (the last one repeats), where ``key``
    is a plain file's path or ``"REPO/FILE"``: ``"ok"``; ``"cut"`` (announces the full length,
    sends half, closes); ``"slow"`` (the whole file in small chunks); ``"flip"`` (the right headers
    and length, one byte altered, as a faulty proxy would); or an HTTP status code. ``gets[key]``
    counts the GETs. The server stops by itself after ``lifetime`` seconds.
    """

    def __init__(self, lifetime: float = 90.0) -> None:
        self.files: dict[str, bytes] = {}
        self.repos: dict[str, dict[str, bytes]] = {}
        self.plan: dict[str, list[object]] = {}
        self.gets: dict[str, int] = {}
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _status(self, code: int, headers: dict[str, str] | None = None) -> None:
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _json(self, obj: object) -> None:
                body = json.dumps(obj).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _api(self, path: str) -> None:
                parts = path.split("/")  # ['', 'api', 'models', org, name, kind, rev, ...]
                repo = "/".join(parts[3:5])
                if repo not in hub.repos or len(parts) < 7:
                    self._status(404, {"X-Error-Code": "RepoNotFound"})
                    return
                files = hub.repos[repo]
                if parts[5] == "revision":
                    self._json({"id": repo, "modelId": repo, "sha": HUB_COMMIT, "siblings": [{"rfilename": f} for f in sorted(files)]})
                    return
                tree = []
                for name in sorted(files):
                    data = files[name]
                    entry: dict[str, Any] = {"type": "file", "path": name, "size": len(data), "oid": git_blob_sha1(data)}
                    if name.endswith(LFS_SUFFIXES):
                        entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
                    tree.append(entry)
                self._json(tree)

            def _resolve(self, path: str) -> tuple[str, bytes, dict[str, str]] | None:
                for repo, files in hub.repos.items():
                    prefix = f"/{repo}/resolve/"
                    if path.startswith(prefix):
                        rev, _, name = path[len(prefix):].partition("/")
                        if name not in files or rev not in ("main", HUB_COMMIT):
                            return None
                        data = files[name]
                        headers = {"X-Repo-Commit": HUB_COMMIT}
                        if name.endswith(LFS_SUFFIXES):
                            sha = hashlib.sha256(data).hexdigest()
                            headers.update({"X-Linked-Etag": f'"{sha}"', "X-Linked-Size": str(len(data)), "ETag": f'"{sha}"'})
                        else:
                            headers["ETag"] = f'"{git_blob_sha1(data)}"'
                        return f"{repo}/{name}", data, headers
                if path in hub.files:
                    data = hub.files[path]
                    return path, data, {"ETag": f'"{hashlib.sha256(data).hexdigest()}"', "X-Repo-Commit": HUB_COMMIT}
                return None

            def _answer(self, head: bool) -> None:
                path = self.path.split("?")[0]
                if path.startswith("/api/models/"):
                    self._api(path)
                    return
                found = self._resolve(path)
                if found is None:
                    self._status(404, {"X-Error-Code": "EntryNotFound"})
                    return
                key, body, headers = found
                headers.update({"Content-Length": str(len(body)), "Accept-Ranges": "none"})
                if head:
                    self.send_response(200)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    return
                hub.gets[key] = hub.gets.get(key, 0) + 1
                steps = hub.plan.get(key, ["ok"])
                step = steps.pop(0) if len(steps) > 1 else steps[0]
                if isinstance(step, int):
                    self._status(step)
                    return
                self.send_response(200)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                if step == "cut":
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                elif step == "slow":
                    for i in range(0, len(body), 16384):
                        self.wfile.write(body[i : i + 16384])
                        time.sleep(0.01)
                elif step == "flip":
                    mid = len(body) // 2
                    self.wfile.write(body[:mid] + bytes([body[mid] ^ 0x01]) + body[mid + 1 :])
                else:
                    self.wfile.write(body)

            def do_HEAD(self) -> None:  # noqa: N802
                self._answer(head=True)

            def do_GET(self) -> None:  # noqa: N802
                self._answer(head=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.timer = threading.Timer(lifetime, self.server.shutdown)
        self.timer.daemon = True

    def add_hf_repo(self, repo: str, folder: str | Path) -> dict[str, bytes]:
        """Serve every file under ``folder`` as Hugging Face repo ``repo`` (``org/name``); returns them."""
        root = Path(folder)
        files = {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
        self.repos[repo] = files
        return files

    def point_hf_here(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Make ``huggingface_hub`` (already imported or not) and zoo talk to this server, online."""
        from huggingface_hub import constants as hf_constants

        monkeypatch.setenv("HF_ENDPOINT", self.url)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("ZOO_OFFLINE", raising=False)
        monkeypatch.setattr(hf_constants, "ENDPOINT", self.url)
        monkeypatch.setattr(hf_constants, "HUGGINGFACE_CO_URL_TEMPLATE", self.url + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)  # read at import, maybe by an earlier offline test

    def __enter__(self) -> LoopbackHub:
        self.thread.start()
        self.timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.timer.cancel()
        self.server.shutdown()
        self.server.server_close()


def sample_image(name: str = "chelsea") -> Any:
    """A real RGB image (uint8 HWC) from scikit-image's ``data`` module."""
    from skimage import data

    return getattr(data, name)()


def write_photo_folder(root: Path, per_class: int = 8, side: int = 64, min_crop: int = 48, names: Sequence[str] = ("chelsea", "coffee", "astronaut"), seed: int = 0) -> Path:
    """An image folder (one sub-folder per class) of random square crops of scikit-image photographs.

    Class ``name`` holds ``per_class`` crops of ``name``'s photo, each at least ``min_crop`` pixels
    and at most half the photo's shorter side, resized to ``side`` (bicubic) and saved as PNG.
    Real natural images with a learnable label, for runs and data-mode tests. Returns ``root``.
    """
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for name in names:
        im = Image.fromarray(sample_image(name)).convert("RGB")
        (root / name).mkdir(parents=True)
        for j in range(per_class):
            size = int(rng.integers(min_crop, min(im.size) // 2))
            left, top = int(rng.integers(0, im.size[0] - size + 1)), int(rng.integers(0, im.size[1] - size + 1))
            im.crop((left, top, left + size, top + size)).resize((side, side), Image.BICUBIC).save(root / name / f"{j:03d}.png")
    return root


SAMPLE_TEXTS = [
    "Transfer learning reuses a network trained on a large dataset for a new task.",
    "The cat sat on the mat.",
]


class BackboneContract:
    """Behaviour every Backbone must have. Subclass it and provide a ``backbone`` fixture."""

    @pytest.fixture
    def sample_inputs(self, backbone: Any) -> list[Any]:
        if backbone.input_spec.modality == "text":
            return list(SAMPLE_TEXTS)
        return [sample_image("chelsea"), sample_image("coffee"), sample_image("astronaut")]

    def test_identity(self, backbone: Any) -> None:
        from zoo import Backbone, ModelId

        assert isinstance(backbone, Backbone)
        assert isinstance(backbone.id, ModelId)
        assert backbone.framework in ("torch", "tensorflow")
        assert backbone.model is not None

    def test_embed_shape_and_determinism(self, backbone: Any, sample_inputs: list[Any]) -> None:
        import numpy as np

        a = backbone.embed(sample_inputs, batch_size=2)
        b = backbone.embed(sample_inputs[:1])
        assert a.shape == (len(sample_inputs), backbone.feature_dim)
        assert a.dtype == np.float32
        assert np.isfinite(a).all()
        np.testing.assert_allclose(a[:1], b, rtol=1e-4, atol=1e-4)

    def test_preprocess_train_and_eval(self, backbone: Any, sample_inputs: list[Any]) -> None:
        ev = backbone.preprocess(sample_inputs[:2])
        tr = backbone.preprocess(sample_inputs[:2], train=True)
        assert _batch_size(ev) == 2 and _batch_size(tr) == 2

    def test_empty_input_is_refused(self, backbone: Any) -> None:
        from zoo.errors import InvalidInputError

        with pytest.raises(InvalidInputError):
            backbone.embed([])

    def test_freeze_unfreeze_counts(self, backbone: Any) -> None:
        from zoo.errors import LayerGroupRangeError

        n = len(backbone.layer_groups)
        assert n >= 2, "a backbone needs at least two layer groups to fine-tune by depth"
        total = backbone.unfreeze().trainable_parameter_count()
        assert total > 0
        assert backbone.freeze().trainable_parameter_count() == 0
        counts = [backbone.unfreeze(top=k).trainable_parameter_count() for k in range(n + 1)]
        assert counts[0] == 0 and counts[-1] == total
        assert all(a <= b for a, b in zip(counts, counts[1:]))
        for bad in (-1, n + 1):
            with pytest.raises(LayerGroupRangeError):
                backbone.unfreeze(top=bad)
        backbone.freeze()

    def test_param_groups_decay(self, backbone: Any) -> None:
        from zoo.errors import InvalidInputError

        backbone.unfreeze()
        groups = backbone.param_groups(1e-3, decay=0.5)
        assert groups, "param_groups returned nothing with everything unfrozen"
        lrs = [g["lr"] for g in groups]
        assert lrs[0] == pytest.approx(1e-3)
        assert all(a >= b for a, b in zip(lrs, lrs[1:]))
        backbone.freeze()
        with pytest.raises(InvalidInputError, match=r"unfreeze\(top=k\)") as info:
            backbone.param_groups(1e-3)  # nothing to train: say so, not an empty list for the optimizer
        _assert_one_line(info.value)

    def test_with_head(self, backbone: Any, sample_inputs: list[Any]) -> None:
        head = backbone.with_head(num_classes=3, dropout=0.1)
        batch = backbone.preprocess(sample_inputs[:2])
        out = _forward(backbone, head, batch)
        assert tuple(out.shape) == (2, 3)

    def test_with_head_reading_a_middle_group(self, backbone: Any, sample_inputs: list[Any]) -> None:
        """lp-concat's classifier: the head also reads the middle layer group's pooled output, or the
        backbone says in one line that it has no such output (a TF Hub model exposes none)."""
        from zoo.errors import InvalidInputError

        names = [g.name for g in backbone.layer_groups]
        try:
            head = backbone.with_head(num_classes=3, concat_group=names[len(names) // 2])
        except InvalidInputError as exc:
            assert "\n" not in str(exc) and str(exc)
            return
        out = _forward(backbone, head, backbone.preprocess(sample_inputs[:2]))
        assert tuple(out.shape) == (2, 3)
        with pytest.raises(InvalidInputError, match="no layer group"):
            backbone.with_head(num_classes=3, concat_group="no-such-group")

    def test_bad_arguments_get_one_line(self, backbone: Any, sample_inputs: list[Any]) -> None:
        """Every numeric argument is checked: a one-line InvalidInputError, never a raw TypeError
        (or a silent run) from deep inside the framework; numpy numbers are accepted."""
        import numpy as np

        from zoo.errors import InvalidInputError

        def refused(call: Any, *args: Any, **kwargs: Any) -> None:
            with pytest.raises(InvalidInputError) as info:
                call(*args, **kwargs)
            _assert_one_line(info.value)

        one = sample_inputs[:1]
        for bad in (0, -1, 2.5, None, "2", True):
            refused(backbone.embed, one, batch_size=bad)
            refused(backbone.predict, one, top_k=bad)
            refused(backbone.with_head, bad)
        for bad in (-0.1, 1.0, float("nan"), "0.1"):
            refused(backbone.with_head, 3, dropout=bad)
        for bad in ("1", 1.5, True):
            refused(backbone.unfreeze, bad)
        backbone.freeze().unfreeze(np.int64(1))
        assert backbone.trainable_parameter_count() > 0
        for bad in (0, -1e-3, float("nan"), float("inf"), "1e-3", None):
            refused(backbone.param_groups, bad)
        for bad in (0, -0.5, 1.5, float("nan")):
            refused(backbone.param_groups, 1e-3, decay=bad)
        assert backbone.param_groups(np.float64(1e-3), decay=np.float32(0.5))
        assert backbone.embed(one, batch_size=np.int64(1)).shape == (1, backbone.feature_dim)
        backbone.freeze()

    def test_features_refuses_raw_inputs(self, backbone: Any, sample_inputs: list[Any]) -> None:
        """``features`` takes what ``preprocess`` makes; raw inputs get a one-line error naming preprocess()."""
        from zoo.errors import InvalidInputError

        if not hasattr(backbone, "features"):
            pytest.skip("this Backbone has no features()")
        with pytest.raises(InvalidInputError, match=r"preprocess\(\)") as info:
            backbone.features(sample_inputs[:1])
        _assert_one_line(info.value)

    def test_input_layouts(self, backbone: Any, sample_inputs: list[Any], tmp_path: Path) -> None:
        """Images: a 3-D array is ONE image, HxWxC or CxHxW (the same row); an ambiguous shape, a 0x0
        or non-finite image, an empty path are refused in one line. Text: an image file is refused."""
        import numpy as np

        from zoo.errors import InvalidInputError

        def refused(inputs: Any) -> None:
            with pytest.raises(InvalidInputError) as info:
                backbone.embed(inputs)
            _assert_one_line(info.value)

        if backbone.input_spec.modality == "text":
            from PIL import Image

            path = tmp_path / "img.png"
            Image.fromarray(sample_image("chelsea")).save(path)
            refused(str(path))
            refused([sample_inputs[0], "photo.jpg"])
            return
        hwc = sample_image("chelsea")[:96, :128]
        want = backbone.embed(hwc)
        assert want.shape == (1, backbone.feature_dim)
        got = backbone.embed(np.ascontiguousarray(hwc.transpose(2, 0, 1)))
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
        for bad in (np.zeros((3, 40, 3), np.uint8), np.zeros((10, 28, 28), np.uint8), np.zeros((0, 0, 3), np.uint8),
                    np.full((8, 8, 3), np.nan, np.float32), np.array([[None]]), ""):
            refused(bad)


def _assert_one_line(error: BaseException) -> None:
    text = str(error)
    assert text and "\n" not in text, f"not a one-line message: {text!r}"


def _batch_size(batch: Any) -> int:
    if isinstance(batch, dict):
        return len(next(iter(batch.values())))
    return len(batch)


def _forward(backbone: Any, model: Any, batch: Any) -> Any:
    if backbone.framework == "torch":
        import torch

        model.eval()
        with torch.no_grad():
            return model(**batch) if isinstance(batch, dict) else model(batch)
    return model(batch, training=False)


class PluginContract:
    """Registration behaviour every plugin must have. Provide a ``plugin_name`` fixture."""

    def test_plugin_loads(self, plugin_name: str) -> None:
        import zoo

        status = {p.name: p for p in zoo.plugins()}
        assert plugin_name in status, f"plugin {plugin_name!r} not discovered (entry point group 'zoo')"
        assert status[plugin_name].state == "ok", status[plugin_name].reason
        assert not status[plugin_name].reason, status[plugin_name].reason  # e.g. a misspelt hook that never runs

    def test_registered_models_parse(self, plugin_name: str) -> None:
        """Every id the plugin registered parses, names a source some plugin serves (else `zoo list` shows it
        and `zoo load` says 'Unknown source') and `zoo info` finds it again under that id."""
        import zoo

        sources = zoo.sources()
        for card in zoo.list_models():
            if card.origin == plugin_name:
                zoo.parse_id(card.id, tagged=not card.id.startswith("hf:"))
                assert sources.get(card.source, {}).get("plugin"), f"{card.id}: no installed plugin serves source {card.source!r}"
                assert zoo.info(card.id).id == card.id

    def test_import_loads_no_framework(self, plugin_name: str) -> None:
        """Neither importing the plugin nor running its lookup hooks (zoo list, zoo info, zoo --help: the
        registration and command hooks) imports an ML framework."""
        import subprocess
        import sys

        heavy = "[m for m in ('torch','tensorflow','keras','transformers','timm','tensorflow_hub') if m in sys.modules]"
        code = (
            "import sys, importlib.metadata as md\n"
            f"ep = [e for e in md.entry_points(group='zoo') if e.name == {plugin_name!r}][0]\n"
            "ep.load()\n"
            f"print('import:' + ','.join({heavy}))\n"
            "import zoo\n"
            "from zoo.cli import build_parser\n"
            "zoo.list_models(); build_parser()\n"
            f"print('hooks:' + ','.join({heavy}))\n"
        )
        env = {**os.environ, "ZOO_PLUGINS": plugin_name}  # this plugin's hooks only
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
        assert out.returncode == 0, out.stderr
        lines = out.stdout.split()
        assert lines[0] == "import:", f"importing the plugin loaded {lines[0][7:]}"
        assert lines[1] == "hooks:", f"the plugin's registration or command hooks loaded {lines[1][6:]} (import it in the loader)"
