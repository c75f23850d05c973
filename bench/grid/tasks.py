"""Grid tasks, built deterministically in memory from data that ships with the dependencies.

Image families (64 px RGB after the backbone's own normalisation):

* ``natural``: class = which of 10 scikit-image ``data`` photographs a random crop comes from
  (random position, scale 12-30 % of the short side, brightness jitter). Similar domain.
* ``natural-shift``: the same crops with input-level corruption (Gaussian blur, pixel noise and
  colour inversion). Input-level shift.
* ``position``: the same crops labelled by the quadrant of the source image their centre lies in
  (same inputs, new label semantics). Label shift.
* ``shapes``: count of rendered shapes (1-4 discs, squares and triangles, PIL drawing) on noisy
  backgrounds. Structured / synthetic; flips must stay off.
* ``digits``: scikit-learn's ``load_digits`` (1,797 real 8x8 scans), upsampled. Different domain,
  orientation-sensitive.

Text families (sentences from docstrings that ship inside installed packages, label = where they
come from; boilerplate sentences shared by two classes are dropped):

* ``numpy-topics``: numpy's ``linalg``, ``fft``, ``random``, ``ma``, ``testing`` docstrings.
* ``sklearn-topics``: scikit-learn's ``linear_model``, ``cluster``, ``svm``, ``neighbors``,
  ``decomposition`` docstrings.

Every task has a fixed test split (seed-independent) and a training draw of ``per_class``
items per class that depends on the seed.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

IMAGE_FAMILIES = ("natural", "natural-shift", "position", "shapes", "digits")
TEXT_FAMILIES = ("numpy-topics", "sklearn-topics")
FAMILIES = IMAGE_FAMILIES + TEXT_FAMILIES
SIDE = 64
#: test items per task, split evenly over its classes (4-class image tasks get 75 a class, 10-class ones 30),
#: so that every image task is scored on the same number of items
TEST_ITEMS = {"image": 300, "text": 125}
#: families scored on more test items than their modality's: ``position`` is near chance at 5 and 20 per class, where
#: 300 items left the similar-cell peer comparisons within one or two binomial standard errors. Its test pool is drawn
#: from the same stream as before, so the 300-item split is the first 75 items of each class of this one.
FAMILY_TEST_ITEMS = {"position": 1200}
# what the task declares to the recommender (metadata mode): domain, shift, native image side
META = {
    "natural": {"domain": "natural", "shift": None, "image_size": 96},
    "natural-shift": {"domain": "natural", "shift": "input", "image_size": 96},
    "position": {"domain": "natural", "shift": "label", "image_size": 96},
    "shapes": {"domain": "synthetic", "shift": None, "image_size": 64},
    "digits": {"domain": "documents", "shift": None, "image_size": 8},
    "numpy-topics": {"domain": None, "shift": None, "image_size": None},
    "sklearn-topics": {"domain": None, "shift": None, "image_size": None},
}
# the natural family's classes: the colour and grey photographs that ship with scikit-image
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "stereo_motorcycle", "camera", "coins", "moon", "grass", "brick")
NUMPY_MODULES = ("linalg", "fft", "random", "ma", "testing")
SKLEARN_MODULES = ("linear_model", "cluster", "svm", "neighbors", "decomposition")


@dataclass
class Task:
    """One grid task at one size and seed.

    Attributes:
        family: one of :data:`FAMILIES`.
        per_class: training items per class.
        seed: the training draw's seed.
        modality: ``image`` or ``text``.
        classes: class names.
        train_x, train_y: training items (uint8 HWC arrays or strings) and labels.
        test_x, test_y: the fixed test split.
        domain, shift, image_size: what the task declares to the recommender.
    """

    family: str
    per_class: int
    seed: int
    modality: str
    classes: list[str]
    train_x: list[Any]
    train_y: np.ndarray
    test_x: list[Any]
    test_y: np.ndarray
    domain: str | None = None
    shift: str | None = None
    image_size: int | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.family}@{self.per_class}"

    @property
    def n_classes(self) -> int:
        return len(self.classes)


# ---- images -----------------------------------------------------------------------------------


@lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray:
    import skimage.data

    im = getattr(skimage.data, name)()
    if isinstance(im, tuple):
        im = im[0]
    if im.ndim == 2:
        im = np.stack([im] * 3, axis=-1)
    return np.ascontiguousarray(im[..., :3]).astype(np.uint8)


def _crop(rng: np.random.Generator, photo: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """A random square crop (12-30 % of the short side) resized to SIDE, with brightness jitter."""
    from PIL import Image

    h, w = photo.shape[:2]
    side = int(rng.uniform(0.12, 0.30) * min(h, w))
    y, x = int(rng.integers(0, h - side)), int(rng.integers(0, w - side))
    patch = Image.fromarray(photo[y : y + side, x : x + side]).resize((SIDE, SIDE), Image.BICUBIC)
    arr = np.asarray(patch).astype(np.float32) * rng.uniform(0.8, 1.2)
    return np.clip(arr, 0, 255).astype(np.uint8), ((y + side / 2) / h, (x + side / 2) / w)


def _corrupt(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Input-level shift: Gaussian blur (radius 1.5), pixel noise (sd 25) and colour inversion."""
    from PIL import Image, ImageFilter

    out = np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(1.5))).astype(np.float32)
    out = out + rng.normal(0.0, 25.0, out.shape)
    return (255 - np.clip(out, 0, 255)).astype(np.uint8)


def _shapes(rng: np.random.Generator, count: int) -> np.ndarray:
    """``count`` non-overlapping shapes of random kind, colour and size on a noisy background."""
    from PIL import Image, ImageDraw

    bg = rng.integers(0, 120, 3)
    base = np.clip(bg + rng.normal(0, 12, (SIDE, SIDE, 3)), 0, 255).astype(np.uint8)
    im = Image.fromarray(base)
    draw = ImageDraw.Draw(im)
    boxes: list[tuple[int, int, int]] = []
    while len(boxes) < count:
        r = int(rng.integers(5, 10))
        cx, cy = int(rng.integers(r + 1, SIDE - r - 1)), int(rng.integers(r + 1, SIDE - r - 1))
        if any((cx - x) ** 2 + (cy - y) ** 2 < (r + q + 2) ** 2 for x, y, q in boxes):
            continue
        boxes.append((cx, cy, r))
        colour = tuple(int(c) for c in rng.integers(140, 256, 3))
        kind = int(rng.integers(0, 3))
        if kind == 0:
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
        elif kind == 1:
            draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=colour)
        else:
            draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
    return np.asarray(im)


def n_test_items(modality: str, family: str | None = None) -> int:
    """Test items of a task: :data:`FAMILY_TEST_ITEMS` for its family, else :data:`TEST_ITEMS` for its modality."""
    return FAMILY_TEST_ITEMS.get(family or "", TEST_ITEMS[modality])


def per_class_test_items(modality: str, n_classes: int, family: str | None = None) -> int:
    """Test items per class of a task: :func:`n_test_items` split evenly."""
    return n_test_items(modality, family) // n_classes


def image_classes(family: str) -> list[str]:
    """The class names of an image family built from pools (not ``digits``)."""
    if family in ("natural", "natural-shift"):
        return list(PHOTOS)
    if family == "position":
        return ["top-left", "top-right", "bottom-left", "bottom-right"]
    if family == "shapes":
        return ["1", "2", "3", "4"]
    raise ValueError(family)


def _image_pool(family: str, n_per_class: int, seed: int) -> tuple[list[str], list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    xs: list[np.ndarray] = []
    ys: list[int] = []
    classes = image_classes(family)
    if family in ("natural", "natural-shift"):
        for c, name in enumerate(PHOTOS):
            for _ in range(n_per_class):
                img, _ = _crop(rng, _photo(name))
                xs.append(_corrupt(rng, img) if family == "natural-shift" else img)
                ys.append(c)
    elif family == "position":
        counts = [0] * 4
        while min(counts) < n_per_class:
            img, (cy, cx) = _crop(rng, _photo(PHOTOS[int(rng.integers(0, len(PHOTOS)))]))
            q = 2 * int(cy >= 0.5) + int(cx >= 0.5)
            if counts[q] < n_per_class:
                counts[q] += 1
                xs.append(img)
                ys.append(q)
    elif family == "shapes":
        for c in range(4):
            for _ in range(n_per_class):
                xs.append(_shapes(rng, c + 1))
                ys.append(c)
    return classes, xs, np.asarray(ys, dtype=np.int64)


def _digit_image(row: np.ndarray) -> np.ndarray:
    from PIL import Image

    g = (row.reshape(8, 8) / 16.0 * 255.0).astype(np.uint8)
    return np.stack([np.asarray(Image.fromarray(g).resize((SIDE, SIDE), Image.BILINEAR))] * 3, axis=-1)


# ---- text -------------------------------------------------------------------------------------

_SECTION = re.compile(r"^\s*(Parameters|Returns|Yields|Raises|See Also|Examples|Attributes|References|Warns|Other Parameters)\s*$")


def _sentences(doc: str) -> list[str]:
    """Prose sentences of a numpydoc docstring: no code, section rules, ``name : type`` lines or references."""
    lines = []
    for line in inspect.cleandoc(doc).splitlines():
        s = line.strip()
        if not s or s.startswith((">>>", "...", "..", "--", "==", "[", "|", ":")) or _SECTION.match(s) or re.match(r"^\*?\*?\w+\s*:\s", s):
            lines.append("\n")
            continue
        lines.append(s)
    text = re.sub(r"\s+", " ", " ".join(lines))
    out = []
    for sent in re.split(r"(?<=[.!?])\s+", text):
        sent = sent.strip(" \n")
        if 6 <= len(sent.split()) <= 60 and sent[0].isupper() and sent.endswith("."):
            out.append(sent)
    return out


@lru_cache(maxsize=None)
def text_corpus(family: str) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    """``(classes, sentences per class)``: deduplicated, sorted, boilerplate shared by classes dropped."""
    import importlib

    if family == "numpy-topics":
        mods = [(m, importlib.import_module(f"numpy.{m}")) for m in NUMPY_MODULES]
    elif family == "sklearn-topics":
        mods = [(m, importlib.import_module(f"sklearn.{m}")) for m in SKLEARN_MODULES]
    else:
        raise ValueError(family)
    per: dict[str, set[str]] = {}
    for name, mod in mods:
        found: set[str] = set(_sentences(mod.__doc__ or ""))
        for attr in sorted(dir(mod)):
            if attr.startswith("_"):
                continue
            obj = getattr(mod, attr)
            for o in [obj] + ([getattr(obj, m) for m in sorted(vars(obj)) if not m.startswith("_") and callable(getattr(obj, m, None))] if inspect.isclass(obj) else []):
                doc = getattr(o, "__doc__", None)
                if isinstance(doc, str):
                    found.update(_sentences(doc))
        per[name] = found
    shared = {s for a in per for b in per if a < b for s in per[a] & per[b]}
    return tuple(per), tuple(tuple(sorted(per[m] - shared)) for m in per)


# ---- builder ----------------------------------------------------------------------------------


def _split(y: np.ndarray, per_class: int, test_per_class: int, rng: np.random.Generator, test_rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Fixed test indices (``test_rng``) then a seeded training draw from the rest, both balanced."""
    train, test = [], []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        idx = idx[test_rng.permutation(len(idx))]
        test.extend(idx[:test_per_class].tolist())
        rest = idx[test_per_class:]
        if len(rest) < per_class:
            raise ValueError(f"class {c} has {len(rest)} training items; {per_class} asked")
        train.extend(rest[rng.permutation(len(rest))[:per_class]].tolist())
    return np.asarray(train), np.asarray(test)


def build_task(family: str, per_class: int, seed: int) -> Task:
    """Build ``family`` with ``per_class`` training items per class (seeded) and its fixed test split."""
    meta = META[family]
    if family in TEXT_FAMILIES:
        classes, sents = text_corpus(family)
        x = [s for group in sents for s in group]
        y = np.asarray([c for c, group in enumerate(sents) for _ in group], dtype=np.int64)
        tr, te = _split(y, per_class, per_class_test_items("text", len(classes)), np.random.default_rng(seed), np.random.default_rng(10_007))
        return Task(family, per_class, seed, "text", list(classes), [x[i] for i in tr], y[tr], [x[i] for i in te], y[te], **meta)
    if family == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        y = d.target.astype(np.int64)
        tr, te = _split(y, per_class, per_class_test_items("image", 10), np.random.default_rng(seed), np.random.default_rng(10_007))
        return Task(family, per_class, seed, "image", [str(i) for i in range(10)], [_digit_image(d.data[i]) for i in tr], y[tr], [_digit_image(d.data[i]) for i in te], y[te], **meta)
    classes, test_x, test_y = _test_pool(family)
    # training pool drawn from its own stream (seed), disjoint in randomness from the test stream
    classes, train_x, train_y = _image_pool(family, per_class, 1_000 + seed)
    return Task(family, per_class, seed, "image", classes, train_x, train_y, list(test_x), test_y, **meta)


@lru_cache(maxsize=None)
def _test_pool(family: str) -> tuple[list[str], tuple[np.ndarray, ...], np.ndarray]:
    classes, xs, ys = _image_pool(family, per_class_test_items("image", len(image_classes(family)), family), 10_007)
    return classes, tuple(xs), ys
