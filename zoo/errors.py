"""Every error zoo raises.

Each error subclasses :class:`ZooError` and the builtin it behaves like, carries its facts as
attributes, and its message says what to do next. The CLI prints ``str(error)`` as one line and
exits with status 2; ``ZOO_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence


class ZooError(Exception):
    """Base of every error zoo raises on purpose."""


def exc_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (``Type`` alone when it has none): an exception in one line."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def close_matches(word: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Return up to ``n`` candidates close to ``word`` (case-insensitive), best first."""
    pool = list(candidates)
    lowered = {c.lower(): c for c in pool}
    hits = difflib.get_close_matches(word.lower(), list(lowered), n=n, cutoff=0.6)
    if not hits:
        # also try on the part after the source prefix, so "resnt50" finds "torchvision:resnet50"
        tails: dict[str, str] = {}
        for c in pool:
            tails.setdefault(c.split(":", 1)[-1].lower(), c)
        tail = word.split(":", 1)[-1].lower()
        hits = [tails[h] for h in difflib.get_close_matches(tail, list(tails), n=n, cutoff=0.6)]
        return hits
    return [lowered[h] for h in hits]


def _did_you_mean(suggestions: Sequence[str]) -> str:
    return f" Did you mean: {', '.join(suggestions)}?" if suggestions else ""


class MalformedIdError(ZooError, ValueError):
    """A model id does not follow ``source:name[.tag][@revision]``."""

    def __init__(self, text: str, problem: str) -> None:
        self.text = text
        self.problem = problem
        super().__init__(
            f"Malformed model id {text!r}: {problem}. "
            "Write it as source:name[.tag][@revision], e.g. timm:resnet50.a1_in1k."
        )


class UnknownSourceError(ZooError, LookupError):
    """The source part of an id names no known source."""

    def __init__(self, source: str, valid: Sequence[str]) -> None:
        self.source = source
        self.valid = sorted(valid)
        hint = _did_you_mean(close_matches(source, self.valid))
        super().__init__(
            f"Unknown source {source!r}.{hint} Valid sources: {', '.join(self.valid) or '(none)'}; "
            "`zoo plugins` shows which are installed."
        )


class UnknownModelError(ZooError, LookupError):
    """No catalog entry or plugin knows this id."""

    def __init__(self, model_id: str, suggestions: Sequence[str] = ()) -> None:
        self.model_id = model_id
        self.suggestions = list(suggestions)
        super().__init__(
            f"Unknown model {model_id!r}.{_did_you_mean(self.suggestions)} "
            "`zoo search TEXT` or `zoo list` shows the known ids."
        )


class UnknownFilterValueError(ZooError, ValueError):
    """A list filter was given a value outside its vocabulary."""

    def __init__(self, field: str, value: str, valid: Sequence[str]) -> None:
        self.field = field
        self.value = value
        self.valid = sorted(valid)
        hint = _did_you_mean(close_matches(value, self.valid))
        super().__init__(
            f"Unknown {field} {value!r}.{hint} Valid values: {', '.join(self.valid)}."
        )


class CatalogError(ZooError, ValueError):
    """A catalog file (``registry.yaml``) is invalid; the message names file:line, entry and field."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        more = f" (and {len(self.problems) - 1} more problem(s); run `zoo catalog validate` to see all)" if len(self.problems) > 1 else ""
        super().__init__(f"Invalid catalog: {self.problems[0]}{more}")


class DuplicateModelError(ZooError, ValueError):
    """Two plugins registered the same model id or source name."""

    def __init__(self, what: str, first: str, second: str) -> None:
        self.what = what
        self.first = first
        self.second = second
        super().__init__(
            f"{what} is registered by both plugin {first!r} and plugin {second!r} (the first, in entry-point name order, "
            f"keeps it); uninstall the one you do not want, or disable it with ZOO_DISABLE_PLUGINS={second} "
            f"(or ZOO_DISABLE_PLUGINS={first})."
        )


class MissingFrameworkError(ZooError, ImportError):
    """The framework a source (or ``who``: a command on it) needs is not installed."""

    def __init__(self, source: str, missing: str, install: str, *, who: str | None = None) -> None:
        self.source = source
        self.missing = missing
        self.install = install
        super().__init__(
            f"{who or f'Source {source!r}'} needs {missing}, which {'are' if ', ' in missing else 'is'} not installed: run `{install}`."
        )


class PluginUnavailableError(ZooError, LookupError):
    """A known source has no working plugin (not installed, failed or disabled)."""

    def __init__(self, source: str, reason: str, install: str | None) -> None:
        self.source = source
        self.reason = reason
        self.install = install
        todo = f" Run `{install}`" if install else " Check `zoo plugins`"
        super().__init__(f"Source {source!r} cannot be used: {reason}.{todo}.")


class NotCachedError(ZooError, FileNotFoundError):
    """Offline and the weights are not in the cache."""

    def __init__(self, model_id: str, cache_path: str) -> None:
        self.model_id = model_id
        self.cache_path = cache_path
        super().__init__(
            f"{model_id} is not cached at {cache_path} and zoo is offline (ZOO_OFFLINE/HF_HUB_OFFLINE): "
            f"run `zoo pull {model_id}` with network, or `zoo cache import BUNDLE.tar` / `zoo cache import DIR --as {model_id}`."
        )


class InvalidInputError(ZooError, ValueError):
    """An input given to a backbone cannot be used (corrupt file, empty batch, ...)."""


class NoHeadError(ZooError, NotImplementedError):
    """``predict`` on a backbone without a pre-training head (a feature encoder): train one with ``zoo run``."""

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id
        super().__init__(
            f"{model_id} has no pre-training head zoo can predict with (a feature encoder, weights without a classifier, "
            "a Keras top whose with-top weights file is not cached, or a classifier zoo cannot run apart): train a head on your data with "
            "`zoo recommend --data DATA -o plan.yaml` and `zoo run plan.yaml --data DATA --out RUN`, then `zoo predict RUN ...`."
        )


class LayerGroupRangeError(ZooError, ValueError):
    """``unfreeze(top=k)`` with k outside ``0..len(layer_groups)``."""

    def __init__(self, k: int, n_groups: int) -> None:
        self.k = k
        self.n_groups = n_groups
        super().__init__(
            f"unfreeze(top={k}) is out of range: this backbone has {n_groups} layer groups, "
            f"so top must be between 0 and {n_groups}."
        )


class DivergedError(ZooError, ArithmeticError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


class CheckpointError(ZooError, OSError):
    """A checkpoint could not be written or read (the previous one, if any, is intact)."""


class DownloadError(ZooError, OSError):
    """A download failed (HTTP error, connection lost, truncated transfer); nothing was kept."""

    def __init__(self, url: str, problem: str, dest: str | None = None, todo: str = "Check the URL and the network, then retry") -> None:
        self.url = url
        self.problem = problem
        self.dest = dest
        where = f"; nothing was written to {dest}" if dest else ""
        super().__init__(f"Download of {url} failed: {problem}{where}. {todo}.")


class IntegrityError(ZooError, ValueError):
    """A file's content does not match its expected sha256 or size; the bad copy was not kept."""

    def __init__(self, what: str, expected: str, got: str, todo: str) -> None:
        self.what = what
        self.expected = expected
        self.got = got
        super().__init__(f"{what}: expected {expected}, got {got}; {todo}")


class TrustError(InvalidInputError):
    """Loading would execute code or unpickle objects zoo was not allowed to trust."""
