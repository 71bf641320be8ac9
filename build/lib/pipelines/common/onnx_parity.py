"""The ONNX parity check shared by every project: prove the exported graph matches the native model.

The parity check is what makes ONNX export safe: the exported graph must give the same probabilities
as the model we evaluated, on a whole split, or the pipeline fails and says where and by how much.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class ParityError(AssertionError):
    """The ONNX model disagrees with the native model beyond the tolerance."""


@dataclass(frozen=True)
class ParityReport:
    rows: int
    max_abs_diff: float
    mean_abs_diff: float
    worst_row: int
    atol: float

    def as_metrics(self, prefix: str = "onnx") -> dict[str, float]:
        return {f"{prefix}_max_abs_diff": self.max_abs_diff, f"{prefix}_mean_abs_diff": self.mean_abs_diff}


def check_parity(native: np.ndarray, exported: np.ndarray, *, atol: float) -> ParityReport:
    """Compare two [rows, classes] probability arrays; raise naming the worst row when they differ."""
    native = np.asarray(native, dtype=np.float64)
    exported = np.asarray(exported, dtype=np.float64)
    if len(native) == 0:
        raise ParityError("no rows to compare: parity on an empty split proves nothing")
    if native.shape != exported.shape:
        raise ParityError(f"shape mismatch: native {native.shape} vs ONNX {exported.shape}")
    if not np.all(np.isfinite(exported)):
        bad = int(np.argwhere(~np.isfinite(exported))[0][0])
        raise ParityError(f"ONNX output is not finite at row {bad}: {exported[bad].tolist()}")
    gap = np.abs(native - exported).reshape(len(native), -1).max(axis=1)
    worst = int(np.argmax(gap))
    report = ParityReport(
        rows=len(gap),
        max_abs_diff=float(gap.max()),
        mean_abs_diff=float(gap.mean()),
        worst_row=worst,
        atol=atol,
    )
    if report.max_abs_diff > atol:
        raise ParityError(
            f"ONNX parity failed on {int((gap > atol).sum())} of {len(gap)} rows: worst row {worst} "
            f"differs by {report.max_abs_diff:.3g} > {atol:g} (native {native[worst].tolist()}, "
            f"ONNX {exported[worst].tolist()})"
        )
    return report
