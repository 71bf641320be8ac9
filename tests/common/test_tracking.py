"""MLflow bookkeeping: which store we talk to, where artifacts go, how a config becomes params."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient
from pydantic import BaseModel

from pipelines.common import tracking


def test_tracking_uri_honours_the_environment_variable(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert tracking.tracking_uri() == "http://mlflow.example:5000"


def test_tracking_uri_defaults_to_the_repo_sqlite_file(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.tracking_uri() == "sqlite:///mlruns/mlflow.db"


def test_artifact_root_is_beside_an_absolute_sqlite_file(tmp_path):
    uri = f"sqlite:///{tmp_path}/store/mlflow.db"
    assert tracking.artifact_root(uri) == (tmp_path / "store" / "artifacts").as_uri()


def test_artifact_root_of_a_relative_sqlite_file_is_resolved_from_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert tracking.artifact_root("sqlite:///mlruns/mlflow.db") == (tmp_path / "mlruns" / "artifacts").as_uri()


@pytest.mark.parametrize("uri", ["http://mlflow.example:5000", "file:///tmp/mlruns", "databricks"])
def test_artifact_root_is_left_to_mlflow_for_other_stores(uri):
    assert tracking.artifact_root(uri) is None


def test_flatten_turns_nested_config_into_dotted_params():
    nested = {"seed": 42, "models": {"xgboost": {"max_depth": 2, "subsample": 0.7}}, "tags": ["a", "b"]}
    assert tracking.flatten("", nested) == {
        "seed": 42, "models.xgboost.max_depth": 2, "models.xgboost.subsample": 0.7, "tags": ["a", "b"],
    }


def test_flatten_keeps_a_prefix_and_passes_scalars_through():
    assert tracking.flatten("gate", {"confidence": 0.8}) == {"gate.confidence": 0.8}
    assert tracking.flatten("seed", 42) == {"seed": 42}


def test_package_versions_name_python_and_installed_packages():
    versions = tracking.package_versions()
    assert versions["python"].count(".") == 2
    assert "numpy" in versions and "mlflow" in versions
    assert "not-a-package" not in versions


def test_configured_experiment_stores_artifacts_beside_the_sqlite_file(tmp_mlflow, tmp_path):
    experiment_id = tracking.configure_tracking("demo")
    experiment = MlflowClient().get_experiment(experiment_id)
    assert experiment.name == "demo"
    assert experiment.artifact_location == (tmp_path / "artifacts").as_uri()
    with mlflow.start_run() as run:
        mlflow.log_text("hello", "notes/hello.txt")
    logged = tmp_path / "artifacts" / run.info.run_id / "artifacts" / "notes" / "hello.txt"
    assert logged.read_text() == "hello"


def test_configure_tracking_reuses_an_existing_experiment(tmp_mlflow):
    assert tracking.configure_tracking("demo") == tracking.configure_tracking("demo")


class SmallConfig(BaseModel):
    seed: int = 3
    inner: dict = {"depth": 2}


def test_pipeline_run_logs_config_params_and_a_stage_run_nests_under_it(tmp_mlflow):
    with tracking.pipeline_run("demo", SmallConfig(), None) as parent:
        with tracking.stage_run("demo", "train") as stage:
            pass
    client = MlflowClient()
    parent_data = client.get_run(parent.info.run_id).data
    assert parent_data.params == {"seed": "3", "inner.depth": "2"}
    assert parent_data.tags["kind"] == "pipeline" and "git_commit" in parent_data.tags
    stage_tags = client.get_run(stage.info.run_id).data.tags
    assert stage_tags["stage"] == "train"
    assert stage_tags["mlflow.parentRunId"] == parent.info.run_id


def test_latest_stage_run_without_an_experiment_says_to_run_the_pipeline(tmp_mlflow):
    with pytest.raises(LookupError, match="no MLflow experiment 'never-run'.*run the pipeline first"):
        tracking.latest_stage_run("never-run", "train")


def test_log_frame_round_trips_through_parquet(tmp_mlflow, tmp_path):
    import pandas as pd

    frame = pd.DataFrame({"tenure": [1, 24], "Contract": ["Month-to-month", "Two year"]})
    tracking.configure_tracking("demo")
    with mlflow.start_run() as run:
        tracking.log_frame(frame, "splits/train.parquet")
    path = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="splits/train.parquet"))
    pd.testing.assert_frame_equal(pd.read_parquet(path), frame)
