"""Classification quality under one naming rule, `<split>_<metric>`, for every project and for monitoring.

Labels are class indices and probabilities a [rows, classes] matrix, so binary and multi-class models
are scored by the same function: ROC-AUC (one-vs-rest, macro, for more than two classes) and log loss
come from pipelines.common.bootstrap (the functions the promotion rule uses), accuracy and F1 from the
decisions the model actually makes (binary: at its threshold; multi-class: the most likely class).
"""

from __future__ import annotations

import numpy as np

from pipelines.common.bootstrap import log_loss, macro_f1, probability_matrix, roc_auc


def classification_metrics(split: str, y: np.ndarray, probabilities: np.ndarray, predicted: np.ndarray,
                           positive: int = 1) -> dict[str, float]:
    """Quality of decided rows. Undefined values (ROC-AUC when a class is absent) are NaN, not errors:
    a monitoring window may hold one class only."""
    y, predicted = np.asarray(y, dtype=int), np.asarray(predicted, dtype=int)
    p = probability_matrix(probabilities)
    every_class = len(np.unique(y)) == p.shape[1]
    metrics = {
        "roc_auc": roc_auc(y, p) if every_class else float("nan"),
        "accuracy": float(np.mean(predicted == y)) if len(y) else float("nan"),
        "log_loss": log_loss(y, p) if len(y) else float("nan"),
    }
    if p.shape[1] == 2:
        true_positive = np.sum((predicted == positive) & (y == positive))
        denominator = np.sum(predicted == positive) + np.sum(y == positive)
        metrics["f1"] = float(2 * true_positive / denominator) if denominator else 0.0
    else:
        metrics["macro_f1"] = macro_f1(y, np.eye(p.shape[1])[predicted]) if len(y) else float("nan")
    return {f"{split}_{name}" if split else name: value for name, value in metrics.items()}


def calibration_bins(y: np.ndarray, probabilities: np.ndarray, bins: int) -> list[tuple[float, float, int]]:
    """(mean confidence, accuracy, rows) per equal-width confidence bin of the predicted class."""
    p = probability_matrix(probabilities)
    confidence, correct = p.max(axis=1), (p.argmax(axis=1) == np.asarray(y, dtype=int))
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    return [(float(confidence[which == b].mean()), float(correct[which == b].mean()), int((which == b).sum()))
            for b in range(bins) if (which == b).any()]


def expected_calibration_error(y: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> float:
    """ECE: the row-weighted gap between confidence and accuracy over the bins (0 = perfectly calibrated)."""
    table = calibration_bins(y, probabilities, bins)
    rows = sum(count for _, _, count in table)
    return float(sum(count * abs(confidence - accuracy) for confidence, accuracy, count in table) / max(rows, 1))


def argmax_metrics(split: str, y: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """Models that decide by the most likely class (vision, text: no tuned threshold), binary or
    multi-class, under the same names: accuracy, macro-F1, ROC-AUC, log loss."""
    predicted = probabilities.argmax(axis=1)
    metrics = classification_metrics(split, y, probabilities, predicted)
    metrics.pop(f"{split}_f1", None)
    metrics[f"{split}_macro_f1"] = macro_f1(y, np.eye(probabilities.shape[1])[predicted])
    return metrics


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise, numerically stable: logits from a torch model -> class probabilities."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)
