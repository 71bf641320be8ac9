"""A torch module -> one ONNX graph with dynamic batch (and sequence) axes, checked against torch.

Used by vision and text. The graph gets a `probabilities` output (softmax over the logits) beside
`logits`: the contract's probability output is what serving reads, the logits are what the parity check
compares with torch (within 1e-4 on a whole split: a wrong export, such as an unmerged LoRA adapter,
shows up there and fails the stage).

The TorchScript exporter (`dynamo=False`) is used: it keeps an axis dynamic even when the example has
size 1 there, and handles the transformers BERT graph without extra options; the export is traced with
batch >= 2 and a sequence >= 2 anyway, and parity is checked on other shapes afterwards.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import onnx
import torch

PROBABILITIES, LOGITS = "probabilities", "logits"
OPSET = 17


class WithProbabilities(torch.nn.Module):
    """Wraps a classifier whose forward returns logits (or an object with `.logits`) to return both."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, *inputs):
        out = self.model(*inputs)
        logits = out.logits if hasattr(out, "logits") else out
        return torch.softmax(logits, dim=-1), logits


def export_onnx(model: torch.nn.Module, example: tuple[torch.Tensor, ...], path: str | Path, *,
                input_names: list[str], dynamic_axes: dict[str, dict[int, str]]) -> Path:
    """Export `model` (logits out) wrapped with its softmax; outputs `probabilities` and `logits`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapped = WithProbabilities(model).eval()
    axes = dynamic_axes | {PROBABILITIES: {0: "batch"}, LOGITS: {0: "batch"}}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow on shapes: checked by parity
        torch.onnx.export(wrapped, example, str(path), input_names=input_names, output_names=[PROBABILITIES, LOGITS],
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False)
    onnx.checker.check_model(str(path))
    return path
