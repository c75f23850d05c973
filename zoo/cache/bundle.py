"""Move a locked set of models to a machine without network: one tar file, or a folder by hand.

``zoo bundle zoo.lock -o models.tar`` writes ``zoo-bundle.json`` (the lock) and every locked file
under ``files/<key>``; ``zoo cache import models.tar`` checks each member against the lock and puts
it where the source's cache expects it (temp file, fsync, rename). ``zoo cache import DIR --as ID``
adopts a folder carried by hand: the source lists the files the model needs
(``zoo_model_files``) and each is looked up in the folder by its relative path or file name.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import IO

from zoo._io import owned_temp, remove_stale_temps
from zoo.cache import records
from zoo.cache.errors import IntegrityError
from zoo.cache.lockfile import LockFile, SourceFiles, check_has_files, model_files, remake_advice
from zoo.errors import InvalidInputError, NotCachedError, ZooError

MANIFEST = "zoo-bundle.json"


def bundle(lock: LockFile, out: str | Path, *, lock_path: str | Path | None = None) -> Path:
    """Write the locked files into a tar at ``out`` (verifying each first); returns ``out``.

    The tar is written to a temporary file beside ``out`` and renamed into place (mode 0644, like
    every file zoo writes), so ``out`` never holds half a bundle.

    Args:
        lock: the lock whose files to pack.
        out: the tar to write (a missing parent folder is made).
        lock_path: the lock's file, named in errors.

    Raises:
        InvalidInputError: ``out`` is a folder, or a model is locked with no files.
        NotCachedError: a locked file is not in the cache (run ``zoo pull --lock`` first).
        IntegrityError: a cached file differs from the lock.
    """
    out = Path(out)
    name = str(lock_path) if lock_path else "ZOO_LOCK"
    if out.is_dir():
        raise InvalidInputError(f"{out} is a folder; give the bundle a file name (e.g. {out / 'models.tar'}).")
    check_has_files(lock, name if lock_path else "the lock")
    for model in lock.models:
        for lf in model.files:
            path = records.path_of(lf.key)
            if not path.is_file():
                raise NotCachedError(model.pinned_id, str(path))
            digest, size = records.sha256_file(path)
            if (digest, size) != (lf.sha256, lf.size):
                todo = f"run `zoo pull --lock {name}` to fetch the locked bytes again" if lf.url else remake_advice(model.id, name)
                raise IntegrityError(
                    f"{path} ({model.id})", f"sha256 {lf.sha256} ({lf.size} bytes) as locked", f"sha256 {digest} ({size} bytes)",
                    f"{todo}, then bundle again.",
                )
    out.parent.mkdir(parents=True, exist_ok=True)  # as `recommend -o` and `export -o` do
    # a name that tells a killed `zoo bundle`'s leftover from a running one's: the next bundle to `out` removes it
    tmp = owned_temp(out.parent if str(out.parent) else ".", out.name, ".part")
    try:
        with tarfile.open(tmp, "w") as tar:
            data = lock.model_dump_json(indent=2).encode("utf8")
            info = tarfile.TarInfo(MANIFEST)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
            seen = set()
            for model in lock.models:
                for lf in model.files:
                    if lf.key not in seen:
                        seen.add(lf.key)
                        real = records.path_of(lf.key).resolve()  # HF snapshots are links to blobs: pack the bytes
                        info = tar.gettarinfo(str(real), arcname=f"files/{lf.key}")
                        with open(real, "rb") as fh:
                            tar.addfile(info, fh)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes files private; a bundle is meant to be copied and shared
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def install_file(src: IO[bytes], key: str, sha256: str | None, size: int | None, model: str, check: Callable[[str], None] | None = None) -> Path:
    """Copy a stream to the path of ``key`` through a verified temp file (hashed while copied, fsynced, mode 0644,
    renamed into place under the file's lock) and record it; ``sha256``/``size``, when given, must match."""
    from filelock import FileLock

    dest = records.path_of(key)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(records.lock_path(dest))):
        remove_stale_temps(dest.parent, f".{dest.name}.", ".part")  # of copies killed midway: no one writes them now
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        try:
            h, n = hashlib.sha256(), 0
            try:
                with os.fdopen(fd, "wb") as fh:
                    while chunk := src.read(records.CHUNK):
                        h.update(chunk)
                        fh.write(chunk)
                        n += len(chunk)
                    fh.flush()
                    os.fsync(fh.fileno())
            except OSError as exc:  # a full disk names no file: name the one being installed
                if exc.filename or isinstance(exc, ZooError):
                    raise
                raise OSError(exc.errno, exc.strerror, str(dest)) from None
            digest = h.hexdigest()
            if (sha256 and digest != sha256) or (size is not None and n != size):
                raise IntegrityError(f"{key} for {model}", f"sha256 {sha256} ({size} bytes)", f"sha256 {digest} ({n} bytes)", "the bundle is damaged; copy it again.")
            if check:
                check(digest)
            os.chmod(tmp, 0o644)  # mkstemp makes files private; caches are shared
            os.replace(tmp, dest)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    records.record(key, digest, n, model=model)
    return dest


#: what reading a damaged or cut-off tar (plain or compressed) raises
_READ_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error)


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return (str(exc).splitlines() or [""])[0].rstrip(":") or type(exc).__name__


class _Guarded:
    """A tar member's stream whose read errors (a bundle cut off mid-member) are one-line zoo errors."""

    def __init__(self, fh: IO[bytes], path: Path, name: str) -> None:
        self.fh, self.path, self.name = fh, path, name

    def read(self, n: int = -1) -> bytes:
        try:
            return self.fh.read(n)
        except _READ_ERRORS as exc:
            raise InvalidInputError(
                f"{self.path}: the bundle is truncated or damaged ({_why(exc)} in {self.name}); nothing of that file was kept. "
                "Copy the bundle again (compare its size with the original) and re-run `zoo cache import`."
            ) from None


def import_bundle(path: str | Path) -> LockFile:
    """Install every file of a bundle tar into the cache roots of this machine; returns its lock.

    The whole tar is checked first (every header readable, the manifest valid, every locked file
    present with its locked size), so a truncated or foreign tar installs nothing; then each file
    goes through a verified temporary file.

    Raises:
        InvalidInputError: not a zoo bundle, truncated or damaged, a bad ``zoo-bundle.json``, or a
            member's name is unsafe.
        IntegrityError: a member differs from the bundle's lock (nothing of it is kept).
    """
    path = Path(path)
    try:
        tar = tarfile.open(path, "r")
    except (tarfile.TarError, OSError) as exc:
        raise InvalidInputError(f"{path}: not a readable tar file ({_why(exc)}); pass a file written by `zoo bundle`.") from None
    with tar:
        try:
            members = {m.name: m for m in tar.getmembers()}  # reads every header: a cut-off tar fails here
        except _READ_ERRORS as exc:
            raise InvalidInputError(
                f"{path}: the bundle is truncated or damaged ({_why(exc)}); nothing was imported. "
                "Copy it again (compare its size with the original) and re-run `zoo cache import`."
            ) from None
        manifest = _member(members, MANIFEST, path)
        try:
            text = tar.extractfile(manifest).read()  # type: ignore[union-attr]
        except _READ_ERRORS as exc:
            raise InvalidInputError(f"{path}: the bundle is truncated or damaged ({_why(exc)} in {MANIFEST}); nothing was imported. Copy it again.") from None
        todo = "re-create the bundle with this zoo's `zoo bundle ZOO_LOCK`"
        lock = LockFile.parse(text, f"{path}: {MANIFEST}", todo, kind="bundle manifest")
        check_has_files(lock, f"{path}: {MANIFEST}", todo)
        end = path.stat().st_size if isinstance(tar.fileobj, io.BufferedReader) else None  # a plain tar: members lie at offsets
        if end is not None and not _has_end_marker(path, end):
            raise InvalidInputError(
                f"{path}: the bundle is truncated (it lacks the end-of-archive blocks every tar ends with); nothing was imported. "
                "Copy it again (compare its size with the original) and re-run `zoo cache import`."
            )
        for model in lock.models:
            for lf in model.files:
                m = _member(members, f"files/{lf.key}", path)
                if m.size != lf.size:
                    raise IntegrityError(f"{path}: member files/{lf.key}", f"{lf.size} bytes (its lock)", f"{m.size} bytes", "the bundle is damaged; nothing was imported. Copy it again.")
                if end is not None and m.offset_data + m.size > end:
                    raise InvalidInputError(f"{path}: the bundle is truncated (files/{lf.key} ends past its {end} bytes); nothing was imported. Copy it again.")
        for model in lock.models:
            for lf in model.files:
                m = members[f"files/{lf.key}"]
                try:
                    fh = tar.extractfile(m)
                except _READ_ERRORS as exc:
                    raise InvalidInputError(f"{path}: the bundle is truncated or damaged ({_why(exc)} in files/{lf.key}). Copy it again.") from None
                install_file(_Guarded(fh, path, f"files/{lf.key}"), lf.key, lf.sha256, lf.size, model.id)  # type: ignore[arg-type]
    return lock


def _has_end_marker(path: Path, size: int) -> bool:
    """Whether a plain tar ends with the two zero blocks that close every tar (a cut-off one does not)."""
    if size < 2 * tarfile.BLOCKSIZE:
        return False
    with open(path, "rb") as fh:
        fh.seek(size - 2 * tarfile.BLOCKSIZE)
        return fh.read() == bytes(2 * tarfile.BLOCKSIZE)


def _member(members: dict[str, tarfile.TarInfo], name: str, path: Path) -> tarfile.TarInfo:
    m = members.get(name)
    if m is None:
        raise InvalidInputError(f"{path}: no {name} in this tar; pass a file written by `zoo bundle`.")
    if not m.isfile():
        raise InvalidInputError(f"{path}: member {name} is not a regular file; the bundle was not written by zoo.")
    return m


def import_dir(folder: str | Path, model_id: str) -> list[Path]:
    """Adopt a hand-carried folder as ``model_id``: copy each file the source lists into place.

    A file is found in ``folder`` by its path relative to the model's own folder in the cache, or
    by its file name. A hash the source publishes (torchvision's file-name prefix) is checked.

    Raises:
        InvalidInputError: ``folder`` is not a directory, or a needed file is not in it.
        IntegrityError: a file does not match the hash its source publishes.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidInputError(f"{folder}: not a directory; pass the folder that holds the model's files, or a bundle tar.")
    found = model_files(model_id)
    if not found.files and found.folder is not None:
        if found.model_id.source == "hf":
            _check_hf_folder(folder, found)
        return _adopt_folder(folder, found)
    if not found.files:
        raise InvalidInputError(f"{model_id}: its source lists no files to import.")
    if found.model_id.source == "hf":  # already cached: a snapshot (and its ref) that the folder cannot be matched to by name
        return _hf_again(folder, found)
    by_name: dict[str, list[Path]] = {}
    for p in folder.rglob("*"):
        if p.is_file():
            by_name.setdefault(p.name, []).append(p)
    installed = []
    for sf in found.files:
        rel = PurePosixPath(sf.key.partition("/")[2])
        candidates = [folder / Path(*rel.parts[i:]) for i in range(len(rel.parts))]
        src = next((c for c in candidates if c.is_file()), None) or next(iter(by_name.get(rel.name, [])), None)
        if src is None and sf.optional:  # what only `predict` needs (a with-top file, class names): adopted when there
            continue
        if src is None:
            needed = [PurePosixPath(f.key).name for f in found.files if not f.optional]
            raise InvalidInputError(f"{folder} has no {rel.name} for {found.model_id}; it needs {', '.join(needed)}.")

        if sf.md5:  # Keras publishes md5s: checked before anything is copied
            from zoo.cache.download import _md5

            got = _md5(src)
            if got != sf.md5.lower():
                raise IntegrityError(str(src), f"md5 {sf.md5} (published by the source)", f"md5 {got}", "this is not the file the source publishes under that name.")

        def check(digest: str, sf: object = sf, src: Path = src) -> None:
            pub, prefix = getattr(sf, "sha256"), getattr(sf, "sha256_prefix")
            if (pub and digest != pub) or (prefix and not digest.startswith(prefix)):
                raise IntegrityError(str(src), f"sha256 {pub or prefix + '...'} (published by the source)", f"sha256 {digest}", "this is not the file the source publishes under that name.")

        with open(src, "rb") as fh:
            installed.append(install_file(fh, sf.key, None, None, found.model_id.base, check))
    return installed


def _hf_again(folder: Path, found: SourceFiles) -> list[Path]:
    """Import a folder as an ``hf:`` id whose snapshot is cached already: nothing to do when the folder holds the same
    files (a provisioning script run twice), else a one-line refusal (the cached snapshot is not overwritten)."""
    snap = next((p for f in found.files for p in [f.path] if "snapshots" in p.parts), None)
    if snap is None:
        raise InvalidInputError(f"{found.model_id}: its cached snapshot lists no files; run `zoo cache rm {found.model_id}`, then import again.")
    root = Path(*snap.parts[: snap.parts.index("snapshots") + 2])
    cached = {f.path.relative_to(root).as_posix(): f.path for f in found.files if f.path.is_relative_to(root)}
    given = {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file()}
    same = bool(given) and set(given) <= set(cached) and all(
        records.sha256_file(given[rel])[0] == records.sha256_file(cached[rel])[0] for rel in given)
    if not same:
        raise InvalidInputError(
            f"{found.model_id} is already cached (snapshot {root.name}) with other files than {folder}; "
            f"run `zoo cache rm {found.model_id}` first to replace it, or import the folder under another id.")
    return []


def _check_hf_folder(folder: Path, found: SourceFiles) -> None:
    """Refuse a folder a Hugging Face model cannot load from, before anything is copied."""
    missing = []
    if not (folder / "config.json").is_file():
        missing.append("config.json")
    if not (any(folder.glob("*.safetensors")) or any(folder.glob("pytorch_model*.bin"))):
        missing.append("weights file (*.safetensors or pytorch_model*.bin)")
    if missing:
        raise InvalidInputError(
            f"{folder} has no {' and no '.join(missing)} at its top level, so {found.model_id} cannot load from it; "
            "pass the folder `save_pretrained` wrote (config, tokenizer and weights side by side). Nothing was imported."
        )


def _adopt_folder(folder: Path, found: SourceFiles) -> list[Path]:
    """Copy every file of ``folder`` under ``found.folder`` (same relative paths), then the source's small files."""
    installed = []
    dest_key = records.key_of(found.folder)  # type: ignore[arg-type]
    for src in sorted(p for p in folder.rglob("*") if p.is_file()):
        with open(src, "rb") as fh:
            installed.append(install_file(fh, f"{dest_key}/{src.relative_to(folder).as_posix()}", None, None, found.model_id.base))
    if not installed:
        raise InvalidInputError(f"{folder} is empty; pass the folder that holds {found.model_id}'s files.")
    for path, text in found.write.items():
        installed.append(install_file(io.BytesIO(text.encode("utf8")), records.key_of(path), None, None, found.model_id.base))
    return installed


def remove_tree_if_empty(path: Path, stop: Path) -> None:
    """Remove empty parent folders of ``path`` up to (not including) ``stop``."""
    cur = path.parent
    while cur != stop and stop in cur.parents:
        try:
            cur.rmdir()
        except OSError:
            return
        cur = cur.parent


