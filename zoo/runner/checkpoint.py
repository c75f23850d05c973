"""Atomic per-epoch checkpoints: safetensors for the model, a small torch file for the rest.

Layout under ``RUN/checkpoints``: one folder per epoch (``epoch-0003/`` holding ``model.safetensors``
and ``state.pt``), written as a hidden temporary folder, fsynced, then renamed into place; then the
pointer file ``LATEST`` (the folder's name) is replaced atomically; only then are older folders
removed. A write interrupted at any point (killed, full disk, failed rename) leaves ``LATEST``
pointing at the previous, complete checkpoint; stray temporary folders are ignored and cleaned.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from zoo.errors import CheckpointError

POINTER = "LATEST"



# the advice of a run that diverged after a checkpoint: a --resume continues the same plan, bit-exactly, into the
# same NaN, and refuses a plan with other learning rates (zoo.runner.pipeline._check_out)
DIVERGED_RERUN = " with a new --out (a --resume continues this plan, and would diverge again)"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def save(root: str | Path, epoch: int, model_state: dict[str, Any], state: dict[str, Any]) -> Path:
    """Write checkpoint ``epoch`` under ``root`` atomically and point ``LATEST`` at it.

    Args:
        root: the checkpoints folder.
        epoch: the finished epoch (1-based); names the folder.
        model_state: tensors (``state_dict``), saved with safetensors.
        state: optimizer/scheduler state, counters, history, RNG states (``torch.save``; loadable with
            ``weights_only=True``).

    Raises:
        CheckpointError: the write failed; the previous checkpoint is still what ``LATEST`` names.
    """
    import torch
    from safetensors.torch import save_file

    def write(tmp: Path) -> list[str]:
        tensors = {k: v.detach().contiguous().cpu() for k, v in model_state.items()}
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"epoch": str(epoch)})
        torch.save(state, tmp / "state.pt")
        return ["model.safetensors", "state.pt"]

    return commit_epoch(Path(root), epoch, write)


def commit_epoch(root: Path, epoch: int, write: Callable[[Path], Sequence[str]]) -> Path:
    """The atomic part of every checkpoint (torch and Keras runs): ``write(tmp)`` fills a hidden
    temporary folder and names its files; they are fsynced, the folder is renamed to ``epoch-NNNN``,
    ``LATEST`` is replaced atomically, and only then are older folders removed.

    Raises:
        CheckpointError: the write failed; the previous checkpoint is still what ``LATEST`` names.
    """
    from zoo._io import atomic_write_text

    root.mkdir(parents=True, exist_ok=True)
    name = f"epoch-{epoch:04d}"
    final = root / name
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}."))
    try:
        os.chmod(tmp, root.stat().st_mode & 0o777)  # mkdtemp's 0700 would lock others out of a shared run folder: as mkdir made root
        for f in write(tmp):
            _fsync_file(tmp / f)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(root)
        atomic_write_text(root / POINTER, name + "\n")
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(f"{root}: cannot write the epoch-{epoch} checkpoint ({exc}); the previous checkpoint is kept, free disk space and rerun with --resume.") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _cleanup(root, keep=name)
    return final


def _cleanup(root: Path, keep: str) -> None:
    for p in root.iterdir():
        if p.is_dir() and p.name != keep and (p.name.startswith("epoch-") or p.name.startswith(".epoch-")):
            shutil.rmtree(p, ignore_errors=True)


def latest(root: str | Path) -> Path | None:
    """The folder ``LATEST`` names under ``root``, or ``None`` when there is no complete checkpoint."""
    root = Path(root)
    try:
        name = (root / POINTER).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    path = root / name
    if name.startswith("epoch-") and (path / "model.safetensors").is_file() and (path / "state.pt").is_file():
        return path
    return None


def load(root: str | Path) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """``(model_state, state)`` of the latest checkpoint under ``root``, or ``None`` when there is none.

    Raises:
        CheckpointError: ``LATEST`` names a checkpoint that cannot be read.
    """
    import torch
    from safetensors.torch import load_file

    path = latest(root)
    if path is None:
        return None
    try:
        model_state = load_file(str(path / "model.safetensors"))
        state = torch.load(path / "state.pt", map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one error for the user
        raise CheckpointError(f"{path}: cannot read the checkpoint ({exc}); delete it to start over.") from None
    return model_state, state
