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
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

from zoo import constants


def installed_version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temporary file beside ``path``, fsync, then rename into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, separators=(",", ":"))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cached_listing(name: str, dist: str, snapshot: Path, builder: str) -> list[dict[str, Any]]:
    """Return the model dicts for ``name``.

    Args:
        name: listing name (usually the source).
        dist: distribution whose version keys the listing (``timm``).
        snapshot: JSON file shipped with the plugin: ``{"version": ..., "models": [...]}``.
        builder: module run as ``python -m builder OUT.json`` to rebuild the listing.

    Returns an empty list when the framework is not installed or the rebuild fails.
    """
    version = installed_version(dist)
    if version is None:
        return []
    try:
        data = json.loads(snapshot.read_text(encoding="utf-8"))
        if data.get("version") == version:
            return data["models"]
    except (OSError, ValueError):
        pass
    cache = constants.zoo_home() / "listings" / f"{name}-{version}.json"
    try:
        return json.loads(cache.read_text(encoding="utf-8"))["models"]
    except (OSError, ValueError, KeyError):
        pass
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".{os.getpid()}.build")
    try:
        subprocess.run([sys.executable, "-m", builder, str(tmp)], check=True, capture_output=True, timeout=300)
        data = json.loads(tmp.read_text(encoding="utf-8"))
        write_json_atomic(cache, data)
        return data["models"]
    except (OSError, ValueError, KeyError, subprocess.SubprocessError):
        return []
    finally:
        tmp.unlink(missing_ok=True)
