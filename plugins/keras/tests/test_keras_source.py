"""The Keras applications source: real Keras models with random weights written in Keras' cache layout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

import zoo
from zoo.errors import InvalidInputError, NotCachedError, UnknownModelError
from zoo.testing import BackboneContract, PluginContract, sample_image, write_keras_h5

SMALL = "MobileNetV3Small"
# the file names Keras' own download writes, read from keras/src/applications/*.py
NO_TOP = {
    "MobileNetV3Small": "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
    "MobileNetV2": "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
}


def random_backbone_model(app: str, seed: int = 0) -> Any:
    """``App(include_top=False, pooling="avg", weights=None)`` with every weight, BN statistics included, random."""
    rng = np.random.default_rng(seed)
    model = getattr(keras.applications, app)(include_top=False, pooling="avg", weights=None)
    for layer in model.layers:
        for w in layer.weights:
            shape = tuple(int(d) for d in w.shape)
            if "variance" in w.name:
                w.assign(rng.uniform(0.5, 1.5, shape).astype("float32"))
            elif layer.__class__.__name__ == "BatchNormalization":
                w.assign(rng.normal(0.0, 0.2, shape).astype("float32") + (1.0 if w.name == "gamma" else 0.0))
    return model


def keras_models_dir(zoo_home: Path) -> Path:
    return zoo_home.parent / "keras" / "models"


@pytest.fixture(autouse=True)
def _fresh_zoo() -> Any:
    zoo.reset()
    yield
    zoo.reset()
    keras.backend.clear_session()


@pytest.mark.parametrize("app", [SMALL, "MobileNetV2"])
def test_embed_equals_keras_reference(app: str, zoo_home: Path, no_network: None, tmp_path: Path) -> None:
    weights = write_keras_h5(random_backbone_model(app, seed=1), keras_models_dir(zoo_home) / NO_TOP[app])
    bb = zoo.load(f"keras:{app}.imagenet")
    assert bb.framework == "tensorflow" and bb.feature_dim == bb.model.output_shape[-1]
    got = bb.embed(sample_image("chelsea"))

    # the reference, as the Keras documentation writes it
    from PIL import Image

    img_path = tmp_path / "chelsea.png"
    Image.fromarray(sample_image("chelsea")).save(img_path)
    img = keras.utils.load_img(img_path, target_size=(224, 224), interpolation="bilinear")
    x = np.expand_dims(keras.utils.img_to_array(img), 0)
    module = {"MobileNetV3Small": keras.applications.mobilenet_v3, "MobileNetV2": keras.applications.mobilenet_v2}[app]
    x = module.preprocess_input(x)
    ref_model = getattr(keras.applications, app)(include_top=False, pooling="avg", weights=str(weights))
    ref = ref_model.predict(x, verbose=0)
    assert got.shape == ref.shape == (1, bb.feature_dim)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)

    # the cached weights were really used: a fresh random model gives other features
    fresh = getattr(keras.applications, app)(include_top=False, pooling="avg", weights=None).predict(x, verbose=0)
    assert np.abs(fresh - ref).max() > 1e-3


def test_predict_with_cached_top_weights(zoo_home: Path, no_network: None, tmp_path: Path) -> None:
    import json

    from PIL import Image

    from zoo_keras._backbone import weights_filenames

    app = "MobileNetV2"
    full = random_backbone_model(app, seed=4)  # body weights
    top = keras.applications.MobileNetV2(include_top=True, weights=None)
    for layer in top.layers:
        if layer.weights and layer.name != "predictions":
            layer.set_weights(full.get_layer(layer.name).get_weights())
    kernel, bias = top.get_layer("predictions").get_weights()
    rng = np.random.default_rng(5)
    top.get_layer("predictions").set_weights([rng.normal(0, 0.3, kernel.shape), rng.normal(0, 0.3, bias.shape)])
    models = keras_models_dir(zoo_home)
    write_keras_h5(full, models / weights_filenames(app)[0])
    write_keras_h5(top, models / weights_filenames(app)[1])
    (models / "imagenet_class_index.json").write_text(json.dumps({str(i): [f"n{i:08d}", f"class_{i}"] for i in range(1000)}))

    bb = zoo.load(f"keras:{app}.imagenet")
    assert bb.source_head is not None and bb.labels is not None
    got = bb.predict([sample_image("chelsea")], top_k=5)[0]

    img_path = tmp_path / "chelsea.png"
    Image.fromarray(sample_image("chelsea")).save(img_path)
    x = keras.utils.img_to_array(keras.utils.load_img(img_path, target_size=(224, 224), interpolation="bilinear"))[None]
    probs = top.predict(keras.applications.mobilenet_v2.preprocess_input(x), verbose=0)[0]
    best = np.argsort(-probs)[:5]
    assert [name for name, _ in got] == [f"class_{i}" for i in best]
    np.testing.assert_allclose([p for _, p in got], probs[best], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("app", ["MobileNet", SMALL])
def test_predict_of_mobilenets_whose_top_is_1x1_convolutions(app: str, zoo_home: Path, no_network: None, tmp_path: Path) -> None:
    """MobileNet's top is a 1x1 conv on the pooled map, MobileNetV3's conv_2 + hard-swish + logits:
    dense layers on the pooled features, so predict gives the with-top model's probabilities."""
    import json

    from PIL import Image

    from zoo_keras._backbone import weights_filenames

    keras.backend.clear_session()
    body = random_backbone_model(app, seed=6)
    top = getattr(keras.applications, app)(include_top=True, weights=None)
    rng = np.random.default_rng(7)
    with_weights = [layer for layer in top.layers if layer.weights]
    for src, dst in zip([layer for layer in body.layers if layer.weights], with_weights):
        dst.set_weights(src.get_weights())
    for layer in with_weights[len([b for b in body.layers if b.weights]):]:  # the top's own layers
        layer.set_weights([rng.normal(0, 0.3, tuple(w.shape)).astype("float32") for w in layer.weights])
    models = keras_models_dir(zoo_home)
    write_keras_h5(body, models / weights_filenames(app)[0])
    write_keras_h5(top, models / weights_filenames(app)[1])
    (models / "imagenet_class_index.json").write_text(json.dumps({str(i): [f"n{i:08d}", f"class_{i}"] for i in range(1000)}))

    bb = zoo.load(f"keras:{app}.imagenet")
    assert bb.source_head is not None
    images = [sample_image("chelsea"), sample_image("coffee")]
    got = bb.predict(images, top_k=5)
    xs = []
    for i, img in enumerate(images):
        Image.fromarray(img).save(tmp_path / f"{i}.png")
        xs.append(keras.utils.img_to_array(keras.utils.load_img(tmp_path / f"{i}.png", target_size=(224, 224), interpolation="bilinear")))
    module = {"MobileNet": keras.applications.mobilenet, SMALL: keras.applications.mobilenet_v3}[app]
    probs = top.predict(module.preprocess_input(np.stack(xs)), verbose=0)
    for row, p in zip(got, probs):
        best = np.argsort(-p)[:5]
        assert [name for name, _ in row] == [f"class_{i}" for i in best]
        np.testing.assert_allclose([q for _, q in row], p[best], rtol=1e-4, atol=1e-6)
    # the recommender's source-head scores read the head's logits (MobileNetV3's two-layer top gave none)
    from zoo.recommender.features import extract

    fs = extract(bb, images, np.zeros(2), resolution=224)
    z = fs.logits - fs.logits.max(1, keepdims=True)
    np.testing.assert_allclose(np.exp(z) / np.exp(z).sum(1, keepdims=True), bb.source_head(fs.final), rtol=1e-4, atol=1e-6)


def test_vgg_predicts_with_its_flatten_top(zoo_home: Path, no_network: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """VGG's top (flatten -> fc1 -> fc2 -> predictions) reads the unpooled map, not the pooled features: predict
    raised NoHeadError with the with-top file cached; it now gives the with-top model's probabilities. At 64 px
    (the weights' layout is the same as at 224 px, only fc1 is narrower) to keep the test small."""
    import json

    from PIL import Image

    from zoo_keras import _backbone
    from zoo_keras._backbone import weights_filenames

    monkeypatch.setitem(_backbone._SIZES, "VGG16", 64)
    body = random_backbone_model("VGG16", seed=8)
    top = keras.applications.VGG16(include_top=True, weights=None, input_shape=(64, 64, 3))
    rng = np.random.default_rng(9)
    for layer in top.layers:
        if layer.weights:
            try:
                layer.set_weights(body.get_layer(layer.name).get_weights())
            except ValueError:  # fc1, fc2, predictions: the top's own
                layer.set_weights([rng.normal(0, 0.05, tuple(w.shape)).astype("float32") for w in layer.weights])
    models = keras_models_dir(zoo_home)
    write_keras_h5(body, models / weights_filenames("VGG16")[0])
    write_keras_h5(top, models / weights_filenames("VGG16")[1])
    (models / "imagenet_class_index.json").write_text(json.dumps({str(i): [f"n{i:08d}", f"class_{i}"] for i in range(1000)}))

    bb = _backbone.load(zoo.parse_id("keras:VGG16.imagenet"))  # no card: the (patched) default size
    assert bb.source_head is None and bb.input_spec.size == 64 and bb.labels[:2] == ["class_0", "class_1"]
    images = [sample_image("chelsea"), sample_image("coffee")]
    got = bb.predict(images, top_k=5)
    xs = []
    for i, img in enumerate(images):
        Image.fromarray(img).save(tmp_path / f"{i}.png")
        xs.append(keras.utils.img_to_array(keras.utils.load_img(tmp_path / f"{i}.png", target_size=(64, 64), interpolation="bilinear")))
    probs = top.predict(keras.applications.vgg16.preprocess_input(np.stack(xs)), verbose=0)
    for row, p in zip(got, probs):
        best = np.argsort(-p)[:5]
        assert [name for name, _ in row] == [f"class_{i}" for i in best]
        np.testing.assert_allclose([q for _, q in row], p[best], rtol=1e-4, atol=1e-6)


def test_weight_file_names_are_the_ones_keras_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    from keras.src.utils import file_utils

    from zoo_keras._backbone import weights_filenames

    class Asked(Exception):
        pass

    def fake_get_file(fname: Any = None, origin: Any = None, **kwargs: Any) -> str:
        assert kwargs.get("cache_subdir") == "models"
        raise Asked(fname)

    monkeypatch.setattr(file_utils, "get_file", fake_get_file)
    cases = [(SMALL, False), (SMALL, True), ("MobileNetV2", False), ("MobileNet", False), ("EfficientNetB0", False), ("ResNet50", False)]
    for app, top in cases:
        with pytest.raises(Asked) as info:
            getattr(keras.applications, app)(include_top=top, weights="imagenet")
        assert str(info.value) == weights_filenames(app)[1 if top else 0], app
        keras.backend.clear_session()
    assert weights_filenames(SMALL)[0] == NO_TOP[SMALL]


def test_cli_errors_are_one_line_without_tensorflow_start_up_log(zoo_home: Path, tmp_path: Path) -> None:
    """TensorFlow's native start-up log (~10 lines on descriptor 2) and Keras' MobileNet input-shape warning
    used to come before zoo's one-line error on a Keras id."""
    import os
    import subprocess
    import sys

    from PIL import Image

    img = tmp_path / "chelsea.png"
    Image.fromarray(sample_image("chelsea")).save(img)
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env.update(ZOO_OFFLINE="1")

    def zoo_cli(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "zoo", *argv], capture_output=True, text=True, timeout=300, env=env)

    out = zoo_cli("predict", f"keras:{SMALL}", str(img))  # not cached: refused after TensorFlow imported
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "is not cached" in out.stderr, out.stderr
    # cached backbone weights, no top: the model is built (MobileNet's input-shape warning), then predict refuses
    write_keras_h5(random_backbone_model("MobileNetV2", seed=3), keras_models_dir(zoo_home) / NO_TOP["MobileNetV2"])
    out = zoo_cli("predict", "keras:MobileNetV2", str(img))
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "no pre-training head" in out.stderr, out.stderr


def test_offline_and_missing_raises_not_cached(zoo_home: Path, no_network: None) -> None:
    with pytest.raises(NotCachedError) as info:
        zoo.load(f"keras:{SMALL}.imagenet")
    assert info.value.cache_path == str(keras_models_dir(zoo_home) / NO_TOP[SMALL])
    assert "zoo pull" in str(info.value)


def test_resolve_weights_hook_answers_offline(zoo_home: Path, no_network: None, tmp_path: Path) -> None:
    path = write_keras_h5(random_backbone_model(SMALL, seed=2), tmp_path / "mirror" / "weights.h5")

    class Mirror:
        @zoo.hookimpl
        def zoo_resolve_weights(self, model_id: Any, card: Any) -> Any:
            return str(path) if model_id.source == "keras" else None

    zoo.reset(extra_plugins={"mirror": Mirror()})
    bb = zoo.load(f"keras:{SMALL}")  # bare name = ImageNet weights
    assert bb.id.name == SMALL and bb.card is not None and bb.card.id == f"keras:{SMALL}.imagenet"
    ref = keras.applications.MobileNetV3Small(include_top=False, pooling="avg", weights=str(path))
    np.testing.assert_allclose(bb.model.get_weights()[0], ref.get_weights()[0])


def test_unknown_application_and_bad_weights(zoo_home: Path, no_network: None) -> None:
    with pytest.raises(UnknownModelError) as info:
        zoo.load("keras:MobileNetV3Smal.imagenet")
    assert f"keras:{SMALL}.imagenet" in info.value.suggestions
    with pytest.raises(InvalidInputError):
        zoo.load(f"keras:{SMALL}.imagenet", weights=str(zoo_home / "nope.h5"))


def test_listing_has_every_application(zoo_home: Path) -> None:
    import zoo_keras
    from zoo.listing import cached_listing
    from zoo_keras._backbone import applications, default_size

    apps = applications()
    assert len(apps) >= 38
    listing = {m["id"]: m for m in cached_listing("keras", "keras", zoo_keras.LISTING, "zoo_keras._listing")}
    assert set(listing) == {f"keras:{name}.imagenet" for name in apps}
    cards = {c.id: c for c in zoo.list_models(source="keras")}
    assert set(listing) <= set(cards)  # curated entries of registry.yaml take precedence over these
    for name in apps:
        entry = listing[f"keras:{name}.imagenet"]
        assert entry["framework"] == "tensorflow" and entry["modality"] == "image"
        assert entry["input_size"] == default_size(name), name
        assert entry["params"] and entry["feature_dim"] and entry["layer_groups"] >= 2, name
        assert cards[entry["id"]].input_size == entry["input_size"], name
    families = {n: listing[f"keras:{n}.imagenet"]["family"] for n in ("EfficientNetV2S", "ResNet50V2", "MobileNetV3Large", "InceptionV3", "VGG19")}
    assert families == {"EfficientNetV2S": "efficientnet", "ResNet50V2": "resnet", "MobileNetV3Large": "mobilenet", "InceptionV3": "inception", "VGG19": "vgg"}
    full = keras.applications.MobileNetV3Small(include_top=True, weights=None)
    assert listing[f"keras:{SMALL}.imagenet"]["params"] == full.count_params()
    assert listing["keras:ResNet50.imagenet"]["params"] == 25636712  # Keras' applications table: 25.6M
    assert listing["keras:ResNet50.imagenet"]["feature_dim"] == 2048
    assert listing["keras:VGG16.imagenet"]["feature_dim"] == 512  # pooled last conv block
    assert listing["keras:InceptionV3.imagenet"]["input_size"] == 299


@pytest.fixture(scope="module")
def small_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_keras_h5(random_backbone_model(SMALL, seed=3), tmp_path_factory.mktemp("kw") / NO_TOP[SMALL])


def _group_sizes(bb: Any) -> list[int]:
    bb.unfreeze()
    return [sum(int(np.prod(v.shape)) for layer in g.modules for v in layer.trainable_weights) for g in bb.layer_groups]


def test_groups_partition_and_exact_counts(small_weights: Path) -> None:
    bb = zoo.load(f"keras:{SMALL}.imagenet", weights=str(small_weights))
    assert bb.source_head is None
    with pytest.raises(NotImplementedError):
        bb.predict(sample_image("coffee"))
    names = [g.name for g in bb.layer_groups]
    assert names[0] == "stem" and names[-1] == "top" and "block5" in names
    owners: dict[int, str] = {}
    for g in bb.layer_groups:
        for layer in g.modules:
            for v in layer.weights:
                assert id(v) not in owners, f"{v.path} in {owners.get(id(v))} and {g.name}"
                owners[id(v)] = g.name
    assert set(owners) == {id(v) for v in bb.model.weights}
    sizes = _group_sizes(bb)
    assert all(s > 0 for s in sizes)
    assert sum(sizes) == sum(int(np.prod(v.shape)) for v in bb.model.trainable_weights)
    n = len(sizes)
    for k in range(n + 1):
        bb.unfreeze(top=k)
        assert bb.trainable_parameter_count() == sum(sizes[n - k :]), k
    bb.unfreeze(top=2)
    groups = bb.param_groups(0.1, decay=0.5)
    assert [g["name"] for g in groups] == names[::-1][:2]
    assert [g["lr"] for g in groups] == [0.1, 0.05]
    assert sum(int(np.prod(v.shape)) for g in groups for v in g["variables"]) == sum(sizes[-2:])


def test_frozen_batchnorm_statistics_survive_a_fit_step(small_weights: Path) -> None:
    bb = zoo.load(f"keras:{SMALL}.imagenet", weights=str(small_weights))
    bb.unfreeze(top=1)
    frozen = [layer for g in bb.layer_groups[:-1] for layer in g.modules]
    top = bb.layer_groups[-1].modules
    bn = keras.layers.BatchNormalization
    frozen_bn = [layer for layer in frozen if isinstance(layer, bn)]
    top_bn = [layer for layer in top if isinstance(layer, bn)]
    assert frozen_bn and top_bn
    before_frozen = [keras.ops.convert_to_numpy(w).copy() for layer in frozen for w in layer.weights]
    before_top_bn = [keras.ops.convert_to_numpy(w).copy() for layer in top_bn for w in layer.non_trainable_weights]

    clf = bb.with_head(3, dropout=0.1)
    clf.compile(optimizer=keras.optimizers.SGD(0.1), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = bb.preprocess([sample_image(n) for n in ("chelsea", "coffee", "astronaut", "camera")], train=True)
    clf.fit(x, np.array([0, 1, 2, 0]), epochs=1, batch_size=4, verbose=0)

    after_frozen = [keras.ops.convert_to_numpy(w) for layer in frozen for w in layer.weights]
    for a, b in zip(before_frozen, after_frozen):
        np.testing.assert_array_equal(a, b)
    after_top_bn = [keras.ops.convert_to_numpy(w) for layer in top_bn for w in layer.non_trainable_weights]
    assert any(np.abs(a - b).max() > 0 for a, b in zip(before_top_bn, after_top_bn)), "the trainable BN did not update"


@pytest.fixture(scope="class")
def backbone(small_weights: Path) -> Any:
    """MobileNetV3Small with random weights loaded through zoo, shared by the contract tests."""
    zoo.reset()
    return zoo.load(f"keras:{SMALL}.imagenet", weights=str(small_weights))


class TestKerasBackboneContract(BackboneContract):
    """The zoo Backbone contract on a Keras application."""


class TestKerasPluginContract(PluginContract):
    @pytest.fixture
    def plugin_name(self) -> str:
        return "keras"


def test_unfreeze_after_the_keras_guides_model_level_freeze(small_weights: Path) -> None:
    """`bb.model.trainable = False` (the Keras transfer-learning guide's first step), then `unfreeze(top=2)`: the top two
    groups train and count, as after `bb.freeze()`. It reported 0 trainable parameters while param_groups and the
    with_head model trained 16 variables."""
    bb = zoo.load(f"keras:{SMALL}.imagenet", weights=str(small_weights))
    sizes = _group_sizes(bb)
    bb.model.trainable = False
    assert bb.trainable_parameter_count() == 0
    bb.unfreeze(top=2)
    assert bb.trainable_parameter_count() == sum(sizes[-2:])
    assert sum(int(np.prod(v.shape)) for g in bb.param_groups(0.1) for v in g["variables"]) == sum(sizes[-2:])
    frozen = [layer for g in bb.layer_groups[:-2] for layer in g.modules]
    assert frozen and not any(layer.trainable for layer in frozen)
    clf = bb.with_head(3)
    head = sum(int(np.prod(v.shape)) for v in clf.trainable_weights) - sum(sizes[-2:])
    assert head == bb.feature_dim * 3 + 3


def test_embed_holds_the_features_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """embed kept each batch's features and joined them at the end (every feature twice at the peak); the rows now
    go into one array allocated at the first batch."""
    import tracemalloc

    from zoo._ids import parse_id
    from zoo.backbone import InputSpec, LayerGroup
    from zoo.frameworks.keras import KerasBackbone, resize_image

    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Dense(2048, name="wide")(keras.layers.Flatten()(inputs)))
    bb = KerasBackbone(parse_id("keras:Wide"), None, model, keras_module=keras, groups=[LayerGroup("top", model.layers)],
                       input_spec=InputSpec(modality="image", size=8, channels_last=True), transform=resize_image(8))
    monkeypatch.setattr(bb, "features", lambda batch: np.array(model(batch, training=False)))  # numpy pieces tracemalloc sees
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (400, 8, 8, 3), dtype=np.uint8)
    first = bb.embed(images[:16], batch_size=8)
    tracemalloc.start()
    try:
        got = bb.embed(images, batch_size=8)
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got.shape == (400, 2048) and got.dtype == np.float32
    assert peak - kept < 0.5 * got.nbytes, f"{(peak - kept) / 2**20:.1f} MiB above the {got.nbytes / 2**20:.1f} MiB of features"
    np.testing.assert_allclose(got[:16], first, rtol=1e-6)
    assert bb.embed(images[0]).shape == (1, 2048)  # one image, one row


def test_shipped_weights_table_is_what_keras_applications_download() -> None:
    """`zoo_keras/weights.json` holds each application's download URL and Keras' hash, for `zoo pull`/`zoo lock` to
    fetch the with-top weights `predict` needs: it covers every application of the installed Keras, names the files
    Keras' download writes, and agrees with what the applications themselves pass to `get_file`."""
    import json

    from zoo_keras import _files
    from zoo_keras._backbone import applications

    table = json.loads(_files.TABLE.read_text(encoding="utf-8"))
    assert table["version"] == keras.__version__ and set(table["apps"]) == set(applications())
    for app, entry in table["apps"].items():
        assert (entry["notop"]["file"], entry["top"]["file"]) == _files.weights_filenames(app), app
        assert all(e["url"].startswith("https://storage.googleapis.com/") and len(e["hash"]) in (0, 32, 64) for e in entry.values()), app
    for app in (SMALL, "VGG16"):
        assert _files._read_from_keras(app) == table["apps"][app], app


def test_model_files_lists_what_predict_needs_as_optional(zoo_home: Path) -> None:
    from zoo.cache.lockfile import model_files

    found = model_files(f"keras:{SMALL}.imagenet")
    by_name = {Path(f.key).name: f for f in found.files}
    assert set(by_name) == {NO_TOP[SMALL], "weights_mobilenet_v3_small_224_1.0_float.h5", "imagenet_class_index.json"}
    assert not by_name[NO_TOP[SMALL]].optional and by_name["imagenet_class_index.json"].optional
    assert all(f.url and f.md5 for f in found.files)
