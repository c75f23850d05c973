"""zoo plugin for torchvision.models classification weights: ``torchvision:<model>.<WEIGHTS>``.

Importing this module loads no framework: the catalog comes from ``listing.json`` (rebuilt in a
subprocess when the installed torchvision has another version) and the loader is imported by
name when a model is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo import Source, hookimpl

LISTING = Path(__file__).with_name("listing.json")


@hookimpl
def zoo_register_sources(register: Any) -> None:
    """Declare the ``torchvision`` source."""
    register(
        Source(
            name="torchvision",
            framework="torch",
            loader="zoo_torchvision._backbone:load",
            requires=("torch", "torchvision"),
            install="pip install 'zoo-hub[torch]'",
            description="torchvision.models classification weights (ids: torchvision:<model>.<WEIGHTS>)",
        )
    )


@hookimpl
def zoo_register_models(register: Any) -> None:
    """One catalog entry per weights enum member of every torchvision classification model."""
    from zoo.listing import cached_listing

    register.many(cached_listing("torchvision", "torchvision", LISTING, "zoo_torchvision._listing"))


@hookimpl
def zoo_model_files(model_id: Any, card: Any) -> Any:
    """The checkpoint file of a ``torchvision:`` id in ``$TORCH_HOME/hub/checkpoints`` (for ``zoo lock``)."""
    if model_id.source != "torchvision":
        return None
    from zoo_torchvision._backbone import model_files

    return model_files(model_id)
