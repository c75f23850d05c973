"""Environment read in one place. Functions, not module constants, so tests can set variables."""

from __future__ import annotations

import os
from pathlib import Path

TRUTHY = {"1", "true", "yes", "on"}


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in TRUTHY


def zoo_home() -> Path:
    """Root of zoo's cache: ``$ZOO_HOME``, else ``$XDG_CACHE_HOME/zoo``, else ``~/.cache/zoo``."""
    if os.environ.get("ZOO_HOME"):
        return Path(os.environ["ZOO_HOME"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "zoo"


def offline() -> bool:
    """True when ``ZOO_OFFLINE`` or ``HF_HUB_OFFLINE`` is set: zoo opens no socket."""
    return _flag("ZOO_OFFLINE") or _flag("HF_HUB_OFFLINE")


def debug() -> bool:
    """True when ``ZOO_DEBUG`` is set: the CLI shows tracebacks."""
    return _flag("ZOO_DEBUG")


def _names(var: str) -> set[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return {p.strip() for p in raw.split(",") if p.strip()}


def allowed_plugins() -> set[str] | None:
    """``ZOO_PLUGINS``: comma-separated plugin names to load, or None for all. Empty loads none."""
    return _names("ZOO_PLUGINS")


def disabled_plugins() -> set[str]:
    """``ZOO_DISABLE_PLUGINS``: comma-separated plugin names never to load."""
    return _names("ZOO_DISABLE_PLUGINS") or set()


def plugin_import_timeout() -> float:
    """Seconds a plugin may take to import before it is marked failed (``ZOO_PLUGIN_TIMEOUT``)."""
    raw = os.environ.get("ZOO_PLUGIN_TIMEOUT", "5")
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0:
        from zoo.errors import InvalidInputError

        raise InvalidInputError(f"ZOO_PLUGIN_TIMEOUT={raw!r} is not a positive number of seconds; set it like ZOO_PLUGIN_TIMEOUT=10, or unset it (5).")
    return value


def hf_hub_cache() -> Path:
    """Hugging Face's hub cache as the environment says *now*.

    ``HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``$XDG_CACHE_HOME/huggingface/hub``.
    huggingface_hub reads these once, at import; zoo reads them at each call so that a process
    (or a test) that changes them later is honoured.
    """
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "huggingface" / "hub"


def hf_repo_dir(repo_id: str) -> Path:
    """``<hub cache>/models--org--name``: where the hub cache keeps ``repo_id``."""
    return hf_hub_cache() / ("models--" + repo_id.replace("/", "--"))
