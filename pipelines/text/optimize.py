"""Optimize stage: export the merged classifier to ONNX, prove it equals torch, quantize it, measure, choose.

1. ONNX export (dynamic batch and sequence axes) of the LoRA-merged model, `probabilities` + `logits` out;
   logits parity with torch on the whole test split (fails the stage above optimize.parity_atol).
2. onnxruntime INT8: dynamic (what transformers gain from) and static QDQ calibrated on validation texts.
3. One table, same threads for all: size, batch-1 latency on a median-length test text (median of
   `latency_repeats` runs), throughput at batch 32, test macro-F1, for torch fp32, ONNX fp32 and each int8.
4. The fastest int8 variant within `max_quality_drop` of fp32 ships, else fp32; the stage says why. Quality is
   measured one text at a time, as a request is served, and each graph's `batch_effect` (how far a probability
   moves when the text is scored inside a batch of 64) is a second bound: dynamic int8 scales activations per
   batch, so its answer for a text depends on its neighbours, which micro-batching must not allow.
Outputs: `shipped/model.onnx`, `optimize.json` (variant, reason, table), `optimize/table.json`.
"""

from __future__ import annotations

import logging

import mlflow
import numpy as np
import torch

from modelpkg.runtime import SessionSettings, open_session
from pipelines.common import tracking
from pipelines.common.onnx_parity import check_parity
from pipelines.common.quantize import (BATCH_EFFECT, Variant, choose_variant, cpu_note, quantize_dynamic_int8,
                                       quantize_static_int8, speed_table)
from pipelines.common.runner import StageContext
from pipelines.common.torch_onnx import LOGITS, PROBABILITIES, export_onnx
from pipelines.text.metrics import text_metrics
from pipelines.text.model import encode, predict_logits, softmax
from pipelines.text.train import label_ids, load_split, load_trained

log = logging.getLogger(__name__)
INPUTS = ["input_ids", "attention_mask"]
FP32, TORCH = "onnx_fp32", "torch_fp32"


def onnx_feeds(tokenizer, texts: list[str], max_length: int) -> dict[str, np.ndarray]:
    """The training tokenizer's feeds (the serving codec builds its own from tokenizer.json: export checks
    the two agree)."""
    encoded = encode(tokenizer, texts, max_length)
    return {name: encoded[name].numpy().astype(np.int64) for name in INPUTS}


def onnx_outputs(session, tokenizer, texts: list[str], max_length: int, output: str, batch_size: int = 64) -> np.ndarray:
    return np.concatenate([session.run([output], onnx_feeds(tokenizer, texts[i:i + batch_size], max_length))[0]
                           for i in range(0, len(texts), batch_size)])


def export_fp32(model, tokenizer, path, max_length: int):
    example = encode(tokenizer, ["a short example text", "and a second, somewhat longer example text"], max_length)
    return export_onnx(model, tuple(example[name] for name in INPUTS), path, input_names=INPUTS,
                       dynamic_axes={name: {0: "batch", 1: "sequence"} for name in INPUTS})


def median_length_text(texts: list[str], tokenizer) -> str:
    lengths = [len(tokenizer(text)["input_ids"]) for text in texts]
    return texts[int(np.argsort(lengths)[len(lengths) // 2])]


def run(ctx: StageContext) -> None:
    config, settings = ctx.config, ctx.config.optimize
    torch.set_num_threads(settings.threads)
    model, tokenizer, labels = load_trained(ctx)
    test, valid = load_split(ctx, "test"), load_split(ctx, "valid")
    texts, y, max_length = test["text"].tolist(), label_ids(test, labels), config.model.max_length
    threads = SessionSettings(intra_op_threads=settings.threads, inter_op_threads=1)
    with tracking.temporary_dir() as tmp:
        paths = {FP32: export_fp32(model, tokenizer, tmp / "fp32.onnx", max_length)}
        sessions = {FP32: open_session(paths[FP32], threads)}
        torch_logits = predict_logits(model, tokenizer, texts, max_length)
        parity = check_parity(torch_logits, onnx_outputs(sessions[FP32], tokenizer, texts, max_length, LOGITS),
                              atol=settings.parity_atol)
        mlflow.log_metrics(parity.as_metrics("test_onnx_logits"))
        log.info("ONNX fp32 logits parity on %d test texts: max |diff| %.2e", parity.rows, parity.max_abs_diff)
        if "dynamic" in settings.quantization:
            paths["onnx_int8_dynamic"] = quantize_dynamic_int8(paths[FP32], tmp / "int8_dynamic.onnx")
        if "static" in settings.quantization:
            calibration = [onnx_feeds(tokenizer, [text], max_length) for text in valid["text"].head(settings.calibration_rows)]
            paths["onnx_int8_static"] = quantize_static_int8(paths[FP32], tmp / "int8_static.onnx", calibration,
                                                             symbolic_shapes=False)
        for name, path in paths.items():
            sessions.setdefault(name, open_session(path, threads))
        scored = {name: onnx_outputs(session, tokenizer, texts, max_length, PROBABILITIES, batch_size=1)
                  for name, session in sessions.items()}  # as a single request is served
        quality = {name: text_metrics("test", y, p)["test_macro_f1"] for name, p in scored.items()}
        batch_effect = {name: float(np.abs(onnx_outputs(session, tokenizer, texts, max_length, PROBABILITIES)
                                           - scored[name]).max()) for name, session in sessions.items()}
        quality[TORCH] = text_metrics("test", y, softmax(torch_logits))["test_macro_f1"]
        one, batch = median_length_text(texts, tokenizer), (texts * 32)[:32]
        feeds1, feeds32 = onnx_feeds(tokenizer, [one], max_length), onnx_feeds(tokenizer, batch, max_length)
        torch1, torch32 = encode(tokenizer, [one], max_length), encode(tokenizer, batch, max_length)
        with torch.no_grad():
            variants = [Variant(TORCH, paths[FP32].stat().st_size / 1e6, lambda: model(**torch1), lambda: model(**torch32),
                                quality[TORCH])]
            variants += [Variant(name, path.stat().st_size / 1e6,
                                 lambda s=sessions[name]: s.run([PROBABILITIES], feeds1),
                                 lambda s=sessions[name]: s.run([PROBABILITIES], feeds32), quality[name])
                         for name, path in paths.items()]
            table = speed_table(variants, repeats=settings.latency_repeats, quality_name="test_macro_f1")
        table[BATCH_EFFECT] = [batch_effect.get(name, 0.0) for name in table.index]  # torch eager: exact
        shipped, reason = choose_variant(table, fp32=FP32, candidates=[n for n in paths if n != FP32],
                                         quality_name="test_macro_f1", max_drop=settings.max_quality_drop,
                                         max_batch_effect=settings.max_batch_effect)
        mlflow.log_artifact(str(paths[shipped]), "shipped")
    shipped_artifact = "shipped/" + paths[shipped].name
    note = cpu_note()
    log.info("speed table (%s threads; %s):\n%s\n%s", settings.threads, note, table.round(4).to_string(), reason)
    mlflow.log_table(table.reset_index(), "optimize/table.json")
    mlflow.log_text(f"{note}\nthreads: {settings.threads}\n\n{table.round(4).to_string()}\n\n{reason}\n",
                    "optimize/table.txt")
    mlflow.log_metrics({f"{name}_{column}": float(value) for name, row in table.iterrows() for column, value in row.items()})
    mlflow.set_tags({"shipped_variant": shipped, "variant_decision": reason, "cpu_flags": note})
    tracking.log_json({"variant": shipped, "artifact": shipped_artifact, "reason": reason, "cpu": note,
                       "table": table.reset_index().to_dict(orient="records")}, "optimize.json")
    ctx.summary |= {"speed_table": f"Speed and quality, {settings.threads} threads ({note}):\n{table.round(4).to_string()}",
                    "shipped_variant": reason, "onnx_logits_parity_max_abs_diff": parity.max_abs_diff}
