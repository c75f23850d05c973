"""Torch pieces of the hf source: pooled-feature wrappers and layer groups for any transformers model."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from zoo.backbone import LayerGroup
from zoo.errors import InvalidInputError

TEXT_POOLINGS = ("cls", "mean", "max", "last")
VISION_POOLINGS = ("pooler", "cls", "mean")
#: Deeper stacks than this are grouped in consecutive runs (pairs for 24 layers, ...).
MAX_BLOCK_GROUPS = 12


def pool_tokens(hidden: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """Pool token states ``(N, L, D)`` with an attention mask ``(N, L)`` into ``(N, D)``.

    ``cls`` takes the first token, ``mean`` averages real tokens (sentence-transformers' formula),
    ``max`` takes the max over real tokens, ``last`` the last real token whichever side is padded.
    """
    if how == "cls":
        return hidden[:, 0]
    m = mask.to(hidden.dtype).unsqueeze(-1)
    if how == "mean":
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    if how == "max":
        return hidden.masked_fill(m == 0, torch.finfo(hidden.dtype).min).max(1).values
    if how == "last":
        positions = torch.arange(mask.shape[1], device=mask.device)
        idx = (mask.long() * positions).argmax(1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), idx]
    raise InvalidInputError(f"pooling {how!r} is not one of {', '.join(TEXT_POOLINGS)}.")


class TextEncoder(nn.Module):
    """A transformers text model (``base``) called on tokenizer output, returning pooled ``(N, D)`` features."""

    def __init__(self, base: nn.Module, pooling: str, normalize: bool = False) -> None:
        super().__init__()
        self.base = base
        self.pooling = pooling
        self.normalize = normalize

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        out = self.base(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        feats = pool_tokens(out.last_hidden_state, attention_mask, self.pooling)
        if self.normalize:
            feats = nn.functional.normalize(feats, p=2, dim=1)
        return feats


class VisionEncoder(nn.Module):
    """A transformers vision model (``base``) called on ``pixel_values``, returning pooled ``(N, D)`` features.

    ``pooler`` is the model's own ``pooler_output`` (what its image classifier reads for CNNs and
    Swin), ``cls`` the first token of the final-normed sequence (ViT, DeiT), ``mean`` the average of
    the last hidden state over tokens or pixels.
    """

    def __init__(self, base: nn.Module, pooling: str) -> None:
        super().__init__()
        self.base = base
        self.pooling = pooling

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.base(pixel_values=pixel_values)
        if self.pooling == "pooler" and getattr(out, "pooler_output", None) is not None:
            return out.pooler_output.flatten(1)
        hidden = out.last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        return hidden.mean(dim=(2, 3)) if hidden.dim() == 4 else hidden.mean(dim=1)


def _blocks(base: nn.Module) -> tuple[str, nn.ModuleList]:
    best: tuple[int, str, nn.ModuleList] | None = None
    for name, mod in base.named_modules():
        if isinstance(mod, nn.ModuleList) and len(mod) >= 2:
            n = sum(p.numel() for p in mod.parameters())
            if best is None or n > best[0]:
                best = (n, name, mod)
    if best is None:
        raise InvalidInputError(f"{type(base).__name__} has no stack of layers to group; zoo cannot fine-tune it by depth.")
    return best[1], best[2]


def layer_groups(base: nn.Module) -> list[LayerGroup]:
    """Layer groups of a transformers backbone, input to output.

    ``embeddings`` (everything before the main stack of layers), one group per layer or stage of
    that stack (consecutive runs when it has more than 12), and ``top`` (final norm or pooler,
    everything after the stack) when it has parameters. Every parameter is in exactly one group.
    """
    stack_name, stack = _blocks(base)
    prefix = stack_name + "."
    region: dict[str, str] = {}
    seen_stack = False
    for name, _ in base.named_parameters():
        if name.startswith(prefix):
            seen_stack = True
            region[name] = "stack"
        else:
            region[name] = "top" if seen_stack else "embeddings"
    found: dict[str, list[nn.Module]] = {"embeddings": [], "top": []}

    def collect(module: nn.Module, name: str) -> None:
        if module is stack:
            return
        names = [f"{name}{n}" for n, _ in module.named_parameters()]
        if not names:
            return
        kinds = {region[n] for n in names}
        if len(kinds) == 1 and "stack" not in kinds:
            found[kinds.pop()].append(module)
            return
        if any(True for _ in module.parameters(recurse=False)):
            raise InvalidInputError(f"{type(module).__name__} mixes its own parameters with its layers; zoo cannot group it.")
        for child_name, child in module.named_children():
            collect(child, f"{name}{child_name}.")

    collect(base, "")
    size = math.ceil(len(stack) / MAX_BLOCK_GROUPS)
    short = stack_name.rsplit(".", 1)[-1]
    groups = [LayerGroup("embeddings", found["embeddings"])] if found["embeddings"] else []
    for start in range(0, len(stack), size):
        end = min(start + size, len(stack)) - 1
        label = f"{short}.{start}" if start == end else f"{short}.{start}-{end}"
        groups.append(LayerGroup(label, list(stack[start : end + 1])))
    if found["top"]:
        groups.append(LayerGroup("top", found["top"]))
    _check_cover(base, groups)
    return groups


def _check_cover(base: nn.Module, groups: list[LayerGroup]) -> None:
    owner: dict[int, str] = {}
    for g in groups:
        for module in g.modules:
            for p in module.parameters():
                if owner.setdefault(id(p), g.name) != g.name:
                    raise InvalidInputError(f"parameter in both layer groups {owner[id(p)]} and {g.name}")
    missing = [n for n, p in base.named_parameters() if id(p) not in owner]
    if missing:
        raise InvalidInputError(f"parameters in no layer group: {', '.join(missing[:3])}")


def drop_unused_pooler(base: nn.Module) -> None:
    """Remove a pooler whose output zoo does not use (BERT's NSP pooler, ViT's tanh pooler).

    Its weights would sit in the top layer group, trainable but without gradient.
    """
    pooler = getattr(base, "pooler", None)
    if isinstance(pooler, nn.Module) and any(True for _ in pooler.parameters()):
        base.pooler = None
