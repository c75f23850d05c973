"""Write scikit-learn's digits (1,797 8x8 images, 10 classes) as an image folder: one sub-folder per class.

    python scripts/make_digits_folder.py OUT [--limit N] [--scale S]

PNG files ``OUT/<digit>/<index>.png``, grey levels 0-16 mapped to 0-255, optionally upscaled by
``--scale`` (nearest neighbour; ``zoo recommend --data`` resizes anyway). ``--limit`` keeps the
first N images in scikit-learn's order (every class is present from the start).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def write_digits(out: str | Path, limit: int | None = None, scale: int = 1) -> Path:
    """Write the digits folder and return its path."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    out = Path(out)
    n = len(d.images) if limit is None else min(limit, len(d.images))
    for i in range(n):
        img = Image.fromarray((d.images[i] / 16.0 * 255).round().astype(np.uint8), mode="L")
        if scale > 1:
            img = img.resize((8 * scale, 8 * scale), Image.NEAREST)
        folder = out / str(int(d.target[i]))
        folder.mkdir(parents=True, exist_ok=True)
        img.save(folder / f"{i:04d}.png")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--scale", type=int, default=1)
    args = parser.parse_args()
    path = write_digits(args.out, args.limit, args.scale)
    print(f"wrote {args.limit or 1797} digits to {path}")


if __name__ == "__main__":
    main()
