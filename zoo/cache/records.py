"""Cache roots and the record of verified files (``$ZOO_HOME/manifest.json``).

A file is named by a *key*, ``ROOT/relative/path``, where ``ROOT`` is the environment variable of
the cache that holds it (``TORCH_HOME``, ``HF_HOME``, ``KERAS_HOME``, ``TFHUB_CACHE_DIR`` or
``ZOO_HOME``). Keys survive moving a cache to another machine whose variables point elsewhere,
which is what lock files and bundles rely on.

Each record holds the file's sha256, size, ``st_mtime_ns`` (absent in older manifests), URL and
the models that use it. A loader holds a recorded file to it cheaply with :func:`changed` /
:func:`require_unchanged`: one ``stat`` while size and modification time are unchanged, a hash
when either moved. Entries of the wrong shape are skipped with a warning and kept in the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

from zoo import constants
from zoo._io import atomic_write_text, remove_stale_temps
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
    if not isinstance(data, dict) or not isinstance(data.setdefault("files", {}), dict):
        raise InvalidInputError(
            f"{path} is not a zoo manifest (expected an object with a \"files\" object); "
            "delete it and run `zoo lock` or `zoo cache import` again."
        )
    return data


def _bad_entry(key: str, entry: Any) -> str | None:
    """Why a manifest entry cannot be used (``None``: it can)."""
    try:
        check_key(key)
    except InvalidInputError:
        return "not a cache key"
    if not isinstance(entry, dict):
        return "not an object"
    sha, size = entry.get("sha256"), entry.get("size")
    if not isinstance(sha, str) or len(sha) != 64:
        return "no sha256"
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        return "no size"
    if not isinstance(entry.get("models", []), list) or ("mtime_ns" in entry and not isinstance(entry["mtime_ns"], int)):
        return "a field of the wrong type"
    return None


def _write(data: dict[str, Any]) -> None:
    path = manifest_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    # of writers killed midway (this runs under the manifest's lock): atomic_write's names, and the .part of older zoos
    remove_stale_temps(path.parent, f".{path.name}.", ".tmp")
    remove_stale_temps(path.parent, ".manifest.", ".part")
    atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True))  # 0644: every user of a shared cache reads it


@contextmanager
def _locked() -> Iterator[dict[str, Any]]:
    from filelock import FileLock

    with FileLock(str(lock_path(manifest_path()))):
        data = _read()
        yield data
        _write(data)


def record(key: str, sha256: str, size: int, *, url: str | None = None, model: str | None = None, mtime_ns: int | None = None) -> None:
    """Remember that ``key`` was verified with ``sha256`` and ``size`` (and which model uses it).

    The file's ``st_mtime_ns`` is recorded too (read now when not given, if the size still
    matches), so that loads can trust an unchanged file without hashing it (:func:`changed`).
    """
    check_key(key)
    if mtime_ns is None:
        try:
            st = path_of(key).stat()
        except OSError:
            st = None
        if st is not None and st.st_size == int(size):
            mtime_ns = st.st_mtime_ns
    with _locked() as data:
        entry = data["files"].get(key)
        entry = entry if isinstance(entry, dict) else {}
        models = {m for m in entry.get("models", []) if isinstance(m, str)} if isinstance(entry.get("models"), list) else set()
        if entry.get("sha256") not in (None, sha256):
            models = set()
        if model:
            models.add(model)
        new = {"sha256": sha256, "size": int(size), "url": url or entry.get("url"), "models": sorted(models)}
        if mtime_ns is not None:
            new["mtime_ns"] = int(mtime_ns)
        data["files"][key] = new


def prune_empty(removed: list[Path]) -> None:
    """Remove the folders that the ``removed`` files leave empty (empty folders inside them too, such as a SavedModel's
    ``assets/``), up to their cache root: a module folder left empty still looks cached to tensorflow_hub."""
    holders: set[Path] = set()
    above: set[Path] = set()
    for path in removed:
        try:
            top = root(key_of(path).partition("/")[0])
        except InvalidInputError:
            continue
        if top in Path(path).parent.parents:
            holders.add(Path(path).parent)
            above.update(p for p in Path(path).parent.parents if top in p.parents)
    for folder in sorted(holders | above, key=lambda p: len(p.parts), reverse=True):
        inside = os.walk(folder, topdown=False) if folder in holders else [(str(folder), [], [])]
        for sub, _, _ in inside:
            try:
                os.rmdir(sub)
            except OSError:
                pass


def drop_models(key: str, models: list[str]) -> None:
    """Take ``models`` off the record of ``key`` (a file that other models use too stays)."""
    with _locked() as data:
        entry = data["files"].get(key)
        if isinstance(entry, dict) and isinstance(entry.get("models"), list):
            entry["models"] = [m for m in entry["models"] if m not in models]


def forget(keys: list[str]) -> None:
    """Drop ``keys`` from the record."""
    with _locked() as data:
        for key in keys:
            data["files"].pop(key, None)


def files() -> dict[str, dict[str, Any]]:
    """Every usable recorded file: ``key -> {sha256, size, url, models[, mtime_ns]}``.

    An entry of the wrong shape (hand-edited, or written by another program) is left out with a
    warning on stderr; it stays in the manifest, so nothing is lost.
    """
    out = {}
    for key, entry in _read()["files"].items():
        why = _bad_entry(key, entry)
        if why is None:
            out[key] = entry
        elif (manifest_path(), key) not in _warned:
            _warned.add((manifest_path(), key))
            print(f"zoo: warning: {manifest_path()}: entry {key!r} is skipped ({why}); `zoo cache verify` does not check that file.", file=sys.stderr)
    return out


_warned: set[tuple[Path, str]] = set()


def lookup(path: str | Path) -> tuple[str, dict[str, Any]] | None:
    """``(key, record)`` of a file zoo recorded, or ``None`` (outside the roots, or not recorded)."""
    try:
        key = key_of(path)
    except InvalidInputError:
        return None
    rec = files().get(key)
    return (key, rec) if rec is not None else None


def compare(key: str, rec: dict[str, Any], *, cheap: bool = False) -> str | None:
    """Why the file of ``key`` does not match ``rec`` (missing, truncated, grown, altered), or ``None``.

    With ``cheap``, a file whose size and ``st_mtime_ns`` equal the record is taken as unchanged
    without reading it; otherwise it is hashed, and a match refreshes the recorded ``mtime_ns``
    (so the next cheap check is a ``stat`` again). Records without ``mtime_ns`` (older
    manifests) are hashed once.
    """
    path = path_of(key)
    try:
        st = path.stat()
    except OSError:
        return "missing"
    if not path.is_file():
        return "missing"
    if st.st_size != rec["size"]:
        kind = "truncated" if st.st_size < rec["size"] else "grown"
        return f"{kind}: {st.st_size} bytes, recorded {rec['size']}"
    if cheap and rec.get("mtime_ns") == st.st_mtime_ns:
        return None
    digest, _ = sha256_file(path)
    if digest != rec["sha256"]:
        return f"altered: sha256 {digest[:16]}..., recorded {rec['sha256'][:16]}..."
    if rec.get("mtime_ns") != st.st_mtime_ns:
        try:
            record(key, digest, st.st_size, url=rec.get("url"), mtime_ns=st.st_mtime_ns)
        except OSError:  # a read-only cache: the file is fine, only the shortcut is lost
            pass
    return None


def changed(path: str | Path) -> str | None:
    """Load-time check of a file zoo recorded: why it differs from its record, or ``None``.

    ``None`` also when zoo has no record of ``path``. Cheap for an unchanged file (one ``stat``,
    see :func:`compare`); a file whose size or modification time changed is hashed.
    """
    found = lookup(path)
    if found is None:
        return None
    return compare(found[0], found[1], cheap=True)


def require_unchanged(path: str | Path, model_id: object) -> None:
    """For a loader: refuse a file zoo recorded that no longer matches its record (see :func:`changed`).

    Cheap when the file is unchanged (one ``stat``); files zoo has no record of pass.

    Raises:
        IntegrityError: one line naming the file and the repair command.
    """
    from zoo.errors import IntegrityError

    found = lookup(path)
    if found is None:
        return
    key, rec = found
    why = compare(key, rec, cheap=True)
    if why is not None:
        raise IntegrityError(
            f"{path} (weights of {model_id})", f"sha256 {rec['sha256'][:12]}... ({rec['size']} bytes) as zoo recorded it", why,
            "run `zoo cache verify --repair` (it re-fetches the file, or removes it when offline), then load again",
        )
