"""Model ids: ``source:name[.tag][@revision]``, parsed by one function into a frozen value."""

from __future__ import annotations

import re
from dataclasses import dataclass

from zoo.errors import MalformedIdError

_SOURCE = re.compile(r"^[a-z][a-z0-9_-]*$")
# names may hold "/" (hf:org/model, tfhub:google/.../5), letters, digits, "_", "-", "."
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_/\-.]*$")
_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-./]*$")


@dataclass(frozen=True, order=True)
class ModelId:
    """A parsed model id.

    Attributes:
        source: the plugin source, e.g. ``timm``.
        name: the architecture or repository, e.g. ``resnet50`` or ``google/vit-base-patch16-224``.
        tag: the weights tag, e.g. ``a1_in1k``; ``None`` means the source's default weights.
        revision: a pinned revision (commit, version), or ``None``.
    """

    source: str
    name: str
    tag: str | None = None
    revision: str | None = None

    @property
    def base(self) -> str:
        """``source:name[.tag]`` without the revision: the catalog key."""
        return f"{self.source}:{self.name}" + (f".{self.tag}" if self.tag else "")

    @property
    def arch(self) -> str:
        """``source:name`` without tag and revision."""
        return f"{self.source}:{self.name}"

    def with_tag(self, tag: str | None) -> ModelId:
        return ModelId(self.source, self.name, tag, self.revision)

    def __str__(self) -> str:
        return self.base + (f"@{self.revision}" if self.revision else "")


def parse_id(text: str, *, tagged: bool = True) -> ModelId:
    """Parse ``source:name[.tag][@revision]``.

    The tag is what follows the first dot of the last path segment (timm's rule), so ``timm:resnet50.a1_in1k``
    has tag ``a1_in1k``. Sources whose names carry dots of their own (Hugging Face repos such as
    ``hf:org/model-v1.5``) are parsed with ``tagged=False``; :func:`zoo.info` retries that way when
    the tagged reading is unknown.

    Args:
        text: the id as a user wrote it.
        tagged: split a trailing ``.tag`` off the name.

    Returns:
        The frozen :class:`ModelId`.

    Raises:
        MalformedIdError: the text does not follow the grammar; the message says what is wrong.

    Example:
        >>> parse_id("timm:convnext_tiny.fb_in22k@v1")
        ModelId(source='timm', name='convnext_tiny', tag='fb_in22k', revision='v1')
    """
    if not isinstance(text, str):
        raise MalformedIdError(repr(text), "an id must be a string")
    raw = text.strip()
    if not raw:
        raise MalformedIdError(text, "it is empty")
    if any(ch.isspace() for ch in raw):
        raise MalformedIdError(text, "it contains whitespace")
    if ":" not in raw:
        raise MalformedIdError(text, "the source is missing (no ':')")
    source, rest = raw.split(":", 1)
    if not source:
        raise MalformedIdError(text, "the source before ':' is empty")
    if not _SOURCE.match(source):
        raise MalformedIdError(text, f"source {source!r} must be lower-case letters, digits, '_' or '-'")
    if rest.startswith("//"):
        raise MalformedIdError(text, "URLs are not ids; use the source's id form (e.g. tfhub:google/...)")
    revision = None
    if "@" in rest:
        rest, revision = rest.rsplit("@", 1)
        if not revision:
            raise MalformedIdError(text, "the revision after '@' is empty")
        if not _REVISION.match(revision):
            raise MalformedIdError(text, f"revision {revision!r} has characters other than letters, digits, '_-./'")
    if not rest:
        raise MalformedIdError(text, "the model name after ':' is empty")
    if ":" in rest or "@" in rest:
        raise MalformedIdError(text, "it has more than one ':' or '@'")
    if not _NAME.match(rest) or rest.endswith((".", "/")) or "//" in rest or ".." in rest:
        raise MalformedIdError(text, f"name {rest!r} must be letters, digits, '_', '-', '/' and single dots")
    name, tag = rest, None
    if tagged:
        head, _, last = rest.rpartition("/")
        if "." in last:
            stem, tag = last.split(".", 1)
            name = f"{head}/{stem}" if head else stem
    return ModelId(source=source, name=name, tag=tag, revision=revision)
