"""Evaluate stage: every classifier on the test split, side by side, with the plots a reviewer asks for.

`mlflow.models.evaluate` does the standard part (ROC, PR, calibration, lift, confusion matrix and
their metrics, logged as `test_*`). This module adds what it lacks: the business-cost threshold and the
metrics at it, the comparison table, SHAP explanations of XGBoost, and quality broken down by customer
segment and by sensitive attributes, with the gaps between groups.
"""

from __future__ import annotations

import logging

import mlflow
import numpy as np
import pandas as pd
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score
from tqdm.auto import tqdm

from pipelines.churn import schema
from pipelines.churn.explain import log_shap_summary
from pipelines.churn.features import features, target
from pipelines.churn.metrics import probability_metrics
from pipelines.churn.models import CANDIDATE
from pipelines.churn.segments import SEGMENT_COLUMN
from pipelines.churn.threshold import best_threshold, cost_curve, expected_cost
from pipelines.churn.train import load_model_uris, load_split
from pipelines.common import tracking
from pipelines.common.runner import StageContext

log = logging.getLogger(__name__)
TABLE_METRICS = ("test_roc_auc", "test_pr_auc", "test_log_loss", "test_brier", "threshold",
                 "test_precision", "test_recall", "test_f1", "test_cost_per_customer")


def metrics_at_threshold(split: str, y_true, p_churn, threshold: float, cost) -> dict[str, float]:
    predicted = (np.asarray(p_churn) >= threshold).astype(int)
    return {
        f"{split}_precision": float(precision_score(y_true, predicted, zero_division=0)),
        f"{split}_recall": float(recall_score(y_true, predicted, zero_division=0)),
        f"{split}_f1": float(f1_score(y_true, predicted, zero_division=0)),
        f"{split}_cost_per_customer": expected_cost(y_true, p_churn, threshold, cost),
    }


def run_mlflow_evaluate(model_uri: str, test: pd.DataFrame, train_run_id: str) -> None:
    """The standard classifier report; explainability off here (SHAP is done once, for XGBoost).
    Labels go in as booleans: MLflow reads 0/1 integers as "model type None" and warns on every run.
    The data goes in as the test split's dataset, as the train stage (`train_run_id`) logged it."""
    data = features(test).assign(**{schema.LABEL_COLUMN: target(test).astype(bool)})
    dataset = tracking.split_dataset(data, "test", train_run_id, targets=schema.LABEL_COLUMN)
    mlflow.models.evaluate(
        model=model_uri, data=dataset, model_type="classifier",
        evaluator_config={"metric_prefix": "test_", "log_model_explainability": False, "pos_label": True,
                          "label_list": [False, True]},
    )


def group_breakdown(frame: pd.DataFrame, p_churn: np.ndarray, threshold: float, column: str) -> pd.DataFrame:
    """Quality per group of one attribute: does the model serve every group equally well?"""
    rows = []
    y = target(frame).to_numpy()
    for value, index in frame.groupby(column).indices.items():
        y_group, p_group = y[index], p_churn[index]
        flagged = p_group >= threshold
        rows.append({
            "attribute": column, "group": str(value), "customers": len(index),
            "churn_rate": float(y_group.mean()),
            "flagged_rate": float(flagged.mean()),
            "roc_auc": float(roc_auc_score(y_group, p_group)) if len(set(y_group)) == 2 else float("nan"),
            "recall": float(flagged[y_group == 1].mean()) if (y_group == 1).any() else float("nan"),
        })
    return pd.DataFrame(rows)


def log_breakdowns(test: pd.DataFrame, p_churn: np.ndarray, threshold: float, attributes: list[str]) -> dict:
    """Per-group tables plus one gap metric per attribute and measure (max minus min across groups)."""
    tables = [group_breakdown(test, p_churn, threshold, column) for column in [SEGMENT_COLUMN, *attributes]]
    table = pd.concat(tables, ignore_index=True).round(4)
    mlflow.log_table(table, "breakdown/groups.json")
    mlflow.log_text(table.to_string(index=False), "breakdown/groups.txt")
    gaps = {}
    for column, group in table.groupby("attribute"):
        for measure in ("roc_auc", "recall", "flagged_rate"):
            gaps[f"test_{measure}_gap_{column}"] = float(group[measure].max() - group[measure].min())
    mlflow.log_metrics(gaps)
    return gaps


def evaluate_model(ctx: StageContext, name: str, uri: str, splits: dict[str, pd.DataFrame]) -> dict[str, float]:
    config = ctx.config
    model = mlflow.sklearn.load_model(uri)
    p_valid = model.predict_proba(features(splits["valid"]))[:, 1]
    p_test = model.predict_proba(features(splits["test"]))[:, 1]
    threshold = best_threshold(cost_curve(target(splits["valid"]), p_valid, config.cost))
    with tracking.child_run(name, model_name=name, project=ctx.project):
        run_mlflow_evaluate(uri, splits["test"], ctx.run_id_of("train"))
        metrics = probability_metrics("test", target(splits["test"]), p_test)
        metrics |= metrics_at_threshold("test", target(splits["test"]), p_test, threshold, config.cost)
        metrics["threshold"] = threshold
        mlflow.log_metrics(metrics)
        metrics |= log_breakdowns(splits["test"], p_test, threshold, config.evaluate.sensitive_attributes)
        if name == CANDIDATE:
            log_shap_summary(model, features(splits["test"]), config.evaluate.shap_rows, config.seed)
    return metrics


def comparison_table(results: dict[str, dict[str, float]]) -> pd.DataFrame:
    table = pd.DataFrame(results).T.loc[:, list(TABLE_METRICS)]
    return table.sort_values("test_roc_auc", ascending=False).round(4)


def run(ctx: StageContext) -> None:
    uris = load_model_uris(ctx)
    splits = {name: load_split(ctx, name) for name in ("valid", "test")}
    results = {
        name: evaluate_model(ctx, name, uri, splits)
        for name, uri in tqdm(uris["classifiers"].items(), desc="evaluate classifiers", unit="model")
    }
    table = comparison_table(results)
    mlflow.log_table(table.reset_index(names="model"), "comparison/models.json")
    mlflow.log_text(table.to_string(), "comparison/models.txt")
    ctx.summary["model_table"] = "Test split, every classifier (threshold chosen on valid by cost):\n" + table.to_string()
