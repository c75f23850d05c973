"""Atomic file writes: nothing half-written is ever visible under the final name."""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | Path, write: Callable[[Path], object], *, mode: int = 0o644) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, fsync it, then rename it into place.

    The temporary file (``.<name>.<host>-<pid>.<random>.tmp``, see :func:`owned_temp`) is removed if
    anything fails (or, if the process is killed, by the next write of ``path``), so ``path`` holds
    either its previous content or the whole new one. The rename is made durable with an fsync of
    the folder where the platform allows it.
    """
    path = Path(path)
    if path.is_dir():
        from zoo.errors import InvalidInputError

        raise InvalidInputError(f"{path} is a folder; give a file name (e.g. {path / ('file' + (path.suffix or ''))}).")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = owned_temp(path.parent, path.name, ".tmp")
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
    pattern = re.compile(re.escape(prefix) + r"(?:[A-Za-z0-9-]+-\d+\.)?[a-z0-9_]{8}" + re.escape(suffix))
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


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # gone; a number no process can have
        return False
    except PermissionError:  # another user's process
        return True
    return True


def owned_temp(folder: str | Path, name: str, suffix: str, *, directory: bool = False) -> Path:
    """A new temporary file (or folder) in ``folder`` for writing ``name``, named
    ``.<name>.<host>-<pid>.<random><suffix>`` so that a later writer can tell it from a live one's.

    The temporaries for ``name`` that writers on this host left when they were killed (their process
    is gone) are removed first: they would otherwise pile up, one per kill, in folders zoo does not
    own (``zoo bundle -o``, ``zoo export -o``). A live writer's, or another host's, are left alone.
    """
    remove_dead_temps(folder, name, suffix)
    prefix = f".{name}.{_host()}-{os.getpid()}."
    try:
        if directory:
            return Path(tempfile.mkdtemp(dir=folder, prefix=prefix, suffix=suffix))
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=suffix)
    except OSError as exc:  # a folder that cannot be written: name what was being written, not a temporary name that never existed
        raise OSError(exc.errno, exc.strerror, os.path.join(folder, name)) from None
    os.close(fd)
    return Path(tmp)


def remove_dead_temps(folder: str | Path, name: str, suffix: str) -> None:
    """Remove what :func:`owned_temp` made for ``name`` in ``folder`` by processes of this host that no longer run."""
    pattern = re.compile(re.escape(f".{name}.") + r"(?P<host>[A-Za-z0-9-]+)-(?P<pid>\d+)\.[a-z0-9_]{8}" + re.escape(suffix))
    try:
        names = os.listdir(folder)
    except OSError:
        return
    host = _host()
    for entry in names:
        m = pattern.fullmatch(entry)
        if not m or m["host"] != host or _alive(int(m["pid"])):
            continue
        p = os.path.join(folder, entry)
        try:
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p, ignore_errors=True)
            else:
                os.unlink(p)
        except OSError:
            pass
