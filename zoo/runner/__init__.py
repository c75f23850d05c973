"""``zoo run``: execute a recommended plan (stage 1 linear probe on cached features, stage 2 LP-FT).

Torch sources on Hugging Face Accelerate; checkpoints each epoch (safetensors), ``resume=True``
continues exactly. Importing this package loads no framework; :func:`run` does.
"""

from __future__ import annotations

from typing import Any


def run(plan: Any, data: Any, **options: Any) -> Any:
    """Execute ``plan`` on ``data``; see :func:`zoo.runner.pipeline.run` for the options.

    Example:
        >>> zoo.run("plan.yaml", "digits/", out="runs/digits", epochs=3)   # doctest: +SKIP
    """
    from zoo.runner.pipeline import run as _run

    return _run(plan, data, **options)


__all__ = ["run"]
