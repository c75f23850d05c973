"""Work-arounds for the framework stack, in one place."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import re
import sys
import tempfile
import warnings
from typing import Any


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


class _TritonAfterTensorFlow(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Refuses ``import triton`` once TensorFlow is loaded and Triton is not (see :func:`guard_triton`)."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "triton" or "tensorflow" not in sys.modules or "triton" in sys.modules:
            return None
        return importlib.machinery.ModuleSpec(name, self)  # find_spec() probes still see the installed package

    def create_module(self, spec: Any) -> Any:
        warnings.warn(
            "TensorFlow was imported before torch's Triton; Triton crashes the process when it loads after TensorFlow, "
            "so zoo keeps it out of this one (torch runs without it: no torch.compile on a GPU); "
            "to keep it, import torchvision (or triton) before tensorflow.",
            RuntimeWarning,
            stacklevel=2,
        )
        raise ImportError("triton is not loaded after TensorFlow in one process (zoo._compat.guard_triton)", name="triton")

    def exec_module(self, module: Any) -> None:  # pragma: no cover - create_module always raises
        raise ImportError("triton", name="triton")


def guard_triton() -> None:
    """Keep Triton out of a process that loaded TensorFlow first, instead of crashing it (idempotent).

    Triton's native library (imported by torchvision, timm and transformers through ``torch._dynamo``) segfaults
    when it loads after TensorFlow's (the same LLVM clash :func:`prepare_tensorflow` avoids by loading Triton first).
    When TensorFlow came first (``import tensorflow`` before ``import zoo``, or before zoo loaded a torch model),
    ``import triton`` then raises ``ImportError``: torch treats Triton as absent (a CPU wheel's set-up) and runs
    eagerly, and a ``RuntimeWarning`` says how to keep it. Installed by ``import zoo``; it checks at each import,
    so every order of ``import zoo`` / ``import tensorflow`` is covered. A no-op for a process that loaded Triton
    first or never loads TensorFlow.
    """
    if not any(isinstance(f, _TritonAfterTensorFlow) for f in sys.meta_path):
        sys.meta_path.insert(0, _TritonAfterTensorFlow())


# TensorFlow's native start-up log. The lines written before absl's logging is initialised (one
# banner, then INFO lines from each of its two shared libraries) ignore TF_CPP_MIN_LOG_LEVEL in
# TF 2.21; on a machine without a CUDA driver the first device query adds an error-level line.
_TF_NOISE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$"
    r"|I\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\] "  # an INFO line in absl's format
    r"|E\d{4} .*\] failed call to cuInit: "  # no CUDA driver: TensorFlow runs on the CPU, as zoo reports
    r"|To enable the following instructions: .* rebuild TensorFlow"  # second line of the CPU-feature INFO
)


def tensorflow_noise(line: str) -> bool:
    """True for a line of TensorFlow's native start-up log that :func:`import_tensorflow` drops."""
    return bool(_TF_NOISE.match(line))


def import_tensorflow() -> Any:
    """``import tensorflow`` (after :func:`prepare_tensorflow`) without TensorFlow's native start-up log.

    Importing TensorFlow 2.21 writes about ten lines straight to file descriptor 2 (absl's
    pre-initialisation banner, oneDNN and CUDA-stub INFO lines, a CPU-feature note) and the first
    device query on a machine without a CUDA driver adds a ``failed call to cuInit`` error line.
    They came before every one-line error zoo prints for a Keras or TF Hub id. Descriptor 2 is
    captured while TensorFlow imports and queries its devices; afterwards every captured line is
    written back to ``sys.stderr`` except those (:func:`tensorflow_noise`). TF_CPP_MIN_LOG_LEVEL
    defaults to 1 (INFO off, warnings and errors kept); set ``TF_CPP_MIN_LOG_LEVEL=0`` to see the
    whole log, nothing captured. Returns the ``tensorflow`` module.
    """
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    prepare_tensorflow()
    saved = None
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") != "0":  # 0: the whole log, nothing captured
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):  # no descriptor 2 (a service), or a closed stderr
            pass
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    if saved is None:
        import tensorflow

        return tensorflow
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        try:
            import tensorflow

            try:
                tensorflow.config.list_physical_devices("GPU")  # the cuInit line comes now, not at the first op
            except Exception:  # noqa: BLE001 - a device query that fails here fails again, loudly, at the first op
                pass
        finally:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            log.seek(0)
            kept = [ln for ln in log.read().decode("utf-8", "replace").splitlines() if not tensorflow_noise(ln)]
            if kept:
                print("\n".join(kept), file=sys.stderr)
    return tensorflow
