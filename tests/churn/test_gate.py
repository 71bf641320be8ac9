"""The paired-bootstrap gate: ship the candidate only when it beats the baseline by more than noise.

Each bootstrap sample scores both models with scikit-learn, which costs milliseconds, so the decisions
are computed once per module with few samples and shared by the tests that read them.
"""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.churn.gate import GateDecision, paired_bootstrap

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


def gate(scores, candidate: str, baseline: str, *, metric="roc_auc", confidence=0.8, seed=3) -> GateDecision:
    return paired_bootstrap(scores["y"], scores[candidate], scores[baseline], metric=metric,
                            samples=SAMPLES, confidence=confidence, seed=seed)


@pytest.fixture(scope="module")
def better(scores) -> GateDecision:
    return gate(scores, "good", "random")


@pytest.fixture(scope="module")
def worse(scores) -> GateDecision:
    return gate(scores, "random", "good")


def test_clearly_better_candidate_ships(better):
    assert better.passed
    assert better.probability_better == 1.0
    assert better.candidate > 0.9 and better.baseline == pytest.approx(0.5, abs=0.08)
    assert 0 < better.gain_ci_low <= better.mean_gain <= better.gain_ci_high


def test_identical_models_do_not_ship(scores):
    decision = paired_bootstrap(scores["y"], scores["good"], scores["good"].copy(), metric="roc_auc",
                                samples=SAMPLES, confidence=0.8, seed=3)
    assert decision.probability_better == 0.0  # a tie is not a win
    assert decision.mean_gain == 0.0
    assert not decision.passed


def test_worse_candidate_does_not_ship(worse):
    assert not worse.passed
    assert worse.probability_better == 0.0
    assert worse.gain_ci_high < 0


def test_a_small_gain_ships_only_when_it_is_as_likely_as_the_config_demands(scores):
    lenient = gate(scores, "good", "slightly_worse", confidence=0.8)
    strict = gate(scores, "good", "slightly_worse", confidence=0.9)
    assert 0.8 <= lenient.probability_better < 0.9  # better most of the time, not always
    assert lenient.probability_better == strict.probability_better  # same seed, same resamples
    assert lenient.passed and not strict.passed  # same evidence, a higher bar


def test_same_seed_gives_the_same_decision(scores, better):
    assert gate(scores, "good", "random") == better


def test_log_loss_counts_lower_as_better(scores):
    decision = gate(scores, "good", "random", metric="log_loss")
    assert decision.candidate < decision.baseline  # the raw losses: lower is better
    assert decision.mean_gain > 0 and decision.passed  # gains are sign-flipped so "gain > 0" = better


def test_resamples_with_a_single_class_are_skipped():
    y = np.array([1] + [0] * 19)  # one churner: many resamples miss it and have no ROC-AUC
    p = np.linspace(0.9, 0.1, 20)
    decision = paired_bootstrap(y, p, p[::-1], metric="roc_auc", samples=SAMPLES, confidence=0.8, seed=0)
    assert np.isfinite(decision.mean_gain) and decision.passed


def test_reason_says_the_candidate_ships_when_it_passes(better):
    text = better.reason("tuned xgboost", "logistic_regression")
    assert text.startswith("tuned xgboost ships: valid roc_auc ")
    assert "P(better) = 1.00 (needed 0.80)" in text


def test_reason_says_the_baseline_ships_when_the_candidate_fails(worse):
    text = worse.reason("tuned xgboost", "logistic_regression")
    assert text.startswith("tuned xgboost does not ship; logistic_regression ships:")
    assert "P(better) = 0.00" in text


def test_decision_serialises_for_mlflow(better):
    as_dict = better.as_dict()
    assert as_dict["metric"] == "roc_auc" and as_dict["passed"] is True
    assert set(as_dict) >= {"candidate", "baseline", "mean_gain", "probability_better", "required"}
