"""Fixtures for the serving tests: a real churn bundle and a real MLflow registry, built once per session.

The bundle is a small scikit-learn pipeline (one-hot categories, scaled numbers, logistic regression)
fitted on a few hundred real Telco rows and converted with skl2onnx exactly as the contract describes:
one [batch, 1] input per column, a [batch, 2] probability output. The registry is a throwaway SQLite
MLflow store holding that bundle as `churn` version 1, alias `champion`. No mocks: the server loads
them the way it loads the real thing.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.churn import schema
from pipelines.common.contract import InputSpec, ModelContract
from serving.config import ServingConfig, load_serving_config, with_overrides

REPO = Path(__file__).resolve().parents[2]
SHARED_CSV = REPO.parent / "shared" / "data" / "telco-churn" / "Telco-Customer-Churn.csv"
TRAIN_ROWS = 400
THRESHOLD = 0.4
PROBABILITIES = "probabilities"


def telco_rows(n: int) -> pd.DataFrame:
    """Real Telco rows (CHURN_DATA or the shared copy); synthetic ones only where neither exists."""
    path = Path(os.environ.get("CHURN_DATA", SHARED_CSV))
    if path.is_file():
        frame = pd.read_csv(path, nrows=n, dtype={"TotalCharges": str})
        frame["TotalCharges"] = pd.to_numeric(frame["TotalCharges"].str.strip().replace("", "0"))
        return frame
    from pipelines.churn.synthetic import generate_customers

    return generate_customers(n, seed=0)


def records(n: int, offset: int = 0) -> list[dict]:
    """n request records (feature columns plus customerID), as a client would send them."""
    frame = telco_rows(offset + n).iloc[offset:offset + n]
    rows = []
    for _, row in frame.iterrows():
        record = {name: str(row[name]) for name in schema.CATEGORICAL}
        record |= {name: float(row[name]) for name in schema.NUMERIC}
        record[schema.ID_COLUMN] = str(row[schema.ID_COLUMN])
        rows.append(record)
    return rows


def contract_inputs() -> list[InputSpec]:
    return [InputSpec(name=name, dtype="string", allowed=list(values)) for name, values in schema.CATEGORICAL.items()] + [
        InputSpec(name=name, dtype="float32", minimum=minimum, integer=name in schema.INTEGER_COLUMNS)
        for name, minimum in schema.NUMERIC.items()
    ]


def build_bundle(directory: Path) -> Path:
    """Fit, convert and write `model.onnx` + `contract.json` into `directory`."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame = telco_rows(TRAIN_ROWS)
    features = frame[list(schema.FEATURES)].astype({name: np.float32 for name in schema.NUMERIC})
    target = (frame[schema.LABEL_COLUMN] == schema.LABEL_VALUES[1]).astype(int)
    encoder = OneHotEncoder(categories=[list(v) for v in schema.CATEGORICAL.values()], handle_unknown="ignore")
    pipeline = Pipeline([
        ("features", ColumnTransformer([("categories", encoder, list(schema.CATEGORICAL)),
                                        ("numbers", StandardScaler(), list(schema.NUMERIC))])),
        ("model", LogisticRegression(max_iter=1000)),
    ]).fit(features, target)
    initial_types = [(name, StringTensorType([None, 1])) for name in schema.CATEGORICAL] + [
        (name, FloatTensorType([None, 1])) for name in schema.NUMERIC]
    onnx_model = convert_sklearn(pipeline, name="churn", initial_types=initial_types,
                                 options={id(pipeline.named_steps["model"]): {"zipmap": False}})
    assert PROBABILITIES in [output.name for output in onnx_model.graph.output]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.onnx").write_bytes(onnx_model.SerializeToString())
    ModelContract(
        name="churn", kind="tabular_classifier", model_type="logistic_regression", inputs=contract_inputs(),
        probability_output=PROBABILITIES, labels=list(schema.LABEL_VALUES), positive_label=schema.LABEL_VALUES[1],
        threshold=THRESHOLD, run_id="test-run", data_sha256="test", metrics={"test_roc_auc": 0.8},
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    ).save(directory)
    return directory


def register_bundle(bundle: Path, alias: str | None = "champion") -> str:
    """Log the bundle as an MLflow ONNX model (contract in extra_files) in the current store, register
    it as `churn`, and point `alias` at the new version; returns the version."""
    import mlflow
    import onnx

    with mlflow.start_run():
        info = mlflow.onnx.log_model(onnx.load(bundle / "model.onnx"), name="onnx", save_as_external_data=False,
                                     extra_files=[str(bundle / "contract.json")])
    version = mlflow.register_model(info.model_uri, "churn").version
    if alias:
        mlflow.MlflowClient().set_registered_model_alias("churn", alias, version)
    return str(version)


@pytest.fixture(scope="session")
def bundle_root(tmp_path_factory) -> Path:
    """A folder of bundles, as `make bundle` leaves them: <root>/churn/{model.onnx, contract.json}."""
    root = tmp_path_factory.mktemp("bundles")
    build_bundle(root / "churn")
    return root


@pytest.fixture(scope="session")
def registry_uri(tmp_path_factory, bundle_root) -> str:
    """A throwaway SQLite MLflow store with `churn` version 1 as champion."""
    import mlflow

    store = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{store}/mlflow.db"
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    experiment = mlflow.MlflowClient().create_experiment("serving-tests", artifact_location=(store / "artifacts").as_uri())
    mlflow.set_experiment(experiment_id=experiment)
    register_bundle(bundle_root / "churn")
    return uri


def make_config(tmp_path: Path, **sections: dict) -> ServingConfig:
    """configs/serving.yaml (environment ignored) with the log in tmp_path and any section overridden."""
    config = load_serving_config(REPO / "configs" / "serving.yaml", environ={})
    defaults = {
        "prediction_log": {"path": str(tmp_path / "predictions.db")},
        "source": {"cache_dir": str(tmp_path / "cache")},
    }
    for section, values in sections.items():
        defaults[section] = defaults.get(section, {}) | values
    return with_overrides(config, **defaults)


@pytest.fixture
def bundle_config(tmp_path, bundle_root) -> ServingConfig:
    return make_config(tmp_path, source={"kind": "bundles", "bundle_root": str(bundle_root)})


@pytest.fixture(scope="session")
def example_records() -> list[dict]:
    return records(80)


ADMIN_KEY = "test-admin-key"


@pytest.fixture
def client(bundle_config, monkeypatch):
    """A TestClient over a bundle-mode app, started (models loaded, log open) and stopped around the test."""
    from fastapi.testclient import TestClient

    from serving.app import create_app

    monkeypatch.setenv(bundle_config.admin.api_key_env, ADMIN_KEY)
    with TestClient(create_app(bundle_config)) as test_client:
        yield test_client
