"""zoo's cache: one downloader, a record of verified files, lock files, bundles and a trust policy.

* :mod:`zoo.cache.download`: every download goes to a temporary file beside its destination, is
  hashed while streaming, checked, fsynced and renamed into place under a per-file lock.
* :mod:`zoo.cache.records`: the cache roots (``ZOO_HOME`` and the native caches) and the record of
  every file zoo has verified (``$ZOO_HOME/manifest.json``), which ``zoo cache verify`` checks.
* :mod:`zoo.cache.lockfile`: ``zoo.lock`` pins ids to revisions and files to sha256 and size.
* :mod:`zoo.cache.bundle`: a locked set as one tar file, imported on an offline machine.
* :mod:`zoo.cache.verify`: ``zoo cache ls | verify | rm``.
* :mod:`zoo.cache.trust`: safe torch loading and the remote-code policy.

Importing this package loads no ML framework.
"""

from __future__ import annotations

from zoo.cache.errors import DownloadError, IntegrityError, TrustError

__all__ = ["DownloadError", "IntegrityError", "TrustError"]
