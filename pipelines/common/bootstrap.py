"""Paired bootstrap: is model B really better than model A on these rows, or only lucky?

Used twice with the same meaning: by a project's quality gate (tuned candidate vs baseline, on the
valid split) and by monitoring's retraining loop (challenger vs champion, on recent labelled traffic).
Both models are scored on the same resampled rows, so the luck they share cancels out and only their
difference is measured; the share of resamples where B wins estimates P(B better).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.stats import rankdata

PROBABILITY_FLOOR = float(np.finfo(np.float64).eps)  # log loss clips probabilities here, as scikit-learn does


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC-AUC as the Mann-Whitney statistic: P(a random positive is scored above a random negative).
    Written out because a bootstrap calls it thousands of times, and scikit-learn's input checks cost
    more than the computation; tests/common/test_bootstrap.py checks it against roc_auc_score."""
    ranks = rankdata(p)
    positives = int(y.sum())
    negatives = len(y) - positives
    return float((ranks[y == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


# metric name -> (function of (y_true, p_positive), higher is better?)
METRICS: dict[str, tuple[Callable[[np.ndarray, np.ndarray], float], bool]] = {
    "roc_auc": (roc_auc, True),
    "log_loss": (log_loss, False),
}


def score(metric: str, y: np.ndarray, p: np.ndarray) -> float:
    return METRICS[metric][0](y, p)


def oriented_gain(metric: str, y: np.ndarray, p_a: np.ndarray, p_b: np.ndarray) -> float:
    """How much better B is than A on these rows (positive = better, whatever the metric's sign)."""
    function, higher_is_better = METRICS[metric]
    gain = function(y, p_b) - function(y, p_a)
    return gain if higher_is_better else -gain


def paired_bootstrap_gains(y, p_a, p_b, *, metric: str, samples: int, seed: int) -> np.ndarray:
    """B's gain over A on each of `samples` paired resamples (rows drawn with replacement)."""
    y = np.asarray(y, dtype=int)
    p_a, p_b = np.asarray(p_a, dtype=float), np.asarray(p_b, dtype=float)
    rng = np.random.default_rng(seed)
    gains = []
    for _ in range(samples):
        rows = rng.integers(0, len(y), len(y))
        if y[rows].min() == y[rows].max():
            continue  # a resample with one class has no ROC-AUC and says little about anything else
        gains.append(oriented_gain(metric, y[rows], p_a[rows], p_b[rows]))
    if not gains:
        raise ValueError(f"paired bootstrap: none of {samples} resamples of {len(y)} rows held both classes")
    return np.asarray(gains)
