"""What every classifier that decides by its most likely class (vision, text) logs in its evaluate stage."""

from __future__ import annotations

import mlflow
import numpy as np
from sklearn.metrics import classification_report, confusion_matrix

from pipelines.common.metrics import argmax_metrics, expected_calibration_error
from pipelines.common.plots import log_confusion_matrix, log_reliability_diagram


def log_argmax_evaluation(y: np.ndarray, probabilities: np.ndarray, labels: list[str], calibration_bins: int) -> dict[str, float]:
    """Test accuracy, macro-F1, ROC-AUC, log loss and ECE as metrics; per-class precision/recall, the
    confusion matrix and the reliability diagram as artifacts under evaluate/. Returns the metrics."""
    predicted = probabilities.argmax(axis=1)
    classes = list(range(len(labels)))
    metrics = argmax_metrics("test", y, probabilities)
    metrics["test_ece"] = expected_calibration_error(y, probabilities, calibration_bins)
    mlflow.log_metrics(metrics)
    report = classification_report(y, predicted, labels=classes, target_names=labels, output_dict=True, zero_division=0)
    mlflow.log_dict(report, "evaluate/classification_report.json")
    log_confusion_matrix(confusion_matrix(y, predicted, labels=classes), labels, "evaluate/confusion_matrix.png")
    log_reliability_diagram(y, probabilities, calibration_bins, "evaluate/reliability.png")
    return metrics
