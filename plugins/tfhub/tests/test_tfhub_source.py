"""The TF Hub source: a small tf_keras SavedModel with random weights in tensorflow_hub's cache layout."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

import zoo
from zoo.errors import NotCachedError
from zoo.testing import BackboneContract, PluginContract, sample_image, write_photo_folder

HANDLE = "google/imagenet/mobilenet_v2_100_224/feature_vector/5"
URL = f"https://tfhub.dev/{HANDLE}"


def _tf() -> tuple[Any, Any, Any]:
    from zoo_tfhub._compat import import_hub

    hub = import_hub()
    import tensorflow as tf
    import tf_keras

    return tf, tf_keras, hub


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A reusable TF2 SavedModel (conv/BN stem and block, pooled), random weights and BN statistics."""
    tf, tf_keras, _ = _tf()
    tf_keras.utils.set_random_seed(0)
    inputs = tf_keras.Input((None, None, 3))
    x = tf_keras.layers.Conv2D(8, 3, strides=2, name="stem_conv")(inputs)
    x = tf_keras.layers.BatchNormalization(name="stem_bn")(x)
    x = tf_keras.layers.ReLU()(x)
    x = tf_keras.layers.Conv2D(16, 3, strides=2, name="block1_conv")(x)
    x = tf_keras.layers.BatchNormalization(name="block1_bn")(x)
    x = tf_keras.layers.ReLU()(x)
    x = tf_keras.layers.GlobalAveragePooling2D()(x)
    model = tf_keras.Model(inputs, x)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, tf_keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.2, beta.shape), rng.normal(0, 0.2, mean.shape), rng.uniform(0.5, 1.5, var.shape)])
    path = tmp_path_factory.mktemp("hub") / "saved_model"
    tf.saved_model.save(model, str(path))
    return path


def put_in_hub_cache(saved_model: Path, cache: Path, url: str = URL) -> Path:
    """Place the SavedModel where tensorflow_hub's resolver keeps ``url``, descriptor included."""
    module_dir = cache / hashlib.sha1(url.encode("utf8")).hexdigest()
    shutil.copytree(saved_model, module_dir)
    Path(f"{module_dir}.descriptor.txt").write_text(
        f"Module: {url}\nDownload Time: {time.ctime()}\nDownloader Hostname: test (PID:{os.getpid()})\n"
    )
    return module_dir


@pytest.fixture(autouse=True)
def _fresh_zoo() -> Any:
    zoo.reset()
    yield
    zoo.reset()


def test_embed_equals_tfhub_reference(saved_model: Path, zoo_home: Path, no_network: None) -> None:
    tf, tf_keras, hub = _tf()
    cache = Path(os.environ["TFHUB_CACHE_DIR"])
    module_dir = put_in_hub_cache(saved_model, cache)
    from zoo_tfhub._backbone import module_dir as zoo_module_dir

    assert zoo_module_dir(URL) == module_dir

    bb = zoo.load(f"tfhub:{HANDLE}")
    assert bb.card is not None and bb.card.input_size == 224 and bb.input_spec.input_range == (0.0, 1.0)
    assert bb.framework == "tensorflow" and bb.model.__class__.__module__.startswith("tf_keras")
    got = bb.embed([sample_image("chelsea")])

    # as the TF Hub docs show: the handle in a tf_keras model, the image in [0, 1] resized
    ref_model = tf_keras.Sequential([hub.KerasLayer(URL, trainable=False)])
    image = tf.image.resize(sample_image("chelsea").astype(np.float32) / 255.0, (224, 224))[tf.newaxis]
    ref = ref_model(image).numpy()
    assert got.shape == ref.shape == (1, 16) and bb.feature_dim == 16
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    assert np.abs(ref).max() > 1e-3


def test_classification_handle_predicts_the_softmax_of_its_logits(saved_model: Path, zoo_home: Path, no_network: None) -> None:
    """The catalog lists classification handles for image-classification; TF Hub's examples take the
    module's logits and their argmax: predict ranks the softmax of the same logits."""
    tf, tf_keras, hub = _tf()
    handle = "google/imagenet/mobilenet_v2_100_224/classification/5"
    url = f"https://tfhub.dev/{handle}"
    put_in_hub_cache(saved_model, Path(os.environ["TFHUB_CACHE_DIR"]), url)
    bb = zoo.load(f"tfhub:{handle}")
    assert "image-classification" in bb.card.tasks and bb.source_head is not None
    images = [sample_image("chelsea"), sample_image("coffee")]
    ref_model = tf_keras.Sequential([hub.KerasLayer(url)])
    batch = tf.stack([tf.image.resize(img.astype(np.float32) / 255.0, (224, 224)) for img in images])
    probs = tf.nn.softmax(ref_model(batch)).numpy()
    for row, p in zip(bb.predict(images, top_k=3), probs):
        best = np.argsort(-p)[:3]
        assert [name for name, _ in row] == [str(i) for i in best]
        np.testing.assert_allclose([q for _, q in row], p[best], rtol=1e-5)
    assert zoo.load(f"tfhub:{HANDLE}", path=str(saved_model)).source_head is None  # a feature vector has none


@pytest.fixture(scope="module")
def imagenet_classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SavedModel returning 1001 logits (TF-slim's ImageNet classes, background first), random weights."""
    tf, tf_keras, _ = _tf()
    tf_keras.utils.set_random_seed(1)
    inputs = tf_keras.Input((None, None, 3))
    x = tf_keras.layers.Conv2D(8, 3, strides=4, name="stem_conv")(inputs)
    x = tf_keras.layers.GlobalAveragePooling2D()(x)
    x = tf_keras.layers.Dense(1001, name="logits", kernel_initializer=tf_keras.initializers.RandomNormal(stddev=1.0))(x)
    path = tmp_path_factory.mktemp("hub_cls") / "saved_model"
    tf.saved_model.save(tf_keras.Model(inputs, x), str(path))
    return path


@pytest.mark.parametrize("labels_file", ["models/imagenet_class_index.json", "datasets/ImageNetLabels.txt", None])
def test_imagenet_classification_handle_names_its_classes(imagenet_classifier: Path, zoo_home: Path, no_network: None, labels_file: Any) -> None:
    """TF Hub's ImageNet classifiers give 1001 logits, background at 0: predict named them by index; it names them as
    TF Hub's tutorials do (ImageNetLabels.txt), from the class names Keras or TF Hub's tutorials leave in KERAS_HOME.
    Offline with neither file: indices, as before."""
    import json

    tf, tf_keras, hub = _tf()
    handle = "google/imagenet/mobilenet_v2_100_224/classification/5"
    url = f"https://tfhub.dev/{handle}"
    put_in_hub_cache(imagenet_classifier, Path(os.environ["TFHUB_CACHE_DIR"]), url)
    names = [f"class {i}" for i in range(1000)]
    if labels_file is not None:
        path = Path(os.environ["KERAS_HOME"]) / labels_file
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".json":
            path.write_text(json.dumps({str(i): [f"n{i:08d}", n] for i, n in enumerate(names)}))
        else:
            path.write_text("\n".join(["background", *names]) + "\n")
    bb = zoo.load(f"tfhub:{handle}")
    images = [sample_image("chelsea"), sample_image("coffee")]
    batch = tf.stack([tf.image.resize(img.astype(np.float32) / 255.0, (224, 224)) for img in images])
    probs = tf.nn.softmax(tf_keras.Sequential([hub.KerasLayer(url)])(batch)).numpy()
    want = ["background", *names] if labels_file is not None else [str(i) for i in range(1001)]
    for row, p in zip(bb.predict(images, top_k=5), probs):
        best = np.argsort(-p)[:5]
        assert [name for name, _ in row] == [want[i] for i in best]
        np.testing.assert_allclose([q for _, q in row], p[best], rtol=1e-5)
    assert bb.labels == (want if labels_file is not None else None)
    if labels_file is None:  # the recommender's source-head scores: the module's outputs are the logits (there were none)
        from zoo.recommender.features import extract

        fs = extract(bb, images, np.zeros(2))
        assert fs.logits is not None and fs.logits.shape == (2, 1001)
        np.testing.assert_allclose(fs.logits, fs.final)


def test_imagenet_class_names_without_network_is_none(zoo_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Online, nothing cached and no network: the download of Keras' class index fails quietly (names by index)."""
    import socket

    from zoo.frameworks.keras import imagenet_class_names

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise OSError("network is unreachable")

    monkeypatch.delenv("ZOO_OFFLINE", raising=False)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    assert imagenet_class_names() is None


def test_offline_and_missing_raises_not_cached(zoo_home: Path, no_network: None) -> None:
    with pytest.raises(NotCachedError) as info:
        zoo.load(f"tfhub:{HANDLE}")
    expected = Path(os.environ["TFHUB_CACHE_DIR"]) / hashlib.sha1(URL.encode()).hexdigest()
    assert info.value.cache_path == str(expected)
    kaggle = "https://www.kaggle.com/models/google/mobilenet-v2/TensorFlow2/100-224-feature-vector/2"
    with pytest.raises(NotCachedError) as info:
        zoo.load(f"tfhub:{HANDLE}", handle=kaggle)
    assert info.value.cache_path.endswith(hashlib.sha1(kaggle.encode()).hexdigest())


def test_kaggle_handle_and_local_path(saved_model: Path, zoo_home: Path, no_network: None) -> None:
    kaggle = "https://www.kaggle.com/models/google/mobilenet-v2/TensorFlow2/100-224-feature-vector/2"
    put_in_hub_cache(saved_model, Path(os.environ["TFHUB_CACHE_DIR"]), kaggle)
    a = zoo.load("tfhub:google/mobilenet-v2/100-224", handle=kaggle)
    assert a.input_spec.size == 224  # from the handle name
    b = zoo.load("tfhub:local/tiny", path=str(saved_model), size=160)
    assert b.input_spec.size == 160 and b.preprocess(sample_image("coffee")).shape == (1, 160, 160, 3)
    img = sample_image("astronaut")
    np.testing.assert_allclose(a.embed(img), zoo.load("tfhub:local/tiny", path=str(saved_model)).embed(img), rtol=1e-6)


def test_pkg_resources_shim_when_missing() -> None:
    code = (
        "import sys\n"
        "sys.modules['pkg_resources'] = None  # as with setuptools>=81\n"
        "from zoo_tfhub._compat import import_hub\n"
        "hub = import_hub()\n"
        "import pkg_resources\n"
        "assert pkg_resources.__zoo_shim__\n"
        "assert pkg_resources.parse_version('2.21.0') > pkg_resources.parse_version('1.15.0')\n"
        "print('ok', hub.__version__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("ok 0.")


def test_pkg_resources_left_alone_when_present() -> None:
    from zoo_tfhub._compat import _pkg_resources_importable, ensure_pkg_resources, make_shim

    if _pkg_resources_importable():  # setuptools < 81 in this venv: the real module stays
        assert ensure_pkg_resources() is False
    shim = make_shim()
    assert shim.parse_version("1.15.0") < shim.parse_version("2.0.0rc1") < shim.parse_version("2.0.0")


def test_groups_freeze_and_batchnorm(saved_model: Path) -> None:
    tf, tf_keras, _ = _tf()
    bb = zoo.load("tfhub:local/tiny", path=str(saved_model))
    assert [g.name for g in bb.layer_groups] == ["stem_conv", "stem_bn", "block1_conv", "block1_bn"]
    assert bb.trainable_parameter_count() == 0  # frozen when loaded, as TF Hub recommends
    sizes = [sum(int(np.prod(v.shape)) for p in g.modules for v in p.trainable_variables) for g in bb.layer_groups]
    assert sizes == [8 * 27 + 8, 16, 16 * 72 + 16, 32]
    for k in range(5):
        assert bb.unfreeze(top=k).trainable_parameter_count() == sum(sizes[4 - k :])

    x = bb.preprocess([sample_image(n) for n in ("chelsea", "coffee", "astronaut", "camera")])
    y = np.array([0, 1, 2, 0])

    def snapshot() -> dict[str, np.ndarray]:
        return {v.name: v.numpy().copy() for v in bb.hub_layer.weights}

    bb.unfreeze(top=1)  # only block1_bn's gamma/beta train; the module runs in inference mode
    clf = bb.with_head(3)
    clf.compile(optimizer=tf_keras.optimizers.SGD(0.5), loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = snapshot()
    clf.fit(x, y, epochs=1, batch_size=4, verbose=0)
    after = snapshot()
    changed = {n for n in before if np.abs(before[n] - after[n]).max() > 0}
    assert changed == {"block1_bn/gamma:0", "block1_bn/beta:0"}

    bb.unfreeze()  # everything trains, BatchNorm in training mode; Keras needs a new compile
    clf.compile(optimizer=tf_keras.optimizers.SGD(0.5), loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    clf.fit(x, y, epochs=1, batch_size=4, verbose=0)
    final = snapshot()
    assert np.abs(final["stem_bn/moving_mean:0"] - after["stem_bn/moving_mean:0"]).max() > 0
    assert np.abs(final["stem_conv/kernel:0"] - after["stem_conv/kernel:0"]).max() > 0


def test_catalog_entries() -> None:
    from zoo_tfhub import catalog_entries
    from zoo_tfhub._backbone import size_from_handle

    entries = {e["id"]: e for e in catalog_entries()}
    cards = {c.id: c for c in zoo.list_models(source="tfhub")}
    assert set(entries) <= set(cards) and len(entries) >= 8  # curated entries take precedence
    assert entries[f"tfhub:{HANDLE}"]["input_size"] == 224 and entries[f"tfhub:{HANDLE}"]["feature_dim"] == 1280
    assert entries["tfhub:google/imagenet/inception_v3/feature_vector/5"]["input_size"] == 299
    assert size_from_handle("https://tfhub.dev/google/imagenet/resnet_v2_101/feature_vector/5") is None
    assert size_from_handle("https://www.kaggle.com/models/google/mobilenet-v2/TensorFlow2/035-128-feature-vector/2") == 128
    for e in entries.values():
        assert size_from_handle(e["url"]) in (None, e["input_size"])
        assert e["input_range"] == [0.0, 1.0]
    assert cards[f"tfhub:{HANDLE}"].input_size == 224
    assert entries["tfhub:tensorflow/efficientnet/b7/feature-vector/1"]["input_size"] == 600
    assert entries["tfhub:google/imagenet/resnet_v2_101/feature_vector/5"]["input_size"] == 224


@pytest.fixture(scope="class")
def backbone(saved_model: Path) -> Any:
    """The tiny SavedModel loaded through zoo, shared by the contract tests."""
    zoo.reset()
    return zoo.load("tfhub:local/tiny", path=str(saved_model))


class TestTfhubBackboneContract(BackboneContract):
    """The zoo Backbone contract on a TF Hub backbone."""


class TestTfhubPluginContract(PluginContract):
    @pytest.fixture
    def plugin_name(self) -> str:
        return "tfhub"


def test_lock_bundle_import_offline_gives_same_embeddings(saved_model: Path, zoo_home: Path, no_network: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    """A TF Hub module is locked, bundled and imported into an empty cache like any other source."""
    from zoo.cache.lockfile import LockFile
    from zoo.cli import main

    put_in_hub_cache(saved_model, Path(os.environ["TFHUB_CACHE_DIR"]))
    mid = f"tfhub:{HANDLE}"
    first = zoo.load(mid).embed([sample_image("chelsea"), sample_image("coffee")])
    lock_path, tar = tmp_path / "zoo.lock", tmp_path / "models.tar"
    assert main(["lock", mid, "-o", str(lock_path)]) == 0, capsys.readouterr().err
    keys = [f.key for f in LockFile.read(lock_path).models[0].files]
    digest = hashlib.sha1(URL.encode()).hexdigest()
    assert f"TFHUB_CACHE_DIR/{digest}/saved_model.pb" in keys
    assert f"TFHUB_CACHE_DIR/{digest}.descriptor.txt" not in keys  # the download's time and host: other bytes each time
    assert any(k.startswith(f"TFHUB_CACHE_DIR/{digest}/variables/") for k in keys)
    assert main(["bundle", str(lock_path), "-o", str(tar)]) == 0, capsys.readouterr().err

    # a second machine: empty caches, offline, no socket
    second = tmp_path / "second"
    for var in ("ZOO_HOME", "TORCH_HOME", "HF_HOME", "KERAS_HOME", "TFHUB_CACHE_DIR"):
        (second / var).mkdir(parents=True)
        monkeypatch.setenv(var, str(second / var))
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    zoo.reset()
    with pytest.raises(NotCachedError):
        zoo.load(mid)
    assert main(["cache", "import", str(tar)]) == 0, capsys.readouterr().err
    zoo.reset()
    again = zoo.load(mid).embed([sample_image("chelsea"), sample_image("coffee")])
    np.testing.assert_allclose(again, first, rtol=1e-5, atol=1e-5)
    assert main(["pull", "--lock", str(lock_path)]) == 0  # offline: verifies what is there


def test_pull_lock_holds_a_url_less_module_to_the_lock(saved_model: Path, zoo_home: Path, no_network: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    """Files without a URL (a TF Hub module) are held to the lock; a damaged one is named, not loaded."""
    from zoo.cli import main

    module = put_in_hub_cache(saved_model, Path(os.environ["TFHUB_CACHE_DIR"]))
    lock_path = tmp_path / "zoo.lock"
    assert main(["lock", f"tfhub:{HANDLE}", "-o", str(lock_path)]) == 0
    pb = module / "saved_model.pb"
    data = bytearray(pb.read_bytes())
    data[-1] ^= 1
    pb.write_bytes(bytes(data))
    monkeypatch.delenv("ZOO_OFFLINE")  # sockets stay blocked: the module is loaded from the cache
    monkeypatch.delenv("HF_HUB_OFFLINE")
    zoo.reset()
    capsys.readouterr()
    assert main(["pull", "--lock", str(lock_path)]) == 2
    err = capsys.readouterr().err
    assert "saved_model.pb: the cached file differs from the lock" in err and err.count("\n") == 1


@pytest.mark.slow
def test_zoo_run_on_a_tfhub_module_trains_the_top_groups_then_predicts_and_exports(saved_model: Path, zoo_home: Path, no_network: None, tmp_path: Path) -> None:
    """``zoo run`` end to end on a TF Hub module from hub's cache: LP, then LP-FT of the top two groups
    (BatchNorm in inference mode), the run folder, ``zoo predict RUN_DIR`` and a SavedModel export."""
    import json

    tf, tf_keras, _ = _tf()
    from zoo.recommender.plan import Optimizer, Schedule
    from zoo.runner.keras_model import build_classifier
    from zoo.runner.predict import load_run

    put_in_hub_cache(saved_model, Path(os.environ["TFHUB_CACHE_DIR"]))
    data = write_photo_folder(tmp_path / "photos", per_class=24)  # the module's random weights give near-constant features on digits
    base = zoo.recommend(samples=72, classes=3, domain="natural")
    plan = base.model_copy(update={
        "backbone": f"tfhub:{HANDLE}", "strategy": "lp-ft", "unfreeze": ["top-1", "top-2"], "resolution": 224, "bn": "frozen-stats",
        "lr": {"head": 1e-3, "top-1": 1e-3, "top-2": 5e-4}, "optimizer": Optimizer(name="sgd", momentum=0.9, weight_decay=1e-4),
        "schedule": Schedule(epochs=2, batch_size=16, steps=8, warmup_frac=0.1, early_stop_patience=3),
        "augment": base.augment.model_copy(update={"hflip": False, "random_resized_crop": False, "trivial_augment": False, "mixup": 0.0}),
    })
    out = tmp_path / "run"
    r = zoo.run(plan, data, out=out, seed=3, progress=False)
    losses = [h["train_loss"] for h in r.history]
    assert r.epochs_run == 2 and all(np.isfinite(losses)) and losses[1] < losses[0]
    assert r.final_val_acc >= r.stage1_val_acc  # stage 1 counts as epoch 0: the best model is kept
    assert [json.loads(x)["stage"] for x in (out / "metrics.jsonl").read_text().splitlines()] == ["stage1", "stage2", "stage2"]
    assert (out / "model" / "model.weights.h5").is_file() and f"{r.final_val_acc:.4f}" in (out / "report.md").read_text()

    # the last checkpoint against the module in hub's cache: the top two groups moved, the stem and the BatchNorm statistics did not
    bb = zoo.load(f"tfhub:{HANDLE}")
    before = {v.name: v.numpy().copy() for v in bb.hub_layer.weights}
    build_classifier(bb, 3, inference_bn=True).load_weights(str(out / "checkpoints" / "epoch-0002" / "model.weights.h5"))
    moved = {n for n, v in ((v.name, v.numpy()) for v in bb.hub_layer.weights) if not np.array_equal(before[n], v)}
    assert {"block1_conv/kernel:0", "block1_bn/gamma:0"} <= moved <= {"block1_conv/kernel:0", "block1_conv/bias:0", "block1_bn/gamma:0", "block1_bn/beta:0"}

    m = load_run(out)  # rebuilt offline from the run folder and hub's cache: `zoo predict` / `zoo export`
    x = m.example_batch(4, seed=1)
    files = [str(f) for name in ("chelsea", "coffee", "astronaut") for f in sorted((data / name).iterdir())[:3]]
    preds = m.predict(files, top_k=3)
    assert m.classes == ["astronaut", "chelsea", "coffee"] and all(abs(sum(q for _, q in row) - 1) < 1e-5 for row in preds)
    assert [row[0][0] for row in preds] == [m.classes[i] for i in m.logits(files).argmax(1)]
    path = m.export("savedmodel")
    loaded = tf.saved_model.load(str(path))
    np.testing.assert_allclose(loaded.serve(tf.constant(x)).numpy(), m.model(x, training=False).numpy(), rtol=1e-5, atol=1e-5)
    assert json.loads((path / "assets" / "config.json").read_text())["backbone"] == f"tfhub:{HANDLE}"


def test_a_download_that_cannot_reach_the_network_is_one_line(zoo_home: Path, no_network: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not offline by setting, but no network: tensorflow_hub's urllib error (raw URLError before) becomes one
    DownloadError line that names the handle and the offline route."""
    import urllib.error

    import zoo_tfhub._backbone as backbone
    from zoo.errors import DownloadError

    monkeypatch.delenv("ZOO_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE")

    def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(backbone, "GroupedHubLayer", unreachable)
    with pytest.raises(DownloadError) as info:
        zoo.load(f"tfhub:{HANDLE}")
    text = str(info.value)
    assert "\n" not in text and URL in text and "Name or service not known" in text and "ZOO_OFFLINE=1" in text


def test_a_mistyped_handle_is_one_line_that_suggests_the_close_ones(zoo_home: Path, no_network: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """tensorflow_hub's HTTP 404 for a handle with a typo said "Not Found (offline? set ZOO_OFFLINE=1 ...)": the server
    answered, so it says that the handle is unknown and which well-known handles are close."""
    import urllib.error

    import zoo_tfhub._backbone as backbone
    from zoo.errors import DownloadError

    monkeypatch.delenv("ZOO_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    typo = HANDLE.replace("feature_vector", "feature_vectr")

    def not_found(handle: str, *args: Any, **kwargs: Any) -> Any:
        raise urllib.error.HTTPError(handle + "?tf-hub-format=compressed", 404, "Not Found", {}, None)  # type: ignore[arg-type]

    monkeypatch.setattr(backbone, "GroupedHubLayer", not_found)
    with pytest.raises(DownloadError) as info:
        zoo.load(f"tfhub:{typo}")
    text = str(info.value)
    assert "\n" not in text and "HTTP 404" in text and f"did you mean tfhub:{HANDLE}" in text and "offline" not in text


def test_zoo_run_with_trained_batchnorm_and_frozen_groups_reports_inference_mode(saved_model: Path, zoo_home: Path, no_network: None, tmp_path: Path) -> None:
    """A plan with ``bn: train`` that leaves groups frozen: the SavedModel takes one training flag, so its BatchNorm
    statistics stay fixed, and report.md says so instead of 'BatchNorm of unfrozen groups trains'."""
    from zoo.recommender.plan import Optimizer, Schedule
    from zoo.runner.keras_model import build_classifier

    put_in_hub_cache(saved_model, Path(os.environ["TFHUB_CACHE_DIR"]))
    data = write_photo_folder(tmp_path / "photos", per_class=4)
    base = zoo.recommend(samples=12, classes=3, domain="natural")
    plan = base.model_copy(update={
        "backbone": f"tfhub:{HANDLE}", "strategy": "lp-ft", "unfreeze": ["top-1"], "resolution": 224, "bn": "train",
        "lr": {"head": 1e-2, "top-1": 1e-2}, "optimizer": Optimizer(name="sgd", momentum=0.9, weight_decay=0.0),
        "schedule": Schedule(epochs=1, batch_size=4, steps=2, warmup_frac=0.0, early_stop_patience=0),
        "augment": base.augment.model_copy(update={"hflip": False, "random_resized_crop": False, "trivial_augment": False, "mixup": 0.0}),
    })
    out = tmp_path / "run"
    zoo.run(plan, data, out=out, seed=0, progress=False, refit=False)
    bb = zoo.load(f"tfhub:{HANDLE}")
    before = {v.name: v.numpy().copy() for v in bb.hub_layer.weights}
    build_classifier(bb, 3, inference_bn=True).load_weights(str(out / "checkpoints" / "epoch-0001" / "model.weights.h5"))
    moved = {v.name for v in bb.hub_layer.weights if not np.array_equal(before[v.name], v.numpy())}
    assert moved == {"block1_bn/gamma:0", "block1_bn/beta:0"}  # the unfrozen group's weights, not its statistics
    report = (out / "report.md").read_text()
    assert "BatchNorm of unfrozen groups trains" not in report
    assert "BatchNorm in inference mode while any layer group is frozen" in report


def _module_tar(saved_model: Path) -> bytes:
    """A SavedModel as the compressed archive TF Hub serves (``?tf-hub-format=compressed``)."""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for p in sorted(saved_model.rglob("*")):
            tar.add(p, arcname=p.relative_to(saved_model).as_posix(), recursive=False)
    return buf.getvalue()


@contextlib.contextmanager
def _tfhub_server(monkeypatch: pytest.MonkeyPatch, served: dict[str, bytes]) -> Iterator[str]:
    """A loopback TF Hub: ``served["body"]`` (read at each request) at ``/<HANDLE>?tf-hub-format=compressed``, 404
    elsewhere; zoo and tensorflow_hub are pointed at it and the offline switches are off. Yields its base URL."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import zoo_tfhub._backbone
    import zoo_tfhub._paths

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            ok = self.path == f"/{HANDLE}?tf-hub-format=compressed"
            body = served["body"] if ok else b""
            self.send_response(200 if ok else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/"
        monkeypatch.setattr(zoo_tfhub._paths, "TFHUB_URL", base)
        monkeypatch.setattr(zoo_tfhub._backbone, "TFHUB_URL", base)
        for var in ("ZOO_OFFLINE", "HF_HUB_OFFLINE"):
            monkeypatch.delenv(var, raising=False)
        yield base
    finally:
        server.shutdown()
        server.server_close()


def test_pull_lock_removes_a_module_whose_download_differs_from_the_lock(saved_model: Path, imagenet_classifier: Path, zoo_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    """TF Hub publishes no hash and tensorflow_hub unpacks its archive straight into the cache, so `zoo pull --lock`
    can check a module only after it landed. The differing module stayed there and a later `zoo.load` used it; the
    files the download added are now removed again, and the error says so in one line."""
    import zoo_tfhub._paths
    from zoo.cli import main

    served = {"body": _module_tar(saved_model)}

    with _tfhub_server(monkeypatch, served) as base:
        mid, lock = f"tfhub:{HANDLE}", tmp_path / "zoo.lock"
        module = zoo_tfhub._paths.module_dir(base + HANDLE)
        assert main(["lock", mid, "-o", str(lock)]) == 0, capsys.readouterr().err
        assert (module / "saved_model.pb").is_file()
        assert main(["cache", "rm", mid]) == 0, capsys.readouterr().err
        served["body"] = _module_tar(imagenet_classifier)  # upstream changed
        zoo.reset()
        capsys.readouterr()
        assert main(["pull", "--lock", str(lock)]) == 2
        err = capsys.readouterr().err
        assert "the source served other bytes than" in err and "were removed again" in err and err.count("\n") == 1
        assert not module.exists()
        monkeypatch.setenv("ZOO_OFFLINE", "1")
        zoo.reset()
        with pytest.raises(NotCachedError):  # nothing unverified is left for a load to use
            zoo.load(mid)
        served["body"] = _module_tar(saved_model)  # upstream back to the locked bytes
        monkeypatch.delenv("ZOO_OFFLINE")
        zoo.reset()
        assert main(["pull", "--lock", str(lock)]) == 0, capsys.readouterr().err


def test_lock_of_a_classification_handle_pins_its_class_names(imagenet_classifier: Path, zoo_home: Path, no_network: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    """A classification handle predicts named classes from Keras' class index in KERAS_HOME: the lock pins it too,
    so its bundle carries it (a bundle without it predicted indices on the offline machine)."""
    import json

    from zoo.cache.lockfile import LockFile
    from zoo.cli import main

    handle = "google/imagenet/mobilenet_v2_100_224/classification/5"
    put_in_hub_cache(imagenet_classifier, Path(os.environ["TFHUB_CACHE_DIR"]), f"https://tfhub.dev/{handle}")
    index = Path(os.environ["KERAS_HOME"]) / "models" / "imagenet_class_index.json"
    index.parent.mkdir(parents=True, exist_ok=True)
    index.write_text(json.dumps({str(i): [f"n{i:08d}", f"class_{i}"] for i in range(1000)}))
    lock = tmp_path / "zoo.lock"
    assert main(["lock", f"tfhub:{handle}", "-o", str(lock)]) == 0, capsys.readouterr().err
    files = {f.key: f for f in LockFile.read(lock).models[0].files}
    assert files["KERAS_HOME/models/imagenet_class_index.json"].url.endswith("/imagenet_class_index.json")
    tar = tmp_path / "models.tar"
    assert main(["bundle", str(lock), "-o", str(tar)]) == 0, capsys.readouterr().err
    for var in ("ZOO_HOME", "TORCH_HOME", "HF_HOME", "KERAS_HOME", "TFHUB_CACHE_DIR"):  # another machine, offline
        monkeypatch.setenv(var, str(tmp_path / "second" / var.lower()))
    zoo.reset()
    assert main(["cache", "import", str(tar)]) == 0, capsys.readouterr().err
    bb = zoo.load(f"tfhub:{handle}")
    assert bb.labels == ["background"] + [f"class_{i}" for i in range(1000)]


def test_a_download_killed_with_sigkill_does_not_hold_the_next_one(saved_model: Path, zoo_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A `zoo pull tfhub:...` killed with SIGKILL (or by the OOM killer) leaves tensorflow_hub's `<module>.lock` and its
    half-unpacked `<module>.<uid>.tmp`: the next pull waited, silent, until that folder had not grown for ten minutes.
    A lock whose process on this host is gone is removed with its folder first; the download then runs at once."""
    import socket

    import zoo_tfhub._paths
    from tensorflow_hub import resolver

    served = {"body": _module_tar(saved_model)}

    with _tfhub_server(monkeypatch, served) as base:
        module = zoo_tfhub._paths.module_dir(base + HANDLE)
        module.parent.mkdir(parents=True, exist_ok=True)
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
        uid = "0123456789abcdef0123456789abcdef"
        Path(f"{module}.lock").write_text(f"{socket.gethostname()}.{int(dead.stdout)}.{uid}")
        (Path(f"{module}.{uid}.tmp") / "variables").mkdir(parents=True)  # the killed download's half
        live = tmp_path / "live.lock"  # a live process's lock (this one) is left alone
        live.write_text(f"{socket.gethostname()}.{os.getpid()}.{uid}")
        assert not zoo_tfhub._paths.clear_dead_lock(tmp_path / "live") and live.exists()

        def waited(*args: Any, **kwargs: Any) -> None:
            raise AssertionError("tensorflow_hub waited on the lock of a process that is gone")

        monkeypatch.setattr(resolver, "_wait_for_lock_to_disappear", waited)
        bb = zoo.load(f"tfhub:{HANDLE}")
        assert bb.embed([sample_image("chelsea")]).shape == (1, 16)
        assert (module / "saved_model.pb").is_file() and not Path(f"{module}.lock").exists()
        assert not Path(f"{module}.{uid}.tmp").exists()
