"""Classification metrics under one naming rule, `<split>_<metric>`, so every run reads the same."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score


def probability_metrics(split: str, y_true, p_churn) -> dict[str, float]:
    """Threshold-free quality: ranking (ROC-AUC, PR-AUC) and calibration (log loss, Brier)."""
    y_true, p_churn = np.asarray(y_true), np.asarray(p_churn)
    return {
        f"{split}_roc_auc": float(roc_auc_score(y_true, p_churn)),
        f"{split}_pr_auc": float(average_precision_score(y_true, p_churn)),
        f"{split}_log_loss": float(log_loss(y_true, np.clip(p_churn, 1e-7, 1 - 1e-7), labels=[0, 1])),
        f"{split}_brier": float(brier_score_loss(y_true, p_churn)),
    }
