"""What ``zoo export`` needs for a text run (Hugging Face BERT / GPT families): the exported module's inputs, the
sentences it is traced and checked on, and the tokenizer files written beside the export.

The exported model takes the tokenizer's tensors as separate inputs, in the order optimum's and transformers'
BERT ONNX configs name them (``input_ids``, ``attention_mask``, then ``token_type_ids`` where the tokenizer gives
them), each ``(batch, sequence)`` int64 with both axes dynamic, and returns ``(batch, num_classes)`` logits. Imports
torch: load it only when exporting.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo.errors import InvalidInputError

#: the exported model's inputs, in this order; a tokenizer gives the first two and, for the BERT family, the third
TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")

#: real sentences of several lengths (one not ASCII): the export is traced on the first batch, padded, and checked on
#: every batch (another batch size, a longer sequence than the trace saw, one text alone without padding)
SENTENCES = (
    ("The cat sat on the mat.", "Stock markets fell sharply after the central bank raised interest rates for the third time this year."),
    ("Rain is expected tomorrow.", "The recipe calls for two cups of flour, a pinch of salt, three eggs and half a litre of milk, whisked until smooth "
     "and left to rest for an hour before the first pancake goes into the pan.", "Ça va très bien, merci."),
    ("A single short sentence, not padded.",),
)


class TextClassifier(nn.Module):
    """The run's classifier called with the tokenizer's tensors as positional inputs (``names``, in that order):
    what TorchScript tracing and ONNX export need instead of the keyword arguments ``ClassifierModel`` takes."""

    def __init__(self, model: nn.Module, names: tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            batch["token_type_ids"] = token_type_ids
        return self.model(**batch)


def input_names(run_dir: Path, batch: dict[str, Any]) -> tuple[str, ...]:
    """The exported model's input names for this tokenizer's output ``batch``.

    Raises:
        InvalidInputError: the tokenizer gives a tensor the export does not take, or no attention mask.
    """
    other = sorted(set(batch) - set(TEXT_INPUTS))
    if other or "input_ids" not in batch or "attention_mask" not in batch:
        what = f"gives {', '.join(other)}" if other else f"gives only {', '.join(sorted(batch))}"
        raise InvalidInputError(f"{run_dir}: this run's tokenizer {what}, but the export takes {', '.join(TEXT_INPUTS)}; "
                                f"serve the run with `zoo predict {run_dir} TEXT` (or zoo.runner.predict.load_run) instead.")
    return tuple(n for n in TEXT_INPUTS if n in batch)


def batches(run: Any, names: tuple[str, ...]) -> list[tuple[torch.Tensor, ...]]:
    """:data:`SENTENCES`, tokenized as the run does (``run.preprocess``), as tuples of the inputs ``names`` on the model's device."""
    out = []
    for texts in SENTENCES:
        enc = run.preprocess(list(texts))
        out.append(tuple(enc[n].to(run.device) for n in names))
    return out


def save_tokenizer(tokenizer: Any, folder: Path, max_length: int | None) -> list[str]:
    """Write ``tokenizer`` (``save_pretrained``) into ``folder`` with ``model_max_length`` set to the run's ``max_length``, so
    that ``AutoTokenizer.from_pretrained(folder)(texts, padding=True, truncation=True)`` gives what the run gave the model.

    Returns:
        The names of the files written.
    """
    tok = copy.deepcopy(tokenizer)  # the run's own tokenizer keeps its settings
    if max_length is not None:
        tok.model_max_length = int(max_length)
    tok.save_pretrained(str(folder))
    return sorted(p.name for p in folder.iterdir() if p.is_file())
