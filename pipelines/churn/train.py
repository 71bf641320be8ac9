"""Train stage: load and validate the customers, split them, fit every model, log it all to MLflow.

Outputs (artifacts of this stage's run, read by later stages through MLflow):
  splits/{train,valid,test}.parquet   the exact rows each split got, with their customer segment
  models.json                         MLflow model URIs: {"classifiers": {name: uri}, "segments": uri}
  segments/ regression/ child runs    KMeans customer segments and the tenure (lifetime) regressor
"""

from __future__ import annotations

import json
import logging
import time

import mlflow
import pandas as pd
from tqdm.auto import tqdm

from pipelines.churn import schema
from pipelines.churn.data import CustomerData, load_customers, split_customers, validate_customers
from pipelines.churn.features import features, target
from pipelines.churn.metrics import probability_metrics
from pipelines.churn.models import MODEL_PACKAGES, TRUSTED_TYPES, build_classifiers
from pipelines.churn.regression import build_regressors, regression_metrics
from pipelines.churn.segments import (
    SEGMENT_COLUMN, assign_segments, fit_segments, log_silhouette_plot, segment_profiles,
)
from pipelines.common import tracking
from pipelines.common.runner import StageContext

log = logging.getLogger(__name__)
SPLITS = ("train", "valid", "test")


def log_sklearn_model(model, name: str, sample: pd.DataFrame) -> str:
    """Log a fitted pipeline with its signature and input example; returns the URI later stages load
    it from."""
    signature = mlflow.models.infer_signature(sample, model.predict_proba(sample) if hasattr(model, "predict_proba")
                                              else model.predict(sample))
    info = mlflow.sklearn.log_model(
        model, name=name, signature=signature, input_example=sample,
        skops_trusted_types=TRUSTED_TYPES, pip_requirements=tracking.pinned_requirements(*MODEL_PACKAGES),
    )
    return info.model_uri


def load_data(ctx: StageContext) -> CustomerData:
    config = ctx.config
    data = load_customers(config.data.path, synthetic_rows=config.data.synthetic_rows, seed=config.seed)
    tracking.log_loaded_data(data.sha256, data.source, data.path, len(data.frame), data.notes,
                             synthetic_warning="SYNTHETIC DATA: no Telco CSV found; metrics say nothing about real customers")
    return data


def with_extra_rows(train: pd.DataFrame, extra: pd.DataFrame | None) -> pd.DataFrame:
    """Retraining adds recent labelled production rows to the training split (never to valid/test)."""
    if extra is None or len(extra) == 0:
        return train
    raw = extra.copy()
    if schema.ID_COLUMN not in raw:
        raw[schema.ID_COLUMN] = [f"recent-{i}" for i in range(len(raw))]
    # Columns outside the schema (prediction ids, timestamps) are dropped; missing ones and empty
    # cells are left for validation to report, by name, like any other bad data.
    raw = raw[[column for column in schema.CSV_COLUMNS if column in raw.columns]]
    recent, _ = validate_customers(raw)
    mlflow.log_param("extra_train_rows", len(recent))
    return pd.concat([train, recent], ignore_index=True)


def log_splits(splits: dict[str, pd.DataFrame]) -> None:
    for name, frame in splits.items():
        mlflow.log_metrics({f"{name}_rows": len(frame), f"{name}_churn_rate": float(target(frame).mean())})
        tracking.log_split(frame, name, targets=schema.LABEL_COLUMN)


def train_classifiers(ctx: StageContext, splits: dict[str, pd.DataFrame]) -> dict[str, str]:
    """Fit each classifier in its own child run; valid metrics let the optimize stage gate them."""
    X_train, y_train = features(splits["train"]), target(splits["train"])
    X_valid, y_valid = features(splits["valid"]), target(splits["valid"])
    uris = {}
    classifiers = build_classifiers(ctx.config)
    for name, model in tqdm(classifiers.items(), desc="train classifiers", unit="model"):
        with tracking.child_run(name, model_name=name, project=ctx.project):
            started = time.perf_counter()
            model.fit(X_train, y_train)
            mlflow.log_metric("fit_seconds", time.perf_counter() - started)
            mlflow.log_params({f"model.{k}": v for k, v in model.named_steps["model"].get_params().items()
                               if isinstance(v, (int, float, str)) and not isinstance(v, bool)})
            metrics = probability_metrics("valid", y_valid, model.predict_proba(X_valid)[:, 1])
            metrics |= probability_metrics("train", y_train, model.predict_proba(X_train)[:, 1])
            mlflow.log_metrics(metrics)
            uris[name] = log_sklearn_model(model, name, X_train.head(5))
        ctx.summary[f"{name}_valid_roc_auc"] = metrics["valid_roc_auc"]
    return uris


def train_segments(ctx: StageContext, splits: dict[str, pd.DataFrame]) -> str:
    """Fit segments on train and label every split with them: a column later stages can group by."""
    with tracking.child_run("segments", project=ctx.project):
        model = fit_segments(splits["train"], ctx.config.segments, ctx.config.seed)
        for frame in splits.values():
            frame[SEGMENT_COLUMN] = assign_segments(model.pipeline, frame).to_numpy()
        mlflow.log_metrics({"chosen_k": model.k} | {f"silhouette_k{k}": s for k, s in model.silhouettes.items()})
        log_silhouette_plot(model)
        profiles = segment_profiles(splits["train"], splits["train"][SEGMENT_COLUMN])
        mlflow.log_table(profiles, "segments/profiles.json")
        mlflow.log_text(profiles.to_string(index=False), "segments/profiles.txt")
        uri = log_sklearn_model(model.pipeline, "segments", features(splits["train"]).head(5))
    ctx.summary["segments_k"] = model.k
    return uri


def train_regression(ctx: StageContext, splits: dict[str, pd.DataFrame]) -> None:
    column = ctx.config.regression.target
    for name, model in build_regressors(ctx.config.regression, ctx.config.seed).items():
        with tracking.child_run(f"regression-{name}", project=ctx.project, task="regression", target=column):
            model.fit(features(splits["train"]), splits["train"][column])
            metrics = regression_metrics("test", splits["test"][column], model.predict(features(splits["test"])))
            mlflow.log_metrics(metrics)
        ctx.summary[f"{column}_{name}_test_mae"] = metrics["test_mae"]
        ctx.summary[f"{column}_{name}_test_r2"] = metrics["test_r2"]


def load_split(ctx: StageContext, name: str) -> pd.DataFrame:
    """Read back a split this stage logged (in this invocation, or an earlier one)."""
    return pd.read_parquet(ctx.artifact("train", tracking.split_artifact(name)))


def load_model_uris(ctx: StageContext) -> dict:
    return json.loads(ctx.artifact("train", "models.json").read_text())


def run(ctx: StageContext) -> None:
    data = load_data(ctx)
    splits = split_customers(
        data.frame, valid_fraction=ctx.config.split.valid_fraction,
        test_fraction=ctx.config.split.test_fraction, seed=ctx.config.seed,
    )
    splits["train"] = with_extra_rows(splits["train"], ctx.extra_train_data)
    classifiers = train_classifiers(ctx, splits)
    segments = train_segments(ctx, splits)
    log_splits(splits)
    tracking.log_json({"classifiers": classifiers, "segments": segments}, "models.json")
    train_regression(ctx, splits)
    ctx.summary["data"] = f"{data.source} ({len(data.frame)} rows, sha256 {data.sha256[:12]})"
