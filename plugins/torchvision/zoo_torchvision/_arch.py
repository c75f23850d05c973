"""Turn a torchvision classification model into a pooled-feature model with layer groups.

Feature model: the torchvision model with its *final* ``nn.Linear`` (the ImageNet classifier)
replaced by ``nn.Identity``. Whatever the classifier computes before that layer stays in the
feature model, so the removed layer applied to the features gives exactly the original logits:

* ResNet, RegNet, DenseNet, ShuffleNet, GoogLeNet, Inception, EfficientNet, MobileNetV2, MNASNet,
  Swin, ViT: the globally pooled last feature map (ViT: the class token after the final LayerNorm).
* VGG and AlexNet: fc7 (4096, after fc6/fc7 + ReLU), the classic "CNN codes".
* MobileNetV3: the 1024/1280 hidden layer of its classifier; MaxViT: its 512 tanh pre-logits;
  ConvNeXt: the pooled features after the classifier's LayerNorm.
* SqueezeNet (no linear layer; its classifier is a 1x1 conv before the pooling) and weights
  without a classifier (``vgg16.IMAGENET1K_FEATURES``): the globally average-pooled last feature
  map, and no source head. SqueezeNet's classifier cannot read the pooled map; ``Surgery.classifier``
  keeps torchvision's whole forward with it (``zoo predict``).

Layer groups run from input to output (stem, stages, top) and cover every parameter of the
feature model exactly once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from zoo.backbone import LayerGroup
from zoo.frameworks.torch import with_children

# torchvision module name -> zoo family
_FAMILY_RENAMES = {
    "mobilenetv2": "mobilenet",
    "mobilenetv3": "mobilenet",
    "shufflenetv2": "shufflenet",
    "vision_transformer": "vit",
    "swin_transformer": "swin",
}
VIT_BLOCK_GROUPS = 4  # ViT encoder layers are split into this many groups


def family_of(name: str) -> str:
    """The zoo family of a torchvision model name, from the torchvision module that defines it.

    ``resnext50_32x4d`` and ``wide_resnet50_2`` are ``resnet`` (torchvision's ``resnet`` module),
    ``efficientnet_v2_s`` is ``efficientnet``, ``mobilenet_v3_small`` is ``mobilenet``.
    """
    import torchvision.models as tvm

    module = tvm.get_model_builder(name).__module__.rsplit(".", 1)[-1]
    return _FAMILY_RENAMES.get(module, module)


def arch_kwargs(name: str, weights: object | None) -> dict[str, object]:
    """Keyword arguments that give, without weights, the architecture torchvision builds for ``weights``.

    Only used to inspect structure (listing, tests); loading goes through torchvision's builder.
    """
    kwargs: dict[str, object] = {}
    if weights is not None:
        meta = weights.meta  # type: ignore[attr-defined]
        if meta.get("categories"):
            kwargs["num_classes"] = len(meta["categories"])
        if name.startswith("vit_"):
            kwargs["image_size"] = meta["min_size"][0]
    if name in ("googlenet", "inception_v3"):
        kwargs.update(aux_logits=False, init_weights=False)
    return kwargs


@contextlib.contextmanager
def empty_weights() -> Iterator[None]:
    """Build modules with parameters and buffers on the ``meta`` device (no memory, no init cost).

    ``torch.device("meta")`` as a context cannot build RegNets (their widths are computed with
    tensors), so parameters and buffers are moved to ``meta`` as they are registered instead.
    """
    reg_param, reg_buffer = nn.Module.register_parameter, nn.Module.register_buffer

    def param(self: nn.Module, name: str, p: nn.Parameter | None) -> None:
        if p is not None and p.device.type != "meta":
            p = nn.Parameter(p.detach().to("meta"), requires_grad=p.requires_grad)
        reg_param(self, name, p)

    def buffer(self: nn.Module, name: str, b: torch.Tensor | None, persistent: bool = True) -> None:
        if b is not None:
            b = b.to("meta")
        reg_buffer(self, name, b, persistent)

    nn.Module.register_parameter = param  # type: ignore[method-assign]
    nn.Module.register_buffer = buffer  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.register_parameter = reg_param  # type: ignore[method-assign]
        nn.Module.register_buffer = reg_buffer  # type: ignore[method-assign]


# ---- feature model -----------------------------------------------------------------------------
@dataclass
class Surgery:
    """What :func:`to_feature_model` did: the removed head (if any) and where it was."""

    head: nn.Linear | None
    head_path: str | None
    feature_dim: int
    classifier: nn.Module | None = None  # no ``head``: the model's own forward with its classifier (SqueezeNet)


def _set_submodule(model: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, leaf = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, leaf, module)


def final_linear(model: nn.Module, num_classes: int | None) -> tuple[str, nn.Linear] | None:
    """The last registered ``nn.Linear`` with ``num_classes`` outputs: torchvision's classifier."""
    found = None
    for path, module in model.named_modules():
        if isinstance(module, nn.Linear) and (num_classes is None or module.out_features == num_classes):
            found = (path, module)
    return found


def _last_channels(module: nn.Module) -> int:
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError("no convolution to take the feature size from")
    last = convs[-1]
    return last.out_channels


def _fire_channels(features: nn.Module) -> int:
    last = list(features.children())[-1]
    if hasattr(last, "expand1x1") and hasattr(last, "expand3x3"):  # SqueezeNet Fire: two concatenated branches
        return last.expand1x1.out_channels + last.expand3x3.out_channels
    return _last_channels(features)


def to_feature_model(model: nn.Module, name: str, num_classes: int | None) -> Surgery:
    """Replace the classifier of a torchvision model in place so that it returns pooled features.

    Args:
        model: a torchvision classification model (as built by ``get_model``).
        name: its torchvision name (``resnet50``).
        num_classes: number of classes of its weights, or ``None`` when the weights have no
            usable classifier (``vgg16.IMAGENET1K_FEATURES``).

    Returns:
        The removed head (``None`` where there is no linear head) and the feature size.
    """
    if getattr(model, "aux_logits", False):
        # get_model keeps Inception v3's auxiliary classifier when it loads the weights (aux_logits=True):
        # in train mode the model then returns InceptionOutputs(logits, aux), and AuxLogits holds 3.3M
        # parameters no feature uses. Drop it as torchvision's builders do for aux_logits=False.
        model.aux_logits = False
        for attr in ("AuxLogits", "aux1", "aux2"):
            if getattr(model, attr, None) is not None:
                setattr(model, attr, None)
    if num_classes is None and hasattr(model, "features") and hasattr(model, "classifier"):
        # weights with only a valid feature extractor: global-average-pool the feature map
        dim = _last_channels(model.features)
        model.avgpool = nn.AdaptiveAvgPool2d(1)
        model.classifier = nn.Identity()
        return Surgery(None, None, dim)
    hit = final_linear(model, num_classes)
    if hit is None:
        if name.startswith("squeezenet"):
            # classifier = Dropout, Conv 1x1 (classes), ReLU, AvgPool: keep only the pooling; predict runs the original
            original = model.classifier
            model.classifier = nn.AdaptiveAvgPool2d(1)
            return Surgery(None, None, _fire_channels(model.features), with_children(model, {"classifier": original}))
        raise ValueError(f"torchvision model {name!r} has no linear classifier to remove")
    path, head = hit
    _set_submodule(model, path, nn.Identity())
    return Surgery(head, path, head.in_features)


# ---- layer groups ------------------------------------------------------------------------------
class ParameterRefs(nn.Module):
    """Parameters registered directly on a model (ViT's class token and position embedding) as
    a module that a layer group can hold. Not attached to the model; it looks the parameters up
    on their owners at each call, so it stays right when ``.to()`` replaces parameter objects."""

    def __init__(self, refs: Sequence[tuple[nn.Module, str]]) -> None:
        super().__init__()
        self._refs = list(refs)

    def named_parameters(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True) -> Iterator[tuple[str, nn.Parameter]]:  # type: ignore[override]
        for owner, attr in self._refs:
            yield (f"{prefix}.{attr}" if prefix else attr), getattr(owner, attr)

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]:  # type: ignore[override]
        for _, p in self.named_parameters():
            yield p


def _downsamples(module: nn.Module) -> bool:
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            stride = m.stride if isinstance(m.stride, (tuple, list)) else (m.stride,)
            if any(s is not None and s > 1 for s in stride):
                return True
    return False


def _has_params(modules: Sequence[nn.Module]) -> bool:
    return any(True for m in modules for _ in m.parameters())


def split_by_resolution(children: Sequence[nn.Module]) -> list[list[nn.Module]]:
    """Split a flat sequence of layers into stages: a layer that downsamples starts a new stage.

    Stages without parameters (a trailing max-pool) are merged into their neighbour.
    """
    stages: list[list[nn.Module]] = []
    for child in children:
        if not stages or (_downsamples(child) and _has_params(stages[-1])):
            stages.append([child])
        else:
            stages[-1].append(child)
    merged: list[list[nn.Module]] = []
    for stage in stages:
        if merged and not _has_params(stage):
            merged[-1].extend(stage)
        else:
            merged.append(stage)
    if len(merged) > 1 and not _has_params(merged[0]):
        merged[1] = merged[0] + merged[1]
        merged.pop(0)
    return merged


def _named(stem: Sequence[nn.Module], stages: Sequence[Sequence[nn.Module]], top: Sequence[nn.Module] = ()) -> list[LayerGroup]:
    groups = [LayerGroup("stem", list(stem))]
    groups += [LayerGroup(f"stage{i}", list(s)) for i, s in enumerate(stages, 1)]
    if _has_params(top):
        groups.append(LayerGroup("top", list(top)))
    return [g for g in groups if g.modules]


def _children(module: nn.Module, names: Sequence[str]) -> list[nn.Module]:
    return [getattr(module, n) for n in names if getattr(module, n, None) is not None]


def _hidden(classifier: nn.Module) -> list[nn.Module]:
    """The classifier modules that stay in the feature model (everything with parameters)."""
    return [m for m in classifier.children() if _has_params([m])] if _has_params([classifier]) else []


def _flat(stages: Sequence[Sequence[nn.Module]]) -> list[list[nn.Module]]:
    return [list(s) for s in stages]


def _groups_for(model: nn.Module, family: str) -> list[LayerGroup]:
    m = model
    if family == "resnet":
        return _named([m.conv1, m.bn1], [[m.layer1], [m.layer2], [m.layer3], [m.layer4]])
    if family == "regnet":
        return _named([m.stem], [[b] for b in m.trunk_output.children()])
    if family == "densenet":
        stem, stages = [], []
        for key, child in m.features.named_children():
            if key.startswith("denseblock"):
                stages.append([child])
            elif not stages:
                stem.append(child)
            else:
                stages[-1].append(child)  # transition layers and the final norm5
        return _named(stem, stages)
    if family == "googlenet":
        names = [n for n, _ in m.named_children()]
        stages = [_children(m, [n for n in names if n.startswith(f"inception{i}")]) for i in (3, 4, 5)]
        return _named(_children(m, ["conv1", "conv2", "conv3"]), stages)
    if family == "inception":
        names = [n for n, _ in m.named_children()]
        stem = _children(m, [n for n in names if n.startswith("Conv2d_")])
        stages = [_children(m, [n for n in names if n.startswith(f"Mixed_{i}")]) for i in (5, 6, 7)]
        return _named(stem, stages)
    if family == "shufflenet":
        return _named([m.conv1], [[m.stage2], [m.stage3], [m.stage4]], [m.conv5])
    if family == "efficientnet":
        feats = list(m.features.children())
        return _named([feats[0]], [[f] for f in feats[1:-1]], [feats[-1], *_hidden(m.classifier)])
    if family == "mobilenet":
        feats = list(m.features.children())
        stages = split_by_resolution(feats[:-1])
        return _named(stages[0], stages[1:], [feats[-1], *_hidden(m.classifier)])
    if family == "mnasnet":
        layers = list(m.layers.children())
        stages = split_by_resolution(layers[:-3])
        return _named(stages[0], stages[1:], layers[-3:])
    if family in ("vgg", "alexnet", "squeezenet"):
        stages = split_by_resolution(list(m.features.children()))
        return _named(stages[0], stages[1:], _hidden(m.classifier))
    if family in ("convnext", "swin"):
        feats = list(m.features.children())  # stem, stage, (downsample, stage) x 3
        stages = [[feats[1]]] + [feats[i : i + 2] for i in range(2, len(feats), 2)]
        top = [m.classifier] if family == "convnext" else [m.norm]
        return _named([feats[0]], _flat(stages), top)
    if family == "maxvit":
        return _named([m.stem], [[b] for b in m.blocks], [m.classifier])
    if family == "vit":
        embed = ParameterRefs([(m, "class_token"), (m.encoder, "pos_embedding")])
        layers = list(m.encoder.layers.children())
        k = max(1, min(VIT_BLOCK_GROUPS, len(layers)))
        bounds = [round(i * len(layers) / k) for i in range(k + 1)]
        stages = [layers[a:b] for a, b in zip(bounds, bounds[1:])]
        return _named([embed, m.conv_proj], stages, [m.encoder.ln])
    raise KeyError(family)


def _generic_groups(model: nn.Module) -> list[LayerGroup]:
    groups = []
    own = [(model, key) for key, _ in model.named_parameters(recurse=False)]
    if own:
        groups.append(LayerGroup("params", [ParameterRefs(own)]))
    for key, child in model.named_children():
        if _has_params([child]):
            groups.append(LayerGroup(key, [child]))
    return groups


def coverage_problems(model: nn.Module, groups: Sequence[LayerGroup]) -> list[str]:
    """Parameters of ``model`` in no group or in several groups, and parameters foreign to it."""
    owned = {id(p): n for n, p in model.named_parameters()}
    seen: dict[int, str] = {}
    problems = []
    for g in groups:
        for module in g.modules:
            for p in module.parameters():
                if id(p) not in owned:
                    problems.append(f"group {g.name} holds a parameter that is not in the model")
                elif id(p) in seen and seen[id(p)] != g.name:
                    problems.append(f"{owned[id(p)]} is in groups {seen[id(p)]} and {g.name}")
                seen.setdefault(id(p), g.name)
    problems += [f"{n} is in no group" for i, n in owned.items() if i not in seen]
    return problems


def layer_groups(model: nn.Module, family: str) -> list[LayerGroup]:
    """Layer groups of a feature model, input to output, covering every parameter exactly once.

    Families torchvision may add later fall back to one group per top-level child.
    """
    try:
        groups = _groups_for(model, family)
    except (KeyError, AttributeError, IndexError):
        groups = []
    if len(groups) < 2 or coverage_problems(model, groups):
        groups = _generic_groups(model)
    return groups
