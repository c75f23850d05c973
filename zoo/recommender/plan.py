"""The Plan: what ``zoo recommend`` writes and ``zoo run`` executes as is. Typed and versioned."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import math
import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Strategy = Literal["linear-probe", "lp-concat", "lp-ft", "full-finetune", "surgical", "head-only"]
PLAN_VERSION = 1
SELECTOR = re.compile(r"(top|early)-[1-9][0-9]*|middle|all")  # what ``unfreeze`` (and ``lr``'s group keys) may name
Side = Annotated[int, Field(gt=0)]  # an image side in pixels


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Reason(_Frozen):
    """One line of the rationale, with where the rule comes from."""

    text: str
    source: str


class Optimizer(_Frozen):
    name: Literal["sgd", "adamw"]
    momentum: float | None = Field(default=None, ge=0, lt=1)  # SGD's (Nesterov when above 0); AdamW's betas are fixed
    weight_decay: float = Field(default=0.0, ge=0, allow_inf_nan=False)  # on weight matrices and kernels; none on biases and norm weights

    @model_validator(mode="after")
    def _momentum_is_sgds(self) -> Optimizer:
        if self.name != "sgd" and self.momentum is not None:
            raise ValueError(f"optimizer.momentum ({self.momentum}) applies to sgd only (adamw's betas are fixed at 0.9, 0.999); remove it or set name: sgd")
        return self


class Schedule(_Frozen):
    stage1: Literal["lbfgs-logreg"] = "lbfgs-logreg"
    epochs: int = Field(ge=0)
    batch_size: int = Field(gt=0)
    steps: int = Field(ge=0)  # the recommender's estimate (its sample size / batch x epochs); zoo run counts its own
    warmup_frac: float = Field(ge=0, le=1)
    decay: Literal["cosine", "constant"] = "cosine"
    gradual_unfreeze: bool = False
    early_stop_patience: int = Field(ge=0)


class Augment(_Frozen):
    random_resized_crop: bool
    hflip: bool
    trivial_augment: bool
    crop_scale: tuple[float, float] = (0.35, 1.0)  # RandomResizedCrop's area range, when on
    mixup: float = Field(default=0.0, ge=0, allow_inf_nan=False)  # the Beta(a, a) of mixup; 0: off
    label_smoothing: float = Field(default=0.0, ge=0, lt=1)
    resolution: Side | None = None  # the plan's resolution, repeated (zoo run trains and evaluates at Plan.resolution)

    @field_validator("crop_scale")
    @classmethod
    def _scale(cls, value: tuple[float, float]) -> tuple[float, float]:
        lo, hi = value
        if not (0 < lo <= hi <= 1):
            raise ValueError(f"crop_scale must be (min, max) with 0 < min <= max <= 1, got ({lo}, {hi})")
        return value


class Cost(_Frozen):
    device: Literal["cpu", "gpu"]
    stage1_seconds: float
    stage2_seconds: float
    total_seconds: float
    flops: float


class Plan(_Frozen):
    """A transfer-learning plan.

    ``unfreeze`` selects layer groups by position: ``top-i`` is the i-th group from the output,
    ``early-i`` the i-th from the input, ``middle`` the middle third, ``all`` every group. ``lr``
    maps ``head`` and each selected group to a learning rate (``middle`` / ``all``: the rate of the
    selection's top group, x ``lr_decay`` per group below it); ``lr_decay`` extends it to groups the
    plan could not name (per group further from the head). ``signals`` holds what was measured or
    given; ``rationale`` says why, each line with its source. ``features`` (data mode) is the
    ``.npz`` feature cache of the chosen backbone on the sample, which ``zoo run`` reuses for its
    stage-1 probe.

    What ``zoo run`` reads: ``modality``, ``backbone``, ``strategy`` (a probe, lp-concat, or fine-tuning of
    ``unfreeze``), ``unfreeze``, ``lr``, ``lr_decay``, ``optimizer``, ``schedule`` (except ``steps``), ``augment``,
    ``bn`` and ``resolution``; a value it cannot honour is refused in one line. ``schedule.steps``,
    ``expected_cost``, ``signals``, ``rationale``, ``alternatives`` and ``features`` record what the recommender
    estimated or measured: a run derives its steps from the data and the batch size, and finds the feature cache
    by backbone, data and preprocessing, so editing them changes nothing.
    """

    version: Literal[1] = PLAN_VERSION
    modality: Literal["image", "text"]
    backbone: str
    alternatives: list[str] = []
    strategy: Strategy
    unfreeze: list[str]
    lr: dict[str, float]
    lr_decay: float = Field(gt=0, le=1)
    optimizer: Optimizer
    schedule: Schedule
    augment: Augment
    bn: Literal["frozen-stats", "train"]
    resolution: Side | None
    expected_cost: Cost
    signals: dict[str, Any]
    rationale: list[Reason]
    features: str | None = None  # data mode: the chosen backbone's feature cache (zoo.recommender.features)

    @field_validator("unfreeze")
    @classmethod
    def _selectors(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if not SELECTOR.fullmatch(v)]
        if bad:
            raise ValueError(f"unknown layer-group selector(s) {', '.join(map(repr, bad))}: use top-i, early-i (i from 1), middle or all")
        return value

    @field_validator("lr")
    @classmethod
    def _rates(cls, value: dict[str, float]) -> dict[str, float]:
        if "head" not in value:
            raise ValueError("needs a 'head' learning rate")
        bad = [k for k, v in value.items() if not (math.isfinite(v) and v > 0)]
        if bad:
            raise ValueError(f"learning rates must be finite and above 0 ({', '.join(f'{k}: {value[k]}' for k in bad)})")
        unknown = [k for k in value if k != "head" and not SELECTOR.fullmatch(k)]
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(map(repr, unknown))}: use head, top-i, early-i, middle or all")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Plan:
        a = self.augment
        if self.modality == "text":
            image_only = [f"augment.{k}" for k in ("random_resized_crop", "hflip", "trivial_augment") if getattr(a, k)]
            image_only += ["augment.mixup"] * (a.mixup > 0) + [f"{p}resolution" for p, r in (("", self.resolution), ("augment.", a.resolution)) if r is not None]
            if image_only:
                raise ValueError(f"{', '.join(image_only)}: image settings, but the plan is for text; set them to false / 0 / null")
        elif a.resolution is not None and a.resolution != self.resolution:
            raise ValueError(f"augment.resolution ({a.resolution}) differs from resolution ({self.resolution}), which zoo run trains and evaluates at; "
                             "make them equal or set augment.resolution: null")
        return self

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def write(self, path: str | Path) -> Path:
        """Write YAML (``.yaml``/``.yml``) or JSON atomically."""
        from zoo._io import atomic_write_text

        path = Path(path)
        return atomic_write_text(path, self.model_dump_json(indent=2) if path.suffix == ".json" else self.to_yaml())

    @classmethod
    def read(cls, path: str | Path) -> Plan:
        """Read a plan written by :meth:`write` (YAML or JSON)."""
        import yaml

        from zoo.errors import InvalidInputError

        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise InvalidInputError(f"{path}: cannot read the plan ({exc.strerror or exc}); write one with `zoo recommend -o {path.name}`.") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise InvalidInputError(f"{path}: not valid YAML ({what}{where}); fix that line or regenerate the plan with `zoo recommend -o {path.name}`.") from None
        return cls.parse(data, where=str(path), fix=f"`zoo recommend -o {path.name}`")

    @classmethod
    def parse(cls, data: Any, *, where: str = "the plan", fix: str = "`zoo recommend -o plan.yaml`") -> Plan:
        """A plan from its dict (what :meth:`write` wrote, parsed); a one-line error naming the first bad field."""
        from pydantic import ValidationError

        from zoo.errors import InvalidInputError

        if not isinstance(data, dict) or data.get("version") != PLAN_VERSION:
            raise InvalidInputError(f"{where}: not a version-{PLAN_VERSION} zoo plan; regenerate it with {fix}.")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "the plan"
            msg = str(first["msg"]).removeprefix("Value error, ")
            more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
            raise InvalidInputError(f"{where}: {field}: {msg}{more}; fix it or regenerate the plan with {fix}.") from None
