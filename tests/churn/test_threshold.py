"""The business-cost threshold: the cost formula by hand, and the threshold's response to prices."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.churn.config import CostConfig
from pipelines.churn.threshold import THRESHOLD_GRID, best_threshold, cost_curve, expected_cost

COST = CostConfig(missed_churner=500.0, retention_offer=100.0, offer_success_rate=0.5)
# Two churners (rows 0, 1) and two stayers (rows 2, 3).
Y = [1, 1, 0, 0]
P = [0.9, 0.4, 0.6, 0.1]


@pytest.mark.parametrize("threshold, flagged, cost_per_customer", [
    # flagged rows 0, 2: offers 2 x 100, missed churner row 1: 500, offered churner row 0 leaves
    # anyway half the time: 500 x 0.5 = 250 -> (200 + 500 + 250) / 4
    (0.5, "rows 0, 2", 237.5),
    (0.6, "rows 0, 2 (>= is inclusive)", 237.5),
    (0.61, "row 0", (100 + 500 + 250) / 4),   # 212.5: the stayer at 0.6 no longer gets an offer
    (0.95, "nobody", (2 * 500) / 4),          # 250.0: both churners missed
    (0.05, "everyone", (4 * 100 + 2 * 250) / 4),  # 225.0
])
def test_expected_cost_matches_a_hand_count(threshold, flagged, cost_per_customer):
    assert expected_cost(Y, P, threshold, COST) == pytest.approx(cost_per_customer)


def test_an_offer_that_always_works_makes_flagged_churners_cost_only_the_offer():
    always = CostConfig(missed_churner=500.0, retention_offer=100.0, offer_success_rate=1.0)
    assert expected_cost(Y, P, 0.05, always) == pytest.approx(4 * 100 / 4)


def test_cost_curve_scores_every_threshold_of_the_grid():
    curve = cost_curve(Y, P, COST)
    assert list(curve.columns) == ["threshold", "cost_per_customer"]
    assert len(curve) == len(THRESHOLD_GRID) == 97
    assert (curve["threshold"].iloc[0], curve["threshold"].iloc[-1]) == (0.02, 0.98)
    at_half = curve.loc[np.isclose(curve["threshold"], 0.5), "cost_per_customer"].item()
    assert at_half == pytest.approx(237.5)


def test_best_threshold_is_the_cheapest_point_of_the_curve():
    curve = cost_curve(Y, P, COST)
    chosen = best_threshold(curve)
    assert expected_cost(Y, P, chosen, COST) == pytest.approx(curve["cost_per_customer"].min())
    # flag everyone but the stayer at 0.1: the churner at 0.4 is worth an offer (saves 250 - 100)
    assert 0.1 < chosen <= 0.4
    assert curve["cost_per_customer"].min() == pytest.approx((3 * 100 + 2 * 250) / 4)


def noisy_scores(seed: int = 0, rows: int = 2000):
    """A realistic-looking model: churners score higher on average, with overlap."""
    rng = np.random.default_rng(seed)
    y = rng.random(rows) < 0.27
    p = np.clip(rng.normal(np.where(y, 0.55, 0.3), 0.18), 0.001, 0.999)
    return y.astype(int), p


def test_best_threshold_moves_lower_when_a_missed_churner_costs_more():
    y, p = noisy_scores()
    chosen = {
        missed: best_threshold(cost_curve(y, p, CostConfig(missed_churner=missed, retention_offer=100.0,
                                                            offer_success_rate=0.5)))
        for missed in (300.0, 600.0, 2000.0)
    }
    assert chosen[2000.0] < chosen[600.0] < chosen[300.0]


def test_when_an_offer_never_pays_off_as_few_customers_as_possible_are_flagged():
    y, p = noisy_scores()
    # a saved churner is worth 150 x 0.5 = 75, less than the 100 offer: every flag loses money
    hopeless = CostConfig(missed_churner=150.0, retention_offer=100.0, offer_success_rate=0.5)
    chosen = best_threshold(cost_curve(y, p, hopeless))
    assert chosen > 0.9
    assert (p >= chosen).sum() == (p >= THRESHOLD_GRID[-1]).sum()  # no more than the top of the grid flags
