"""A torch module -> one ONNX graph with dynamic batch (and sequence) axes, checked against torch.

Used by vision and text. The graph gets a `probabilities` output (softmax over the logits) beside
`logits`: the contract's probability output is what serving reads, the logits are what the parity check
compares with torch (within 1e-4 on a whole split: a wrong export, such as an unmerged LoRA adapter,
shows up there and fails the stage).

A third output, `embedding`, is what monitoring watches for drift in what the model *sees*: the input of
the classification head (ResNet's pooled features, BERT's pooled [CLS] vector), projected onto its top
principal directions on the validation split and scaled to unit variance there (`Projection`). A few
components keep the prediction log small (a 512-wide vector per prediction would not be) and still carry
most of the variance; each becomes one drift-tested column.

The TorchScript exporter (`dynamo=False`) is used: it keeps an axis dynamic even when the example has
size 1 there, and handles the transformers BERT graph without extra options; the export is traced with
batch >= 2 and a sequence >= 2 anyway, and parity is checked on other shapes afterwards.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import onnx
import torch

PROBABILITIES, LOGITS, EMBEDDING = "probabilities", "logits", "embedding"
OPSET = 17


@dataclass(frozen=True)
class Projection:
    """Head inputs -> their top principal components on the validation split, each of unit variance there."""

    mean: np.ndarray  # [features]
    components: np.ndarray  # [k, features], each row divided by its component's standard deviation

    @property
    def size(self) -> int:
        return len(self.components)

    def apply(self, features: np.ndarray) -> np.ndarray:
        return (features - self.mean) @ self.components.T


def fit_projection(features: np.ndarray, k: int) -> Projection:
    """PCA by SVD of the centred validation features (numpy only: the fit is a few lines)."""
    features = np.asarray(features, np.float64)
    k = min(k, *features.shape)
    mean = features.mean(axis=0)
    _, singular, directions = np.linalg.svd(features - mean, full_matrices=False)
    std = np.maximum(singular[:k] / np.sqrt(max(len(features) - 1, 1)), 1e-12)
    return Projection(mean.astype(np.float32), (directions[:k] / std[:, None]).astype(np.float32))


@contextmanager
def head_input(head: torch.nn.Module) -> Iterator[list[torch.Tensor]]:
    """While open, every call of `head` leaves its input in the yielded list (a forward pre-hook)."""
    seen: list[torch.Tensor] = []
    handle = head.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    try:
        yield seen
    finally:
        handle.remove()


def head_features(head: torch.nn.Module, forward_batches: Iterable[Callable[[], object]]) -> np.ndarray:
    """The head's inputs over many forward calls ([rows, features]): what the projection is fitted on."""
    parts = []
    with torch.no_grad(), head_input(head) as seen:
        for forward in forward_batches:
            forward()
            parts.append(seen.pop().flatten(1).float().numpy())
    return np.concatenate(parts)


@dataclass(frozen=True)
class Embedding:
    """What the `embedding` output is: the input of `head` (a submodule of the exported model), projected."""

    head: torch.nn.Module
    projection: Projection


class ExportedClassifier(torch.nn.Module):
    """Wraps a classifier whose forward returns logits (or an object with `.logits`) to return its softmax,
    the logits and, with an `Embedding`, the projected head input."""

    def __init__(self, model: torch.nn.Module, embedding: Embedding | None = None):
        super().__init__()
        self.model = model
        self.head = embedding.head if embedding else None
        if embedding is not None:
            self.register_buffer("mean", torch.from_numpy(embedding.projection.mean))
            self.register_buffer("components", torch.from_numpy(embedding.projection.components.T.copy()))

    def forward(self, *inputs):
        if self.head is None:
            return self.probabilities_and_logits(self.model(*inputs))
        with head_input(self.head) as seen:
            out = self.model(*inputs)
        return *self.probabilities_and_logits(out), (seen[-1].flatten(1) - self.mean) @ self.components

    @staticmethod
    def probabilities_and_logits(out) -> tuple[torch.Tensor, torch.Tensor]:
        logits = out.logits if hasattr(out, "logits") else out
        return torch.softmax(logits, dim=-1), logits


def export_onnx(model: torch.nn.Module, example: tuple[torch.Tensor, ...], path: str | Path, *,
                input_names: list[str], dynamic_axes: dict[str, dict[int, str]],
                embedding: Embedding | None = None) -> Path:
    """Export `model` (logits out) wrapped with its softmax; outputs `probabilities`, `logits` and, with an
    `embedding`, the projected head input as `embedding`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapped = ExportedClassifier(model, embedding).eval()
    outputs = [PROBABILITIES, LOGITS] + ([EMBEDDING] if embedding else [])
    axes = dynamic_axes | {name: {0: "batch"} for name in outputs}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow on shapes: checked by parity
        torch.onnx.export(wrapped, example, str(path), input_names=input_names, output_names=outputs,
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False)
    onnx.checker.check_model(str(path))
    return path
