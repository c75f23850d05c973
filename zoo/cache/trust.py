"""What zoo agrees to execute: tensors only from pickles, and remote code only when pinned and allowed.

* :func:`safe_torch_load` reads a checkpoint with ``torch.load(weights_only=True)`` (safetensors
  first when a ``.safetensors`` twin exists); a pickle that holds anything but tensors is refused
  before any of its objects is built.
* :func:`check_remote_code` guards Hugging Face ``trust_remote_code`` and
  :func:`check_torch_hub_repo` guards ``torch.hub.load`` of a GitHub repository: both need the id
  pinned to a revision and allowed by ``ZOO_TRUST_REMOTE_CODE`` (a comma list of ids, or ``1``).
"""

from __future__ import annotations

import json
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


def safetensors_problem(path: str | Path) -> str | None:
    """Why ``path`` is not a whole safetensors file (cut off, or a garbled header), or ``None``.

    Reads the header only (no tensors): the 8-byte header length, the JSON header, and whether the
    file's size is exactly what the header's data offsets say.
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                return f"cut off ({size} bytes, no safetensors header)"
            n = int.from_bytes(head, "little")
            if n > min(size - 8, 100 << 20):
                return f"cut off or garbled (its header claims {n} bytes, the file has {size})"
            header = json.loads(fh.read(n))
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    except ValueError:
        return "garbled (its header is not JSON)"
    if not isinstance(header, dict):
        return "garbled (its header is not a JSON object)"
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            return f"garbled (tensor {name!r} has no data offsets)"
        end = max(end, offsets[1])
    if 8 + n + end != size:
        kind = "cut off" if 8 + n + end > size else "grown"
        return f"{kind} ({size} bytes, its header says {8 + n + end})"
    return None


def load_safetensors(path: str | Path) -> dict[str, Any]:
    """``safetensors.torch.load_file`` on CPU, with a damaged file refused in one line.

    Raises:
        InvalidInputError: the file is cut off or garbled (the message names it and says what to do).
    """
    from zoo.errors import InvalidInputError

    why = safetensors_problem(path)
    if why is not None:
        raise InvalidInputError(f"{path} is {why}; delete it so it is fetched again, or run `zoo cache verify --repair` if zoo recorded it.")
    from safetensors.torch import load_file

    return load_file(str(path), device="cpu")


def safe_torch_load(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint without executing pickled code.

    A ``<stem>.safetensors`` beside ``path`` (or ``path`` itself being one) is read with
    safetensors; anything else with ``torch.load(map_location="cpu", weights_only=True)``.

    Raises:
        TrustError: the pickle holds objects other than tensors and plain containers.
        InvalidInputError: the safetensors file is cut off or garbled (see :func:`load_safetensors`).
    """
    path = Path(path)
    twin = path.with_suffix(".safetensors")
    if path.suffix == ".safetensors" or twin.is_file():
        return load_safetensors(path if path.suffix == ".safetensors" else twin)
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsupported object"
        raise TrustError(
            f"{path} holds pickled objects other than tensors ({first[:120]}) and was refused by "
            "torch.load(weights_only=True); delete it so it is downloaded again, or convert it to safetensors."
        ) from None
