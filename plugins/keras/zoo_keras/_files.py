"""The files of a Keras application, where Keras keeps them and where Keras downloads them from.

``$KERAS_HOME/models`` holds an application's no-top weights (what ``zoo.load`` builds the backbone
from), its with-top weights (the ImageNet classifier ``predict`` uses) and Keras' ImageNet class index
(the class names). Each file's URL and the hash Keras publishes for it are the ones the application's
own code passes to ``keras.utils.get_file``: recorded for the Keras version this plugin ships with in
``weights.json`` (rebuilt with ``python -m zoo_keras._files OUT.json``), and read from Keras itself, one
application at a time, under another version.

Importing this module loads no ML framework; :func:`published` loads Keras only under another version.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Any

#: the URL and hash of every application's weights files, for the Keras version named in it
TABLE = Path(__file__).with_name("weights.json")

#: Keras' ImageNet class index (``decode_predictions`` downloads it to ``$KERAS_HOME/models``) and its published md5
CLASS_INDEX = ("imagenet_class_index.json",
               "https://storage.googleapis.com/download.tensorflow.org/data/imagenet_class_index.json",
               "c2c37ea517e94d9795004a39431a14cb")


def keras_cache_dir() -> Path:
    """``$KERAS_HOME/models`` (Keras' default ``~/.keras/models``)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models"


def weights_filenames(app: str) -> tuple[str, str]:
    """``(no_top, with_top)`` file names that Keras' own download writes under ``$KERAS_HOME/models``.

    Read from the application sources of the installed Keras (default ``alpha`` and size).
    """
    low = app.lower()
    if app.startswith("ConvNeXt"):
        stem = "convnext_" + app[len("ConvNeXt"):].lower()
        return f"{stem}_notop.h5", f"{stem}.h5"
    if app.startswith("EfficientNetV2"):
        stem = "efficientnetv2-" + app[len("EfficientNetV2"):].lower()
        return f"{stem}_notop.h5", f"{stem}.h5"
    if app.startswith("EfficientNet"):
        return f"{low}_notop.h5", f"{low}.h5"
    if app == "MobileNet":
        return "mobilenet_1_0_224_tf_no_top.h5", "mobilenet_1_0_224_tf.h5"
    if app == "MobileNetV2":
        stem = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224"
        return f"{stem}_no_top.h5", f"{stem}.h5"
    if app.startswith("MobileNetV3"):
        stem = "weights_mobilenet_v3_" + app[len("MobileNetV3"):].lower() + "_224_1.0_float"
        return f"{stem}_no_top_v2.h5", f"{stem}.h5"
    if app.startswith("NASNet"):
        stem = "nasnet_" + app[len("NASNet"):].lower()
        return f"{stem}_no_top.h5", f"{stem}.h5"
    stems = {"InceptionV3": "inception_v3", "InceptionResNetV2": "inception_resnet_v2"}
    stem = stems.get(app, low) + "_weights_tf_dim_ordering_tf_kernels"
    return f"{stem}_notop.h5", f"{stem}.h5"


def _keras_version() -> str | None:
    from zoo.listing import installed_version

    return installed_version("keras")


def published(app: str) -> dict[str, dict[str, str] | None]:
    """``{"notop": {"file", "url", "hash"}, "top": {...}}`` of application ``app``: what its code passes to
    ``get_file`` (``None`` for a file it has no download for); ``{}`` when Keras has no application ``app``."""
    try:
        data = json.loads(TABLE.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    if data.get("version") == _keras_version() and isinstance(data.get("apps"), dict):
        return data["apps"].get(app) or {}
    return _read_from_keras(app)


@functools.lru_cache(maxsize=None)
def _read_from_keras(app: str) -> dict[str, dict[str, str] | None]:
    """What application ``app`` of the installed Keras passes to ``get_file``, with and without its top: the
    application is built and stopped at its download (seconds; once per application and process)."""
    from zoo_keras._backbone import applications  # imports TensorFlow first, then Keras

    import keras
    from keras.src.utils import file_utils

    fn = applications().get(app)
    if fn is None:
        return {}

    class _Seen(Exception):
        pass

    seen: list[dict[str, str]] = []

    def capture(fname: str | None = None, origin: str | None = None, *, file_hash: str | None = None,
                md5_hash: str | None = None, **_: Any) -> str:
        seen.append({"file": fname or os.path.basename(str(origin).split("?")[0]), "url": str(origin),
                     "hash": (file_hash or md5_hash or "").lower()})
        raise _Seen

    out: dict[str, dict[str, str] | None] = {}
    original = file_utils.get_file
    file_utils.get_file = capture
    try:
        import warnings

        for part, top in (("notop", False), ("top", True)):
            seen.clear()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    fn(include_top=top, weights="imagenet")
                except _Seen:
                    pass
            keras.backend.clear_session()
            out[part] = seen[0] if seen else None
    finally:
        file_utils.get_file = original
    return out


def _hash(entry: dict[str, str]) -> dict[str, str]:
    digest = entry.get("hash") or ""
    if len(digest) == 64:
        return {"sha256": digest}
    return {"md5": digest} if len(digest) == 32 else {}


def model_files(model_id: Any) -> dict[str, Any]:
    """The ``zoo_model_files`` answer for a ``keras:`` id: the no-top weights (what loading needs), and, optional
    (what ``predict`` needs), the with-top weights and the ImageNet class index; each with Keras' URL and hash."""
    app = model_id.name
    folder = keras_cache_dir()
    pub = published(app)
    notop_name, top_name = weights_filenames(app)
    files = []
    for part, name in (("notop", notop_name), ("top", top_name)):
        entry = pub.get(part)
        item: dict[str, Any] = {"path": str(folder / (entry["file"] if entry else name)), "url": entry["url"] if entry else None}
        if entry:
            item.update(_hash(entry))
        if part == "top":
            item["optional"] = True
        files.append(item)
    name, url, md5 = CLASS_INDEX
    files.append({"path": str(folder / name), "url": url, "md5": md5, "optional": True})
    return {"revision": None, "files": files}


def build() -> dict[str, Any]:
    """``{"version": keras version, "apps": {app: {"notop": ..., "top": ...}}}`` for every application (minutes)."""
    from zoo_keras._backbone import applications

    import keras

    return {"version": keras.__version__, "apps": {app: _read_from_keras(app) for app in sorted(applications())}}


if __name__ == "__main__":  # pragma: no cover - run by hand once per Keras version
    if len(sys.argv) != 2:
        sys.exit("usage: python -m zoo_keras._files OUT.json")
    Path(sys.argv[1]).write_text(json.dumps(build(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
