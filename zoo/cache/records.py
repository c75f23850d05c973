"""Cache roots and the record of verified files (``$ZOO_HOME/manifest.json``).

A file is named by a *key*, ``ROOT/relative/path``, where ``ROOT`` is the environment variable of
the cache that holds it (``TORCH_HOME``, ``HF_HOME``, ``KERAS_HOME``, ``TFHUB_CACHE_DIR`` or
``ZOO_HOME``). Keys survive moving a cache to another machine whose variables point elsewhere,
which is what lock files and bundles rely on.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

from zoo import constants
from zoo.errors import InvalidInputError

ROOTS = ("ZOO_HOME", "TORCH_HOME", "HF_HOME", "KERAS_HOME", "TFHUB_CACHE_DIR")
CHUNK = 1 << 20


def _xdg() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"))


def root(name: str) -> Path:
    """The directory of cache root ``name`` as the environment says now (each tool's default otherwise)."""
    if name == "ZOO_HOME":
        return constants.zoo_home()
    value = os.environ.get(name)
    if value:
        return Path(value).expanduser()
    defaults = {
        "TORCH_HOME": _xdg() / "torch",
        "HF_HOME": _xdg() / "huggingface",
        "KERAS_HOME": Path(os.path.expanduser("~")) / ".keras",
        "TFHUB_CACHE_DIR": Path(tempfile.gettempdir()) / "tfhub_modules",
    }
    if name not in defaults:
        raise InvalidInputError(f"Unknown cache root {name!r}; use one of {', '.join(ROOTS)}.")
    return defaults[name]


def check_key(key: str) -> tuple[str, str]:
    """Split and validate ``ROOT/rel/path``; refuses absolute paths and ``..`` (bundles are untrusted)."""
    head, _, rel = str(key).partition("/")
    parts = PurePosixPath(rel).parts
    if head not in ROOTS or not rel or rel.startswith("/") or any(p in ("..", "", ".") for p in parts) or "\\" in rel:
        raise InvalidInputError(f"Bad cache key {key!r}: it must be ROOT/relative/path with ROOT one of {', '.join(ROOTS)}.")
    return head, rel


def path_of(key: str) -> Path:
    """The local path of a key."""
    head, rel = check_key(key)
    return root(head) / Path(*PurePosixPath(rel).parts)


def key_of(path: str | Path) -> str:
    """The key of a local path inside one of the cache roots (the most specific root wins).

    Raises:
        InvalidInputError: the path is under none of the roots.
    """
    p = Path(os.path.abspath(path))
    best: tuple[int, str] | None = None
    for name in ROOTS:
        r = Path(os.path.abspath(root(name)))
        try:
            rel = p.relative_to(r)
        except ValueError:
            continue
        if rel.parts and (best is None or len(r.parts) > best[0]):
            best = (len(r.parts), f"{name}/{rel.as_posix()}")
    if best is None:
        raise InvalidInputError(f"{path} is outside zoo's cache roots ({', '.join(ROOTS)}); move it there first.")
    return best[1]


def sha256_file(path: str | Path) -> tuple[str, int]:
    """``(sha256 hex digest, size)`` of a file, read in chunks."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def lock_path(target: str | Path) -> Path:
    """The lock file for one artifact: under ``$ZOO_HOME/locks`` so the native caches hold nothing extra."""
    digest = hashlib.sha1(os.path.abspath(target).encode("utf8")).hexdigest()[:24]
    folder = constants.zoo_home() / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{digest}.lock"


def manifest_path() -> Path:
    """``$ZOO_HOME/manifest.json``."""
    return constants.zoo_home() / "manifest.json"


def _read() -> dict[str, Any]:
    path = manifest_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"version": 1, "files": {}}
    except ValueError:
        raise InvalidInputError(f"{path} is not valid JSON; delete it and run `zoo lock` or `zoo cache import` again.") from None
    data.setdefault("files", {})
    return data


def _write(data: dict[str, Any]) -> None:
    path = manifest_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".manifest.", suffix=".part")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def _locked() -> Iterator[dict[str, Any]]:
    from filelock import FileLock

    with FileLock(str(lock_path(manifest_path()))):
        data = _read()
        yield data
        _write(data)


def record(key: str, sha256: str, size: int, *, url: str | None = None, model: str | None = None) -> None:
    """Remember that ``key`` was verified with ``sha256`` and ``size`` (and which model uses it)."""
    check_key(key)
    with _locked() as data:
        entry = data["files"].get(key) or {}
        models = set(entry.get("models", []))
        if entry.get("sha256") not in (None, sha256):
            models = set()
        if model:
            models.add(model)
        data["files"][key] = {"sha256": sha256, "size": int(size), "url": url or entry.get("url"), "models": sorted(models)}


def forget(keys: list[str]) -> None:
    """Drop ``keys`` from the record."""
    with _locked() as data:
        for key in keys:
            data["files"].pop(key, None)


def files() -> dict[str, dict[str, Any]]:
    """Every recorded file: ``key -> {sha256, size, url, models}``."""
    return dict(_read()["files"])
