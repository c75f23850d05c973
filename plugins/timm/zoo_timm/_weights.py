"""Where a timm model's weights come from, and building the model with them.

Order: a local file answered by ``zoo.resolve_weights`` (a plugin's mirror or packaged weights);
else timm's own pretrained loading, from the Hugging Face cache (``$HF_HOME/hub``) or, for the few
tags without a hub repo, ``$TORCH_HOME/hub/checkpoints``. Offline, a cached file is loaded
directly (no socket is opened); with nothing cached, :class:`zoo.errors.NotCachedError` names the
cache path.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import timm
import torch

from timm.models import get_pretrained_cfg

from zoo import constants
from zoo.constants import hf_hub_cache, hf_repo_dir
from zoo.errors import InvalidInputError, NotCachedError, UnknownModelError, close_matches

# safetensors metadata keys a resolved weights file may carry (JSON values)
META_MODEL_KWARGS = "zoo.timm.model_kwargs"
META_PRETRAINED_CFG = "zoo.timm.pretrained_cfg"
HF_FILES = ("model.safetensors", "pytorch_model.bin")





def torch_checkpoint_path(url: str) -> Path:
    """Where torch.hub (and timm's URL loading) caches a checkpoint downloaded from ``url``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url.split("?")[0])


def pretrained_cfg(name: str, tag: str | None) -> dict[str, Any] | None:
    """timm's ``pretrained_cfg`` for ``name.tag`` (``tag=None``: timm's default tag), or ``None``
    when timm knows no such tag."""
    full = f"{name}.{tag}" if tag else name
    try:
        cfg = get_pretrained_cfg(full, allow_unregistered=False)
    except (RuntimeError, ValueError, KeyError):
        cfg = None
    if cfg is None or (tag and cfg.tag != tag):
        return None
    return cfg.to_dict()


def check_arch(model_id: Any) -> None:
    """Raise UnknownModelError (with timm's close names) when timm has no architecture ``name``."""
    if not timm.is_model(model_id.name):
        known = [f"timm:{n}" for n in timm.list_models()]
        raise UnknownModelError(str(model_id), close_matches(f"timm:{model_id.name}", known))


def _split_revision(hub_id: str, revision: str | None) -> tuple[str, str | None]:
    repo, _, rev = hub_id.partition("@")
    return repo, revision or rev or None


def cached_file(cfg: dict[str, Any], revision: str | None = None) -> tuple[Path | None, Path]:
    """Find the weights for ``cfg`` in the native caches.

    Returns:
        ``(file or None, cache path to name in errors)``.
    """
    from huggingface_hub import try_to_load_from_cache

    hub_id = cfg.get("hf_hub_id")
    if hub_id:
        repo, rev = _split_revision(hub_id, revision)
        names = (cfg["hf_hub_filename"],) if cfg.get("hf_hub_filename") else HF_FILES
        for fname in names:
            found = try_to_load_from_cache(repo, fname, cache_dir=str(hf_hub_cache()), revision=rev)
            if isinstance(found, str) and os.path.isfile(found):
                return Path(found), hf_repo_dir(repo)
        return None, hf_repo_dir(repo)
    if cfg.get("url"):
        path = torch_checkpoint_path(cfg["url"])
        return (path if path.is_file() else None), path
    return None, Path(torch.hub.get_dir()) / "checkpoints"


def file_overrides(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(model_kwargs, pretrained_cfg)`` stored in a safetensors file's metadata, else empty."""
    if path.suffix != ".safetensors":
        return {}, {}
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
    try:
        kwargs = json.loads(meta.get(META_MODEL_KWARGS) or "{}")
        cfg = json.loads(meta.get(META_PRETRAINED_CFG) or "{}")
    except ValueError as exc:
        raise InvalidInputError(f"Weights file {path} has unreadable zoo.timm metadata ({exc}); re-create it.") from None
    return dict(kwargs), dict(cfg)


def create(model_id: Any, resolved: Any, *, pretrained: bool, **kwargs: Any) -> torch.nn.Module:
    """Build the timm model for ``model_id`` with its weights (see the module docstring).

    Args:
        model_id: parsed ``timm:arch[.tag][@revision]``.
        resolved: what ``zoo.resolve_weights`` answered (a path), or ``None``.
        pretrained: ``False`` builds random weights with the tag's preprocessing config.
        **kwargs: passed to ``timm.create_model`` (``drop_path_rate=...``).

    Raises:
        UnknownModelError: timm has no such architecture, or no such tag and no weights were resolved.
        NotCachedError: offline and the weights are not cached.
    """
    check_arch(model_id)
    name, tag = model_id.name, model_id.tag
    cfg = pretrained_cfg(name, tag)
    if resolved is not None:
        path = Path(resolved)
        if not path.is_file():
            raise InvalidInputError(f"Weights for {model_id} resolved to {path}, which is not a file; fix the plugin that answered zoo_resolve_weights.")
        extra_kwargs, cfg_over = file_overrides(path)
        base = cfg if cfg is not None else (pretrained_cfg(name, None) or {})
        merged = {**base, **cfg_over, "architecture": name, "tag": tag}
        merged.update(file=str(path), source=None, custom_load=False, state_dict=None)
        # pretrained=False: the same architecture and preprocessing, random weights (a baseline)
        return timm.create_model(name, pretrained=pretrained, pretrained_cfg=merged, **{**extra_kwargs, **kwargs})
    if cfg is None:
        tags = [f"timm:{n}" for n in timm.list_pretrained(f"{name}.*")]
        raise UnknownModelError(str(model_id), close_matches(f"timm:{name}.{tag}", tags) or tags[:3])
    full = f"{name}.{cfg['tag']}" if cfg.get("tag") else name
    if not pretrained:
        return timm.create_model(full, pretrained=False, **kwargs)
    if not (cfg.get("hf_hub_id") or cfg.get("url") or cfg.get("file")):
        tags = [f"timm:{n}" for n in timm.list_pretrained(f"{name}.*")]
        raise UnknownModelError(f"{model_id} (timm has no pretrained weights for '{full}')", tags[:3])
    found, where = cached_file(cfg, model_id.revision)
    if found is not None:  # a cached copy zoo recorded must still be the bytes it recorded (one stat when unchanged)
        from zoo.cache.records import require_unchanged

        require_unchanged(found, model_id)
    if constants.offline():
        if found is None:
            raise NotCachedError(str(model_id), str(where))
        # hub copies are timm-format state dicts; URL checkpoints keep their own format
        custom = False if cfg.get("hf_hub_id") else cfg.get("custom_load", False)
        overlay = {"file": str(found), "source": None, "state_dict": None, "custom_load": custom}
        return timm.create_model(full, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
    overlay = None
    if cfg.get("hf_hub_id") and model_id.revision:
        overlay = {"hf_hub_id": f"{_split_revision(cfg['hf_hub_id'], None)[0]}@{model_id.revision}"}
    cache_dir = str(hf_hub_cache()) if cfg.get("hf_hub_id") else None
    from urllib.parse import urlparse

    from zoo.cache.download import hub_host, with_retries

    model = with_retries(
        lambda: timm.create_model(full, pretrained=True, pretrained_cfg_overlay=overlay, cache_dir=cache_dir, **kwargs),
        f"{model_id} from {cfg.get('hf_hub_id') or cfg.get('url')}",
        host=hub_host() if cfg.get("hf_hub_id") else urlparse(cfg.get("url") or "").hostname,
    )
    if cfg.get("hf_hub_id"):
        from zoo.cache.hub_blobs import check_file

        found, _ = cached_file(cfg, model_id.revision)
        if found is not None:  # huggingface_hub checks sizes only: hold the weights to the Hub's published sha256
            check_file(found, str(model_id))
    return model


def model_files(model_id: Any) -> dict[str, Any]:
    """The weights file ``model_id`` loads, where timm's loading caches it, with its URL and revision.

    Hub-hosted tags: the snapshot file and its ``refs`` entry in ``$HF_HOME/hub`` (revision: the
    snapshot's commit); URL tags: ``$TORCH_HOME/hub/checkpoints/<file>``.
    """
    from zoo.cache.download import hash_prefix_of

    check_arch(model_id)
    cfg = pretrained_cfg(model_id.name, model_id.tag)
    if cfg is None:
        return {"revision": None, "files": []}
    found, where = cached_file(cfg, model_id.revision)
    if cfg.get("hf_hub_id"):
        if found is None:
            return {"revision": None, "files": []}
        repo, rev = _split_revision(cfg["hf_hub_id"], model_id.revision)
        snap = found.parent
        commit = snap.name
        endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
        files = [{"path": str(found), "url": f"{endpoint}/{repo}/resolve/{commit}/{found.name}"}]
        ref = hf_repo_dir(repo) / "refs" / (rev or "main")
        if ref.is_file():
            files.append({"path": str(ref), "url": None})
        return {"revision": commit, "files": files}
    url = cfg.get("url")
    return {"revision": None, "files": [{"path": str(where), "url": url, "sha256_prefix": hash_prefix_of(url) if url else None}]}
