"""onnxruntime INT8 quantization and the size / latency / throughput / quality table, for vision and text.

Two ways to quantize, both reported: dynamic (weights int8 ahead of time, activations scaled per batch at
run time: what transformers gain from) and static QDQ (activations scaled from a calibration set of real
validation inputs, per-channel weights: what convolutions need). A variant ships only if its quality
drop against fp32 stays within the configured bound (`choose_variant`), and the table says why.

int8 speed depends on the CPU (VNNI instructions): every table is printed and logged with the CPU's flags.
"""

from __future__ import annotations

import logging
import statistics
import time
from contextlib import chdir, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)
INT8_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")


def cpu_flags() -> list[str]:
    """The CPU features int8 speed depends on, as /proc/cpuinfo names them (empty where unknown)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return [flag for flag in INT8_FLAGS if flag in flags]


def cpu_note() -> str:
    flags = cpu_flags()
    vnni = any("vnni" in flag for flag in flags)
    return (f"CPU flags: {', '.join(flags) or 'unknown'}"
            + ("" if vnni else " (no VNNI: int8 matrix products gain little here; see docs)"))


@contextmanager
def quiet_quantizer():
    """onnxruntime's quantizer logs one INFO line per tensor through the root logger: hundreds for a BERT."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_dynamic_int8(source: Path, target: Path, *, per_channel: bool = False, reduce_range: bool = False) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet_quantizer():
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=per_channel,
                         reduce_range=reduce_range)
    return target


class _Calibration:
    """onnxruntime's CalibrationDataReader over a list of feeds dicts (real validation inputs)."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]):
        self.feeds = iter(feeds)

    def get_next(self):
        return next(self.feeds, None)


def quantize_static_int8(source: Path, target: Path, calibration: list[dict[str, np.ndarray]], *,
                         per_channel: bool = True, reduce_range: bool = False,
                         symbolic_shapes: bool = True) -> Path:
    """QDQ, signed int8 activations and weights; `quant_pre_process` first (shape inference, Conv+BN fusion).
    `symbolic_shapes=False` for graphs onnxruntime's symbolic shape inference cannot follow (a BERT's
    `Min(512, sequence)` position slice): ONNX's own shape inference and the optimizer still run."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = target.with_name(target.stem + "-prepared.onnx")
    # onnxruntime's symbolic shape inference dumps `sym_shape_infer_temp.onnx` (+ a 90 MB weights file) into
    # the working directory when it gives up: keep such debris beside the target, never in the repo.
    with quiet_quantizer(), chdir(target.parent):
        quant_pre_process(str(source.resolve()), str(prepared.resolve()), skip_symbolic_shape=not symbolic_shapes)
        quantize_static(str(prepared), str(target), _Calibration(calibration), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=per_channel,
                        reduce_range=reduce_range, calibrate_method=CalibrationMethod.MinMax)
    prepared.unlink(missing_ok=True)
    return target


def median_ms(run: Callable[[], object], repeats: int, warmup: int = 10) -> float:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


@dataclass(frozen=True)
class Variant:
    """One way to run the model: its file size, a batch-1 and a batch-32 call, its quality on the test split."""

    name: str
    size_mb: float
    batch1: Callable[[], object]
    batch32: Callable[[], object]
    quality: float


def speed_table(variants: list[Variant], *, repeats: int, quality_name: str) -> pd.DataFrame:
    """Measured one after another in one process, same threads: the ratios are what to read."""
    rows = []
    for variant in variants:
        latency = median_ms(variant.batch1, repeats)
        batch_ms = median_ms(variant.batch32, max(repeats // 10, 5), warmup=2)
        rows.append({"variant": variant.name, "size_mb": variant.size_mb, "latency_ms_b1": latency,
                     "throughput_b32_per_s": 32_000 / batch_ms, quality_name: variant.quality})
        log.info("%s: %.1f MB, %.2f ms at batch 1, %.0f/s at batch 32, %s %.4f", variant.name, variant.size_mb,
                 latency, 32_000 / batch_ms, quality_name, variant.quality)
    table = pd.DataFrame(rows).set_index("variant")
    table["speedup_b1_vs_first"] = table["latency_ms_b1"].iloc[0] / table["latency_ms_b1"]
    return table


BATCH_EFFECT = "batch_effect"  # max |change of a probability| when a row is scored alone vs in a batch


def choose_variant(table: pd.DataFrame, *, fp32: str, candidates: list[str], quality_name: str,
                   max_drop: float, max_batch_effect: float | None = None) -> tuple[str, str]:
    """The fastest candidate whose quality is within `max_drop` of fp32 (and, when the table measures it,
    whose answers move by at most `max_batch_effect` with the batch a row is scored in: dynamic int8 scales
    activations per batch); fp32 when none qualifies. Says why."""
    base = table.loc[fp32, quality_name]

    def problem(name: str) -> str | None:
        found = []
        drop = base - table.loc[name, quality_name]
        if drop > max_drop:
            found.append(f"{quality_name} {table.loc[name, quality_name]:.4f}, drop {drop:+.4f} > {max_drop}")
        if max_batch_effect is not None and BATCH_EFFECT in table and table.loc[name, BATCH_EFFECT] > max_batch_effect:
            found.append(f"a probability moves by up to {table.loc[name, BATCH_EFFECT]:.3f} with the batch it is "
                         f"scored in > {max_batch_effect}")
        return f"{name} ({'; '.join(found)})" if found else None

    allowed = [name for name in candidates if problem(name) is None]
    rejected = [problem(name) for name in candidates if name not in allowed]
    if not allowed:
        return fp32, f"{fp32} ships: every int8 variant failed a bound: {'; '.join(rejected)}"
    best = min(allowed, key=lambda name: table.loc[name, "latency_ms_b1"])
    if table.loc[best, "latency_ms_b1"] >= table.loc[fp32, "latency_ms_b1"]:
        return fp32, f"{fp32} ships: no int8 variant within the quality bound is faster than it"
    return best, (f"{best} ships: {table.loc[best, 'latency_ms_b1']:.2f} ms vs {table.loc[fp32, 'latency_ms_b1']:.2f} ms "
                  f"at batch 1, {quality_name} {table.loc[best, quality_name]:.4f} vs {base:.4f} "
                  f"(drop within {max_drop})" + (f"; rejected: {'; '.join(rejected)}" if rejected else ""))
