"""Import ``tensorflow_hub`` whatever setuptools is installed.

``tensorflow_hub`` 0.16 runs ``from pkg_resources import parse_version`` at import time;
setuptools >= 81 no longer ships ``pkg_resources``. When it cannot be imported, a minimal stand-in
providing ``parse_version`` (from ``packaging.version``, the implementation ``pkg_resources`` itself
used) is put in ``sys.modules`` before the import. Nothing is replaced when the real module exists.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import types
from typing import Any

SHIM_NAME = "pkg_resources"


def _pkg_resources_importable() -> bool:
    if SHIM_NAME in sys.modules:
        return sys.modules[SHIM_NAME] is not None
    try:
        return importlib.util.find_spec(SHIM_NAME) is not None
    except (ImportError, ValueError):
        return False


def make_shim() -> types.ModuleType:
    """A module named ``pkg_resources`` with ``parse_version`` from ``packaging.version``."""
    from packaging.version import InvalidVersion, Version

    def parse_version(v: str) -> Any:
        try:
            return Version(v)
        except InvalidVersion:
            # pkg_resources fell back to a legacy ordering; strip what packaging refuses
            head = "".join(ch if (ch.isdigit() or ch == ".") else " " for ch in str(v)).split()
            return Version(head[0].strip(".") if head and head[0].strip(".") else "0")

    shim = types.ModuleType(SHIM_NAME, "zoo stand-in for pkg_resources (parse_version only), for tensorflow_hub")
    shim.parse_version = parse_version  # type: ignore[attr-defined]
    shim.__zoo_shim__ = True  # type: ignore[attr-defined]
    shim.__spec__ = importlib.machinery.ModuleSpec(SHIM_NAME, None)  # find_spec() works on it
    return shim


def ensure_pkg_resources() -> bool:
    """Install the stand-in when ``pkg_resources`` is missing. Returns True if it was installed."""
    if _pkg_resources_importable():
        return False
    sys.modules[SHIM_NAME] = make_shim()
    return True


def import_hub() -> Any:
    """``import tensorflow_hub`` (after :func:`ensure_pkg_resources`), quietly about pkg_resources' deprecation."""
    import warnings

    from zoo._compat import import_tensorflow

    import_tensorflow()  # before tensorflow_hub imports it: Triton first, the native start-up log kept off stderr
    ensure_pkg_resources()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*pkg_resources.*", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*pkg_resources.*", category=DeprecationWarning)
        return importlib.import_module("tensorflow_hub")
