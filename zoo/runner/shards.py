"""Stage 2's data on any number of processes: the global batch order, per-item seeds, sharded evaluation.

:class:`Order` yields the global batches (shuffled from the seed and epoch); Accelerate wraps it with
``split_batches`` so each process takes its slice of every global batch and pads a short last batch
(the padding weighs zero in the loss). :func:`evaluate_sharded` scores each process's slice and
gathers the predictions without that padding.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from zoo.frameworks.torch import call_model


def _batches(n: int, batch_size: int, generator: torch.Generator | None) -> list[np.ndarray]:
    """The batches of one epoch: shuffled by ``generator`` (training) or in order (evaluation).

    A shuffled epoch never ends on a batch of one item: BatchNorm in training mode cannot normalise a
    single item, so that item joins the batch before it."""
    order = torch.randperm(n, generator=generator).numpy() if generator is not None else np.arange(n)
    out = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    if generator is not None and len(out) > 1 and len(out[-1]) == 1:
        last = out.pop()
        out[-1] = np.concatenate([out[-1], last])
    return out


def n_batches(n: int, batch_size: int, shuffled: bool = True) -> int:
    """How many batches :func:`_batches` makes of ``n`` items (a shuffled epoch folds a last batch of one)."""
    count = math.ceil(n / batch_size)
    return count - 1 if shuffled and count > 1 and n % batch_size == 1 else count


def item_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of training item ``index`` in ``epoch`` (see :func:`make_prep`)."""
    return ((seed * 1_000_003 + epoch) * 1_000_003 + index) % 2**63


class Order:
    """Batch sampler of the global batches: shuffled from ``(seed, epoch)`` (set ``epoch`` first), or in order.

    Accelerate wraps it (``split_batches``): each process takes its slice of every global batch.
    """

    drop_last = False

    def __init__(self, n: int, batch_size: int, seed: int | None) -> None:
        self.n, self.batch_size, self.seed, self.epoch = n, batch_size, seed, 0

    def __len__(self) -> int:
        return n_batches(self.n, self.batch_size, self.seed is not None)

    def __iter__(self) -> Any:
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch) if self.seed is not None else None
        for b in _batches(self.n, self.batch_size, gen):
            yield [int(i) for i in b]  # lists: Accelerate pads a short last batch by concatenation


class Indices:
    """A map-style dataset of its own indices (the collate function loads the items)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


class Collate:
    """Indices -> ``(batch, labels)`` with the train (seeded per item) or eval preprocessing."""

    def __init__(self, prep: Callable[..., Any], items: Sequence[Any], labels: np.ndarray, train: bool, seed: int) -> None:
        self.prep, self.items, self.labels, self.train, self.seed, self.epoch = prep, items, np.asarray(labels), train, seed, 0

    def __call__(self, idx: list[int]) -> tuple[Any, torch.Tensor]:
        seeds = [item_seed(self.seed, self.epoch, i) for i in idx] if self.train else None
        return self.prep([self.items[i] for i in idx], self.train, seeds), torch.as_tensor(self.labels[idx], dtype=torch.int64)


def evaluate_sharded(acc: Any, model: nn.Module, loader: Any, labels: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Held-out loss, accuracy, predictions: each process scores its slice, gathered without Accelerate's padding."""
    net = acc.unwrap_model(model)  # no DDP here: nothing to synchronise in a forward without gradients
    net.eval()
    losses, preds = [], []
    with torch.inference_mode():
        for x, y in loader:
            with acc.autocast():
                logits = call_model(net, x).float()
            per_item = nn.functional.cross_entropy(logits, y, reduction="none")
            per_item, pred = acc.gather_for_metrics((per_item, logits.argmax(1)))
            losses.append(per_item.double().cpu())
            preds.append(pred.cpu())
    loss, pred = torch.cat(losses), torch.cat(preds).numpy()
    if len(pred) != len(labels):  # gather_for_metrics drops the padding of the last batch; never more or less
        raise RuntimeError(f"evaluation gathered {len(pred)} predictions for {len(labels)} held-out items")
    return float(loss.sum()) / len(labels), float((pred == labels).mean()), pred


def any_failed(acc: Any, failed: bool) -> bool:
    """Whether ``failed`` holds on any process (a collective: every process must call it)."""
    flag = torch.tensor([1.0 if failed else 0.0], device=acc.device)
    return bool(acc.reduce(flag, "sum").item() > 0)
