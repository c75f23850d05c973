"""The arm harness: a backbone cut at its layer groups, cached activations and one training loop.

Fine-tuning the top ``k`` groups runs only those groups: the activations that enter group
``n - k`` are computed once (eval mode, no augmentation, BatchNorm of frozen groups in inference
mode, so they are exactly what the full model computes) and the loop trains from there. Every arm
and peer recipe is a list of :class:`Phase` objects run by :func:`train`; the linear probe is an
L-BFGS multinomial logistic regression with its L2 strength chosen on an inner split.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from zoo.frameworks.torch import _BN, pool_output

L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1)
RESOLUTION = 64
TEXT_MAX_TOKENS = 32  # docstring sentences: ~20 words; the longest are truncated (CPU budget)


# ---- the backbone as a chain of groups ---------------------------------------------------------


class Split:
    """``backbone`` as ``n`` callables (its layer groups, input to output) plus pooling.

    Images (timm EfficientNet-Lite): each group's modules run in order; pooling is timm's
    ``forward_head``. Text (a transformers encoder behind :class:`zoo_hf._modules.TextEncoder`):
    ``embeddings`` takes token ids, every layer takes the hidden states and the extended mask;
    pooling is the encoder's own (mean over real tokens, L2-normalised where it normalises).
    """

    def __init__(self, backbone: Any) -> None:
        self.bb = backbone
        self.groups = list(backbone.layer_groups)
        self.n = len(self.groups)
        self.text = backbone.input_spec.modality == "text"
        self.model = backbone.model

    # inputs -> (x, ctx)
    def prepare(self, items: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Preprocessed inputs without augmentation: ``(NCHW at RESOLUTION, None)`` or ``(ids, mask)``."""
        if self.text:
            tok = self.bb.tokenizer(list(items), padding="longest", truncation=True, max_length=TEXT_MAX_TOKENS, return_tensors="pt")
            return tok["input_ids"], tok["attention_mask"]
        from zoo.runner.stage2 import image_transforms
        from zoo.recommender.plan import Augment
        from PIL import Image

        _, tf = image_transforms(self.bb, RESOLUTION, Augment(random_resized_crop=False, hflip=False, trivial_augment=False))
        return torch.stack([tf(Image.fromarray(np.asarray(im)).convert("RGB")) for im in items]), None

    def _ext(self, mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        ext = mask[:, None, None, :].to(dtype)
        return (1.0 - ext) * torch.finfo(dtype).min

    def run(self, start: int, stop: int, h: torch.Tensor, ctx: torch.Tensor | None) -> torch.Tensor:
        """Apply groups ``start .. stop - 1`` to ``h`` (the input of group ``start``)."""
        for i in range(start, stop):
            for m in self.groups[i].modules:
                if self.text:
                    h = m(input_ids=h) if i == 0 else m(h, attention_mask=self._ext(ctx, h.dtype))
                    if isinstance(h, tuple):
                        h = h[0]
                else:
                    h = m(h)
        return h

    def pool(self, h: torch.Tensor, ctx: torch.Tensor | None, concat: bool = False) -> torch.Tensor:
        """Pooled features; ``concat`` appends max pooling (fastai's AdaptiveConcatPool) for images."""
        if self.text:
            from zoo_hf._modules import pool_tokens

            f = pool_tokens(h, ctx, self.model.pooling)
            return nn.functional.normalize(f, p=2, dim=1) if self.model.normalize else f
        f = self.model.forward_head(h)
        return torch.cat([f, h.amax(dim=(2, 3))], 1) if concat else f

    def forward(self, start: int, h: torch.Tensor, ctx: torch.Tensor | None, concat: bool = False) -> torch.Tensor:
        """Pooled features from the input of group ``start`` (groups ``start .. n - 1``, then pooling)."""
        return self.pool(self.run(start, self.n, h, ctx), ctx, concat)


@dataclass
class Cache:
    """Activations entering each needed group index, for one split of the data."""

    acts: dict[int, torch.Tensor]
    ctx: torch.Tensor | None
    y: torch.Tensor
    mid: torch.Tensor  # pooled output of the middle group (lp-concat)
    final: torch.Tensor  # pooled final features (linear probe)


def build_cache(split: Split, items: Sequence[Any], y: np.ndarray, starts: Sequence[int], batch_size: int = 64) -> Cache:
    """One eval-mode pass: the inputs of groups ``starts`` (0 = the preprocessed input) and pooled features."""
    from zoo.runner.stage1 import concat_group

    split.model.eval()
    names = [g.name for g in split.groups]
    mid_idx = names.index(concat_group(names))  # the group zoo run's lp-concat reads
    acts: dict[int, list[torch.Tensor]] = {s: [] for s in starts}
    ctxs, mids, finals = [], [], []
    with torch.inference_mode():
        for b in range(0, len(items), batch_size):
            x, ctx = split.prepare(items[b : b + batch_size])
            h = x
            for i in range(split.n):
                if i in acts:
                    acts[i].append(h)
                h = split.run(i, i + 1, h, ctx)
                if i == mid_idx:  # pooled as zoo's feature cache pools a group (images: over space; text: over real tokens)
                    mids.append(pool_output(h, ctx))
            if split.n in acts:
                acts[split.n].append(h)
            finals.append(split.pool(h, ctx))
            ctxs.append(ctx)
    if split.text:  # pad every batch to the longest sequence of the split
        L = max(c.shape[1] for c in ctxs)
        pad = lambda t, v: nn.functional.pad(t, (0, 0, 0, L - t.shape[1]), value=v) if t.dim() == 3 else nn.functional.pad(t, (0, L - t.shape[1]), value=v)
        acts = {s: [pad(t, 0) for t in v] for s, v in acts.items()}
        ctxs = [pad(c, 0) for c in ctxs]
    return Cache(
        acts={s: torch.cat(v).clone() for s, v in acts.items()},
        ctx=torch.cat(ctxs).clone() if split.text else None,
        y=torch.as_tensor(y, dtype=torch.int64),
        mid=torch.cat(mids).clone(),
        final=torch.cat(finals).clone(),
    )


# ---- linear probe ---------------------------------------------------------------------------------


def _lbfgs(z: torch.Tensor, y: torch.Tensor, c: int, l2: float) -> tuple[torch.Tensor, torch.Tensor]:
    w = torch.zeros(c, z.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(c, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=100, history_size=10, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(z @ w.T + b, y) + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def fit_linear(x: torch.Tensor, y: torch.Tensor, n_classes: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Logistic-regression head on raw features ``(W, b, l2)``; L2 picked on a stratified 25 % inner split, then refit on all."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # thousands of tiny L-BFGS ops: threads only add overhead (as zoo.runner.stage1)
    try:
        return _fit_linear(x, y, n_classes, seed)
    finally:
        torch.set_num_threads(threads)


def _fit_linear(x: torch.Tensor, y: torch.Tensor, n_classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    x = x.double()
    mu = x.mean(0)
    sd = (x - mu).pow(2).mean().sqrt().clamp(min=1e-6)
    z = (x - mu) / sd
    rng = np.random.default_rng(seed)
    yn = y.numpy()
    val = np.zeros(len(yn), bool)
    for c in np.unique(yn):
        idx = np.flatnonzero(yn == c)
        val[rng.permutation(idx)[: max(1, len(idx) // 4)]] = True
    best = (-1.0, L2_GRID[-1])
    if (~val).sum() > 0:
        for l2 in sorted(L2_GRID, reverse=True):
            w, b = _lbfgs(z[~val], y[~val], n_classes, l2)
            acc = float(((z[val] @ w.T + b).argmax(1) == y[val]).double().mean())
            if acc > best[0] + 1e-12:
                best = (acc, l2)
    w, b = _lbfgs(z, y, n_classes, best[1])
    return (w / sd).float(), (b - (mu / sd) @ w.T).float(), best[1]


def probe(train: torch.Tensor, ytr: torch.Tensor, test: torch.Tensor, yte: torch.Tensor, n_classes: int, seed: int) -> tuple[float, tuple[torch.Tensor, torch.Tensor]]:
    """Test accuracy of the linear probe and its head ``(W, b)``."""
    w, b, _ = fit_linear(train, ytr, n_classes, seed)
    acc = float(((test.float() @ w.T + b).argmax(1) == yte).float().mean())
    return acc, (w, b)


def concat_features(c: Cache, ref: Cache) -> torch.Tensor:
    """Middle and final pooled features, each scaled to unit RMS (statistics of ``ref``, the training split),
    as zoo run's lp-concat (:func:`zoo.runner.stage1.fit_concat_head`) scales them."""
    from zoo.runner.stage1 import block_scale

    s_mid, s_fin = block_scale(ref.mid.numpy()), block_scale(ref.final.numpy())
    return torch.cat([c.mid / s_mid, c.final / s_fin], 1)


# ---- fine-tuning ------------------------------------------------------------------------------------


@dataclass
class Phase:
    """One training phase.

    Attributes:
        groups: trained layer-group indices (input = 0).
        lr: learning rate per trained group index and for ``"head"``.
        epochs, batch_size: passes over the training split and batch size.
        optimizer: ``sgd`` (Nesterov momentum 0.9), ``adam`` or ``adamw``.
        schedule: ``cosine`` (linear warm-up), ``linear`` (warm-up then linear decay), ``onecycle``, ``constant``.
        bn: ``frozen`` (BatchNorm in inference mode everywhere), ``train`` (trained groups update statistics),
            ``train-all`` (fastai / Lightning ``train_bn``: BatchNorm of frozen groups trains too).
    """

    groups: list[int]
    lr: dict[Any, float]
    epochs: int
    batch_size: int = 32
    optimizer: str = "sgd"
    weight_decay: float = 0.0
    schedule: str = "cosine"
    warmup_frac: float = 0.05
    bn: str = "frozen"
    label_smoothing: float = 0.0
    onecycle: dict[str, float] = field(default_factory=dict)
    adam_betas: tuple[float, float] = (0.9, 0.999)
    max_grad_norm: float | None = None  # clip the global gradient norm before each step (Hugging Face Trainer's max_grad_norm)
    no_decay_1d: bool = False  # no weight decay on biases and norm weights (zoo run, timm, HF Trainer; fastai's wd_bn_bias=False)


class Head(nn.Module):
    """A classifier on pooled features: a linear layer (LP init, zero init or PyTorch default), with optional dropout / fastai body."""

    def __init__(self, dim: int, n_classes: int, kind: str = "linear", dropout: float = 0.0, concat: bool = False) -> None:
        super().__init__()
        self.concat = concat
        if kind == "fastai":  # fastai create_head: BN, Dropout(0.25), Linear(512), ReLU, BN, Dropout(0.5), Linear
            self.net = nn.Sequential(nn.BatchNorm1d(dim), nn.Dropout(0.25), nn.Linear(dim, 512, bias=False), nn.ReLU(inplace=True), nn.BatchNorm1d(512), nn.Dropout(0.5), nn.Linear(512, n_classes, bias=False))
        else:
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, n_classes))

    def init_from(self, w: torch.Tensor, b: torch.Tensor) -> Head:
        """Start the last linear layer from a probe's ``(W, b)``."""
        with torch.no_grad():
            self.net[-1].weight.copy_(w)
            self.net[-1].bias.copy_(b)
        return self

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.net(f)


def _schedule(opt: torch.optim.Optimizer, ph: Phase, total: int) -> Any:
    if ph.schedule == "onecycle":
        o = ph.onecycle
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=max(total, 2), pct_start=o.get("pct_start", 0.25),
            div_factor=o.get("div", 25.0), final_div_factor=o.get("div_final", 1e5) / o.get("div", 25.0), anneal_strategy="cos",
            cycle_momentum=True, base_momentum=0.85, max_momentum=0.95,
        )
    warm = int(math.ceil(ph.warmup_frac * total)) if ph.warmup_frac > 0 else 0

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if ph.schedule == "constant" or total <= warm:
            return 1.0
        t = min(1.0, (step - warm) / (total - warm))
        return 1.0 - t if ph.schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * t))

    return torch.optim.lr_scheduler.LambdaLR(opt, f)


def _set_modes(split: Split, ph: Phase, head: Head) -> None:
    split.model.eval()
    head.train()
    for i in ph.groups:
        for m in split.groups[i].modules:
            m.train()
    for m in split.model.modules():
        if isinstance(m, _BN):
            m.train(ph.bn == "train-all" or (ph.bn == "train" and m.training))


def _trainable(split: Split, ph: Phase) -> list[dict[str, Any]]:
    for p in split.model.parameters():
        p.requires_grad_(False)
    out = []
    for i in ph.groups:
        ps = [p for m in split.groups[i].modules for p in m.parameters()]
        for p in ps:
            p.requires_grad_(True)
        out.append({"params": ps, "lr": ph.lr[i]})
    if ph.bn == "train-all":  # BN affine of frozen groups joins the lowest trained LR group (fastai: one group per split)
        extra = [p for i in range(split.n) if i not in ph.groups for m in split.groups[i].modules for mm in m.modules() if isinstance(mm, _BN) for p in mm.parameters()]
        for p in extra:
            p.requires_grad_(True)
        if extra:
            out.append({"params": extra, "lr": min([ph.lr[i] for i in ph.groups] or [ph.lr["head"]])})
    return out


def start_of(phases: Sequence[Phase]) -> int:
    """The lowest group a recipe runs: below it the activations are cached."""
    lows = [0 if ph.bn == "train-all" else min(ph.groups, default=10_000) for ph in phases]
    return min(lows)


def train(split: Split, phases: Sequence[Phase], head: Head, train_c: Cache, test_c: Cache, start: int, seed: int) -> dict[str, Any]:
    """Run ``phases``, each from the deepest cached activations below its lowest trained group; test from ``start``.

    Returns test accuracy, optimizer steps, seconds, the training loss of the first batch before any
    step (``loss_start``) and the mean training loss of the last epoch (``loss_end``), and ``diverged``
    (:func:`diverged`).
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    ctx_all, y_all = train_c.ctx, train_c.y
    n = len(y_all)
    steps = 0
    loss_start = math.nan
    epoch_losses: list[float] = []
    t0 = time.perf_counter()
    for ph in phases:
        s0 = max((k for k in train_c.acts if k <= start_of([ph])), default=start)
        h_all = train_c.acts[s0]
        pg = _trainable(split, ph) + [{"params": list(head.parameters()), "lr": ph.lr["head"]}]
        pg = [g for g in pg if g["params"]]
        if ph.weight_decay and ph.no_decay_1d:
            pg = [{**g, "params": ps, "weight_decay": w} for g in pg
                  for ps, w in (([p for p in g["params"] if p.ndim > 1], ph.weight_decay), ([p for p in g["params"] if p.ndim <= 1], 0.0)) if ps]
        if ph.optimizer == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(pg, lr=pg[0]["lr"], momentum=0.9, nesterov=True, weight_decay=ph.weight_decay)
        elif ph.optimizer == "adamw":
            opt = torch.optim.AdamW(pg, lr=pg[0]["lr"], weight_decay=ph.weight_decay, betas=ph.adam_betas)
        else:
            opt = torch.optim.Adam(pg, lr=pg[0]["lr"], weight_decay=ph.weight_decay, betas=ph.adam_betas)
        per_epoch = math.ceil(n / ph.batch_size)
        sched = _schedule(opt, ph, per_epoch * ph.epochs)
        loss_fn = nn.CrossEntropyLoss(label_smoothing=ph.label_smoothing)
        for _ in range(ph.epochs):
            _set_modes(split, ph, head)
            epoch_losses = []
            order = torch.randperm(n, generator=gen)
            for b in range(0, n, ph.batch_size):
                idx = order[b : b + ph.batch_size]
                if len(idx) < 2 and any(isinstance(m, nn.BatchNorm1d) for m in head.modules()):
                    continue
                ctx = ctx_all[idx] if ctx_all is not None else None
                logits = head(split.forward(s0, h_all[idx], ctx, head.concat))
                loss = loss_fn(logits, y_all[idx])
                value = float(loss.detach())
                if steps == 0:
                    loss_start = value
                epoch_losses.append(value)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if ph.max_grad_norm is not None:
                    nn.utils.clip_grad_norm_([p for g in pg for p in g["params"]], ph.max_grad_norm)
                opt.step()
                if steps_left(sched):
                    sched.step()
                steps += 1
    acc = evaluate(split, head, test_c, start)
    for p in split.model.parameters():
        p.requires_grad_(False)
    loss_end = float(np.mean(epoch_losses)) if epoch_losses else math.nan
    return {"acc": acc, "steps": steps, "seconds": time.perf_counter() - t0, "loss_start": loss_start, "loss_end": loss_end,
            "diverged": diverged(loss_start, loss_end)}


#: a diverged fine-tuning arm is run again once with every learning rate times this (see :func:`diverged`)
RETRY_LR_SCALE = 0.1


def diverged(loss_start: float, loss_end: float) -> bool:
    """Whether a run diverged: its last epoch's mean training loss is not finite or above the loss it started from.

    Training-side only (no test data): what a practitioner sees in the loss curve before rerunning at a
    lower learning rate.
    """
    return not math.isfinite(loss_end) or (math.isfinite(loss_start) and loss_end > loss_start)


def scale_lr(phases: Sequence[Phase], factor: float) -> list[Phase]:
    """The same phases with every learning rate multiplied by ``factor``."""
    return [replace(p, lr={k: v * factor for k, v in p.lr.items()}) for p in phases]


def steps_left(sched: Any) -> bool:
    """Whether a scheduler with a fixed length (one-cycle) may still step."""
    total = getattr(sched, "total_steps", None)
    return total is None or sched.last_epoch + 1 < total


def evaluate(split: Split, head: Head, c: Cache, start: int, batch_size: int = 128) -> float:
    """Test accuracy with everything in eval mode, from the cached activations at ``start``."""
    split.model.eval()
    head.eval()
    correct = 0
    with torch.inference_mode():
        for b in range(0, len(c.y), batch_size):
            ctx = c.ctx[b : b + batch_size] if c.ctx is not None else None
            logits = head(split.forward(start, c.acts[start][b : b + batch_size], ctx, head.concat))
            correct += int((logits.argmax(1) == c.y[b : b + batch_size]).sum())
    return correct / len(c.y)


def snapshot(split: Split) -> dict[str, torch.Tensor]:
    """The pretrained weights and BatchNorm statistics, to restore before every arm."""
    return {k: v.detach().clone() for k, v in split.model.state_dict().items()}


def restore(split: Split, state: dict[str, torch.Tensor]) -> None:
    """Load the snapshot back, freeze every parameter, eval mode."""
    split.model.load_state_dict(state)
    for p in split.model.parameters():
        p.requires_grad_(False)
    split.model.eval()


#: the fewest passes over the training split any fine-tuning run gets: no peer recipe trains fewer
#: (AutoTrain's default is 3 epochs; fastai, Keras and Flash take the user's count); one pass over
#: 1,000 items at a 2-step warm-up measured a run's first dip, not the recipe
MIN_EPOCHS = 3


def ft_epochs(n: int, batch_size: int, target_steps: int, max_epochs: int = 40) -> int:
    """Epochs that give about ``target_steps`` optimizer steps (the CPU budget), at least :data:`MIN_EPOCHS`."""
    return max(MIN_EPOCHS, min(max_epochs, round(target_steps / math.ceil(n / batch_size))))
