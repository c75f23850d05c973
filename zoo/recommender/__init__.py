"""``zoo recommend``: feature extraction or fine-tuning depth, backbone, LRs and schedule."""

from __future__ import annotations

from typing import Any

from zoo.recommender.plan import Plan, Reason
from zoo.recommender.rules import Request, parse_duration, recommend_metadata


def recommend(
    *,
    samples: int,
    classes: int,
    modality: str = "image",
    similarity: str | None = None,
    domain: str | None = None,
    shift: str | None = None,
    device: str = "cpu",
    time_budget: str | float | None = None,
    max_params: str | float | None = None,
    smallest_class: int | None = None,
    image_size: int | None = None,
) -> Plan:
    """Recommend a transfer plan from the task's metadata (no framework is loaded).

    Example:
        >>> plan = zoo.recommend(samples=1797, classes=10, domain="documents", image_size=8)
        >>> plan.strategy
        'lp-ft'
    """
    import zoo
    from zoo.catalog import parse_count

    req = Request(
        samples=int(samples),
        classes=int(classes),
        modality=modality,
        similarity=similarity,
        domain=domain,
        shift=shift,
        device=device,
        time_budget_s=parse_duration(time_budget),
        max_params=parse_count(max_params),
        smallest_class=smallest_class,
        image_size=image_size,
    )
    return recommend_metadata(req, zoo.list_models(curated_only=True))


__all__ = ["Plan", "Reason", "Request", "recommend", "recommend_metadata", "parse_duration"]
