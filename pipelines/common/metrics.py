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
