"""zoo plugin for Hugging Face: any transformers vision model, the BERT family and the GPT family.

Ids are ``hf:<org>/<repo>`` or ``hf:<repo>``, optionally pinned with ``@<commit or branch>``.
Weights live in Hugging Face's own cache (``$HF_HOME/hub``). Importing this module loads no ML
framework; :mod:`zoo_hf._backbone` does, when a model is loaded.
"""

from __future__ import annotations

from typing import Any

from zoo import Source, hookimpl

from zoo_hf._catalog import CARDS

__all__ = ["zoo_register_sources", "zoo_register_models", "zoo_model_files"]


@hookimpl
def zoo_register_sources(register: Any) -> None:
    """Serve the ``hf`` source (transformers' PyTorch classes)."""
    register(
        Source(
            name="hf",
            framework="torch",
            loader="zoo_hf._backbone:load",
            requires=("torch", "transformers", "huggingface_hub", "safetensors"),
            install="pip install 'zoo-hub[hf]'",
            description="Hugging Face transformers (vision, BERT and GPT families)",
        )
    )


@hookimpl
def zoo_register_models(register: Any) -> None:
    """A small static set of well-known repos; any other repo id loads too."""
    register.many(CARDS)


@hookimpl
def zoo_model_files(model_id: Any, card: Any) -> Any:
    """The cached snapshot of an ``hf:`` id, pinned to its commit (for ``zoo lock`` and bundles)."""
    if model_id.source != "hf":
        return None
    from zoo_hf._hub import model_files

    return model_files(model_id)
