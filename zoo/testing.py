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

import os
import socket
from collections.abc import Iterator
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


def sample_image(name: str = "chelsea") -> Any:
    """A real RGB image (uint8 HWC) from scikit-image's ``data`` module."""
    from skimage import data

    return getattr(data, name)()


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
        backbone.unfreeze()
        groups = backbone.param_groups(1e-3, decay=0.5)
        assert groups, "param_groups returned nothing with everything unfrozen"
        lrs = [g["lr"] for g in groups]
        assert lrs[0] == pytest.approx(1e-3)
        assert all(a >= b for a, b in zip(lrs, lrs[1:]))
        backbone.freeze()
        assert backbone.param_groups(1e-3) == []

    def test_with_head(self, backbone: Any, sample_inputs: list[Any]) -> None:
        head = backbone.with_head(num_classes=3, dropout=0.1)
        batch = backbone.preprocess(sample_inputs[:2])
        out = _forward(backbone, head, batch)
        assert tuple(out.shape) == (2, 3)


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

    def test_registered_models_parse(self, plugin_name: str) -> None:
        import zoo

        for card in zoo.list_models():
            if card.origin == plugin_name:
                zoo.parse_id(card.id, tagged=not card.id.startswith("hf:"))

    def test_import_loads_no_framework(self, plugin_name: str) -> None:
        import subprocess
        import sys

        code = (
            "import sys, importlib.metadata as md\n"
            f"ep = [e for e in md.entry_points(group='zoo') if e.name == {plugin_name!r}][0]\n"
            "ep.load()\n"
            "heavy = [m for m in ('torch','tensorflow','keras','transformers','timm','tensorflow_hub') if m in sys.modules]\n"
            "print(','.join(heavy))\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy())
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "", f"importing the plugin loaded {out.stdout.strip()}"
