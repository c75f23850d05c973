"""What zoo agrees to execute: tensors only from pickles, and remote code only when pinned and allowed.

* :func:`safe_torch_load` reads a checkpoint with ``torch.load(weights_only=True)`` (safetensors
  first when a ``.safetensors`` twin exists); a pickle that holds anything but tensors is refused
  before any of its objects is built.
* :func:`check_remote_code` guards Hugging Face ``trust_remote_code`` and
  :func:`check_torch_hub_repo` guards ``torch.hub.load`` of a GitHub repository: both need the id
  pinned to a revision and allowed by ``ZOO_TRUST_REMOTE_CODE`` (a comma list of ids, or ``1``).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zoo.cache.errors import TrustError

TRUST_VAR = "ZOO_TRUST_REMOTE_CODE"


def _allowed() -> set[str]:
    raw = os.environ.get(TRUST_VAR, "")
    return {p.strip() for p in raw.split(",") if p.strip()}


def is_allowed(model_id: Any) -> bool:
    """True when ``ZOO_TRUST_REMOTE_CODE`` is ``1`` or lists the id (with or without its revision)."""
    allowed = _allowed()
    if allowed & {"1", "true", "yes", "on"}:
        return True
    text = str(model_id)
    base = getattr(model_id, "base", text.split("@", 1)[0])
    return text in allowed or base in allowed


def check_remote_code(model_id: Any, *, what: str = "trust_remote_code") -> None:
    """Allow running a repository's own Python code only for a pinned, allowed id.

    Args:
        model_id: the parsed id (``hf:org/model@<commit>``) or its text.
        what: the feature named in the refusal.

    Raises:
        TrustError: the id has no ``@revision`` or is not allowed; the message says how to allow it.

    Example:
        >>> os.environ["ZOO_TRUST_REMOTE_CODE"] = "hf:org/model"   # doctest: +SKIP
        >>> check_remote_code(zoo.parse_id("hf:org/model@0123abc", tagged=False))  # doctest: +SKIP
    """
    text = str(model_id)
    revision = getattr(model_id, "revision", None) if not isinstance(model_id, str) else (text.split("@", 1)[1] if "@" in text else None)
    base = text.split("@", 1)[0]
    if not revision:
        raise TrustError(
            f"{text}: {what} runs code from the repository, so zoo refuses it unless the id is pinned: "
            f"load {base}@<commit> and set {TRUST_VAR}={base} (or 1 for every pinned id)."
        )
    if not is_allowed(model_id):
        raise TrustError(
            f"{text}: {what} runs code from the repository and {base} is not allowed: "
            f"set {TRUST_VAR}={base} (a comma list of ids, or 1) after reading that code at revision {revision}."
        )


def check_torch_hub_repo(repo: str) -> None:
    """Allow ``torch.hub.load(repo, ...)`` only for ``owner/name:ref`` listed in ``ZOO_TRUST_REMOTE_CODE``.

    Raises:
        TrustError: no ``:ref`` pin, or the repository is not allowed.
    """
    name, _, ref = repo.partition(":")
    if not ref:
        raise TrustError(
            f"torch.hub repository {repo!r} runs its hubconf.py, so zoo refuses it unless pinned: "
            f"write {name}:<commit or tag> and set {TRUST_VAR}=torchhub:{name} (or 1)."
        )
    allowed = _allowed()
    if not (allowed & {"1", "true", "yes", "on"} or {f"torchhub:{name}", f"torchhub:{repo}", repo, name} & allowed):
        raise TrustError(
            f"torch.hub repository {repo!r} runs its hubconf.py and is not allowed: set {TRUST_VAR}=torchhub:{name} "
            "(a comma list, or 1) after reading that code."
        )


def prefer_safetensors(names: Sequence[str]) -> list[str]:
    """The weight files to use from a listing: the ``.safetensors`` ones when there are any."""
    safe = [n for n in names if n.endswith(".safetensors")]
    return safe or [n for n in names if n.endswith((".bin", ".pth", ".pt", ".ckpt"))]


def safe_torch_load(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint without executing pickled code.

    A ``<stem>.safetensors`` beside ``path`` (or ``path`` itself being one) is read with
    safetensors; anything else with ``torch.load(map_location="cpu", weights_only=True)``.

    Raises:
        TrustError: the pickle holds objects other than tensors and plain containers.
    """
    path = Path(path)
    twin = path.with_suffix(".safetensors")
    if path.suffix == ".safetensors" or twin.is_file():
        from safetensors.torch import load_file

        return load_file(str(path if path.suffix == ".safetensors" else twin), device="cpu")
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsupported object"
        raise TrustError(
            f"{path} holds pickled objects other than tensors ({first[:120]}) and was refused by "
            "torch.load(weights_only=True); delete it so it is downloaded again, or convert it to safetensors."
        ) from None
