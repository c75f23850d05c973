"""Loader and Backbone handles for Hugging Face transformers models (PyTorch classes).

``load(model_id, card, *, pooling=None, max_length=None, path=None, normalize=None)`` finds the
repo's files (``path=``, a ``zoo_resolve_weights`` answer, or HF's cache / a download), reads its
config and builds one of:

* :class:`HFVisionBackbone` (ViT, ConvNeXt, ResNet, Swin, ...): ``AutoImageProcessor`` + the base
  model; the ImageNet classifier is the source head where the checkpoint has one.
* :class:`HFTextBackbone` (BERT family and GPT family): ``AutoTokenizer`` + the base model with
  ``cls`` / ``mean`` / ``max`` / ``last`` pooling; the masked-LM or causal-LM head is the source head.
"""

from __future__ import annotations

import contextvars
import json
import random
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from zoo.backbone import InputSpec, LayerGroup
from zoo.catalog import ModelCard
from zoo.errors import InvalidInputError
from zoo.frameworks.torch import TorchBackbone, move
from zoo.inputs import load_images, load_texts

from zoo_hf._hub import locate, repo_of

#: True only inside a load whose id passed :func:`zoo.cache.trust.check_remote_code`.
_TRUST: contextvars.ContextVar[bool] = contextvars.ContextVar("zoo_hf_trust_remote_code", default=False)
from zoo_hf._modules import (
    TEXT_POOLINGS,
    VISION_POOLINGS,
    TextEncoder,
    VisionEncoder,
    drop_unused_pooler,
    layer_groups,
)

#: Vision types whose image classifier reads the first token of the final-normed sequence.
CLS_VISION = {"vit", "deit"}
#: Vision types whose ``classifier`` maps exactly the pooled features zoo returns to logits.
HEAD_VISION = {"vit", "deit", "convnext", "convnextv2", "resnet", "regnet", "swin", "swinv2", "mobilenet_v2", "efficientnet"}
_CAUSAL_ARCH = ("LMHeadModel", "ForCausalLM")
_MLM_ARCH = ("ForMaskedLM", "ForPreTraining")


def load(
    model_id: Any,
    card: ModelCard | None,
    *,
    pooling: str | None = None,
    max_length: int | None = None,
    path: str | Path | None = None,
    normalize: bool | None = None,
    trust_remote_code: bool = False,
    **options: Any,
) -> TorchBackbone:
    """Load ``hf:<org>/<repo>[@revision]`` as a zoo Backbone.

    Args:
        model_id: the parsed id; ``@revision`` pins a commit, branch or tag of the repo.
        card: its catalog card, or ``None`` for a repo the catalog does not list.
        pooling: text ``cls`` | ``mean`` | ``max`` | ``last`` (default: the sentence-transformers
            pooling config when the repo has one, ``last`` for GPT-style models, else ``cls``; a
            sentence-transformers pipeline zoo does not reproduce, such as a Dense projection or
            weighted-mean pooling, is refused unless ``pooling`` is given);
            vision ``pooler`` | ``cls`` | ``mean`` (default: what the model's classifier reads).
        max_length: token limit for text (default: the model's own limit); longer texts are
            truncated with a warning.
        path: a local model directory to load instead of the Hub cache.
        normalize: L2-normalise text features (default: when the repo's sentence-transformers
            ``modules.json`` has a Normalize step).
        trust_remote_code: run the repo's own modelling code; refused unless the id is pinned
            (``@<commit>``) and allowed by ``ZOO_TRUST_REMOTE_CODE`` (a comma list of ids, or 1).

    Raises:
        NotCachedError: offline and the repo is not in HF's cache.
        InvalidInputError: an unknown option or pooling, or a model zoo cannot handle.

    Example:
        >>> bb = zoo.load("hf:sentence-transformers/all-MiniLM-L6-v2")   # doctest: +SKIP
        >>> bb.embed(["A cat.", "A dog."]).shape                          # doctest: +SKIP
        (2, 384)
    """
    if trust_remote_code:
        from zoo.cache.trust import check_remote_code

        check_remote_code(model_id)  # pinned to a revision and allowed by ZOO_TRUST_REMOTE_CODE, else refused
    token = _TRUST.set(bool(trust_remote_code))
    try:
        return _load(model_id, card, pooling, max_length, path, normalize, options)
    finally:
        _TRUST.reset(token)


def _load(model_id: Any, card: ModelCard | None, pooling: str | None, max_length: int | None, path: Any, normalize: bool | None, options: dict[str, Any]) -> TorchBackbone:
    if options:
        raise InvalidInputError(
            f"Unknown option(s) for hf: {', '.join(sorted(options))}; valid: pooling, max_length, path, normalize."
        )
    from transformers import AutoConfig

    folder = locate(model_id, card, path)
    config = AutoConfig.from_pretrained(folder, trust_remote_code=_TRUST.get())
    if _is_vision(config):
        if max_length is not None or normalize is not None:
            raise InvalidInputError(f"{model_id} is a vision model: max_length and normalize apply to text models only.")
        return _load_vision(model_id, card, folder, config, pooling)
    return _load_text(model_id, card, folder, config, pooling, max_length, normalize)


def _is_vision(config: Any) -> bool:
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_MAPPING_NAMES

    if config.model_type in MODEL_FOR_IMAGE_MAPPING_NAMES:
        return True
    return getattr(config, "num_channels", None) is not None and not hasattr(config, "vocab_size")


def _from_pretrained(cls: Any, folder: Path) -> tuple[Any, list[str]]:
    from transformers.utils import logging as hf_logging

    # the files are on disk (zoo downloads through huggingface_hub first): transformers 5's per-tensor
    # "Loading weights" bar would only print a line of noise before zoo's output, in milliseconds
    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model, info = cls.from_pretrained(
            folder, trust_remote_code=_TRUST.get(), dtype=torch.float32, output_loading_info=True
        )
    finally:
        if was_on:
            hf_logging.enable_progress_bar()
    return model, list(info.get("missing_keys", ()))


def _split(task_model: nn.Module, missing: list[str]) -> tuple[nn.Module, nn.Module | None]:
    """(base model, task model if its head was really in the checkpoint else None)."""
    base = task_model.base_model
    prefix = task_model.base_model_prefix + "."
    head_missing = [k for k in missing if not k.startswith(prefix)]
    return base, (None if head_missing else task_model)


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _card(model_id: Any, card: ModelCard | None, config: Any, modality: str, tasks: tuple[str, ...], **figures: Any) -> ModelCard:
    if card is not None:
        return card
    repo = repo_of(model_id)
    return ModelCard(
        id=f"hf:{repo}",
        family=str(config.model_type).lower(),
        modality=modality,
        framework="torch",
        tasks=tasks,
        url=f"https://huggingface.co/{repo}",
        origin="hf",
        **figures,
    )


# ---- vision -----------------------------------------------------------------------------------


def _processor_size(processor: Any) -> int | None:
    """The side of the images the processor makes: its crop size when it crops, else its resize size."""
    cropping = getattr(processor, "do_center_crop", None) is not False
    for attr in ("crop_size", "size") if cropping else ("size",):
        size = getattr(processor, attr, None)
        if isinstance(size, int):
            return size
        for key in ("height", "shortest_edge", "width"):
            value = size.get(key) if isinstance(size, dict) else getattr(size, key, None)
            if value:
                return int(value)
    return None


def _load_vision(model_id: Any, card: ModelCard | None, folder: Path, config: Any, pooling: str | None) -> HFVisionBackbone:
    from transformers import AutoImageProcessor, AutoModel, AutoModelForImageClassification

    kind = config.model_type
    default = "cls" if kind in CLS_VISION else "pooler"
    pooling = pooling or default
    if pooling not in VISION_POOLINGS:
        raise InvalidInputError(f"pooling {pooling!r} is not one of {', '.join(VISION_POOLINGS)} for vision models.")
    if pooling == "cls" and getattr(config, "hidden_sizes", None):
        raise InvalidInputError(f"{model_id} is a convolutional model with no class token: use pooling='pooler' or 'mean'.")
    head = labels = None
    archs = list(getattr(config, "architectures", None) or [])
    if any(a.endswith("ForImageClassification") for a in archs):
        task_model, missing = _from_pretrained(AutoModelForImageClassification, folder)
        base, task = _split(task_model, missing)
        classifier = getattr(task_model, "classifier", None)
        if task is not None and kind in HEAD_VISION and pooling == default and isinstance(classifier, nn.Module):
            head = classifier
            labels = [str(config.id2label.get(i, i)) for i in range(config.num_labels)]
    else:
        base, _ = _from_pretrained(AutoModel, folder)
    if pooling != "pooler":
        drop_unused_pooler(base)
    processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=_TRUST.get())
    model = VisionEncoder(base, pooling).eval()
    size = _processor_size(processor) or getattr(config, "image_size", None)
    size = int(size[0] if isinstance(size, (list, tuple)) else size) if size else None
    hidden = getattr(config, "hidden_sizes", None)
    if pooling in ("pooler", "mean") and hidden:
        dim = int(hidden[-1])
    elif getattr(config, "hidden_size", None):
        dim = int(config.hidden_size)
    else:
        with torch.inference_mode():
            dim = int(model(torch.zeros(1, config.num_channels, size or 224, size or 224)).shape[-1])
    rescale = getattr(processor, "rescale_factor", None)
    spec = InputSpec(
        "image",
        size,
        mean=tuple(float(v) for v in processor.image_mean) if getattr(processor, "image_mean", None) else None,
        std=tuple(float(v) for v in processor.image_std) if getattr(processor, "image_std", None) else None,
        input_range=(0.0, 1.0) if rescale and abs(float(rescale) - 1 / 255) < 1e-9 else None,
    )
    groups = layer_groups(base)
    tasks = ("image-classification", "image-feature-extraction") if head is not None else ("image-feature-extraction",)
    card = _card(model_id, card, config, "image", tasks, params=_count(base), feature_dim=dim, input_size=size, layer_groups=len(groups))
    return HFVisionBackbone(model_id, card, model, processor=processor, groups=groups, feature_dim=dim, input_spec=spec, head=head, labels=labels)


class HFVisionBackbone(TorchBackbone):
    """A transformers vision model: ``AutoImageProcessor`` in front, pooled features out.

    Images are read as transformers' ``load_image`` reads them for its pipelines (and ``datasets.Image``
    decodes them): turned upright by their EXIF orientation, alpha dropped by ``convert("RGB")``.
    """

    exif_orientation = True

    def __init__(self, model_id: Any, card: Any, model: nn.Module, *, processor: Any, **kwargs: Any) -> None:
        super().__init__(model_id, card, model, **kwargs)
        self.processor = processor

    def preprocess(self, inputs: Any, train: bool = False) -> torch.Tensor:
        """Images to ``pixel_values`` exactly as the repo's image processor makes them.

        ``train=True`` first applies a random resized crop (35-100% of the area) and a horizontal flip.
        """
        images = load_images(inputs, exif=self.exif_orientation)
        if train:
            images = [_augment(img) for img in images]
        return self.processor(images=images, return_tensors="pt")["pixel_values"]


def _augment(img: Any) -> Any:
    from PIL import Image

    w, h = img.size
    for _ in range(10):
        area = w * h * random.uniform(0.35, 1.0)
        ratio = random.uniform(3 / 4, 4 / 3)
        cw, ch = round((area * ratio) ** 0.5), round((area / ratio) ** 0.5)
        if 0 < cw <= w and 0 < ch <= h:
            x, y = random.randint(0, w - cw), random.randint(0, h - ch)
            img = img.crop((x, y, x + cw, y + ch))
            break
    if random.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return img


# ---- text -------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any] | list[Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


#: sentence-transformers pooling modes (its ``pooling_mode`` names) that zoo's poolings reproduce.
ST_POOLINGS = {"cls": "cls", "mean": "mean", "max": "max", "lasttoken": "last"}
#: The legacy ``pooling_mode_*`` keys of a sentence-transformers Pooling config, as ``pooling_mode`` names.
_ST_LEGACY_MODES = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}


def _st_pooling_modes(cfg: dict[str, Any]) -> list[str]:
    """The pooling modes a sentence-transformers Pooling config turns on (several are concatenated)."""
    mode = cfg.get("pooling_mode")
    if isinstance(mode, str):
        return [mode]
    if isinstance(mode, (list, tuple)):
        return [str(m) for m in mode]
    return [name for key, name in _ST_LEGACY_MODES.items() if cfg.get(key)]


def sentence_transformers_config(folder: Path) -> dict[str, Any]:
    """Pooling, normalisation and max length from a sentence-transformers repo's own files.

    ``unsupported`` lists what the repo's pipeline does that zoo does not reproduce (a pooling
    other than one of :data:`ST_POOLINGS`, several poolings concatenated, a module other than
    Transformer, Pooling and Normalize such as a Dense projection).
    """
    out: dict[str, Any] = {}
    modules = _read_json(folder / "modules.json")
    if not isinstance(modules, list):
        return out
    unsupported: list[str] = []
    for mod in modules:
        kind = str(mod.get("type", ""))
        short = kind.rsplit(".", 1)[-1]
        if short == "Pooling":
            cfg = _read_json(folder / mod.get("path", "") / "config.json") or {}
            modes = _st_pooling_modes(cfg)
            if len(modes) == 1 and modes[0] in ST_POOLINGS:
                out["pooling"] = ST_POOLINGS[modes[0]]
            elif modes:
                unsupported.append(f"{' + '.join(modes)} pooling")
        elif short == "Normalize":
            out["normalize"] = True
        elif short != "Transformer":
            unsupported.append(f"a {short} module ({mod.get('path') or kind})")
    if unsupported:
        out["unsupported"] = unsupported
    st = _read_json(folder / "sentence_bert_config.json")
    if isinstance(st, dict) and st.get("max_seq_length"):
        out["max_length"] = int(st["max_seq_length"])
    return out


def _model_limit(config: Any, tokenizer: Any) -> int | None:
    limits = []
    for attr in ("max_position_embeddings", "n_positions"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            limits.append(value)
            break
    tok = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok, int) and 0 < tok < 1_000_000:
        limits.append(tok)
    return min(limits) if limits else None


def _load_text(
    model_id: Any, card: ModelCard | None, folder: Path, config: Any,
    pooling: str | None, max_length: int | None, normalize: bool | None,
) -> HFTextBackbone:
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

    archs = list(getattr(config, "architectures", None) or [])
    causal = any(a.endswith(_CAUSAL_ARCH) for a in archs)
    st = sentence_transformers_config(folder)
    if pooling is None and st.get("unsupported"):
        raise InvalidInputError(
            f"{model_id}'s sentence-transformers pipeline has {', '.join(st['unsupported'])}, which zoo does not "
            f"reproduce, so its embeddings would not be SentenceTransformer's; pass pooling= (one of "
            f"{', '.join(TEXT_POOLINGS)}) to embed with the transformer alone."
        )
    pooling = pooling or st.get("pooling") or ("last" if causal else "cls")
    if pooling not in TEXT_POOLINGS:
        raise InvalidInputError(f"pooling {pooling!r} is not one of {', '.join(TEXT_POOLINGS)} for text models.")
    normalize = st.get("normalize", False) if normalize is None else bool(normalize)
    lm: nn.Module | None = None
    if causal:
        task_model, missing = _from_pretrained(AutoModelForCausalLM, folder)
        base, lm = _split(task_model, missing)
    elif any(a.endswith(_MLM_ARCH) for a in archs):
        task_model, missing = _from_pretrained(AutoModelForMaskedLM, folder)
        base, lm = _split(task_model, missing)
    else:
        base, _ = _from_pretrained(AutoModel, folder)
    drop_unused_pooler(base)
    if hasattr(base.config, "use_cache"):
        base.config.use_cache = False
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=_TRUST.get())
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise InvalidInputError(f"{model_id}'s tokenizer has neither a pad nor an end-of-text token; zoo cannot batch it.")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    limit = _model_limit(config, tokenizer)
    wanted = max_length or st.get("max_length") or limit
    if limit is not None and wanted is not None and wanted > limit:
        raise InvalidInputError(f"max_length={wanted} exceeds {model_id}'s limit of {limit} tokens; pass at most {limit}.")
    if wanted is not None and wanted < 2:
        raise InvalidInputError(f"max_length must be at least 2, got {wanted}.")
    model = TextEncoder(base, pooling, normalize).eval()
    dim = int(config.hidden_size)
    groups = layer_groups(base)
    tasks: tuple[str, ...] = ("feature-extraction",)
    if lm is not None:
        tasks += ("text-generation",) if causal else ("fill-mask",)
    card = _card(model_id, card, config, "text", tasks, params=_count(base), feature_dim=dim, input_size=wanted, layer_groups=len(groups))
    return HFTextBackbone(
        model_id, card, model, tokenizer=tokenizer, lm=lm, causal=causal, max_length=wanted,
        groups=groups, feature_dim=dim, input_spec=InputSpec("text", wanted),
    )


class HFTextBackbone(TorchBackbone):
    """A transformers text model: ``AutoTokenizer`` in front, pooled token states out.

    Attributes:
        tokenizer: the repo's tokenizer (GPT-style ones get ``pad_token = eos_token``, right padding).
        max_length: texts are truncated to this many tokens, with a warning.
        causal: a GPT-style (left-to-right) model.
    """

    def __init__(
        self, model_id: Any, card: Any, model: nn.Module, *, tokenizer: Any, lm: nn.Module | None,
        causal: bool, max_length: int | None, groups: Sequence[LayerGroup], **kwargs: Any,
    ) -> None:
        super().__init__(model_id, card, model, groups=groups, **kwargs)
        self.tokenizer = tokenizer
        self.causal = causal
        self.max_length = max_length
        self._lm = lm

    def preprocess(self, inputs: Any, train: bool = False) -> dict[str, torch.Tensor]:
        """Texts to the tokenizer's tensors (padded, truncated to ``max_length``); ``train`` changes nothing."""
        texts = load_texts(inputs)
        if self.max_length is None:
            enc = self.tokenizer(texts, padding=True, return_tensors="pt")
            return {k: v for k, v in enc.items() if isinstance(v, torch.Tensor)}
        # tokenized once, untruncated: the lengths say which texts the limit cuts, and only those are tokenized again,
        # truncated (the tokenizer's own truncation keeps the closing special tokens); then all are padded together
        enc = self.tokenizer(texts, truncation=False, verbose=False)
        longer = [i for i, ids in enumerate(enc["input_ids"]) if len(ids) > self.max_length]
        if longer:
            warnings.warn(
                f"{self.id}: {len(longer)} of {len(texts)} text(s) in a batch longer than the model's limit of {self.max_length} tokens "
                f"were truncated to {self.max_length} tokens.",
                UserWarning,
                stacklevel=2,
            )
            cut = self.tokenizer([texts[i] for i in longer], truncation=True, max_length=self.max_length, verbose=False)
            for key in enc:
                for j, i in enumerate(longer):
                    enc[key][i] = cut[key][j]
        enc = self.tokenizer.pad(enc, padding=True, return_tensors="pt", verbose=False)
        return {k: v for k, v in enc.items() if isinstance(v, torch.Tensor)}

    def embed(self, inputs: Any, batch_size: int = 32) -> np.ndarray:
        """Pooled features of each text, in the inputs' order; the texts run longest first, so that a batch holds
        texts of similar length (padding to its longest costs less), as sentence-transformers' ``encode`` does."""
        texts = load_texts(inputs)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = super().embed([texts[i] for i in order], batch_size)
        rows = np.empty_like(out)
        rows[order] = out
        return rows

    def to(self, device: str | torch.device) -> HFTextBackbone:
        super().to(device)
        if self._lm is not None:
            self._lm.to(device)
        return self

    @property
    def source_head(self) -> nn.Module | None:
        """The pre-trained masked-LM or causal-LM model (sharing this backbone's weights), if the checkpoint has its head."""
        return self._lm

    def predict(self, inputs: Any, top_k: int = 5) -> list[list[tuple[str, float]]]:
        """Top-k tokens: the next token for GPT-style models, the first mask token's filler for the BERT family.

        Raises:
            NotImplementedError: the checkpoint has no LM head.
            InvalidInputError: a text for a masked-LM model has no mask token.
        """
        if self._lm is None:
            return super().predict(inputs, top_k)
        texts = load_texts(inputs)
        mask_id = self.tokenizer.mask_token_id
        if not self.causal and mask_id is None:
            raise NotImplementedError(f"{self.id}'s tokenizer has no mask token to predict")
        self._lm.eval()
        results: list[list[tuple[str, float]]] = []
        with torch.inference_mode():
            for start in range(0, len(texts), 32):
                chunk = texts[start : start + 32]
                batch = move(self.preprocess(chunk), self.device)
                logits = self._lm(**batch).logits
                ids, mask = batch["input_ids"], batch["attention_mask"]
                rows = []
                for i, text in enumerate(chunk):
                    if self.causal:
                        pos = int(mask[i].nonzero().max())
                    else:
                        hits = (ids[i] == mask_id).nonzero()
                        if len(hits) == 0:
                            raise InvalidInputError(
                                f"text #{start + i} has no {self.tokenizer.mask_token}: put one where a word should be predicted."
                            )
                        pos = int(hits[0])
                    rows.append(logits[i, pos])
                probs = torch.stack(rows).float().softmax(-1).cpu()
                p, idx = probs.topk(min(top_k, probs.shape[-1]), dim=-1)
                for row_p, row_i in zip(p.tolist(), idx.tolist()):
                    results.append([(self.tokenizer.decode([j]), float(q)) for q, j in zip(row_p, row_i)])
        return results
