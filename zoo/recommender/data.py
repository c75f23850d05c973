"""Datasets for ``zoo recommend --data``: an image folder (one sub-folder per class) or a CSV/JSONL of text and label.

:func:`load_dataset` measures N, C, the smallest class and the image sizes, skips (and counts)
unreadable files, checks that a classifier can be trained at all, and draws a stratified sample of
at most ``max_samples`` items on which the signals are computed. Messages are one line and say what
to do. Imports Pillow only for image folders.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from zoo.errors import InvalidInputError
from zoo.inputs import Text, check_images

TEXT_COLUMNS = ("text", "sentence", "document", "content", "review", "body")
LABEL_COLUMNS = ("label", "labels", "class", "category", "target", "y")
TABULAR = (".csv", ".tsv", ".jsonl", ".ndjson")
#: suffixes of the text files that a folder of texts (one sub-folder per class) holds, which zoo does not read as data
TEXT_FILES = (".txt", ".text", ".md")


@dataclass
class Dataset:
    """A labelled dataset and the stratified sample the recommender works on.

    Attributes:
        path: what the user passed.
        modality: ``image`` or ``text``.
        classes: class names, sorted; labels index into them.
        counts: readable items per class (whole dataset).
        items: the sample: image paths or texts.
        labels: the sample's labels, int64.
        skipped: files that could not be read, or table rows without a text or a label (not fatal),
            with up to three examples (file paths, or ``line N`` of the table).
        image_sizes: (width, height) of the sampled images.
        fingerprint: sha256 over the sample's identities and labels (and file sizes and times).
        decoded: every item was decoded once as :mod:`zoo.inputs` reads it (files that do not were skipped);
            ``False`` for ``load_dataset(..., decode=False)`` until :func:`check_decoding`.
    """

    path: Path
    modality: str
    classes: list[str]
    counts: dict[str, int]
    items: list[Any]
    labels: np.ndarray
    skipped: int = 0
    skipped_examples: list[str] = field(default_factory=list)
    image_sizes: list[tuple[int, int]] = field(default_factory=list)
    fingerprint: str = ""
    decoded: bool = True
    draw: tuple[int, int] = (0, 0)  # (max_samples, seed) of the draw: where the fingerprint starts (see _fingerprint)

    @property
    def skipped_what(self) -> str:
        """What :attr:`skipped` counts, for messages: ``unreadable file(s)`` or ``row(s) without a text or a label``."""
        return skipped_what(self.path)

    @property
    def skipped_note(self) -> str:
        """``skipped 3 row(s) without a text or a label (lines 18, 19, 20)``; empty when nothing was skipped."""
        if not self.skipped:
            return ""
        ex = self.skipped_examples
        if self.modality == "text":
            lines = ", ".join(e.removeprefix("line ") for e in ex)
            more = ", ..." if self.skipped > len(ex) else ""
            return f"skipped {self.skipped} {self.skipped_what} (line{'s' if len(ex) > 1 else ''} {lines}{more})"
        return f"skipped {self.skipped} {self.skipped_what}" + (f", e.g. {ex[0]}" if ex else "")

    @property
    def n(self) -> int:
        """Readable items in the whole dataset."""
        return sum(self.counts.values())

    @property
    def smallest_class(self) -> int:
        return min(self.counts.values())

    @property
    def image_side(self) -> int | None:
        """Median shorter side of the sampled images."""
        if not self.image_sizes:
            return None
        return int(np.median([min(w, h) for w, h in self.image_sizes]))

    def sample_fingerprint(self, max_samples: int, seed: int = 0) -> tuple[np.ndarray, str]:
        """Positions of the stratified sample ``load_dataset(path, max_samples, seed)`` draws, and its fingerprint,
        computed from these items (nothing is decoded). They are that sample's when every file whose header reads
        also decodes (a truncated file shifts the draw; the fingerprint then matches nothing)."""
        pick = stratified_sample(self.labels, max_samples, seed)
        h = _fingerprint(self.modality, max_samples, seed)
        for j in pick:
            _add(h, self.modality, self.items[int(j)], int(self.labels[int(j)]), self.path)
        return pick, h.hexdigest()

    def summary(self) -> dict[str, Any]:
        """What the plan records about the data."""
        out: dict[str, Any] = {
            "path": str(self.path),
            "samples": self.n,
            "classes": len(self.classes),
            "smallest_class": self.smallest_class,
            "sampled": len(self.items),
            "skipped_unreadable": self.skipped,
            "skipped_what": self.skipped_what,
            "fingerprint": self.fingerprint[:16],
        }
        if self.image_sizes:
            ws = [w for w, _ in self.image_sizes]
            hs = [h for _, h in self.image_sizes]
            out["image_size"] = {"median_side": self.image_side, "min": [min(ws), min(hs)], "max": [max(ws), max(hs)]}
        return out


def skipped_what(path: str | Path) -> str:
    """What a dataset's skipped count counts, by its path: table rows without a text or a label, else unreadable files."""
    return "row(s) without a text or a label" if Path(path).suffix.lower() in TABULAR else "unreadable file(s)"


def load_dataset(
    path: str | Path, max_samples: int = 2000, seed: int = 0, text_column: str | None = None, label_column: str | None = None, whole: bool = False,
    decode: bool = True,
) -> Dataset:
    """Read ``path`` (image folder, ``.csv``/``.tsv``/``.jsonl``) and draw the stratified sample.

    ``whole``: keep every readable item (what ``zoo run`` trains on), in one pass over the data; the
    fingerprint is that of a sample of ``max(max_samples, n)`` items, so data of at most
    ``max_samples`` items has the fingerprint (and the feature cache) of the recommender's sample.
    ``decode=False`` (image folders): read each file's header only; the sample is then ``decoded=False``, and
    :func:`check_decoding` later gives what ``decode=True`` gives (``zoo run`` skips that when the feature cache
    holds the sample's features: they were extracted from these very files, so each of them decoded).

    Raises:
        InvalidInputError: missing path, no items, one class, more classes than items, a class
            with fewer than two items, or a table without a text or label column.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise InvalidInputError(f"{p}: no such file or folder; pass an image folder (one sub-folder per class) or a CSV/JSONL file.")
    if p.is_dir():
        return _image_folder(p, max_samples, seed, whole, decode)
    if p.suffix.lower() in TABULAR:
        return _table(p, max_samples, seed, text_column, label_column, whole)
    raise InvalidInputError(f"{p}: not a folder or a .csv/.tsv/.jsonl file; pass an image folder (one sub-folder per class) or a table of text and label.")


def _check_classes(p: Path, counts: dict[str, int], unit: str) -> None:
    total = sum(counts.values())
    if total == 0:
        raise InvalidInputError(f"{p}: no readable {unit}s found; put one sub-folder per class with its {unit}s in it." if unit == "image" else f"{p}: no rows with a text and a label.")
    if len(counts) < 2:
        raise InvalidInputError(f"{p}: only one class ({next(iter(counts))!r}); a classifier needs at least 2 classes.")
    if len(counts) > total:
        raise InvalidInputError(f"{p}: {len(counts)} classes but only {total} {unit}s: every class needs at least 2 examples.")
    thin = sorted(c for c, n in counts.items() if n < 2)
    if thin:
        more = f" (and {len(thin) - 1} more)" if len(thin) > 1 else ""
        raise InvalidInputError(f"{p}: class {thin[0]!r}{more} has {counts[thin[0]]} readable {unit}(s); give every class at least 2 examples or remove it.")


def stratified_sample(labels: np.ndarray, max_samples: int, seed: int = 0, min_per_class: int = 2) -> np.ndarray:
    """Indices of a stratified sample: proportional to class size, at least ``min_per_class`` per class
    (or the whole class when smaller), about ``max_samples`` in all (more only when many classes
    need their minimum).

    Indices come back sorted by class, then ascending within the class (a seeded draw).
    """
    labels = np.asarray(labels)
    n = len(labels)
    if n <= max_samples:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    take = np.maximum(min_per_class, np.floor(counts * max_samples / n)).astype(int)
    take = np.minimum(take, counts)
    out = []
    for c, k in zip(classes, take):
        idx = np.flatnonzero(labels == c)
        out.append(np.sort(rng.choice(idx, size=k, replace=False)))
    return np.concatenate(out)


def _image_folder(p: Path, max_samples: int, seed: int, whole: bool = False, decode: bool = True) -> Dataset:
    from PIL import Image, UnidentifiedImageError

    class_dirs = sorted(d for d in p.iterdir() if d.is_dir() and not d.name.startswith("."))
    files: list[Path] = []
    labels: list[int] = []
    names = [d.name for d in class_dirs]
    for ci, d in enumerate(class_dirs):
        for f in sorted(d.rglob("*")):  # hidden files and folders (.ipynb_checkpoints, .DS_Store) at any depth are not data
            if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts):
                files.append(f)
                labels.append(ci)
    if not files:
        raise InvalidInputError(f"{p}: no images found; put one sub-folder per class with its images in it.")
    # header check of every file (cheap: Pillow reads the size, not the pixels)
    ok: list[int] = []
    skipped: list[str] = []
    sizes: dict[int, tuple[int, int]] = {}
    for i, f in enumerate(files):
        try:
            with Image.open(f) as im:
                sizes[i] = im.size
            ok.append(i)
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
            skipped.append(str(f.relative_to(p)))
    if not ok and any(f.suffix.lower() in TEXT_FILES for f in files):  # the layout of text datasets such as IMDB's (pos/*.txt)
        raise InvalidInputError(f"{p}: holds text files ({', '.join(sorted({f.suffix.lower() for f in files if f.suffix.lower() in TEXT_FILES}))}), not images; "
                                "zoo reads texts from a table: write a CSV with a text and a label column (one row per text) and pass it to --data.")
    lab = np.array([labels[i] for i in ok], dtype=np.int64)
    counts = {name: int((lab == ci).sum()) for ci, name in enumerate(names)}
    _check_classes(p, counts, "image")
    if whole:
        max_samples = max(max_samples, len(lab))
    pick = stratified_sample(lab, max_samples, seed)
    items: list[Any] = []
    keep_labels: list[int] = []
    img_sizes: list[tuple[int, int]] = []
    h = _fingerprint("image", max_samples, seed)
    for j in pick:
        i = ok[int(j)]
        f = files[i]
        if decode and not _decodes(f):  # a truncated file, or one zoo.inputs' rules refuse (a float TIFF holding NaN),
            skipped.append(str(f.relative_to(p)))  # is skipped here, not a crash of the forward pass
            counts[names[labels[i]]] -= 1
            continue
        items.append(f)
        keep_labels.append(labels[i])
        img_sizes.append(sizes[i])
        _add(h, "image", f, labels[i], p)
    _check_classes(p, counts, "image")
    y = np.array(keep_labels, dtype=np.int64)
    _check_classes(p, {names[c]: int((y == c).sum()) for c in range(len(names))}, "image")
    return Dataset(p, "image", names, counts, items, y, len(skipped), skipped[:3], img_sizes, h.hexdigest(), decoded=decode, draw=(max_samples, seed))


def _decodes(f: Path) -> bool:
    """``f`` decodes as :mod:`zoo.inputs` reads it (the image is decoded, then dropped)."""
    try:
        check_images([f])
    except (OSError, ValueError, SyntaxError):  # InvalidInputError is a ValueError
        return False
    return True


def check_decoding(ds: Dataset) -> Dataset:
    """``ds`` (from ``load_dataset(..., decode=False)``) as ``decode=True`` would have drawn it: each item decoded once,
    those that do not decode skipped and counted (the classes checked again, the fingerprint of the items kept).
    ``ds`` itself when it is decoded already; a copy marked decoded when every item decodes."""
    if ds.decoded:
        return ds
    bad = {j for j, f in enumerate(ds.items) if not _decodes(Path(f))}
    if not bad:
        return replace(ds, decoded=True)
    counts = dict(ds.counts)
    for j in sorted(bad):
        counts[ds.classes[int(ds.labels[j])]] -= 1
    _check_classes(ds.path, counts, "image")
    keep = [j for j in range(len(ds.items)) if j not in bad]
    y = np.asarray(ds.labels)[keep]
    _check_classes(ds.path, {name: int((y == c).sum()) for c, name in enumerate(ds.classes)}, "image")
    h = _fingerprint("image", *ds.draw)
    for j in keep:
        _add(h, "image", ds.items[j], int(ds.labels[j]), ds.path)
    examples = (ds.skipped_examples + [str(Path(ds.items[j]).relative_to(ds.path)) for j in sorted(bad)])[:3]  # header failures came first
    return replace(ds, counts=counts, items=[ds.items[j] for j in keep], labels=y, skipped=ds.skipped + len(bad), skipped_examples=examples,
                   image_sizes=[ds.image_sizes[j] for j in keep], fingerprint=h.hexdigest(), decoded=True)


JSONL_FORMAT = 'one JSON object per line with a text and a label field, e.g. {"text": "...", "label": "..."}'


def _rows(p: Path) -> list[tuple[int, dict[str, Any]]]:
    """The table's rows, each with its line in the file (the line an editor shows)."""
    suffix = p.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return _jsonl_rows(p)
    kind = suffix[1:].upper()
    rows = []
    try:
        with p.open(encoding="utf-8-sig", newline="") as fh:  # -sig: Excel's "CSV UTF-8" starts with a byte-order mark
            reader = csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ",")
            header = reader.fieldnames or []
            if len(header) == 1:
                for sep, name, fix in ((";", "semicolons", "save it comma-separated as .csv"), ("\t", "tabs", "name it .tsv or save it comma-separated"),
                                       (",", "commas", "name it .csv")):
                    if sep in header[0] and not (sep == "\t" and suffix == ".tsv") and not (sep == "," and suffix == ".csv"):
                        raise InvalidInputError(f"{p}: the header {header[0]!r} is one column; the file seems to separate cells with {name}: {fix}.")
            for r in reader:
                if None in r:  # more cells than the header: DictReader files the rest under the key None
                    raise InvalidInputError(
                        f"{p}: line {reader.line_num} has {len(header) + len(r[None])} cells but the header has {len(header)}; "
                        f"put quotes around cells that contain {'tabs' if suffix == '.tsv' else 'commas'}, e.g. \"hello, world\"."
                    )
                rows.append((reader.line_num, r))
    except UnicodeDecodeError as exc:
        # the decoder's position counts from the chunk it was reading, not from the file's start: name the line instead
        bad = _first_line_not_utf8(p)
        where = f"line {bad[0]} is not UTF-8 (byte {bad[1]} of the line)" if bad else f"it is not UTF-8 ({exc.reason})"
        raise InvalidInputError(f"{p}: {where}; save the file as UTF-8 (Excel: CSV UTF-8) with a header row.") from None
    except csv.Error as exc:
        raise InvalidInputError(f"{p}: cannot parse it as {kind} ({exc}); save it as UTF-8 with a header row.") from None
    return rows


def _first_line_not_utf8(p: Path) -> tuple[int, int] | None:
    """The first line of ``p`` (as an editor numbers them) that is not UTF-8, and the byte of that line where it fails."""
    with p.open("rb") as fh:
        for ln, raw in enumerate(fh, 1):
            try:
                raw.decode("utf-8-sig" if ln == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                return ln, exc.start + 1
    return None


def _jsonl_rows(p: Path) -> list[tuple[int, dict[str, Any]]]:
    """The objects of a JSONL file; errors name the file's line (not the line inside one JSON document)."""
    rows = []
    with p.open("rb") as fh:
        for ln, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8-sig" if ln == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidInputError(f"{p}: line {ln} is not UTF-8 (byte {exc.start + 1} of the line); save the file as UTF-8, {JSONL_FORMAT}.") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidInputError(f"{p}: line {ln} is not valid JSON ({exc.msg} at column {exc.colno}); write {JSONL_FORMAT}.") from None
            if not isinstance(obj, dict):
                raise InvalidInputError(f"{p}: line {ln} is not a JSON object; write {JSONL_FORMAT}.")
            rows.append((ln, obj))
    return rows


def _pick_column(p: Path, columns: list[str], wanted: str | None, known: tuple[str, ...], what: str) -> str:
    lower = {c.lower().strip(): c for c in columns}
    if wanted is not None:
        if wanted in columns:
            return wanted
        raise InvalidInputError(f"{p}: no column {wanted!r} (columns: {', '.join(columns)}); name an existing {what} column.")
    for k in known:
        if k in lower:
            return lower[k]
    raise InvalidInputError(f"{p}: no {what} column (looked for {', '.join(known)}; found {', '.join(columns) or 'none'}); rename the {what} column to {known[0]!r}.")


def _table(p: Path, max_samples: int, seed: int, text_column: str | None, label_column: str | None, whole: bool = False) -> Dataset:
    rows = _rows(p)
    if not rows:
        jsonl = p.suffix.lower() in (".jsonl", ".ndjson")
        raise InvalidInputError(f"{p}: no rows; " + (f"write {JSONL_FORMAT}." if jsonl else "add a header row and one row per labelled text."))
    columns = list(dict.fromkeys(k for _, r in rows[:50] for k in r))
    lab_col = _pick_column(p, columns, label_column, LABEL_COLUMNS, "label")
    txt_col = _pick_column(p, [c for c in columns if c != lab_col], text_column, TEXT_COLUMNS, "text")
    texts: list[str] = []
    raw: list[str] = []
    skipped: list[str] = []
    for ln, r in rows:
        t, lab = r.get(txt_col), r.get(lab_col)
        if isinstance(lab, (list, dict)):  # JSONL: str() would make "['pos']" a class of its own
            kind = "a list" if isinstance(lab, list) else "an object"
            raise InvalidInputError(f"{p}: line {ln}: {lab_col} is {kind}; give one label per item (a string or a number); zoo trains single-label classifiers.")
        if not isinstance(t, str) or not t.strip() or lab is None or str(lab).strip() == "":
            skipped.append(f"line {ln}")
            continue
        texts.append(Text(t))  # a row's text, even one like 'figure.png'
        raw.append(str(lab).strip())
    names = sorted(set(raw))
    index = {n: i for i, n in enumerate(names)}
    y_all = np.array([index[r] for r in raw], dtype=np.int64)
    counts = {n: int((y_all == i).sum()) for i, n in enumerate(names)}
    _check_classes(p, counts, "row")
    if whole:
        max_samples = max(max_samples, len(y_all))
    pick = stratified_sample(y_all, max_samples, seed)
    items = [texts[int(i)] for i in pick]
    y = y_all[pick]
    h = _fingerprint("text", max_samples, seed)
    for t, lab in zip(items, y):
        _add(h, "text", t, int(lab), p)
    return Dataset(p, "text", names, counts, items, y, len(skipped), skipped[:3], [], h.hexdigest())


def _fingerprint(modality: str, max_samples: int, seed: int) -> Any:
    """The running hash a sample's fingerprint (the feature cache's key) starts from; :func:`_add` feeds it each item."""
    return hashlib.sha256(f"{'text' if modality == 'text' else 'images'}|{max_samples}|{seed}".encode())


def _add(h: Any, modality: str, item: Any, label: int, root: Path) -> None:
    """One item of a sample into its fingerprint: a text by its content, an image file by its path under ``root``,
    size and modification time (not decoded)."""
    if modality == "text":
        h.update(hashlib.sha1(str(item).encode("utf-8")).digest() + f"|{int(label)}\n".encode())
        return
    f = Path(item)
    st = f.stat()
    h.update(f"{f.relative_to(root)}|{st.st_size}|{st.st_mtime_ns}|{int(label)}\n".encode())
