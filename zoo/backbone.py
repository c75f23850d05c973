"""The Backbone contract: one handle, every source.

A source plugin's loader returns a subclass of :class:`Backbone`. Framework-specific bases that
implement most of it live in :mod:`zoo.frameworks.torch` and :mod:`zoo.frameworks.keras`; a source
only supplies the model, its preprocessing and its layer groups.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zoo.errors import LayerGroupRangeError

if TYPE_CHECKING:
    import numpy as np

    from zoo._ids import ModelId
    from zoo.catalog import ModelCard


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
    """

    framework: str = ""

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
        """Raw inputs (PIL images, uint8 HWC arrays, paths; ``str`` for text) to a native batch.

        Exactly the preprocessing the weights expect. ``train=True`` adds the source's training
        augmentation.
        """

    def _chunks(self, inputs: Any, batch_size: int) -> list[Any]:
        """Split inputs into batches: lists and NHWC arrays by ``batch_size``; one item stays whole.

        Raises:
            InvalidInputError: an empty list or array.
        """
        import numpy as np

        from zoo.errors import InvalidInputError

        if isinstance(inputs, (str, bytes)) or not isinstance(inputs, (Sequence, np.ndarray)):
            return [inputs]
        if isinstance(inputs, np.ndarray) and inputs.ndim != 4:
            return [inputs]
        if len(inputs) == 0:
            raise InvalidInputError("No inputs given: pass at least one input.")
        return [inputs[i : i + batch_size] for i in range(0, len(inputs), batch_size)]

    @abc.abstractmethod
    def embed(self, inputs: Any, batch_size: int = 32) -> np.ndarray:
        """Pooled features of ``inputs`` as a float32 numpy array ``(n, feature_dim)``.

        Eval mode, no gradient, batched.
        """

    # ---- transfer --------------------------------------------------------------------------
    @property
    @abc.abstractmethod
    def layer_groups(self) -> Sequence[LayerGroup]:
        """Layer groups ordered from input to output (stem, stages, top)."""

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
            LayerGroupRangeError: ``top`` is outside ``0..len(layer_groups)``.
        """
        groups = list(self.layer_groups)
        n = len(groups)
        if top is None:
            top = n
        if isinstance(top, bool) or not isinstance(top, int) or not 0 <= top <= n:
            raise LayerGroupRangeError(top, n)
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
        Only trainable parameters are included.
        """

    @abc.abstractmethod
    def with_head(self, num_classes: int, dropout: float = 0.0, concat_group: str | None = None) -> Any:
        """Backbone + pooling + a new linear head, as a native model of the framework.

        ``concat_group``: the name of a layer group whose pooled output the head also reads,
        concatenated ahead of the final features (lp-concat); ``None``: the final features only.
        """

    @property
    def source_head(self) -> Any | None:
        """The pre-training head (ImageNet classifier, MLM, LM) where one exists, else ``None``."""
        return None

    def predict(self, inputs: Any, top_k: int = 5) -> list[list[tuple[str, float]]]:
        """Top-k labels of the pre-training head for each input.

        Raises:
            NoHeadError: the backbone has no pre-training head (a ``NotImplementedError``).
        """
        from zoo.errors import NoHeadError

        raise NoHeadError(str(self.id))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} framework={self.framework} feature_dim={self.feature_dim}>"
