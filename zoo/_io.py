"""Atomic file writes: nothing half-written is ever visible under the final name."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | Path, write: Callable[[Path], object], *, mode: int = 0o644) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, fsync it, then rename it into place.

    The temporary file (``.<name>.<random>.tmp``) is removed if anything fails, so ``path`` holds
    either its previous content or the whole new one. The rename is made durable with an fsync of
    the folder where the platform allows it.
    """
    path = Path(path)
    if path.is_dir():
        from zoo.errors import InvalidInputError

        raise InvalidInputError(f"{path} is a folder; give a file name (e.g. {path / ('file' + (path.suffix or ''))}).")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)  # mkstemp makes files private; caches and run folders are shared
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:
        dfd = os.open(path.parent, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory file descriptors
        return path
    try:
        os.fsync(dfd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(dfd)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) atomically; see :func:`atomic_write`."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def remove_stale_temps(folder: str | Path, prefix: str, suffix: str) -> None:
    """Remove the temporary files ``<prefix><random><suffix>`` (as :func:`tempfile.mkstemp` names them) that writers
    killed mid-write left in ``folder``: they are never renamed into place, and would pile up with each kill.

    Call it only holding the lock that every writer of those files holds, so that none of them is being written.
    """
    pattern = re.compile(re.escape(prefix) + r"[a-z0-9_]{8}" + re.escape(suffix))
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if pattern.fullmatch(name):
            try:
                os.unlink(os.path.join(folder, name))
            except OSError:
                pass
