"""Errors of the cache layer; they live in :mod:`zoo.errors` with every other error."""

from __future__ import annotations

from zoo.errors import DownloadError, IntegrityError, TrustError

__all__ = ["DownloadError", "IntegrityError", "TrustError"]
