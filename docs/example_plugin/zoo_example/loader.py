"""Builds the example backbones on :class:`zoo.frameworks.torch.TorchBackbone`."""

from __future__ import annotations

import torch
from torch import nn

from zoo import InputSpec, LayerGroup
from zoo.frameworks.torch import TorchBackbone

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def _transform(size: int):
    import numpy as np

    def tf(img):
        img = img.resize((size, size))
        x = torch.from_numpy(np.asarray(img, dtype="float32") / 255.0).permute(2, 0, 1)
        return (x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]

    return tf


def load(model_id, card, **options):
    width = 16 if model_id.tag in (None, "random") else 32
    torch.manual_seed(0)
    stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
    stage = nn.Sequential(nn.Conv2d(8, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU())
    model = nn.Sequential(stem, stage, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    size = card.input_size if card and card.input_size else 32
    return TorchBackbone(
        model_id,
        card,
        model,
        groups=[LayerGroup("stem", [stem]), LayerGroup("stage1", [stage])],
        feature_dim=width,
        input_spec=InputSpec("image", size, mean=MEAN, std=STD, input_range=(0.0, 1.0)),
        eval_transform=_transform(size),
    )
