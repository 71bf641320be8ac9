"""Is model B really better than model A on these rows, or only lucky? One paired bootstrap, one decision.

Used with the same meaning in three places: a project's quality gate (tuned candidate vs baseline, on the
valid split), the export stage's champion comparison (new version vs the current champion, on the test
split) and monitoring's retraining loop (challenger vs champion, on recent labelled traffic). Both models
are scored on the same resampled rows, so the luck they share cancels out and only their difference is
measured; the share of resamples where B wins estimates P(B better), and B wins the decision when that
reaches the required confidence.

Binary and multi-class alike: labels are class indices, probabilities a [rows, classes] matrix (a 1-D
vector is P(class 1) of a binary model). ROC-AUC is one-vs-rest, macro-averaged, for more than two classes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
from scipy.stats import rankdata

PROBABILITY_FLOOR = float(np.finfo(np.float64).eps)  # log loss clips probabilities here, as scikit-learn does
CI_QUANTILES = (0.05, 0.95)  # the reported 90 % interval of the gain


def probability_matrix(p, positive: int = 1) -> np.ndarray:
    """[rows, classes] float64; a 1-D vector is read as P(class `positive`) of a binary model."""
    p = np.asarray(p, dtype=np.float64)
    if p.ndim > 1:
        return p
    return np.column_stack([p, 1 - p]) if positive == 0 else np.column_stack([1 - p, p])


def binary_roc_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """ROC-AUC as the Mann-Whitney statistic: P(a random positive is scored above a random negative).
    Written out because a bootstrap calls it thousands of times, and scikit-learn's input checks cost
    more than the computation; tests/common/test_bootstrap.py checks it against roc_auc_score."""
    ranks = rankdata(score)
    positives = int(positive.sum())
    negatives = len(positive) - positives
    return float((ranks[positive].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Binary: on P(class 1). Multi-class: one-vs-rest per class, averaged (scikit-learn's macro 'ovr')."""
    y, p = np.asarray(y), probability_matrix(p)
    if p.shape[1] == 2:
        return binary_roc_auc(y == 1, p[:, 1])
    return float(np.mean([binary_roc_auc(y == k, p[:, k]) for k in range(p.shape[1])]))


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    """Mean cross-entropy, probabilities clipped at PROBABILITY_FLOOR: the repo's one log loss."""
    p = np.clip(probability_matrix(p), PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
    return float(-np.mean(np.log(p[np.arange(len(p)), np.asarray(y, dtype=int)])))


def macro_f1(y: np.ndarray, p: np.ndarray) -> float:
    """F1 per class of the most likely class, averaged over the classes present in `y` or predicted."""
    y, predicted = np.asarray(y, dtype=int), probability_matrix(p).argmax(axis=1)
    scores = []
    for k in np.union1d(y, predicted):
        true_positive = np.sum((predicted == k) & (y == k))
        denominator = np.sum(predicted == k) + np.sum(y == k)
        scores.append(2 * true_positive / denominator if denominator else 0.0)
    return float(np.mean(scores))


# metric name -> (function of (class indices, probabilities), higher is better?)
METRICS: dict[str, tuple[Callable[[np.ndarray, np.ndarray], float], bool]] = {
    "roc_auc": (roc_auc, True),
    "log_loss": (log_loss, False),
    "macro_f1": (macro_f1, True),
}


def score(metric: str, y: np.ndarray, p: np.ndarray) -> float:
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r} (known: {', '.join(METRICS)})")
    return METRICS[metric][0](y, p)


def oriented_gain(metric: str, y: np.ndarray, p_a: np.ndarray, p_b: np.ndarray) -> float:
    """How much better B is than A on these rows (positive = better, whatever the metric's sign)."""
    function, higher_is_better = METRICS[metric]
    gain = function(y, p_b) - function(y, p_a)
    return gain if higher_is_better else -gain


def paired_bootstrap_gains(y, p_a, p_b, *, metric: str, samples: int, seed: int) -> np.ndarray:
    """B's gain over A on each of `samples` paired resamples (rows drawn with replacement). A resample
    that misses a class of `y` is skipped: it has no ROC-AUC and says little about anything else."""
    y = np.asarray(y, dtype=int)
    p_a, p_b = probability_matrix(p_a), probability_matrix(p_b)
    classes = np.unique(y)
    rng = np.random.default_rng(seed)
    gains = []
    for _ in range(samples):
        rows = rng.integers(0, len(y), len(y))
        if len(np.unique(y[rows])) < len(classes) or len(classes) < 2:
            continue
        gains.append(oriented_gain(metric, y[rows], p_a[rows], p_b[rows]))
    if not gains:
        raise ValueError(f"paired bootstrap: none of {samples} resamples of {len(y)} rows held every class")
    return np.asarray(gains)


@dataclass(frozen=True)
class Decision:
    """Does the challenger (B) beat the incumbent (A)? The evidence, and the verdict at `required`."""

    metric: str
    rows: int
    resamples: int
    incumbent: float  # A's score on all rows
    challenger: float  # B's score on all rows
    mean_gain: float  # B minus A, sign flipped for lower-is-better metrics
    gain_ci_low: float
    gain_ci_high: float
    p_better: float  # share of resamples where B scores better
    required: float
    passed: bool

    def as_dict(self) -> dict:
        return asdict(self)

    def as_metrics(self, prefix: str) -> dict[str, float]:
        """`<prefix>_p_better`, `<prefix>_challenger`, ...: every number, for MLflow."""
        return {f"{prefix}_{key}": float(value) for key, value in self.as_dict().items() if key != "metric"}

    def reason(self, challenger: str, incumbent: str, split: str) -> str:
        verdict = "beats" if self.passed else "does not beat"
        return (f"{challenger} {verdict} {incumbent}: {split} {self.metric} {self.challenger:.4f} vs "
                f"{self.incumbent:.4f}, P(better) = {self.p_better:.2f} (needed {self.required:.2f}), "
                f"gain 90% CI [{self.gain_ci_low:+.4f}, {self.gain_ci_high:+.4f}] over {self.resamples} "
                f"paired resamples of {self.rows} rows")


def decide(y, p_incumbent, p_challenger, *, metric: str, samples: int, confidence: float, seed: int) -> Decision:
    """The repo's one promotion rule: B wins when P(B better) over paired resamples >= confidence."""
    y = np.asarray(y, dtype=int)
    p_a, p_b = probability_matrix(p_incumbent), probability_matrix(p_challenger)
    if not len(y) == len(p_a) == len(p_b):
        raise ValueError(f"length mismatch: {len(y)} labels, {len(p_a)} and {len(p_b)} rows of probabilities")
    if len(np.unique(y)) < 2:
        raise ValueError(f"the rows hold one class only ({len(y)} rows): cannot compare two models on them")
    gains = paired_bootstrap_gains(y, p_a, p_b, metric=metric, samples=samples, seed=seed)
    p_better = float((gains > 0).mean())
    low, high = (float(q) for q in np.quantile(gains, CI_QUANTILES))
    return Decision(metric=metric, rows=len(y), resamples=len(gains), incumbent=score(metric, y, p_a),
                    challenger=score(metric, y, p_b), mean_gain=float(gains.mean()), gain_ci_low=low,
                    gain_ci_high=high, p_better=p_better, required=confidence, passed=p_better >= confidence)
