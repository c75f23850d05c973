"""Layer groups of the Keras applications, by block, from the layer names Keras gives them.

Each family names its blocks (``block3a_...``, ``conv4_block2_...``, ``mixed7``...). Two ways to
read them:

* *starts*: a rule maps a layer name to its block; layers with automatic names (``activation_12``)
  join the block of the layer before them. Families with named blocks use it.
* *ends*: a rule marks the last layer of each block (``mixed7``, ``normal_concat_5``); every layer
  up to it belongs to that block. The Inception and NASNet families, whose inner layers have
  automatic names, use it; their stem ends at the second max-pooling layer.

Groups with no weights are merged into a neighbour, so every group has parameters. A family
without rules is split into four parts of similar parameter count.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

Rule = tuple[str, Callable[[re.Match[str]], str]]


def _fixed(label: str) -> Callable[[re.Match[str]], str]:
    return lambda m: label


def _group(fmt: str) -> Callable[[re.Match[str]], str]:
    return lambda m: fmt.format(*m.groups())


# family module -> ("starts" | "ends", rules)
_STARTS: dict[str, list[Rule]] = {
    "efficientnet": [(r"^stem_", _fixed("stem")), (r"^block(\d+)", _group("block{}")), (r"^top_", _fixed("top"))],
    "resnet": [(r"^(conv1|pool1)_", _fixed("stem")), (r"^(conv[2-5])_", _group("{}")), (r"^post_", _fixed("top"))],
    "densenet": [
        (r"^(conv1_|pool1$)", _fixed("stem")),
        (r"^conv([2-5])_block", _group("conv{}")),
        (r"^pool([2-4])_", _group("conv{}")),
        (r"^(bn|relu)$", _fixed("top")),
    ],
    "mobilenet": [(r"^conv1", _fixed("stem")), (r"^conv_(?:dw|pw|pad)_(\d+)", _group("block{}"))],
    "mobilenet_v2": [
        (r"^(Conv1|bn_Conv1)", _fixed("stem")),
        (r"^expanded_conv_", _fixed("block0")),
        (r"^block_(\d+)_", _group("block{}")),
        (r"^(Conv_1|out_relu)", _fixed("top")),
    ],
    "mobilenet_v3": [
        (r"^conv(_bn)?$", _fixed("stem")),
        (r"^expanded_conv_(\d+)_", _group("block{}")),
        (r"^expanded_conv_", _fixed("block0")),
        (r"^conv_\d+", _fixed("top")),
    ],
    "xception": [(r"^block(\d+)_", _group("block{}"))],
    "vgg": [(r"^block(\d+)_", _group("block{}"))],
    "convnext": [
        (r"(prestem|_stem$)", _fixed("stem")),
        (r"_stage_(\d+)_", lambda m: f"stage{int(m.group(1)) + 1}"),
        (r"_downsampling_block_(\d+)", lambda m: f"stage{int(m.group(1)) + 2}"),
        (r"(^layer_normalization(_\d+)?$|_head_layernorm$)", _fixed("top")),
    ],
}
_STARTS["efficientnet_v2"] = _STARTS["efficientnet"]
_STARTS["resnet_v2"] = _STARTS["resnet"]
_STARTS["vgg16"] = _STARTS["vgg19"] = _STARTS["vgg"]

_ENDS: dict[str, list[Rule]] = {
    "inception_v3": [(r"^mixed(\d+)$", _group("mixed{}"))],
    "inception_resnet_v2": [
        (r"^(mixed_5b|mixed_6a|mixed_7a)$", _group("{}")),
        (r"^(block35|block17|block8)_\d+_ac$", _group("{}")),
        (r"^conv_7b_ac$", _fixed("top")),
    ],
}


def _nasnet_labels(names: Sequence[str]) -> dict[int, str]:
    labels: dict[int, str] = {}
    stack = 1
    for i, name in enumerate(names):
        if re.match(r"^reduction_concat_stem_\d+$", name):
            labels[i] = "stem"
        elif re.match(r"^reduction_concat_reduce_\d+$", name):
            stack += 1
            labels[i] = f"stack{stack}"
        elif re.match(r"^normal_concat_\d+$", name):
            labels[i] = f"stack{stack}"
    return labels


def _match(rules: Sequence[Rule], name: str) -> str | None:
    for pattern, label in rules:
        m = re.search(pattern, name)
        if m:
            return label(m)
    return None


def label_layers(family: str, layers: Sequence[tuple[str, str]]) -> list[str]:
    """One block label per layer, given ``(name, class name)`` pairs in the model's layer order."""
    names = [n for n, _ in layers]
    if family in _STARTS:
        out, current = [], "stem"
        for name in names:
            current = _match(_STARTS[family], name) or current
            out.append(current)
        return out
    if family in _ENDS or family == "nasnet":
        ends = _nasnet_labels(names) if family == "nasnet" else {
            i: lab for i, n in enumerate(names) if (lab := _match(_ENDS[family], n)) is not None
        }
        out, current = [""] * len(names), "top"
        for i in range(len(names) - 1, -1, -1):
            current = ends.get(i, current)
            out[i] = current
        if family.startswith("inception"):
            pools = [i for i, (_, kind) in enumerate(layers) if kind == "MaxPooling2D"]
            if len(pools) >= 2:
                for i in range(pools[1] + 1):
                    out[i] = "stem"
        return out
    return ["top"] * len(names)


def group_layers(family: str, layers: Sequence[Any]) -> list[tuple[str, list[Any]]]:
    """``[(name, [layer, ...]), ...]`` from input to output; every layer in exactly one group.

    Groups holding no weights are merged into the group before them (or after, for the first).
    """
    labels = label_layers(family, [(layer.name, type(layer).__name__) for layer in layers])
    order: list[str] = []
    members: dict[str, list[Any]] = {}
    for label, layer in zip(labels, layers):
        if label not in members:
            order.append(label)
            members[label] = []
        members[label].append(layer)
    groups = [(name, members[name]) for name in order]
    merged: list[tuple[str, list[Any]]] = []
    pending: list[Any] = []
    for name, ls in groups:
        if any(layer.weights for layer in ls):
            merged.append((name, pending + ls))
            pending = []
        elif merged:
            merged[-1][1].extend(ls)
        else:
            pending.extend(ls)
    if pending:
        merged.append(("top", pending))
    if len(merged) < 2:
        merged = _split_by_size(layers)
    return merged


def _split_by_size(layers: Sequence[Any], parts: int = 4) -> list[tuple[str, list[Any]]]:
    sizes = [sum(int(_numel(w)) for w in layer.weights) for layer in layers]
    total = sum(sizes) or 1
    out: list[tuple[str, list[Any]]] = [(f"part{i + 1}", []) for i in range(parts)]
    acc = 0
    for layer, size in zip(layers, sizes):
        idx = min(parts - 1, int(acc * parts / total))
        out[idx][1].append(layer)
        acc += size
    return [g for g in out if any(layer.weights for layer in g[1])] or [("all", list(layers))]


def _numel(w: Any) -> int:
    n = 1
    for d in w.shape:
        n *= int(d)
    return n
