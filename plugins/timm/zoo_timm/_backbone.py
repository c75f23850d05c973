"""The timm loader and its Backbone: pooled features, the original classifier as source head,
timm's own preprocessing, layer groups from timm's ``group_matcher`` and per-stage features."""

from __future__ import annotations

import inspect
import os
import re
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from timm.data import ImageNetInfo, create_transform, infer_imagenet_subset, resolve_model_data_config
from timm.models import group_parameters
from timm.models._manipulate import MATCH_PREV_GROUP
from torch import nn

import zoo
from zoo.backbone import InputSpec, LayerGroup, check_whole
from zoo.errors import InvalidInputError, close_matches
from zoo.frameworks.torch import TorchBackbone, move, with_children

from zoo_timm import _weights


MERGE_ORDINAL = MATCH_PREV_GROUP[0]


class _Params(nn.Module):
    """Holds parameters that a module owns directly but that belong to one group only
    (a ViT's ``cls_token`` / ``pos_embed`` on the root). Not a child of the model."""

    def __init__(self, named: Sequence[tuple[str, nn.Parameter]]) -> None:
        super().__init__()
        for name, p in named:
            self.register_parameter(name.replace(".", "_"), p)


def _cover(module: nn.Module, prefix: str, names: set[str], out: list[nn.Module]) -> None:
    """Append to ``out`` the largest modules whose parameters are all in ``names``."""
    own = [n for n, _ in module.named_parameters()]
    full = [f"{prefix}{n}" for n in own]
    if own and all(n in names for n in full):
        out.append(module)
        return
    direct = [(n, p) for n, p in module.named_parameters(recurse=False) if f"{prefix}{n}" in names]
    if direct:
        out.append(_Params(direct))
    for child_name, child in module.named_children():
        _cover(child, f"{prefix}{child_name}.", names, out)


def _common_prefix(names: Sequence[str]) -> str:
    parts = [n.split(".")[:-1] for n in names]
    common: list[str] = []
    for items in zip(*parts):
        if len(set(items)) != 1:
            break
        common.append(items[0])
    return ".".join(common)


def _pattern(name: str) -> str:
    return "".join("#" if ch.isdigit() else ch for ch in name)


def _short(prefix: str) -> str:
    """``stages.0.blocks`` -> ``stages.0``; ``blocks.0.0`` -> ``blocks.0``: up to the first index."""
    parts = prefix.split(".")
    for i, part in enumerate(parts):
        if part.isdigit():
            return ".".join(parts[: i + 1])
    return prefix


def _own_top(matcher: Any) -> Any:
    """timm merges the final norm / conv_head into the last block group (suffix ``(99999,)``);
    give them a group of their own, after the blocks."""
    if not isinstance(matcher, dict):
        return matcher
    out = {}
    for key, spec in matcher.items():
        if isinstance(spec, (list, tuple)):
            spec = [(rx, (MERGE_ORDINAL - 1,) if suffix == (MERGE_ORDINAL,) else suffix) for rx, suffix in spec]
        out[key] = spec
    return out


def layer_groups(model: nn.Module) -> list[LayerGroup]:
    """Layer groups from timm's coarse ``group_matcher``: stem, each stage or block, then the top.

    Every parameter of ``model`` lands in exactly one group (parameters no rule matches form the
    top, as in timm's own layer-decay grouping).
    """
    if hasattr(model, "group_matcher"):
        grouped = group_parameters(model, _own_top(model.group_matcher(coarse=True)))
        ordered = [grouped[k] for k in sorted(grouped)]
    else:  # pragma: no cover - every timm model in 1.0 has a group matcher
        ordered = [[n] for n, _ in model.named_parameters()]
    ordered = [g for g in ordered if g]
    groups: list[LayerGroup] = []
    n = len(ordered)
    for i, names in enumerate(ordered):
        prefix = _common_prefix(names)
        if i == 0:
            label = "stem"
        elif i == n - 1 and (not prefix or (groups and _pattern(prefix) != _pattern(groups[-1].name))):
            label = "top"
        else:
            label = _short(prefix) or f"group{i}"
        mods: list[nn.Module] = []
        _cover(model, "", set(names), mods)
        groups.append(LayerGroup(label, mods))
    return groups


def _labels(model: nn.Module, num_classes: int) -> list[str] | None:
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    names = cfg.get("label_names")
    if names and len(names) == num_classes:
        return [str(x) for x in names]
    subset = infer_imagenet_subset(cfg if cfg.get("num_classes") == num_classes else {"num_classes": num_classes})
    if subset is None:
        return None
    info = ImageNetInfo(subset)
    return [info.index_to_description(i) for i in range(num_classes)]


def _split_head(model: nn.Module) -> tuple[nn.Module | None, nn.Module | None, int]:
    """Take the classifier off ``model`` (``reset_classifier(0)``); return it, the model's own forward with its
    classifier where that is not one module on the pooled features (else ``None``), and the class count.

    Distilled models (DeiT, PiT, LeViT, EfficientFormer, SwiftFormer) have two heads, ``head`` and ``head_dist``
    (over the class and distillation tokens, or both on the pooled features), whose logits timm averages at eval:
    their whole forward is kept with both heads put back (:func:`zoo.frameworks.torch.with_children`).
    """
    num_classes = int(getattr(model, "num_classes", 0) or 0)
    head = model.get_classifier() if num_classes > 0 else None
    heads = head if isinstance(head, tuple) else ()
    if head is not None and not (isinstance(head, nn.Module) and any(True for _ in head.parameters())):
        head = None  # e.g. distilled ViTs average two heads over two tokens: no single pooled head
    kept = {name: child for name, child in model.named_children() if any(child is h for h in heads)}
    model.reset_classifier(0)
    classifier = with_children(model, kept).eval() if heads and len(kept) == len(heads) else None
    if head is not None:
        head.eval()
    return head, classifier, num_classes


class TimmBackbone(TorchBackbone):
    """A timm model with its classifier removed (pooled features), plus per-stage features."""

    def stage_features(self, inputs: Any, batch_size: int = 32) -> dict[str, np.ndarray]:
        """Pooled features after each stage, keyed by layer-group name, input to output.

        Each stage's feature map (``forward_intermediates``) is average-pooled over space (or
        tokens); the last entry is the model's pooled output, i.e. :meth:`embed`. Used by the
        recommender's probe profile (which depth carries the task).

        Returns:
            ``{group_name: float32 array (n, channels)}``.
        """
        check_whole("batch_size", batch_size, 1)
        names = self._stage_names()
        was = self.model.training
        self.model.eval()
        outs: dict[str, list[np.ndarray]] = {}
        try:
            with torch.inference_mode():
                for chunk in self._chunks(inputs, batch_size):
                    x = move(self.preprocess(chunk), self.device)
                    inter = self.model.forward_intermediates(x, intermediates_only=True)
                    pooled = self.model(x).flatten(1)
                    row: dict[str, torch.Tensor] = {}
                    for name, t in zip(names, inter):
                        row[name] = t.float().mean(dim=(2, 3)) if t.ndim == 4 else t.float().mean(dim=1)
                    row[self._groups[-1].name] = pooled.float()
                    for k, v in row.items():
                        outs.setdefault(k, []).append(v.cpu().numpy())
        finally:
            self.model.train(was)
        return {k: np.concatenate(v, axis=0) for k, v in outs.items()}

    def _stage_names(self) -> list[str]:
        """For each ``forward_intermediates`` output, the name of the group that produces it."""
        info = getattr(self.model, "feature_info", None) or []
        owner: dict[int, str] = {}
        for g in self._groups:
            for m in g.modules:
                for p in m.parameters():
                    owner[id(p)] = g.name
        out = []
        last = self._groups[0].name
        targets = [f["module"] for f in info if isinstance(f, dict) and "module" in f]
        pending = list(targets)
        for name, module in self.model.named_modules():
            for p in module.parameters(recurse=False):
                last = owner.get(id(p), last)
            while pending and pending[0] == name:
                # a stage's output is produced by its last parameterised submodule
                for p in module.parameters():
                    last = owner.get(id(p), last)
                out.append(last)
                pending.pop(0)
        return out if len(out) == len(targets) else [f"stage{i}" for i in range(len(targets))]


#: ``timm.create_model`` arguments that are not load options: zoo sets them from the id, or they
#: would change what the Backbone is (its pre-training head, its pooled output).
NOT_OPTIONS = {
    "pretrained_cfg": "zoo sets it from the id's tag",
    "pretrained_cfg_overlay": "zoo sets it from the id's tag",
    "cache_dir": "zoo uses the Hugging Face / torch cache (set HF_HOME or TORCH_HOME)",
    "checkpoint_path": "the weights come from the id (or a plugin answering zoo_resolve_weights)",
    "num_classes": "a new classifier is made by bb.with_head(num_classes)",
    "features_only": "per-stage features come from bb.stage_features(inputs)",
}
#: Model arguments worth naming when an option is unknown, where the architecture takes them.
COMMON_OPTIONS = ("drop_rate", "drop_path_rate", "global_pool")


def _check_options(model_id: Any, options: dict[str, Any]) -> None:
    bad = sorted(k for k in options if k in NOT_OPTIONS)
    if bad:
        raise InvalidInputError(
            f"{', '.join(bad)} cannot be a load option for timm: {NOT_OPTIONS[bad[0]]}; remove it from zoo.load({str(model_id)!r}, ...)."
        )


def _option_error(model_id: Any, options: dict[str, Any], exc: TypeError) -> InvalidInputError | None:
    """A one-line error for a ``TypeError`` that timm raised about one of ``options``, else ``None``."""
    text = str(exc)
    hit = re.search(r"multiple values for (?:keyword )?argument '(\w+)'", text)
    if hit and hit.group(1) in options:
        return InvalidInputError(
            f"Option {hit.group(1)} is fixed by timm's {model_id.name} architecture; remove it from zoo.load({str(model_id)!r}, ...)."
        )
    hit = re.search(r"(\w+)(?:\.__init__)?\(\) got an unexpected keyword argument '(\w+)'", text)
    if not hit or hit.group(2) not in options:
        return None
    owner, name = hit.group(1), hit.group(2)
    takes: list[str] = []
    try:
        from timm.models import model_entrypoint

        cls = getattr(sys.modules[model_entrypoint(model_id.name).__module__], owner, None)
        if cls is not None:
            takes = [p.name for p in inspect.signature(cls).parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    except (KeyError, RuntimeError, TypeError, ValueError):
        pass
    near = close_matches(name, takes, n=1)
    hint = f" Did you mean {near[0]}?" if near else ""
    common = [c for c in COMMON_OPTIONS if c in takes]
    valid = f"passes to {owner} (e.g. {', '.join(common)})" if common else f"takes for {model_id.name} (e.g. {', '.join(COMMON_OPTIONS[:2])})"
    return InvalidInputError(
        f"Unknown option(s) for timm: {name} ({owner} takes no such argument).{hint} Valid: pretrained, and the model arguments timm.create_model {valid}."
    )


def load(model_id: Any, card: Any, *, pretrained: bool = True, **options: Any) -> TimmBackbone:
    """Load ``timm:<arch>[.<tag>][@revision]`` as a :class:`TimmBackbone`.

    Args:
        model_id: the parsed id; no tag means timm's default tag for the architecture.
        card: its catalog card, if the catalog has one.
        pretrained: ``False`` builds random weights (same preprocessing and groups).
        **options: model arguments passed to ``timm.create_model`` (e.g. ``drop_path_rate=0.1``);
            not those in :data:`NOT_OPTIONS`.

    Raises:
        UnknownModelError: timm has no such architecture or tag.
        NotCachedError: offline and the weights are not cached.
        InvalidInputError: an option the architecture does not take, or one of :data:`NOT_OPTIONS`.

    Example:
        >>> bb = zoo.load("timm:resnet18.a1_in1k")           # doctest: +SKIP
        >>> bb.embed(images).shape                            # doctest: +SKIP
        (2, 512)
    """
    # resolved even for pretrained=False: a plugin's file carries the preprocessing config of its tag
    resolved = zoo.resolve_weights(model_id, card)
    if resolved is not None:
        resolved = os.fspath(resolved)
    _check_options(model_id, options)
    try:
        model = _weights.create(model_id, resolved, pretrained=pretrained, **options)
    except TypeError as exc:
        error = _option_error(model_id, options, exc) if options else None
        if error is None:
            raise
        raise error from None
    model.eval()
    head, classifier, num_classes = _split_head(model)
    data_cfg = resolve_model_data_config(model)
    eval_tf = create_transform(**data_cfg, is_training=False)
    train_tf = create_transform(**data_cfg, is_training=True)
    size = int(data_cfg["input_size"][-1])
    spec = InputSpec(
        modality="image",
        size=size,
        mean=tuple(float(v) for v in data_cfg["mean"]),
        std=tuple(float(v) for v in data_cfg["std"]),
        input_range=(0.0, 1.0),
    )
    feature_dim = int(getattr(model, "head_hidden_size", None) or model.num_features)
    card = _card_for(model_id, card, model)
    bb = TimmBackbone(
        model_id,
        card,
        model,
        groups=layer_groups(model),
        feature_dim=feature_dim,
        input_spec=spec,
        eval_transform=eval_tf,
        train_transform=train_tf,
        head=head,
        classifier=classifier,
        labels=_labels(model, num_classes) if head is not None or classifier is not None else None,
    )
    bb.channels_last = str(getattr(model, "output_fmt", "NCHW")) == "NHWC"  # timm's Swin family: stages give (N, H, W, C)
    return bb


def _card_for(model_id: Any, card: Any, model: nn.Module) -> Any:
    """The card of the weights actually loaded (a bare arch gets timm's default tag's card)."""
    tag = (getattr(model, "pretrained_cfg", {}) or {}).get("tag")
    if model_id.tag is None and tag:
        want = f"timm:{model_id.name}.{tag}"
        if card is None or card.id != want:
            try:
                return zoo.info(want)
            except zoo.errors.ZooError:
                return card
    return card
