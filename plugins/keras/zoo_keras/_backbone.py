"""Keras applications as zoo Backbones: ``keras:<Application>.imagenet``.

The model is ``keras.applications.<App>(include_top=False, pooling="avg", weights=...)`` and its
preprocessing the family's own ``keras.applications.<module>.preprocess_input`` after resizing the
image to the family's input size with PIL, as ``keras.utils.load_img(path, target_size=...,
interpolation=...)`` does. zoo resizes with ``bilinear`` by default; the Keras documentation's
example (``load_img(path, target_size=(224, 224))``) uses load_img's default, ``nearest``, which
``zoo.load(id, interpolation="nearest")`` reproduces exactly. Weights come from ``zoo.resolve_weights``, a ``weights=`` path, or Keras'
own cache ``$KERAS_HOME/models/<file>`` under the file name Keras' download writes.

When the with-top weights file is cached too, its ImageNet classifier becomes ``source_head``
(families whose top is pooling -> Dense, and MobileNet / MobileNetV3, whose top is 1x1 convolutions
on the pooled map). VGG's top (flatten -> fc1 -> fc2 -> predictions) reads the unpooled 7x7 map, so
it is no ``source_head``; ``predict`` runs it on the body's last pooling instead, as Keras'
with-top model does. ``predict`` names classes when Keras' ``imagenet_class_index.json`` is cached,
else by index. Otherwise ``predict`` raises ``NotImplementedError``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from zoo._compat import import_tensorflow

import_tensorflow()  # Keras 3 runs on it: Triton first, TensorFlow's native start-up log kept off stderr

import keras  # noqa: E402

import zoo
from zoo.backbone import InputSpec, LayerGroup
from zoo.cache.records import require_unchanged
from zoo.constants import offline
from zoo.errors import InvalidInputError, NotCachedError, UnknownModelError, close_matches
from zoo.frameworks.keras import KerasBackbone, resize_image
from zoo_keras._files import keras_cache_dir, weights_filenames  # noqa: F401 (re-exported)
from zoo_keras._groups import group_layers

TAG = "imagenet"

# family module -> catalog family
FAMILIES = {
    "convnext": "convnext",
    "densenet": "densenet",
    "efficientnet": "efficientnet",
    "efficientnet_v2": "efficientnet",
    "inception_resnet_v2": "inception_resnet",
    "inception_v3": "inception",
    "mobilenet": "mobilenet",
    "mobilenet_v2": "mobilenet",
    "mobilenet_v3": "mobilenet",
    "nasnet": "nasnet",
    "regnet": "regnet",
    "resnet": "resnet",
    "resnet_v2": "resnet",
    "vgg16": "vgg",
    "vgg19": "vgg",
    "xception": "xception",
}

# default input sizes where they are not 224 (each application's `default_size`)
_SIZES = {
    "InceptionV3": 299,
    "InceptionResNetV2": 299,
    "Xception": 299,
    "NASNetLarge": 331,
    "EfficientNetB1": 240,
    "EfficientNetB2": 260,
    "EfficientNetB3": 300,
    "EfficientNetB4": 380,
    "EfficientNetB5": 456,
    "EfficientNetB6": 528,
    "EfficientNetB7": 600,
    "EfficientNetV2B1": 240,
    "EfficientNetV2B2": 260,
    "EfficientNetV2B3": 300,
    "EfficientNetV2S": 384,
    "EfficientNetV2M": 480,
    "EfficientNetV2L": 480,
}


def applications() -> dict[str, Any]:
    """Every model builder in ``keras.applications``: ``{"ResNet50": keras.applications.ResNet50, ...}``."""
    return {
        name: fn
        for name in dir(keras.applications)
        if name[:1].isupper() and callable(fn := getattr(keras.applications, name))
    }


def family_module(fn: Any) -> str:
    """The ``keras.applications`` submodule of an application (``resnet_v2``), from its ``__module__``."""
    return fn.__module__.rsplit(".", 1)[-1]


def default_size(app: str) -> int:
    """The application's default (ImageNet) input side in pixels."""
    return _SIZES.get(app, 224)


def _unknown(model_id: Any) -> UnknownModelError:
    known = [f"keras:{n}.{TAG}" for n in applications()]
    return UnknownModelError(str(model_id), close_matches(f"keras:{model_id.name}.{TAG}", known))


def _weights_for(model_id: Any, card: Any, app: str, weights: Any) -> Any:
    """A local file, ``"imagenet"`` (Keras downloads it), or ``None`` (random initialisation)."""
    if weights is None:
        return None
    if weights not in ("imagenet", "default"):
        path = Path(weights).expanduser()
        if not path.is_file():
            raise InvalidInputError(f"weights={str(weights)!r}: no such weights file; pass a Keras .h5 weights file.")
        return str(path)
    resolved = zoo.resolve_weights(model_id, card)
    if resolved is not None:
        path = Path(resolved)
        if path.is_dir():
            path = path / weights_filenames(app)[0]
        if path.is_file():
            return str(path)
    cached = keras_cache_dir() / weights_filenames(app)[0]
    if cached.is_file():
        # passed as a path: Keras' get_file would re-download a file whose hash it does not know; a copy zoo
        # recorded (pulled, locked, imported) must still be the bytes it recorded (one stat when unchanged)
        require_unchanged(cached, model_id)
        return str(cached)
    if offline():
        raise NotCachedError(str(model_id), str(cached))
    return "imagenet"


# the ImageNet classifier after the pooled features: GlobalAveragePooling2D -> (Dropout) -> Dense;
# MobileNet and MobileNetV3 apply 1x1 convolutions to the pooled 1x1 map, i.e. dense layers on the
# pooled features (V3: conv_2 + hard-swish, then logits); VGG's top reads the unpooled map
_HEAD_LAYER = {"convnext": "{model}_head_dense"}
_CONV_HEAD = {"mobilenet": ("conv_preds",), "mobilenet_v3": ("conv_2", "logits")}
_NO_DENSE_HEAD = {"vgg16", "vgg19"}


def _cached_top_file(model_id: Any, card: Any, app: str, weights: Any) -> Path | None:
    if weights is None or weights not in ("imagenet", "default"):
        return None
    candidates = []
    resolved = zoo.resolve_weights(model_id, card)
    if resolved is not None and Path(resolved).is_dir():
        candidates.append(Path(resolved) / weights_filenames(app)[1])
    candidates.append(keras_cache_dir() / weights_filenames(app)[1])
    found = next((p for p in candidates if p.is_file()), None)
    if found is not None:
        require_unchanged(found, model_id)
    return found


def imagenet_labels() -> list[str] | None:
    """ImageNet class names from Keras' ``imagenet_class_index.json`` when it is in the cache (never downloaded)."""
    import json

    path = keras_cache_dir() / "imagenet_class_index.json"
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
        return [index[str(i)][1] for i in range(len(index))]
    except (OSError, ValueError, KeyError, IndexError):
        return None


def _read_layers(top_file: Path, names: tuple[str, ...]) -> list[tuple[Any, Any]] | None:
    """``(kernel, bias)`` of each layer ``names`` names in a Keras with-top weights file (names matched
    case-insensitively: Keras 2 wrote ``Conv_2`` where Keras 3 builds ``conv_2``); ``None`` if one is missing."""
    import h5py

    out = []
    try:
        with h5py.File(top_file, "r") as f:
            group = f["model_weights"] if "layer_names" not in f.attrs and "model_weights" in f else f
            by_lower = {k.lower(): k for k in group.keys()}
            for name in names:
                key = name if name in group else by_lower.get(name.lower())
                if key is None:
                    return None
                g = group[key]
                weight_names = [n.decode("utf8") if isinstance(n, bytes) else n for n in g.attrs["weight_names"]]
                kernel, bias = (g[n][()] for n in weight_names)
                out.append((kernel.reshape(-1, kernel.shape[-1]), bias))
    except (OSError, KeyError, ValueError):
        return None
    return out


def source_head(app: str, module: str, model: Any, top_file: Path) -> Any | None:
    """The ImageNet classifier (dense layers + softmax, on the pooled features) read from the with-top
    weights file, if the family's top can be applied to the pooled features."""
    if module in _NO_DENSE_HEAD:
        return None
    names = _CONV_HEAD.get(module) or (_HEAD_LAYER.get(module, "predictions").format(model=model.name),)
    found = _read_layers(top_file, names)
    if found is None or found[0][0].shape[0] != int(model.output_shape[-1]):
        return None
    layers = []
    for i, (kernel, bias) in enumerate(found):
        last = i == len(found) - 1
        layer = keras.layers.Dense(kernel.shape[1], activation="softmax" if last else "hard_swish", name="imagenet_head" if last else f"imagenet_head_{i}")
        layer.build((None, kernel.shape[0]))
        layer.set_weights([kernel, bias])
        layers.append(layer)
    if len(layers) == 1:
        return layers[0]
    return keras.Sequential(layers, name="imagenet_head")


def flatten_classifier(model: Any, top_file: Path, size: int) -> Any | None:
    """VGG's ImageNet classifier as Keras' with-top model runs it: the body's ``block5_pool`` map (at ``size`` px)
    -> Flatten -> fc1, fc2 (ReLU) -> predictions (softmax), its weights read from the with-top file; ``None``
    when the file lacks them or they do not fit the map (another input size)."""
    found = _read_layers(top_file, ("fc1", "fc2", "predictions"))
    try:
        body = keras.Model(model.inputs, model.get_layer("block5_pool").output, name="imagenet_body")
    except ValueError:
        return None
    inputs = keras.Input(shape=(size, size, 3))
    x = keras.layers.Flatten(name="flatten")(body(inputs))
    if found is None or found[0][0].shape[0] != int(x.shape[-1]):
        return None
    for i, (kernel, bias) in enumerate(found):
        last = i == len(found) - 1
        layer = keras.layers.Dense(kernel.shape[1], activation="softmax" if last else "relu", name="predictions" if last else f"fc{i + 1}")
        x = layer(x)
        layer.set_weights([kernel, bias])
    return keras.Model(inputs, x, name="imagenet_classifier")


def build_groups(model: Any, family: str) -> list[LayerGroup]:
    """Layer groups (stem, blocks/stages, top) of an application model."""
    return [LayerGroup(name, layers) for name, layers in group_layers(family, model.layers)]


def load(model_id: Any, card: Any = None, **options: Any) -> KerasBackbone:
    """Load ``keras:<Application>[.imagenet]`` as a :class:`~zoo.frameworks.keras.KerasBackbone`.

    Args:
        model_id: the parsed id; the tag must be ``imagenet`` or absent.
        card: its catalog card, if any (input size and figures).
        **options: ``weights`` (a local ``.h5`` file, ``"imagenet"`` (default) or ``None`` for
            random initialisation), ``interpolation`` (resize filter, default ``"bilinear"``; ``"nearest"`` is
            ``keras.utils.load_img``'s default),
            ``seed`` (training augmentation).

    Raises:
        UnknownModelError: not a Keras application or an unknown tag.
        NotCachedError: offline and the weights are not in ``$KERAS_HOME/models``.
    """
    apps = applications()
    app = model_id.name
    if app not in apps or (model_id.tag not in (None, TAG)):
        raise _unknown(model_id)
    unknown = set(options) - {"weights", "interpolation", "seed"}
    if unknown:
        raise InvalidInputError(f"unknown option(s) {', '.join(sorted(unknown))} for keras; use weights, interpolation, seed.")
    fn = apps[app]
    module = family_module(fn)
    weights = _weights_for(model_id, card, app, options.get("weights", "imagenet"))
    from zoo_keras._download import zoo_downloads

    with zoo_downloads(str(model_id)), warnings.catch_warnings():  # a download goes through zoo's downloader (temp, Keras' hash, rename)
        # MobileNet (V1-V3) built without an input shape warns that it loads the 224 px weights: the ones zoo
        # serves (their default size, which the transform below resizes to), so the warning says nothing to act on
        warnings.filterwarnings("ignore", message=r"`input_shape` is undefined or non-square", category=UserWarning)
        model = fn(include_top=False, pooling="avg", weights=weights)
    top_file = _cached_top_file(model_id, card, app, options.get("weights", "imagenet"))
    head = source_head(app, module, model, top_file) if top_file is not None else None
    size = (card.input_size if card is not None and card.input_size else None) or default_size(app)
    classifier = flatten_classifier(model, top_file, size) if top_file is not None and module in _NO_DENSE_HEAD else None
    preprocess_input = getattr(getattr(keras.applications, module), "preprocess_input")
    return KerasBackbone(
        model_id,
        card,
        model,
        keras_module=keras,
        groups=build_groups(model, module),
        input_spec=InputSpec(modality="image", size=size, channels_last=True, input_range=(0.0, 255.0)),
        transform=resize_image(size, interpolation=options.get("interpolation", "bilinear")),
        preprocess_input=preprocess_input,
        seed=options.get("seed"),
        head=head,
        classifier=classifier,
        labels=imagenet_labels() if head is not None or classifier is not None else None,
    )
