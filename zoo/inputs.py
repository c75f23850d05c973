"""Turn what users pass (PIL images, arrays, paths, strings) into clean RGB images or texts.

Grayscale, RGBA, palette, CMYK and 16-bit images are converted, not refused. Problems raise
:class:`zoo.errors.InvalidInputError` with a one-line message naming the input.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from zoo.errors import InvalidInputError


def _as_list(inputs: Any) -> list[Any]:
    import numpy as np

    if inputs is None:
        raise InvalidInputError("No inputs given: pass at least one image, path or text.")
    if isinstance(inputs, (str, bytes, os.PathLike)):
        return [inputs]
    if isinstance(inputs, np.ndarray):
        # a single image (HW or HWC) or a batch (NHWC / NHW)
        if inputs.ndim == 4 or (inputs.ndim == 3 and inputs.shape[-1] not in (1, 3, 4)):
            return list(inputs)
        return [inputs]
    try:
        from PIL import Image

        if isinstance(inputs, Image.Image):
            return [inputs]
    except ImportError:  # pragma: no cover - Pillow ships with every image source
        pass
    if isinstance(inputs, Iterable):
        out = list(inputs)
        return out
    return [inputs]


def _to_rgb(img: Any, name: str) -> Any:
    import numpy as np
    from PIL import Image

    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        arr = np.asarray(img, dtype=np.uint16)
        img = Image.fromarray((arr / 257.0).round().astype(np.uint8), mode="L")
    elif img.mode in ("I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if arr.max(initial=0) > 255 else 255.0
        img = Image.fromarray(np.clip(arr / hi * 255.0, 0, 255).round().astype(np.uint8), mode="L")
    if img.mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, rgba)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return img


def _array_to_image(arr: Any, name: str) -> Any:
    import numpy as np
    from PIL import Image

    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
        raise InvalidInputError(f"{name}: an image array must be HxW or HxWx3/4, got shape {a.shape}.")
    if a.dtype == np.uint16:
        a = (a / 257.0).round().astype(np.uint8)
    elif a.dtype.kind == "f":
        scale = 255.0 if a.max(initial=0) <= 1.0 else 1.0
        a = np.clip(a * scale, 0, 255).round().astype(np.uint8)
    elif a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    return Image.fromarray(a)


def load_images(inputs: Any) -> list[Any]:
    """Return a list of RGB ``PIL.Image`` from images, arrays or paths.

    Raises:
        InvalidInputError: empty input, a missing, corrupt or non-image file (named), or an
            array of the wrong shape.
    """
    from PIL import Image, UnidentifiedImageError

    items = _as_list(inputs)
    if not items:
        raise InvalidInputError("No inputs given: pass at least one image, path or array.")
    out = []
    for i, item in enumerate(items):
        if isinstance(item, (str, os.PathLike)):
            path = Path(item)
            if path.is_dir():
                raise InvalidInputError(f"{path} is a folder, not an image file; pass the image files (e.g. {path}/*.png).")
            if not path.is_file():
                raise InvalidInputError(f"{path}: no such image file; check the path.")
            try:
                with Image.open(path) as im:
                    im.load()
                    img = im.copy()
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
                raise InvalidInputError(f"{path}: not a readable image ({type(exc).__name__}); pass a PNG, JPEG or other image file.") from None
            out.append(_to_rgb(img, str(path)))
        elif isinstance(item, Image.Image):
            out.append(_to_rgb(item, f"image #{i}"))
        elif hasattr(item, "__array__"):
            out.append(_to_rgb(_array_to_image(item, f"array #{i}"), f"array #{i}"))
        else:
            raise InvalidInputError(
                f"input #{i} is a {type(item).__name__}; pass PIL images, uint8 HxWxC arrays or image paths."
            )
    return out


def load_texts(inputs: Any) -> list[str]:
    """Return a list of strings; a single string is one input.

    Raises:
        InvalidInputError: empty input or a non-string item.
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
    return list(items)
