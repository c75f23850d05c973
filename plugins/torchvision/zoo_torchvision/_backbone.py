"""Loader for ``torchvision:<model>.<WEIGHTS>`` ids: torchvision's builders, weights and transforms.

The model is built by ``torchvision.models.get_model(name, weights=member)``, so every quirk of a
torchvision builder (DenseNet key renames, GoogLeNet/Inception auxiliary heads, ViT image sizes)
stays torchvision's. The checkpoint comes from ``zoo.resolve_weights`` when a plugin answers, else
from torchvision's own cache ``$TORCH_HOME/hub/checkpoints/<file>`` (downloaded there by
``torch.hub.load_state_dict_from_url`` with its hash-prefix check), and is always read with
``weights_only=True`` (or from safetensors) before the builder sees it.
"""

from __future__ import annotations

import os
import pickle
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torchvision.models as tvm
from torch import nn
from torchvision import transforms as T

from zoo import constants
from zoo._ids import ModelId
from zoo.backbone import InputSpec
from zoo.catalog import ModelCard
from zoo.errors import InvalidInputError, NotCachedError, UnknownModelError, close_matches
from zoo.frameworks.torch import TorchBackbone
from zoo_torchvision import _arch

SOURCE = "torchvision"
_LOAD_LOCK = threading.Lock()


# ---- ids and weights ---------------------------------------------------------------------------
def classification_models() -> list[str]:
    """Names of torchvision's classification models (``torchvision.models`` only)."""
    return list(tvm.list_models(module=tvm))


def weights_member(model_id: ModelId) -> Any:
    """The weights enum member an id names; no tag means the enum's ``DEFAULT``.

    Raises:
        UnknownModelError: the model or the weights tag is not in the installed torchvision.
    """
    names = classification_models()
    if model_id.name not in names:
        candidates = [f"{SOURCE}:{n}" for n in names]
        raise UnknownModelError(str(model_id), close_matches(model_id.arch, candidates))
    enum = tvm.get_model_weights(model_id.name)
    if model_id.tag is None:
        return enum.DEFAULT
    try:
        return enum[model_id.tag]
    except KeyError:
        candidates = [f"{model_id.arch}.{m.name}" for m in enum] + [f"{model_id.arch}.DEFAULT"]
        raise UnknownModelError(str(model_id), close_matches(model_id.base, candidates) or candidates[:3]) from None


def checkpoint_path(member: Any) -> Path:
    """Where torchvision's download puts ``member``'s file: ``$TORCH_HOME/hub/checkpoints/<basename>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(member.url)


def _read_checkpoint(path: Path, member: Any, model_id: ModelId) -> dict[str, Any]:
    """Read a ``zoo_resolve_weights`` answer: a file, or a folder holding ``<file>`` or ``<stem>.safetensors``."""
    if path.is_dir():
        stem = Path(os.path.basename(member.url)).stem
        found = [c for c in (path / f"{stem}.safetensors", path / os.path.basename(member.url)) if c.is_file()]
        path = found[0] if found else path / os.path.basename(member.url)
    if not path.is_file():
        raise InvalidInputError(
            f"{path}: a zoo_resolve_weights plugin gave this location for {model_id} but it does not exist; "
            "fix that plugin's mirror or disable it with ZOO_DISABLE_PLUGINS."
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    with _refusing_pickles(path):
        return torch.load(path, map_location="cpu", weights_only=True)


@contextmanager
def _refusing_pickles(path: Path) -> Iterator[None]:
    try:
        yield
    except pickle.UnpicklingError as exc:
        raise InvalidInputError(
            f"{path} holds more than tensors and was refused by torch.load(weights_only=True); "
            "delete it so that it is downloaded again, or convert it to safetensors."
        ) from exc


def state_dict_for(model_id: ModelId, member: Any, card: ModelCard | None) -> dict[str, Any]:
    """The checkpoint of ``member``, read safely, from a ``zoo_resolve_weights`` answer or torchvision's cache.

    Raises:
        NotCachedError: offline (``ZOO_OFFLINE``) and the file is not in ``$TORCH_HOME/hub/checkpoints``.
        InvalidInputError: the file holds pickled objects other than tensors.
    """
    import zoo

    resolved = zoo.resolve_weights(model_id, card)
    if resolved is not None:
        return _read_checkpoint(Path(resolved), member, model_id)
    path = checkpoint_path(member)
    if not path.is_file() and constants.offline():
        raise NotCachedError(str(model_id), str(path))
    if not path.is_file():
        # zoo's downloader: temp file, torchvision's hash-prefix check, fsync, rename, per-file lock
        from zoo.cache.download import fetch, hash_prefix_of

        fetch(member.url, path, sha256_prefix=hash_prefix_of(member.url), model_id=str(model_id))
    else:  # a cached copy zoo recorded must still be the bytes it recorded (one stat when unchanged)
        from zoo.cache.records import require_unchanged

        require_unchanged(path, model_id)
    with _refusing_pickles(path):
        return torch.load(path, map_location="cpu", weights_only=True)


def model_files(model_id: ModelId) -> dict[str, Any]:
    """The checkpoint ``model_id`` needs, for ``zoo_model_files``: path, URL and published hash prefix."""
    from zoo.cache.download import hash_prefix_of

    member = weights_member(model_id)
    return {
        "revision": None,
        "files": [{"path": str(checkpoint_path(member)), "url": member.url, "sha256_prefix": hash_prefix_of(member.url)}],
    }


@contextmanager
def _serving(member: Any, state_dict: dict[str, Any]) -> Iterator[None]:
    """Make ``member.get_state_dict`` return ``state_dict`` while torchvision's builder runs.

    torchvision's builders read checkpoints with ``weights_only=False`` and only from its cache;
    this hands them the dict read above instead. The override lives on this one enum member, for
    the duration of one build, under a lock.
    """
    with _LOAD_LOCK:
        member.get_state_dict = lambda *args, **kwargs: state_dict
        try:
            yield
        finally:
            del member.get_state_dict


def build_model(name: str, member: Any, state_dict: dict[str, Any]) -> nn.Module:
    """``torchvision.models.get_model(name, weights=member)`` with ``state_dict`` as the checkpoint."""
    with _serving(member, state_dict):
        return tvm.get_model(name, weights=member)


# ---- preprocessing -----------------------------------------------------------------------------
def transforms_for(member: Any) -> tuple[Any, Any, InputSpec]:
    """Eval transform (``member.transforms()``), train transform and input spec of a weights member.

    Train: ``RandomResizedCrop(crop)`` + ``RandomHorizontalFlip`` + ``ToTensor`` + ``Normalize``
    with the crop size, interpolation, mean and std of the eval transform.
    """
    eval_tf = member.transforms()
    crop = int(eval_tf.crop_size[0])
    mean, std = tuple(float(v) for v in eval_tf.mean), tuple(float(v) for v in eval_tf.std)
    train_tf = T.Compose(
        [
            T.RandomResizedCrop(crop, interpolation=eval_tf.interpolation, antialias=True),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )
    spec = InputSpec(modality="image", size=crop, channels_last=False, mean=mean, std=std, input_range=(0.0, 1.0))
    return eval_tf, train_tf, spec


# ---- catalog card ------------------------------------------------------------------------------
def _top1(meta: dict[str, Any]) -> float | None:
    value = meta.get("_metrics", {}).get("ImageNet-1K", {}).get("acc@1")
    if value is None or value != value:  # NaN: weights without a usable classifier
        return None
    return float(value)


def _first_sentence(text: str) -> str:
    """First sentence of an enum's RST ``_docs``, links and markup removed."""
    flat = re.sub(r"\s*<[^>]*>`_", "`", " ".join((text or "").split())).replace("`", "")
    return flat.split(". ")[0].strip().rstrip(".")


def card_dict(name: str, member: Any, *, feature_dim: int, n_groups: int, family: str | None = None) -> dict[str, Any]:
    """Catalog fields of one weights member, figures taken from ``member.meta`` and its transforms."""
    meta = member.meta
    eval_tf = member.transforms()
    top1 = _top1(meta)
    has_head = bool(meta.get("categories")) and top1 is not None
    if "SWAG" in member.name:
        pretrain = "swag+imagenet-1k"
    elif member.name.startswith("IMAGENET1K"):
        pretrain = "imagenet-1k"
    else:
        pretrain = None
    docs = _first_sentence(meta.get("_docs", ""))
    return {
        "id": f"{SOURCE}:{name}.{member.name}",
        "family": family or _arch.family_of(name),
        "modality": "image",
        "framework": "torch",
        "tasks": (["image-classification"] if has_head else []) + ["image-feature-extraction"],
        "params": meta.get("num_params"),
        "gflops": meta.get("_ops"),
        "input_size": int(eval_tf.crop_size[0]),
        "feature_dim": int(feature_dim),
        "top1": top1,
        "top1_dataset": "imagenet-1k" if top1 is not None else None,
        "pretrain_data": pretrain,
        "license": meta.get("license"),
        "layer_groups": int(n_groups),
        "input_range": [0.0, 1.0],
        "mean": [float(v) for v in eval_tf.mean],
        "std": [float(v) for v in eval_tf.std],
        "url": member.url,
        "description": f"torchvision {name} {member.name}" + (f": {docs}" if docs else ""),
        "default": member is type(member).DEFAULT,
    }


def num_classes(member: Any) -> int | None:
    """Classes of the weights' classifier, or ``None`` when the weights have no usable one."""
    cats = member.meta.get("categories")
    return len(cats) if cats and _top1(member.meta) is not None else None


# ---- the handle --------------------------------------------------------------------------------
class TorchvisionBackbone(TorchBackbone):
    """A torchvision classification model as a zoo Backbone.

    ``model`` is the torchvision model with its final linear classifier replaced by
    ``nn.Identity`` (see :mod:`zoo_torchvision._arch` for what each family returns);
    ``source_head`` is that removed layer, ``labels`` are ``weights.meta["categories"]``.
    SqueezeNet has no such layer: ``predict`` runs torchvision's own forward, its convolutional classifier included.

    Attributes:
        weights: the torchvision weights enum member.
    """

    def __init__(self, model_id: ModelId, card: ModelCard | None, model: nn.Module, *, weights: Any, **kwargs: Any) -> None:
        super().__init__(model_id, card, model, **kwargs)
        self.weights = weights


def load(model_id: ModelId, card: ModelCard | None, **options: Any) -> TorchvisionBackbone:
    """Load ``torchvision:<model>[.<WEIGHTS>]`` as a :class:`TorchvisionBackbone`.

    Args:
        model_id: the parsed id; no tag means the weights enum's ``DEFAULT``.
        card: the catalog card zoo found, or ``None``.
        **options: none are supported.

    Raises:
        UnknownModelError: unknown model or weights tag.
        NotCachedError: offline and the checkpoint is not cached.
        InvalidInputError: an option was given.

    Example:
        >>> bb = zoo.load("torchvision:resnet50.IMAGENET1K_V2")  # doctest: +SKIP
        >>> bb.embed(images).shape                                # doctest: +SKIP
        (2, 2048)
    """
    if options:
        raise InvalidInputError(f"torchvision models take no load options; remove {', '.join(sorted(options))}.")
    member = weights_member(model_id)
    resolved_id = model_id.with_tag(member.name)
    if card is None or card.id != resolved_id.base:
        card = _catalog_card(resolved_id)
    state_dict = state_dict_for(resolved_id, member, card)
    model = build_model(model_id.name, member, state_dict)
    model.eval()
    family = card.family if card is not None else _arch.family_of(model_id.name)
    surgery = _arch.to_feature_model(model, model_id.name, num_classes(member))
    groups = _arch.layer_groups(model, family)
    eval_tf, train_tf, spec = transforms_for(member)
    if card is None:
        card = ModelCard.model_validate(
            {**card_dict(model_id.name, member, feature_dim=surgery.feature_dim, n_groups=len(groups), family=family), "origin": SOURCE}
        )
    head = surgery.head.eval() if surgery.head is not None else None
    classifier = surgery.classifier.eval() if surgery.classifier is not None else None
    bb = TorchvisionBackbone(
        resolved_id,
        card,
        model,
        weights=member,
        groups=groups,
        feature_dim=surgery.feature_dim,
        input_spec=spec,
        eval_transform=eval_tf,
        train_transform=train_tf,
        head=head,
        classifier=classifier,
        labels=member.meta.get("categories") if head is not None or classifier is not None else None,
    )
    # Swin's stages give (N, H, W, C) (its head permutes them): a group's output is pooled over H and W
    from torchvision.models.swin_transformer import SwinTransformer

    bb.channels_last = isinstance(model, SwinTransformer)
    return bb


def _catalog_card(model_id: ModelId) -> ModelCard | None:
    import zoo

    try:
        return zoo.info(model_id.base)
    except UnknownModelError:
        return None


__all__ = ["load", "TorchvisionBackbone"]
