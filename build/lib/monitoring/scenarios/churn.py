"""Churn drift scenarios: a price increase, a shift towards month-to-month contracts, a surge of new
customers. Defaults here are only fallbacks; configs/monitoring.yaml sets the strengths used."""

from __future__ import annotations

import numpy as np
import pandas as pd

from monitoring.scenarios import Scenario, sample_rows

MONTH_TO_MONTH = "Month-to-month"
CENTS = 2  # charges are billed in cents


def price_increase(pool: pd.DataFrame, rows: int, rng: np.random.Generator, rise: float = 0.15) -> pd.DataFrame:
    """Every monthly bill rises by `rise`. TotalCharges is the bill history, so it stays as it was."""
    window = sample_rows(pool, rows, rng)
    window["MonthlyCharges"] = (window["MonthlyCharges"] * (1 + rise)).round(CENTS)
    return window


def contract_shift(pool: pd.DataFrame, rows: int, rng: np.random.Generator,
                   month_to_month_share: float = 0.75) -> pd.DataFrame:
    """Customers arrive with month-to-month contracts at `month_to_month_share` (about 0.55 in Telco);
    the other contracts keep their mix. Real rows are resampled, so tenure and charges move with them."""
    is_monthly = (pool["Contract"] == MONTH_TO_MONTH).to_numpy()
    if is_monthly.all() or not is_monthly.any():
        raise ValueError("contract_shift needs both month-to-month and longer contracts in the pool")
    weights = np.where(is_monthly, month_to_month_share / is_monthly.sum(),
                       (1 - month_to_month_share) / (~is_monthly).sum())
    return sample_rows(pool, rows, rng, weights)


def new_customers(pool: pd.DataFrame, rows: int, rng: np.random.Generator, share: float = 0.3,
                  max_tenure: int = 3) -> pd.DataFrame:
    """A sign-up campaign: `share` of the window are extra customers at most `max_tenure` months old,
    on top of the usual traffic (which already holds some: about 15 % of Telco at <= 3 months)."""
    is_new = (pool["tenure"] <= max_tenure).to_numpy()
    if not is_new.any():
        raise ValueError(f"new_customers: no customer with tenure <= {max_tenure} in the pool")
    surge = int(round(rows * share))
    window = pd.concat([sample_rows(pool[is_new], surge, rng), sample_rows(pool, rows - surge, rng)])
    return window.iloc[rng.permutation(len(window))]


SCENARIOS = {
    "price_increase": Scenario("price_increase", "monthly charges rise by a fixed share", price_increase),
    "contract_shift": Scenario("contract_shift", "more customers on month-to-month contracts", contract_shift),
    "new_customers": Scenario("new_customers", "a surge of newly signed-up, low-tenure customers", new_customers),
}
