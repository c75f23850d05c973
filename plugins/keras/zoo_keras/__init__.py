"""zoo plugin: Keras applications (``keras:<Application>.imagenet``).

Hook implementations only; Keras is imported by the loader (:mod:`zoo_keras._backbone`), never here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo import Source, hookimpl

LISTING = Path(__file__).with_name("listing.json")


@hookimpl
def zoo_register_sources(register: Any) -> None:
    """Declare the ``keras`` source."""
    register(
        Source(
            name="keras",
            framework="tensorflow",
            loader="zoo_keras._backbone:load",
            requires=("keras", "tensorflow"),
            install="pip install 'zoo-hub[tf]'",
            description="Keras applications (keras.applications) with ImageNet weights",
        )
    )


@hookimpl
def zoo_register_models(register: Any) -> None:
    """Every Keras application, from the shipped listing (rebuilt once for another Keras version)."""
    from zoo.listing import cached_listing

    register.many(cached_listing("keras", "keras", LISTING, "zoo_keras._listing"))


@hookimpl
def zoo_model_files(model_id: Any, card: Any) -> Any:
    """The files of a ``keras:`` id in ``$KERAS_HOME/models``: its no-top weights, and (optional: what
    ``predict`` needs) its with-top weights and Keras' ImageNet class index, each with Keras' URL and hash."""
    if model_id.source != "keras":
        return None
    from zoo_keras._files import model_files

    return model_files(model_id)
