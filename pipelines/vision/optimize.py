"""Optimize stage: the fine-tuned ResNet-18 through the common torch optimize stage
(pipelines/common/optimize.py: ONNX export and parity, static and dynamic int8, the table, the choice).

What is vision's own: one image input with a dynamic batch axis, feeds that are the normalised tensors
themselves, and calibration on real validation images. Static QDQ with per-channel weights is what
convolutions gain from; dynamic int8 only quantizes MatMul/Gemm here (the head) and is reported, not
expected to ship.
"""

from __future__ import annotations

import numpy as np
import torch

from pipelines.common.optimize import Inputs, run_optimize
from pipelines.common.runner import StageContext
from pipelines.common.torch_onnx import Embedding, export_onnx
from pipelines.vision.evaluate import class_ids
from pipelines.vision.model import predict_logits, to_tensor
from pipelines.vision.train import load_split, load_trained, split_images

INPUT = "image"


def export_fp32(model: torch.nn.Module, images: torch.Tensor, path, embedding: Embedding | None):
    """Traced with a batch of 2 (an axis of size 1 in the example could be fixed by the exporter)."""
    return export_onnx(model, (images[:2],), path, input_names=[INPUT], dynamic_axes={INPUT: {0: "batch"}},
                       embedding=embedding)


def run(ctx: StageContext) -> None:
    model, classes, settings = load_trained(ctx)
    test, valid = load_split(ctx, "test"), load_split(ctx, "valid")
    images = to_tensor(split_images(test), settings)
    calibration = to_tensor(split_images(valid), settings)
    run_optimize(ctx, Inputs(
        model=model, test=images, y=class_ids(test, classes), calibration=calibration,
        feeds=lambda items: {INPUT: np.ascontiguousarray(items.numpy() if isinstance(items, torch.Tensor) else items)},
        forward=lambda items: model(items),
        logits=lambda items: predict_logits(model, items),
        export=lambda path, embedding: export_fp32(model, images, path, embedding),
        head=model.fc,  # its input: the 512 pooled features of the last block
        latency_example=images[:1], latency_batch=images[:32].repeat(-(-32 // len(images)), 1, 1, 1)[:32],
    ), ctx.config.optimize)
