"""Errors of the cache layer. One line each, saying what to do next."""

from __future__ import annotations

from zoo.errors import InvalidInputError, ZooError


class DownloadError(ZooError, OSError):
    """A download failed (HTTP error, connection lost, truncated transfer); nothing was kept."""

    def __init__(self, url: str, problem: str, dest: str | None = None) -> None:
        self.url = url
        self.problem = problem
        self.dest = dest
        where = f"; nothing was written to {dest}" if dest else ""
        super().__init__(f"Download of {url} failed: {problem}{where}. Check the URL and the network, then retry.")


class IntegrityError(ZooError, ValueError):
    """A file's content does not match its expected sha256 or size; the bad copy was not kept."""

    def __init__(self, what: str, expected: str, got: str, todo: str) -> None:
        self.what = what
        self.expected = expected
        self.got = got
        super().__init__(f"{what}: expected {expected}, got {got}; {todo}")


class TrustError(InvalidInputError):
    """Loading would execute code or unpickle objects zoo was not allowed to trust."""
