"""Hold Hugging Face downloads to the hash the Hub published for them.

``huggingface_hub`` downloads each file to ``blobs/<etag>.incomplete``, checks its size and renames
it to ``blobs/<etag>``; a snapshot entry links to it. The etag *is* the Hub's published hash: the
sha256 of the content for LFS files (weights), the git blob sha1 for regular files (configs,
vocabularies). The library does not hash what it received, so a proxy or mirror that alters bytes
without changing their length leaves a wrong file under a right name. zoo checks every blob of a
snapshot it fetched against its name before handing the snapshot out (or pinning it in a lock); a
mismatching blob is removed with every snapshot entry pointing at it, so the cache holds the whole
verified file or nothing, and the next pull downloads it again.

A verified blob is recorded in ``$ZOO_HOME/manifest.json`` (like every file zoo downloads) with its
size and modification time, so later loads re-hash only blobs that are new or whose size or
modification time changed; ``zoo cache verify`` re-checks
recorded files in full.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from zoo.cache import records
from zoo.errors import IntegrityError, InvalidInputError

_SHA256 = re.compile(r"[0-9a-f]{64}")
_GIT_SHA1 = re.compile(r"[0-9a-f]{40}")


def published_digest(path: str | Path) -> tuple[str, str] | None:
    """``(kind, digest)`` the Hub published for the cached file ``path``, or ``None`` when it is no HF blob.

    ``kind`` is ``"sha256"`` (LFS files) or ``"git-sha1"`` (regular files), read from the blob's name.
    """
    p = Path(path)
    blob = p.resolve() if p.is_symlink() else p
    if blob.parent.name != "blobs" or not blob.parent.parent.name.startswith(("models--", "datasets--", "spaces--")):
        return None
    if _SHA256.fullmatch(blob.name):
        return "sha256", blob.name
    if _GIT_SHA1.fullmatch(blob.name):
        return "git-sha1", blob.name
    return None


def _digests(path: Path) -> tuple[str, str, int]:
    """``(sha256, git blob sha1, size)`` of a file in one read."""
    size = path.stat().st_size
    sha256, git = hashlib.sha256(), hashlib.sha1(f"blob {size}\0".encode())
    with open(path, "rb") as fh:
        while chunk := fh.read(records.CHUNK):
            sha256.update(chunk)
            git.update(chunk)
    return sha256.hexdigest(), git.hexdigest(), size


def _remove(blob: Path, repo_dir: Path) -> None:
    """Remove ``blob`` and every snapshot entry that points at it."""
    snapshots = repo_dir / "snapshots"
    if snapshots.is_dir():
        for entry in snapshots.rglob("*"):
            if entry.is_symlink() and Path(os.path.realpath(entry)) == blob:
                entry.unlink()
    blob.unlink(missing_ok=True)


def check_file(path: str | Path, model_id: str) -> bool:
    """Verify one cached HF file against the hash in its blob's name; ``False`` when it is no HF blob.

    Raises:
        IntegrityError: the content differs; the blob and its snapshot entries were removed.
    """
    p = Path(path)
    published = published_digest(p)
    if published is None:
        return False
    kind, digest = published
    blob = Path(os.path.realpath(p))
    try:
        key = records.key_of(p)
    except InvalidInputError:  # an HF cache outside zoo's roots: check, but keep no record
        key = None
    st = blob.stat()
    known = records.files().get(key) if key else None
    if known is not None and known["size"] == st.st_size and known.get("mtime_ns") == st.st_mtime_ns and (kind != "sha256" or known["sha256"] == digest):
        return True  # verified when it arrived and unchanged since; `zoo cache verify` re-hashes recorded files
    sha256, git_sha1, size = _digests(blob)
    got = sha256 if kind == "sha256" else git_sha1
    if got != digest:
        _remove(blob, blob.parent.parent)
        raise IntegrityError(
            f"{p.name} of {model_id} (Hugging Face blob {blob})",
            f"the {kind} the Hub published, {digest[:12]}...",
            f"{got[:12]}... ({size} bytes); the file was removed",
            f"pull it again (`zoo pull {model_id}`); if it recurs, check HF_ENDPOINT or the proxy between you and the Hub",
        )
    if key is not None:
        records.record(key, sha256, size, model=model_id)
    return True


def check_snapshot(folder: str | Path, model_id: str) -> int:
    """Verify every file of an HF snapshot folder (see :func:`check_file`); returns how many were HF blobs.

    Every file is checked even after a failure, so one call removes every bad blob; the first
    failure is raised at the end.
    """
    first: IntegrityError | None = None
    n = 0
    for entry in sorted(Path(folder).rglob("*")):
        if not entry.is_file():
            continue
        try:
            n += check_file(entry, model_id)
        except IntegrityError as exc:
            first = first or exc
    if first is not None:
        raise first
    return n
