"""The optimize stage of a torch classifier (vision, text): ONNX export, parity, int8, one table, one choice.

1. ONNX export (the project's own `export` callable: its inputs and dynamic axes), `probabilities` + `logits`
   out, and `embedding` (the head's input projected onto `embedding_components` principal directions fitted
   on the validation split: what monitoring drift-tests); logits parity with torch on the whole test split
   (fails the stage above `parity_atol`), embedding parity on its first batch.
2. onnxruntime INT8: dynamic (weights int8, activations scaled per batch at run time) and static QDQ
   (activations calibrated on real validation inputs, per-channel weights).
3. One table, same threads for all: size, batch-1 latency (median of `latency_repeats` runs), throughput at
   batch 32, test quality, for torch fp32 eager, ONNX fp32 and each int8 variant, CPU flags beside it.
4. The fastest int8 variant within `max_quality_drop` of fp32 ships, else fp32; the stage says why. Quality
   is measured one input at a time, as a request is served, and each graph's `batch_effect` (how far a
   probability moves when the input is scored inside a batch) is a second bound: dynamic int8 scales
   activations per batch, so its answer for an input depends on its neighbours, which micro-batching in
   the server must not allow.
Outputs: `shipped/<variant>.onnx`, `optimize.json` (variant, artifact, reason, table, the contract fields of
the graph's outputs), `optimize/table.*`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import mlflow
import numpy as np
import torch
from pydantic import Field

from modelpkg.runtime import SessionSettings, open_session
from pipelines.common import tracking
from pipelines.common.config import Config
from pipelines.common.metrics import argmax_metrics, softmax
from pipelines.common.onnx_parity import check_parity
from pipelines.common.quantize import (BATCH_EFFECT, Variant, choose_variant, cpu_flags, cpu_note,
                                       quantize_dynamic_int8, quantize_static_int8, speed_table)
from pipelines.common.runner import StageContext
from pipelines.common.torch_onnx import EMBEDDING, LOGITS, PROBABILITIES, Embedding, fit_projection, head_features

log = logging.getLogger(__name__)
FP32, TORCH = "onnx_fp32", "torch_fp32"


class OptimizeConfig(Config):
    quantization: list[Literal["dynamic", "static"]] = ["dynamic", "static"]
    quality: Literal["accuracy", "macro_f1"] = "macro_f1"  # the test metric the int8 bound is measured on
    max_quality_drop: float = Field(0.01, ge=0)  # that metric's points an int8 variant may lose and still ship
    max_batch_effect: float = Field(0.01, ge=0)  # how far a probability may move with its batch neighbours
    latency_repeats: int = Field(200, ge=10)
    threads: int = Field(2, ge=1)  # torch and onnxruntime alike, for a fair table
    calibration_rows: int = Field(200, ge=10)
    reduce_range: Literal["auto"] | bool = "auto"  # static int8 7-bit weights; auto: on when the CPU lacks VNNI
    symbolic_shapes: bool = True  # False for graphs onnxruntime's symbolic shape inference cannot follow (BERT)
    parity_atol: float = 1e-4  # ONNX fp32 logits vs torch, on the whole test split
    embedding_components: int = Field(8, ge=0)  # principal components of the head input exported for drift; 0: none
    embedding_atol: float = Field(1e-3, gt=0)  # ONNX fp32 embedding vs torch (unit-variance components)


@dataclass(frozen=True)
class Inputs:
    """What a project hands the stage: its test inputs (a list of texts, a tensor of images: anything that
    slices), their labels, and how to turn a slice into ONNX feeds and into a torch forward call."""

    model: torch.nn.Module
    test: Sequence
    y: np.ndarray
    calibration: Sequence  # validation inputs, one feed each for static calibration
    feeds: Callable[[Sequence], dict[str, np.ndarray]]
    forward: Callable[[Sequence], Any]  # torch, under no_grad: what the latency of eager torch is measured on
    logits: Callable[[Sequence], np.ndarray]  # torch logits of many inputs (batched by the project)
    export: Callable[[Path, Embedding | None], Path]  # writes the fp32 ONNX graph (export_onnx), returns its path
    head: torch.nn.Module  # the classification head: its input is the embedding monitoring watches
    latency_example: Sequence  # one input, as a slice (the text of median length; any image)
    latency_batch: Sequence  # 32 inputs: the throughput column


def uses_reduce_range(setting: Literal["auto"] | bool) -> bool:
    """Without VNNI, u8s8 products saturate (VPMADDUBSW): 7-bit weights avoid it (onnxruntime's advice)."""
    if setting == "auto":
        return not any("vnni" in flag for flag in cpu_flags())
    return bool(setting)


def onnx_outputs(session, inputs: Inputs, items: Sequence, output: str, batch_size: int) -> np.ndarray:
    return np.concatenate([session.run([output], inputs.feeds(items[i:i + batch_size]))[0]
                           for i in range(0, len(items), batch_size)])


def batches(items: Sequence, size: int = 64) -> list[Sequence]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def fit_embedding(inputs: Inputs, components: int) -> Embedding | None:
    """The projection of the head's input, fitted on the validation inputs (the calibration set)."""
    if components == 0:
        return None
    features = head_features(inputs.head, [lambda b=b: inputs.forward(b) for b in batches(inputs.calibration)])
    return Embedding(inputs.head, fit_projection(features, components))


def check_embedding(session, inputs: Inputs, embedding: Embedding, atol: float) -> float:
    """The graph's embedding output equals torch's projected head input (first test batch): a projection
    exported wrong would otherwise go unnoticed, as monitoring would compare like with like."""
    first = inputs.test[:64]
    expected = embedding.projection.apply(head_features(embedding.head, [lambda: inputs.forward(first)]))
    gap = float(np.abs(session.run([EMBEDDING], inputs.feeds(first))[0] - expected).max())
    if gap > atol:
        raise ValueError(f"ONNX embedding output differs from torch by {gap:.2e} (> {atol}): export is broken")
    return gap


def graph_contract_fields(embedding: Embedding | None) -> dict:
    """What the shipped graph's outputs mean, for the contract the export stage writes."""
    fields = {"probability_output": PROBABILITIES}
    if embedding is not None:
        fields |= {"embedding_output": EMBEDDING, "embedding_size": embedding.projection.size}
    return fields


@dataclass(frozen=True)
class ShippedGraph:
    path: Path
    variant: str
    contract_fields: dict


def shipped_graph(ctx: StageContext) -> ShippedGraph:
    """The graph the optimize stage chose, for the export stage (same run chain)."""
    shipped = json.loads(ctx.artifact("optimize", "optimize.json").read_text())
    return ShippedGraph(ctx.artifact("optimize", shipped["artifact"]), shipped["variant"], shipped["contract"])


def run_optimize(ctx: StageContext, inputs: Inputs, settings: OptimizeConfig) -> None:
    torch.set_num_threads(settings.threads)
    quality_name = f"test_{settings.quality}"
    threads = SessionSettings(intra_op_threads=settings.threads, inter_op_threads=1)
    reduce_range = uses_reduce_range(settings.reduce_range)
    with tracking.temporary_dir() as tmp:
        embedding = fit_embedding(inputs, settings.embedding_components)
        paths = {FP32: inputs.export(tmp / "fp32.onnx", embedding)}
        sessions = {FP32: open_session(paths[FP32], threads)}
        torch_logits = inputs.logits(inputs.test)
        parity = check_parity(torch_logits, onnx_outputs(sessions[FP32], inputs, inputs.test, LOGITS, 64),
                              atol=settings.parity_atol)
        mlflow.log_metrics(parity.as_metrics("test_onnx_logits"))
        log.info("ONNX fp32 logits parity on %d test inputs: max |diff| %.2e", parity.rows, parity.max_abs_diff)
        if embedding is not None:
            gap = check_embedding(sessions[FP32], inputs, embedding, settings.embedding_atol)
            mlflow.log_metric("test_onnx_embedding_max_abs_diff", gap)
            log.info("ONNX embedding output (%d components) vs torch: max |diff| %.2e", embedding.projection.size, gap)
        if "dynamic" in settings.quantization:
            paths["onnx_int8_dynamic"] = quantize_dynamic_int8(paths[FP32], tmp / "int8_dynamic.onnx")
        if "static" in settings.quantization:
            calibration = [inputs.feeds(inputs.calibration[i:i + 1])
                           for i in range(min(settings.calibration_rows, len(inputs.calibration)))]
            paths["onnx_int8_static"] = quantize_static_int8(paths[FP32], tmp / "int8_static.onnx", calibration,
                                                             symbolic_shapes=settings.symbolic_shapes,
                                                             reduce_range=reduce_range)
        for name, path in paths.items():
            sessions.setdefault(name, open_session(path, threads))
        scored = {name: onnx_outputs(s, inputs, inputs.test, PROBABILITIES, 1) for name, s in sessions.items()}
        quality = {name: argmax_metrics("test", inputs.y, p)[quality_name] for name, p in scored.items()}
        quality[TORCH] = argmax_metrics("test", inputs.y, softmax(torch_logits))[quality_name]
        batch_effect = {name: float(np.abs(onnx_outputs(s, inputs, inputs.test, PROBABILITIES, 64) - scored[name]).max())
                        for name, s in sessions.items()}
        one = inputs.latency_example
        batch = inputs.latency_batch
        feeds1, feeds32 = inputs.feeds(one), inputs.feeds(batch)
        with torch.no_grad():
            variants = [Variant(TORCH, paths[FP32].stat().st_size / 1e6, lambda: inputs.forward(one),
                                lambda: inputs.forward(batch), quality[TORCH])]
            variants += [Variant(name, path.stat().st_size / 1e6,
                                 lambda s=sessions[name]: s.run([PROBABILITIES], feeds1),
                                 lambda s=sessions[name]: s.run([PROBABILITIES], feeds32), quality[name])
                         for name, path in paths.items()]
            table = speed_table(variants, repeats=settings.latency_repeats, quality_name=quality_name)
        table[BATCH_EFFECT] = [batch_effect.get(name, 0.0) for name in table.index]  # torch eager: exact
        shipped, reason = choose_variant(table, fp32=FP32, candidates=[n for n in paths if n != FP32],
                                         quality_name=quality_name, max_drop=settings.max_quality_drop,
                                         max_batch_effect=settings.max_batch_effect)
        mlflow.log_artifact(str(paths[shipped]), "shipped")
        shipped_artifact = "shipped/" + paths[shipped].name
    note = cpu_note() + (" (static int8 with reduce_range)" if reduce_range and "static" in settings.quantization else "")
    text = table.round(4).to_string()
    log.info("speed table (%s threads; %s):\n%s\n%s", settings.threads, note, text, reason)
    mlflow.log_table(table.reset_index(), "optimize/table.json")
    mlflow.log_text(f"{note}\nthreads: {settings.threads}\n\n{text}\n\n{reason}\n", "optimize/table.txt")
    mlflow.log_metrics({f"{name}_{column}": float(value) for name, row in table.iterrows() for column, value in row.items()})
    mlflow.set_tags({"shipped_variant": shipped, "variant_decision": reason, "cpu_flags": note})
    tracking.log_json({"variant": shipped, "artifact": shipped_artifact, "reason": reason, "cpu": note,
                       "table": table.reset_index().to_dict(orient="records"),
                       "contract": graph_contract_fields(embedding)}, "optimize.json")
    ctx.summary |= {"speed_table": f"Speed and quality, {settings.threads} threads ({note}):\n{text}",
                    "shipped_variant": reason, "onnx_logits_parity_max_abs_diff": parity.max_abs_diff}
