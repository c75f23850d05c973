"""Tests of the torchvision source plugin, offline: random weights written where torchvision's download puts them."""

from __future__ import annotations

import math
import os
import pickle
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.models as tvm
from PIL import Image
from skimage import data
from torch import nn

import zoo
from zoo import hookimpl
from zoo.errors import InvalidInputError, NotCachedError, UnknownModelError
from zoo.listing import installed_version
from zoo.testing import BackboneContract, PluginContract
from zoo_torchvision import _arch, _backbone

RESNET18 = tvm.ResNet18_Weights.IMAGENET1K_V1
MBV3S = tvm.MobileNet_V3_Small_Weights.IMAGENET1K_V1


# ---- helpers -----------------------------------------------------------------------------------
def checkpoint_file(member) -> Path:
    """The file torchvision's download writes for ``member``: $TORCH_HOME/hub/checkpoints/<url basename>."""
    return Path(os.environ["TORCH_HOME"]) / "hub" / "checkpoints" / os.path.basename(member.url)


def random_state_dict(name: str, member, seed: int) -> dict[str, torch.Tensor]:
    """A full-architecture state dict with random weights and non-trivial BatchNorm statistics."""
    torch.manual_seed(seed)
    kwargs = {"aux_logits": True, "init_weights": False} if name in ("googlenet", "inception_v3") else {}
    model = tvm.get_model(name, weights=None, num_classes=len(member.meta["categories"]), **kwargs)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
    return model.state_dict()


def write_random_checkpoint(name: str, member, seed: int = 0) -> Path:
    path = checkpoint_file(member)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(random_state_dict(name, member, seed), path)
    return path


def reference_model(name: str, member) -> nn.Module:
    """The model exactly as torchvision's docs load it (from torchvision's cache)."""
    model = tvm.get_model(name, weights=member)
    model.eval()
    return model


def chelsea() -> np.ndarray:
    return data.chelsea()


def _isolate(monkeypatch: pytest.MonkeyPatch) -> None:
    # only this plugin: other installed plugins would rebuild their listings in the empty ZOO_HOME
    monkeypatch.setenv("ZOO_PLUGINS", "torchvision")
    monkeypatch.delenv("ZOO_DISABLE_PLUGINS", raising=False)
    zoo.reset()


@pytest.fixture
def tv(zoo_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An isolated cache with only the torchvision plugin loaded."""
    _isolate(monkeypatch)
    yield zoo_home
    zoo.reset()


# ---- (1) embed equals torchvision's documented pipeline ----------------------------------------
@pytest.mark.parametrize(
    ("name", "member", "replace"),
    [
        ("resnet18", RESNET18, lambda m: setattr(m, "fc", nn.Identity())),
        ("mobilenet_v3_small", MBV3S, lambda m: m.classifier.__setitem__(3, nn.Identity())),
    ],
)
def test_embed_matches_torchvision_reference(tv: Path, no_network: None, name, member, replace) -> None:
    path = write_random_checkpoint(name, member, seed=1)
    bb = zoo.load(f"torchvision:{name}.{member.name}")
    assert bb.id == zoo.parse_id(f"torchvision:{name}.{member.name}")

    ref = reference_model(name, member)
    x = member.transforms()(Image.fromarray(chelsea())).unsqueeze(0)
    with torch.no_grad():
        ref_logits = ref(x)
        replace(ref)
        ref_feats = ref(x).numpy()

    feats = bb.embed(chelsea())
    assert feats.shape == (1, bb.feature_dim) == ref_feats.shape
    assert np.abs(ref_feats).max() > 1e-3  # not a degenerate all-zero comparison
    np.testing.assert_allclose(feats, ref_feats, rtol=1e-5, atol=1e-5)
    # the source head on the features gives the original model's logits
    with torch.no_grad():
        logits = bb.source_head(torch.from_numpy(feats))
    np.testing.assert_allclose(logits.numpy(), ref_logits.numpy(), rtol=1e-5, atol=1e-5)
    # and the weights are the file's, not a fresh initialisation
    saved = torch.load(path, weights_only=True)
    own = bb.model.state_dict()
    key = next(k for k in own if k.endswith("weight") and own[k].dim() == 4)
    torch.testing.assert_close(own[key], saved[key])


# ---- (2) the Backbone contract ----------------------------------------------------------------
class TestTorchvisionBackboneContract(BackboneContract):
    @pytest.fixture(scope="class", params=["resnet18.IMAGENET1K_V1", "mobilenet_v3_small.IMAGENET1K_V1"])
    @classmethod
    def backbone(cls, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
        root = tmp_path_factory.mktemp("tvcache")
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("TORCH_HOME", str(root / "torch"))
            mp.setenv("ZOO_HOME", str(root / "zoo"))
            mp.setenv("ZOO_OFFLINE", "1")
            _isolate(mp)
            name, tag = request.param.split(".")
            write_random_checkpoint(name, tvm.get_model_weights(name)[tag], seed=2)
            bb = zoo.load(f"torchvision:{request.param}")
            zoo.reset()
        return bb


# ---- (3) freezing: exact counts and BatchNorm kept in inference mode ------------------------------
def _numel(params) -> int:
    return sum(p.numel() for p in params)


def test_resnet18_unfreeze_counts_by_parameter_name(tv: Path, no_network: None) -> None:
    write_random_checkpoint("resnet18", RESNET18)
    bb = zoo.load("torchvision:resnet18.IMAGENET1K_V1")
    assert [g.name for g in bb.layer_groups] == ["stem", "stage1", "stage2", "stage3", "stage4"]
    assert bb.card.layer_groups in (None, len(bb.layer_groups))  # a curated card may leave it out
    # group sizes from parameter names alone, independent of the group modules
    prefixes = [("conv1.", "bn1."), ("layer1.",), ("layer2.",), ("layer3.",), ("layer4.",)]
    named = dict(bb.model.named_parameters())
    sizes = [_numel(p for n, p in named.items() if n.startswith(pre)) for pre in prefixes]
    assert sum(sizes) == _numel(named.values()) == 11176512  # resnet18 without its fc
    for k in range(len(sizes) + 1):
        bb.unfreeze(top=k)
        assert bb.trainable_parameter_count() == sum(sizes[len(sizes) - k :]), k
        trainable = {n for n, p in named.items() if p.requires_grad}
        assert trainable == {n for n in named if any(n.startswith(p) for pre in prefixes[len(sizes) - k :] for p in pre)}
    assert bb.freeze().trainable_parameter_count() == 0


def test_mobilenet_v3_unfreeze_counts_by_group(tv: Path, no_network: None) -> None:
    write_random_checkpoint("mobilenet_v3_small", MBV3S)
    bb = zoo.load("torchvision:mobilenet_v3_small.IMAGENET1K_V1")
    groups = bb.layer_groups
    assert groups[0].name == "stem" and groups[-1].name == "top"
    assert bb.model.classifier[0] in groups[-1].modules  # the 576->1024 hidden layer is part of the top
    sizes = [_numel({id(p): p for m in g.modules for p in m.parameters()}.values()) for g in groups]
    assert all(s > 0 for s in sizes)
    assert sum(sizes) == _numel(bb.model.parameters())
    for k in range(len(groups) + 1):
        assert bb.unfreeze(top=k).trainable_parameter_count() == sum(sizes[len(sizes) - k :])


def test_frozen_batchnorm_statistics_survive_a_training_step(tv: Path, no_network: None) -> None:
    write_random_checkpoint("resnet18", RESNET18)
    bb = zoo.load("torchvision:resnet18.IMAGENET1K_V1")
    bb.unfreeze(top=1)  # only layer4 trains
    clf = bb.with_head(num_classes=3)
    clf.train()

    def bn_state(prefix: str) -> dict[str, torch.Tensor]:
        return {
            n: t.clone()
            for n, t in bb.model.state_dict().items()
            if n.startswith(prefix) and ("running_" in n or "num_batches" in n)
        }

    frozen_before = {**bn_state("bn1."), **bn_state("layer1."), **bn_state("layer3.")}
    frozen_weight = bb.model.layer3[0].conv1.weight.clone()
    top_before = bn_state("layer4.")
    top_weight = bb.model.layer4[0].conv1.weight.clone()

    params = [p for p in clf.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.1)
    batch = bb.preprocess([chelsea(), data.coffee(), data.astronaut()], train=True)
    loss = nn.functional.cross_entropy(clf(batch), torch.tensor([0, 1, 2]))
    loss.backward()
    opt.step()

    for n, t in {**bn_state("bn1."), **bn_state("layer1."), **bn_state("layer3.")}.items():
        torch.testing.assert_close(t, frozen_before[n], msg=f"frozen BatchNorm {n} changed")
    torch.testing.assert_close(bb.model.layer3[0].conv1.weight, frozen_weight)
    changed = [n for n, t in bn_state("layer4.").items() if "running_mean" in n and not torch.equal(t, top_before[n])]
    assert changed, "trainable BatchNorm statistics should update in train mode"
    assert not torch.equal(bb.model.layer4[0].conv1.weight, top_weight)


# ---- (4) the listing covers every weights member, figures from weights.meta ---------------------
def _all_members() -> list[tuple[str, object]]:
    return [(n, m) for n in tvm.list_models(module=tvm) for m in tvm.get_model_weights(n)]


def test_listing_covers_every_weights_member_with_meta_figures(tv: Path) -> None:
    cards = {c.id: c for c in zoo.list_models(source="torchvision")}
    members = _all_members()
    assert len(members) > 100
    assert {f"torchvision:{n}.{m.name}" for n, m in members} <= set(cards)
    for name, member in members:
        card = cards[f"torchvision:{name}.{member.name}"]
        if card.origin != "torchvision":
            continue  # a curated registry.yaml entry overrides the plugin's
        meta = member.meta
        acc = meta["_metrics"]["ImageNet-1K"]["acc@1"]
        assert card.params == meta["num_params"], card.id
        assert card.gflops == meta["_ops"], card.id
        assert card.top1 == (None if math.isnan(acc) else acc), card.id
        assert card.top1_dataset == (None if math.isnan(acc) else "imagenet-1k"), card.id
        assert card.input_size == member.transforms().crop_size[0], card.id
        assert card.url == member.url
        assert card.license == meta.get("license")
        assert list(card.mean) == list(member.transforms().mean)
        assert ("image-classification" in card.tasks) == (meta["categories"] is not None)
    assert cards["torchvision:resnet50.IMAGENET1K_V2"].family == "resnet"
    assert cards["torchvision:efficientnet_v2_s.IMAGENET1K_V1"].family == "efficientnet"
    assert cards["torchvision:mobilenet_v3_small.IMAGENET1K_V1"].family == "mobilenet"
    assert cards["torchvision:vit_b_16.IMAGENET1K_V1"].family == "vit"


def test_shipped_listing_matches_installed_torchvision() -> None:
    import json

    import zoo_torchvision

    shipped = json.loads(zoo_torchvision.LISTING.read_text())
    assert shipped["version"] == installed_version("torchvision"), "rebuild: python -m zoo_torchvision._listing"
    assert {m["id"] for m in shipped["models"]} == {f"torchvision:{n}.{m.name}" for n, m in _all_members()}


def test_every_architecture_feature_model_and_groups_on_meta(tv: Path) -> None:
    """Every model: groups cover each parameter exactly once; the listing's feature_dim and group count hold."""
    cards = {c.id: c for c in zoo.list_models(source="torchvision") if c.origin == "torchvision"}
    smallest: dict[str, tuple[int, str, object]] = {}
    for name in tvm.list_models(module=tvm):
        family = _arch.family_of(name)
        built: dict[bool, tuple[int, int, bool]] = {}  # the architecture depends on the weights only through the head
        for member in tvm.get_model_weights(name):
            key = _backbone.num_classes(member) is not None
            if key not in built:
                with _arch.empty_weights():
                    model = tvm.get_model(name, weights=None, **_arch.arch_kwargs(name, member))
                surgery = _arch.to_feature_model(model, name, _backbone.num_classes(member))
                groups = _arch.layer_groups(model, family)
                assert _arch.coverage_problems(model, groups) == [], name
                assert groups[0].name == "stem", f"{name} fell back to generic groups"
                built[key] = (surgery.feature_dim, len(groups), surgery.head is not None)
            dim, n_groups, has_head = built[key]
            card = cards.get(f"torchvision:{name}.{member.name}")
            if card is not None:
                assert (card.feature_dim, card.layer_groups) == (dim, n_groups), card.id
            assert has_head == (member.meta["categories"] is not None and family != "squeezenet"), name
            size = member.meta["num_params"]
            if family not in smallest or size < smallest[family][0]:
                smallest[family] = (size, name, member)
    # a forward pass (on meta tensors) per family gives (1, feature_dim)
    for _, name, member in smallest.values():
        with _arch.empty_weights():
            model = tvm.get_model(name, weights=None, **_arch.arch_kwargs(name, member))
        surgery = _arch.to_feature_model(model, name, _backbone.num_classes(member))
        crop = member.transforms().crop_size[0]
        with torch.no_grad():
            out = model.eval()(torch.empty(1, 3, crop, crop, device="meta"))
        assert tuple(out.shape) == (1, surgery.feature_dim), name
    assert len(smallest) >= 15


def test_vit_groups_follow_parameters_replaced_by_to() -> None:
    member = tvm.ViT_B_32_Weights.IMAGENET1K_V1
    with _arch.empty_weights():
        model = tvm.get_model("vit_b_32", weights=None, **_arch.arch_kwargs("vit_b_32", member))
    _arch.to_feature_model(model, "vit_b_32", 1000)
    groups = _arch.layer_groups(model, "vit")
    assert [g.name for g in groups] == ["stem", "stage1", "stage2", "stage3", "stage4", "top"]
    assert [len(g.modules) for g in groups[1:5]] == [3, 3, 3, 3]
    old_token = model.class_token
    model.to_empty(device="cpu")  # meta -> cpu replaces every parameter object
    assert model.class_token is not old_token
    assert _arch.coverage_problems(model, groups) == []
    assert any(p is model.class_token for p in groups[0].modules[0].parameters())


def test_vgg16_feature_only_weights_have_no_head() -> None:
    member = tvm.VGG16_Weights.IMAGENET1K_FEATURES
    with _arch.empty_weights():
        model = tvm.get_model("vgg16", weights=None, **_arch.arch_kwargs("vgg16", member))
    surgery = _arch.to_feature_model(model, "vgg16", _backbone.num_classes(member))
    assert surgery.head is None and surgery.feature_dim == 512
    out = model.eval()(torch.empty(2, 3, 224, 224, device="meta"))
    assert tuple(out.shape) == (2, 512)


# ---- (5) offline and not cached ----------------------------------------------------------------
def test_offline_and_not_cached_raises_naming_the_path(tv: Path, no_network: None, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    monkeypatch.setattr(socket.socket, "connect", lambda *a, **k: calls.append(a))
    expected = checkpoint_file(RESNET18)
    with pytest.raises(NotCachedError) as err:
        zoo.load("torchvision:resnet18.IMAGENET1K_V1")
    assert err.value.cache_path == str(expected)
    assert str(expected) in str(err.value)
    assert "\n" not in str(err.value)
    assert not calls and not expected.exists()


# ---- (6) predict uses weights.meta["categories"] ---------------------------------------------------
def test_predict_returns_category_names(tv: Path, no_network: None) -> None:
    write_random_checkpoint("resnet18", RESNET18, seed=3)
    bb = zoo.load("torchvision:resnet18.IMAGENET1K_V1")
    categories = RESNET18.meta["categories"]
    assert bb.labels == categories
    images = [chelsea(), data.coffee()]
    preds = bb.predict(images, top_k=5)
    ref = reference_model("resnet18", RESNET18)
    with torch.no_grad():
        logits = ref(torch.stack([RESNET18.transforms()(Image.fromarray(i)) for i in images]))
    for row, expected in zip(preds, logits.softmax(-1)):
        assert len(row) == 5
        assert all(label in categories for label, _ in row)
        probs = [p for _, p in row]
        assert probs == sorted(probs, reverse=True)
        top_p, top_i = expected.topk(5)
        assert [label for label, _ in row] == [categories[i] for i in top_i.tolist()]
        np.testing.assert_allclose(probs, top_p.numpy(), rtol=1e-4, atol=1e-6)


def test_squeezenet_predicts_with_its_convolutional_classifier(tv: Path, no_network: None) -> None:
    """SqueezeNet's classifier (1x1 conv, ReLU, then the pooling) cannot read the pooled features: predict runs
    torchvision's own forward (it raised NoHeadError); the features stay the pooled map, with no source_head."""
    member = tvm.SqueezeNet1_1_Weights.IMAGENET1K_V1
    write_random_checkpoint("squeezenet1_1", member, seed=4)
    bb = zoo.load("torchvision:squeezenet1_1.IMAGENET1K_V1")
    assert bb.source_head is None and bb.labels == member.meta["categories"]
    images = [chelsea(), data.coffee()]
    ref = reference_model("squeezenet1_1", member)
    batch = torch.stack([member.transforms()(Image.fromarray(i)) for i in images])
    with torch.no_grad():
        probs = ref(batch).softmax(-1)
        pooled = ref.features(batch).mean(dim=(2, 3))
    for row, expected in zip(bb.predict(images, top_k=5), probs):
        top_p, top_i = expected.topk(5)
        assert [label for label, _ in row] == [member.meta["categories"][i] for i in top_i.tolist()]
        np.testing.assert_allclose([p for _, p in row], top_p.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(bb.embed(images), pooled.numpy(), rtol=1e-4, atol=1e-5)
    assert isinstance(bb.model.classifier, nn.AdaptiveAvgPool2d)  # predict left the feature model as it was


# ---- more loader behaviour -----------------------------------------------------------------------
def test_bare_id_loads_the_default_weights(tv: Path, no_network: None) -> None:
    default = tvm.MobileNet_V2_Weights.DEFAULT
    assert default.name == "IMAGENET1K_V2"
    write_random_checkpoint("mobilenet_v2", default)
    bb = zoo.load("torchvision:mobilenet_v2")
    assert bb.id.tag == "IMAGENET1K_V2"
    assert bb.card.id == "torchvision:mobilenet_v2.IMAGENET1K_V2"
    assert bb.card.top1 == default.meta["_metrics"]["ImageNet-1K"]["acc@1"]
    assert bb.weights is default


class _Mirror:
    """A plugin answering zoo_resolve_weights with a local safetensors file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.asked: list[str] = []

    @hookimpl
    def zoo_resolve_weights(self, model_id, card):
        self.asked.append(str(model_id))
        return str(self.path) if model_id.source == "torchvision" else None


def test_resolved_weights_path_is_used(tv: Path, no_network: None, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    sd = random_state_dict("resnet18", RESNET18, seed=4)
    path = tmp_path / "mirror" / "resnet18.safetensors"
    path.parent.mkdir()
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    mirror = _Mirror(path)
    zoo.reset(extra_plugins={"mirror": mirror})
    bb = zoo.load("torchvision:resnet18.IMAGENET1K_V1")  # nothing in $TORCH_HOME, offline
    assert mirror.asked == ["torchvision:resnet18.IMAGENET1K_V1"]
    assert not checkpoint_file(RESNET18).exists()
    torch.testing.assert_close(bb.model.layer4[1].conv2.weight, sd["layer4.1.conv2.weight"])
    torch.testing.assert_close(bb.source_head.weight, sd["fc.weight"])


def test_resolved_path_that_does_not_exist_is_reported(tv: Path, no_network: None, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "resnet18.safetensors"
    zoo.reset(extra_plugins={"mirror": _Mirror(missing)})
    with pytest.raises(InvalidInputError, match="zoo_resolve_weights") as err:
        zoo.load("torchvision:resnet18.IMAGENET1K_V1")
    assert str(missing) in str(err.value)


def test_checkpoint_with_pickled_objects_is_refused(tv: Path, no_network: None) -> None:
    path = checkpoint_file(RESNET18)
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = random_state_dict("resnet18", RESNET18, seed=5)
    torch.save({**sd, "payload": _Mirror(path)}, path)  # an arbitrary object: only unpickled by weights_only=False
    with pytest.raises(InvalidInputError, match="weights_only=True") as err:
        zoo.load("torchvision:resnet18.IMAGENET1K_V1")
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert isinstance(err.value.__cause__, pickle.UnpicklingError)


def test_unknown_names_and_options(tv: Path) -> None:
    with pytest.raises(UnknownModelError, match="IMAGENET1K_V1"):
        _backbone.load(zoo.parse_id("torchvision:resnet18.IMAGENET1K_V9"), None)
    with pytest.raises(UnknownModelError, match="resnet18"):
        _backbone.load(zoo.parse_id("torchvision:resnet181.IMAGENET1K_V1"), None)
    with pytest.raises(InvalidInputError, match="pooling"):
        _backbone.load(zoo.parse_id("torchvision:resnet18.IMAGENET1K_V1"), None, pooling="mean")


def test_preprocess_eval_and_train_use_the_weights_numbers(tv: Path, no_network: None) -> None:
    write_random_checkpoint("mobilenet_v3_small", MBV3S)
    bb = zoo.load("torchvision:mobilenet_v3_small.IMAGENET1K_V1")
    eval_tf = MBV3S.transforms()
    spec = bb.input_spec
    assert (spec.size, spec.mean, spec.std) == (eval_tf.crop_size[0], tuple(eval_tf.mean), tuple(eval_tf.std))
    ev = bb.preprocess([chelsea(), data.camera()])  # camera is grayscale: converted to RGB
    torch.testing.assert_close(ev[0], eval_tf(Image.fromarray(chelsea())))
    torch.manual_seed(0)
    a = bb.preprocess(chelsea(), train=True)
    b = bb.preprocess(chelsea(), train=True)
    assert a.shape == ev[:1].shape and not torch.equal(a, b)


# ---- (7) plugin registration contract --------------------------------------------------------------
class TestTorchvisionPluginContract(PluginContract):
    @pytest.fixture
    def plugin_name(self, tv: Path) -> str:
        return "torchvision"


def test_bare_id_info_is_the_enum_default():
    import torchvision.models as tvm

    import zoo

    zoo.reset()
    default = tvm.get_model_weights("resnet50").DEFAULT
    assert zoo.info("torchvision:resnet50").id == f"torchvision:resnet50.{default.name}"
    assert zoo.info("torchvision:resnet50").default


def test_inception_v3_as_loaded_trains_with_its_four_groups(tv: Path, no_network: None) -> None:
    """torchvision's builder keeps Inception v3's auxiliary classifier when it loads weights: zoo drops it,
    so a with_head model returns logits in train mode too, and the groups are the catalog's four."""
    member = tvm.Inception_V3_Weights.IMAGENET1K_V1
    write_random_checkpoint("inception_v3", member)
    bb = zoo.load("torchvision:inception_v3.IMAGENET1K_V1")
    assert [g.name for g in bb.layer_groups] == ["stem", "stage1", "stage2", "stage3"]
    assert bb.card.layer_groups == len(bb.layer_groups)
    assert _arch.coverage_problems(bb.model, bb.layer_groups) == []
    bb.unfreeze(top=1)
    clf = bb.with_head(num_classes=3).train()
    out = clf(torch.randn(2, 3, 299, 299))
    assert isinstance(out, torch.Tensor) and tuple(out.shape) == (2, 3)


def test_swin_group_outputs_are_pooled_over_space_channels_last(tv: Path, no_network: None) -> None:
    """Swin's stages give (N, H, W, C): a group's pooled output is its C channels, at any resolution. They were pooled
    over (W, C) as if channels-first, so per-group features were (N, H) and an lp-concat head built at 224 px could not
    read a 64 px batch ("mat1 and mat2 shapes cannot be multiplied")."""
    from zoo.recommender.features import extract

    member = tvm.Swin_T_Weights.IMAGENET1K_V1
    write_random_checkpoint("swin_t", member)
    bb = zoo.load("torchvision:swin_t.IMAGENET1K_V1")
    assert bb.channels_last
    mid = bb.layer_groups[len(bb.layer_groups) // 2].name
    clf = bb.with_head(num_classes=3, concat_group=mid).eval()
    widths = {96, 192, 384, 768}  # swin_t's stage channels
    assert clf.mid_dim in widths, clf.mid_dim
    for side in (64, 224):
        assert tuple(clf(torch.randn(2, 3, side, side)).shape) == (2, 3)
    fs = extract(bb, [chelsea(), chelsea()], np.zeros(2, dtype=np.int64), resolution=64, count_flops=False)
    assert {a.shape[1] for a in fs.groups.values()} <= widths | {bb.feature_dim}
