"""PyTorch base for Backbone handles: batching, freezing with BatchNorm policy, LR groups, heads.

A torch source builds ``model`` as an ``nn.Module`` that maps the output of ``preprocess`` (a
tensor, or a dict of tensors passed as keyword arguments) to pooled ``(N, feature_dim)`` features,
and passes its layer groups, transforms and, where it has one, its pre-training head and labels.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from zoo.backbone import Backbone, InputSpec, LayerGroup
from zoo.errors import InvalidInputError
from zoo.inputs import load_images

_BN = nn.modules.batchnorm._BatchNorm


def _keep_bn_eval(module: nn.Module, args: Any) -> None:
    # forward pre-hook on BatchNorm of frozen groups: inference mode for this call whatever .train() said
    module.__dict__["_zoo_mode"] = module.training
    module.training = False


def _restore_mode(module: nn.Module, args: Any, out: Any) -> None:
    # its forward hook: the mode .train()/.eval() set comes back, so a group unfrozen later trains in train mode
    module.training = module.__dict__.pop("_zoo_mode", module.training)


def with_children(model: nn.Module, children: Mapping[str, nn.Module]) -> nn.Module:
    """A shallow copy of ``model`` whose top-level children named in ``children`` are those modules instead; every
    other module, parameter and buffer is ``model``'s own (nothing is copied). A source keeps its whole model's
    forward this way, with the classifier it took off put back, where that classifier does not read the pooled
    features (SqueezeNet's convolution before the pooling, the two heads of timm's distilled models)."""
    clone = copy.copy(model)
    clone._modules = dict(model._modules)
    clone._modules.update(children)
    return clone


def call_model(model: nn.Module, batch: Any) -> Any:
    """Call a model with a tensor or with a dict of tensors as keyword arguments."""
    if isinstance(batch, Mapping):
        return model(**batch)
    return model(batch)


def move(batch: Any, device: torch.device | str) -> Any:
    if isinstance(batch, Mapping):
        return {k: (v.to(device) if hasattr(v, "to") else v) for k, v in batch.items()}
    return batch.to(device)


def decay_groups(model: nn.Module, groups: Sequence[Mapping[str, Any]], weight_decay: float) -> list[dict[str, Any]]:
    """``groups`` (optimizer parameter groups) with weight decay off for biases, norm weights and the
    model's own ``no_weight_decay()`` names, as timm's ``param_groups_weight_decay`` and the Hugging
    Face Trainer do: a group holding both kinds becomes two groups of the same name and learning rate.

    ``weight_decay == 0``: every group gets ``weight_decay`` 0 and none is split.
    """
    wd = float(weight_decay)
    if wd == 0.0:
        return [{**g, "weight_decay": 0.0} for g in groups]
    skip = set()  # timm models name theirs (pos_embed, cls_token, ...), also when wrapped in a classifier
    for prefix, m in model.named_modules():
        if callable(getattr(m, "no_weight_decay", None)):
            skip |= {f"{prefix}.{name}" if prefix else name for name in m.no_weight_decay()}
    plain = {id(p) for n, p in model.named_parameters() if p.ndim <= 1 or n.endswith(".bias") or n in skip}
    out = []
    for g in groups:
        decay = [p for p in g["params"] if id(p) not in plain]
        rest = [p for p in g["params"] if id(p) in plain]
        out += [{**g, "params": ps, "weight_decay": w} for ps, w in ((decay, wd), (rest, 0.0)) if ps]
    return out


def batch_len(batch: Any) -> int:
    if isinstance(batch, Mapping):
        return len(next(iter(batch.values())))
    return len(batch)


def pool_output(out: Any, mask: Any = None, channels_last: bool = False) -> torch.Tensor | None:
    """A module's output pooled to ``(N, d)`` float: the mean over space (NCHW, or NHWC with ``channels_last``: Swin
    stages), over real tokens (``(N, L, d)`` with the attention mask), else flattened; ``None`` when it is not a tensor.
    The pooling of every layer group's features (:mod:`zoo.recommender.features`) and of lp-concat's mid-level input."""
    if isinstance(out, (tuple, list)):
        out = out[0]
    if hasattr(out, "last_hidden_state"):
        out = out.last_hidden_state
    if not isinstance(out, torch.Tensor):
        return None
    out = out.float()
    if out.ndim == 4:
        return out.mean(dim=(1, 2) if channels_last else (2, 3))
    if out.ndim == 3:
        if mask is not None and mask.shape[:2] == out.shape[:2]:
            m = mask.to(out.dtype).unsqueeze(-1)
            return (out * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return out.mean(dim=1)
    return out.flatten(1)


class ClassifierModel(nn.Module):
    """``backbone`` (pooled features) -> dropout -> linear head. What ``with_head`` returns.

    With ``mid`` (the last module of a layer group) the head reads that module's pooled output
    (:func:`pool_output`) concatenated ahead of the final features: ``mid_dim + feature_dim`` inputs
    (lp-concat, a probe on mid-level and final features). A forward hook on ``mid`` hands its output
    to :meth:`forward`, which takes it back before returning; TorchScript tracing and ONNX export keep it.
    The hook keeps nothing outside this model's own forward: the backbone called alone holds no activation.
    """

    def __init__(self, backbone: nn.Module, feature_dim: int, num_classes: int, dropout: float = 0.0, mid: nn.Module | None = None, mid_dim: int = 0,
                 channels_last: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.mid_dim = int(mid_dim) if mid is not None else 0
        self.channels_last = bool(channels_last)  # the mid-level output's layout (TorchBackbone.channels_last)
        self.head = nn.Linear(self.mid_dim + feature_dim, num_classes)
        self._mid: dict[str, Any] = {}
        self._capturing = False
        if mid is not None:
            mid.register_forward_hook(self._keep_mid)

    def _keep_mid(self, module: nn.Module, args: Any, out: Any) -> None:
        if self._capturing:
            self._mid["out"] = out

    def forward(self, x: Any = None, **kwargs: Any) -> torch.Tensor:
        batch = kwargs if x is None else x
        self._capturing = bool(self.mid_dim)
        try:
            feats = call_model(self.backbone, batch).flatten(1)
        finally:
            self._capturing = False
        if self.mid_dim:
            mask = batch.get("attention_mask") if isinstance(batch, Mapping) else None
            feats = torch.cat([pool_output(self._mid.pop("out"), mask, self.channels_last).to(feats.dtype), feats], 1)
        return self.head(self.dropout(feats))


class TorchBackbone(Backbone):
    """Backbone over a torch ``nn.Module`` that returns pooled features.

    Args:
        model_id, card: as :class:`zoo.Backbone`.
        model: module returning ``(N, feature_dim)`` pooled features.
        groups: layer groups from input to output covering every parameter of ``model``.
        feature_dim: pooled feature size.
        input_spec: what ``preprocess`` produces.
        eval_transform: PIL image -> CHW tensor, exactly the weights' inference preprocessing.
        train_transform: PIL image -> CHW tensor with the source's augmentation (defaults to eval).
        head: the pre-training head mapping pooled features to logits, if any.
        labels: class names for ``head``'s (or ``classifier``'s) outputs.
        classifier: where the pre-training classifier does not read the pooled features (so there is no
            ``head``), the source's whole model mapping a preprocessed batch to its logits; ``predict`` uses it.
    """

    framework = "torch"
    #: the layer groups' 4-D outputs are ``(N, H, W, C)`` (Swin in torchvision and timm), not ``(N, C, H, W)``;
    #: set by the source plugin, read where a group's output is pooled (per-group features, lp-concat's mid-level input)
    channels_last: bool = False

    def __init__(
        self,
        model_id: Any,
        card: Any,
        model: nn.Module,
        *,
        groups: Sequence[LayerGroup],
        feature_dim: int,
        input_spec: InputSpec,
        eval_transform: Callable[[Any], torch.Tensor] | None = None,
        train_transform: Callable[[Any], torch.Tensor] | None = None,
        head: nn.Module | None = None,
        labels: Sequence[str] | None = None,
        classifier: nn.Module | None = None,
    ) -> None:
        super().__init__(model_id, card, model)
        self._groups = list(groups)
        self._feature_dim = int(feature_dim)
        self._input_spec = input_spec
        self.eval_transform = eval_transform
        self.train_transform = train_transform or eval_transform
        self._head = head
        self._classifier = classifier if head is None else None
        self.labels = list(labels) if labels is not None else None
        self._bn_hooks: dict[int, Any] = {}
        self.model.eval()

    # ---- sizes ---------------------------------------------------------------------------------
    @property
    def feature_dim(self) -> int:
        return self._feature_dim

    @property
    def input_spec(self) -> InputSpec:
        return self._input_spec

    @property
    def device(self) -> torch.device:
        try:
            return next(self.model.parameters()).device
        except StopIteration:
            return torch.device("cpu")

    def to(self, device: str | torch.device) -> TorchBackbone:
        self.model.to(device)
        for extra in (self._head, self._classifier):
            if extra is not None:
                extra.to(device)
        return self

    # ---- data ----------------------------------------------------------------------------------
    def preprocess(self, inputs: Any, train: bool = False) -> Any:
        images = load_images(inputs, exif=self.exif_orientation)
        tf = self.train_transform if train else self.eval_transform
        if tf is None:
            raise InvalidInputError(f"{self.id} has no image preprocessing; it takes text.")
        return torch.stack([tf(img) for img in images])

    def features(self, batch: Any) -> torch.Tensor:
        """Pooled features of a batch made by :meth:`preprocess` (no mode or grad handling).

        Raises:
            InvalidInputError: ``batch`` is not what ``preprocess`` makes (images: a float NCHW
                tensor; text: a dict of tensors), e.g. raw images, arrays or paths: use
                :meth:`embed`, or ``features(preprocess(inputs))``.
        """
        if isinstance(batch, torch.Tensor):
            if self.input_spec.modality != "image" or (batch.ndim == 4 and batch.is_floating_point()):
                return call_model(self.model, batch)
            got = f"a {str(batch.dtype).replace('torch.', '')} tensor of shape {tuple(batch.shape)}"
        elif isinstance(batch, Mapping):
            return call_model(self.model, batch)
        else:
            shape = getattr(batch, "shape", None)
            got = f"a {type(batch).__name__}" + (f" of shape {tuple(shape)}" if shape is not None else "")
        want = "a float NxCxHxW tensor" if self.input_spec.modality == "image" else "a dict of tensors"
        raise InvalidInputError(
            f"{self.id}: features() takes a batch made by preprocess() ({want}), got {got}; "
            "call embed(inputs) for raw images, arrays, paths or texts, or features(preprocess(inputs))."
        )

    def embed(self, inputs: Any, batch_size: int = 32) -> np.ndarray:
        was_training = self.model.training
        self.model.eval()
        outs = []
        try:
            with torch.inference_mode():
                for chunk in self._chunks(inputs, batch_size):
                    batch = move(self.preprocess(chunk), self.device)
                    outs.append(self.features(batch).flatten(1).float().cpu().numpy())
        finally:
            self.model.train(was_training)
        return np.concatenate(outs, axis=0)

    # ---- transfer ------------------------------------------------------------------------------
    @property
    def layer_groups(self) -> Sequence[LayerGroup]:
        return self._groups

    def _set_group_trainable(self, group: LayerGroup, trainable: bool) -> None:
        for module in group.modules:
            for p in module.parameters():
                p.requires_grad_(trainable)
            for m in module.modules():
                if isinstance(m, _BN):
                    key = id(m)
                    if trainable and key in self._bn_hooks:
                        for handle in self._bn_hooks.pop(key):
                            handle.remove()
                    elif not trainable and key not in self._bn_hooks:
                        self._bn_hooks[key] = (
                            m.register_forward_pre_hook(_keep_bn_eval),
                            m.register_forward_hook(_restore_mode, always_call=True),
                        )

    def trainable_parameter_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    def param_groups(self, lr: float, decay: float = 1.0) -> list[dict[str, Any]]:
        out = []
        seen: set[int] = set()
        n = len(self._groups)
        for i, g in enumerate(self._groups):
            params = []
            for module in g.modules:
                for p in module.parameters():
                    if p.requires_grad and id(p) not in seen:
                        seen.add(id(p))
                        params.append(p)
            if params:
                out.append({"params": params, "lr": lr * decay ** (n - 1 - i), "name": g.name})
        return out[::-1]

    def with_head(self, num_classes: int, dropout: float = 0.0, concat_group: str | None = None) -> ClassifierModel:
        num_classes, dropout = int(num_classes), float(dropout)  # checked by Backbone (numpy scalars allowed)
        if concat_group is None:
            return ClassifierModel(self.model, self.feature_dim, num_classes, dropout).to(self.device)
        mid = self._group_output_module(concat_group)
        return ClassifierModel(self.model, self.feature_dim, num_classes, dropout, mid=mid, mid_dim=self._pooled_dim(mid),
                               channels_last=self.channels_last).to(self.device)

    def _group_output_module(self, name: str) -> nn.Module:
        """The module whose output is layer group ``name``'s output (its last module)."""
        mods = [m for m in self.layer_group(name).modules if isinstance(m, nn.Module)]
        if not mods:
            raise InvalidInputError(f"{self.id}: layer group {name!r} has no module whose output can be read; pick another group.")
        return mods[-1]

    def _pooled_dim(self, module: nn.Module) -> int:
        """Width of ``module``'s pooled output, from one forward of a blank input (images: a zero
        ``(1, 3, size, size)`` batch at the input size; text: the tokenised ``"a"``)."""
        got: dict[str, Any] = {}
        handle = module.register_forward_hook(lambda m, a, o: got.setdefault("out", o))
        was = self.model.training
        self.model.eval()
        try:
            if self.input_spec.modality == "image":
                side = self.input_spec.size or 224
                batch = torch.zeros(1, 3, side, side)
            else:
                batch = self.preprocess(["a"])
            with torch.inference_mode():
                call_model(self.model, move(batch, self.device))
        finally:
            handle.remove()
            self.model.train(was)
        pooled = pool_output(got.get("out"), channels_last=self.channels_last)
        if pooled is None:
            raise InvalidInputError(f"{self.id}: the output of {type(module).__name__} is not a tensor, so it cannot be pooled; pick another group.")
        return int(pooled.shape[1])

    @property
    def source_head(self) -> nn.Module | None:
        return self._head

    def predict(self, inputs: Any, top_k: int = 5) -> list[list[tuple[str, float]]]:
        if self._head is None and self._classifier is None:
            return super().predict(inputs, top_k)
        self.model.eval()
        (self._head if self._head is not None else self._classifier).eval()
        results = []
        with torch.inference_mode():
            for chunk in self._chunks(inputs, 32):
                batch = move(self.preprocess(chunk), self.device)
                if self._head is not None:
                    logits = self._head(self.features(batch).flatten(1))
                else:
                    logits = call_model(self._classifier, batch).flatten(1)
                probs = logits.float().softmax(-1).cpu()
                p, idx = probs.topk(min(int(top_k), probs.shape[-1]), dim=-1)
                for row_p, row_i in zip(p.tolist(), idx.tolist()):
                    names = self.labels or [str(i) for i in range(probs.shape[-1])]
                    results.append([(names[i], float(q)) for q, i in zip(row_p, row_i)])
        return results
