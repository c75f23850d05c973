"""Build the Keras applications listing: ``python -m zoo_keras._listing OUT.json``.

Builds every application twice with random weights: with its ImageNet top (parameter count and
default input size, as Keras' applications table reports them) and as the pooled backbone zoo
loads (feature size and layer-group count). Slow (minutes); run once per Keras version.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

PRETRAIN = {
    # Keras' ConvNeXt docs: base, large and xlarge were pre-trained on ImageNet-21k, then fine-tuned on ImageNet-1k
    "ConvNeXtBase": "imagenet-21k, fine-tuned on imagenet-1k",
    "ConvNeXtLarge": "imagenet-21k, fine-tuned on imagenet-1k",
    "ConvNeXtXLarge": "imagenet-21k, fine-tuned on imagenet-1k",
}


def build_entry(name: str, fn: Any) -> dict[str, Any]:
    """One catalog entry for application ``name``, from the models Keras builds."""
    from zoo_keras._backbone import FAMILIES, TAG, build_groups, default_size, family_module  # imports TensorFlow first

    import keras

    module = family_module(fn)
    full = fn(include_top=True, weights=None)
    params = int(full.count_params())
    # applications that accept any size even with their top (MobileNetV3) report None: use default_size
    size = int(full.input_shape[1] or default_size(name))
    del full
    keras.backend.clear_session()
    pooled = fn(include_top=False, weights=None, pooling="avg")
    feature_dim = int(pooled.output_shape[-1])
    n_groups = len(build_groups(pooled, module))
    del pooled
    keras.backend.clear_session()
    return {
        "id": f"keras:{name}.{TAG}",
        "family": FAMILIES.get(module, module.split("_")[0]),
        "modality": "image",
        "framework": "tensorflow",
        "tasks": ["image-classification", "image-feature-extraction"],
        "params": params,
        "input_size": size,
        "feature_dim": feature_dim,
        "pretrain_data": PRETRAIN.get(name, "imagenet-1k"),
        "layer_groups": n_groups,
        "input_range": [0.0, 255.0],
        "description": f"Keras application {name} with ImageNet weights (keras.applications.{module})",
    }


def build() -> dict[str, Any]:
    """``{"version": keras version, "models": [entry, ...]}`` for every application."""
    from zoo_keras._backbone import applications  # imports TensorFlow first

    import keras

    models = []
    for name, fn in sorted(applications().items()):
        models.append(build_entry(name, fn))
        print(f"built {name}", file=sys.stderr, flush=True)
    return {"version": keras.__version__, "models": models}


def main(argv: list[str] | None = None) -> int:
    """Write the listing to the path given as the only argument."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m zoo_keras._listing OUT.json", file=sys.stderr)
        return 2
    from zoo.listing import write_json_atomic

    write_json_atomic(Path(argv[0]), build())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
