"""Turn what users pass (PIL images, arrays, paths, strings) into clean RGB images or texts.

Grayscale, RGBA, palette, CMYK and 16-bit images are converted, not refused: PIL's ``convert("RGB")``, as
the sources' own loaders read files (an alpha channel or a palette's transparency is dropped, not blended
onto a background), except 16-bit images, which are scaled to 8 bits (as ``tf.io.decode_image`` does)
instead of clipped. Problems raise :class:`zoo.errors.InvalidInputError` with a one-line message naming the input.

Arrays and tensors (numpy, torch, TensorFlow: anything with ``shape`` and ``dtype``) are read by
their number of dimensions, never guessed from their size alone:

* 2-D ``HxW``: one grayscale image.
* 3-D: ONE image, ``HxWxC`` or ``CxHxW``; the channel axis (1, 3 or 4 channels) is the last axis or
  the first. A shape with a channel-sized axis at both ends (``3x4x3``) or at neither
  (``10x28x28``: a batch of grayscale images? add a channel axis, ``arr[..., None]``) is refused.
* 4-D: a batch, ``NxHxWxC`` or ``NxCxHxW`` by the same rule on one image's shape.
* a list or tuple: one image (PIL, path or 2-D / 3-D array) per item.

Values: uint8 as is; uint16 scaled by 1/257; bool to 0/255; float in ``[0, 1]`` scaled by 255, float
in ``[0, 255]`` with a maximum of 2 or more as is. Refused: non-finite floats, floats outside ``[0, 255]``
(a normalised tensor: pass the raw image, preprocessing normalises it) and floats whose maximum lies
between 1 and 2 (``[0, 1]`` overshot by a resize, or an almost black ``[0, 255]`` image: not guessed).
Other integers (int32 from a 16-bit decoder, int64, ...): 0..255 as is, up to 65535 scaled as uint16,
negative or larger ones refused.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from zoo.errors import InvalidInputError

#: Channel counts of an image array's channel axis (gray, RGB, RGBA).
#: the version of these reading rules; zoo's feature cache keys hold it, so that features computed under older rules
#: (2: alpha dropped, not blended on white; 'I'/'F' images and other integer arrays by their values; EXIF for HF)
#: are not reused for the same files
DECODING_VERSION = 2

CHANNELS = (1, 3, 4)
#: File-name suffixes of images (a text ending in one, with no blank in it, is refused by :func:`load_texts`).
IMAGE_SUFFIXES = frozenset(
    ".png .jpg .jpeg .jpe .jfif .bmp .dib .gif .tif .tiff .webp .ppm .pgm .pbm .pnm .ico .icns .heic .heif .avif .jp2 .tga .psd".split()
)


class Text(str):
    """A string known to be text (a row of a dataset file): :func:`load_texts` never takes it for a file name."""

    __slots__ = ()


def _is_array(x: Any) -> bool:
    """A numpy array or a tensor (torch, TensorFlow, JAX): something with a shape and a dtype."""
    return hasattr(x, "shape") and hasattr(x, "dtype") and not isinstance(x, (str, bytes))


def _to_numpy(x: Any, name: str) -> Any:
    """``x`` as a numpy array: torch tensors are detached and moved to the CPU (bfloat16 as float32)."""
    import numpy as np

    if isinstance(x, np.ndarray):
        return x
    try:
        if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch
            t = x.detach().cpu()
            try:
                return t.numpy()
            except (TypeError, RuntimeError):  # a dtype numpy lacks (bfloat16)
                return t.float().numpy()
        if hasattr(x, "numpy"):  # TensorFlow
            return np.asarray(x.numpy())
        return np.asarray(x)
    except Exception as exc:  # noqa: BLE001 - any failure to read it is the caller's input problem
        raise InvalidInputError(f"{name}: cannot read this {type(x).__name__} as an array ({type(exc).__name__}); pass a numpy array.") from None


def _layout(shape: tuple[int, ...], name: str) -> str:
    """``hw``, ``hwc`` or ``chw`` for one image's array shape (see the module docstring)."""
    if len(shape) == 2:
        return "hw"
    if len(shape) != 3:
        raise InvalidInputError(
            f"{name}: an image array must be HxW, HxWxC or CxHxW (or a batch NxHxWxC / NxCxHxW), got shape {shape}."
        )
    last, first = shape[-1] in CHANNELS, shape[0] in CHANNELS
    if last and first:
        raise InvalidInputError(
            f"{name}: shape {shape} is ambiguous, HxWxC or CxHxW; pass it as a PIL image (PIL.Image.fromarray of the HxWxC array)."
        )
    if last:
        return "hwc"
    if first:
        return "chw"
    raise InvalidInputError(
        f"{name}: a 3-D image array needs 1, 3 or 4 channels as its last (HxWxC) or first (CxHxW) axis, got shape {shape}; "
        "for a batch of grayscale images add a channel axis (arr[..., None])."
    )


def _as_list(inputs: Any) -> list[Any]:
    """Texts: one string, or the items of a list, tuple or 1-D array."""
    if inputs is None:
        raise InvalidInputError("No inputs given: pass at least one image, path or text.")
    if isinstance(inputs, (str, bytes, os.PathLike)):
        return [inputs]
    if _is_array(inputs):
        return list(inputs) if len(inputs.shape) == 1 else [inputs]
    if isinstance(inputs, Iterable):
        return list(inputs)
    return [inputs]


def _to_rgb(img: Any, name: str) -> Any:
    import numpy as np
    from PIL import Image

    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        arr = np.asarray(img, dtype=np.uint16)
        img = Image.fromarray((arr / 257.0).round().astype(np.uint8), mode="L")
    elif img.mode in ("I", "F"):  # 32-bit integer or float pixels (TIFF): the value rules of an int32 / float32 array
        img = _array_to_image(np.asarray(img), name)
    if img.mode != "RGB":
        # alpha (RGBA, LA, PA, a palette's transparent index) is dropped, not blended: PIL's convert("RGB"), as every
        # source reads a file (torchvision's pil_loader, timm's ImageDataset, keras.utils.load_img, tf.io.decode_image
        # with channels=3, transformers' load_image in its pipelines)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Palette images with Transparency", UserWarning)
            img = img.convert("RGB")
    return img


def _array_to_image(arr: Any, name: str, layout: str | None = None) -> Any:
    import numpy as np
    from PIL import Image

    a = _to_numpy(arr, name)
    if a.dtype.kind not in "buif":
        raise InvalidInputError(f"{name} holds {a.dtype} values, not numbers; pass an image array of uint8 (0-255) or float (0-1).")
    if layout is None:
        layout = _layout(tuple(a.shape), name)
    if layout == "chw":
        a = np.moveaxis(a, 0, -1)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise InvalidInputError(f"{name} is empty (shape {tuple(a.shape)}); an image needs at least one pixel.")
    if a.dtype == np.uint16:
        a = (a / 257.0).round().astype(np.uint8)
    elif a.dtype.kind == "f":
        lo, hi = float(a.min()), float(a.max())
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise InvalidInputError(f"{name} holds NaN or infinite values; pass a finite image (float 0-1 or 0-255, or uint8).")
        if lo < 0.0 or hi > 255.0:
            raise InvalidInputError(
                f"{name} holds values from {lo:.3g} to {hi:.3g}; a float image must be in [0, 1] or [0, 255] "
                "(pass the raw image, not a normalised tensor: preprocessing normalises it)."
            )
        if 1.0 < hi < 2.0:  # [0, 1] overshot by a resize (bicubic) or [0, 255] and black: not guessed
            raise InvalidInputError(
                f"{name} holds values from {lo:.3g} to {hi:.3g}: a float image in [0, 1] that overshoots 1 (after a bicubic resize?) "
                "or an almost black one in [0, 255]; clip it to [0, 1] (arr.clip(0, 1)), or pass uint8."
            )
        scale = 255.0 if hi <= 1.0 else 1.0
        a = np.clip(a * scale, 0, 255).round().astype(np.uint8)
    elif a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:  # int8/16/32/64, uint32/64: 8-bit values as they are, 16-bit ones (above 255) as uint16
        lo, hi = int(a.min()), int(a.max())
        if lo < 0 or hi > 65535:
            raise InvalidInputError(
                f"{name} holds {a.dtype} values from {lo} to {hi}; an integer image must be in 0-255 (8-bit) or 0-65535 (16-bit): "
                "pass it as uint8, or as float in [0, 1]."
            )
        a = (a / 257.0).round().astype(np.uint8) if hi > 255 else a.astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(a))


def _image_items(inputs: Any) -> tuple[list[Any], str | None]:
    """The items of ``inputs`` (one per image) and, for a 4-D batch, its images' layout."""
    from PIL import Image

    if inputs is None:
        raise InvalidInputError("No inputs given: pass at least one image, path or array.")
    if isinstance(inputs, (str, bytes, os.PathLike, Image.Image)):
        return [inputs], None
    if _is_array(inputs):
        a = _to_numpy(inputs, "the array")
        if a.ndim == 1 and a.dtype.kind in "OUS":  # an array of paths
            return list(a), None
        if a.ndim == 4:
            if len(a) == 0:
                return [], None
            return list(a), _layout(tuple(a.shape[1:]), f"the batch of shape {tuple(a.shape)}")
        if a.ndim not in (2, 3):
            _layout(tuple(a.shape), "array #0")  # raises: the shapes an image array can have
        return [a], None
    if isinstance(inputs, Iterable):
        return list(inputs), None
    return [inputs], None


def load_images(inputs: Any, *, exif: bool = False) -> list[Any]:
    """Return a list of RGB ``PIL.Image`` from images, arrays or tensors, or paths.

    Arrays and tensors: see the module docstring (2-D and 3-D: one image; 4-D: a batch).
    ``exif``: turn files and PIL images upright by their EXIF orientation first, as the source's own
    loader does where it does (:attr:`zoo.Backbone.exif_orientation`); by default pixels are read as stored.

    Raises:
        InvalidInputError: empty input, a missing, corrupt or non-image file (named), an empty
            path, or an array of the wrong shape, dtype or values.
    """
    return list(iter_images(inputs, exif=exif))


def load_images_for(backbone: Any, inputs: Any) -> list[Any]:
    """:func:`load_images` as ``backbone``'s source reads files: upright by their EXIF orientation where its
    ``exif_orientation`` says so (:attr:`zoo.Backbone.exif_orientation`; an object without it reads pixels as stored)."""
    return load_images(inputs, exif=bool(getattr(backbone, "exif_orientation", False)))


def check_images(inputs: Any) -> int:
    """Check that every input reads as :func:`load_images` would read it (same errors), decoding one
    image at a time and keeping none: memory stays that of one image however many there are.
    Returns how many images were checked."""
    n = 0
    for _ in iter_images(inputs):
        n += 1
    return n


def _upright(img: Any) -> Any:
    """``img`` turned as its EXIF orientation tag says (``PIL.ImageOps.exif_transpose``); ``img`` itself when it is upright."""
    from PIL import ImageOps

    if img.getexif().get(0x0112, 1) in (0, 1):  # Orientation: 1 (or 0, invalid) is upright
        return img
    return ImageOps.exif_transpose(img)


def iter_images(inputs: Any, *, exif: bool = False) -> Iterator[Any]:
    """:func:`load_images` one image at a time (each path is opened and decoded when its image is asked for)."""
    from PIL import Image, UnidentifiedImageError

    items, layout = _image_items(inputs)
    if not items:
        raise InvalidInputError("No inputs given: pass at least one image, path or array.")
    for i, item in enumerate(items):
        if isinstance(item, (str, os.PathLike)):
            if not str(item).strip():
                raise InvalidInputError(f"input #{i} is an empty string; pass the path of an image file.")
            path = Path(item)
            if path.is_dir():
                raise InvalidInputError(f"{path} is a folder, not an image file; pass the image files (e.g. {path}/*.png).")
            if not path.is_file():
                raise InvalidInputError(f"{path}: no such image file; check the path.")
            try:
                with Image.open(path) as im:
                    im.load()
                    img = _upright(im) if exif else im
                    if img is im:
                        img = im.copy()
            except Image.DecompressionBombError:
                raise InvalidInputError(
                    f"{path}: too many pixels for Pillow to open (its guard against decompression bombs, PIL.Image.MAX_IMAGE_PIXELS); "
                    "downscale the image, or raise that limit if you trust the file."
                ) from None
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
                raise InvalidInputError(f"{path}: not a readable image ({type(exc).__name__}); pass a PNG, JPEG or other image file.") from None
            name = str(path)
        elif isinstance(item, Image.Image):
            img, name = (_upright(item) if exif else item), f"image #{i}"
        elif _is_array(item) or hasattr(item, "__array__"):
            name = f"array #{i}"
            img = _array_to_image(item, name, layout)
        else:
            raise InvalidInputError(
                f"input #{i} is a {type(item).__name__}; pass PIL images, uint8 HxWxC arrays or image paths."
            )
        if img.width == 0 or img.height == 0:
            raise InvalidInputError(f"{name} is empty ({img.width}x{img.height} pixels); an image needs at least one pixel.")
        yield _to_rgb(img, name)


def _image_path_like(text: str) -> bool:
    """``text`` names an image file (an image suffix, and no blank in it or an existing file) or an
    existing file (a path with a separator, or a file name with a suffix, and no blank)."""
    dot = text.rfind(".")
    image = dot >= 0 and len(text) - dot <= 6 and text[dot:].rstrip().lower() in IMAGE_SUFFIXES
    if not image and os.sep not in text:
        # a bare file name with a suffix that exists here (`zoo predict RUN texts.csv`): a file, not the text to classify
        t = text.strip()
        return "." in t and len(t) <= 4096 and not any(c.isspace() for c in t) and os.path.isfile(t)
    if len(text) > 4096 or "\n" in text:
        return False
    t = text.strip()
    if not any(c.isspace() for c in t):
        return image or os.path.isfile(t)
    return image and os.path.isfile(t)


def load_texts(inputs: Any) -> list[str]:
    """Return a list of strings; a single string is one input.

    Raises:
        InvalidInputError: empty input, a non-string item, or a string that names a file instead of
            being text: one ending in an image suffix (``.png``, ``.jpg``, ...) with no blank in it,
            or the path of an existing file.
    """
    if isinstance(inputs, str):
        items = [inputs]
    else:
        items = _as_list(inputs)
    if not items:
        raise InvalidInputError("No inputs given: pass at least one text.")
    for i, t in enumerate(items):
        if not isinstance(t, str):
            raise InvalidInputError(f"input #{i} is a {type(t).__name__}; text models take strings.")
        if not isinstance(t, Text) and _image_path_like(t):
            shown = t if len(t) <= 80 else t[:77] + "..."
            raise InvalidInputError(
                f"input #{i} ({shown!r}) is a file name, not text: this backbone takes text; pass the text itself, "
                "or embed images with an image model."
            )
    return list(items)
