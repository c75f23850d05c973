"""zoo plugin: TensorFlow Hub / Kaggle Models SavedModels (``tfhub:<handle path>``).

Hook implementations only; tensorflow, tf_keras and tensorflow_hub are imported by the loader
(:mod:`zoo_tfhub._backbone`), never here.
"""

from __future__ import annotations

from typing import Any

from zoo import Source, hookimpl

_IMAGENET = "imagenet-1k"

# Well-known image handles. Input sizes come from the handle names; feature sizes where the
# handle's documentation states them, else None. Inputs are RGB in [0, 1].
HANDLES: list[dict[str, Any]] = [
    {"handle": "google/imagenet/mobilenet_v2_100_224/feature_vector/5", "family": "mobilenet", "size": 224, "dim": 1280, "kind": "feature_vector"},
    {"handle": "google/imagenet/mobilenet_v2_100_224/classification/5", "family": "mobilenet", "size": 224, "dim": None, "kind": "classification"},
    {"handle": "google/imagenet/mobilenet_v3_small_100_224/feature_vector/5", "family": "mobilenet", "size": 224, "dim": 1024, "kind": "feature_vector"},
    {"handle": "google/imagenet/mobilenet_v3_large_100_224/feature_vector/5", "family": "mobilenet", "size": 224, "dim": 1280, "kind": "feature_vector"},
    {"handle": "google/imagenet/mobilenet_v3_large_100_224/classification/5", "family": "mobilenet", "size": 224, "dim": None, "kind": "classification"},
    {"handle": "tensorflow/efficientnet/b0/feature-vector/1", "family": "efficientnet", "size": 224, "dim": 1280, "kind": "feature_vector"},
    {"handle": "tensorflow/efficientnet/b0/classification/1", "family": "efficientnet", "size": 224, "dim": None, "kind": "classification"},
    {"handle": "google/imagenet/resnet_v2_50/feature_vector/5", "family": "resnet", "size": 224, "dim": 2048, "kind": "feature_vector"},
    {"handle": "google/imagenet/resnet_v2_50/classification/5", "family": "resnet", "size": 224, "dim": None, "kind": "classification"},
    {"handle": "google/imagenet/inception_v3/feature_vector/5", "family": "inception", "size": 299, "dim": 2048, "kind": "feature_vector"},
    {"handle": "google/imagenet/inception_v3/classification/5", "family": "inception", "size": 299, "dim": None, "kind": "classification"},
    {"handle": "google/imagenet/inception_resnet_v2/feature_vector/5", "family": "inception_resnet", "size": 299, "dim": 1536, "kind": "feature_vector"},
    {"handle": "google/imagenet/resnet_v1_50/feature_vector/5", "family": "resnet", "size": 224, "dim": 2048, "kind": "feature_vector"},
    {"handle": "google/imagenet/resnet_v2_101/feature_vector/5", "family": "resnet", "size": 224, "dim": 2048, "kind": "feature_vector"},
    {"handle": "google/imagenet/resnet_v2_152/feature_vector/5", "family": "resnet", "size": 224, "dim": 2048, "kind": "feature_vector"},
    {"handle": "google/imagenet/efficientnet_v2_imagenet1k_b0/feature_vector/2", "family": "efficientnet", "size": 224, "dim": 1280, "kind": "feature_vector"},
]
# EfficientNet B1-B7: the resolutions they were trained at (the same as keras.applications' default sizes)
HANDLES += [
    {"handle": f"tensorflow/efficientnet/b{i}/feature-vector/1", "family": "efficientnet", "size": size, "dim": dim, "kind": "feature_vector"}
    for i, size, dim in ((1, 240, 1280), (2, 260, 1408), (3, 300, 1536), (4, 380, 1792), (5, 456, 2048), (6, 528, 2304), (7, 600, 2560))
]


def catalog_entries() -> list[dict[str, Any]]:
    """The dynamic catalog entries for :data:`HANDLES`."""
    out = []
    for h in HANDLES:
        features = h["kind"] == "feature_vector"
        out.append(
            {
                "id": f"tfhub:{h['handle']}",
                "family": h["family"],
                "modality": "image",
                "framework": "tensorflow",
                "tasks": ["image-feature-extraction"] if features else ["image-classification"],
                "input_size": h["size"],
                "feature_dim": h["dim"],
                "pretrain_data": _IMAGENET,
                "input_range": [0.0, 1.0],
                "url": f"https://tfhub.dev/{h['handle']}",
                "description": f"TF Hub {h['family']} {'feature vector' if features else 'ImageNet classifier'} ({h['handle']})",
            }
        )
    return out


@hookimpl
def zoo_register_sources(register: Any) -> None:
    """Declare the ``tfhub`` source."""
    register(
        Source(
            name="tfhub",
            framework="tensorflow",
            loader="zoo_tfhub._backbone:load",
            requires=("tensorflow", "tensorflow_hub", "tf_keras"),
            install="pip install 'zoo-hub[tf]'",
            description="TensorFlow Hub / Kaggle Models SavedModels through hub.KerasLayer (tf_keras)",
        )
    )


@hookimpl
def zoo_register_models(register: Any) -> None:
    """A handful of well-known image handles."""
    register.many(catalog_entries())


@hookimpl
def zoo_model_files(model_id: Any, card: Any) -> Any:
    """The files of a cached ``tfhub:`` module in ``TFHUB_CACHE_DIR`` (for ``zoo lock`` and bundles)."""
    if model_id.source != "tfhub":
        return None
    from zoo_tfhub._paths import model_files

    return model_files(model_id)
