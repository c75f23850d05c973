"""zoo's one downloader: temp file, sha256 while streaming, verify, fsync, atomic rename, file lock.

Every outcome leaves the destination either holding the whole verified file or untouched: the
bytes go to ``.<name>.<random>.part`` in the destination folder and are renamed into place only
after the size and hash checks pass; any failure removes the temporary file. A per-artifact lock
(under ``$ZOO_HOME/locks``) makes concurrent pulls of one file safe: the first process downloads,
the others wait and then find the verified file. Offline (``ZOO_OFFLINE`` / ``HF_HUB_OFFLINE``)
no socket is opened.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import logging
import os
import re
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from zoo import constants
from zoo._io import remove_stale_temps
from zoo.cache import records
from zoo.cache.errors import DownloadError, IntegrityError
from zoo.errors import NotCachedError

RETRY_STATUS = {429, 500, 502, 503, 504}
T = TypeVar("T")
#: torch.hub's rule: ``name-<hex>.ext`` publishes a prefix of the file's sha256.
HASH_PREFIX = re.compile(r"-([a-f0-9]{6,})\.")


def hash_prefix_of(url_or_name: str) -> str | None:
    """The sha256 prefix a torch.hub-style file name publishes (``resnet18-f37072fd.pth``), if any."""
    match = HASH_PREFIX.search(os.path.basename(url_or_name.split("?")[0]))
    return match.group(1) if match else None


def _matches(digest: str, size: int, sha256: str | None, prefix: str | None, expected_size: int | None) -> bool:
    if sha256 and digest != sha256.lower():
        return False
    if prefix and not digest.startswith(prefix.lower()):
        return False
    return expected_size is None or size == expected_size


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _progress(total: int | None, label: str) -> Callable[[int], None] | None:
    if not sys.stderr.isatty():
        return None
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    bar = Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(), transient=True)
    task = bar.add_task(label, total=total)
    bar.start()

    def advance(n: int) -> None:
        if n < 0:
            bar.stop()
        else:
            bar.advance(task, n)

    return advance


def _stream(url: str, dest: Path, timeout: float, progress: bool) -> tuple[Path, str, int, str]:
    """One attempt: stream ``url`` into a temp file beside ``dest``; returns (temp, sha256, size, md5)."""
    request = urllib.request.Request(url, headers={"User-Agent": "zoo-hub"})
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        m = hashlib.md5(usedforsecurity=False)
        size = 0
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            expected = int(length) if length and length.isdigit() else None
            tick = _progress(expected, dest.name) if progress else None
            try:
                while True:
                    chunk = resp.read(records.CHUNK)
                    if not chunk:
                        break
                    h.update(chunk)
                    m.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                    if tick:
                        tick(len(chunk))
            finally:
                if tick:
                    tick(-1)
            if expected is not None and size != expected:
                raise http.client.IncompleteRead(b"", expected - size)
            out.flush()
            os.fsync(out.fileno())
        return tmp, h.hexdigest(), size, m.hexdigest()
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def fetch(
    url: str,
    dest: str | Path,
    *,
    sha256: str | None = None,
    sha256_prefix: str | None = None,
    md5: str | None = None,
    size: int | None = None,
    model_id: str | None = None,
    retries: int = 3,
    timeout: float = 60.0,
    backoff: float = 0.5,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest`` safely and return ``dest``.

    Args:
        url: what to download (http or https).
        dest: the final path, in the source's native cache layout.
        sha256: the expected sha256 (a lock file's); ``sha256_prefix``: the prefix a source
            publishes in its file names (torchvision's ``-f37072fd``); ``md5``: the hash Keras
            publishes for its application weights. Each one given is checked.
        size: the expected size in bytes, if known.
        model_id: the model this file belongs to (for errors and the cache record).
        retries: extra attempts after a 5xx/429 answer, a dropped connection or a truncated body.

    Returns:
        ``dest``, holding the whole verified file.

    Raises:
        NotCachedError: offline and ``dest`` is missing (or does not verify).
        DownloadError: HTTP 404 or another client error, or every attempt failed.
        IntegrityError: the downloaded bytes do not have the expected hash or size.

    Example:
        >>> fetch("https://download.pytorch.org/models/resnet18-f37072fd.pth",  # doctest: +SKIP
        ...       Path(torch.hub.get_dir()) / "checkpoints" / "resnet18-f37072fd.pth",
        ...       sha256_prefix="f37072fd")
    """
    dest = Path(dest)
    expects = bool(sha256 or sha256_prefix or md5 or size is not None)

    def good() -> tuple[str, int] | None:
        if not dest.is_file():
            return None
        if not expects:
            return records.sha256_file(dest)
        digest, n = records.sha256_file(dest)
        if md5 and _md5(dest) != md5.lower():
            return None
        return (digest, n) if _matches(digest, n, sha256, sha256_prefix, size) else None

    if constants.offline():
        if good() is None:
            raise NotCachedError(model_id or url, str(dest))
        return dest
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        error = cannot_write(exc, url, dest)
        if error is None:
            raise
        raise error from None
    from filelock import FileLock

    with FileLock(str(records.lock_path(dest))):
        remove_stale_temps(dest.parent, f".{dest.name}.", ".part")  # of downloads killed mid-transfer: no one writes them now
        have = good()
        if have is None:
            have = _download(url, dest, (sha256, sha256_prefix, md5, size), retries, timeout, backoff, progress)
        _record(dest, have, url, model_id)
    return dest


def _record(dest: Path, have: tuple[str, int], url: str, model_id: str | None) -> None:
    try:
        key = records.key_of(dest)
    except Exception:  # noqa: BLE001 - a file outside the roots is simply not recorded
        return
    records.record(key, have[0], have[1], url=url, model=model_id)


def _md5(path: Path) -> str:
    m = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while chunk := fh.read(records.CHUNK):
            m.update(chunk)
    return m.hexdigest()


def _download(
    url: str,
    dest: Path,
    expected: tuple[str | None, str | None, str | None, int | None],
    retries: int,
    timeout: float,
    backoff: float,
    progress: bool,
) -> tuple[str, int]:
    sha256, prefix, md5, size = expected
    try:
        tmp, digest, n, md5_digest = with_retries(lambda: _stream(url, dest, timeout, progress), url, str(dest),
                                                  retries=retries, backoff=backoff, transient=_transient_urllib,
                                                  host=urllib.parse.urlparse(url).hostname)
    except urllib.error.HTTPError as exc:  # not worth retrying (404, 403, ...)
        raise DownloadError(url, f"HTTP {exc.code} {exc.reason}", str(dest)) from None
    except OSError as exc:
        error = cannot_write(exc, url, dest)
        if error is None:
            raise
        raise error from None
    try:
        if md5 and md5_digest != md5.lower():
            raise IntegrityError(f"Download of {url}", f"md5 {md5}", f"md5 {md5_digest}", f"nothing was written to {dest}; the server's file changed or is corrupt.")
        if not _matches(digest, n, sha256, prefix, size):
            want = sha256 or (f"{prefix}..." if prefix else "?")
            if size is not None and n != size:
                raise IntegrityError(f"Download of {url}", f"{size} bytes", f"{n} bytes", f"nothing was written to {dest}; the server's file changed or the lock is stale.")
            raise IntegrityError(
                f"Download of {url}", f"sha256 {want}", f"sha256 {digest}",
                f"nothing was written to {dest}; the server's file changed, is corrupt, or the lock is stale.",
            )
        os.chmod(tmp, 0o644)  # mkstemp makes files private; caches are shared (as bundle imports and atomic_write)
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)
        return digest, n
    finally:
        tmp.unlink(missing_ok=True)


def cannot_write(exc: OSError, url: str, dest: Path) -> DownloadError | None:
    """The one-line error for a download that could not be written to ``dest`` for want of room or permission
    (``None``: another error). The temporary file is gone by then; the advice names the cache variable that chose
    the folder."""
    try:
        var = records.key_of(dest).partition("/")[0]
    except Exception:  # noqa: BLE001 - a destination outside the cache roots
        var = None
    elsewhere = f"point {var} at a folder on another disk" if var else "choose another destination"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DownloadError(url, f"no space left on the device of {dest.parent}", str(dest), f"Free some space there, or {elsewhere}")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        elsewhere = elsewhere.replace(" on another disk", " you can write")
        return DownloadError(url, f"{dest.parent} cannot be written ({exc.strerror})", str(dest), f"Make it writable, or {elsewhere}")
    return None


def _transient_urllib(exc: BaseException) -> str | None:
    """Why a failed :func:`_stream` attempt (urllib) is worth retrying, or ``None``."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}" if exc.code in RETRY_STATUS else None
    if isinstance(exc, http.client.IncompleteRead):
        return f"the transfer was cut off ({exc.expected} bytes missing)"
    if isinstance(exc, (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError)):
        return f"connection failed ({getattr(exc, 'reason', exc)})"
    return None


def _transient(exc: BaseException) -> str | None:
    """Why ``exc`` (from a hub library such as huggingface_hub) is worth retrying, or ``None``."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(status, int):
        return f"HTTP {status}" if status in RETRY_STATUS else None
    names = {c.__name__ for c in type(exc).__mro__}
    if names & {"TransportError", "ConnectionError", "TimeoutError", "IncompleteRead", "TimeoutException"}:
        return f"connection failed ({exc})"
    return None


@contextlib.contextmanager
def _quiet_hub_log() -> Iterator[None]:
    """huggingface_hub logs each of its own retries on stderr ("Retrying in 1s [Retry 1/5]"); zoo says the outcome
    in one line, so those warnings are held back for the call (ZOO_DEBUG=1 keeps them)."""
    log = logging.getLogger("huggingface_hub")
    level = log.level
    if not constants.debug():
        log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def hub_host() -> str:
    """The Hugging Face endpoint's host name (``HF_ENDPOINT``, else huggingface.co)."""
    return urllib.parse.urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname or "huggingface.co"


def require_resolvable(host: str | None, what: str, dest: str | None = None) -> None:
    """Fail at once, in one line, when ``host`` has no address and no proxy would resolve it for us.

    The hub libraries retry a connection that fails (huggingface_hub five times, 23 s of back-off) and
    zoo's quiet log hides their warnings: without this, an offline ``zoo pull hf:...`` sat silent for
    27 s before saying that the name did not resolve.
    """
    import socket

    if not host or (urllib.request.getproxies() and not urllib.request.proxy_bypass(host)):
        return  # a proxy resolves names itself
    try:
        socket.getaddrinfo(host, 443)
    except (OSError, UnicodeError) as exc:  # only a resolver's "no such name" is an answer; anything else: let the call try
        problem = str(exc)
        if isinstance(exc, socket.gaierror) and _NO_NAME.search(problem):
            raise DownloadError(what, f"connection failed ({problem}): the host name {host} did not resolve (no network? "
                                "ZOO_OFFLINE=1 uses the cache alone)", dest) from None


def with_retries(call: Callable[[], T], what: str, dest: str | None = None, *, retries: int = 3, backoff: float = 1.0,
                 transient: Callable[[BaseException], str | None] | None = None, host: str | None = None) -> T:
    """Run a download ``call``, retrying server errors (429, 5xx) and broken connections.

    The library keeps its own guarantees (huggingface_hub writes ``.incomplete`` files and renames
    them); this adds what it lacks for file transfers: retries with exponential backoff. Anything
    else (404, a refused hash) is raised at once. ``transient`` says why an exception is worth
    retrying (default: hub libraries' errors, :func:`_transient`); zoo's own URL downloads pass urllib's.

    Raises:
        DownloadError: still failing after ``retries + 1`` attempts (one line, with the cache path), or
            at once when ``host`` (the server the call talks to) does not resolve.
    """
    require_resolvable(host, what, dest)
    problem = "no attempt was made"
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * (2 ** (attempt - 1)))
        try:
            with _quiet_hub_log():
                return call()
        except Exception as exc:  # noqa: BLE001 - classified below, re-raised unless transient
            if type(exc).__name__ == "LocalEntryNotFoundError":
                # huggingface_hub could not reach the Hub (it has retried already) and has no cached copy
                raise DownloadError(what, "the Hub could not be reached and no copy is cached (offline? set ZOO_OFFLINE=1 and "
                                    "`zoo cache import` a bundle)", dest) from None
            reason = (transient or _transient)(exc)
            if reason is None:
                raise
            problem = reason.splitlines()[0]
            if _NO_NAME.search(problem):  # no DNS answer: no network here; waiting and retrying changes nothing
                raise DownloadError(what, f"{problem}: the host name did not resolve (no network?) after {attempt + 1} "
                                    "attempt(s)", dest) from None
    raise DownloadError(what, f"{problem} after {retries + 1} attempt(s)", dest)


# getaddrinfo's words (glibc, macOS, Windows) for a host name that does not resolve; huggingface_hub has retried it
# already, and a machine without a network answers the same a minute later (an hf pull took 104 s to say so)
_NO_NAME = re.compile(r"Name or service not known|nodename nor servname|getaddrinfo failed|No address associated with "
                      r"hostname|Temporary failure in name resolution")
