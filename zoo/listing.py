"""Dynamic model listings for plugins, without importing a framework in the lookup path.

A plugin ships a snapshot ``listing.json`` built from the framework version it was tested with.
When the installed framework has another version, the listing is rebuilt once in a subprocess
(so the calling process still loads no framework) and cached under ``ZOO_HOME/listings``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from zoo import constants
from zoo._io import atomic_write_text


def installed_version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON atomically (temporary file, fsync, rename)."""
    atomic_write_text(path, json.dumps(data, separators=(",", ":")))


def _rebuild(name: str, builder: str, cache: Path, timeout: float) -> list[dict[str, Any]] | None:
    """Build the listing in a subprocess under a file lock; None when it fails or another build runs."""
    from filelock import FileLock, Timeout

    cache.parent.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(str(cache) + ".lock", timeout=timeout):
            try:  # another process may have finished it while we waited
                return json.loads(cache.read_text(encoding="utf-8"))["models"]
            except (OSError, ValueError, KeyError):
                pass
            tmp = cache.with_suffix(f".{os.getpid()}.build")
            try:
                subprocess.run([sys.executable, "-m", builder, str(tmp)], check=True, capture_output=True, timeout=600)
                data = json.loads(tmp.read_text(encoding="utf-8"))
                write_json_atomic(cache, data)
                return data["models"]
            except (OSError, ValueError, KeyError, subprocess.SubprocessError):
                return None
            finally:
                tmp.unlink(missing_ok=True)
    except Timeout:
        return None


def cached_listing(name: str, dist: str, snapshot: Path, builder: str) -> list[dict[str, Any]]:
    """Return the model dicts for ``name``.

    Args:
        name: listing name (usually the source).
        dist: distribution whose version keys the listing (``timm``).
        snapshot: JSON file shipped with the plugin: ``{"version": ..., "models": [...]}``.
        builder: module run as ``python -m builder OUT.json`` to rebuild the listing.

    The shipped snapshot is used when its version matches the installed framework; otherwise a
    listing cached under ``ZOO_HOME/listings`` for that version; otherwise the stale snapshot is
    returned at once and a rebuild starts in a detached background process, so a lookup never
    waits for a framework import. With no snapshot at all the listing is built once, under a file
    lock so concurrent commands build it only once. Returns ``[]`` when the framework is not
    installed or the build fails.
    """
    version = installed_version(dist)
    if version is None:
        return []
    stale = None
    try:
        data = json.loads(snapshot.read_text(encoding="utf-8"))
        if data.get("version") == version:
            return data["models"]
        stale = data["models"]
    except (OSError, ValueError, KeyError):
        pass
    cache = constants.zoo_home() / "listings" / f"{name}-{version}.json"
    try:
        return json.loads(cache.read_text(encoding="utf-8"))["models"]
    except (OSError, ValueError, KeyError):
        pass
    if stale is not None:
        code = f"from zoo.listing import _rebuild; from pathlib import Path; _rebuild({name!r}, {builder!r}, Path({str(cache)!r}), 0)"
        try:
            subprocess.Popen(
                [sys.executable, "-c", code],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError:
            pass
        return stale
    return _rebuild(name, builder, cache, timeout=600) or []
