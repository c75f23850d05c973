"""The Backbone contract: one handle, every source.

A source plugin's loader returns a subclass of :class:`Backbone`. Framework-specific bases that
implement most of it live in :mod:`zoo.frameworks.torch` and :mod:`zoo.frameworks.keras`; a source
only supplies the model, its preprocessing and its layer groups.
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zoo._args import as_whole, real, whole
from zoo.errors import InvalidInputError, LayerGroupRangeError

if TYPE_CHECKING:
    import numpy as np

    from zoo._ids import ModelId
    from zoo.catalog import ModelCard


# the argument checks every source shares (one implementation, zoo._args): re-exported for plugins
check_whole = whole


_MISSING = object()


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], pos: int, name: str) -> Any:
    """The argument ``name`` (``pos``-th after ``self``) of a call, or ``_MISSING`` when the default applies."""
    if name in kwargs:
        return kwargs[name]
    return args[pos] if len(args) > pos else _MISSING


def _check_embed(self: Backbone, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    batch_size = _arg(args, kwargs, 1, "batch_size")
    if batch_size is not _MISSING:
        check_whole("batch_size", batch_size, 1)


def _check_predict(self: Backbone, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    top_k = _arg(args, kwargs, 1, "top_k")
    if top_k is not _MISSING:
        check_whole("top_k", top_k, 1)


def _check_with_head(self: Backbone, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    num_classes = _arg(args, kwargs, 0, "num_classes")
    if num_classes is not _MISSING:
        check_whole("num_classes", num_classes, 1)
    dropout = _arg(args, kwargs, 1, "dropout")
    if dropout is not _MISSING:
        real("dropout", dropout, 0.0, 1.0, open_high=True)
    group = _arg(args, kwargs, 2, "concat_group")
    if group is not _MISSING and group is not None and not isinstance(group, str):
        raise InvalidInputError(f"concat_group must be a layer group's name (a str) or None, got {group!r} ({type(group).__name__}).")


def _check_param_groups(self: Backbone, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    lr = _arg(args, kwargs, 0, "lr")
    if lr is not _MISSING:
        real("lr", lr, 0.0, open_low=True)
    decay = _arg(args, kwargs, 1, "decay")
    if decay is not _MISSING:
        real("decay", decay, 0.0, 1.0, open_low=True, hint="each group down gets lr * decay**depth; 1 = one lr for all.")


def _nothing_to_train(self: Backbone, out: Any) -> Any:
    if isinstance(out, list) and not out:
        n = len(self.layer_groups)
        raise InvalidInputError(
            f"{self.id}: every layer group is frozen, so param_groups has nothing to train; call unfreeze(top=k) "
            f"first (k from 1 to {n}), or give the optimizer only the new head's parameters."
        )
    return out


#: Methods of every Backbone subclass whose arguments are checked before the subclass's code runs
#: (and, for ``param_groups``, whose result is checked after): ``{name: (check_args, check_result)}``.
_CHECKED: dict[str, tuple[Callable[..., None], Callable[..., Any] | None]] = {
    "embed": (_check_embed, None),
    "predict": (_check_predict, None),
    "with_head": (_check_with_head, None),
    "param_groups": (_check_param_groups, _nothing_to_train),
}


def _checked(fn: Callable[..., Any], check: Callable[..., None], after: Callable[..., Any] | None) -> Callable[..., Any]:
    @functools.wraps(fn)
    def method(self: Backbone, *args: Any, **kwargs: Any) -> Any:
        check(self, args, kwargs)
        out = fn(self, *args, **kwargs)
        return after(self, out) if after is not None else out

    method.__zoo_checked__ = True  # type: ignore[attr-defined]
    return method


@dataclass(frozen=True)
class InputSpec:
    """What ``preprocess`` produces.

    Attributes:
        modality: ``image`` or ``text``.
        size: image side in pixels after preprocessing, or the maximum number of tokens.
        channels_last: images as NHWC (Keras) instead of NCHW (torch).
        mean, std: normalisation applied by the preprocessor, where there is one.
        input_range: value range before normalisation, e.g. ``(0.0, 1.0)``.
    """

    modality: str
    size: int | None
    channels_last: bool = False
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    input_range: tuple[float, float] | None = None


@dataclass
class LayerGroup:
    """A named slice of the model, ordered from input to output; the unit of freezing and of LR."""

    name: str
    modules: list[Any]


class Backbone(abc.ABC):
    """A pretrained model with everything needed to transfer it.

    Attributes:
        id: the parsed :class:`zoo.ModelId` it was loaded from.
        card: its :class:`zoo.ModelCard` (catalog figures), or a card built from the source's metadata.
        framework: ``"torch"`` or ``"tensorflow"``.
        model: the native model returning pooled features (torch ``nn.Module`` or Keras model).
        exif_orientation: image files and PIL images are turned upright by their EXIF orientation
            before preprocessing, because the source's own loader does so (Hugging Face: transformers'
            ``load_image`` in its pipelines, ``datasets.Image``); ``False`` (torchvision's ``pil_loader``,
            timm, ``keras.utils.load_img``, ``tf.io.decode_image``): pixels as stored.

    Arguments are checked here for every source, before a subclass's own ``embed``, ``predict``,
    ``with_head`` and ``param_groups`` run (one-line :class:`zoo.errors.InvalidInputError`):
    ``batch_size``, ``top_k`` and ``num_classes`` are whole numbers >= 1 (numpy integers count,
    bools do not); ``dropout`` is in ``[0, 1)``; ``lr`` is a finite number > 0 and ``decay`` is in
    ``(0, 1]``; and ``param_groups`` refuses to return no group (everything frozen).
    """

    framework: str = ""
    exif_orientation: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, (check, after) in _CHECKED.items():
            fn = cls.__dict__.get(name)
            if callable(fn) and not getattr(fn, "__zoo_checked__", False) and not getattr(fn, "__isabstractmethod__", False):
                setattr(cls, name, _checked(fn, check, after))

    def __init__(self, model_id: ModelId, card: ModelCard | None, model: Any) -> None:
        self.id = model_id
        self.card = card
        self.model = model

    # ---- sizes -----------------------------------------------------------------------------
    @property
    @abc.abstractmethod
    def feature_dim(self) -> int:
        """Size of the pooled feature vector that :meth:`embed` returns."""

    @property
    @abc.abstractmethod
    def input_spec(self) -> InputSpec:
        """What :meth:`preprocess` produces."""

    # ---- data ------------------------------------------------------------------------------
    @abc.abstractmethod
    def preprocess(self, inputs: Any, train: bool = False) -> Any:
        """Raw inputs (PIL images, image arrays or tensors, paths; ``str`` for text) to a native batch.

        Exactly the preprocessing the weights expect. ``train=True`` adds the source's training
        augmentation. How arrays and tensors are read (:func:`zoo.inputs.load_images`): 2-D is one
        grayscale image; 3-D is ONE image, HxWxC or CxHxW, told apart by a channel axis of 1, 3 or 4
        at the end or the front (both or neither: refused); 4-D is a batch, NxHxWxC or NxCxHxW; a
        list holds one image per item.
        """

    def _chunks(self, inputs: Any, batch_size: int) -> list[Any]:
        """Split inputs into batches: lists and 4-D arrays or tensors (a batch of images) by
        ``batch_size``; one item stays whole.

        Raises:
            InvalidInputError: an empty list or array.
        """
        if isinstance(inputs, (str, bytes)):
            return [inputs]
        shape = getattr(inputs, "shape", None)
        if shape is not None and hasattr(inputs, "dtype") and not isinstance(inputs, Sequence):
            if len(shape) != 4:  # one image (or a bad shape, which preprocess names)
                return [inputs]
        elif not isinstance(inputs, Sequence):
            return [inputs]
        if len(inputs) == 0:
            raise InvalidInputError("No inputs given: pass at least one input.")
        return [inputs[i : i + batch_size] for i in range(0, len(inputs), batch_size)]

    @abc.abstractmethod
    def embed(self, inputs: Any, batch_size: int = 32) -> np.ndarray:
        """Pooled features of ``inputs`` as a float32 numpy array ``(n, feature_dim)``.

        Eval mode, no gradient, batched. ``inputs`` as :meth:`preprocess` takes them; ``n`` is the
        number of images or texts they hold.
        """

    # ---- transfer --------------------------------------------------------------------------
    @property
    @abc.abstractmethod
    def layer_groups(self) -> Sequence[LayerGroup]:
        """Layer groups ordered from input to output (stem, stages, top)."""

    def layer_group(self, name: str) -> LayerGroup:
        """The layer group called ``name``; a one-line :class:`zoo.errors.InvalidInputError` naming the groups otherwise."""
        for g in self.layer_groups:
            if g.name == name:
                return g
        raise InvalidInputError(f"{self.id} has no layer group {name!r}; its groups are {', '.join(g.name for g in self.layer_groups)}.")

    @abc.abstractmethod
    def _set_group_trainable(self, group: LayerGroup, trainable: bool) -> None:
        """Set the trainable flag of every parameter in ``group``; BatchNorm of frozen groups stays in inference mode."""

    def freeze(self) -> Backbone:
        """Make every layer group non-trainable. Returns ``self``."""
        for g in self.layer_groups:
            self._set_group_trainable(g, False)
        return self

    def unfreeze(self, top: int | None = None) -> Backbone:
        """Make the top ``top`` layer groups trainable and the rest frozen; ``None`` unfreezes all.

        Raises:
            InvalidInputError: ``top`` is not a whole number (a numpy integer is; a bool, a float
                or a string is not).
            LayerGroupRangeError: ``top`` is outside ``0..len(layer_groups)``.
        """
        groups = list(self.layer_groups)
        n = len(groups)
        if top is None:
            k = n
        else:
            k = as_whole(top)
            if k is None:
                raise InvalidInputError(
                    f"unfreeze(top={top!r}): top must be a whole number of layer groups from 0 to {n} "
                    f"(or None for all), not a {type(top).__name__}."
                )
        if not 0 <= k <= n:
            raise LayerGroupRangeError(k, n)
        top = k
        for i, g in enumerate(groups):
            self._set_group_trainable(g, i >= n - top)
        return self

    @abc.abstractmethod
    def trainable_parameter_count(self) -> int:
        """Number of trainable scalar parameters in the backbone (head excluded)."""

    @abc.abstractmethod
    def param_groups(self, lr: float, decay: float = 1.0) -> list[dict[str, Any]]:
        """Optimizer parameter groups with discriminative learning rates.

        The top group gets ``lr``, the one below ``lr * decay``, and so on (ULMFiT / layer decay).
        Only trainable parameters are included; the head of :meth:`with_head` is not (give the
        optimizer its parameters separately).

        Raises:
            InvalidInputError: ``lr`` is not a finite number > 0, ``decay`` is not in ``(0, 1]``,
                or every layer group is frozen (nothing to train: ``unfreeze(top=k)`` first).
        """

    @abc.abstractmethod
    def with_head(self, num_classes: int, dropout: float = 0.0, concat_group: str | None = None) -> Any:
        """Backbone + pooling + a new linear head, as a native model of the framework.

        ``concat_group``: the name of a layer group whose pooled output the head also reads,
        concatenated ahead of the final features (lp-concat); ``None``: the final features only.
        ``num_classes`` is a whole number >= 1 and ``dropout`` is in ``[0, 1)``.
        """

    @property
    def source_head(self) -> Any | None:
        """The pre-training head (ImageNet classifier, MLM, LM) where one exists, else ``None``."""
        return None

    def predict(self, inputs: Any, top_k: int = 5) -> list[list[tuple[str, float]]]:
        """Top-k labels of the pre-training head for each input (``top_k``: a whole number >= 1).

        Raises:
            NoHeadError: the backbone has no pre-training head (a ``NotImplementedError``).
        """
        from zoo.errors import NoHeadError

        _check_predict(self, (inputs, top_k), {})
        raise NoHeadError(str(self.id))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} framework={self.framework} feature_dim={self.feature_dim}>"
