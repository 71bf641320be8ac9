"""The promotion rule (pipelines.common.promotion): each rule refuses on its own, says so with its numbers,
and a clear win passes them all. Synthetic scores, a few hundred resamples: milliseconds each."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from monitoring.config import RetrainConfig, load_monitoring_config
from pipelines.churn.config import ChurnConfig
from pipelines.churn.threshold import expected_cost
from pipelines.common.config import OutcomeCosts, load_config
from pipelines.common.promotion import Evidence, Side, Verdict, cost_per_row, decide_promotion
from tests.paths import REPO

RULE = RetrainConfig(bootstrap_samples=300)  # the repo's defaults, fewer resamples
ROWS = 400
NOW = 1_000_000.0
HOUR = 3600.0
COSTS = OutcomeCosts(true_positive=350, false_positive=100, false_negative=500)
METRICS = {"test_roc_auc": 0.80, "test_log_loss": 0.45}


def scores(seed: int, rows: int = ROWS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, a sharp P(positive) and a noisy one (the noisy one ranks positives far less well)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(rows) < 0.3).astype(int)
    sharp = 1 / (1 + np.exp(-(3 * y - 1.5 + rng.normal(0, 1, rows))))
    noisy = 1 / (1 + np.exp(-(1 * y - 0.5 + rng.normal(0, 2, rows))))
    return y, sharp, noisy


def side(p: np.ndarray, threshold: float = 0.5, metrics: dict | None = None) -> Side:
    registered = dict(METRICS if metrics is None else metrics)
    return Side(np.column_stack([1 - p, p]), (p >= threshold).astype(int), registered)


def verdict(y, champion: Side, challenger: Side, *, rule: RetrainConfig = RULE, costs: OutcomeCosts | None = COSTS,
            last_promotion: float | None = None) -> Verdict:
    evidence = Evidence(y, champion, challenger, positive=1, last_promotion=last_promotion, now=NOW)
    return decide_promotion(evidence, rule, costs=costs, seed=0)


def test_a_clear_win_passes_every_rule():
    y, sharp, noisy = scores(0)
    result = verdict(y, side(noisy), side(sharp))
    assert result.passed and result.refused_by == []
    assert [check.rule for check in result.checks] == ["judge rows", "gain", "test split", "cost", "cooldown"]
    text = result.reason("challenger v2", "champion v1")
    assert text.startswith("challenger v2 beats champion v1, every rule passed: judge rows ok: 400 labelled rows")
    assert result.as_metrics()["rule_gain_passed"] == 1.0 and result.as_metrics()["rule_judge_rows_rows"] == ROWS


def test_too_few_judge_rows_are_refused_and_the_minimum_cannot_be_set_below_100():
    y, sharp, noisy = scores(1, rows=150)
    result = verdict(y, side(noisy), side(sharp))
    assert result.refused_by == ["judge rows"] and result.decision.passed  # the gain alone would promote
    assert "judge rows REFUSED: 150 labelled rows to judge on, need 200" in result.reason("b", "a")
    with pytest.raises(ValidationError, match="min_judge_rows"):
        RetrainConfig(min_judge_rows=20)


def test_a_sure_but_small_gain_is_refused_by_the_margin():
    """The old rule (P(better) >= 0.9) promoted this: better on nearly every resample, by a hair."""
    y, _, noisy = scores(2)
    nudged = np.clip(noisy + 0.05 * (y - 0.5) * (np.random.default_rng(3).random(ROWS) < 0.04), 0, 1)  # 4 % of rows
    result = verdict(y, side(noisy), side(nudged))
    assert result.decision.p_better >= 0.9 and 0 < result.decision.gain_ci_low <= RULE.min_gain
    assert result.refused_by == ["gain"]
    assert f"<= margin +{RULE.min_gain:.4f}" in str(result.checks[1])


@pytest.mark.parametrize("metric, champion, challenger", [("test_roc_auc", 0.80, 0.78), ("test_log_loss", 0.45, 0.47)])
def test_a_regression_on_the_registered_test_split_is_refused(metric, champion, challenger):
    y, sharp, noisy = scores(4)
    result = verdict(y, side(noisy, metrics=METRICS | {metric: champion}),
                     side(sharp, metrics=METRICS | {metric: challenger}))
    assert result.refused_by == ["test split"]
    assert f"{metric} {challenger:.4f} vs {champion:.4f} (behind by +0.0200, allowed 0.0100)" in result.reason("b", "a")
    slightly_behind = champion + (0.005 if "loss" in metric else -0.005)
    within = verdict(y, side(noisy), side(sharp, metrics=METRICS | {metric: slightly_behind}))
    assert within.passed


def test_a_test_metric_that_was_not_registered_refuses_rather_than_passes():
    y, sharp, noisy = scores(5)
    result = verdict(y, side(noisy), side(sharp, metrics={"test_roc_auc": 0.9}))
    assert result.refused_by == ["test split"]
    assert "test_log_loss not registered with the challenger" in str(result.checks[2])


def test_a_higher_cost_at_the_served_threshold_is_refused():
    """A better ranking served at a threshold that flags everyone: an offer to every customer."""
    y, sharp, noisy = scores(6)
    result = verdict(y, side(noisy, threshold=0.7), side(sharp, threshold=0.0))
    assert result.refused_by == ["cost"]
    assert "cost REFUSED: per row at the served thresholds" in result.reason("b", "a")
    assert "allowed +2.0%" in str(result.checks[3])
    unjudged = verdict(y, side(noisy, threshold=0.7), side(sharp, threshold=0.0), costs=None)
    assert unjudged.passed and "not judged" in str(unjudged.checks[3])


def test_a_promotion_within_the_cooldown_is_refused():
    y, sharp, noisy = scores(7)
    recent = verdict(y, side(noisy), side(sharp), last_promotion=NOW - 1 * HOUR)
    assert recent.refused_by == ["cooldown"] and "1.00 h since the last promotion, need 24 h" in str(recent.checks[4])
    assert verdict(y, side(noisy), side(sharp), last_promotion=NOW - 25 * HOUR).passed
    assert "no earlier promotion recorded" in str(verdict(y, side(noisy), side(sharp)).checks[4])


def test_every_failing_rule_is_named_with_its_numbers():
    y, sharp, noisy = scores(8, rows=120)
    result = verdict(y, side(sharp), side(noisy, threshold=0.0, metrics={"test_roc_auc": 0.7, "test_log_loss": 0.5}),
                     last_promotion=NOW)
    assert result.refused_by == ["judge rows", "gain", "test split", "cost", "cooldown"]
    assert result.reason("challenger v3", "champion v2").startswith(
        "challenger v3 not promoted over champion v2, refused by judge rows, gain, test split, cost, cooldown:")


def test_the_monitoring_costs_are_churns_business_costs():
    """configs/monitoring.yaml repeats configs/churn.yaml's `cost` per outcome: the two must agree."""
    costs = load_monitoring_config(REPO / "configs" / "monitoring.yaml").model("churn").costs
    churn = load_config(REPO / "configs" / "churn.yaml", ChurnConfig).cost
    y, sharp, _ = scores(9)
    for threshold in (0.2, 0.5, 0.8):
        flagged = (sharp >= threshold).astype(int)
        assert cost_per_row(y, flagged, 1, costs) == pytest.approx(expected_cost(y, sharp, threshold, churn))
