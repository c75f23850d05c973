"""Per-group features of a labelled sample, extracted in one forward pass and cached on disk.

Cache format (read by the recommender and reused by ``zoo run`` for its stage 1, the linear probe
fitted on frozen features):

* location: ``zoo.constants.zoo_home() / "features" / f"{key}.npz"``, where ``key`` is the first 32
  hex digits of sha256 over ``backbone id | data fingerprint | preprocessing`` (the preprocessing
  as sorted JSON: ``{"resolution": 128, "resize": "bicubic-shorter-side+center-crop"}`` for
  images, ``{"max_length": ...}`` for text). Change any of the three and the key changes.
* written atomically (a temporary file in the same folder, then ``os.replace``); a file that
  cannot be read is treated as absent and rewritten. A cache that cannot be written (a read-only
  shared ``ZOO_HOME``, a full disk) is a one-line warning: the features just extracted are used.
* arrays (``numpy.load(path)``):

  - ``labels``: int64 ``(n,)``, indices into ``meta["classes"]``;
  - ``group_00``, ``group_01``, ...: float32 ``(n, d_j)`` pooled output of each layer group, input
    to output (names in ``meta["groups"]``); the last one equals ``Backbone.embed`` under this
    preprocessing;
  - ``logits``: float32 ``(n, C_source)`` of the pre-training head, when the backbone has one;
  - ``meta``: a 0-d unicode array holding JSON: ``format`` (1), ``backbone``, ``fingerprint``,
    ``preprocessing``, ``groups``, ``classes``, ``n``, ``seconds`` (extraction wall time),
    ``seconds_per_item``, ``flops_per_item`` (forward FLOPs of one item, or null), ``created``, and
    ``reused`` (how many rows came from an earlier pass over a sub-sample, when any).

Sub-sample files (``features_for(..., rows=index)``; the recommender ranks several candidates on a
stratified sub-sample) hold only those rows, under the key of ``fingerprint + "|rows"``, with one
more array, ``index``: int64 ``(n,)``, the rows' positions in the sample, and ``meta["of"]``, the
sample size. There is one per backbone, data and preprocessing (the latest rows asked for). A
whole-sample request (``zoo run``'s stage 1) that misses takes these rows from it and extracts only
the others; the whole-sample file it writes is exactly what a single pass would write. ``zoo run`` on data
larger than the recommender's sample (``features_for(..., sample=2000)``) finds that sample's file, or its
sub-sample file, by the fingerprint the sample has (``Dataset.sample_fingerprint``) and reuses those rows the same way.

A whole-sample extraction that is interrupted (Ctrl-C, or SIGTERM, which the ``zoo`` command unwinds the same way)
keeps the rows of its finished batches (and the rows it reused) in a partial file, in the sub-sample format under the
key of ``fingerprint + "|partial"``; the next whole-sample request takes them from it, extracts the others, and
removes it once the whole-sample file is written. A process killed outright (``kill -9``, the OOM killer) keeps
nothing: the rows are saved as the interruption unwinds, not rewritten every few batches (for a large sample that
is the whole file again each time).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zoo._io import atomic_write
from zoo import constants

FORMAT = 1


@dataclass
class FeatureSet:
    """Features of one backbone on one sample (what the cache file holds)."""

    backbone: str
    groups: dict[str, np.ndarray]  # input to output; the last is the pooled embedding
    labels: np.ndarray
    logits: np.ndarray | None
    meta: dict[str, Any]
    path: Path | None = None
    cached: bool = False
    index: np.ndarray | None = None  # the rows' positions in the sample, for a sub-sample's features

    @property
    def final(self) -> np.ndarray:
        return list(self.groups.values())[-1]

    def take(self, index: np.ndarray) -> FeatureSet:
        """The rows at ``index`` (a sub-sample's features cut out of the whole sample's), not saved."""
        index = np.asarray(index, dtype=np.int64)
        meta = dict(self.meta, n=len(index))
        logits = self.logits[index] if self.logits is not None else None
        return FeatureSet(self.backbone, {k: v[index] for k, v in self.groups.items()}, self.labels[index], logits, meta, None, self.cached, index)


def cache_dir() -> Path:
    return constants.zoo_home() / "features"


def cache_key(backbone_id: str, fingerprint: str, preprocessing: dict[str, Any]) -> str:
    """Key of a feature file: sha256 of backbone id, data fingerprint, preprocessing and the version of zoo's image
    reading rules (``zoo.inputs.DECODING_VERSION``) (32 hex digits)."""
    from zoo.inputs import DECODING_VERSION

    text = f"{backbone_id}|{fingerprint}|{json.dumps(preprocessing, sort_keys=True)}|decoding {DECODING_VERSION}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def cache_path(key: str) -> Path:
    return cache_dir() / f"{key}.npz"


def save(fs: FeatureSet, key: str) -> Path:
    """Write ``fs`` atomically under its key; returns the path."""
    path = cache_path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    # np.asarray, not astype: features already float32 are written as they are, not copied first (a second copy of
    # every item's features, 12 KB an image for EfficientNet-Lite0's 9 groups and logits, held while the file is written)
    arrays: dict[str, Any] = {"labels": np.asarray(fs.labels, dtype=np.int64)}
    names = list(fs.groups)
    for i, name in enumerate(names):
        arrays[f"group_{i:02d}"] = np.asarray(fs.groups[name], dtype=np.float32)
    if fs.logits is not None:
        arrays["logits"] = np.asarray(fs.logits, dtype=np.float32)
    if fs.index is not None:
        arrays["index"] = np.asarray(fs.index, dtype=np.int64)
    meta = dict(fs.meta, format=FORMAT, groups=names, backbone=fs.backbone)
    arrays["meta"] = np.array(json.dumps(meta))
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:  # a file object: np.savez would append ".npz" to a path
            np.savez(fh, **arrays)

    atomic_write(path, write)
    fs.path = path
    return path


_unkept: set[Path] = set()  # cache folders this process could not write to (said once each)


def keep(fs: FeatureSet, key: str) -> None:
    """:func:`save` what was just extracted; a cache that cannot take it (a read-only shared ``ZOO_HOME``, a full disk)
    is a one-line warning, not an error: the features are in hand, and the minutes spent on them are not thrown away."""
    try:
        save(fs, key)
    except OSError as exc:
        fs.path = None
        if cache_dir() not in _unkept:
            _unkept.add(cache_dir())
            print(f"zoo: warning: cannot keep the extracted features in {cache_dir()} ({exc.strerror or type(exc).__name__}); they are used now "
                  "but extracted again next time: point ZOO_HOME at a writable folder to keep them.", file=sys.stderr)


def load(key: str, only: Collection[str] | None = None) -> FeatureSet | None:
    """The cached features under ``key``, or ``None`` when absent or unreadable.

    ``only``: read just these groups and the final one, and no logits (``zoo run``'s stage 1 reads the final
    features, and lp-concat's middle group: EfficientNet-Lite0's 9 groups and 1000 logits are 12 KB an image, the
    final features 5). The file's ``meta["groups"]`` still names every group it holds.
    """
    path = cache_path(key)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:  # an NpzFile reads an array when it is asked for
            meta = json.loads(str(z["meta"]))
            if meta.get("format") != FORMAT:
                return None
            last = len(meta["groups"]) - 1
            groups = {name: z[f"group_{i:02d}"] for i, name in enumerate(meta["groups"]) if only is None or name in only or i == last}
            logits = z["logits"] if "logits" in z.files and only is None else None
            labels = z["labels"]
            index = z["index"] if "index" in z.files else None
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        return None
    return FeatureSet(meta["backbone"], groups, labels, logits, meta, path, cached=True, index=index)


def preprocessing_for(backbone: Any, resolution: int | None) -> dict[str, Any]:
    """How the sample is preprocessed for ``backbone`` (part of the cache key)."""
    if backbone.input_spec.modality == "image":
        return {"resolution": resolution, "resize": "bicubic-shorter-side+center-crop", "mean": backbone.input_spec.mean, "std": backbone.input_spec.std}
    return {"max_length": getattr(backbone, "max_length", None)}


def _image_transform(backbone: Any, resolution: int) -> Any:
    from torchvision import transforms as T

    spec = backbone.input_spec
    steps = [T.Resize(resolution, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(resolution), T.ToTensor()]
    if spec.mean is not None and spec.std is not None:
        steps.append(T.Normalize(spec.mean, spec.std))
    return T.Compose(steps)


def _flops(backbone: Any, batch: Any) -> float | None:
    try:
        import torch
        from torch.utils.flop_counter import FlopCounterMode

        from zoo.frameworks.torch import batch_len, call_model

        with torch.inference_mode(), FlopCounterMode(display=False) as fc:
            call_model(backbone.model, batch)
        return float(fc.get_total_flops()) / max(1, batch_len(batch))
    except Exception:  # noqa: BLE001 - FLOPs are a cost estimate only
        return None


def extract(
    backbone: Any, items: Sequence[Any], labels: np.ndarray, *, resolution: int | None = None, batch_size: int = 32, count_flops: bool = True,
    positions: np.ndarray | None = None, size: int | None = None, length_sorted: bool = True,
    keep_done: Callable[[FeatureSet], None] | None = None,
) -> FeatureSet:
    """Pooled output of every layer group (and the source head's logits) in one forward pass.

    Works for any torch Backbone: a forward hook on each group's modules keeps the output of the
    last one to run, pooled over space (CNN) or over real tokens (text). Images are resized to
    ``resolution`` (shorter side, bicubic) and centre-cropped; text uses the backbone's tokenizer.
    ``count_flops``: also count one item's forward FLOPs (``meta["flops_per_item"]``; a traced
    extra forward of one item). ``positions``, ``size``: item ``i``'s rows go to row ``positions[i]`` of
    arrays of ``size`` rows (the other rows are left for the caller to fill; ``labels`` stay the items').
    ``length_sorted``: run texts longest first (rows stay in the items' order); ``False`` runs them as given.
    ``keep_done``: on an interruption (``KeyboardInterrupt``) after at least one batch, called with the finished
    items' rows (``index``: their rows as above) before the interruption goes on (torch backbones).
    """
    if getattr(backbone, "framework", "torch") != "torch":  # Keras / TF Hub: same format, same preprocessing
        from zoo.runner.keras_run import extract as keras_extract

        return keras_extract(backbone, items, labels, resolution=resolution, batch_size=batch_size, count_flops=count_flops,
                             positions=positions, size=size)
    import torch

    from zoo.frameworks.torch import move, pool_output

    model = backbone.model
    image = backbone.input_spec.modality == "image"
    if image:
        if resolution is None:
            resolution = backbone.input_spec.size or 224
        tf = _image_transform(backbone, resolution)
        from zoo.inputs import load_images_for

        def prep(chunk: Sequence[Any]) -> Any:
            return torch.stack([tf(im) for im in load_images_for(backbone, list(chunk))])
    else:
        def prep(chunk: Sequence[Any]) -> Any:
            return backbone.preprocess(list(chunk))

    was = model.training
    groups = list(backbone.layer_groups)
    names = [g.name for g in groups]
    state: dict[str, Any] = {"mask": None}
    current: dict[str, Any] = {}
    handles = []

    def hook_for(name: str) -> Any:
        def hook(module: Any, args: Any, out: Any) -> None:
            pooled = pool_output(out, state["mask"], getattr(backbone, "channels_last", False))
            if pooled is not None:
                current[name] = pooled
        return hook

    model.eval()
    flops = _flops(backbone, move(prep(items[:1]), backbone.device)) if count_flops else None
    for g in groups:
        for m in g.modules:
            if isinstance(m, torch.nn.Module):
                handles.append(m.register_forward_hook(hook_for(g.name)))
    head = backbone.source_head if image else None
    # each batch's rows go straight into one (n, d) array per group, allocated at the first batch: the features of
    # all items exist once (per-batch chunks joined at the end held them twice)
    outs: dict[str, np.ndarray] = {}
    batches: dict[str, int] = {n: 0 for n in names}  # batches that gave this group an output
    logits_out: np.ndarray | None = None
    n_rows = len(items) if positions is None or size is None else int(size)
    n_batches = 0

    # texts go through the model longest first, as sentence-transformers batches them: a batch is padded to its
    # longest text, so mixing lengths pays for padding (each text's features do not depend on its batch-mates)
    order = np.argsort([-len(t) for t in items], kind="stable") if length_sorted and not image else np.arange(len(items))
    rows_of = order if positions is None else np.asarray(positions)[order]

    def put(into: np.ndarray | None, rows: Any, start: int) -> np.ndarray:
        rows = np.asarray(rows)
        if into is None:
            into = np.empty((n_rows, *rows.shape[1:]), dtype=np.float32)
        into[rows_of[start : start + len(rows)]] = rows
        return into

    t0 = time.perf_counter()
    finished, complete = 0, 0  # items and batches done, and the groups pooled on every one of them (below)
    pooled_on: dict[str, int] = {}
    try:
        with torch.inference_mode():
            for start in range(0, len(items), batch_size):
                batch = move(prep([items[i] for i in order[start : start + batch_size]]), backbone.device)
                state["mask"] = batch.get("attention_mask") if isinstance(batch, dict) else None
                current.clear()
                pooled = backbone.features(batch).flatten(1).float()
                current[names[-1]] = pooled  # the last group's output is the model's pooled embedding
                n_batches += 1
                for n in names:
                    if n in current:
                        outs[n] = put(outs.get(n), current[n].cpu().numpy(), start)
                        batches[n] += 1
                if head is not None:
                    logits_out = put(logits_out, head(pooled).float().cpu().numpy(), start)
                finished, complete, pooled_on = min(len(items), start + batch_size), n_batches, dict(batches)
    except KeyboardInterrupt:
        if keep_done is not None and finished:
            done = rows_of[:finished]
            kept = {n: outs[n][done] for n in names if n in outs and pooled_on[n] == complete}  # not batches: the interrupted batch may be half counted
            meta = {"flops_per_item": flops or None, "n": finished, "seconds": round(time.perf_counter() - t0, 3)}
            keep_done(FeatureSet(str(backbone.id), kept, np.asarray(labels, dtype=np.int64)[order[:finished]],
                                 logits_out[done] if logits_out is not None else None, meta, index=np.asarray(done, dtype=np.int64)))
        raise
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    seconds = time.perf_counter() - t0
    ordered = {n: outs[n] for n in names if n in outs and batches[n] == n_batches}  # groups pooled on every batch
    meta = {
        "seconds": round(seconds, 3),
        "seconds_per_item": seconds / max(1, len(items)),
        "flops_per_item": flops or None,
        "n": len(items),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return FeatureSet(str(backbone.id), ordered, np.asarray(labels, dtype=np.int64), logits_out, meta)


def cached(backbone: Any, dataset: Any, resolution: int | None, only: Collection[str] | None = None) -> FeatureSet | None:
    """The cached features of ``dataset``'s whole sample for ``backbone``, or ``None`` (nothing is extracted);
    ``only``: see :func:`load`."""
    hit = load(cache_key(str(backbone.id), dataset.fingerprint, preprocessing_for(backbone, resolution)), only)
    if hit is not None and hit.index is None and np.array_equal(hit.labels, dataset.labels):
        return hit
    return None


def _rows_file(backbone: Any, dataset: Any, prep: dict[str, Any]) -> str:
    return cache_key(str(backbone.id), f"{dataset.fingerprint}|rows", prep)


def _partial_file(backbone: Any, dataset: Any, prep: dict[str, Any]) -> str:
    return cache_key(str(backbone.id), f"{dataset.fingerprint}|partial", prep)


def _cached_rows(backbone: Any, dataset: Any, prep: dict[str, Any], key: str | None = None) -> FeatureSet | None:
    """The sub-sample file of ``dataset`` for ``backbone`` (or the file under ``key``: an interrupted extraction's
    partial file), when it is there and fits the sample."""
    part = load(key or _rows_file(backbone, dataset, prep))
    if part is None or part.index is None or part.backbone != str(backbone.id):
        return None
    idx = np.asarray(part.index, dtype=np.int64)
    n = len(dataset.labels)
    if len(idx) != len(part.labels) or len(np.unique(idx)) != len(idx) or (len(idx) and (idx.min() < 0 or idx.max() >= n)):
        return None
    if part.meta.get("of") != n or not np.array_equal(np.asarray(dataset.labels)[idx], part.labels):
        return None
    return part


def _merge(n: int, parts: Sequence[tuple[np.ndarray, FeatureSet]], labels: np.ndarray) -> FeatureSet:
    """Rows of several feature sets (each with the sample positions it covers) put back in sample order."""
    first = parts[0][1]
    names = [g for g in first.groups if all(g in fs.groups for _, fs in parts)]
    groups = {}
    for g in names:
        out = np.empty((n, first.groups[g].shape[1]), dtype=np.float32)
        for idx, fs in parts:
            out[idx] = fs.groups[g]
        groups[g] = out
    logits = None
    if all(fs.logits is not None for _, fs in parts):
        logits = np.empty((n, first.logits.shape[1]), dtype=np.float32)
        for idx, fs in parts:
            logits[idx] = fs.logits
    return FeatureSet(first.backbone, groups, np.asarray(labels, dtype=np.int64), logits, {})


def _sample_rows(backbone: Any, dataset: Any, prep: dict[str, Any], sample: int) -> FeatureSet | None:
    """The rows the recommender extracted from its ``sample``-item sample of ``dataset`` (a larger, whole dataset),
    with ``index`` their positions in ``dataset``: its whole-sample file, else its sub-sample file. ``None`` when the
    sample's fingerprint matches no file (another backbone, preprocessing or data, or none was left)."""
    if len(dataset.labels) <= sample or not hasattr(dataset, "sample_fingerprint"):
        return None
    try:
        pick, fingerprint = dataset.sample_fingerprint(sample)
    except OSError:
        return None
    bid = str(backbone.id)
    labels = np.asarray(dataset.labels)
    fs = load(cache_key(bid, fingerprint, prep))
    if fs is not None and fs.index is None and fs.backbone == bid and np.array_equal(fs.labels, labels[pick]):
        fs.index = np.asarray(pick, dtype=np.int64)
        return fs
    fs = load(cache_key(bid, f"{fingerprint}|rows", prep))
    if fs is None or fs.index is None or fs.backbone != bid or fs.meta.get("of") != len(pick):
        return None
    idx = np.asarray(fs.index, dtype=np.int64)
    if len(idx) != len(fs.labels) or len(np.unique(idx)) != len(idx) or (len(idx) and (idx.min() < 0 or idx.max() >= len(pick))):
        return None
    if not np.array_equal(labels[pick[idx]], fs.labels):
        return None
    fs.index = np.asarray(pick[idx], dtype=np.int64)
    return fs


def features_for(
    backbone: Any, dataset: Any, resolution: int | None, batch_size: int = 32, rows: np.ndarray | None = None, only: Collection[str] | None = None,
    sample: int | None = None,
) -> FeatureSet:
    """Cached features of ``dataset``'s sample for ``backbone``, extracting and saving them on a miss.

    ``rows``: only these positions of the sample (a sub-sample, e.g. the recommender's ranking
    items), cut from the whole-sample file when there is one, else extracted and saved as the
    sub-sample file. Without ``rows`` (what ``zoo run`` asks for), a miss reuses the sub-sample
    file's rows and extracts only the others; the whole-sample file it saves covers the sample in
    order, as a single pass would (``meta["reused"]`` says how many rows came from the sub-sample).
    ``only`` (whole sample only): return just these groups and the final one, without logits (see :func:`load`);
    a miss still extracts and saves them all. ``sample`` (whole sample only): the size of the sample ``zoo
    recommend`` measured; when ``dataset`` is larger, the rows extracted for that sample are reused too.
    """
    prep = preprocessing_for(backbone, resolution)
    key = cache_key(str(backbone.id), dataset.fingerprint, prep)
    n = len(dataset.items)
    whole = cached(backbone, dataset, resolution, only if rows is None else None)
    if rows is not None:
        rows = np.asarray(rows, dtype=np.int64)
        if whole is not None:
            return whole.take(rows)
        part = _cached_rows(backbone, dataset, prep)
        if part is not None and np.array_equal(part.index, rows):
            return part
        fs = extract(backbone, [dataset.items[int(i)] for i in rows], np.asarray(dataset.labels)[rows], resolution=resolution, batch_size=batch_size)
        fs.index = rows
        fs.meta.update(fingerprint=dataset.fingerprint, preprocessing=prep, classes=list(dataset.classes), of=n)
        keep(fs, _rows_file(backbone, dataset, prep))
        return fs
    if whole is not None:
        return whole
    part = _cached_rows(backbone, dataset, prep)
    if part is None and sample is not None:
        part = _sample_rows(backbone, dataset, prep, sample)
    partial_key = _partial_file(backbone, dataset, prep)
    partial = _cached_rows(backbone, dataset, prep, partial_key)  # what an interrupted extraction kept (it holds the rows it reused)
    if partial is not None and (part is None or len(partial.index) > len(part.index)):
        part = partial

    def keep_done(done: FeatureSet) -> None:
        """Keep the rows reused and those extracted before an interruption, for the next request to take."""
        parts = [p for p in (part, done) if p is not None and p.index is not None and len(p.index)]
        names = [g for g in done.groups if all(g in p.groups for p in parts)]
        kept = FeatureSet(done.backbone, {g: np.concatenate([p.groups[g] for p in parts]) for g in names},
                          np.concatenate([np.asarray(p.labels, dtype=np.int64) for p in parts]),
                          np.concatenate([p.logits for p in parts]) if all(p.logits is not None for p in parts) else None,
                          dict(done.meta, fingerprint=dataset.fingerprint, preprocessing=prep, classes=list(dataset.classes), of=n,
                               flops_per_item=done.meta.get("flops_per_item") or (part.meta.get("flops_per_item") if part is not None else None)),
                          index=np.concatenate([np.asarray(p.index, dtype=np.int64) for p in parts]))
        if len(kept.index) > (len(partial.index) if partial is not None else 0):  # never fewer rows than the file already holds
            keep(kept, partial_key)

    if part is None or not len(part.index):
        fs = extract(backbone, dataset.items, dataset.labels, resolution=resolution, batch_size=batch_size, keep_done=keep_done)
    else:
        idx = np.asarray(part.index, dtype=np.int64)
        rest = np.setdiff1d(np.arange(n), idx)
        meta = {k: v for k, v in part.meta.items() if k not in ("fingerprint", "preprocessing", "classes", "format", "groups", "backbone", "of")}
        if len(rest):
            # the other rows are extracted straight into sample-sized arrays, then the sub-sample's rows are put in:
            # the sample's features exist once (extracting the rest, then merging both parts into new arrays, held them twice)
            new = extract(
                backbone, [dataset.items[int(i)] for i in rest], np.asarray(dataset.labels)[rest], resolution=resolution, batch_size=batch_size,
                count_flops=not part.meta.get("flops_per_item"), positions=rest, size=n, keep_done=keep_done,
            )
            meta = dict(new.meta, seconds=new.meta["seconds"], flops_per_item=new.meta["flops_per_item"] or part.meta.get("flops_per_item"))
            groups = {}
            for g in [g for g in part.groups if g in new.groups]:  # the groups both have, in the file's order
                groups[g] = new.groups.pop(g)
                groups[g][idx] = part.groups.pop(g)
            logits = None
            if new.logits is not None and part.logits is not None:
                logits = new.logits
                logits[idx] = part.logits
            fs = FeatureSet(part.backbone, groups, np.asarray(dataset.labels, dtype=np.int64), logits, {})
        else:
            fs = _merge(n, [(idx, part)], dataset.labels)
        fs.meta = dict(meta, n=n, reused=len(idx), created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    fs.meta.update(fingerprint=dataset.fingerprint, preprocessing=prep, classes=list(dataset.classes))
    keep(fs, key)
    if fs.path is not None:  # the whole-sample file is written: an interrupted extraction's rows are in it
        try:
            cache_path(partial_key).unlink(missing_ok=True)
        except OSError:
            pass
    if only is not None:
        last = list(fs.groups)[-1] if fs.groups else None
        fs.groups = {g: a for g, a in fs.groups.items() if g in only or g == last}
        fs.logits = None
    return fs
