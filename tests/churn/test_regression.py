"""Tenure regression: the boosted model beats the mean, without seeing the target or its leaks."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.churn.config import RegressionConfig
from pipelines.churn.features import features
from pipelines.churn.regression import LEAKY_COLUMNS, build_regressors, regression_metrics

SMALL = RegressionConfig(target="tenure", n_estimators=60, max_depth=3, learning_rate=0.1)


@pytest.fixture(scope="module")
def fitted(train_rows):
    models = build_regressors(SMALL, seed=0)
    for model in models.values():
        model.fit(features(train_rows), train_rows[SMALL.target])
    return models


@pytest.fixture(scope="module")
def test_metrics(fitted, holdout_rows):
    return {
        name: regression_metrics("test", holdout_rows[SMALL.target], model.predict(features(holdout_rows)))
        for name, model in fitted.items()
    }


def test_xgboost_regressor_beats_the_mean_baseline_on_unseen_customers(test_metrics):
    boosted, baseline = test_metrics["xgboost_regressor"], test_metrics["mean_baseline"]
    assert boosted["test_mae"] < 0.8 * baseline["test_mae"]
    assert boosted["test_r2"] > 0.3
    assert baseline["test_r2"] == pytest.approx(0.0, abs=0.02)  # predicting the mean explains nothing


def test_mean_baseline_predicts_the_training_mean(fitted, train_rows, holdout_rows):
    predictions = fitted["mean_baseline"].predict(features(holdout_rows))
    np.testing.assert_allclose(predictions, train_rows[SMALL.target].mean())


@pytest.mark.parametrize("name", ["mean_baseline", "xgboost_regressor"])
def test_the_target_and_its_leaks_are_not_features(fitted, name):
    used = set(fitted[name].named_steps["features"].get_feature_names_out())
    assert SMALL.target not in used
    assert not used & set(LEAKY_COLUMNS)
    assert "MonthlyCharges" in used


def test_predictions_do_not_change_when_the_target_column_does(fitted, holdout_rows):
    X = features(holdout_rows.head(50))
    scrambled = X.assign(tenure=0, TotalCharges=0.0)
    model = fitted["xgboost_regressor"]
    np.testing.assert_array_equal(model.predict(X), model.predict(scrambled))


def test_another_target_is_dropped_instead(train_rows):
    config = SMALL.model_copy(update={"target": "MonthlyCharges"})
    model = build_regressors(config, seed=0)["mean_baseline"].fit(features(train_rows), train_rows["MonthlyCharges"])
    used = set(model.named_steps["features"].get_feature_names_out())
    assert "MonthlyCharges" not in used and "tenure" in used


def test_regression_metrics_by_hand():
    metrics = regression_metrics("test", [1.0, 2.0, 3.0], [1.0, 2.0, 5.0])
    assert metrics["test_mae"] == pytest.approx(2 / 3)
    assert metrics["test_rmse"] == pytest.approx(np.sqrt(4 / 3))
    assert metrics["test_r2"] == pytest.approx(1 - 4 / 2)  # residual SS 4, total SS 2
