"""`Backbone.embed()` images/s next to a hand-written `torch.inference_mode()` loop, in one run.

Same model and weights (the packaged EfficientNet-Lite0 ImageNet checkpoint through timm), same
PIL inputs, same batch size, same preprocessing (timm's data config + create_transform), same
threads. Target (issue 3): zoo / hand-written >= 0.9.

    python bench/embed_throughput.py [--images 256] [--batch 32] [--repeats 3] [--id timm:efficientnet_lite0.pypi_in1k]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import numpy as np


def images(n: int) -> list:
    from PIL import Image
    from skimage import data

    base = [data.chelsea(), data.coffee(), data.astronaut(), data.rocket()]
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        img = base[i % len(base)]
        h, w = img.shape[:2]
        y, x = rng.integers(0, h // 4), rng.integers(0, w // 4)
        out.append(Image.fromarray(img[y : y + 3 * h // 4, x : x + 3 * w // 4]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--id", default="timm:efficientnet_lite0.pypi_in1k")
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import timm
    import torch

    import zoo

    bb = zoo.load(args.id)
    ref = copy.deepcopy(bb.model)  # the same module and weights, driven by hand
    ref.eval()
    cfg = timm.data.resolve_model_data_config(ref)
    tf = timm.data.create_transform(**cfg, is_training=False)
    imgs = images(args.images)

    def hand_written() -> np.ndarray:
        outs = []
        with torch.inference_mode():
            for i in range(0, len(imgs), args.batch):
                x = torch.stack([tf(im) for im in imgs[i : i + args.batch]])
                outs.append(ref(x).numpy())
        return np.concatenate(outs)

    def via_zoo() -> np.ndarray:
        return bb.embed(imgs, batch_size=args.batch)

    np.testing.assert_allclose(via_zoo()[:4], hand_written()[:4], rtol=1e-4, atol=1e-4)
    times = {"zoo": [], "hand": []}
    for _ in range(args.repeats):
        for key, fn in (("hand", hand_written), ("zoo", via_zoo)):
            t0 = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t0)
    zoo_ips = args.images / statistics.median(times["zoo"])
    hand_ips = args.images / statistics.median(times["hand"])
    ratio = zoo_ips / hand_ips
    print(f"model {args.id}, {args.images} images, batch {args.batch}, input {cfg['input_size']}, torch threads {torch.get_num_threads()}")
    print(f"hand-written inference_mode loop: {hand_ips:8.1f} images/s (median of {args.repeats})")
    print(f"zoo Backbone.embed():             {zoo_ips:8.1f} images/s (median of {args.repeats})")
    print(f"ratio zoo / hand-written: {ratio:.3f}  (target >= 0.9: {'met' if ratio >= 0.9 else 'MISSED'})")


if __name__ == "__main__":
    main()
