"""zoo plugin for PyTorch Image Models (timm): the ``timm`` source and its pretrained-tag catalog.

Hook implementations only; timm and torch are imported by :mod:`zoo_timm._backbone` when a model
is loaded, and by :mod:`zoo_timm._listing` when the catalog snapshot is rebuilt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo import Source, hookimpl

LISTING = Path(__file__).with_name("listing.json")


@hookimpl
def zoo_register_sources(register: Any) -> None:
    """Register the ``timm`` source."""
    register(
        Source(
            name="timm",
            framework="torch",
            loader="zoo_timm._backbone:load",
            requires=("torch", "timm"),
            install="pip install 'zoo-hub[torch]'",
            description="PyTorch Image Models (timm) pretrained tags",
        )
    )


@hookimpl
def zoo_register_models(register: Any) -> None:
    """Register one card per timm pretrained tag, from the shipped (or rebuilt) listing."""
    from zoo.catalog import ModelCard
    from zoo.listing import cached_listing

    models = cached_listing("timm", "timm", LISTING, "zoo_timm._listing")
    if "default" not in ModelCard.model_fields:  # a zoo without default-weights marks
        models = [{k: v for k, v in m.items() if k != "default"} for m in models]
    register.many(models)


@hookimpl
def zoo_model_files(model_id: Any, card: Any) -> Any:
    """The cached weights file of a ``timm:`` id (HF cache or torch.hub checkpoints), for ``zoo lock``."""
    if model_id.source != "timm":
        return None
    from zoo_timm._weights import model_files

    return model_files(model_id)
