"""Evaluate stage (`pipelines/churn/evaluate.py`): its own metrics, breakdowns and comparison table.

Covers: `metrics_at_threshold` (names `<split>_<metric>`, values against a hand count on six customers,
the inclusive threshold, nobody flagged), `group_breakdown` (one row per group with counts, rates,
ROC-AUC and recall by hand, NaN where a group has one class, rows matched by position), `log_breakdowns`
(one gap per attribute and measure, max minus min, logged to a real MLflow run), and `comparison_table`
(the stage's columns, best ROC-AUC first). Not covered here: `run_mlflow_evaluate`, `evaluate_model`
and `run` wrap `mlflow.models.evaluate` and SHAP on logged models, left to the slow end-to-end test.
"""

from __future__ import annotations

import warnings

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from pipelines.churn import schema
from pipelines.churn.config import CostConfig
from pipelines.churn.evaluate import (
    TABLE_METRICS, comparison_table, group_breakdown, log_breakdowns, metrics_at_threshold,
)
from pipelines.churn.metrics import probability_metrics
from pipelines.churn.segments import SEGMENT_COLUMN

COST = CostConfig(missed_churner=500.0, retention_offer=100.0, offer_success_rate=0.5)
# Three churners (rows 0-2), three stayers (rows 3-5).
Y = np.array([1, 1, 1, 0, 0, 0])
P = np.array([0.9, 0.6, 0.2, 0.7, 0.55, 0.1])


# ---------------------------------------------------------------------------------- metrics_at_threshold


def test_metrics_at_threshold_are_named_split_underscore_metric():
    assert set(metrics_at_threshold("valid", Y, P, 0.5, COST)) == {
        "valid_precision", "valid_recall", "valid_f1", "valid_cost_per_customer"}


def test_metrics_at_threshold_match_a_hand_count():
    # At 0.5: flagged rows 0, 1, 3, 4 -> TP 2 (rows 0, 1), FP 2 (rows 3, 4), FN 1 (row 2).
    metrics = metrics_at_threshold("test", Y, P, 0.5, COST)
    assert metrics["test_precision"] == pytest.approx(2 / 4)
    assert metrics["test_recall"] == pytest.approx(2 / 3)
    assert metrics["test_f1"] == pytest.approx(2 * 2 / (2 * 2 + 2 + 1))  # 2TP / (2TP + FP + FN) = 4/7
    # 4 offers x 100 + 1 missed churner x 500 + 2 offered churners x 500 x (1 - 0.5), over 6 customers
    assert metrics["test_cost_per_customer"] == pytest.approx((400 + 500 + 500) / 6)


def test_metrics_at_threshold_flag_a_probability_equal_to_the_threshold():
    # At 0.6 row 1 (p = 0.6) is still flagged, row 4 (0.55) no longer: TP 2, FP 1.
    metrics = metrics_at_threshold("test", Y, P, 0.6, COST)
    assert metrics["test_precision"] == pytest.approx(2 / 3)
    assert metrics["test_recall"] == pytest.approx(2 / 3)


def test_metrics_at_threshold_score_zero_without_warning_when_nobody_is_flagged():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # sklearn's UndefinedMetricWarning would fail here
        metrics = metrics_at_threshold("test", Y, P, 0.95, COST)
    assert (metrics["test_precision"], metrics["test_recall"], metrics["test_f1"]) == (0.0, 0.0, 0.0)
    assert metrics["test_cost_per_customer"] == pytest.approx(3 * 500 / 6)  # every churner missed


def test_the_stage_metrics_cover_every_column_of_the_comparison_table():
    """evaluate_model builds its row from these two functions plus the threshold: nothing may be missing."""
    row = probability_metrics("test", Y, P) | metrics_at_threshold("test", Y, P, 0.5, COST) | {"threshold": 0.5}
    assert set(TABLE_METRICS) <= set(row)


# ------------------------------------------------------------------------------------- group_breakdown


def groups_frame() -> tuple[pd.DataFrame, np.ndarray]:
    """Nine customers in three groups, in shuffled order with a non-default index (as a split may have).

    A: churn 1, 0, 1, 0 with p 0.9, 0.2, 0.4, 0.6 -> ROC-AUC 3/4, flagged (>= 0.5) 2 of 4, recall 1/2
    B: churn 0, 0, 0    with p 0.1, 0.7, 0.3      -> one class: ROC-AUC and recall undefined, flagged 1/3
    C: churn 1, 1       with p 0.8, 0.3           -> one class: ROC-AUC undefined, recall 1/2, flagged 1/2
    """
    rows = [("A", 1, 0.9), ("B", 0, 0.1), ("A", 0, 0.2), ("C", 1, 0.8), ("B", 0, 0.7),
            ("A", 1, 0.4), ("C", 1, 0.3), ("B", 0, 0.3), ("A", 0, 0.6)]
    frame = pd.DataFrame(rows, columns=["plan", schema.LABEL_COLUMN, "p"], index=[40, 3, 17, 8, 99, 1, 5, 60, 21])
    return frame.drop(columns="p"), frame["p"].to_numpy()


def test_group_breakdown_has_one_row_per_group_with_hand_counted_quality():
    frame, p_churn = groups_frame()
    table = group_breakdown(frame, p_churn, 0.5, "plan").set_index("group")
    assert list(table.index) == ["A", "B", "C"]
    assert (table["attribute"] == "plan").all()
    assert table["customers"].to_dict() == {"A": 4, "B": 3, "C": 2}
    assert table["churn_rate"].to_dict() == pytest.approx({"A": 0.5, "B": 0.0, "C": 1.0})
    assert table["flagged_rate"].to_dict() == pytest.approx({"A": 0.5, "B": 1 / 3, "C": 0.5})
    assert table.loc["A", "roc_auc"] == pytest.approx(0.75)
    assert table.loc["A", "recall"] == pytest.approx(0.5)
    assert table.loc["C", "recall"] == pytest.approx(0.5)


def test_group_breakdown_leaves_measures_undefined_for_a_group_with_one_class():
    frame, p_churn = groups_frame()
    table = group_breakdown(frame, p_churn, 0.5, "plan").set_index("group")
    assert np.isnan(table.loc["B", "roc_auc"]) and np.isnan(table.loc["B", "recall"])  # no churners in B
    assert np.isnan(table.loc["C", "roc_auc"])  # only churners in C


def test_group_breakdown_names_numeric_groups_as_text(holdout_rows):
    p_churn = np.linspace(0, 1, len(holdout_rows))
    table = group_breakdown(holdout_rows, p_churn, 0.5, "SeniorCitizen")
    assert table["group"].tolist() == ["0", "1"]
    assert table["customers"].sum() == len(holdout_rows)
    seniors = holdout_rows["SeniorCitizen"] == 1
    assert table.set_index("group").loc["1", "churn_rate"] == pytest.approx(holdout_rows.loc[seniors, "Churn"].mean())


# -------------------------------------------------------------------------------------- log_breakdowns


def test_log_breakdowns_logs_the_gap_between_best_and_worst_group_per_attribute(churn_store):
    frame, p_churn = groups_frame()
    frame = frame.assign(**{SEGMENT_COLUMN: [0, 0, 0, 1, 1, 1, 1, 1, 1]})
    with mlflow.start_run() as run:
        gaps = log_breakdowns(frame, p_churn, 0.5, ["plan"])
    assert set(gaps) == {f"test_{measure}_gap_{column}" for measure in ("roc_auc", "recall", "flagged_rate")
                         for column in (SEGMENT_COLUMN, "plan")}
    # plan: flagged 1/2, 1/3, 1/2; recall 1/2, -, 1/2; ROC-AUC only defined for A (a single value: gap 0)
    assert gaps["test_flagged_rate_gap_plan"] == pytest.approx(0.5 - 1 / 3, abs=1e-4)
    assert gaps["test_recall_gap_plan"] == pytest.approx(0.0)
    assert gaps["test_roc_auc_gap_plan"] == pytest.approx(0.0)
    # segment 0 = the first three rows (p .9, .1, .2: 1 of 3 flagged); segment 1 = the other six (3 of 6)
    assert gaps[f"test_flagged_rate_gap_{SEGMENT_COLUMN}"] == pytest.approx(3 / 6 - 1 / 3, abs=1e-4)
    logged = MlflowClient().get_run(run.info.run_id)
    assert logged.data.metrics == pytest.approx(gaps)
    table = pd.read_json(mlflow.artifacts.download_artifacts(run_id=run.info.run_id,
                                                             artifact_path="breakdown/groups.json"), orient="split")
    assert len(table) == 2 + 3  # two segments, three plans


# ------------------------------------------------------------------------------------ comparison_table


def results_row(roc_auc: float) -> dict[str, float]:
    return {metric: 0.123456789 for metric in TABLE_METRICS} | {"test_roc_auc": roc_auc, "test_recall_gap_gender": 0.2}


def test_comparison_table_lists_the_best_roc_auc_first_with_the_stage_columns_only():
    table = comparison_table({"decision_tree": results_row(0.80), "xgboost": results_row(0.85),
                              "logistic_regression": results_row(0.84)})
    assert list(table.index) == ["xgboost", "logistic_regression", "decision_tree"]
    assert list(table.columns) == list(TABLE_METRICS)  # breakdown gaps are left out
    assert table.loc["xgboost", "test_f1"] == 0.1235  # rounded to 4 places


def test_comparison_table_refuses_results_that_lack_a_table_metric():
    without_brier = {name: value for name, value in results_row(0.8).items() if name != "test_brier"}
    with pytest.raises(KeyError, match="test_brier"):
        comparison_table({"xgboost": without_brier, "decision_tree": without_brier})


def test_comparison_table_shows_a_metric_one_model_lacks_as_missing_not_as_a_number():
    without_brier = {name: value for name, value in results_row(0.8).items() if name != "test_brier"}
    table = comparison_table({"xgboost": results_row(0.85), "decision_tree": without_brier})
    assert np.isnan(table.loc["decision_tree", "test_brier"])
    assert table.loc["xgboost", "test_brier"] == 0.1235
