"""Evidently on frames with a known shift (detected) and without (not detected), through monitoring.drift."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from monitoring.alerts import evaluate_alert
from monitoring.drift import alpha_per_test, column_p_values, run_drift
from modelpkg.contract import InputSpec, ModelContract
from modelpkg.package import PackageFiles
from monitoring.reference import WatchedModel
from monitoring.scenarios import get_scenario

ROWS = 400


def toy_model(*extra: InputSpec) -> WatchedModel:
    """A contract with two numeric inputs and one categorical one (and any `extra`); drift needs the codec,
    no ONNX graph."""
    contract = ModelContract(
        name="toy", kind="tabular_classifier", model_type="none", probability_output="probabilities",
        inputs=[InputSpec(name="plan", dtype="string", allowed=["basic", "plus", "pro"]),
                InputSpec(name="charges", dtype="float32"), InputSpec(name="tenure", dtype="float32"), *extra],
        labels=["No", "Yes"], positive_label="Yes", threshold=0.5, run_id="-", data_sha256="-",
        created_at=datetime.now(timezone.utc).isoformat(),
    )
    return WatchedModel("toy", "1", PackageFiles(Path("."), Path("model.onnx"), Path("."), contract))


def toy_rows(rng: np.random.Generator, rows: int, charges_scale: float = 1.0) -> pd.DataFrame:
    charges = rng.gamma(4.0, 15.0, rows) * charges_scale
    probability = 1 / (1 + np.exp(-(charges - 60) / 20))
    return pd.DataFrame({
        "plan": rng.choice(["basic", "plus", "pro"], rows, p=[0.5, 0.3, 0.2]),
        "charges": charges, "tenure": rng.integers(0, 72, rows).astype(float), "probability": probability,
        "predicted_label": np.where(probability >= 0.5, "Yes", "No"),
        "label": np.where(rng.random(rows) < probability, "Yes", "No"),
    })


def test_same_distribution_is_not_flagged(config):
    rng = np.random.default_rng(1)
    result = run_drift(toy_rows(rng, 1000), toy_rows(rng, ROWS), toy_model(), config.drift, config.quality)
    summary = result.summary
    assert [c.column for c in summary.features] == ["plan", "charges", "tenure"]
    assert summary.drifted_features == [] and not summary.prediction.drifted
    assert not evaluate_alert(summary, config.drift, config.quality).triggered


def test_a_shifted_column_and_the_prediction_are_flagged(config):
    rng = np.random.default_rng(2)
    result = run_drift(toy_rows(rng, 1000), toy_rows(rng, ROWS, charges_scale=1.3), toy_model(), config.drift,
                       config.quality)
    summary = result.summary
    assert [c.column for c in summary.drifted_features] == ["charges"]
    assert summary.prediction.drifted  # the probability depends on charges, so it moves too
    assert summary.share_drifted == pytest.approx(1 / 3)
    alert = evaluate_alert(summary, config.drift, config.quality)
    assert alert.triggered and alert.drift and "charges" in alert.reasons[0]


def test_p_values_are_judged_at_the_bonferroni_threshold(config):
    model = toy_model()
    assert alpha_per_test(model, config.drift) == pytest.approx(config.drift.family_alpha / 4)  # 3 inputs + prediction
    rng = np.random.default_rng(3)
    summary = run_drift(toy_rows(rng, 1000), toy_rows(rng, ROWS), model, config.drift, config.quality).summary
    assert summary.alpha_per_test == alpha_per_test(model, config.drift)
    assert all(c.drifted == (c.p_value < summary.alpha_per_test) for c in summary.features)
    assert {c.method for c in summary.features} == {config.drift.num_method, config.drift.cat_method}


def test_reports_show_the_p_values_the_alert_used(config):
    rng = np.random.default_rng(9)
    result = run_drift(toy_rows(rng, 1000), toy_rows(rng, ROWS, charges_scale=1.2), toy_model(), config.drift,
                       config.quality)
    shown = column_p_values(result.drift_report)  # what the HTML displays, read back from Evidently
    summary = result.summary
    for column in [*summary.features, summary.prediction]:
        assert shown[column.column] == (column.method, pytest.approx(column.p_value, rel=1e-9, abs=1e-12))
    assert run_drift(toy_rows(rng, 1000), toy_rows(rng, ROWS), toy_model(), config.drift, config.quality,
                     reports=False).drift_report is None


def test_a_flag_the_contract_lists_values_for_is_tested_as_a_category(config):
    """A 0/1 input is a category by its contract (`values`): chi-square on counts, never KS, and the
    report shows the p-value the alert used."""
    model = toy_model(InputSpec(name="senior", dtype="float32", values=[0, 1], integer=True))
    rng = np.random.default_rng(10)
    reference, window = toy_rows(rng, 1000), toy_rows(rng, ROWS)
    reference["senior"] = (rng.random(1000) < 0.16).astype(float)
    window["senior"] = (rng.random(ROWS) < 0.5).astype(float)  # many more seniors
    result = run_drift(reference, window, model, config.drift, config.quality)
    senior = next(c for c in result.summary.features if c.column == "senior")
    assert (senior.method, senior.drifted) == (config.drift.cat_method, True)
    assert column_p_values(result.drift_report)["senior"] == (senior.method, pytest.approx(senior.p_value, rel=1e-9,
                                                                                             abs=1e-12))


def test_quality_is_judged_only_with_enough_labels(config):
    rng = np.random.default_rng(4)
    reference, window = toy_rows(rng, 1000), toy_rows(rng, ROWS)
    judged = run_drift(reference, window, toy_model(), config.drift, config.quality)
    assert judged.summary.labelled_rows == ROWS and judged.quality_report is not None
    assert set(judged.summary.quality) == {"roc_auc", "accuracy", "log_loss", "f1"}
    window.loc[config.quality.min_labelled_rows // 2:, "label"] = None  # most ground truth not here yet
    unjudged = run_drift(reference, window, toy_model(), config.drift, config.quality)
    assert unjudged.summary.quality is None and unjudged.quality_report is None
    assert unjudged.summary.reference_quality["roc_auc"] > 0.5


def test_summary_metrics_have_mlflow_names(config):
    rng = np.random.default_rng(5)
    metrics = run_drift(toy_rows(rng, 1000), toy_rows(rng, ROWS), toy_model(), config.drift,
                        config.quality).summary.as_metrics()
    assert {"window_share_drifted", "window_prediction_drift_score", "drift_score_charges", "drift_score_plan",
            "window_roc_auc", "reference_roc_auc"} <= set(metrics)


def test_empty_window_is_a_clear_error(config):
    rng = np.random.default_rng(6)
    with pytest.raises(ValueError, match="empty window"):
        run_drift(toy_rows(rng, 100), toy_rows(rng, 0), toy_model(), config.drift, config.quality)


@pytest.mark.parametrize("scenario, expected", [
    ("price_increase", "MonthlyCharges"), ("contract_shift", "Contract"), ("new_customers", "tenure"),
])
def test_churn_scenarios_are_detected_on_the_real_model(champion, config, scenario, expected):
    rng = np.random.default_rng(7)
    rows = get_scenario("churn", scenario).draw(champion.holdout, 500, rng, config.model("churn").scenarios[scenario])
    summary = run_drift(champion.reference, champion.model.frame(rows), champion.model, config.drift,
                        config.quality, reports=False).summary
    assert expected in [c.column for c in summary.drifted_features]
    assert evaluate_alert(summary, config.drift, config.quality).triggered


def test_held_out_traffic_raises_no_alert_on_the_real_model(champion, config):
    rows = get_scenario("churn", "no_drift").draw(champion.holdout, 500, np.random.default_rng(8), {})
    summary = run_drift(champion.reference, champion.model.frame(rows), champion.model, config.drift,
                        config.quality, reports=False).summary
    assert not evaluate_alert(summary, config.drift, config.quality).triggered
    methods = {c.column: c.method for c in summary.features}
    assert methods["SeniorCitizen"] == methods["Contract"] == config.drift.cat_method  # a 0/1 flag is a category
    assert methods["tenure"] == config.drift.num_method
