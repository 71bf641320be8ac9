"""Choosing the decision threshold by business cost, not by a default of 0.5.

Each customer we flag gets a retention offer (it costs money whether or not they would have left);
each churner we miss costs their lost revenue; an offered churner stays with some probability. The
threshold that minimises the expected cost per customer on the valid split is the one that ships.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.churn.config import CostConfig
from pipelines.common.plots import log_figure, new_figure

THRESHOLD_GRID = np.round(np.linspace(0.02, 0.98, 97), 4)


def expected_cost(y_true, p_churn, threshold: float, cost: CostConfig) -> float:
    """Mean cost per customer of flagging everyone with P(churn) >= threshold."""
    y_true, flagged = np.asarray(y_true) == 1, np.asarray(p_churn) >= threshold
    offers = flagged.sum() * cost.retention_offer
    missed = (y_true & ~flagged).sum() * cost.missed_churner
    saved_fails = (y_true & flagged).sum() * cost.missed_churner * (1 - cost.offer_success_rate)
    return float((offers + missed + saved_fails) / len(y_true))


def cost_curve(y_true, p_churn, cost: CostConfig) -> pd.DataFrame:
    return pd.DataFrame({
        "threshold": THRESHOLD_GRID,
        "cost_per_customer": [expected_cost(y_true, p_churn, t, cost) for t in THRESHOLD_GRID],
    })


def best_threshold(curve: pd.DataFrame) -> float:
    return float(curve.loc[curve["cost_per_customer"].idxmin(), "threshold"])


def log_cost_curve(curve: pd.DataFrame, chosen: float, cost: CostConfig, artifact_file: str) -> None:
    fig, ax = new_figure()
    ax.plot(curve["threshold"], curve["cost_per_customer"])
    ax.axvline(chosen, color="tab:red", linestyle="--", label=f"chosen threshold {chosen:.2f}")
    ax.axvline(0.5, color="grey", linestyle=":", label="default 0.5")
    ax.set(xlabel="decision threshold on P(churn)", ylabel="expected cost per customer",
           title=f"Cost curve (missed churner {cost.missed_churner:g}, offer {cost.retention_offer:g})")
    ax.legend()
    log_figure(fig, artifact_file)
