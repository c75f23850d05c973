"""Build the timm catalog listing: one card per pretrained tag, from timm's own ``pretrained_cfg``.

Run as ``python -m zoo_timm._listing OUT.json``. It imports timm but builds no model,
so it is only run by the snapshot maintainer or, once per timm version, by
:func:`zoo.listing.cached_listing` in a subprocess.

Figures timm does not publish in the package (params, GFLOPs, top-1, feature size) stay unset:
the cards carry what ``pretrained_cfg`` says and nothing guessed.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

# tag tokens that literally name a data set -> the catalog's spelling
DATA_TOKENS = {
    "in1k": "imagenet-1k",
    "in12k": "imagenet-12k",
    "in21k": "imagenet-21k",
    "in22k": "imagenet-22k",
    "laion2b": "laion-2b",
    "laion400m": "laion-400m",
    "datacomp1b": "datacomp-1b",
    "webli": "webli",
    "yfcc15m": "yfcc-15m",
    "yfcc100m": "yfcc-100m",
    "ig1b": "instagram-1b",
    "lvd142m": "lvd-142m",
    "lvd1689m": "lvd-1689m",
    "jft300m": "jft-300m",
}

TASK_CLS = "image-classification"
TASK_FEAT = "image-feature-extraction"


def pretrain_data(tag: str) -> str | None:
    """The data set the tag names first (what the weights were pre-trained on), else ``None``.

    Example:
        >>> pretrain_data("fb_in22k_ft_in1k")
        'imagenet-22k'
    """
    for token in tag.split("_"):
        if token in DATA_TOKENS:
            return DATA_TOKENS[token]
    return None


def family(module: str) -> str:
    """Catalog family for a timm model module (``vision_transformer*`` -> ``vit``)."""
    if module.startswith("vision_transformer"):
        return "vit"
    return module.lower()


def _num(value: Any) -> list[float] | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        value = (value,) * 3
    return [round(float(v), 6) for v in value]


def card(name: str, cfg: Any, module: str, default: bool = False) -> dict[str, Any]:
    """The card dict (only known fields) for one pretrained ``arch.tag`` from its ``PretrainedCfg``.

    ``default`` marks timm's default tag of the architecture (what a bare ``timm:arch`` loads).
    """
    arch, _, tag = name.partition(".")
    num_classes = cfg.num_classes or 0
    out: dict[str, Any] = {
        "id": f"timm:{name}",
        "family": family(module),
        "modality": "image",
        "framework": "torch",
        "tasks": [TASK_CLS, TASK_FEAT] if num_classes > 0 else [TASK_FEAT],
    }
    if cfg.input_size:
        out["input_size"] = int(cfg.input_size[-1])
    data = pretrain_data(tag)
    if data:
        out["pretrain_data"] = data
    if cfg.license:
        out["license"] = str(cfg.license)
    out["input_range"] = [0.0, 1.0]  # timm transforms: ToTensor then Normalize(mean, std)
    mean, std = _num(cfg.mean), _num(cfg.std)
    if mean:
        out["mean"] = mean
    if std:
        out["std"] = std
    if cfg.hf_hub_id:
        out["url"] = f"https://huggingface.co/{cfg.hf_hub_id}"
    elif cfg.url:
        out["url"] = str(cfg.url)
    desc = cfg.description or cfg.paper_name
    extra = f"{num_classes} classes" if num_classes else "no classifier"
    out["description"] = f"timm {arch} weights '{tag}' ({extra})" + (f": {desc}" if desc else "")
    if default:
        out["default"] = True
    return out


def build() -> dict[str, Any]:
    """``{"version": timm.__version__, "models": [card, ...]}`` for every ``timm.list_pretrained()`` tag."""
    import timm
    from timm.models import _registry, get_pretrained_cfg

    models = []
    for name in timm.list_pretrained():
        cfg = get_pretrained_cfg(name)
        if cfg is None:
            continue
        arch = name.partition(".")[0]
        module = _registry._model_to_module.get(arch, arch)
        default_cfg = get_pretrained_cfg(arch)
        models.append(card(name, cfg, module, default=default_cfg is not None and default_cfg.tag == cfg.tag))
    return {"version": timm.__version__, "models": models}


def main(argv: list[str] | None = None) -> int:
    """Write the listing JSON to the path given as the only argument."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m zoo_timm._listing OUT.json", file=sys.stderr)
        return 2
    from zoo.listing import write_json_atomic

    out = Path(args[0])
    write_json_atomic(out, build())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
