"""Build the torchvision listing: ``python -m zoo_torchvision._listing OUT.json``.

One catalog entry per weights member of every classification model in the installed torchvision.
Figures come from ``weights.meta`` and ``weights.transforms()``; the feature size and the number of
layer groups come from the feature model built on the ``meta`` device (no weights, no memory).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from zoo.listing import installed_version, write_json_atomic


def structure(name: str, member: Any) -> tuple[int, int]:
    """``(feature_dim, number of layer groups)`` of the handle ``zoo.load`` builds for ``member``."""
    import torchvision.models as tvm

    from zoo_torchvision import _arch, _backbone

    with _arch.empty_weights():
        model = tvm.get_model(name, weights=None, **_arch.arch_kwargs(name, member))
    surgery = _arch.to_feature_model(model, name, _backbone.num_classes(member))
    return surgery.feature_dim, len(_arch.layer_groups(model, _arch.family_of(name)))


def build() -> dict[str, Any]:
    """The listing: ``{"version": <torchvision version>, "models": [card dicts]}``."""
    import torchvision.models as tvm

    from zoo_torchvision import _backbone

    models = []
    for name in _backbone.classification_models():
        cache: dict[bool, tuple[int, int]] = {}
        for member in tvm.get_model_weights(name):
            key = _backbone.num_classes(member) is not None
            if key not in cache:
                cache[key] = structure(name, member)
            dim, n_groups = cache[key]
            models.append(_backbone.card_dict(name, member, feature_dim=dim, n_groups=n_groups))
    return {"version": installed_version("torchvision"), "models": models}


def main(argv: list[str] | None = None) -> int:
    """Write the listing to the path given as the only argument."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m zoo_torchvision._listing OUT.json", file=sys.stderr)
        return 2
    write_json_atomic(Path(args[0]), build())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
