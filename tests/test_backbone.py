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

