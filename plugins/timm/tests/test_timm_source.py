"""Tests of the timm source: weights from the real HF cache layout, offline, against timm's own pipeline."""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import zoo
from zoo.errors import NotCachedError, UnknownModelError
from zoo.testing import BackboneContract, PluginContract, sample_image

ARCH, TAG = "efficientnet_lite0", "ra_in1k"
MID = f"timm:{ARCH}.{TAG}"
PLUGINS = "timm,pypi_weights"
LISTING = Path(__file__).resolve().parents[1] / "zoo_timm" / "listing.json"


def write_hub_weights(hub: Path, repo: str, state_dict: dict[str, torch.Tensor]) -> Path:
    """Put ``model.safetensors`` where huggingface_hub's download leaves it: blob, snapshot link, ref."""
    from safetensors.torch import save_file

    root = hub / ("models--" + repo.replace("/", "--"))
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    tmp = root / "blobs" / "incoming"
    save_file({k: v.contiguous() for k, v in state_dict.items()}, str(tmp))
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    blob = root / "blobs" / digest
    tmp.rename(blob)
    commit = hashlib.sha1(digest.encode()).hexdigest()
    snap = root / "snapshots" / commit
    snap.mkdir(parents=True)
    (snap / "model.safetensors").symlink_to(os.path.relpath(blob, snap))
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(commit)
    return snap / "model.safetensors"


def random_lite0_state() -> dict[str, torch.Tensor]:
    """Random weights (and non-trivial BatchNorm statistics) for efficientnet_lite0 with its classifier."""
    import timm

    torch.manual_seed(0)
    model = timm.create_model(ARCH, pretrained=False)
    sd = model.state_dict()
    for k, v in sd.items():
        if k.endswith("running_var"):
            sd[k] = torch.rand_like(v) + 0.5
        elif k.endswith("running_mean"):
            sd[k] = torch.randn_like(v) * 0.1
    return sd


def _point_hf_hub(monkeypatch: pytest.MonkeyPatch, hub: Path) -> None:
    """huggingface_hub reads its cache dir and offline flag at import; align them with this test's env."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(autouse=True)
def _only_these_plugins(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ZOO_PLUGINS", PLUGINS)
    zoo.reset()
    yield
    zoo.reset()


@pytest.fixture(scope="module")
def lite0(tmp_path_factory: pytest.TempPathFactory):
    """efficientnet_lite0.ra_in1k loaded through zoo from random weights in an offline HF cache."""
    root = tmp_path_factory.mktemp("timm-cache")
    with pytest.MonkeyPatch.context() as mp:
        for var, sub in (("ZOO_HOME", "zoo"), ("HF_HOME", "hf"), ("TORCH_HOME", "torch")):
            mp.setenv(var, str(root / sub))
        mp.setenv("ZOO_OFFLINE", "1")
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("ZOO_PLUGINS", PLUGINS)
        write_hub_weights(root / "hf" / "hub", f"timm/{ARCH}.{TAG}", random_lite0_state())
        zoo.reset()
        bb = zoo.load(MID)
        zoo.reset()
    return bb


# (1) ---------------------------------------------------------------------------------------------
def test_embed_matches_timm_reference(zoo_home: Path, no_network: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import timm
    from timm.data import create_transform, resolve_model_data_config

    hub = Path(os.environ["HF_HOME"]) / "hub"
    write_hub_weights(hub, f"timm/{ARCH}.{TAG}", random_lite0_state())
    zoo.reset()
    bb = zoo.load(MID)
    img = sample_image("chelsea")
    got = bb.embed([img])

    # the reference, as timm's docs write it
    _point_hf_hub(monkeypatch, hub)
    ref_model = timm.create_model(f"{ARCH}.{TAG}", pretrained=True, num_classes=0).eval()
    cfg = resolve_model_data_config(ref_model)
    tf = create_transform(**cfg, is_training=False)
    from PIL import Image

    with torch.no_grad():
        want = ref_model(tf(Image.fromarray(img)).unsqueeze(0)).numpy()
    assert got.shape == (1, 1280)
    assert np.abs(want).max() > 1e-3, "reference features are degenerate"
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)

    # the kept classifier on pooled features reproduces the original logits
    full = timm.create_model(f"{ARCH}.{TAG}", pretrained=True).eval()
    x = bb.preprocess([img])
    with torch.no_grad():
        np.testing.assert_allclose(bb.source_head(bb.model(x)).numpy(), full(x).numpy(), rtol=1e-5, atol=1e-5)
    top = bb.predict([img], top_k=3)[0]
    logits = full(x)[0]
    from timm.data import ImageNetInfo

    assert top[0][0] == ImageNetInfo().index_to_description(int(logits.argmax()))
    assert bb.card is not None and bb.card.id == MID and bb.card.input_size == 224


def test_bare_arch_loads_timm_default_tag(lite0, zoo_home: Path, no_network: None) -> None:
    write_hub_weights(Path(os.environ["HF_HOME"]) / "hub", f"timm/{ARCH}.{TAG}", random_lite0_state())
    zoo.reset()
    bb = zoo.load(f"timm:{ARCH}")
    assert bb.card.id == MID
    np.testing.assert_allclose(bb.embed([sample_image("coffee")]), lite0.embed([sample_image("coffee")]), rtol=1e-5, atol=1e-5)


class _Mirror:
    """A company plugin answering zoo_resolve_weights from a local mirror directory."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.files = files
        self.asked: list[str] = []

    @zoo.hookimpl
    def zoo_resolve_weights(self, model_id, card):
        self.asked.append(str(model_id))
        return self.files.get(model_id.base)


@pytest.mark.parametrize("fmt", ["safetensors", "pth"])
def test_resolved_file_wins_over_hub(fmt: str, zoo_home: Path, no_network: None, tmp_path: Path) -> None:
    import timm
    from safetensors.torch import save_file

    sd = random_lite0_state()
    path = tmp_path / f"mirror.{fmt}"
    if fmt == "safetensors":
        save_file(sd, str(path))
    else:
        torch.save(sd, path)
    mirror = _Mirror({MID: path})
    zoo.reset(extra_plugins={"mirror": mirror})
    bb = zoo.load(MID)  # nothing in the HF cache: the mirror's file is used
    assert mirror.asked == [MID]
    ref = timm.create_model(ARCH, pretrained=False).eval()
    ref.load_state_dict(sd)
    x = bb.preprocess([sample_image("astronaut")])
    with torch.no_grad():
        np.testing.assert_allclose(bb.source_head(bb.model(x)).numpy(), ref(x).numpy(), rtol=1e-5, atol=1e-5)
    assert bb.input_spec.mean == (0.485, 0.456, 0.406)  # the tag's own pretrained_cfg still applies


# (2) ---------------------------------------------------------------------------------------------
class TestTimmBackbone(BackboneContract):
    @pytest.fixture
    def backbone(self, lite0):
        return lite0


# (3) ---------------------------------------------------------------------------------------------
def _expected_group(name: str) -> int:
    """Group index of an efficientnet_lite0 parameter, from the architecture (not from timm's matcher)."""
    if name.startswith(("conv_stem.", "bn1.")):
        return 0
    m = re.match(r"blocks\.(\d)\.", name)
    if m:
        return 1 + int(m.group(1))
    assert name.startswith(("conv_head.", "bn2.")), name
    return 8


def test_layer_groups_cover_every_parameter_once(lite0) -> None:
    names = [g.name for g in lite0.layer_groups]
    assert names == ["stem"] + [f"blocks.{i}" for i in range(7)] + ["top"]
    owner: dict[int, int] = {}
    for i, g in enumerate(lite0.layer_groups):
        for m in g.modules:
            for p in m.parameters():
                assert id(p) not in owner, f"parameter in groups {owner[id(p)]} and {i}"
                owner[id(p)] = i
    for name, p in lite0.model.named_parameters():
        assert owner.get(id(p)) == _expected_group(name), name
    assert len(owner) == len(list(lite0.model.parameters()))


def test_unfreeze_counts_exact(lite0) -> None:
    sizes = [0] * 9
    for name, p in lite0.model.named_parameters():
        sizes[_expected_group(name)] += p.numel()
    n = len(lite0.layer_groups)
    for k in range(n + 1):
        assert lite0.unfreeze(top=k).trainable_parameter_count() == sum(sizes[n - k :]), k
    lite0.freeze()


def test_frozen_batchnorm_keeps_statistics(lite0) -> None:
    bb = lite0
    bb.unfreeze(top=1)  # only the top group (conv_head, bn2) trains
    bns = {n: m for n, m in bb.model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    before = {n: (m.running_mean.clone(), m.running_var.clone()) for n, m in bns.items()}
    frozen_w = bb.model.conv_stem.weight.detach().clone()
    head = bb.with_head(num_classes=2)
    head.train()
    opt = torch.optim.SGD([p for p in head.parameters() if p.requires_grad], lr=0.1)
    x = bb.preprocess([sample_image("chelsea"), sample_image("coffee")], train=True)
    loss = torch.nn.functional.cross_entropy(head(x), torch.tensor([0, 1]))
    loss.backward()
    opt.step()
    try:
        for n, m in bns.items():
            same = torch.equal(m.running_mean, before[n][0]) and torch.equal(m.running_var, before[n][1])
            assert same == (n != "bn2"), f"{n}: running stats {'changed' if not same else 'unchanged'}"
        assert torch.equal(bb.model.conv_stem.weight, frozen_w)
    finally:
        for n, m in bns.items():  # restore for the other tests on this shared backbone
            m.running_mean.copy_(before[n][0])
            m.running_var.copy_(before[n][1])
        bb.freeze()
        bb.model.eval()


def test_a_group_unfrozen_while_training_trains_its_batchnorm(lite0) -> None:
    """Gradual unfreezing without calling train() again: the frozen-group hook keeps BatchNorm in inference mode
    for each forward only, so once the group is unfrozen its BatchNorm follows the model's train mode again."""
    bb = lite0
    bns = [m for m in bb.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()) for m in bns]
    x = bb.preprocess([sample_image("chelsea"), sample_image("coffee")], train=True)
    clf = bb.with_head(num_classes=2)
    clf.train()
    try:
        bb.freeze()
        with torch.no_grad():
            clf(x)  # epoch 1: the head only; every BatchNorm in inference mode
        assert all(m.training for m in bns)  # the mode train() set is kept between forwards
        bb.unfreeze(top=1)  # the top group (conv_head, bn2) joins; the loop goes on in train mode
        top = bb.model.bn2
        before = top.running_mean.clone()
        with torch.no_grad():
            clf(x)
        assert top.training and not torch.equal(top.running_mean, before), "the unfrozen group's BatchNorm stayed in inference mode"
        assert torch.equal(bb.model.bn1.running_mean, saved[bns.index(bb.model.bn1)][0])  # the frozen stem's did not move
    finally:
        for m, (mean, var, n) in zip(bns, saved):  # restore for the other tests on this shared backbone
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
            m.num_batches_tracked.copy_(n)
        bb.freeze()
        bb.model.eval()


def test_stage_features(lite0) -> None:
    imgs = [sample_image("chelsea"), sample_image("astronaut")]
    feats = lite0.stage_features(imgs, batch_size=1)
    group_names = [g.name for g in lite0.layer_groups]
    assert list(feats) == [n for n in group_names if n in feats] and list(feats)[-1] == "top"
    assert len(feats) >= 4
    for v in feats.values():
        assert v.shape[0] == 2 and v.dtype == np.float32 and np.isfinite(v).all()
    np.testing.assert_allclose(feats["top"], lite0.embed(imgs), rtol=1e-4, atol=1e-5)
    assert feats["blocks.6"].shape[1] == 320


@pytest.mark.parametrize("name", ["resnet18.a1_in1k", "convnext_atto.d2_in1k", "vit_tiny_patch16_224.augreg_in21k_ft_in1k"])
def test_other_archs_groups_and_head(name: str, zoo_home: Path, no_network: None) -> None:
    import timm

    bb = zoo.load(f"timm:{name}", pretrained=False)
    seen = [id(p) for g in bb.layer_groups for m in g.modules for p in m.parameters()]
    assert len(seen) == len(set(seen)) and set(seen) == {id(p) for p in bb.model.parameters()}
    assert bb.layer_groups[0].name == "stem" and len(bb.layer_groups) >= 5
    # pooled features -> kept classifier == the full timm model with the same weights
    full = timm.create_model(name, pretrained=False).eval()
    cls = full.pretrained_cfg["classifier"]
    state = {**bb.model.state_dict(), **{f"{cls}.{k}": v for k, v in bb.source_head.state_dict().items()}}
    full.load_state_dict(state)
    x = bb.preprocess([sample_image("chelsea")])
    with torch.no_grad():
        np.testing.assert_allclose(bb.source_head(bb.model(x)).numpy(), full(x).numpy(), rtol=1e-4, atol=1e-4)
    assert bb.feature_dim == bb.embed([sample_image("chelsea")]).shape[1]


@pytest.mark.parametrize("name", ["deit_tiny_distilled_patch16_224.fb_in1k", "levit_128s.fb_dist_in1k", "pit_ti_distilled_224.in1k"])
def test_distilled_models_predict_with_the_mean_of_both_heads(name: str, zoo_home: Path, no_network: None) -> None:
    """head + head_dist (over two tokens: DeiT, PiT; on the pooled features: LeViT): predict raised NoHeadError;
    it now gives timm's own eval output, the mean of both heads' logits, with ImageNet's class names."""
    import timm

    torch.manual_seed(0)
    bb = zoo.load(f"timm:{name}", pretrained=False)
    torch.manual_seed(0)
    full = timm.create_model(name, pretrained=False).eval()  # the same random weights, heads included
    assert bb.source_head is None and len(bb.labels) == 1000
    images = [sample_image("chelsea"), sample_image("coffee")]
    with torch.no_grad():
        probs = full(bb.preprocess(images)).softmax(-1)
    for row, p in zip(bb.predict(images, top_k=3), probs):
        top_p, top_i = p.topk(3)
        assert [label for label, _ in row] == [bb.labels[i] for i in top_i.tolist()]
        np.testing.assert_allclose([q for _, q in row], top_p.numpy(), rtol=1e-4, atol=1e-6)
    assert not isinstance(full.head_dist, torch.nn.Identity) and isinstance(bb.model.head_dist, torch.nn.Identity)
    assert bb.embed(images).shape == (2, bb.feature_dim)  # the features are still the pooled ones


# (4) ---------------------------------------------------------------------------------------------
def test_listing_matches_installed_timm() -> None:
    import timm

    data = json.loads(LISTING.read_text(encoding="utf-8"))
    assert data["version"] == timm.__version__
    ids = [m["id"] for m in data["models"]]
    assert len(ids) >= 1500 and len(ids) == len(set(ids))
    assert set(ids) == {f"timm:{n}" for n in timm.list_pretrained()}
    by_id = {m["id"]: m for m in data["models"]}
    assert by_id["timm:resnet18.a1_in1k"]["family"] == "resnet"
    assert by_id["timm:resnet18.a1_in1k"]["pretrain_data"] == "imagenet-1k"
    assert by_id["timm:convnext_tiny.fb_in22k"]["pretrain_data"] == "imagenet-22k"
    assert by_id["timm:vit_base_patch16_224.augreg2_in21k_ft_in1k"]["family"] == "vit"
    assert all(m["family"] != "vision_transformer" for m in data["models"])
    headless = [m for m in data["models"] if m["tasks"] == ["image-feature-extraction"]]
    assert headless and all("no classifier" in m["description"] for m in headless)
    assert LISTING.stat().st_size < 1_500_000
    defaults = {m["id"] for m in data["models"] if m.get("default")}
    assert "timm:resnet18.a1_in1k" in defaults and "timm:resnet18.tv_in1k" not in defaults
    from timm.models import get_pretrained_cfg

    for mid in list(defaults)[:50]:
        arch, tag = mid[5:].split(".", 1)
        assert get_pretrained_cfg(arch).tag == tag
    from zoo_timm._listing import build

    assert build() == data, "listing.json is stale: run python -m zoo_timm._listing plugins/timm/zoo_timm/listing.json"


def test_listing_registers_fast_through_host() -> None:
    from zoo.registrar import Registrar

    timings = []
    for _ in range(3):  # best of three: the machine running the suite may be busy
        t0 = time.perf_counter()
        models = json.loads(LISTING.read_text(encoding="utf-8"))["models"]
        table: dict = {}
        reg = Registrar("timm", {}, table)
        reg.many(models)
        if hasattr(reg, "commit"):
            reg.commit()
        timings.append(time.perf_counter() - t0)
    elapsed = min(timings)
    assert len(table) == len(models)
    assert elapsed < 0.25, f"loading + registering the listing took {elapsed * 1000:.0f} ms"
    cards = {c.id: c for c in zoo.list_models(source="timm")}
    assert {m["id"] for m in models} <= set(cards)
    # every listing entry is served by the plugin unless registry.yaml curates that id
    assert all(cards[m["id"]].origin in ("timm", "registry") for m in models)
    assert sum(cards[m["id"]].origin == "timm" for m in models) >= len(models) - 100
    assert {p.name: p.state for p in zoo.plugins()}["timm"] == "ok"
    assert zoo.info("timm:resnet18.a1_in1k").input_size == 224


# (5) ---------------------------------------------------------------------------------------------
def test_offline_not_cached_names_the_hf_cache(zoo_home: Path, no_network: None) -> None:
    with pytest.raises(NotCachedError) as err:
        zoo.load("timm:resnet18.a1_in1k")
    want = Path(os.environ["HF_HOME"]) / "hub" / "models--timm--resnet18.a1_in1k"
    assert err.value.cache_path == str(want)
    assert str(want) in str(err.value)


def test_unknown_tag_and_arch(zoo_home: Path, no_network: None) -> None:
    with pytest.raises(UnknownModelError) as err:
        zoo.load("timm:resnet18.no_such_tag")
    assert "timm:resnet18." in str(err.value)
    with pytest.raises(UnknownModelError):
        zoo.load("timm:resnet_does_not_exist")


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"foo": 1}, r"Unknown option\(s\) for timm: foo \(EfficientNet takes no such argument\).*drop_path_rate"),
        ({"drop_rat": 0.1}, "Did you mean drop_rate"),
        ({"channel_multiplier": 2.0}, "channel_multiplier is fixed by timm's efficientnet_lite0"),
        ({"num_classes": 10}, r"with_head\(num_classes\)"),
        ({"pretrained_cfg": {}}, "pretrained_cfg cannot be a load option"),
        ({"cache_dir": "/tmp"}, "cache_dir cannot be a load option"),
    ],
)
def test_unknown_or_reserved_load_options(options: dict, match: str, zoo_home: Path, no_network: None) -> None:
    """Options reach timm.create_model only when the architecture takes them; else one line, as hf says it."""
    from zoo.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match=match) as err:
        zoo.load(MID, pretrained=False, **options)
    assert "\n" not in str(err.value)


def test_model_arguments_are_load_options(zoo_home: Path, no_network: None) -> None:
    assert zoo.load(MID, pretrained=False, drop_rate=0.25).model.drop_rate == 0.25


def test_predict_and_stage_features_arguments(lite0) -> None:
    from zoo.errors import InvalidInputError

    img = sample_image("chelsea")[:64, :64]
    for bad in (0, -1, 2.5, None, "3"):
        with pytest.raises(InvalidInputError, match="top_k") as err:
            lite0.predict(img, top_k=bad)
        assert "\n" not in str(err.value)
        with pytest.raises(InvalidInputError, match="batch_size"):
            lite0.stage_features(img, batch_size=bad)
    assert len(lite0.predict(img, top_k=np.int64(2))[0]) == 2
    assert len(lite0.stage_features([img] * 3, batch_size=np.int64(2))["top"]) == 3


# (6) ---------------------------------------------------------------------------------------------
class TestTimmPlugin(PluginContract):
    @pytest.fixture
    def plugin_name(self) -> str:
        return "timm"


def test_online_hub_weights_altered_in_transit_are_refused_then_fetched_whole(zoo_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """timm downloads through huggingface_hub (a loopback Hub here); zoo holds the file to the Hub's sha256."""
    from safetensors.torch import save_file

    from zoo.errors import IntegrityError
    from zoo.testing import LoopbackHub

    repo = f"timm/{ARCH}.{TAG}"
    src = tmp_path / "repo"
    src.mkdir()
    sd = random_lite0_state()
    save_file({k: v.contiguous() for k, v in sd.items()}, str(src / "model.safetensors"))
    with LoopbackHub() as hub:
        files = hub.add_hf_repo(repo, src)
        hub.point_hf_here(monkeypatch)
        hub.plan[f"{repo}/model.safetensors"] = ["flip"]
        with pytest.raises(IntegrityError, match=rf"model\.safetensors of {re.escape(MID)}.*removed"):
            zoo.load(MID)
        blobs = Path(os.environ["HF_HOME"]) / "hub" / f"models--timm--{ARCH}.{TAG}" / "blobs"
        assert hub.gets[f"{repo}/model.safetensors"] == 1 and not any(blobs.iterdir())
        hub.plan[f"{repo}/model.safetensors"] = [503, "ok"]
        bb = zoo.load(MID)
        assert [p.read_bytes() for p in blobs.iterdir()] == [files["model.safetensors"]]
    got = bb.model.state_dict()
    shared = [k for k in sd if k in got]
    assert len(shared) > 200 and all(torch.equal(got[k], sd[k]) for k in shared)


def test_swin_group_outputs_are_pooled_over_space_channels_last(zoo_home: Path, no_network: None) -> None:
    """timm's Swin stages give (N, H, W, C) (``output_fmt`` NHWC): each group's pooled output is its channels."""
    from zoo.recommender.features import extract

    bb = zoo.load("timm:swin_tiny_patch4_window7_224", pretrained=False)
    assert bb.channels_last and not zoo.load("timm:efficientnet_lite0", pretrained=False).channels_last
    fs = extract(bb, [sample_image("chelsea"), sample_image("coffee")], np.zeros(2, dtype=np.int64), count_flops=False)
    assert {a.shape[1] for a in fs.groups.values()} <= {96, 192, 384, 768}, {k: a.shape for k, a in fs.groups.items()}
