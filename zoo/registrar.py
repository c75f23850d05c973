"""What a plugin's registration hooks receive: a registrar that validates at once and refuses duplicates."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from zoo.catalog import ModelCard
from zoo.errors import DuplicateModelError, InvalidInputError, MissingFrameworkError, PluginUnavailableError, exc_line


@dataclass(frozen=True)
class Source:
    """A model source served by a plugin.

    Attributes:
        name: the id prefix, e.g. ``timm``.
        framework: ``torch`` or ``tensorflow``.
        loader: ``"module:function"`` (imported on first load) or a callable
            ``loader(model_id, card, **options) -> Backbone``.
        requires: top-level import names the loader needs, checked without importing them.
        install: the ``pip install`` line that provides them.
        description: one line for ``zoo plugins``.
    """

    name: str
    framework: str
    loader: str | Callable[..., Any]
    requires: tuple[str, ...] = ()
    install: str = ""
    description: str = ""
    plugin: str = field(default="", compare=False)

    def missing(self) -> list[str]:
        """Import names in ``requires`` that are not installed (no import happens)."""
        out = []
        for name in self.requires:
            try:
                if importlib.util.find_spec(name) is None:
                    out.append(name)
            except (ImportError, ValueError):
                out.append(name)
        return out

    def load_function(self) -> Callable[..., Any]:
        missing = self.missing()
        if missing:
            raise MissingFrameworkError(self.name, ", ".join(missing), self.install or f"pip install {' '.join(missing)}")
        if callable(self.loader):
            return self.loader
        module, _, attr = self.loader.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except Exception as exc:  # noqa: BLE001 - a plugin's packaging error: one line naming it, not a traceback
            raise PluginUnavailableError(
                self.name,
                f"the loader {self.loader!r} of plugin {self.plugin!r} cannot be imported ({exc_line(exc)}); "
                "reinstall the plugin or tell its author",
                self.install or None,
            ) from exc


def card_problems(exc: ValidationError) -> str:
    """A pydantic error on a model card as one line: ``field: message (got value)`` per problem."""
    out = []
    for e in exc.errors():
        field = ".".join(str(p) for p in e["loc"]) or "(card)"
        msg = "unknown field; remove it or fix its spelling" if e["type"] == "extra_forbidden" else e["msg"].removeprefix("Value error, ")
        got = f" (got {e['input']!r})" if e["type"] not in ("extra_forbidden", "missing") and not isinstance(e.get("input"), dict) else ""
        out.append(f"{field}: {msg}{got}")
    return "; ".join(out)


class Registrar:
    """Collects what one plugin registers and refuses what another plugin already owns.

    Plugins call it: ``register(Source(...))``, ``register(card_or_dict)``, ``register.many(cards)``.
    Registrations are staged; the host calls :meth:`commit` only when the plugin's hook returned
    without error, so a failing plugin leaves nothing half-registered.
    """

    def __init__(self, plugin: str, sources: dict[str, Source], models: dict[str, ModelCard]) -> None:
        self.plugin = plugin
        self._sources = sources
        self._models = models
        self.staged_sources: dict[str, Source] = {}
        self.staged_models: dict[str, ModelCard] = {}

    def __call__(self, item: Source | ModelCard | Mapping[str, Any]) -> None:
        if isinstance(item, Source):
            self._add_source(item)
        else:
            self._add_model(item)

    def many(self, items: Iterable[ModelCard | Mapping[str, Any]]) -> None:
        for item in items:
            self._add_model(item)

    def _add_source(self, src: Source) -> None:
        from zoo._ids import _SOURCE

        problem = None
        if not isinstance(src.name, str) or not _SOURCE.match(src.name):
            problem = f"name {src.name!r} is not an id prefix (lower-case letters, digits, '_' or '-', starting with a letter)"
        elif src.framework not in ("torch", "tensorflow"):
            problem = f"framework {src.framework!r} is not 'torch' or 'tensorflow'"
        elif not callable(src.loader) and not (isinstance(src.loader, str) and all(src.loader.partition(":")[::2])):
            problem = f"loader {src.loader!r} is not 'module:function' or a callable"
        elif isinstance(src.requires, str) or not all(isinstance(r, str) and r for r in src.requires):
            problem = f"requires {src.requires!r} is not a tuple of import names, e.g. ('torch',)"
        elif not isinstance(src.install, str) or not isinstance(src.description, str):
            problem = "install and description must be strings"
        if problem:
            raise InvalidInputError(f"Source {src.name!r}: {problem}.")
        prev = self._sources.get(src.name)
        if prev is not None and prev.plugin != self.plugin:
            raise DuplicateModelError(f"Source {src.name!r}", prev.plugin, self.plugin)
        self.staged_sources[src.name] = Source(**{**src.__dict__, "plugin": self.plugin})

    def _add_model(self, item: ModelCard | Mapping[str, Any]) -> None:
        if isinstance(item, ModelCard):
            card = item if item.origin == self.plugin else item.model_copy(update={"origin": self.plugin})
        elif not isinstance(item, Mapping):
            raise InvalidInputError(f"register() takes a zoo.Source, a zoo.ModelCard or a dict of its fields, got {type(item).__name__} {item!r:.60}.")
        else:
            try:
                card = ModelCard.model_validate({**item, "origin": self.plugin})
            except ValidationError as exc:  # pydantic's first line ("1 validation error for ModelCard") names nothing
                raise InvalidInputError(f"model card {item.get('id', '(no id)')!r}: {card_problems(exc)}") from None
        prev = self._models.get(card.id)
        if prev is not None and prev.origin != self.plugin:
            raise DuplicateModelError(f"Model {card.id!r}", prev.origin, self.plugin)
        self.staged_models[card.id] = card

    def commit(self) -> int:
        """Move the staged registrations into the shared tables; return how many models were added."""
        self._sources.update(self.staged_sources)
        self._models.update(self.staged_models)
        return len(self.staged_models)
