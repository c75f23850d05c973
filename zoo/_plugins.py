"""Plugin host: find entry points, load each in isolation, turn every failure into a status.

Discovery is not loading. Each entry point of group ``zoo`` is imported on a worker thread with a
time limit (``ZOO_PLUGIN_TIMEOUT``), inside its own try/except; a plugin that raises, hangs or
registers something another plugin owns is marked ``failed`` with the reason, and every other
plugin and command keeps working.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from zoo import constants, hookspecs
from zoo.catalog import ModelCard
from zoo.errors import DuplicateModelError
from zoo.registrar import Registrar, Source

ENTRY_POINT_GROUP = "zoo"


@dataclass
class PluginStatus:
    """What ``zoo plugins`` shows for one plugin.

    ``state`` is ``ok`` (loaded and registered), ``unavailable`` (its framework is not installed;
    ``install`` says how to get it), ``failed`` (raised, timed out or conflicted; ``reason`` says
    why) or ``disabled`` (by ``ZOO_PLUGINS`` / ``ZOO_DISABLE_PLUGINS``).
    """

    name: str
    dist: str | None
    version: str | None
    state: str
    reason: str = ""
    install: str = ""
    sources: list[str] = field(default_factory=list)
    models: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _TimedOut(Exception):
    """A plugin's code ran past ``ZOO_PLUGIN_TIMEOUT`` (it goes on in a daemon thread whose result is ignored)."""


def _run_with_timeout(fn: Any, timeout: float, name: str) -> Any:
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - any failure becomes a status
            box["error"] = exc

    worker = threading.Thread(target=target, name=name, daemon=True)
    with contextlib.redirect_stdout(sys.stderr):  # a plugin's print() must not corrupt `zoo list --json`
        worker.start()
        worker.join(timeout)
    if worker.is_alive():
        raise _TimedOut
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _import_with_timeout(ep: metadata.EntryPoint, timeout: float) -> Any:
    try:
        return _run_with_timeout(ep.load, timeout, f"zoo-plugin-{ep.name}")
    except _TimedOut:
        raise TimeoutError(f"importing took longer than {timeout:g}s (ZOO_PLUGIN_TIMEOUT)") from None


def _unknown_hooks(pm: pluggy.PluginManager, plugin: Any) -> str:
    """Why a plugin's ``@hookimpl`` functions that match no hook (a typo) never run, or ``""``."""
    import difflib

    names = sorted(hc.name for hc in pm.get_hookcallers(plugin) or [] if hc.spec is None)
    parts = []
    for name in names:
        close = difflib.get_close_matches(name, [n for n in dir(hookspecs) if n.startswith("zoo_")], n=1)
        parts.append(name + (f" (did you mean {close[0]}?)" if close else ""))
    return f"{', '.join(parts)}: not a zoo hook, never called (see docs/hooks.md)" if parts else ""


def _reason(exc: BaseException) -> str:
    # every line: pluggy's PluginValidationError says what is wrong on its third (a hook argument not in the spec)
    text = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    text = text if len(text) <= 300 else text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class PluginHost:
    """Owns the pluggy manager, the plugin statuses, the sources and the dynamic models."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("zoo")
        self.pm.add_hookspecs(hookspecs)
        self.statuses: dict[str, PluginStatus] = {}
        self.sources: dict[str, Source] = {}
        self.models: dict[str, ModelCard] = {}
        self._models_loaded = False
        self.timeout = 5.0

    # ---- discovery and loading ----------------------------------------------------------------
    def discover(self) -> list[metadata.EntryPoint]:
        return sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)

    def load(self, extra: dict[str, Any] | None = None) -> None:
        """Load every allowed entry-point plugin (and ``extra`` objects, for tests)."""
        allowed, disabled = constants.allowed_plugins(), constants.disabled_plugins()
        timeout = self.timeout = constants.plugin_import_timeout()
        for ep in self.discover():
            dist = getattr(ep, "dist", None)
            st = PluginStatus(ep.name, dist.name if dist else None, dist.version if dist else None, "ok")
            if ep.name in self.statuses:
                prev = self.statuses[ep.name]
                st.state, st.reason = "failed", f"entry point name also used by {prev.dist}; rename one"
                self.statuses[f"{ep.name} ({st.dist})"] = st
                continue
            self.statuses[ep.name] = st
            if ep.name in disabled or (allowed is not None and ep.name not in allowed):
                st.state, st.reason = "disabled", "ZOO_DISABLE_PLUGINS" if ep.name in disabled else "not in ZOO_PLUGINS"
                continue
            try:
                plugin = _import_with_timeout(ep, timeout)
                self.pm.register(plugin, name=ep.name)
            except BaseException as exc:  # noqa: BLE001
                if isinstance(exc, KeyboardInterrupt):
                    raise
                st.state, st.reason = "failed", _reason(exc)
                continue
            st.reason = _unknown_hooks(self.pm, plugin)
        found = {ep.name for ep in self.discover()}
        for var, names in (("ZOO_PLUGINS", allowed or set()), ("ZOO_DISABLE_PLUGINS", disabled)):
            unknown = sorted(names - found)
            if unknown:  # a typo would silently load (or keep) everything else
                print(f"zoo: warning: {var} names {', '.join(unknown)}, which no installed plugin is called "
                      f"(installed: {', '.join(sorted(found)) or 'none'})", file=sys.stderr)
        for name, plugin in (extra or {}).items():
            if self.pm.is_registered(plugin) or self.pm.get_plugin(name) is not None:
                continue
            self.statuses[name] = PluginStatus(name, None, None, "ok")
            self.pm.register(plugin, name=name)
        self._register_sources()

    def _call_each(self, hook_name: str) -> None:
        hook = getattr(self.pm.hook, hook_name)
        for impl in hook.get_hookimpls():  # registration order: entry-point name order
            st = self.statuses.get(impl.plugin_name)
            if st is None or st.state == "failed":
                continue
            reg = Registrar(impl.plugin_name, self.sources, self.models)
            try:  # a hook that hangs (a listing fetched from a dead server) must not hang every command
                returned = _run_with_timeout(lambda: impl.function(register=reg), self.timeout, f"zoo-plugin-{impl.plugin_name}")
            except _TimedOut:
                st.state, st.reason = "failed", f"{hook_name} took longer than {self.timeout:g}s (ZOO_PLUGIN_TIMEOUT)"
                print(f"zoo: warning: plugin {impl.plugin_name!r} was skipped: {st.reason}; fix it, raise ZOO_PLUGIN_TIMEOUT, "
                      f"or disable it with ZOO_DISABLE_PLUGINS={impl.plugin_name}", file=sys.stderr)
                self._drop(impl.plugin_name, st)
                continue
            except DuplicateModelError as exc:
                st.state, st.reason = "failed", str(exc)
                print(f"zoo: warning: {exc}", file=sys.stderr)
                self._drop(impl.plugin_name, st)
                continue
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - sys.exit() in a plugin must not end every command
                st.state, st.reason = "failed", f"{hook_name} raised {_reason(exc)}"
                self._drop(impl.plugin_name, st)
                continue
            if returned is not None:  # what it returned would be dropped without a word
                st.state, st.reason = "failed", (f"{hook_name} returned a {type(returned).__name__}; call register(item) "
                                                 "or register.many(items) instead of returning them")
                self._drop(impl.plugin_name, st)
                continue
            st.models += reg.commit()

    def _drop(self, name: str, st: PluginStatus) -> None:
        """A failed plugin keeps nothing: what an earlier hook of it committed (its sources) leaves the tables."""
        for key in [k for k, src in self.sources.items() if src.plugin == name]:
            del self.sources[key]
        for key in [k for k, card in self.models.items() if card.origin == name]:
            del self.models[key]
        st.sources, st.models = [], 0

    def _register_sources(self) -> None:
        self._call_each("zoo_register_sources")
        for src in self.sources.values():
            st = self.statuses.get(src.plugin)
            if st is None:
                continue
            st.sources.append(src.name)
            missing = src.missing()
            if missing and st.state == "ok":
                st.state = "unavailable"
                st.reason = f"{', '.join(missing)} not installed"
                st.install = src.install

    def load_models(self) -> dict[str, ModelCard]:
        """Dynamic catalog entries from every loaded plugin whose framework is installed."""
        if not self._models_loaded:
            self._models_loaded = True
            blocked = [n for n, st in self.statuses.items() if st.state == "unavailable" and self.pm.get_plugin(n)]
            # unavailable plugins contribute no dynamic entries (they depend on the framework)
            saved = {n: self.pm.unregister(name=n) for n in blocked}
            try:
                self._call_each("zoo_register_models")
            finally:
                for n, plugin in saved.items():
                    self.pm.register(plugin, name=n)
        return self.models

    def first_result(self, hook_name: str, check: Any = None, **kwargs: Any) -> Any:
        """Call a *firstresult* hook plugin by plugin, in pluggy's order, and return the first answer that is not ``None``.

        A plugin whose implementation raises something other than a :class:`zoo.errors.ZooError` (those are
        one-line answers meant for the user) or an ``OSError`` (the machine's: a full disk, a permission), or whose answer ``check(answer)`` describes as wrong, is marked
        ``failed``, named in a one-line warning and skipped: the other plugins still answer.
        """
        from zoo.errors import ZooError

        hook = getattr(self.pm.hook, hook_name)
        for impl in reversed(hook.get_hookimpls()):  # pluggy calls the last registered first
            st = self.statuses.get(impl.plugin_name)
            if st is not None and st.state == "failed":
                continue
            try:
                with contextlib.redirect_stdout(sys.stderr):
                    answer = impl.function(**{name: kwargs[name] for name in impl.argnames})
                problem = check(answer) if check is not None and answer is not None else None
            except (ZooError, OSError):  # an answer for the user (one line), or the machine's (disk full, no permission)
                raise
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - a broken plugin must not break the other sources
                problem = f"{hook_name} raised {_reason(exc)}"
            if problem:
                if st is not None:
                    st.state, st.reason = "failed", problem
                print(f"zoo: warning: plugin {impl.plugin_name!r} was skipped: {problem}; fix it, or disable it with "
                      f"ZOO_DISABLE_PLUGINS={impl.plugin_name}", file=sys.stderr)
                continue
            if answer is not None:
                return answer
        return None

    def resolve_weights(self, model_id: Any, card: ModelCard | None) -> Any:
        def check(answer: Any) -> str | None:
            if isinstance(answer, (str, os.PathLike)):
                return None
            return f"zoo_resolve_weights returned a {type(answer).__name__}, not a path"

        return self.first_result("zoo_resolve_weights", check, model_id=model_id, card=card)

    def model_files(self, model_id: Any, card: ModelCard | None) -> Any:
        def check(answer: Any) -> str | None:
            files = answer.get("files", []) if isinstance(answer, dict) else None
            if isinstance(files, list) and all(isinstance(f, dict) and "path" in f for f in files):
                return None
            return "zoo_model_files did not answer a dict whose 'files' is a list of {'path': ...} dicts (docs/hooks.md)"

        return self.first_result("zoo_model_files", check, model_id=model_id, card=card)
