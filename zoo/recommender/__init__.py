"""``zoo recommend``: feature extraction or fine-tuning depth, backbone, LRs and schedule.

Metadata mode (``samples``/``classes``) answers from rules and the catalog and loads no framework.
Data mode (``data=PATH``) measures the dataset and each candidate backbone's signals on a stratified
sample (:mod:`zoo.recommender.datamode`).
"""

from __future__ import annotations

from pathlib import Path

from zoo.recommender.plan import Plan, Reason
from zoo.recommender.rules import Request, parse_duration, recommend_metadata, similarity_level


def recommend(
    *,
    samples: int | None = None,
    classes: int | None = None,
    data: str | Path | None = None,
    candidates: list[str] | str | None = None,
    modality: str = "image",
    similarity: str | float | None = None,
    domain: str | None = None,
    shift: str | None = None,
    device: str = "cpu",
    time_budget: str | float | None = None,
    max_params: str | float | None = None,
    smallest_class: int | None = None,
    image_size: int | None = None,
    priority: str = "balanced",
    max_samples: int = 2000,
    plot: str | Path | None = None,
    rank_samples: int | None = None,
    resolution: int | None = None,
) -> Plan:
    """Recommend a transfer plan.

    Metadata mode: give ``samples`` and ``classes`` (no framework is loaded). Data mode: give
    ``data`` (an image folder with one sub-folder per class, or a CSV/JSONL with text and label
    columns); each of ``candidates`` (default: the backbones available offline) runs once over a
    stratified sample of at most ``max_samples`` items. ``similarity`` is ``high``/``medium``/``low``
    or a number in [0, 1]; ``priority`` is ``balanced``, ``accuracy`` or ``cost``. ``plot`` writes
    the picture (size x similarity plane; in data mode also the probe profile and the scores).
    ``rank_samples``: with several candidates, rank them on a stratified sub-sample of about this
    many items (default 300; 0 ranks on the whole sample). ``resolution``: images only, the side the
    plan trains at (and data mode measures at) instead of the rule's (128 px for small images, else
    the backbone's native size up to 224 on a CPU in metadata mode, and the side measured at in data
    mode: 160 px on a CPU, 224 on a GPU).

    Example:
        >>> plan = zoo.recommend(samples=1797, classes=10, domain="documents", image_size=8)
        >>> plan.strategy
        'lp-ft'
    """
    import zoo
    from zoo.catalog import parse_count
    from zoo.errors import InvalidInputError
    from zoo.recommender.rules import _check

    from zoo._args import whole

    # whole numbers, checked here so that 2.7 samples or "8" px is a one-line error, not a truncation or a TypeError
    samples, classes, smallest_class, image_size, resolution, rank_samples = (
        None if v is None else whole(name, v) for name, v in (
            ("samples", samples), ("classes", classes), ("smallest_class", smallest_class), ("image_size", image_size),
            ("resolution", resolution), ("rank_samples", rank_samples)))
    max_samples = whole("max_samples", max_samples)
    level = similarity_level(similarity)
    if plot is not None:
        _check_plot_path(plot)
    if data is not None:
        from zoo.recommender.datamode import recommend_data

        given = [name for name, value in (("samples", samples), ("classes", classes), ("smallest class", smallest_class),
                                          ("image size", image_size)) if value is not None]
        if given:  # they describe the data in metadata mode; here they are measured on it, so they would be ignored
            raise InvalidInputError(f"{', '.join(given)}: measured on --data {data}, not given with it; drop "
                                    f"{'them' if len(given) > 1 else 'it'} (or drop --data for metadata mode).")
        if isinstance(candidates, str):
            candidates = [c.strip() for c in candidates.split(",") if c.strip()]
            if not candidates:
                raise InvalidInputError("--candidates names no backbone: give ids separated by commas, or drop it for those available offline.")
        elif candidates is not None and not list(candidates):
            raise InvalidInputError("candidates is empty: give backbone ids, or None for those available offline.")
        if max_samples < 1:
            raise InvalidInputError(f"max samples {max_samples}: give how many items to measure on (a positive number; default 2000).")
        if rank_samples is not None and rank_samples < 0:
            raise InvalidInputError(f"rank samples {rank_samples}: give a sub-sample size, or 0 to rank on the whole sample.")
        # the options' one-line errors before anything loads (whether the data are images is known only once they are read)
        _check(Request(samples=2, classes=2, similarity=level, domain=domain, shift=shift, device=device, priority=priority,
                       resolution=resolution, time_budget_s=parse_duration(time_budget),
                       max_params=parse_count(max_params)))
        return recommend_data(
            data, candidates=candidates, similarity=level, domain=domain, shift=shift, device=device,
            time_budget_s=parse_duration(time_budget), max_params=parse_count(max_params), priority=priority,
            max_samples=max_samples, plot=plot, resolution=resolution,
            **({} if rank_samples is None else {"rank_samples": rank_samples}),
        )
    if samples is None or classes is None:
        raise InvalidInputError("give --samples and --classes (metadata mode) or --data PATH (data mode).")
    req = Request(
        samples=samples,
        classes=classes,
        modality=modality,
        similarity=level,
        domain=domain,
        shift=shift,
        device=device,
        time_budget_s=parse_duration(time_budget),
        max_params=parse_count(max_params),
        smallest_class=smallest_class,
        image_size=image_size,
        priority=priority,
        resolution=resolution,
    )
    plan = recommend_metadata(req, zoo.list_models(curated_only=True))
    if plot:
        from zoo.recommender.plot import plot_plan

        plot_plan(plan, plot)
    return plan


#: the picture formats ``plot`` writes (matplotlib's Agg, PDF, PS and SVG back ends)
PLOT_FORMATS = ("png", "pdf", "svg", "svgz", "eps", "ps", "jpg", "jpeg", "webp", "tif", "tiff")


def _check_plot_path(path: str | Path) -> None:
    """A ``plot`` path whose extension no back end writes: one line before anything is measured."""
    from zoo.errors import InvalidInputError

    ext = Path(path).suffix.lower().lstrip(".")
    if ext not in PLOT_FORMATS:
        raise InvalidInputError(f"--plot {path}: cannot draw a {'.' + ext if ext else 'file without an extension'}; name it .png, .pdf or .svg.")
    if Path(path).is_dir():
        raise InvalidInputError(f"--plot {path} is a folder; give a file name such as {Path(path) / 'plan.png'}.")
    blocker = next((p for p in Path(path).parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise InvalidInputError(f"--plot {path}: {blocker} is a file, so no folder can hold the picture there; pick another path.")


__all__ = ["Plan", "Reason", "Request", "recommend", "recommend_metadata", "parse_duration", "similarity_level"]
