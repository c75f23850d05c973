"""Keras / TF Hub runs: the classifier, its preprocessing, and reloading a finished run (predict, SavedModel).

Shared by training (:mod:`zoo.runner.keras_run`) and by ``zoo predict`` / ``zoo export`` on a run
folder (:mod:`zoo.runner.predict`), so a run is always evaluated, reloaded and exported with the
same model and the same pixels.

Preprocessing: the image is resized (bicubic, shorter side to the run's resolution) and centre
cropped, exactly the geometry of the feature cache and of the torch path, giving a float32 HWC
array in ``[0, 255]``; then the backbone's own ``preprocess_input`` (the Keras family's, or the TF
Hub source's scaling) maps it to what the weights expect. Training adds the plan's augmentation
(random resized crop, horizontal flip only when ``augment.hflip``, TrivialAugment), drawn from a
generator seeded per batch, so a batch's pixels depend on ``(seed, epoch, batch)`` only.

The classifier is ``backbone -> Dropout -> Dense(num_classes)`` (layer names ``head_dropout`` and
``head``, like :meth:`KerasBackbone.with_head`). With ``inference_bn=True`` the backbone is called
with ``training=False``, as the Keras transfer-learning guide does. tf_keras honours that flag when
the classifier is trained; Keras 3 (3.15) replaces it by the outer call's ``training``
(keras-team/keras#20285), so the trainer also calls the classifier with ``training=False``.
"""

from __future__ import annotations

import errno
import json
import re
import shutil
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from zoo._io import atomic_write, owned_temp
from zoo.runner.predict import RunModelBase
from zoo.errors import InvalidInputError

WEIGHTS_NAME = "model.weights.h5"
EXPORT_TOLERANCE = 1e-5  # relative to the largest logit: float32 graph vs eager Keras, different kernels, same maths
_TORCH_RNG = threading.Lock()


# ---- pixels ---------------------------------------------------------------------------------------


#: what a Keras / TF Hub run uses beside TensorFlow: torchvision (the image geometry and TrivialAugment of the torch
#: path), torch (stage 1's probe, stage 2's schedule) and matplotlib (the curves); ``zoo-hub[tf]`` installs none of them
RUN_NEEDS = ("torch", "torchvision", "matplotlib")


def require(names: Sequence[str], who: str) -> None:
    """Raise :class:`zoo.errors.MissingFrameworkError` in one line when a package in ``names`` is not installed."""
    import importlib.util

    from zoo.errors import MissingFrameworkError

    missing = [n for n in names if importlib.util.find_spec(n) is None]
    if missing:
        raise MissingFrameworkError("tensorflow", ", ".join(missing), f"pip install {' '.join(missing)}", who=who)


def _transforms() -> Any:
    require(("torchvision",), "a Keras / TF Hub run (its image geometry is torchvision's, as on the torch path)")
    from torchvision import transforms as T

    return T


def eval_geometry(resolution: int) -> Callable[[Any], Any]:
    """PIL image -> PIL image: bicubic resize of the shorter side to ``resolution``, then centre crop."""
    T = _transforms()

    return T.Compose([T.Resize(resolution, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(resolution)])


def _random_resized_crop(img: Any, rng: np.random.Generator, resolution: int, scale: tuple[float, float]) -> Any:
    """torchvision's ``RandomResizedCrop`` (the box of :func:`zoo.frameworks.keras.crop_box`), drawn from ``rng``."""
    from PIL import Image

    from zoo.frameworks.keras import crop_box

    box = crop_box(*img.size, rng, scale)
    if box is None:
        return eval_geometry(resolution)(img)  # torchvision's fallback is a centre crop too
    return img.crop(box).resize((resolution, resolution), Image.BICUBIC)


def train_image(img: Any, resolution: int, augment: Any, rng: np.random.Generator) -> Any:
    """One training image per the plan's ``augment`` (PIL in, PIL out); no flip unless ``augment.hflip``."""
    from PIL import Image

    if augment.random_resized_crop:  # the plan's crop scale, as the torch path uses it
        img = _random_resized_crop(img, rng, resolution, tuple(augment.crop_scale))
    else:
        img = eval_geometry(resolution)(img)
    if augment.hflip and rng.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    if augment.trivial_augment:
        T = _transforms()
        import torch

        with _TORCH_RNG, torch.random.fork_rng(devices=[]):  # TrivialAugment draws from torch's global RNG
            torch.manual_seed(int(rng.integers(0, 2**62)))
            img = T.TrivialAugmentWide()(img)
    return img


def to_batch(images: Sequence[Any], backbone: Any) -> np.ndarray:
    """PIL images at the run's resolution -> the float32 NHWC batch the weights expect.

    The backbone's ``preprocess_input`` when it has one (Keras applications, on ``[0, 255]``), else
    a plain rescale to the ``input_range`` its ``input_spec`` states (TF Hub: ``[0, 1]``).
    """
    batch = np.stack([np.asarray(im.convert("RGB"), dtype=np.float32) for im in images])
    if backbone.preprocess_input is not None:
        out = backbone.preprocess_input(batch)
        return np.asarray(out.numpy() if hasattr(out, "numpy") else out, dtype=np.float32)
    lo, hi = backbone.input_spec.input_range or (0.0, 255.0)
    if (lo, hi) != (0.0, 255.0):
        batch = batch * np.float32((hi - lo) / 255.0) + np.float32(lo)
    return batch


def run_resolution(backbone: Any, planned: int | None) -> int:
    """The side the run feeds the backbone: fixed by a model built for one input size (TF Hub), else the plan's."""
    fixed = tuple(backbone.model.input_shape[1:3])
    if all(isinstance(d, int) for d in fixed) and fixed[0] == fixed[1]:
        return int(fixed[0])
    return int(planned or backbone.input_spec.size or 224)


def eval_batch(items: Sequence[Any], backbone: Any, resolution: int) -> np.ndarray:
    """Raw inputs (paths, PIL images, arrays) -> the eval batch (feature cache, validation, predict)."""
    from zoo.inputs import load_images_for

    geom = eval_geometry(resolution)
    return to_batch([geom(im.convert("RGB")) for im in load_images_for(backbone, list(items))], backbone)


# ---- the classifier -------------------------------------------------------------------------------


def build_classifier(backbone: Any, num_classes: int, *, inference_bn: bool, dropout: float = 0.0, concat_group: str | None = None) -> Any:
    """``backbone -> Dropout -> Dense(num_classes)`` in the backbone's Keras flavour (see the module docstring).

    ``concat_group`` (lp-concat): the head reads that group's pooled output and the pooled features,
    concatenated (:meth:`zoo.frameworks.keras.KerasBackbone.features_with`).
    """
    if num_classes < 1:
        raise InvalidInputError(f"num_classes must be at least 1, got {num_classes}.")
    k = backbone.keras
    base = backbone.model
    inputs = k.Input(shape=tuple(base.input_shape[1:]))
    body = backbone.features_with(concat_group) if concat_group else base
    x = body(inputs, training=False) if inference_bn else body(inputs)
    x = k.layers.Dropout(dropout, name="head_dropout")(x)
    outputs = k.layers.Dense(num_classes, name="head")(x)
    return k.Model(inputs, outputs, name=f"{base.name}_classifier")


def set_head(model: Any, weight: np.ndarray, bias: np.ndarray) -> None:
    """Load a ``(C, d)`` weight and ``(C,)`` bias (stage 1, torch layout) into the ``head`` Dense layer."""
    model.get_layer("head").set_weights([np.asarray(weight, dtype=np.float32).T, np.asarray(bias, dtype=np.float32)])


def _free_bytes(folder: Path) -> int:
    return shutil.disk_usage(folder).free


def write_weights_file(model: Any, path: Path) -> None:
    """``model.save_weights(path)``, refused with an ``OSError`` (ENOSPC) before HDF5 starts when ``path``'s folder
    has no room for the weights.

    HDF5 failing a write midway (a full disk) leaves its file open inside the library, since Keras closes its
    weights store only on success: the error comes back as several lines of h5py text and the interpreter then
    crashes at exit (SIGSEGV) while HDF5 flushes that file. A whole weights file is about the variables' bytes
    plus a few KiB of HDF5 metadata per variable, so that much free space is asked for first.
    """
    need = 2**18
    for v in model.weights:
        try:
            item = np.dtype(getattr(v.dtype, "name", v.dtype)).itemsize
        except TypeError:  # bfloat16 and other dtypes numpy does not name
            item = 4
        need += int(np.prod(v.shape)) * item + 4096
    free = _free_bytes(Path(path).parent)
    if free < need:
        raise OSError(errno.ENOSPC, f"No space left on device (the weights need about {need / 2**20:.1f} MiB, {free / 2**20:.1f} MiB free)", str(Path(path).parent))
    model.save_weights(str(path))


def save_weights(model: Any, path: Path) -> Path:
    """``model.save_weights`` to ``path`` (a ``.weights.h5`` file) atomically: never half-written under that name."""
    path = Path(path)

    def write(tmp: Path) -> None:
        scratch = owned_temp(tmp.parent, "keras-weights", "", directory=True)
        try:
            write_weights_file(model, scratch / WEIGHTS_NAME)  # Keras insists on the .weights.h5 suffix
            shutil.move(str(scratch / WEIGHTS_NAME), str(tmp))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    return atomic_write(path, write)


def logits_of(model: Any, batch: np.ndarray) -> np.ndarray:
    """Float32 logits of a preprocessed batch, inference mode."""
    out = model(batch, training=False)
    return np.asarray(out.numpy() if hasattr(out, "numpy") else out, dtype=np.float32)


# ---- a finished run -------------------------------------------------------------------------------


class KerasRunModel(RunModelBase):
    """A trained Keras / TF Hub run: ``model`` (the Keras classifier), its ``classes`` and preprocessing.

    Build it with :func:`zoo.runner.predict.load_run`; same interface as the torch ``RunModel``
    (``predict``, ``logits`` as numpy, ``export("savedmodel")``).
    """

    def __init__(self, run_dir: Path, config: dict[str, Any], backbone: Any, model: Any) -> None:
        super().__init__(run_dir, config, backbone, model)
        self.resolution = int(self.resolution or backbone.input_spec.size or 224)

    def preprocess(self, inputs: Any) -> np.ndarray:
        """The run's eval preprocessing: images (paths, PIL, arrays) -> float32 ``(N, R, R, 3)``."""
        return eval_batch(self._items(inputs), self.backbone, self.resolution)

    def logits(self, inputs: Any, batch_size: int = 32) -> np.ndarray:
        """Raw ``(N, num_classes)`` float32 logits of ``inputs``."""
        items = self._items(inputs, batch_size)
        return np.concatenate([logits_of(self.model, self.preprocess(items[i : i + batch_size])) for i in range(0, len(items), batch_size)])

    def export(self, fmt: str, out: str | Path | None = None) -> Path:
        """Write the classifier as a TensorFlow SavedModel folder (``fmt="savedmodel"``) and return its path.

        The SavedModel's ``serve`` signature takes the preprocessed ``(N, R, R, 3)`` float32 batch
        (see ``model/config.json``; ``assets/config.json`` holds a copy) and returns logits. It is
        reloaded with ``tf.saved_model.load`` and checked against the Keras model on two batch sizes
        (to 1e-5 of the largest logit) before it is renamed into place; a failed or mismatching export leaves nothing behind.

        Raises:
            InvalidInputError: a format other than ``savedmodel`` or an export that does not match.
        """
        import os

        import tensorflow as tf

        if fmt != "savedmodel":
            raise InvalidInputError(f"{self.run_dir}: a Keras run exports as --format savedmodel, not {fmt!r}.")
        path = Path(out) if out is not None else self.run_dir / "model" / "savedmodel"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = owned_temp(path.parent, path.name, "", directory=True)  # a killed export's is removed by the next one
        try:
            target = tmp / "savedmodel"
            try:
                if hasattr(self.model, "export"):  # Keras 3 and tf_keras >= 2.13: the documented SavedModel export
                    self.model.export(str(target), verbose=False) if _accepts_verbose(self.model.export) else self.model.export(str(target))
                else:  # pragma: no cover - old tf_keras
                    tf.saved_model.save(self.model, str(target))
            except tf.errors.OpError as exc:  # TensorFlow's own file writes (a full disk: ResourceExhaustedError): one line
                reason = re.sub(r"\s*\[Op:\w+\]$", "", (exc.message or type(exc).__name__).strip().splitlines()[-1].split("; ")[-1])
                raise InvalidInputError(f"{path}: cannot write the SavedModel ({reason}); nothing was written, free disk space or pass another -o.") from None
            (target / "assets").mkdir(exist_ok=True)
            (target / "assets" / "config.json").write_text(json.dumps(self.config, indent=2), encoding="utf-8")
            loaded = tf.saved_model.load(str(target))
            serve = loaded.signatures["serving_default"] if "serving_default" in loaded.signatures else loaded.serve
            for batch in (self.example_batch(2), self.example_batch(3, seed=1)):
                got = serve(tf.constant(batch))
                got = next(iter(got.values())) if isinstance(got, dict) else got
                want = logits_of(self.model, batch)
                diff = float(np.abs(np.asarray(got) - want).max()) / max(1.0, float(np.abs(want).max()))
                if not diff <= EXPORT_TOLERANCE:
                    raise InvalidInputError(f"{self.run_dir}: the SavedModel export differs from the model by {diff:.2e} of the largest logit (> {EXPORT_TOLERANCE:g}); not written.")
            if path.exists():
                shutil.rmtree(path)
            os.replace(target, path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return path


def _accepts_verbose(fn: Any) -> bool:
    import inspect

    try:
        return "verbose" in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # pragma: no cover
        return False


def load_keras_run(run_dir: Path, config: dict[str, Any], backbone: Any) -> KerasRunModel:
    """Rebuild the classifier of a Keras run folder from ``model/model.weights.h5`` (``backbone`` already loaded).

    Raises:
        InvalidInputError: the weights are missing or do not fit the classifier.
    """
    weights = run_dir / "model" / WEIGHTS_NAME
    if not weights.is_file():
        raise InvalidInputError(f"{weights}: missing; the run did not finish stage 1, rerun `zoo run` (or --resume).")
    model = build_classifier(backbone, int(config["num_classes"]), inference_bn=True, concat_group=config.get("concat_group"))
    try:
        model.load_weights(str(weights))
    except Exception as exc:  # noqa: BLE001 - h5py / Keras raise many kinds; one message for the user
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidInputError(f"{weights}: cannot load the trained model ({first}); rerun `zoo run`.") from None
    return KerasRunModel(run_dir, config, backbone, model)
