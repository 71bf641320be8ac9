"""Text classification metrics, `<split>_<metric>`: the common ones plus macro-F1 under its usual name."""

from __future__ import annotations

import numpy as np

from pipelines.common.bootstrap import macro_f1
from pipelines.common.metrics import classification_metrics


def text_metrics(split: str, y: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """Decisions are the most likely class (no tuned threshold for text), so binary and multi-class
    models report the same names: accuracy, macro-F1, ROC-AUC, log loss."""
    predicted = probabilities.argmax(axis=1)
    metrics = classification_metrics(split, y, probabilities, predicted)
    metrics.pop(f"{split}_f1", None)
    metrics[f"{split}_macro_f1"] = macro_f1(y, np.eye(probabilities.shape[1])[predicted])
    return metrics
