"""The Python API: list, search, info, load. One lazily built state per process."""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass
from typing import Any

from zoo._ids import ModelId, parse_id
from zoo._plugins import PluginHost, PluginStatus
from zoo.catalog import REGISTRY_PATH, ModelCard, RegistryFile, filter_cards, merge, parse_count, read_registry, search_cards
from zoo.errors import (
    MalformedIdError,
    PluginUnavailableError,
    UnknownModelError,
    UnknownSourceError,
    ZooError,
    close_matches,
)


@dataclass
class _State:
    registry: RegistryFile
    host: PluginHost
    cards: dict[str, ModelCard] | None = None


_lock = threading.RLock()
_state: _State | None = None


def _get(with_models: bool = True) -> _State:
    global _state
    with _lock:
        if _state is None:
            reg = read_registry(os.environ.get("ZOO_REGISTRY") or REGISTRY_PATH)
            host = PluginHost()
            host.load(extra=_extra_plugins)
            _state = _State(reg, host)
        if with_models and _state.cards is None:
            _state.cards = merge(_state.registry.models, _state.host.load_models())
        return _state


_extra_plugins: dict[str, Any] = {}


def reset(extra_plugins: dict[str, Any] | None = None) -> None:
    """Forget the loaded catalog and plugins (after installing a plugin, or in tests).

    ``extra_plugins`` registers plugin objects by name in addition to the entry points.
    """
    global _state, _extra_plugins
    with _lock:
        _state = None
        _extra_plugins = dict(extra_plugins or {})


def sources() -> dict[str, dict[str, Any]]:
    """Every known source: from the catalog's ``sources:`` and from plugins, with its state."""
    st = _get(with_models=False)
    out: dict[str, dict[str, Any]] = {}
    for name, info in st.registry.sources.items():
        out[name] = {"framework": info.framework, "install": info.install, "plugin": None, "state": "not installed"}
    for name, src in st.host.sources.items():
        pst = st.host.statuses.get(src.plugin)
        out[name] = {
            "framework": src.framework,
            "install": src.install or out.get(name, {}).get("install", ""),
            "plugin": src.plugin,
            "state": pst.state if pst else "ok",
        }
    return out


def plugins() -> list[PluginStatus]:
    """Status of every discovered plugin: ``ok``, ``unavailable``, ``failed`` or ``disabled``."""
    st = _get(with_models=True)
    return list(st.host.statuses.values())


def _cards() -> dict[str, ModelCard]:
    st = _get()
    assert st.cards is not None
    return st.cards


def list_models(
    pattern: str | None = None,
    *,
    source: str | None = None,
    modality: str | None = None,
    task: str | None = None,
    family: str | None = None,
    max_params: float | str | None = None,
    max_gflops: float | None = None,
    min_top1: float | None = None,
    curated_only: bool = False,
) -> list[ModelCard]:
    """Catalog entries matching every filter, sorted by id.

    Args:
        pattern: glob on the id (``timm:resnet*``); a plain word matches anywhere in the id.
        source, modality, task, family: exact values (errors list the valid ones).
        max_params: a number or ``"25M"``-style text.
        max_gflops, min_top1: numeric bounds; entries with unknown figures are left out.
        curated_only: only the entries of ``registry.yaml``.

    Raises:
        UnknownFilterValueError: a filter value no entry has.

    Example:
        >>> [c.id for c in zoo.list_models(modality="text", family="bert")][:1]
        ['hf:bert-base-cased']
    """
    cards = list(_cards().values())
    if source is not None and source not in sources():
        reason = _plugin_down(_get(), source)
        if reason:  # as zoo.info and zoo.load say it: the plugin is disabled or failed, not "unknown source"
            raise PluginUnavailableError(source, reason, None)
    if curated_only:
        cards = [c for c in cards if c.origin == "registry"]
    out = filter_cards(
        cards,
        source=source,
        modality=modality,
        task=task,
        family=family,
        max_params=parse_count(max_params),
        max_gflops=max_gflops,
        min_top1=min_top1,
        pattern=pattern,
        valid_sources=set(sources()) | {c.source for c in cards},
    )
    return sorted(out, key=lambda c: c.id)


def search(text: str, limit: int | None = 20) -> list[ModelCard]:
    """Entries whose id, family, description, tasks or data mention every word of ``text``, best first."""
    return search_cards(list(_cards().values()), text, limit)


def _resolve(model_id: str | ModelId) -> tuple[ModelId, ModelCard | None]:
    cards = _cards()
    if isinstance(model_id, ModelId):
        mid = model_id
    else:
        mid = parse_id(model_id)
        if mid.base not in cards and mid.source == "hf":
            untagged = parse_id(model_id, tagged=False)
            if untagged.base in cards or mid.arch not in cards:
                mid = untagged
    known = set(sources())
    if mid.source not in known:
        reason = _plugin_down(_get(), mid.source)
        if reason:  # its plugin (named like the source) is installed but failed or disabled: say so, not "unknown"
            raise PluginUnavailableError(mid.source, reason, None)
        raise UnknownSourceError(mid.source, sorted(known))
    card = cards.get(mid.base)
    if card is None and mid.tag is None:
        # a bare architecture: the source's default weights, i.e. the first tagged entry
        prefix = mid.base + "."
        tagged = sorted((k for k in cards if k.startswith(prefix)), key=lambda k: (not cards[k].default, k))
        if tagged:
            card = cards[tagged[0]]
    return mid, card


def _plugin_down(st: _State, source: str) -> str | None:
    """Why the plugin named like ``source`` serves nothing (failed or disabled), or ``None``."""
    for pst in st.host.statuses.values():
        if pst.name == source and pst.state in ("failed", "disabled"):
            return f"its plugin is {pst.state} ({pst.reason})"
    return None


def catalog_modality(model_id: str | ModelId) -> str | None:
    """The modality (``image``, ``text``) the catalog gives ``model_id``, no framework loaded; ``None`` for an id it does
    not list (its source may still know it: the loaded backbone says then).

    Raises:
        MalformedIdError, UnknownSourceError, PluginUnavailableError (as :func:`load` would, before it loads anything).
    """
    card = _resolve(model_id)[1]
    return card.modality if card is not None else None


def info(model_id: str | ModelId) -> ModelCard:
    """The catalog card for ``model_id`` (a bare architecture gives its default weights' card).

    Raises:
        MalformedIdError, UnknownSourceError, UnknownModelError (with close matches).
    """
    mid, card = _resolve(model_id)
    if card is None:
        src = _get().host.sources.get(mid.source)
        if src is not None and src.missing():  # an unavailable plugin lists nothing: say why, not "unknown model"
            src.load_function()  # raises MissingFrameworkError with the plugin's pip install line
        raise UnknownModelError(str(model_id), close_matches(mid.base, _cards()))
    return card


def load(model_id: str | ModelId, **options: Any) -> Any:
    """Load a pretrained backbone as a :class:`zoo.Backbone`.

    Args:
        model_id: ``source:name[.tag][@revision]``. Ids the catalog does not list are passed to
            the source, which may know them (a new timm tag, any Hugging Face repo).
        **options: source-specific (e.g. ``pooling="mean"`` for text models).

    Raises:
        UnknownSourceError, PluginUnavailableError, MissingFrameworkError, UnknownModelError,
        NotCachedError.
    """
    mid, card = _resolve(model_id)
    st = _get()
    src = st.host.sources.get(mid.source)
    if src is None:
        info_ = st.registry.sources.get(mid.source)
        reason = _plugin_down(st, mid.source) or "no installed plugin provides it"
        raise PluginUnavailableError(mid.source, reason, info_.install if info_ else None)
    loader = src.load_function()
    try:
        return loader(mid, card, **options)
    except ZooError:
        raise
    except Exception as exc:  # its own type for callers; the `zoo` command names the model and plugin in one line
        with contextlib.suppress(AttributeError, TypeError):
            exc.zoo_loader = (str(mid), src.plugin)  # type: ignore[attr-defined]
        raise


def resolve_weights(model_id: ModelId, card: ModelCard | None) -> Any:
    """Ask the plugins for a local weights location (``zoo_resolve_weights``)."""
    return _get(with_models=False).host.resolve_weights(model_id, card)


def weights_resolve(model_id: str) -> bool:
    """Ask the plugins for ``model_id``'s weights (a plugin that makes them locally, such as the packaged-weights
    one, writes them now); False when the id or a plugin refuses in one line (a :class:`zoo.errors.ZooError`:
    its package is not installed, ...), True otherwise, whether or not a plugin answered."""
    from zoo.errors import ZooError

    try:
        mid, card = _resolve(model_id)
        resolve_weights(mid, card)
    except ZooError:
        return False
    return True


__all__ = ["list_models", "search", "info", "load", "plugins", "sources", "reset", "MalformedIdError"]
