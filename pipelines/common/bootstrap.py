"""Is model B really better than model A on these rows, or only lucky? One paired bootstrap, one decision.

Used with the same meaning in three places: a project's quality gate (tuned candidate vs baseline, on the
valid split), the export stage's champion comparison (new version vs the current champion, on the test
split) and monitoring's retraining loop (challenger vs champion, on recent labelled traffic). Both models
are scored on the same resampled rows, so the luck they share cancels out and only their difference is
measured. B wins the decision when the lower end of its gain's interval (the (1 - confidence) quantile
of the resampled gains) clears `min_gain`: a gain that is only likely (P(B better) high) but may be tiny
does not win. With min_gain 0 this is P(B better) >= confidence, the rule before the margin existed.

Binary and multi-class alike: labels are class indices, probabilities a [rows, classes] matrix (a 1-D
vector is P(class 1) of a binary model). ROC-AUC is one-vs-rest, macro-averaged, for more than two classes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

PROBABILITY_FLOOR = float(np.finfo(np.float64).eps)  # log loss clips probabilities here, as scikit-learn does


def probability_matrix(p, positive: int = 1) -> np.ndarray:
    """[rows, classes] float64; a 1-D vector is read as P(class `positive`) of a binary model."""
    p = np.asarray(p, dtype=np.float64)
    if p.ndim > 1:
        return p
    return np.column_stack([p, 1 - p]) if positive == 0 else np.column_stack([1 - p, p])


# Every metric is computed on row weights, [resamples, rows]: a resample is the count of each row in it,
# so the bootstrap scores all its resamples with a few matrix operations (sorted once) instead of one
# Python call and one sort per resample; the plain metric is the same function with weights of one.
RESAMPLE_CELLS = 4_000_000  # weights scored at once (resamples x rows, float64: 32 MB)


def unit_weights(rows: int) -> np.ndarray:
    return np.ones((1, rows))


def binary_roc_auc(positive: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC-AUC per weight row, as the Mann-Whitney statistic: P(a random positive is scored above a random
    negative), a tie counting one half (average ranks). Rows are sorted by score once for all resamples;
    tests/common/test_bootstrap.py checks it against roc_auc_score."""
    order = np.argsort(score, kind="stable")
    ranked = np.asarray(score)[order]
    ties = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])  # first position of each run of equal scores
    w, is_positive = weights[:, order], np.asarray(positive)[order]
    positives, negatives = w * is_positive, w * ~is_positive
    if len(ties) < len(ranked):  # equal scores: one run each, so a tie counts one half
        positives, negatives = np.add.reduceat(positives, ties, axis=1), np.add.reduceat(negatives, ties, axis=1)
    below = np.cumsum(negatives, axis=1) - negatives
    return (positives * (below + 0.5 * negatives)).sum(axis=1) / (positives.sum(axis=1) * negatives.sum(axis=1))


def weighted_roc_auc(y: np.ndarray, p: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Binary: on P(class 1). Multi-class: one-vs-rest per class, averaged (scikit-learn's macro 'ovr')."""
    y, p = np.asarray(y), probability_matrix(p)
    if p.shape[1] == 2:
        return binary_roc_auc(y == 1, p[:, 1], weights)
    return np.mean([binary_roc_auc(y == k, p[:, k], weights) for k in range(p.shape[1])], axis=0)


def weighted_log_loss(y: np.ndarray, p: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mean cross-entropy, probabilities clipped at PROBABILITY_FLOOR: the repo's one log loss."""
    p = np.clip(probability_matrix(p), PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
    losses = -np.log(p[np.arange(len(p)), np.asarray(y, dtype=int)])
    return weights @ losses / weights.sum(axis=1)


def weighted_macro_f1(y: np.ndarray, p: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """F1 per class of the most likely class, averaged over the classes present in `y` or predicted."""
    y, predicted = np.asarray(y, dtype=int), probability_matrix(p).argmax(axis=1)
    classes = np.arange(max(y.max(initial=0), predicted.max(initial=0)) + 1)
    truth, chosen = y[:, None] == classes, predicted[:, None] == classes  # [rows, classes]
    true_positives, denominators = weights @ (truth & chosen), weights @ truth + weights @ chosen
    present = denominators > 0
    f1 = np.divide(2 * true_positives, denominators, out=np.zeros_like(denominators), where=present)
    return f1.sum(axis=1) / present.sum(axis=1)


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    return float(weighted_roc_auc(y, p, unit_weights(len(y)))[0])


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    return float(weighted_log_loss(y, p, unit_weights(len(y)))[0])


def macro_f1(y: np.ndarray, p: np.ndarray) -> float:
    return float(weighted_macro_f1(y, p, unit_weights(len(y)))[0])


# metric name -> (function of (class indices, probabilities), higher is better?)
METRICS: dict[str, tuple[Callable[[np.ndarray, np.ndarray], float], bool]] = {
    "roc_auc": (roc_auc, True),
    "log_loss": (log_loss, False),
    "macro_f1": (macro_f1, True),
}
WEIGHTED: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]] = {
    "roc_auc": weighted_roc_auc, "log_loss": weighted_log_loss, "macro_f1": weighted_macro_f1}


def score(metric: str, y: np.ndarray, p: np.ndarray) -> float:
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r} (known: {', '.join(METRICS)})")
    return METRICS[metric][0](y, p)


def oriented_gains(metric: str, y: np.ndarray, p_a: np.ndarray, p_b: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """How much better B is than A on each weighting of the rows (positive = better, whatever the metric's sign)."""
    function, higher_is_better = WEIGHTED[metric], METRICS[metric][1]
    gains = function(y, p_b, weights) - function(y, p_a, weights)
    return gains if higher_is_better else -gains


def resample_counts(draws: np.ndarray, rows: int) -> np.ndarray:
    """[resamples, draws] row indices -> [resamples, rows]: how often each row is in each resample."""
    flat = (np.arange(len(draws))[:, None] * rows + draws).ravel()
    return np.bincount(flat, minlength=len(draws) * rows).reshape(len(draws), rows).astype(np.float64)


def paired_bootstrap_gains(y, p_a, p_b, *, metric: str, samples: int, seed: int) -> np.ndarray:
    """B's gain over A on each of `samples` paired resamples (rows drawn with replacement). A resample
    that misses a class of `y` is skipped: it has no ROC-AUC and says little about anything else."""
    y = np.asarray(y, dtype=int)
    p_a, p_b = probability_matrix(p_a), probability_matrix(p_b)
    classes = np.unique(y)
    rng = np.random.default_rng(seed)
    draws = np.array([rng.integers(0, len(y), len(y)) for _ in range(samples)], dtype=np.int64).reshape(samples, len(y))
    chunk = max(1, RESAMPLE_CELLS // max(len(y), 1))
    gains = []
    for start in range(0, samples, chunk):
        counts = resample_counts(draws[start:start + chunk], len(y))
        held = (counts @ (y[:, None] == classes) > 0).all(axis=1) & (len(classes) >= 2)
        if held.any():
            gains.append(oriented_gains(metric, y, p_a, p_b, counts[held]))
    if not gains:
        raise ValueError(f"paired bootstrap: none of {samples} resamples of {len(y)} rows held every class")
    return np.concatenate(gains)


@dataclass(frozen=True)
class Decision:
    """Does the challenger (B) beat the incumbent (A)? The evidence, and the verdict at `required`."""

    metric: str
    rows: int
    resamples: int
    incumbent: float  # A's score on all rows
    challenger: float  # B's score on all rows
    mean_gain: float  # B minus A, sign flipped for lower-is-better metrics
    gain_ci_low: float  # the gain's (1 - required) quantile: B gains at least this with P = required
    gain_ci_high: float  # its `required` quantile
    p_better: float  # share of resamples where B scores better
    required: float  # the confidence of each end of the interval
    passed: bool
    min_gain: float = 0.0  # the margin gain_ci_low must clear

    def as_dict(self) -> dict:
        return asdict(self)

    def as_metrics(self, prefix: str) -> dict[str, float]:
        """`<prefix>_p_better`, `<prefix>_challenger`, ...: every number, for MLflow."""
        return {f"{prefix}_{key}": float(value) for key, value in self.as_dict().items() if key != "metric"}

    def reason(self, challenger: str, incumbent: str, split: str) -> str:
        verdict = "beats" if self.passed else "does not beat"
        return (f"{challenger} {verdict} {incumbent}: {split} {self.metric} {self.challenger:.4f} vs "
                f"{self.incumbent:.4f}, gain {self.mean_gain:+.4f}, its lower bound at {self.required:.0%} "
                f"{self.gain_ci_low:+.4f} (needed > {self.min_gain:+.4f}; upper {self.gain_ci_high:+.4f}), "
                f"P(better) = {self.p_better:.2f}, over {self.resamples} paired resamples of {self.rows} rows")


def gain_interval(gains: np.ndarray, confidence: float) -> tuple[float, float]:
    """The gain's (1 - confidence) and confidence quantiles: each end holds with P = confidence."""
    low, high = np.quantile(gains, [1 - confidence, confidence])
    return float(low), float(high)


def decide(y, p_incumbent, p_challenger, *, metric: str, samples: int, confidence: float, seed: int,
           min_gain: float = 0.0) -> Decision:
    """The repo's one rule for "is B better than A": B wins when the lower end of its gain's interval
    (paired bootstrap, `confidence`) exceeds `min_gain`. Gate, export and retraining all call it."""
    y = np.asarray(y, dtype=int)
    p_a, p_b = probability_matrix(p_incumbent), probability_matrix(p_challenger)
    if not len(y) == len(p_a) == len(p_b):
        raise ValueError(f"length mismatch: {len(y)} labels, {len(p_a)} and {len(p_b)} rows of probabilities")
    if len(np.unique(y)) < 2:
        raise ValueError(f"the rows hold one class only ({len(y)} rows): cannot compare two models on them")
    gains = paired_bootstrap_gains(y, p_a, p_b, metric=metric, samples=samples, seed=seed)
    low, high = gain_interval(gains, confidence)
    return Decision(metric=metric, rows=len(y), resamples=len(gains), incumbent=score(metric, y, p_a),
                    challenger=score(metric, y, p_b), mean_gain=float(gains.mean()), gain_ci_low=low,
                    gain_ci_high=high, p_better=float((gains > 0).mean()), required=confidence,
                    passed=low > min_gain, min_gain=min_gain)
