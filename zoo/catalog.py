"""The catalog: typed model cards, ``registry.yaml`` validation with file:line errors, and queries."""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from zoo._ids import parse_id
from zoo.errors import CatalogError, InvalidInputError, UnknownFilterValueError

Modality = Literal["image", "text"]
Framework = Literal["torch", "tensorflow"]
Task = Literal[
    "image-classification",
    "image-feature-extraction",
    "feature-extraction",
    "fill-mask",
    "text-generation",
    "sentence-similarity",
    "text-classification",
]
MODALITIES: tuple[str, ...] = ("image", "text")
TASKS: tuple[str, ...] = Task.__args__  # type: ignore[attr-defined]

REGISTRY_PATH = Path(__file__).with_name("registry.yaml")


class ModelCard(BaseModel):
    """One catalog entry. Figures come from the source's own metadata; unknown is ``None``.

    Attributes:
        id: full id with the weights tag, ``source:name[.tag]``.
        family: model family, lower case (``resnet``, ``efficientnet``, ``bert``, ``gpt2``...).
        modality: ``image`` or ``text``.
        framework: ``torch`` or ``tensorflow``.
        tasks: what the pretrained weights can do as shipped.
        params: parameter count of the pretrained model as the source reports it.
        gflops: GFLOPs (multiply-adds x 2 where the source reports GMACs) at ``input_size``.
        input_size: image side in pixels, or the maximum sequence length for text.
        feature_dim: size of the pooled feature vector.
        top1: top-1 accuracy in percent on ``top1_dataset``.
        pretrain_data: what the weights were trained on.
        license: weights license as the source states it.
        layer_groups: number of layer groups the handle exposes (stem, stages, top).
        input_range: value range the model expects before its own normalisation, e.g. ``[0, 1]``.
        mean, std: normalisation constants the source publishes, if any.
        url: where the weights live (hub repo, TF Hub handle, weights URL).
        description: one line for humans and for ``zoo search``.
        default: these are the source's default weights for a bare ``source:name`` id.
        origin: who contributed the entry: ``registry`` for curated ones, else the plugin name.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    family: str
    modality: Modality
    framework: Framework
    tasks: tuple[Task, ...] = ()
    params: int | None = Field(default=None, ge=0)
    gflops: float | None = Field(default=None, ge=0)
    input_size: int | None = Field(default=None, gt=0)
    feature_dim: int | None = Field(default=None, gt=0)
    top1: float | None = Field(default=None, ge=0, le=100)
    top1_dataset: str | None = None
    pretrain_data: str | None = None
    license: str | None = None
    layer_groups: int | None = Field(default=None, gt=0)
    input_range: tuple[float, float] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    url: str | None = None
    description: str | None = None
    default: bool = False
    origin: str = "registry"

    @field_validator("id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        mid = parse_id(value, tagged=not value.startswith("hf:"))
        if mid.revision:
            raise ValueError("catalog ids carry no @revision; pin revisions in zoo.lock")
        return value

    @field_validator("family")
    @classmethod
    def _lower_family(cls, value: str) -> str:
        if value != value.lower() or not value:
            raise ValueError("family must be non-empty lower case")
        return value

    @property
    def source(self) -> str:
        return self.id.split(":", 1)[0]

    def summary(self) -> dict[str, Any]:
        """The card as a plain dict for JSON output."""
        return self.model_dump(mode="json")


class SourceInfo(BaseModel):
    """A source the catalog knows about, with the install line for its plugin."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    framework: Framework
    install: str
    description: str = ""


class RegistryFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1]
    sources: dict[str, SourceInfo]
    models: list[ModelCard]


# --------------------------------------------------------------------------------------------
# loading with file:line errors


def _yaml():
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml, loader


def _line_index(text: str) -> tuple[dict[tuple, int], list[str | None]]:
    """Map YAML paths (as tuples) to 1-based line numbers; also return each model's id."""
    yaml, loader = _yaml()
    lines: dict[tuple, int] = {}
    ids: list[str | None] = []
    try:
        root = yaml.compose(text, Loader=loader)
    except yaml.YAMLError:
        return lines, ids

    def walk(node: Any, path: tuple) -> None:
        lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                lines[path + (key.value,)] = key.start_mark.line + 1
                walk(value, path + (key.value,))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, path + (i,))

    if root is not None:
        walk(root, ())
        for key, value in getattr(root, "value", []):
            if key.value == "models" and isinstance(value, yaml.SequenceNode):
                for item in value.value:
                    found = None
                    if isinstance(item, yaml.MappingNode):
                        for k, v in item.value:
                            if k.value == "id" and isinstance(v, yaml.ScalarNode):
                                found = v.value
                    ids.append(found)
    return lines, ids


def _describe(path: Path, text: str, err: ValidationError) -> list[str]:
    lines, ids = _line_index(text)
    problems = []
    for e in err.errors():
        loc = tuple(e["loc"])
        line = None
        for cut in range(len(loc), -1, -1):
            if loc[:cut] in lines:
                line = lines[loc[:cut]]
                break
        where = f"{path.name}:{line}" if line else path.name
        if len(loc) >= 2 and loc[0] == "models" and isinstance(loc[1], int):
            entry_id = ids[loc[1]] if loc[1] < len(ids) else None
            field = ".".join(str(p) for p in loc[2:]) or "(entry)"
            label = f"models[{loc[1]}] (id={entry_id or '?'}) -> {field}"
        else:
            label = ".".join(str(p) for p in loc) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown field; remove it or fix its spelling"
        problems.append(f"{where} {label}: {msg}")
    return problems


def read_registry(path: str | Path = REGISTRY_PATH) -> RegistryFile:
    """Read and validate a catalog file.

    Raises:
        CatalogError: with one ``file:line models[i] (id=...) -> field: message`` per problem.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogError([f"{path}: cannot read ({exc.strerror})"]) from exc
    yaml, loader = _yaml()
    try:
        data = yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path.name}:{mark.line + 1}" if mark else path.name
        raise CatalogError([f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})"]) from exc
    try:
        reg = RegistryFile.model_validate(data)
    except ValidationError as exc:
        raise CatalogError(_describe(path, text, exc)) from None
    seen: dict[str, int] = {}
    lines, _ = _line_index(text) if len({m.id for m in reg.models}) != len(reg.models) else ({}, [])
    dupes = []
    for i, m in enumerate(reg.models):
        if m.id in seen:
            line = lines.get(("models", i), "?")
            dupes.append(f"{path.name}:{line} models[{i}] (id={m.id}) -> id: duplicate of models[{seen[m.id]}]")
        seen.setdefault(m.id, i)
        if m.source not in reg.sources:
            line = _line_index(text)[0].get(("models", i, "id"), "?")
            dupes.append(
                f"{path.name}:{line} models[{i}] (id={m.id}) -> id: source {m.source!r} is not declared under "
                f"'sources:' ({', '.join(sorted(reg.sources))})"
            )
    if dupes:
        raise CatalogError(dupes)
    return reg


# --------------------------------------------------------------------------------------------
# queries


def _check(field: str, value: str | None, valid: Iterable[str]) -> None:
    valid = set(valid)
    if value is not None and value not in valid:
        raise UnknownFilterValueError(field, value, sorted(valid))


def filter_cards(
    cards: Sequence[ModelCard],
    *,
    source: str | None = None,
    modality: str | None = None,
    task: str | None = None,
    family: str | None = None,
    max_params: float | None = None,
    max_gflops: float | None = None,
    min_top1: float | None = None,
    pattern: str | None = None,
    valid_sources: Iterable[str] | None = None,
) -> list[ModelCard]:
    """Cards matching every given filter (filters compose with AND).

    Numeric filters drop cards whose figure is unknown. ``pattern`` is a glob on the id, case
    insensitive (``timm:resnet*``, ``*bert*``).

    Raises:
        UnknownFilterValueError: a source, modality, task or family that no card has.
    """
    _check("source", source, valid_sources if valid_sources is not None else {c.source for c in cards})
    _check("modality", modality, MODALITIES)
    _check("task", task, TASKS)
    if family is not None:
        family = family.lower()
        _check("family", family, {c.family for c in cards})
    for name, value in (("max_params", max_params), ("max_gflops", max_gflops), ("min_top1", min_top1)):
        if value is not None and (not isinstance(value, (int, float)) or math.isnan(value) or value < 0):
            raise UnknownFilterValueError(name, str(value), ["a non-negative number"])
    pat = pattern.lower() if pattern else None
    if pat and ":" in pat and not any(ch in pat.split(":", 1)[0] for ch in "*?[]"):
        # a pattern naming its source (``timm:resnet*``): a typo there would list nothing without a word
        _check("source", pat.split(":", 1)[0], valid_sources if valid_sources is not None else {c.source for c in cards})
    out = []
    for c in cards:
        if source and c.source != source:
            continue
        if modality and c.modality != modality:
            continue
        if task and task not in c.tasks:
            continue
        if family and c.family != family:
            continue
        if max_params is not None and (c.params is None or c.params > max_params):
            continue
        if max_gflops is not None and (c.gflops is None or c.gflops > max_gflops):
            continue
        if min_top1 is not None and (c.top1 is None or c.top1 < min_top1):
            continue
        if pat and not fnmatch.fnmatchcase(c.id.lower(), pat if ("*" in pat or "?" in pat or "[" in pat) else f"*{pat}*"):
            continue
        out.append(c)
    return out


def search_cards(cards: Sequence[ModelCard], text: str, limit: int | None = None) -> list[ModelCard]:
    """Cards whose id, family, description, tasks or pre-training data contain every word of ``text``.

    Ranked: exact id or name match first, then matches in the id, then curated before dynamic,
    then by fewer parameters.
    """
    if not isinstance(text, str):
        raise InvalidInputError(f"search text must be a string, got {type(text).__name__}.")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise InvalidInputError(f"limit must be a whole number of at least 0 (0 or None: no limit), got {limit!r}.")
    words = [w for w in text.lower().replace(":", " ").split() if w]
    if not words:
        return []
    scored = []
    for c in cards:
        idl = c.id.lower()
        hay = " ".join(
            [idl, c.family, c.description or "", " ".join(c.tasks), c.pretrain_data or "", c.modality]
        ).lower()
        if not all(w in hay for w in words):
            continue
        name = idl.split(":", 1)[-1]
        score = 0
        if text.lower() in (idl, name) or name.split(".")[0] == text.lower():
            score -= 100
        score -= sum(10 for w in words if w in idl)
        score -= 5 if c.family in words else 0
        score -= 3 if c.origin == "registry" else 0
        scored.append((score, c.params if c.params is not None else 10**12, c.id, c))
    scored.sort(key=lambda t: t[:3])
    out = [t[3] for t in scored]
    return out[:limit] if limit else out


def parse_count(text: str | float | int | None) -> float | None:
    """Parse ``10M``, ``1.5B``, ``300k`` or a plain number into a float."""
    if text is None or isinstance(text, (int, float)):
        return text
    t = str(text).strip().lower().replace("_", "")
    mult = {"k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9}.get(t[-1:], 1.0)
    if t[-1:] in "kmbg":
        t = t[:-1]
    try:
        return float(t) * mult
    except ValueError:
        raise UnknownFilterValueError("count", str(text), ["a number like 25M, 1.5B or 300k"]) from None


def merge(curated: Iterable[ModelCard], dynamic: Mapping[str, ModelCard]) -> dict[str, ModelCard]:
    """Curated entries take precedence over plugin entries with the same id.

    A figure the curated entry leaves unknown (``null``) is filled from the plugin's entry, and the
    plugin's ``default`` flag is kept.
    """
    out = dict(dynamic)
    for c in curated:
        plugin_card = dynamic.get(c.id)
        if plugin_card is not None:
            # figures the curator left unknown are taken from the source's own metadata
            fill = {k: v for k, v in plugin_card if getattr(c, k) is None and v is not None}
            if plugin_card.default and not c.default:
                fill["default"] = True  # the source knows its default weights
            if fill:
                c = c.model_copy(update=fill)
        out[c.id] = c
    return out
