"""``zoo cache ls | verify [--repair] | rm``: what zoo recorded, and whether the files still match."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo import constants
from zoo.cache import records


@dataclass
class Problem:
    """A recorded file that no longer matches its record."""

    key: str
    path: Path
    reason: str
    repaired: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "path": str(self.path), "reason": self.reason, "repaired": self.repaired}


def entries() -> list[dict[str, Any]]:
    """Every recorded file with its path, size, models and whether it is present."""
    out = []
    for key, rec in sorted(records.files().items()):
        path = records.path_of(key)
        out.append({"key": key, "path": str(path), "size": rec["size"], "sha256": rec["sha256"], "models": rec.get("models", []), "present": path.is_file()})
    return out


def check(key: str, rec: dict[str, Any]) -> str | None:
    """Why the file of ``key`` does not match ``rec`` (missing, truncated, altered), or ``None``.

    Always hashes the file (see :func:`zoo.cache.records.compare`)."""
    return records.compare(key, rec)


def verify(*, repair: bool = False, progress: bool = False) -> list[Problem]:
    """Check every recorded file; with ``repair``, re-fetch bad ones that have a URL (when online),
    re-create the others a plugin makes locally (weights converted from an installed package),
    else delete them and drop them from the record.

    Returns:
        The problems found, each with what the repair did.
    """
    problems = []
    for key, rec in sorted(records.files().items()):
        reason = check(key, rec)
        if reason is None:
            continue
        problem = Problem(key, records.path_of(key), reason)
        if repair:
            problem.repaired = _repair(key, rec, progress)
        problems.append(problem)
    return problems


def _repair(key: str, rec: dict[str, Any], progress: bool) -> str:
    from zoo.cache.download import fetch
    from zoo.errors import ZooError

    path = records.path_of(key)
    if rec.get("url") and not constants.offline():
        try:
            models = rec.get("models") or [None]
            fetch(rec["url"], path, sha256=rec["sha256"], size=rec["size"], model_id=models[0], progress=progress)
            return "re-fetched"
        except ZooError as exc:
            reason = f"re-fetch failed ({exc}); "
    else:
        reason = ""
    if not _remove_if_still_bad(key):
        return reason + "left: another zoo fetched it again meanwhile, and it now verifies"
    if not rec.get("url"):
        made = _recreate(key, rec.get("models") or [])
        if made:
            return made
    return reason + "removed"


def _remove_if_still_bad(key: str) -> bool:
    """Delete the file of ``key`` and its record, under the file's lock (the one downloads and bundle
    imports hold), unless what is recorded now verifies: a concurrent `zoo pull` may have fetched it
    again since the check, and that good file must not be deleted."""
    from filelock import FileLock

    path = records.path_of(key)
    with FileLock(str(records.lock_path(path))):
        rec = records.files().get(key)
        if rec is not None and check(key, rec) is None:
            return False
        path.unlink(missing_ok=True)
        records.forget([key])
    return True


def _recreate(key: str, models: list[str]) -> str | None:
    """Ask the plugins for the weights of each model that used ``key`` again: a plugin that makes the
    file locally (the packaged-weights plugin converts an installed package) writes it anew."""
    from zoo._api import weights_resolve

    path = records.path_of(key)
    for model in models:
        if not weights_resolve(model):
            continue
        if path.is_file():
            found = records.lookup(path)  # the plugin recorded what it wrote
            if found is None:
                digest, size = records.sha256_file(path)
                records.record(key, digest, size, model=model)
            return f"removed and re-created from {model}"
    return None


def remove(targets: list[str]) -> list[str]:
    """Delete the recorded files of each target (a model id as recorded, or a cache key); returns the keys removed."""
    recs = records.files()
    keys = []
    for target in targets:
        hits = [k for k, r in recs.items() if k == target or target in r.get("models", []) or any(m.split("@")[0] == target.split("@")[0] for m in r.get("models", []))]
        if not hits:
            from zoo.errors import InvalidInputError, close_matches

            known = sorted({m for r in recs.values() for m in r.get("models", [])} | set(recs))
            near = close_matches(target, known)
            hint = f" Did you mean {' or '.join(repr(n) for n in near)}?" if near else ""
            raise InvalidInputError(f"{target!r} is neither a recorded model nor a cache key;{hint} `zoo cache ls` lists them.")
        keys += hits
    from filelock import FileLock

    removed = []
    for key in sorted(set(keys)):  # under the file's lock: never while a download renames it into place
        models = recs[key].get("models", [])
        others = [m for m in models if not any(m == t or m.split("@")[0] == t.split("@")[0] for t in targets)]
        if key not in targets and others:  # a file other models use too (Keras' ImageNet class index): theirs still
            records.drop_models(key, [m for m in models if m not in others])
            continue
        with FileLock(str(records.lock_path(records.path_of(key)))):
            records.path_of(key).unlink(missing_ok=True)
            records.forget([key])
        removed.append(key)
    records.prune_empty([records.path_of(k) for k in removed])  # a TF Hub module's folder, left empty, looked cached
    return removed
