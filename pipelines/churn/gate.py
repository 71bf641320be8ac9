"""The quality gate: ship the tuned model only when it beats the baseline by more than noise.

On Telco the tuned XGBoost and the logistic regression baseline are within a few thousandths of
ROC-AUC, well inside split-to-split noise. A paired bootstrap over the valid rows (both models scored
on the same resampled customers) estimates how often the candidate really is better; it ships only
when that probability reaches the configured confidence.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from pipelines.common.bootstrap import paired_bootstrap_gains, score


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
    y_true, p_candidate, p_baseline = np.asarray(y_true, dtype=int), np.asarray(p_candidate), np.asarray(p_baseline)
    gains = paired_bootstrap_gains(y_true, p_baseline, p_candidate, metric=metric, samples=samples, seed=seed)
    probability = float((gains > 0).mean())
    return GateDecision(
        metric=metric,
        candidate=score(metric, y_true, p_candidate),
        baseline=score(metric, y_true, p_baseline),
        mean_gain=float(gains.mean()),
        gain_ci_low=float(np.quantile(gains, 0.05)),
        gain_ci_high=float(np.quantile(gains, 0.95)),
        probability_better=probability,
        required=confidence,
        passed=probability >= confidence,
    )
