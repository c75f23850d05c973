"""``zoo.lock``: each id pinned to its resolved revision, each file to its sha256 and size.

A lock is JSON (pydantic-validated, unknown fields refused)::

    {"version": 1, "models": [{"id": "torchvision:resnet18.IMAGENET1K_V1", "source": "torchvision",
      "revision": null, "files": [{"key": "TORCH_HOME/hub/checkpoints/resnet18-f37072fd.pth",
      "sha256": "...", "size": 46830571, "url": "https://download.pytorch.org/..."}]}]}

Files are named by cache keys (see :mod:`zoo.cache.records`), so a lock made on one machine is
valid on another whose cache variables point elsewhere.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from zoo.cache import records
from zoo.cache.errors import IntegrityError
from zoo.errors import InvalidInputError, NotCachedError

LOCK_VERSION = 1


class LockedFile(BaseModel):
    """One file of a locked model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)
    url: str | None = None

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        records.check_key(value)
        return value


class LockedModel(BaseModel):
    """One id, its resolved revision and its files."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    source: str
    revision: str | None = None
    files: list[LockedFile]

    @property
    def pinned_id(self) -> str:
        """The id with its revision (``hf:org/model@<commit>``), what to load to get exactly these files."""
        return f"{self.id.split('@', 1)[0]}@{self.revision}" if self.revision else self.id


class LockFile(BaseModel):
    """A whole ``zoo.lock``."""

    model_config = ConfigDict(extra="forbid")

    version: int = LOCK_VERSION
    models: list[LockedModel] = []

    def write(self, path: str | Path) -> Path:
        """Write as indented JSON, atomically (a missing parent folder is made); returns the path.

        Raises:
            InvalidInputError: ``path`` is a folder.
        """
        from zoo._io import atomic_write_text

        return atomic_write_text(path, self.model_dump_json(indent=2) + "\n")

    @classmethod
    def read(cls, path: str | Path) -> LockFile:
        """Read and validate a lock file.

        Raises:
            InvalidInputError: missing, not JSON, or a field is wrong (the message names it).
        """
        path = Path(path)
        try:
            text = path.read_bytes()
        except FileNotFoundError:
            raise InvalidInputError(f"{path}: no such lock file; create one with `zoo lock ID... -o {path}`.") from None
        except IsADirectoryError:
            raise InvalidInputError(f"{path} is a folder; pass the lock file written by `zoo lock`.") from None
        return cls.parse(text, str(path), "re-create it with `zoo lock`")

    @classmethod
    def parse(cls, text: bytes | str, where: str, todo: str, kind: str = "lock file") -> LockFile:
        """Validate the JSON text of a lock (a file, or a bundle's ``zoo-bundle.json``).

        Args:
            text: the JSON.
            where: what to name in errors (the file).
            todo: what to do about an invalid one.
            kind: what the text is, for errors.

        Raises:
            InvalidInputError: not JSON, a wrong or unknown field, or an unsupported version.
        """
        try:
            data = json.loads(text)
            if isinstance(data, dict) and data.get("version", LOCK_VERSION) != LOCK_VERSION:
                raise InvalidInputError(f"{where}: {kind} version {data['version']!r} is not supported by this zoo (it reads version {LOCK_VERSION}); {todo}.")
            lock = cls.model_validate(data)
        except ValueError as exc:  # JSON (or bad UTF-8) or pydantic
            if isinstance(exc, InvalidInputError):
                raise
            detail = exc.errors()[0] if isinstance(exc, ValidationError) else {"loc": (), "msg": str(exc).splitlines()[0] if str(exc) else type(exc).__name__}
            where_in = ".".join(str(p) for p in detail["loc"])
            raise InvalidInputError(f"{where}: invalid {kind} ({where_in + ': ' if where_in else ''}{detail['msg']}); {todo}.") from None
        return lock


@dataclass
class SourceFile:
    """A file a source says a model needs (from the ``zoo_model_files`` hook)."""

    key: str
    url: str | None = None
    sha256_prefix: str | None = None
    sha256: str | None = None
    #: the md5 a source publishes (Keras' application weights and class index)
    md5: str | None = None
    #: not needed to load the model, but by ``predict`` (a with-top weights file, a class-name file)
    optional: bool = False

    @property
    def path(self) -> Path:
        return records.path_of(self.key)


@dataclass
class SourceFiles:
    """A source's answer for one model."""

    model_id: Any
    revision: str | None
    files: list[SourceFile] = field(default_factory=list)
    #: where a whole hand-carried folder goes when the source cannot list files in advance
    folder: Path | None = None
    #: small files to write after adopting a folder (``path -> text``, e.g. a Hugging Face ref)
    write: dict[str, str] = field(default_factory=dict)


def model_files(model_id: Any, card: Any = None) -> SourceFiles:
    """Ask the plugins (``zoo_model_files``) which files ``model_id`` is made of.

    Raises:
        InvalidInputError: no plugin of this source answers.
    """
    found = listed_files(model_id, card)
    if found is None:
        from zoo._api import _resolve

        mid = _resolve(model_id)[0]
        raise InvalidInputError(
            f"{mid}: source {mid.source!r} does not list its files (its plugin has no zoo_model_files hook), "
            "so it cannot be locked, bundled or imported; ask its author, or use `zoo pull`."
        )
    return found


def listed_files(model_id: Any, card: Any = None) -> SourceFiles | None:
    """:func:`model_files`, or ``None`` when no plugin of the model's source answers ``zoo_model_files``."""
    from zoo._api import _get, _resolve

    mid, found = _resolve(model_id)
    card = card if card is not None else found
    answer = _get(with_models=False).host.model_files(mid, card)
    if answer is None:
        return None
    out = []
    for item in answer.get("files", []):
        item = dict(item)
        key = item.get("key") or records.key_of(item["path"])
        out.append(SourceFile(key=key, url=item.get("url"), sha256_prefix=item.get("sha256_prefix"), sha256=item.get("sha256"),
                              md5=item.get("md5"), optional=bool(item.get("optional"))))
    folder = Path(answer["folder"]) if answer.get("folder") else None
    return SourceFiles(mid, answer.get("revision"), out, folder, dict(answer.get("write") or {}))


def fetch_optional(found: SourceFiles, *, progress: bool = True) -> list[Path]:
    """Download the files a source lists as ``optional`` (what ``predict`` needs beyond the weights its loader
    fetched: Keras' with-top weights and ImageNet class index) that are not cached yet; returns them.

    Each is checked against the hash its source publishes. Offline, nothing is fetched (``[]``).

    Raises:
        DownloadError, IntegrityError: as :func:`zoo.cache.download.fetch`.
    """
    from zoo import constants
    from zoo.cache.download import fetch

    if constants.offline():
        return []
    done = []
    for sf in found.files:
        if sf.optional and sf.url and not sf.path.is_file():
            done.append(fetch(sf.url, sf.path, sha256=sf.sha256, sha256_prefix=sf.sha256_prefix, md5=sf.md5,
                              model_id=found.model_id.base, progress=progress))
    return done


def lock_models(ids: list[str], *, fetch: bool = True) -> LockFile:
    """Resolve ``ids`` (downloading what is missing unless offline) and pin every file.

    Args:
        ids: model ids; a bare architecture pins the source's default weights.
        fetch: ``zoo.load`` each id first, which downloads into the source's cache.

    A source's published hash (torchvision's file-name prefix) is checked when a file is
    downloaded, as torch.hub does, and a Hugging Face blob against the hash its name carries;
    the lock records the sha256 of the bytes in the cache. Files the source lists as optional
    (what ``predict`` needs: Keras' with-top weights and class index) are downloaded too; offline, a
    missing one is left out of the lock with a warning.

    Raises:
        NotCachedError: a file the source lists is missing after loading.
        IntegrityError: a Hugging Face blob differs from the hash the Hub published (it was removed).
    """
    import zoo
    from zoo.cache.hub_blobs import check_file

    models = []
    for text in ids:
        resolved_id = text
        if fetch:
            backbone = zoo.load(text)
            resolved_id = str(backbone.id)
        found = model_files(resolved_id)
        pinned = f"{found.model_id.base}@{found.revision}" if found.revision else None
        if fetch and pinned and pinned != resolved_id and any(not sf.url and not sf.path.is_file() for sf in found.files):
            # a file the source makes here for the pinned revision only (weights copied out of an
            # installed package): loading the pinned id makes it
            zoo.load(pinned)
            found = model_files(pinned)
        if not found.files:
            raise InvalidInputError(
                f"{found.model_id}: its source lists no files for it here, so zoo cannot pin or bundle it "
                "(a lock entry without files verifies nothing); leave it out of `zoo lock`."
            )
        if fetch:
            fetch_optional(found)
        files = []
        for sf in found.files:
            path = sf.path
            if not path.is_file() and sf.optional:
                import warnings

                warnings.warn(f"{found.model_id}: {path.name} is not cached (offline?), so the lock leaves it out and `zoo predict` "
                              "on what this lock carries goes without it; lock again online to include it.", stacklevel=2)
                continue
            if not path.is_file():
                raise NotCachedError(resolved_id, str(path))
            check_file(path, found.model_id.base)  # a Hugging Face blob is held to the hash the Hub published
            digest, size = records.sha256_file(path)
            records.record(sf.key, digest, size, url=sf.url, model=found.model_id.base)
            files.append(LockedFile(key=sf.key, sha256=digest, size=size, url=sf.url))
        mid = found.model_id
        models.append(LockedModel(id=mid.base, source=mid.source, revision=found.revision or mid.revision, files=files))
    return LockFile(models=models)


def check_resolves(lock: LockFile, where: str) -> None:
    """Every locked model must have files (``zoo pull --lock``); one without is first resolved, so
    that an id its source does not know gets the source's own error.

    A model with files needs no plugin here: its files are verified by their hashes.

    Raises:
        InvalidInputError: a model is locked with no files (the message says to re-lock it).
        UnknownModelError, UnknownSourceError, ...: the source does not know an id locked with no files.
    """
    for model in lock.models:
        if not model.files:
            model_files(model.pinned_id)
    check_has_files(lock, where)


def check_has_files(lock: LockFile, where: str, todo: str = "re-create the lock with `zoo lock ID... -o FILE`") -> None:
    """Refuse a lock that holds no models, or a model with no files: there is nothing to verify or carry.

    Raises:
        InvalidInputError: naming the first such model and saying what to do (``todo``).
    """
    if not lock.models:
        raise InvalidInputError(f"{where} locks no models, so there is nothing to verify or carry; {todo}.")
    for model in lock.models:
        if not model.files:
            raise InvalidInputError(
                f"{where}: {model.pinned_id} is locked with no files, so nothing of it can be verified or carried; {todo}."
            )


def remake_advice(model_id: str, lock: str) -> str:
    """How to replace a locked file that has no URL and differs from the lock: the source makes it again."""
    return f"run `zoo cache rm {model_id}` and then `zoo pull --lock {lock}` (its source makes the file again)"


def _revision_file(lf: LockedFile, model: LockedModel, path: Path) -> bool:
    """Write a file whose locked content is the revision itself (a Hugging Face ``refs/<branch>``)."""
    if not model.revision:
        return False
    data = model.revision.encode("utf8")
    if hashlib.sha256(data).hexdigest() != lf.sha256 or len(data) != lf.size:
        return False
    from zoo._io import atomic_write

    atomic_write(path, lambda tmp: tmp.write_bytes(data))
    records.record(lf.key, lf.sha256, lf.size, model=model.id)
    return True


def _present(model_id: str) -> set[Path]:
    """The files the source lists for ``model_id`` that exist now."""
    found = listed_files(model_id)
    return {sf.path for sf in found.files if sf.path.is_file()} if found is not None else set()


def _load_held_to_lock(model: LockedModel) -> None:
    """Let the source's loader fetch a model whose files have no URL (a TF Hub module arrives as one archive, with no
    published hash), then hold every URL-less file of it to the lock. The source's download cannot be checked before
    it lands in the cache, so on a mismatch every file that the load added is removed again: nothing unverified stays
    where a later ``zoo.load`` would use it.

    Raises:
        IntegrityError: a file the load made differs from the lock (the files it made were removed).
        NotCachedError: the load did not make a locked file.
    """
    import zoo

    before = _present(model.pinned_id)
    zoo.load(model.pinned_id)
    for lf in model.files:
        path = records.path_of(lf.key)
        if lf.url:
            continue
        problem = None
        if not path.is_file():
            problem = "missing"
        else:
            digest, size = records.sha256_file(path)
            if (digest, size) != (lf.sha256, lf.size):
                problem = f"{digest[:12]}... ({size} bytes)"
        if problem is None:
            continue
        added = sorted(_present(model.pinned_id) - before)
        for new in added:
            new.unlink(missing_ok=True)
        records.prune_empty(added)
        if problem == "missing":
            raise NotCachedError(model.pinned_id, str(path))
        raise IntegrityError(
            f"{path}: the source served other bytes than {model.id} was locked with",
            f"sha256 {lf.sha256[:12]}... ({lf.size} bytes)", problem,
            f"the model changed upstream ({len(added)} file(s) it fetched were removed again); "
            "re-lock it deliberately with `zoo lock`",
        )


def pull_lock(lock: LockFile, *, progress: bool = True, where: str = "ZOO_LOCK") -> list[Path]:
    """Make the cache hold exactly the locked files: verify what is there, fetch what is not.

    Raises:
        IntegrityError: a cached or downloaded file differs from the lock.
        NotCachedError: a file is missing and offline, or the lock has no URL for it.
        InvalidInputError: a model is locked with no files (``where`` names the lock in the message).
    """
    from zoo import constants
    from zoo.cache.download import fetch

    check_resolves(lock, where)
    done = []
    loaded: set[str] = set()
    for model in lock.models:
        for lf in model.files:
            path = records.path_of(lf.key)
            existed = path.is_file()
            if existed:
                digest, size = records.sha256_file(path)
                if digest == lf.sha256 and size == lf.size:
                    records.record(lf.key, digest, size, url=lf.url, model=model.id)
                    done.append(path)
                    continue
            if not lf.url:
                # no file URL (a TF Hub module arrives as one archive, packaged weights are converted
                # here): a differing copy is named, never loaded; a missing ref is written from the
                # revision; else the source's own loader fetches (or makes) a missing model, and the
                # bytes are held to the lock
                if existed:
                    raise IntegrityError(
                        f"{path}: the cached file differs from the lock for {model.id}",
                        f"sha256 {lf.sha256[:12]}... ({lf.size} bytes)", f"{digest[:12]}... ({size} bytes)",
                        f"{remake_advice(model.id, where)}, or import the bundle made with this lock",
                    )
                if _revision_file(lf, model, path):
                    done.append(path)
                    continue
                if model.id in loaded:  # offline, the source's loader raises NotCachedError itself
                    raise NotCachedError(model.pinned_id, str(path))
                _load_held_to_lock(model)
                loaded.add(model.id)
                records.record(lf.key, lf.sha256, lf.size, url=None, model=model.id)
                done.append(path)
                continue
            if existed and constants.offline():  # not "not cached": a cached file that differs, and no network to fix it
                raise IntegrityError(
                    f"{path}: the cached file differs from the lock for {model.id}",
                    f"sha256 {lf.sha256[:12]}... ({lf.size} bytes)", f"{digest[:12]}... ({size} bytes)",
                    f"zoo is offline, so the locked bytes cannot be fetched: run `zoo pull --lock {where}` with network, or "
                    "import the bundle made with this lock; a lock made from other files (or edited) is stale: re-create "
                    "it with `zoo lock`",
                )
            fetch(lf.url, path, sha256=lf.sha256, size=lf.size, model_id=model.id, progress=progress)
            done.append(path)
    return done
