"""TF Hub SavedModels as zoo Backbones: ``tfhub:<handle path>`` (``https://tfhub.dev/<handle path>``).

The SavedModel is wrapped in ``hub.KerasLayer`` inside a **tf_keras** model (``hub.KerasLayer``
cannot sit in a Keras 3 model; the user never sees the difference). Inputs are RGB in ``[0, 1]``
resized to the model's input size with ``tf.image.resize`` as the TF Hub docs show.

Cache: tensorflow_hub's own layout, ``$TFHUB_CACHE_DIR/<sha1 of the handle URL>/`` with a
``<sha1>.descriptor.txt`` beside it. A cached module is loaded from its directory, so nothing is
resolved over the network; offline and missing raises :class:`zoo.errors.NotCachedError`.

Layer groups: a SavedModel is one opaque layer, but its variables carry the names of the blocks
that created them (``MobilenetV2/expanded_conv_3/...``, ``resnet_v2_50/block2/...``). The
variables are grouped by the first name component after their common prefix, in creation
order. Freezing a group leaves its variables out of the trainable set. A SavedModel takes a single
``training`` flag for all its BatchNorm layers, so while any group is frozen the whole module runs
in inference mode (BatchNorm of frozen groups never updates; the moving statistics of unfrozen
groups stay fixed too, as the Keras fine-tuning guide recommends); with every group unfrozen it
trains like ``hub.KerasLayer(trainable=True)``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

import zoo
from zoo.backbone import InputSpec, LayerGroup
from zoo.constants import offline
from zoo.errors import InvalidInputError, NotCachedError
from zoo.frameworks.keras import KerasBackbone, imagenet_class_names
from zoo_tfhub._compat import import_hub
from zoo_tfhub._paths import TFHUB_URL, clear_dead_lock, handle_url, is_classification, module_dir  # noqa: F401 (module_dir re-exported)

DEFAULT_SIZE = 224

hub = import_hub()

import tensorflow as tf  # noqa: E402  (imported by import_hub, through zoo._compat.import_tensorflow)
import tf_keras  # noqa: E402








def size_from_handle(handle: str) -> int | None:
    """The input side a handle names after a width multiplier (``mobilenet_v2_100_224`` -> 224), if any.

    A lone number is a depth, not a size (``resnet_v2_101``).
    """
    hits = re.findall(r"(?<![0-9])\d{2,3}[_\-](\d{3})(?=[/_\-]|$)", handle.split("://", 1)[-1])
    sizes = [int(h) for h in hits if 96 <= int(h) <= 600]
    return sizes[-1] if sizes else None


def _has_files(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


def locate(model_id: Any, card: Any, *, handle: str | None = None, path: str | None = None) -> tuple[str, str]:
    """``(what to give hub.KerasLayer, handle URL)``: a local directory when there is one.

    Raises:
        NotCachedError: offline and the module is not in the cache.
    """
    url = handle_url(model_id, handle)
    if path is not None:
        local = Path(path).expanduser()
        if not _has_files(local):
            raise InvalidInputError(f"path={str(path)!r}: not a SavedModel directory; pass the folder with saved_model.pb.")
        return str(local), url
    resolved = zoo.resolve_weights(model_id, card)
    if resolved is not None and _has_files(Path(resolved)):
        return str(resolved), url
    cached = module_dir(url)
    if _has_files(cached):
        return str(cached), url
    if offline():
        raise NotCachedError(str(model_id), str(cached))
    return url, url


class GroupedHubLayer(hub.KerasLayer):
    """``hub.KerasLayer`` whose variables can be frozen by group (a set of frozen variables)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._zoo_frozen: set[int] = set()

    @property
    def trainable_weights(self) -> list[Any]:
        return [w for w in super().trainable_weights if id(w) not in self._zoo_frozen]

    @property
    def non_trainable_weights(self) -> list[Any]:
        base = super().non_trainable_weights
        if not self.trainable:
            return base
        frozen = [w for w in super().trainable_weights if id(w) in self._zoo_frozen]
        return frozen + base

    def call(self, inputs: Any, training: Any = None) -> Any:
        # one `training` flag for the whole SavedModel: inference mode while any group is frozen
        if self._zoo_frozen:
            training = False
        return super().call(inputs, training=training)


class HubVariables:
    """One layer group of a hub module: a named subset of its variables."""

    def __init__(self, layer: GroupedHubLayer, trainable: list[Any], others: list[Any]) -> None:
        self.layer = layer
        self.trainable_variables = trainable
        self.other_variables = others

    @property
    def weights(self) -> list[Any]:
        return self.trainable_variables + self.other_variables


def _strip(name: str) -> list[str]:
    return re.sub(r":\d+$", "", name).split("/")


def variable_groups(variables: list[Any], trainable_ids: set[int], min_groups: int = 2) -> list[tuple[str, list[Any]]]:
    """Group variables by the first name component after their common prefix, in order of appearance.

    Falls back to ``min_groups`` consecutive slices of similar size when the names do not split.
    """
    parts = [_strip(v.name) for v in variables]
    common = 0
    if parts:
        shortest = min(len(p) for p in parts)
        while common < shortest - 1 and len({p[common] for p in parts}) == 1:
            common += 1
    order: list[str] = []
    members: dict[str, list[Any]] = {}
    for v, p in zip(variables, parts):
        key = p[common] if len(p) > common + 1 else "top"
        if key not in members:
            order.append(key)
            members[key] = []
        members[key].append(v)
    groups: list[tuple[str, list[Any]]] = []
    pending: list[Any] = []
    for k in order:
        if any(id(v) in trainable_ids for v in members[k]):
            groups.append((k, pending + members[k]))
            pending = []
        elif groups:
            # keys without trainable variables join the group before them
            groups[-1][1].extend(members[k])
        else:
            pending.extend(members[k])
    if pending and groups:
        groups[-1][1].extend(pending)
    if len(groups) >= min_groups:
        return groups
    trainable = [v for v in variables if id(v) in trainable_ids]
    if len(trainable) < min_groups:
        return [("body", list(variables))]
    out: list[tuple[str, list[Any]]] = []
    n = len(variables)
    for i in range(min_groups):
        out.append((f"part{i + 1}", variables[i * n // min_groups : (i + 1) * n // min_groups]))
    return [g for g in out if any(id(v) in trainable_ids for v in g[1])]


class HubBackbone(KerasBackbone):
    """A :class:`KerasBackbone` over a ``tf_keras`` model holding one :class:`GroupedHubLayer`."""

    def __init__(self, *args: Any, hub_layer: GroupedHubLayer, **kwargs: Any) -> None:
        self.hub_layer = hub_layer
        super().__init__(*args, **kwargs)

    def _set_group_trainable(self, group: LayerGroup, trainable: bool) -> None:
        layer = self.hub_layer
        for part in group.modules:
            ids = {id(v) for v in part.trainable_variables}
            layer._zoo_frozen = (layer._zoo_frozen - ids) if trainable else (layer._zoo_frozen | ids)
        every = {id(v) for g in self.layer_groups for p in g.modules for v in p.trainable_variables}
        layer.trainable = bool(every - layer._zoo_frozen)

    def group_variables(self, group: LayerGroup, trainable_only: bool = True) -> list[Any]:
        out = []
        for part in group.modules:
            if trainable_only:
                if self.hub_layer.trainable:
                    out.extend(v for v in part.trainable_variables if id(v) not in self.hub_layer._zoo_frozen)
            else:
                out.extend(part.weights)
        return out


def _classification_head(url: str) -> Any | None:
    """A classification handle's module returns ImageNet logits (1001 classes, background first):
    ``predict`` takes their softmax, as TF Hub's classification examples do."""
    if not is_classification(url):
        return None
    return tf_keras.layers.Softmax(name="imagenet_head")


def imagenet_labels(num_classes: int) -> list[str] | None:
    """Names for an ImageNet classifier's ``num_classes`` outputs, as TF Hub's tutorials name them with
    ``ImageNetLabels.txt``: 1001 (TF-slim's, ``background`` first, then the 1000 classes in index order) or 1000;
    ``None`` for another count or when the names are not available (:func:`zoo.frameworks.keras.imagenet_class_names`)."""
    if num_classes not in (1000, 1001):
        return None
    names = imagenet_class_names()
    if names is None:
        return None
    return (["background"] if num_classes == 1001 else []) + names


def _no_such_handle(model_id: Any, url: str, code: int, reason: str, dest: str) -> Exception:
    """The one-line error for a handle the server does not know (a typo): the well-known handles it is close to."""
    from zoo.errors import DownloadError, close_matches
    from zoo_tfhub import HANDLES

    near = close_matches(f"tfhub:{model_id.name}", [f"tfhub:{h['handle']}" for h in HANDLES])
    hint = f"did you mean {' or '.join(near)}? " if near else ""
    return DownloadError(url, f"HTTP {code} {reason}: the server has no module under this handle", dest,
                         f"Check the handle: {hint}`zoo list --source tfhub` lists well-known ones")


def load(model_id: Any, card: Any = None, **options: Any) -> HubBackbone:
    """Load ``tfhub:<handle path>`` as a :class:`HubBackbone` (initially frozen, as TF Hub recommends).

    Args:
        model_id: the parsed id; its name is the handle path under ``https://tfhub.dev/``.
        card: its catalog card, if any (input size).
        **options: ``handle`` (a full handle URL, e.g. a Kaggle Models one), ``path`` (a local
            SavedModel directory), ``size`` (input side; default: the card's, else the one the
            handle names, else 224), ``signature`` and ``output_key`` (for SavedModels called
            through a signature), ``seed`` (training augmentation).

    Raises:
        NotCachedError: offline and the module is not in ``$TFHUB_CACHE_DIR``.
    """
    unknown = set(options) - {"handle", "path", "size", "signature", "output_key", "seed"}
    if unknown:
        raise InvalidInputError(f"unknown option(s) {', '.join(sorted(unknown))} for tfhub; use handle, path, size, signature, output_key, seed.")
    target, url = locate(model_id, card, handle=options.get("handle"), path=options.get("path"))
    from zoo_tfhub import HANDLES

    known = {TFHUB_URL + h["handle"]: h["size"] for h in HANDLES}
    size = int(
        options.get("size")
        or (card.input_size if card is not None and card.input_size else 0)
        or known.get(url)
        or size_from_handle(url)
        or DEFAULT_SIZE
    )
    extra = {k: options[k] for k in ("signature", "output_key") if options.get(k)}
    if "signature" in extra and "output_key" not in extra:
        extra["signature_outputs_as_dict"] = True
    if target == url:  # not cached: tensorflow_hub downloads it now; a network failure is one line naming the remedy
        import urllib.error

        from zoo.errors import DownloadError

        clear_dead_lock(module_dir(url))  # a killed download's lock would hold this one for ten silent minutes

        try:
            layer = GroupedHubLayer(target, trainable=False, name="hub", **extra)
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            if isinstance(exc, urllib.error.HTTPError) and 400 <= exc.code < 500:  # the server answered: no such handle
                raise _no_such_handle(model_id, url, exc.code, str(exc.reason), str(module_dir(url))) from None
            reason = getattr(exc, "reason", exc)
            raise DownloadError(url, f"{reason} (offline? set ZOO_OFFLINE=1 and `zoo cache import` a bundle made with `zoo bundle`)",
                                str(module_dir(url))) from None
    else:
        layer = GroupedHubLayer(target, trainable=False, name="hub", **extra)
    inputs = tf_keras.Input(shape=(size, size, 3), name="image")
    features = layer(inputs)
    model = tf_keras.Model(inputs, features, name=re.sub(r"[^A-Za-z0-9_]", "_", model_id.name)[-60:] or "tfhub")
    shape = model.output_shape[1:]
    if any(d is None for d in shape):
        shape = model(np.zeros((1, size, size, 3), np.float32), training=False).shape[1:]
    feature_dim = int(np.prod(shape))

    trainable_ids = {id(v) for v in layer._func.trainable_variables} if hasattr(layer._func, "trainable_variables") else set()
    groups = [
        LayerGroup(name, [HubVariables(layer, [v for v in vs if id(v) in trainable_ids], [v for v in vs if id(v) not in trainable_ids])])
        for name, vs in variable_groups(list(layer.weights), trainable_ids)
    ]

    def transform(img: Any) -> np.ndarray:
        x = np.asarray(img, dtype=np.float32) / 255.0
        return tf.image.resize(x, (size, size)).numpy()

    head = _classification_head(url)
    bb = HubBackbone(
        model_id,
        card,
        model,
        keras_module=tf_keras,
        groups=groups,
        input_spec=InputSpec(modality="image", size=size, channels_last=True, input_range=(0.0, 1.0)),
        transform=transform,
        feature_dim=feature_dim,
        seed=options.get("seed"),
        hub_layer=layer,
        head=head,
        labels=imagenet_labels(feature_dim) if head is not None else None,
    )
    bb.freeze()
    return bb
