"""Atomic per-epoch checkpoints of a Keras / TF Hub run (``zoo.runner.keras_run``).

Layout under ``RUN/checkpoints`` as for torch runs (:mod:`zoo.runner.checkpoint`, whose folder and
pointer helpers this reuses): one folder per epoch, ``epoch-0003/`` holding ``model.weights.h5``
(``model.save_weights``), ``optimizer.npz`` (every variable of every group optimizer, in order;
read back with ``allow_pickle=False``) and ``state.json`` (epoch, best, history, seed). Written as
a hidden temporary folder, fsynced, renamed into place; then ``LATEST`` is replaced atomically;
only then are older folders removed. An interrupted write leaves ``LATEST`` on the previous one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from zoo.errors import CheckpointError
from zoo.runner import checkpoint as _ckpt
from zoo.runner.keras_model import WEIGHTS_NAME, write_weights_file

STATE, OPTIMIZER = "state.json", "optimizer.npz"



def save_checkpoint(root: Path, epoch: int, model: Any, optimizers: Sequence[Any], state: dict[str, Any]) -> Path:
    """Write ``epoch-NNNN/`` (weights, optimizer variables, JSON state) atomically and point ``LATEST`` at it.

    Raises:
        CheckpointError: the write failed; the previous checkpoint is still what ``LATEST`` names.
    """
    def write(tmp: Path) -> list[str]:
        write_weights_file(model, tmp / WEIGHTS_NAME)
        arrays = {f"{j}/{i}": np.asarray(v.numpy()) for j, opt in enumerate(optimizers) for i, v in enumerate(opt.variables)}
        with open(tmp / OPTIMIZER, "wb") as fh:
            np.savez(fh, **arrays)
        (tmp / STATE).write_text(json.dumps(state), encoding="utf-8")
        return [WEIGHTS_NAME, OPTIMIZER, STATE]

    return _ckpt.commit_epoch(root, epoch, write)


def latest_checkpoint(root: Path) -> Path | None:
    """The complete checkpoint folder ``LATEST`` names, or ``None``."""
    try:
        name = (root / _ckpt.POINTER).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    path = root / name
    if name.startswith("epoch-") and all((path / f).is_file() for f in (WEIGHTS_NAME, OPTIMIZER, STATE)):
        return path
    return None


def load_checkpoint(root: Path, model: Any, optimizers: Sequence[Any]) -> dict[str, Any] | None:
    """Restore the latest checkpoint into ``model`` and the (built) ``optimizers``; its state, or ``None``.

    Raises:
        CheckpointError: ``LATEST`` names a checkpoint that cannot be read or does not fit.
    """
    path = latest_checkpoint(root)
    if path is None:
        return None
    try:
        model.load_weights(str(path / WEIGHTS_NAME))
        with np.load(path / OPTIMIZER, allow_pickle=False) as z:
            for j, opt in enumerate(optimizers):
                for i, v in enumerate(opt.variables):
                    v.assign(z[f"{j}/{i}"])
        return json.loads((path / STATE).read_text(encoding="utf-8"))
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one error for the user
        raise CheckpointError(f"{path}: cannot read the checkpoint ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); delete it to start over.") from None
