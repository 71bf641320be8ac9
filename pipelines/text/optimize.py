"""Optimize stage: the LoRA-merged classifier through the common torch optimize stage
(pipelines/common/optimize.py: ONNX export and parity, dynamic and static int8, the table, the choice).

What is text's own: the token inputs with dynamic batch and sequence axes, feeds from the training
tokenizer (the serving codec builds its own from tokenizer.json: export checks the two agree), and the
latency example, a test text of median token length.
"""

from __future__ import annotations

import numpy as np

from pipelines.common.optimize import Inputs, run_optimize
from pipelines.common.runner import StageContext
from pipelines.common.torch_onnx import Embedding, export_onnx
from pipelines.text.model import encode, predict_logits
from pipelines.text.train import label_ids, load_split, load_trained

INPUTS = ["input_ids", "attention_mask"]


def onnx_feeds(tokenizer, texts: list[str], max_length: int) -> dict[str, np.ndarray]:
    encoded = encode(tokenizer, texts, max_length)
    return {name: encoded[name].numpy().astype(np.int64) for name in INPUTS}


def onnx_outputs(session, tokenizer, texts: list[str], max_length: int, output: str, batch_size: int = 64) -> np.ndarray:
    return np.concatenate([session.run([output], onnx_feeds(tokenizer, texts[i:i + batch_size], max_length))[0]
                           for i in range(0, len(texts), batch_size)])


def export_fp32(model, tokenizer, path, max_length: int, embedding: Embedding | None):
    """Traced with batch 2 and two lengths: an axis of size 1 in the example could be fixed by the exporter."""
    example = encode(tokenizer, ["a short example text", "and a second, somewhat longer example text"], max_length)
    return export_onnx(model, tuple(example[name] for name in INPUTS), path, input_names=INPUTS,
                       dynamic_axes={name: {0: "batch", 1: "sequence"} for name in INPUTS}, embedding=embedding)


def median_length_text(texts: list[str], tokenizer) -> str:
    lengths = [len(tokenizer(text)["input_ids"]) for text in texts]
    return texts[int(np.argsort(lengths)[len(lengths) // 2])]


def run(ctx: StageContext) -> None:
    max_length = ctx.config.model.max_length
    model, tokenizer, labels = load_trained(ctx)
    test, valid = load_split(ctx, "test"), load_split(ctx, "valid")
    texts = test["text"].tolist()
    run_optimize(ctx, Inputs(
        model=model, test=texts, y=label_ids(test, labels), calibration=valid["text"].tolist(),
        feeds=lambda items: onnx_feeds(tokenizer, list(items), max_length),
        forward=lambda items: model(**encode(tokenizer, list(items), max_length)),
        logits=lambda items: predict_logits(model, tokenizer, list(items), max_length),
        export=lambda path, embedding: export_fp32(model, tokenizer, path, max_length, embedding),
        head=model.classifier,  # its input: the pooled [CLS] vector the classifier reads
        latency_example=[median_length_text(texts, tokenizer)], latency_batch=(texts * 32)[:32],
    ), ctx.config.optimize)
