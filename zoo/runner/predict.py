"""Reload a ``zoo run`` folder as a classifier, predict with it, export it (TorchScript, ONNX, SavedModel).

The model is rebuilt offline from the run folder alone: the backbone through ``zoo.load`` (the
run's ``model/config.json`` names it), a linear head of the run's class count, the trained weights
from ``model/model.safetensors``, and the run's own eval preprocessing at the run's resolution
(bicubic resize of the shorter side, centre crop, the backbone's normalisation) — exactly what
stage 1 embedded and stage 2 evaluated. Keras / TF Hub runs (``framework: tensorflow`` in the
config) come back as :class:`zoo.runner.keras_model.KerasRunModel` (``model/model.weights.h5``,
the same interface, SavedModel export).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from zoo._io import atomic_write
from zoo.errors import InvalidInputError

CONFIG = Path("model") / "config.json"
WEIGHTS = Path("model") / "model.safetensors"
EXPORT_FORMATS = ("torchscript", "onnx", "savedmodel")
EXPORT_NAMES = {"torchscript": "model.torchscript.pt", "onnx": "model.onnx", "savedmodel": "savedmodel"}  # default outputs, in RUN/model/
EXPORT_TOLERANCE = 1e-5
ONNX_TOLERANCE = 1e-4  # onnxruntime fuses and reorders float32 ops: a few ulps more than TorchScript


def is_run_dir(path: str | Path) -> bool:
    """Whether ``path`` is a folder holding a ``zoo run`` model (``model/config.json``)."""
    p = Path(path)
    return p.is_dir() and (p / CONFIG).is_file()


class RunModelBase:
    """What a trained run offers whatever its framework: ``classes``, ``preprocess``, ``logits``,
    ``predict``, ``example_batch``, ``export``. Subclasses: :class:`RunModel` (torch),
    :class:`zoo.runner.keras_model.KerasRunModel` (Keras / TF Hub)."""

    def __init__(self, run_dir: Path, config: dict[str, Any], backbone: Any, model: Any) -> None:
        self.run_dir = run_dir
        self.config = config
        self.backbone = backbone
        self.model = model
        self.classes: list[str] = [str(c) for c in config["classes"]]
        self.modality: str = config.get("modality", "image")
        self.resolution: int | None = (config.get("preprocessor") or {}).get("resolution")

    @staticmethod
    def _items(inputs: Any, batch_size: int = 1) -> list[Any]:
        """``inputs`` as a non-empty list (one input or a list/tuple of them)."""
        items = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        if batch_size < 1:
            raise InvalidInputError(f"batch_size must be at least 1, got {batch_size}.")
        if not items:
            raise InvalidInputError("No inputs given: pass at least one input.")
        return items

    def logits(self, inputs: Any, batch_size: int = 32) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def predict(self, inputs: Any, top_k: int = 5) -> list[list[tuple[str, float]]]:
        """Top-``top_k`` ``(class name, probability)`` per input, most likely first."""
        import numpy as np

        if top_k < 1:
            raise InvalidInputError(f"top_k must be at least 1, got {top_k}.")
        z = np.asarray(self.logits(inputs), dtype=np.float64)
        p = np.exp(z - z.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        out = []
        for row in p:
            idx = np.argsort(-row, kind="stable")[: min(top_k, len(row))]
            out.append([(self.classes[i], float(row[i])) for i in idx])
        return out

    def example_batch(self, n: int = 2, seed: int = 0) -> Any:
        """``n`` preprocessed synthetic images (seeded noise) at the run's resolution, for tracing and export checks."""
        import numpy as np
        from PIL import Image

        if self.modality != "image":
            raise InvalidInputError(f"{self.run_dir}: example_batch makes images; this run is {self.modality} (its export is checked on the sentences of zoo.runner.text_export).")
        rng = np.random.default_rng(seed)
        side = int(self.resolution or 224)
        return self.preprocess([Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)) for _ in range(n)])

    def preprocess(self, inputs: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


class RunModel(RunModelBase):
    """A trained torch run: ``model`` (``ClassifierModel``, eval mode), its ``classes`` and preprocessing.

    Build it with :func:`load_run`.
    """

    def __init__(self, run_dir: Path, config: dict[str, Any], backbone: Any, model: Any) -> None:
        super().__init__(run_dir, config, backbone, model)
        self._transform = _image_transform(config["preprocessor"]) if self.modality == "image" else None

    @property
    def device(self) -> Any:
        """Where the model's weights are."""
        return next(self.model.parameters()).device

    def preprocess(self, inputs: Any) -> Any:
        """The run's eval preprocessing: images (paths, PIL, arrays) -> ``(N, 3, R, R)``; texts -> tokenizer dict."""
        import torch

        items = self._items(inputs)
        if self._transform is None:
            return self.backbone.preprocess(items)
        from zoo.inputs import load_images_for

        return torch.stack([self._transform(im.convert("RGB")) for im in load_images_for(self.backbone, items)])

    def logits(self, inputs: Any, batch_size: int = 32) -> Any:
        """Raw ``(N, num_classes)`` float logits of ``inputs`` (on the CPU)."""
        import torch

        from zoo.frameworks.torch import call_model, move

        items = self._items(inputs, batch_size)
        if self.modality == "text":
            check_texts(items)  # all of them before the first batch runs
        self.model.eval()
        outs = []
        with torch.inference_mode():
            for i in range(0, len(items), batch_size):
                batch = move(self.preprocess(items[i : i + batch_size]), self.device)
                outs.append(call_model(self.model, batch).float().cpu())
        return torch.cat(outs)

    # ---- export ----------------------------------------------------------------------------------
    def export(self, fmt: str, out: str | Path | None = None) -> Path:
        """Write the classifier as ``fmt`` (``torchscript`` or ``onnx``) to ``out`` (default
        ``RUN/model/model.torchscript.pt`` or ``RUN/model/model.onnx``) and return the file's path.

        An image run's export takes the preprocessed ``(N, 3, R, R)`` batch (see ``model/config.json``) and returns
        logits. A text run's takes the tokenizer's tensors, ``input_ids``, ``attention_mask`` and (BERT family)
        ``token_type_ids``, in that order, each ``(batch, sequence)`` with both axes dynamic; the tokenizer's files are
        written beside it (``AutoTokenizer.from_pretrained(folder)``, its ``model_max_length`` the run's ``max_length``).
        The export is checked against the eager model (TorchScript to 1e-5, ONNX in onnxruntime to 1e-4, times the
        logits' scale) on several batch sizes (images: seeded noise; texts: real sentences, padded, longer than the
        trace's and alone) before anything is renamed into place; a failed or mismatching export leaves nothing behind.

        Raises:
            InvalidInputError: an unknown format, ``savedmodel`` (for Keras runs), ONNX
                without the ``onnx`` package, or an export that does not match the model.
        """
        if fmt not in EXPORT_FORMATS:
            raise InvalidInputError(f"Unknown export format {fmt!r}: use one of {', '.join(EXPORT_FORMATS)}.")
        if fmt == "savedmodel":
            raise InvalidInputError("savedmodel export is for Keras runs (a torch run to SavedModel is not supported yet); use --format torchscript (or onnx) for this torch run.")
        if fmt == "onnx":
            try:
                import onnx  # noqa: F401
                import onnxruntime  # noqa: F401  (the export is run once before it is kept)
                import onnxscript  # noqa: F401  (torch.onnx's exporter)
            except ImportError:
                raise InvalidInputError("ONNX export needs onnx, onnxscript and onnxruntime, which are not all installed: run `pip install onnx onnxscript onnxruntime` (or zoo-hub[onnx]).") from None
        path = Path(out) if out is not None else self.run_dir / "model" / EXPORT_NAMES[fmt]
        writer = self._torchscript if fmt == "torchscript" else self._onnx
        if self.modality == "text":
            return self._export_text(writer, path)
        checks = [(self.example_batch(2).to(self.device),), (self.example_batch(3, seed=1).to(self.device),)]  # the second: another batch size
        return atomic_write(path, lambda tmp: writer(self.model, checks, ("pixel_values",), self.config, tmp))

    def export_inputs(self) -> tuple[str, ...]:
        """The exported model's inputs, in order: ``pixel_values`` for an image run; for a text run the tokenizer's
        ``input_ids``, ``attention_mask`` and (BERT family) ``token_type_ids``.

        Raises:
            InvalidInputError: a text run whose tokenizer gives other tensors (the export does not take them).
        """
        if self.modality != "text":
            return ("pixel_values",)
        from zoo.runner import text_export

        return text_export.input_names(self.run_dir, self.preprocess(list(text_export.SENTENCES[0])))

    def _export_text(self, writer: Any, path: Path) -> Path:
        """The export of a text run and its tokenizer's files, staged in a temporary folder beside ``path`` and renamed
        into place once the export matches the model (the tokenizer's files first, the model last)."""
        import os
        import shutil

        from zoo._io import owned_temp
        from zoo.runner import text_export

        names = self.export_inputs()
        module = text_export.TextClassifier(self.model, names).eval()
        config = dict(self.config, inputs=list(names))  # the inputs' order travels with the file
        if path.is_dir():
            raise InvalidInputError(f"{path} is a folder; give a file name (e.g. {path / EXPORT_NAMES['onnx' if writer == self._onnx else 'torchscript']}).")
        path.parent.mkdir(parents=True, exist_ok=True)
        staged = owned_temp(path.parent, path.name, ".tmp", directory=True)  # a killed export's is removed by the next one
        try:
            files = text_export.save_tokenizer(self.backbone.tokenizer, staged, (self.config.get("preprocessor") or {}).get("max_length"))
            if path.name in files:
                raise InvalidInputError(f"{path}: the tokenizer writes a file of that name beside the export; pass another -o (e.g. {path.with_name(EXPORT_NAMES['onnx'])}).")
            writer(module, text_export.batches(self, names), names, config, staged / path.name)
            os.chmod(staged / path.name, 0o644)
            for name in (*files, path.name):  # on disk before the renames make them visible, as atomic_write does
                with open(staged / name, "rb") as fh:
                    os.fsync(fh.fileno())
            for name in files:
                os.replace(staged / name, path.parent / name)
            os.replace(staged / path.name, path)
        finally:
            shutil.rmtree(staged, ignore_errors=True)
        return path

    def _check(self, got: Any, want: Any, what: str, tolerance: float = EXPORT_TOLERANCE) -> None:
        """``tolerance`` is relative to the logits' scale (their largest magnitude, at least 1): float32 rounding grows with
        the values, so a head with logits near 100 (DenseNet) differs by ~1e-4 in onnxruntime through no fault of the export."""
        want = want.float().cpu()
        diff = float((got.float().cpu() - want).abs().max())
        bound = tolerance * max(1.0, float(want.abs().max()))
        if not diff <= bound:
            raise InvalidInputError(f"{self.run_dir}: the {what} export differs from the model by {diff:.2e} (> {bound:.2g}); not written.")

    def _torchscript(self, module: Any, checks: list[tuple[Any, ...]], names: tuple[str, ...], config: dict[str, Any], tmp: Path) -> None:
        """Trace ``module`` on ``checks[0]`` (a tuple of its inputs ``names``), check the trace on every batch of ``checks``, save it to ``tmp``."""
        import torch

        self.model.eval()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit")  # deprecated, still the TorchScript API
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # transformers' Python-side shape checks: the checks below decide
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\.")  # deprecated attributes the tracer reads
            import logging

            disabled = logging.root.manager.disable
            try:
                logging.disable(logging.WARNING)  # transformers logs the attributes the tracer reads ("loss_type=None ... unrecognized")
                traced = torch.jit.trace(module, checks[0], check_trace=False)
            except Exception as exc:  # noqa: BLE001 - one line, not torch's traceback
                from zoo.errors import exc_line

                what = "texts" if self.modality == "text" else "images at the run's resolution"
                raise InvalidInputError(f"{self.run_dir}: TorchScript tracing failed on a batch of {len(checks[0][0])} {what} ({exc_line(exc)}); not written.") from None
            finally:
                logging.disable(disabled)
            for batch in checks:  # other batch sizes (and sequence lengths): the trace must generalise
                self._check(traced(*batch), module(*batch), "TorchScript", EXPORT_TOLERANCE)
            extra = {"config.json": json.dumps(config, indent=2)}
            torch.jit.save(traced, str(tmp), _extra_files=extra)

    def _onnx(self, module: Any, checks: list[tuple[Any, ...]], names: tuple[str, ...], config: dict[str, Any], tmp: Path) -> None:
        """Export ``module`` with ``checks[0]`` (a tuple of its inputs ``names``; axis 0, and axis 1 of a text run's, dynamic) to ``tmp``, then run
        every batch of ``checks`` in onnxruntime against the model."""
        import onnx
        import torch

        from zoo.errors import exc_line

        self.model.eval()
        axes = {0: "batch", 1: "sequence"} if self.modality == "text" else {0: "batch"}
        io = {"input_names": list(names), "output_names": ["logits"]}
        import logging

        disabled = logging.root.manager.disable
        try:
            logging.disable(logging.CRITICAL)  # torch.export logs the tracebacks of what it fails on; a failure is said below, in one line
            dims = {i: torch.export.Dim(label) for i, label in axes.items()}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.export's notes on the dynamic shapes' names and transformers' Python-side checks
                torch.onnx.export(module, checks[0], str(tmp), **io, dynamic_shapes=tuple(dims for _ in names), external_data=False, verbose=False)
        except Exception as exc:  # noqa: BLE001 - the dynamo exporter cannot take some models (Hugging Face Swin)
            # torch.onnx's former fallback=True: the TorchScript-based exporter, its batch axis named dynamic
            tmp.unlink(missing_ok=True)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # deprecated, still torch.onnx's documented exporter for what dynamo refuses
                    torch.onnx.export(module, checks[0], str(tmp), **io, dynamo=False,
                                      dynamic_axes={**{n: axes for n in names}, "logits": {0: "batch"}})
            except Exception as legacy:  # noqa: BLE001 - one line, not torch's traceback
                raise InvalidInputError(f"{self.run_dir}: torch.onnx cannot export this model ({exc_line(exc.__cause__ or exc)}; "
                                        f"the TorchScript-based exporter: {exc_line(legacy)}); not written.") from None
        finally:
            logging.disable(disabled)
        proto = onnx.load(str(tmp))
        entry = proto.metadata_props.add()  # the classes and preprocessing travel inside the file, as TorchScript's extra file
        entry.key, entry.value = "config.json", json.dumps(config, indent=2)
        onnx.save(proto, str(tmp))
        onnx.checker.check_model(str(tmp))
        import onnxruntime as ort

        sess = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        with torch.no_grad():
            for batch in checks:  # other batch sizes (and sequence lengths): the axes must be dynamic
                got = torch.as_tensor(sess.run(["logits"], {n: x.cpu().numpy() for n, x in zip(names, batch)})[0])
                self._check(got, module(*batch), "ONNX", ONNX_TOLERANCE)


def check_texts(texts: list[Any]) -> None:
    """Refuse an empty (or blank) text given to a text run: it would get a class all the same, one that says nothing
    of any text (the run skipped such rows when it trained).

    Raises:
        InvalidInputError: the first blank text, by its position.
    """
    for i, t in enumerate(texts):
        if isinstance(t, str) and not t.strip():
            raise InvalidInputError(f"input #{i} is {'empty' if not t else 'only blanks'}: a text run classifies text; pass the text itself.")


def _image_transform(pre: dict[str, Any]) -> Any:
    from torchvision import transforms as T

    res = int(pre["resolution"])
    steps = [T.Resize(res, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(res), T.ToTensor()]
    if pre.get("mean") is not None and pre.get("std") is not None:
        steps.append(T.Normalize(pre["mean"], pre["std"]))
    return T.Compose(steps)


def run_modality(run_dir: str | Path) -> str | None:
    """The modality a run folder's config records, read without loading the model (None: unreadable or absent;
    :func:`load_run` says what is wrong)."""
    try:
        modality = json.loads((Path(run_dir) / CONFIG).read_text(encoding="utf-8")).get("modality")
    except (OSError, ValueError, AttributeError):
        return None
    return modality if isinstance(modality, str) else None


def check_exportable(run_dir: str | Path, fmt: str | None = None) -> None:
    """Refuse, before any model loads, what ``export`` cannot write: a modality other than image and text, a text run
    as a SavedModel (text runs are torch runs); other problems are left to :func:`load_run` and ``export``."""
    modality = run_modality(run_dir)
    if modality not in (None, "image", "text"):
        raise InvalidInputError(f"{run_dir}: export supports image and text runs; this run is {modality} (serve it with `zoo predict {run_dir} INPUT`).")
    if modality == "text" and fmt == "savedmodel":
        raise InvalidInputError(f"{run_dir}: savedmodel export is for Keras runs; use --format torchscript (or onnx) for this text run.")


def load_run(run_dir: str | Path, device: str | None = None) -> Any:
    """Rebuild the trained classifier of a ``zoo run`` folder, offline.

    Args:
        run_dir: the run folder (``zoo run --out``).
        device: where to put the model (default the CPU).

    Returns:
        :class:`RunModel` (torch runs) or :class:`zoo.runner.keras_model.KerasRunModel` (Keras / TF Hub
        runs), each with ``.predict(inputs, top_k)``, ``.logits(inputs)`` and ``.export(fmt, out)``.

    Raises:
        InvalidInputError: ``run_dir`` is not a run folder, or its model is missing or unreadable.

    Example:
        >>> m = load_run("runs/digits")                      # doctest: +SKIP
        >>> m.predict(["digits/3/0003.png"], top_k=1)         # doctest: +SKIP
        [[('3', 0.98)]]
    """
    import zoo

    run_dir = Path(run_dir)
    if not is_run_dir(run_dir):
        raise InvalidInputError(f"{run_dir}: not a run folder (no {CONFIG.as_posix()}); pass the --out folder of a finished `zoo run`.")
    try:
        config = json.loads((run_dir / CONFIG).read_text(encoding="utf-8"))
        classes, num_classes, backbone_id = config["classes"], int(config["num_classes"]), config["backbone"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidInputError(f"{run_dir / CONFIG}: unreadable run config ({exc}); rerun `zoo run`.") from None
    if len(classes) != num_classes:
        raise InvalidInputError(f"{run_dir / CONFIG}: {len(classes)} class names for {num_classes} classes; rerun `zoo run`.")
    framework = config.get("framework", "torch")
    if framework == "tensorflow":
        from zoo.runner.keras_model import load_keras_run

        if device is not None:
            raise InvalidInputError(f"{run_dir}: a Keras run places itself (tf.device); leave device unset.")
        return load_keras_run(run_dir, config, zoo.load(backbone_id))
    if framework != "torch":
        raise InvalidInputError(f"{run_dir / CONFIG}: unknown framework {framework!r}; rerun `zoo run`.")
    weights = run_dir / WEIGHTS
    if not weights.is_file():
        raise InvalidInputError(f"{weights}: missing; the run did not finish stage 1, rerun `zoo run` (or --resume).")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    backbone = zoo.load(backbone_id)
    concat = config.get("concat_group")  # lp-concat: the head also reads this group's pooled output
    model = backbone.with_head(num_classes, concat_group=concat) if concat else backbone.with_head(num_classes)
    try:
        state = load_file(str(weights))
        model.load_state_dict(state)
    except (SafetensorError, RuntimeError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidInputError(f"{weights}: cannot load the trained model ({first}); rerun `zoo run`.") from None
    if device is not None:
        model.to(device)
    model.eval()
    return RunModel(run_dir, config, backbone, model)
