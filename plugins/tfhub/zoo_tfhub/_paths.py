"""Where tensorflow_hub keeps a module, computed without importing TensorFlow."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

TFHUB_URL = "https://tfhub.dev/"


def handle_url(model_id: Any, handle: str | None = None) -> str:
    """The handle URL for an id (``https://tfhub.dev/<name>``) or an explicit (Kaggle) handle."""
    if handle:
        return str(handle)
    return TFHUB_URL + model_id.name


def cache_root() -> Path:
    """``$TFHUB_CACHE_DIR``, else tensorflow_hub's default ``<tmp>/tfhub_modules``."""
    return Path(os.environ.get("TFHUB_CACHE_DIR") or os.path.join(tempfile.gettempdir(), "tfhub_modules"))


def module_dir(handle: str) -> Path:
    """Where tensorflow_hub's resolver keeps ``handle``: ``<cache>/<sha1(handle)>``."""
    return cache_root() / hashlib.sha1(handle.encode("utf8")).hexdigest()


def model_files(model_id: Any) -> dict[str, Any]:
    """The files of a cached module, for ``zoo_model_files`` (lock, bundle, import).

    tensorflow_hub downloads a module as one archive and unpacks it (its resolver does that
    atomically, under its own lock), so the files carry no URL of their own: ``zoo pull --lock``
    verifies them, and a bundle carries them. A module not yet cached is reported by its
    ``saved_model.pb`` path, which the lock then names as missing. A classification handle lists Keras'
    ImageNet class index too (optional: ``predict`` names the classes with it).
    """
    folder = module_dir(handle_url(model_id))
    files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
    if not files:
        files = [folder / "saved_model.pb"]
    # not `<folder>.descriptor.txt`: tensorflow_hub writes the download's time, host and process id in it, so it differs
    # on every download and a lock that pinned it refused every fresh `zoo pull --lock`; nothing reads it back
    out: list[dict[str, Any]] = [{"path": str(p), "url": None} for p in files]
    if is_classification(handle_url(model_id)):  # its class names, for `predict` (optional: the module loads without)
        from zoo.frameworks.keras import IMAGENET_CLASS_INDEX, keras_home

        url, md5 = IMAGENET_CLASS_INDEX
        out.append({"path": str(keras_home() / "models" / "imagenet_class_index.json"), "url": url, "md5": md5, "optional": True})
    return {"revision": None, "files": out}


def is_classification(url: str) -> bool:
    """Whether a handle is an ImageNet classifier (``.../classification/...``): ``predict`` names its classes."""
    return "/classification/" in url.split("://", 1)[-1] + "/"


def clear_dead_lock(folder: Path) -> bool:
    """Remove the download lock (``<folder>.lock``) and temporary folder of a tensorflow_hub download whose process,
    on this host, is gone (killed with SIGKILL, or by the OOM killer, its ``finally`` never ran); returns whether one
    was removed.

    tensorflow_hub otherwise waits on such a lock until its temporary folder has not grown for ten minutes, saying
    nothing at zoo's log level: a ``zoo pull`` after a killed one sat silent for over ten minutes. A lock of a live
    process, or of another host (a shared cache), is left to tensorflow_hub.
    """
    import shutil
    import socket

    lock = Path(f"{folder}.lock")
    try:
        host, pid, uid = lock.read_text(encoding="utf-8").strip().rsplit(".", 2)
        pid_n = int(pid)
    except (OSError, ValueError):
        return False
    if host != socket.gethostname() or pid_n <= 0 or not uid.isalnum():
        return False
    try:
        os.kill(pid_n, 0)
        return False  # alive (or another user's: PermissionError below)
    except ProcessLookupError:
        pass
    except OSError:
        return False
    shutil.rmtree(f"{folder}.{uid}.tmp", ignore_errors=True)
    lock.unlink(missing_ok=True)
    return True
