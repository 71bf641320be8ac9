"""A tiny but real churn model in a real (temporary) MLflow store, shaped exactly like the export stage's.

A logistic regression on a few hundred rows of the real Telco CSV, converted to one ONNX graph (one
input per raw column, [None, 1]), logged as an MLflow ONNX model with `extra_files/contract.json`,
registered as `churn` and given an alias; its run holds `reference/reference.parquet` (held-out rows +
this model's predictions) and `reference/holdout.parquet`. No mocks: monitoring reads it the way it
reads a production model.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from pipelines.churn import schema
from pipelines.churn.export import HOLDOUT_ARTIFACT, log_onnx_model
from pipelines.churn.features import linear_preprocessor
from pipelines.churn.onnx_convert import PROBABILITY_OUTPUT, input_specs, onnx_feeds, to_onnx
from pipelines.common import registry, tracking
from pipelines.common.contract import REFERENCE_ARTIFACT, ModelContract
from pipelines.common.onnx_parity import open_session

REPO = Path(__file__).resolve().parents[2]
REAL_CSV = REPO.parent / "shared" / "data" / "telco-churn" / "Telco-Customer-Churn.csv"
THRESHOLD = 0.5
EXPERIMENT = "churn"


def read_telco(path: Path = REAL_CSV) -> pd.DataFrame:
    """The real CSV, typed: blank TotalCharges (unbilled new customers) -> 0, label kept as Yes/No."""
    frame = pd.read_csv(path, dtype={"TotalCharges": str})
    frame["TotalCharges"] = pd.to_numeric(frame["TotalCharges"].str.strip().replace("", "0"))
    return frame


def labelled(frame: pd.DataFrame) -> pd.DataFrame:
    """FEATURES + `label` (Yes/No): the shape of the reference and holdout artifacts."""
    rows = frame[list(schema.FEATURES)].reset_index(drop=True)
    return rows.assign(label=frame[schema.LABEL_COLUMN].to_numpy())


def fit_tiny_pipeline(train: pd.DataFrame, C: float = 0.1) -> Pipeline:
    pipeline = Pipeline([("features", linear_preprocessor(0)), ("model", LogisticRegression(C=C, max_iter=500))])
    return pipeline.fit(train[list(schema.FEATURES)], (train[schema.LABEL_COLUMN] == "Yes").astype(int))


def register_tiny_model(train: pd.DataFrame, reference: pd.DataFrame, holdout: pd.DataFrame, *,
                        alias: str = registry.CHAMPION, C: float = 0.1) -> str:
    """Fit, export, log the monitoring reference, register; returns the new version number."""
    tracking.configure_tracking(EXPERIMENT)
    onnx_model = to_onnx(fit_tiny_pipeline(train, C), name="churn")
    session = open_session(onnx_model.SerializeToString())
    with mlflow.start_run(run_name="tiny-export") as run:
        contract = ModelContract(
            name="churn", kind="tabular_classifier", model_type="logistic_regression", inputs=input_specs(),
            probability_output=PROBABILITY_OUTPUT, labels=list(schema.LABEL_VALUES),
            positive_label=schema.LABEL_VALUES[1], threshold=THRESHOLD, run_id=run.info.run_id,
            data_sha256="tiny-test-fixture", created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
        rows = labelled(reference)
        rows["probability"] = session.run([PROBABILITY_OUTPUT], onnx_feeds(rows))[0][:, 1]
        rows["predicted_label"] = np.where(rows["probability"] >= THRESHOLD, "Yes", "No")
        tracking.log_frame(rows, REFERENCE_ARTIFACT)
        tracking.log_frame(labelled(holdout), HOLDOUT_ARTIFACT)
        example = rows[list(schema.FEATURES)].head(5).astype({name: "float32" for name in schema.NUMERIC})
        uri = log_onnx_model(onnx_model, contract, example)
    version = registry.register_version(uri, "churn")
    registry.set_alias("churn", alias, version)
    return version
