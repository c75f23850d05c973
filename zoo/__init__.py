"""zoo: one front door to every pretrained backbone.

Importing zoo loads no ML framework; sources import theirs when a model is loaded.

Example:
    >>> import zoo
    >>> zoo.info("torchvision:resnet50.IMAGENET1K_V2").params
    25557032
    >>> bb = zoo.load("timm:efficientnet_lite0.pypi_in1k")   # doctest: +SKIP
    >>> bb.embed(images).shape                                  # doctest: +SKIP
    (2, 1280)
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from zoo._compat import guard_triton  # noqa: E402

guard_triton()  # torch's Triton after TensorFlow would crash the process: refused instead (see there)
del guard_triton

_LAZY = {
    "ModelId": "zoo._ids",
    "parse_id": "zoo._ids",
    "ModelCard": "zoo.catalog",
    "read_registry": "zoo.catalog",
    "Backbone": "zoo.backbone",
    "InputSpec": "zoo.backbone",
    "LayerGroup": "zoo.backbone",
    "Source": "zoo.registrar",
    "Registrar": "zoo.registrar",
    "hookimpl": "zoo.hookspecs",
    "hookspec": "zoo.hookspecs",
    "PluginStatus": "zoo._plugins",
    "list_models": "zoo._api",
    "search": "zoo._api",
    "info": "zoo._api",
    "load": "zoo._api",
    "plugins": "zoo._api",
    "sources": "zoo._api",
    "reset": "zoo._api",
    "resolve_weights": "zoo._api",
    "recommend": "zoo.recommender",
    "run": "zoo.runner",
    "Plan": "zoo.recommender.plan",
    "errors": "zoo.errors",
}

__all__ = sorted([*_LAZY, "__version__"])

if TYPE_CHECKING:  # pragma: no cover
    from zoo import errors
    from zoo._api import info, list_models, load, plugins, reset, resolve_weights, search, sources
    from zoo._ids import ModelId, parse_id
    from zoo._plugins import PluginStatus
    from zoo.backbone import Backbone, InputSpec, LayerGroup
    from zoo.catalog import ModelCard, read_registry
    from zoo.hookspecs import hookimpl, hookspec
    from zoo.recommender import recommend
    from zoo.runner import run
    from zoo.recommender.plan import Plan
    from zoo.registrar import Registrar, Source


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'zoo' has no attribute {name!r}")
    mod = import_module(module)
    value = mod if name == "errors" else getattr(mod, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
