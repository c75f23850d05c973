"""Keras' weight downloads routed through zoo's downloader (temp file, published hash, lock, rename).

Keras applications call ``keras.src.utils.file_utils.get_file(fname, origin, cache_subdir="models",
file_hash=...)``. While :func:`zoo_downloads` is active that function is replaced by
:func:`get_file`, which writes the same file (``$KERAS_HOME/models/<fname>``) with
:func:`zoo.cache.download.fetch`, checking the md5 or sha256 Keras publishes.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_LOCK = threading.Lock()


def keras_home() -> Path:
    """``$KERAS_HOME`` (Keras' default ``~/.keras``)."""
    return Path(os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras"))


def get_file(
    fname: str | None = None,
    origin: str | None = None,
    *,
    file_hash: str | None = None,
    md5_hash: str | None = None,
    cache_subdir: str = "datasets",
    hash_algorithm: str = "auto",
    cache_dir: str | None = None,
    model_id: str | None = None,
    **unsupported: Any,
) -> str:
    """Keras' ``get_file`` signature, downloading with zoo's downloader; returns the local path.

    Raises:
        NotImplementedError: archive extraction was asked for (applications never do).
    """
    from zoo.cache.download import fetch

    if any(unsupported.get(k) for k in ("untar", "extract", "force_download")):
        raise NotImplementedError("zoo's Keras download route does not extract archives")
    if origin is None:
        raise ValueError("get_file needs an origin URL")
    name = fname or os.path.basename(origin.split("?")[0])
    dest = Path(cache_dir or keras_home()) / cache_subdir / name
    digest = (file_hash or md5_hash or "").lower() or None
    algo = hash_algorithm if hash_algorithm != "auto" else ("sha256" if digest and len(digest) == 64 else "md5")
    if md5_hash and not file_hash:
        algo = "md5"
    fetch(origin, dest, sha256=digest if algo == "sha256" else None, md5=digest if algo == "md5" else None, model_id=model_id)
    return str(dest)


@contextmanager
def zoo_downloads(model_id: str | None = None) -> Iterator[None]:
    """Route ``keras.src.utils.file_utils.get_file`` through :func:`get_file` while building a model."""
    from keras.src.utils import file_utils

    with _LOCK:
        original = file_utils.get_file
        file_utils.get_file = lambda *a, **k: get_file(*a, model_id=model_id, **k)
        try:
            yield
        finally:
            file_utils.get_file = original
