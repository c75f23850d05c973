"""Keras base for Backbone handles: batching, freezing with BatchNorm policy, LR groups, heads.

Works with Keras 3 (``keras``) and with legacy Keras 2 (``tf_keras``, which TF Hub needs): the
source passes the keras module it built the model with. A source builds ``model`` so that it maps
the output of ``preprocess`` (a float32 NHWC numpy batch) to pooled ``(N, feature_dim)`` features,
and passes its layer groups, its image transform and the family's own ``preprocess_input``.

BatchNorm: Keras runs a ``BatchNormalization`` layer whose ``trainable`` is ``False`` in inference
mode even when the model is called with ``training=True`` (Keras 3 and tf.keras >= 2.0), so
freezing a group by ``layer.trainable = False`` keeps its BatchNorm statistics fixed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from zoo.backbone import Backbone, InputSpec, LayerGroup
from zoo.constants import offline
from zoo.errors import InvalidInputError
from zoo.inputs import load_images

ImageTransform = Callable[[Any], np.ndarray]


def resize_image(size: int, *, interpolation: str = "bilinear") -> ImageTransform:
    """PIL image -> ``(size, size, 3)`` float32 array in ``[0, 255]``, resized as ``keras.utils.load_img`` does.

    ``keras.utils.load_img(path, target_size=(size, size), interpolation=...)`` resizes the whole
    image with PIL; this transform gives the same pixels for an image already in memory and the
    same ``interpolation`` (load_img's default is ``"nearest"``, this one's ``"bilinear"``).
    """
    from PIL import Image

    methods = {
        "nearest": Image.NEAREST,
        "bilinear": Image.BILINEAR,
        "bicubic": Image.BICUBIC,
        "lanczos": Image.LANCZOS,
        "box": Image.BOX,
        "hamming": Image.HAMMING,
    }
    if interpolation not in methods:
        raise InvalidInputError(f"interpolation {interpolation!r} is unknown; use one of {', '.join(methods)}.")
    method = methods[interpolation]

    def transform(img: Any) -> np.ndarray:
        if img.size != (size, size):
            img = img.resize((size, size), method)
        return np.asarray(img, dtype=np.float32)

    return transform


def crop_box(w: int, h: int, rng: np.random.Generator, scale: tuple[float, float] = (0.35, 1.0)) -> tuple[int, int, int, int] | None:
    """torchvision ``RandomResizedCrop``'s box (area in ``scale``, aspect 3/4..4/3, 10 tries) drawn from ``rng``; ``None``: no fit."""
    area = w * h
    for _ in range(10):
        target = area * rng.uniform(*scale)
        ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        cw = int(round(math.sqrt(target * ratio)))
        ch = int(round(math.sqrt(target / ratio)))
        if 0 < cw <= w and 0 < ch <= h:
            left = int(rng.integers(0, w - cw + 1))
            top = int(rng.integers(0, h - ch + 1))
            return left, top, left + cw, top + ch
    return None


def random_resized_crop(img: Any, rng: np.random.Generator, scale: tuple[float, float] = (0.35, 1.0)) -> Any:
    """Random crop (:func:`crop_box`) and random horizontal flip of a PIL image."""
    from PIL import Image

    box = crop_box(*img.size, rng, scale)
    if box is not None:
        img = img.crop(box)
    if rng.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    return img


#: The ImageNet class index Keras' ``decode_predictions`` downloads to ``$KERAS_HOME/models``, and its published md5.
IMAGENET_CLASS_INDEX = ("https://storage.googleapis.com/download.tensorflow.org/data/imagenet_class_index.json", "c2c37ea517e94d9795004a39431a14cb")


def keras_home() -> Path:
    """``$KERAS_HOME`` (Keras' default ``~/.keras``)."""
    return Path(os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras"))


def imagenet_class_names() -> list[str] | None:
    """The 1000 ImageNet-1k class names in class-index order (the sorted WordNet ids), or ``None``.

    Read from ``$KERAS_HOME/models/imagenet_class_index.json`` (what Keras' ``decode_predictions`` downloads), else
    from ``$KERAS_HOME/datasets/ImageNetLabels.txt`` (what TF Hub's classification tutorials download: 1001 names,
    ``background`` first, which is dropped). Neither cached: Keras' file is downloaded as ``decode_predictions``
    does (its md5 checked), unless offline; ``None`` if that fails.
    """
    import json

    index_file = keras_home() / "models" / "imagenet_class_index.json"

    def from_index() -> list[str] | None:
        try:
            index = json.loads(index_file.read_text(encoding="utf-8"))
            return [str(index[str(i)][1]) for i in range(1000)]
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            return None

    names = from_index()
    if names is None:
        try:
            lines = (keras_home() / "datasets" / "ImageNetLabels.txt").read_text(encoding="utf-8").splitlines()
            lines = [ln.strip() for ln in lines if ln.strip()]
            names = lines[1:] if len(lines) == 1001 and lines[0] == "background" else (lines if len(lines) == 1000 else None)
        except OSError:
            names = None
    if names is None and not offline():
        from zoo.cache.download import fetch
        from zoo.errors import ZooError

        try:
            fetch(IMAGENET_CLASS_INDEX[0], index_file, md5=IMAGENET_CLASS_INDEX[1], retries=0, timeout=10.0, progress=False)
        except (ZooError, OSError):
            return None
        names = from_index()
    return names


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "numpy"):
        x = x.numpy()
    elif hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _numel(variable: Any) -> int:
    return int(np.prod([int(d) for d in variable.shape])) if len(variable.shape) else 1


class KerasBackbone(Backbone):
    """Backbone over a Keras model (Keras 3 or ``tf_keras``) that returns pooled features.

    Args:
        model_id, card: as :class:`zoo.Backbone`.
        model: Keras model mapping a preprocessed NHWC batch to ``(N, feature_dim)``.
        keras_module: the module the model was built with (``keras`` or ``tf_keras``);
            ``with_head`` builds the classifier with it.
        groups: layer groups from input to output; each a list of Keras layers, covering every
            weight of ``model``.
        input_spec: what ``preprocess`` produces (``channels_last=True``).
        transform: PIL RGB image -> HWC float32 array (resize / crop per the source).
        preprocess_input: the family's own batch preprocessing (e.g.
            ``keras.applications.resnet.preprocess_input``); identity if ``None``.
        feature_dim: pooled feature size; read from ``model.output_shape`` if omitted.
        head: the pre-training head mapping pooled features to class probabilities, if any.
        labels: class names for ``head``'s (or ``classifier``'s) outputs.
        seed: seed of the training augmentation.
        classifier: where the pre-training classifier does not read the pooled features (so there is no
            ``head``), a Keras model mapping a :meth:`preprocess` batch to its class probabilities; ``predict`` uses it.
    """

    framework = "tensorflow"

    def __init__(
        self,
        model_id: Any,
        card: Any,
        model: Any,
        *,
        keras_module: Any,
        groups: Sequence[LayerGroup],
        input_spec: InputSpec,
        transform: ImageTransform,
        preprocess_input: Callable[[np.ndarray], Any] | None = None,
        feature_dim: int | None = None,
        head: Any | None = None,
        labels: Sequence[str] | None = None,
        seed: int | None = None,
        classifier: Any | None = None,
    ) -> None:
        super().__init__(model_id, card, model)
        self.keras = keras_module
        self._groups = list(groups)
        self._input_spec = input_spec
        self.transform = transform
        self.preprocess_input = preprocess_input
        if feature_dim is None:
            feature_dim = int(model.output_shape[-1])
        self._feature_dim = int(feature_dim)
        self._head = head
        self._classifier = classifier if head is None else None
        self.labels = list(labels) if labels is not None else None
        self._rng = np.random.default_rng(seed)

    # ---- sizes ---------------------------------------------------------------------------------
    @property
    def feature_dim(self) -> int:
        return self._feature_dim

    @property
    def input_spec(self) -> InputSpec:
        return self._input_spec

    # ---- data ----------------------------------------------------------------------------------
    def preprocess(self, inputs: Any, train: bool = False) -> np.ndarray:
        """Images to a float32 NHWC numpy batch, exactly as the weights expect.

        ``train=True`` adds a random resized crop and a random horizontal flip before the resize.
        """
        images = load_images(inputs, exif=self.exif_orientation)
        arrays = []
        for img in images:
            if train:
                img = random_resized_crop(img, self._rng)
            arrays.append(np.asarray(self.transform(img), dtype=np.float32))
        batch = np.stack(arrays).astype(np.float32)
        if self.preprocess_input is not None:
            batch = _to_numpy(self.preprocess_input(batch)).astype(np.float32)
        return batch

    def features(self, batch: Any) -> Any:
        """Pooled features of a batch made by :meth:`preprocess` in inference mode (a framework tensor).

        Raises:
            InvalidInputError: ``batch`` is not a float NHWC batch (e.g. raw images, uint8 arrays or
                paths): use :meth:`embed`, or ``features(preprocess(inputs))``.
        """
        shape = getattr(batch, "shape", None)
        ok = shape is not None and len(shape) == 4 and (not isinstance(batch, np.ndarray) or batch.dtype.kind == "f")
        if not ok:
            got = f"a {type(batch).__name__}" + (f" of shape {tuple(shape)}" if shape is not None else "")
            if isinstance(batch, np.ndarray):
                got += f" ({batch.dtype})"
            raise InvalidInputError(
                f"{self.id}: features() takes a batch made by preprocess() (a float32 NxHxWxC array), got {got}; "
                "call embed(inputs) for raw images, arrays or paths, or features(preprocess(inputs))."
            )
        return self.model(batch, training=False)

    def embed(self, inputs: Any, batch_size: int = 32) -> np.ndarray:
        """Pooled features as float32 ``(n, feature_dim)``: inference mode, batched.

        Each batch's rows go into one array allocated at the first batch (the features exist once, not as
        per-batch pieces joined at the end).
        """
        chunks = self._chunks(inputs, batch_size)
        out: np.ndarray | None = None
        start = 0
        for chunk in chunks:
            batch = self.preprocess(chunk)
            feats = _to_numpy(self.features(batch)).reshape(len(batch), -1)
            if out is None:  # several chunks are slices of a list or a 4-D batch: one image per item
                out = np.empty((sum(len(c) for c in chunks) if len(chunks) > 1 else len(feats), feats.shape[1]), dtype=np.float32)
            out[start : start + len(feats)] = feats
            start += len(feats)
        assert out is not None and start == len(out)  # _chunks refuses empty inputs
        return out

    # ---- transfer ------------------------------------------------------------------------------
    @property
    def layer_groups(self) -> Sequence[LayerGroup]:
        return self._groups

    def _set_group_trainable(self, group: LayerGroup, trainable: bool) -> None:
        # BatchNormalization with trainable=False runs in inference mode whatever `training` says.
        if trainable and not self.model.trainable:
            # the Keras guide's first step, `base_model.trainable = False`, freezes the model as a whole: none of its
            # weights trains (nor counts) until the model itself is trainable again. Setting that flag reaches every
            # layer below it, so each layer's own flag is put back before the group's are set
            flags = [(layer, layer.trainable) for layer in _sublayers(self.model)]
            self.model.trainable = True
            for layer, flag in flags:
                layer.trainable = flag
        for layer in group.modules:
            layer.trainable = trainable

    def group_variables(self, group: LayerGroup, trainable_only: bool = True) -> list[Any]:
        """The variables of ``group`` (only the trainable ones by default)."""
        out = []
        for layer in group.modules:
            out.extend(layer.trainable_weights if trainable_only else layer.weights)
        return out

    def trainable_parameter_count(self) -> int:
        return sum(_numel(v) for v in self.model.trainable_weights)

    def param_groups(self, lr: float, decay: float = 1.0) -> list[dict[str, Any]]:
        """``[{"name", "lr", "variables"}]`` top group first; groups without trainable variables are left out.

        The top group holding trainable variables gets ``lr``, the next one down ``lr * decay``, ...
        """
        found = []
        seen: set[int] = set()
        for g in self._groups:
            variables = []
            for v in self.group_variables(g, trainable_only=True):
                if id(v) not in seen:
                    seen.add(id(v))
                    variables.append(v)
            if variables:
                found.append((g.name, variables))
        out = []
        for rank, (name, variables) in enumerate(reversed(found)):
            out.append({"name": name, "lr": lr * decay**rank, "variables": variables})
        return out

    def with_head(self, num_classes: int, dropout: float = 0.0, concat_group: str | None = None) -> Any:
        """``backbone -> Dropout -> Dense(num_classes)`` as a model of the same Keras flavour.

        The backbone is called without forcing ``training``, so ``fit`` trains the unfrozen groups
        (their BatchNorm in training mode) while frozen groups stay in inference mode.
        ``concat_group``: the head also reads that group's pooled output (:meth:`features_with`).
        """
        num_classes, dropout = int(num_classes), float(dropout)  # checked by Backbone (numpy scalars allowed)
        k = self.keras
        inputs = k.Input(shape=tuple(self.model.input_shape[1:]))
        x = self.features_with(concat_group)(inputs) if concat_group else self.model(inputs)
        x = k.layers.Dropout(dropout, name="head_dropout")(x)
        outputs = k.layers.Dense(num_classes, name="head")(x)
        return k.Model(inputs, outputs, name=f"{self.model.name}_classifier")

    def features_with(self, group: str) -> Any:
        """A Keras model: inputs -> ``[pooled output of layer group `group`, pooled features]`` concatenated
        (global average pooling over space, as the feature cache pools each group)."""
        k, base = self.keras, self.model
        found = self.layer_group(group)
        try:
            t = found.modules[-1].output
        except (AttributeError, IndexError, ValueError):
            t = None
        if t is None or len(t.shape) not in (2, 4):
            raise InvalidInputError(f"{self.id}: layer group {group!r} has no output that can be pooled; pick another group.")
        if len(t.shape) == 4:
            t = k.layers.GlobalAveragePooling2D(name="head_mid_pool")(t)
        return k.Model(base.inputs, k.layers.Concatenate(name="head_concat")([t, base.output]), name=f"{base.name}_concat")

    @property
    def source_head(self) -> Any | None:
        return self._head

    def predict(self, inputs: Any, top_k: int = 5) -> list[list[tuple[str, float]]]:
        if self._head is None and self._classifier is None:
            return super().predict(inputs, top_k)
        results = []
        for chunk in self._chunks(inputs, 32):
            batch = self.preprocess(chunk)
            out = self._head(self.features(batch), training=False) if self._head is not None else self._classifier(batch, training=False)
            probs = _to_numpy(out).astype(np.float64)
            probs = probs.reshape(len(probs), -1)
            if not np.allclose(probs.sum(-1), 1.0, atol=1e-3) or (probs < 0).any():
                e = np.exp(probs - probs.max(-1, keepdims=True))
                probs = e / e.sum(-1, keepdims=True)
            names = self.labels or [str(i) for i in range(probs.shape[-1])]
            for row in probs:
                idx = np.argsort(-row)[: min(int(top_k), len(row))]
                results.append([(names[i], float(row[i])) for i in idx])
        return results


def _sublayers(model: Any) -> list[Any]:
    """Every layer nested in ``model``, each before the layers inside it (so flags set in this order stick)."""
    out, stack = [], list(reversed(getattr(model, "layers", []) or []))
    while stack:
        layer = stack.pop()
        out.append(layer)
        stack.extend(reversed(getattr(layer, "layers", []) or []))
    return out
