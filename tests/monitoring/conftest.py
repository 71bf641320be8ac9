"""Shared fixtures: the real Telco rows, and a small churn champion released by churn's own export
(tests.factories.export_churn) into a temporary MLflow store."""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import mlflow
import pandas as pd
import pytest

from monitoring.config import MonitoringConfig, load_monitoring_config
from monitoring.reference import WatchedModel, load_holdout, load_reference, load_watched_model
from pipelines.common import tracking
from tests.factories import TELCO_CSV, export_churn, telco_customers

REPO = Path(__file__).resolve().parents[2]
TRAIN_ROWS, REFERENCE_ROWS, HOLDOUT_ROWS = 400, 1000, 1200


@contextmanager
def temporary_store(directory: Path, template: Path) -> Iterator[str]:
    """Point MLflow at a fresh SQLite store (a copy of the session's empty template) for the duration,
    then forget it again: environment, tracking and registry URIs and the active experiment."""
    shutil.copy(template, directory / "mlflow.db")
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    uri = f"sqlite:///{directory}/mlflow.db"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        yield uri
    finally:
        while mlflow.active_run() is not None:
            mlflow.end_run()
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
        mlflow.tracking.fluent._active_experiment_id = None  # as tests/conftest.py's tmp_mlflow does
        if saved is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved


@pytest.fixture(scope="session")
def telco() -> pd.DataFrame:
    """The real Telco customers, validated as the pipeline reads them (Churn 0/1), shuffled once."""
    if not TELCO_CSV.is_file():
        pytest.skip(f"real Telco CSV not found at {TELCO_CSV}")
    return telco_customers()


@pytest.fixture(scope="session")
def splits(telco) -> dict[str, pd.DataFrame]:
    """Disjoint train / reference / holdout rows, as the pipeline's train / valid / test splits are."""
    cut1, cut2 = TRAIN_ROWS, TRAIN_ROWS + REFERENCE_ROWS
    return {"train": telco.iloc[:cut1], "reference": telco.iloc[cut1:cut2],
            "holdout": telco.iloc[cut2:cut2 + HOLDOUT_ROWS], "rest": telco.iloc[cut2 + HOLDOUT_ROWS:]}


@pytest.fixture(scope="session")
def config() -> MonitoringConfig:
    return load_monitoring_config(REPO / "configs" / "monitoring.yaml")


@dataclass(frozen=True)
class Champion:
    uri: str
    model: WatchedModel
    reference: pd.DataFrame
    holdout: pd.DataFrame


def export_splits(splits: dict[str, pd.DataFrame], train: pd.DataFrame | None = None, **kwargs):
    """A churn version fitted on `train` (default: the train split), released by churn's export."""
    return export_churn(splits["train"] if train is None else train, splits["reference"], splits["holdout"], **kwargs)


@pytest.fixture(scope="session")
def champion(tmp_path_factory, splits, config, _mlflow_template_db) -> Iterator[Champion]:
    """A small churn champion in its own store, for every test that only reads it (nobody moves aliases)."""
    with temporary_store(tmp_path_factory.mktemp("mlflow-champion"), _mlflow_template_db) as uri:
        export_splits(splits)
        tracking.configure_tracking(config.model("churn").experiment)
        model = load_watched_model("churn")
        yield Champion(uri, model, load_reference(model),
                       load_holdout(model, config.model("churn").holdout_artifact))
