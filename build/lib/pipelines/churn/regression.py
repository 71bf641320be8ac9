"""Regression on the same customers: how many months will a customer stay (tenure), from what they buy?

Tenure times monthly charges is lifetime value, so this is the classic LTV question. TotalCharges is
left out (it is tenure times price: a leak). A boosted regressor is compared against the naive
baseline that predicts the training mean, with MAE, RMSE and R^2 on the test split.
"""

from __future__ import annotations

import numpy as np
from sklearn.dummy import DummyRegressor
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from sklearn.pipeline import Pipeline
from xgboost import XGBRegressor

from pipelines.churn.config import RegressionConfig
from pipelines.churn.features import tree_preprocessor

LEAKY_COLUMNS = ("TotalCharges",)


def build_regressors(config: RegressionConfig, seed: int) -> dict[str, Pipeline]:
    """Both see every feature but the target and its leaks."""
    dropped = (config.target, *LEAKY_COLUMNS)
    return {
        "mean_baseline": Pipeline([("features", tree_preprocessor(dropped)), ("model", DummyRegressor())]),
        "xgboost_regressor": Pipeline([
            ("features", tree_preprocessor(dropped)),
            ("model", XGBRegressor(n_estimators=config.n_estimators, max_depth=config.max_depth,
                                   learning_rate=config.learning_rate, random_state=seed)),
        ]),
    }


def regression_metrics(split: str, y_true, y_pred) -> dict[str, float]:
    return {
        f"{split}_mae": float(mean_absolute_error(y_true, y_pred)),
        f"{split}_rmse": float(np.sqrt(mean_squared_error(y_true, y_pred))),
        f"{split}_r2": float(r2_score(y_true, y_pred)),
    }
