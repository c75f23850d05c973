from pathlib import Path

import numpy as np
import pytest

import zoo
from zoo.errors import InvalidInputError

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "example_plugin"


@pytest.fixture
def backbone(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    import zoo_example

    zoo.reset(extra_plugins={"example": zoo_example})
    return zoo.load("example:tinycnn.random")


def test_nhwc_array_batches_are_split_and_match(backbone):
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, size=(5, 40, 40, 3), dtype=np.uint8)
    chunks = backbone._chunks(batch, 2)
    assert [len(c) for c in chunks] == [2, 2, 1]
    whole = backbone.embed(batch, batch_size=2)
    one_by_one = np.concatenate([backbone.embed(img) for img in batch])
    assert whole.shape == (5, backbone.feature_dim)
    np.testing.assert_allclose(whole, one_by_one, rtol=1e-5, atol=1e-5)


def test_single_items_and_empty(backbone):
    img = np.zeros((32, 32, 3), np.uint8)
    assert backbone.embed(img).shape == (1, backbone.feature_dim)
    with pytest.raises(InvalidInputError):
        backbone.embed(np.zeros((0, 32, 32, 3), np.uint8))
    with pytest.raises(InvalidInputError, match="batch_size"):
        backbone.embed([img], batch_size=0)



def _one_line(exc_info):
    text = str(exc_info.value)
    assert text and "\n" not in text, text
    return text


def test_one_array_is_one_image_whatever_its_layout(backbone):
    """A 3-D array or tensor is ONE image: CxHxW (numpy or torch) gives the same row as HxWxC."""
    import torch

    rng = np.random.default_rng(1)
    hwc = rng.integers(0, 256, size=(40, 50, 3), dtype=np.uint8)
    chw = np.ascontiguousarray(hwc.transpose(2, 0, 1))
    want = backbone.embed(hwc)
    assert want.shape == (1, backbone.feature_dim)
    for one in (chw, torch.from_numpy(hwc), torch.from_numpy(chw), torch.from_numpy(chw).float() / 255.0):
        got = backbone.embed(one)
        assert got.shape == (1, backbone.feature_dim), type(one)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # a 4-D tensor is a batch, split by batch_size like a numpy one
    batch = torch.from_numpy(np.stack([chw, chw[:, ::-1].copy(), chw]))
    assert [len(c) for c in backbone._chunks(batch, 2)] == [2, 1]
    np.testing.assert_allclose(backbone.embed(batch, batch_size=2), backbone.embed(list(batch)), rtol=1e-5, atol=1e-5)
    with pytest.raises(InvalidInputError, match="ambiguous") as info:
        backbone.embed(np.zeros((3, 40, 3), np.uint8))
    _one_line(info)


@pytest.mark.parametrize(
    "bad",
    [np.zeros((0, 0, 3), np.uint8), np.full((8, 8, 3), np.nan, np.float32), np.array([[None]]), ""],
    ids=["0x0", "nan", "object", "empty-string"],
)
def test_bad_images_get_one_line(backbone, bad):
    with pytest.raises(InvalidInputError) as info:
        backbone.embed(bad)
    assert "folder" not in _one_line(info)


@pytest.mark.parametrize("bad", [0, -1, 2.5, None, "2", True])
def test_whole_number_arguments(backbone, bad):
    img = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(InvalidInputError, match="batch_size") as info:
        backbone.embed(img, batch_size=bad)
    _one_line(info)
    with pytest.raises(InvalidInputError, match="top_k") as info:
        backbone.predict(img, top_k=bad)
    _one_line(info)
    with pytest.raises(InvalidInputError, match="num_classes") as info:
        backbone.with_head(bad)
    _one_line(info)


def test_numpy_integers_count_as_whole_numbers(backbone):
    img = np.zeros((32, 32, 3), np.uint8)
    assert backbone.embed([img] * 3, batch_size=np.int64(2)).shape == (3, backbone.feature_dim)
    assert backbone.with_head(np.int64(3)).head.out_features == 3
    n = len(backbone.layer_groups)
    backbone.freeze().unfreeze(np.int64(1))
    assert backbone.trainable_parameter_count() > 0
    assert len(backbone.param_groups(np.float64(1e-3), decay=np.float32(0.5))) == 1
    for bad in ("1", 1.5, True):
        with pytest.raises(InvalidInputError, match="whole number") as info:
            backbone.unfreeze(bad)
        assert f"from 0 to {n}" in _one_line(info)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lr": -1e-3}, "lr"), ({"lr": 0}, "lr"), ({"lr": float("nan")}, "lr"), ({"lr": float("inf")}, "lr"),
        ({"lr": "1e-3"}, "lr"), ({"lr": None}, "lr"),
        ({"lr": 1e-3, "decay": -0.5}, "decay"), ({"lr": 1e-3, "decay": 0}, "decay"),
        ({"lr": 1e-3, "decay": 2.0}, "decay"), ({"lr": 1e-3, "decay": float("nan")}, "decay"),
    ],
)
def test_param_groups_arguments(backbone, kwargs, match):
    backbone.freeze().unfreeze(top=2)
    with pytest.raises(InvalidInputError, match=match) as info:
        backbone.param_groups(**kwargs)
    _one_line(info)


def test_param_groups_of_a_frozen_backbone_says_to_unfreeze(backbone):
    backbone.freeze()
    with pytest.raises(InvalidInputError, match=r"unfreeze\(top=k\)") as info:
        backbone.param_groups(1e-3)
    _one_line(info)
    backbone.unfreeze(top=1)
    assert [g["lr"] for g in backbone.param_groups(1e-3, decay=1.0)] == [1e-3]


@pytest.mark.parametrize("dropout", [-0.1, 1.0, 1.5, float("nan"), "0.1", None])
def test_with_head_dropout(backbone, dropout):
    with pytest.raises(InvalidInputError, match="dropout") as info:
        backbone.with_head(3, dropout=dropout)
    _one_line(info)


def test_features_takes_a_preprocessed_batch(backbone):
    import torch

    img = np.zeros((32, 32, 3), np.uint8)
    for raw in (img, img[None], [img], torch.zeros(1, 32, 32, 3, dtype=torch.uint8)):
        with pytest.raises(InvalidInputError, match=r"preprocess\(\)") as info:
            backbone.features(raw)
        _one_line(info)
    with torch.no_grad():
        assert tuple(backbone.features(backbone.preprocess([img])).shape) == (1, backbone.feature_dim)
