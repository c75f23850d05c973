"""Work-arounds for the framework stack, in one place."""

from __future__ import annotations

import importlib.util
import sys


def prepare_tensorflow() -> None:
    """Call before the first ``import tensorflow`` / ``import keras`` in a process.

    TensorFlow 2.21 loads its bundled LLVM with global symbols; torch's Triton (shipped with CUDA
    builds of torch, imported by ``torchvision``) loaded afterwards in the same process then
    segfaults. Loading Triton first avoids the clash, so a process that uses both a torch source
    and a Keras / TF Hub source (the recommender comparing candidates, a test run) is safe in
    either order. A no-op when TensorFlow is already loaded or Triton is not installed.
    """
    if "tensorflow" in sys.modules or "triton" in sys.modules:
        return
    try:
        if importlib.util.find_spec("triton") is None:
            return
        import triton  # noqa: F401
    except Exception:  # noqa: BLE001 - a broken triton must not stop TensorFlow users
        pass
