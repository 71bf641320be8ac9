"""Binary churn metrics under one naming rule, `<split>_<metric>`, so every run reads the same."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss

from pipelines.common.bootstrap import log_loss, roc_auc


def probability_metrics(split: str, y_true, p_churn) -> dict[str, float]:
    """Threshold-free quality: ranking (ROC-AUC, PR-AUC) and calibration (log loss, Brier). ROC-AUC and
    log loss are the repo's own (pipelines.common.bootstrap), the ones every promotion rule uses."""
    y_true, p_churn = np.asarray(y_true, dtype=int), np.asarray(p_churn, dtype=float)
    return {
        f"{split}_roc_auc": roc_auc(y_true, p_churn),
        f"{split}_pr_auc": float(average_precision_score(y_true, p_churn)),
        f"{split}_log_loss": log_loss(y_true, p_churn),
        f"{split}_brier": float(brier_score_loss(y_true, p_churn)),
    }
