"""Fixtures for the churn stage tests."""

from __future__ import annotations

import pytest

from pipelines.common import tracking


@pytest.fixture
def churn_store(tmp_mlflow) -> str:
    """A fresh MLflow store (registry included) with the `churn` experiment set up as the pipeline does
    it, so artifacts land beside the store in tmp_path: runs in MLflow's default experiment would write
    them to ./mlruns of the working directory."""
    tracking.configure_tracking("churn")
    return tmp_mlflow
