"""The one promotion rule (`pipelines.common.bootstrap.decide`): the challenger wins only when it beats the
incumbent by more than noise. The churn gate, the export's champion comparison and retraining all use it.

Each bootstrap sample scores both models with scikit-learn, which costs milliseconds, so the decisions
are computed once per module with few samples and shared by the tests that read them.
"""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.common.bootstrap import Decision, decide

ROWS = 400
SAMPLES = 50


@pytest.fixture(scope="module")
def scores():
    """True labels, a good model (labels plus noise), a slightly noisier copy of it, and random scores."""
    rng = np.random.default_rng(0)
    y = (rng.random(ROWS) < 0.3).astype(int)
    good = np.clip(0.25 + 0.5 * y + rng.normal(0, 0.2, ROWS), 0.01, 0.99)
    slightly_worse = good + np.random.default_rng(5).normal(0, 0.06, ROWS)
    random = rng.random(ROWS)
    return {"y": y, "good": good, "slightly_worse": slightly_worse, "random": random}


def gate(scores, candidate: str, baseline: str, *, metric="roc_auc", confidence=0.8, seed=3) -> Decision:
    return decide(scores["y"], scores[baseline], scores[candidate], metric=metric,
                  samples=SAMPLES, confidence=confidence, seed=seed)


@pytest.fixture(scope="module")
def better(scores) -> Decision:
    return gate(scores, "good", "random")


@pytest.fixture(scope="module")
def worse(scores) -> Decision:
    return gate(scores, "random", "good")


def test_clearly_better_candidate_ships(better):
    assert better.passed
    assert better.p_better == 1.0
    assert better.challenger > 0.9 and better.incumbent == pytest.approx(0.5, abs=0.08)
    assert 0 < better.gain_ci_low <= better.mean_gain <= better.gain_ci_high


def test_identical_models_do_not_ship(scores):
    decision = decide(scores["y"], scores["good"], scores["good"].copy(), metric="roc_auc",
                      samples=SAMPLES, confidence=0.8, seed=3)
    assert decision.p_better == 0.0  # a tie is not a win
    assert decision.mean_gain == 0.0
    assert not decision.passed


def test_worse_candidate_does_not_ship(worse):
    assert not worse.passed
    assert worse.p_better == 0.0
    assert worse.gain_ci_high < 0


def test_a_small_gain_ships_only_when_it_is_as_likely_as_the_config_demands(scores):
    lenient = gate(scores, "good", "slightly_worse", confidence=0.8)
    strict = gate(scores, "good", "slightly_worse", confidence=0.9)
    assert 0.8 <= lenient.p_better < 0.9  # better most of the time, not always
    assert lenient.p_better == strict.p_better  # same seed, same resamples
    assert lenient.passed and not strict.passed  # same evidence, a higher bar


def test_same_seed_gives_the_same_decision(scores, better):
    assert gate(scores, "good", "random") == better


def test_log_loss_counts_lower_as_better(scores):
    decision = gate(scores, "good", "random", metric="log_loss")
    assert decision.challenger < decision.incumbent  # the raw losses: lower is better
    assert decision.mean_gain > 0 and decision.passed  # gains are sign-flipped so "gain > 0" = better


def test_resamples_with_a_single_class_are_skipped():
    y = np.array([1] + [0] * 19)  # one churner: many resamples miss it and have no ROC-AUC
    p = np.linspace(0.9, 0.1, 20)
    decision = decide(y, p[::-1], p, metric="roc_auc", samples=SAMPLES, confidence=0.8, seed=0)
    assert np.isfinite(decision.mean_gain) and decision.passed


def test_reason_says_the_challenger_beats_the_incumbent_when_it_passes(better):
    text = better.reason("tuned xgboost", "logistic_regression", "valid")
    assert text.startswith("tuned xgboost beats logistic_regression: valid roc_auc ")
    assert "lower bound at 80% +" in text and "(needed > +0.0000;" in text
    assert "P(better) = 1.00" in text and f"of {ROWS} rows" in text


def test_reason_says_it_does_not_beat_when_it_fails(worse):
    text = worse.reason("new version", "champion v1", "test")
    assert text.startswith("new version does not beat champion v1: test roc_auc")
    assert "P(better) = 0.00" in text


def test_decision_serialises_for_mlflow(better):
    as_dict = better.as_dict()
    assert as_dict["metric"] == "roc_auc" and as_dict["passed"] is True
    assert set(as_dict) >= {"challenger", "incumbent", "mean_gain", "p_better", "required", "rows", "resamples"}
    metrics = better.as_metrics("gate")
    assert metrics["gate_passed"] == 1.0 and "gate_metric" not in metrics  # the metric's name is text


def test_mismatched_lengths_and_one_class_rows_are_clear_errors(scores):
    with pytest.raises(ValueError, match="length mismatch"):
        decide(scores["y"], scores["good"], scores["good"][:-1], metric="roc_auc", samples=SAMPLES, confidence=0.8, seed=0)
    with pytest.raises(ValueError, match="one class only"):
        decide(np.zeros(20, int), np.full(20, 0.2), np.full(20, 0.3), metric="roc_auc", samples=SAMPLES,
               confidence=0.8, seed=0)


# ----------------------------------------------------------------------------------------- multi-class
@pytest.fixture(scope="module")
def three_classes():
    """Three classes; a sharp model (the true class gets most mass) and a blurred one."""
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, ROWS)
    logits = rng.normal(0, 1, (ROWS, 3))
    sharp, blurred = logits.copy(), logits.copy()
    sharp[np.arange(ROWS), y] += 3
    blurred[np.arange(ROWS), y] += 0.3
    softmax = lambda z: np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)  # noqa: E731
    return y, softmax(sharp), softmax(blurred)


@pytest.mark.parametrize("metric", ["roc_auc", "log_loss", "macro_f1"])
def test_multi_class_decisions_favour_the_sharper_model_on_every_metric(three_classes, metric):
    y, sharp, blurred = three_classes
    win = decide(y, blurred, sharp, metric=metric, samples=SAMPLES, confidence=0.9, seed=0)
    loss = decide(y, sharp, blurred, metric=metric, samples=SAMPLES, confidence=0.9, seed=0)
    assert win.passed and win.p_better == 1.0
    assert not loss.passed and loss.p_better == 0.0


def test_multi_class_resamples_missing_a_class_are_skipped():
    y = np.array([0] * 30 + [1] * 30 + [2])  # one row of class 2: most resamples miss it
    p = np.tile([0.6, 0.3, 0.1], (len(y), 1))
    decision = decide(y, p, p, metric="roc_auc", samples=SAMPLES, confidence=0.8, seed=0)
    assert decision.resamples < SAMPLES and not decision.passed
