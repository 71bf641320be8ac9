"""The quality gate: ship the tuned model only when it beats the baseline by more than noise.

On Telco the tuned XGBoost and the logistic regression baseline are within a few thousandths of
ROC-AUC, well inside split-to-split noise. A paired bootstrap over the valid rows (both models scored
on the same resampled customers) estimates how often the candidate really is better; it ships only
when that probability reaches the configured confidence.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import log_loss


def rank_roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """ROC-AUC as the Mann-Whitney statistic: equal to sklearn's, ~100x faster, which matters when a
    bootstrap computes it thousands of times."""
    positives = y_true == 1
    n_pos, n_neg = positives.sum(), len(y_true) - positives.sum()
    ranks = rankdata(scores)
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


METRICS = {
    "roc_auc": (rank_roc_auc, True),  # (function, higher is better)
    "log_loss": (lambda y, p: log_loss(y, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1]), False),
}


@dataclass(frozen=True)
class GateDecision:
    metric: str
    candidate: float
    baseline: float
    mean_gain: float  # candidate minus baseline, sign flipped for lower-is-better metrics
    gain_ci_low: float
    gain_ci_high: float
    probability_better: float
    required: float
    passed: bool

    def as_dict(self) -> dict:
        return asdict(self)

    def reason(self, candidate_name: str, baseline_name: str) -> str:
        verdict = "ships" if self.passed else f"does not ship; {baseline_name} ships"
        return (f"{candidate_name} {verdict}: valid {self.metric} {self.candidate:.4f} vs {self.baseline:.4f}, "
                f"P(better) = {self.probability_better:.2f} (needed {self.required:.2f}), "
                f"gain 90% CI [{self.gain_ci_low:+.4f}, {self.gain_ci_high:+.4f}]")


def paired_bootstrap(y_true, p_candidate, p_baseline, *, metric: str, samples: int, confidence: float,
                     seed: int) -> GateDecision:
    score, higher_is_better = METRICS[metric]
    y_true, p_candidate, p_baseline = map(np.asarray, (y_true, p_candidate, p_baseline))
    sign = 1.0 if higher_is_better else -1.0
    rng = np.random.default_rng(seed)
    gains = []
    for _ in range(samples):
        idx = rng.integers(0, len(y_true), len(y_true))
        if len(np.unique(y_true[idx])) < 2:
            continue  # a resample with one class has no ROC-AUC
        gains.append(sign * (score(y_true[idx], p_candidate[idx]) - score(y_true[idx], p_baseline[idx])))
    if not gains:
        raise ValueError(f"paired bootstrap: none of {samples} resamples of {len(y_true)} rows held both classes")
    gains = np.asarray(gains)
    probability = float((gains > 0).mean())
    return GateDecision(
        metric=metric,
        candidate=float(score(y_true, p_candidate)),
        baseline=float(score(y_true, p_baseline)),
        mean_gain=float(gains.mean()),
        gain_ci_low=float(np.quantile(gains, 0.05)),
        gain_ci_high=float(np.quantile(gains, 0.95)),
        probability_better=probability,
        required=confidence,
        passed=probability >= confidence,
    )
