"""Trust policy: pickles that would run code are refused before they run; remote code needs a pin and an allow."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torchvision.models as tvm

import zoo
from zoo.cache.errors import TrustError
from zoo.cache.trust import check_remote_code, check_torch_hub_repo, prefer_safetensors, safe_torch_load
from zoo.errors import InvalidInputError

RESNET18 = tvm.ResNet18_Weights.IMAGENET1K_V1


class Payload:
    """Unpickling this creates ``marker``: what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture
def only(zoo_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    def use(names: str) -> None:
        monkeypatch.setenv("ZOO_PLUGINS", names)
        zoo.reset()

    yield use
    zoo.reset()


def test_planted_pickle_in_the_cache_is_refused_and_never_runs(only, tmp_path: Path, no_network: None) -> None:
    only("torchvision")
    marker = tmp_path / "pwned"
    path = Path(os.environ["TORCH_HOME"]) / "hub" / "checkpoints" / os.path.basename(RESNET18.url)
    path.parent.mkdir(parents=True)
    sd = tvm.resnet18(weights=None).state_dict()
    torch.save({**sd, "x": Payload(marker)}, path)
    with pytest.raises(InvalidInputError, match="weights_only=True"):
        zoo.load("torchvision:resnet18.IMAGENET1K_V1")
    with pytest.raises(TrustError, match="safetensors"):
        safe_torch_load(path)
    assert not marker.exists()
    # the same file unpickled the unsafe way proves the payload is real
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_safetensors_twin_is_preferred(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    marker = tmp_path / "pwned"
    torch.save({"w": torch.ones(2), "x": Payload(marker)}, tmp_path / "model.bin")
    save_file({"w": torch.full((2,), 3.0)}, str(tmp_path / "model.safetensors"))
    assert torch.equal(safe_torch_load(tmp_path / "model.bin")["w"], torch.full((2,), 3.0))
    assert not marker.exists()
    assert prefer_safetensors(["pytorch_model.bin", "model.safetensors"]) == ["model.safetensors"]
    assert prefer_safetensors(["pytorch_model.bin", "README.md"]) == ["pytorch_model.bin"]


def test_damaged_safetensors_is_one_line_not_a_safetensors_traceback(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from zoo.cache.trust import safetensors_problem

    good = tmp_path / "model.safetensors"
    save_file({"w": torch.arange(100000, dtype=torch.float32)}, str(good))
    assert safetensors_problem(good) is None
    raw = good.read_bytes()
    cut, garbled = tmp_path / "cut.safetensors", tmp_path / "garbled.safetensors"
    cut.write_bytes(raw[: len(raw) // 2])
    garbled.write_bytes(raw[:20] + b"GARBAGE" * 4 + raw[48:])
    for bad, what in ((cut, "cut off"), (garbled, "garbled")):
        assert what in (safetensors_problem(bad) or "")
        with pytest.raises(InvalidInputError) as exc:
            safe_torch_load(bad)
        text = str(exc.value)
        assert "\n" not in text and str(bad) in text and what in text and "zoo cache verify --repair" in text
    bin_path = tmp_path / "cut.bin"  # the twin of a .bin is checked the same way
    torch.save({"w": torch.ones(2)}, bin_path)
    with pytest.raises(InvalidInputError, match="cut off"):
        safe_torch_load(bin_path)


def test_remote_code_needs_pin_and_allow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZOO_TRUST_REMOTE_CODE", raising=False)
    unpinned = zoo.parse_id("hf:org/custom-model", tagged=False)
    pinned = zoo.parse_id("hf:org/custom-model@0123abcd", tagged=False)
    with pytest.raises(TrustError, match=r"pinned: load hf:org/custom-model@<commit> and set ZOO_TRUST_REMOTE_CODE=hf:org/custom-model"):
        check_remote_code(unpinned)
    with pytest.raises(TrustError, match="set ZOO_TRUST_REMOTE_CODE=hf:org/custom-model"):
        check_remote_code(pinned)
    monkeypatch.setenv("ZOO_TRUST_REMOTE_CODE", "hf:other/model, hf:org/custom-model")
    check_remote_code(pinned)
    with pytest.raises(TrustError, match="pinned"):
        check_remote_code(unpinned)  # allowed but not pinned: still refused
    monkeypatch.setenv("ZOO_TRUST_REMOTE_CODE", "1")
    check_remote_code(pinned)
    check_remote_code("hf:any/model@v2")


def test_torch_hub_repos_need_pin_and_allow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZOO_TRUST_REMOTE_CODE", raising=False)
    with pytest.raises(TrustError, match="pinned"):
        check_torch_hub_repo("facebookresearch/dinov2")
    with pytest.raises(TrustError, match="ZOO_TRUST_REMOTE_CODE=torchhub:facebookresearch/dinov2"):
        check_torch_hub_repo("facebookresearch/dinov2:v1.0")
    monkeypatch.setenv("ZOO_TRUST_REMOTE_CODE", "torchhub:facebookresearch/dinov2")
    check_torch_hub_repo("facebookresearch/dinov2:v1.0")


def _custom_code_repo(folder: Path, marker: Path) -> Path:
    """A model directory whose config needs the repo's own Python code (which creates ``marker``)."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(
        '{"model_type": "zoo-custom", "auto_map": {"AutoConfig": "configuration_custom.CustomConfig"}}'
    )
    (folder / "configuration_custom.py").write_text(
        "from pathlib import Path\n"
        "from transformers import PretrainedConfig\n"
        f"Path({str(marker)!r}).touch()\n"
        "class CustomConfig(PretrainedConfig):\n"
        "    model_type = 'zoo-custom'\n"
    )
    return folder


def test_hf_remote_code_model_refused_unless_allowed_and_pinned(only, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: None) -> None:
    only("hf")
    monkeypatch.delenv("ZOO_TRUST_REMOTE_CODE", raising=False)
    marker = tmp_path / "ran"
    repo = _custom_code_repo(tmp_path / "custom", marker)
    with pytest.raises(TrustError, match="ZOO_TRUST_REMOTE_CODE"):
        zoo.load("hf:org/custom", path=repo, trust_remote_code=True)
    with pytest.raises(TrustError, match="is not allowed"):
        zoo.load("hf:org/custom@0123abc", path=repo, trust_remote_code=True)
    with pytest.raises(Exception):  # noqa: B017 - without trust, transformers itself will not run the code
        zoo.load("hf:org/custom", path=repo)
    assert not marker.exists()
    monkeypatch.setenv("ZOO_TRUST_REMOTE_CODE", "hf:org/custom")
    with pytest.raises(Exception):  # noqa: B017 - the config has no model class zoo can use
        zoo.load("hf:org/custom@0123abc", path=repo, trust_remote_code=True)
    assert marker.exists()  # pinned and allowed: the repo's code did run
