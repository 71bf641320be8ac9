"""Shared fixtures: a small sample of the real Telco customers and a throw-away MLflow store.

The customer sample is read once per test session and must be treated as read-only (take a `.copy()`
before changing it). The MLflow store is a fresh SQLite file per test: its tables are created once per
session in a template file that each test copies, because creating them costs seconds, copying does not.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from tests.paths import TELCO_CSV

SAMPLE_ROWS = 1200
TRAIN_ROWS = 500
MLFLOW_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_ID")


@pytest.fixture(scope="session")
def customers() -> pd.DataFrame:
    """1200 validated real customers (a seeded random sample of the CSV), typed as the pipeline sees them."""
    if not TELCO_CSV.is_file():
        pytest.skip(f"real Telco CSV not found at {TELCO_CSV}")
    from pipelines.churn.data import read_raw_csv, validate_customers

    raw = read_raw_csv(TELCO_CSV).sample(n=SAMPLE_ROWS, random_state=7)
    frame, _notes = validate_customers(raw)
    return frame.reset_index(drop=True)


@pytest.fixture(scope="session")
def train_rows(customers) -> pd.DataFrame:
    """500 customers to fit small models on."""
    return customers.iloc[:TRAIN_ROWS].reset_index(drop=True)


@pytest.fixture(scope="session")
def holdout_rows(customers) -> pd.DataFrame:
    """The other 700 customers of the sample: never seen by a model fitted on `train_rows`."""
    return customers.iloc[TRAIN_ROWS:].reset_index(drop=True)


@pytest.fixture(scope="session")
def _mlflow_template_db(tmp_path_factory) -> Path:
    """An empty MLflow SQLite store with its tables created, copied by every `tmp_mlflow`."""
    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()  # creates the tables
    return path


@pytest.fixture
def tmp_mlflow(tmp_path, monkeypatch, _mlflow_template_db) -> str:
    """Point MLflow at a fresh SQLite store in tmp_path (artifacts land beside it); returns its URI.

    `mlflow.set_tracking_uri`, `set_registry_uri` and `set_experiment` write environment variables and
    module globals of their own, so those are reset afterwards too: no test sees another test's store.
    """
    db = tmp_path / "mlflow.db"
    shutil.copy(_mlflow_template_db, db)
    uri = f"sqlite:///{db}"
    saved = {key: os.environ.get(key) for key in MLFLOW_ENV}
    for key in MLFLOW_ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    yield uri
    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)
    mlflow.tracking.fluent._active_experiment_id = None  # no public way to forget set_experiment()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray runtime (2 CPUs) for every test that needs one: starting Ray costs seconds. The code
    under test finds it running, uses it and leaves it to this fixture to stop."""
    import logging

    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield ray
    ray.shutdown()
