"""MLflow bookkeeping: which store we talk to, where artifacts go, how a config becomes params."""

from __future__ import annotations

import json
import logging
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


def test_every_configured_experiment_is_a_model_development_one(tmp_mlflow):
    """MLflow 3's UI opens an experiment on its runs only with this tag (else on the GenAI overview)."""
    client = MlflowClient()
    created = tracking.configure_tracking("demo")
    old = client.create_experiment("made-before-the-tag")  # an experiment an older version created
    assert tracking.configure_tracking("made-before-the-tag") == old
    for experiment_id in (created, old):
        assert client.get_experiment(experiment_id).tags[tracking.EXPERIMENT_KIND_TAG] == "custom_model_development"


def test_a_logged_split_is_a_dataset_input_of_the_stage_and_its_pipeline_run(tmp_mlflow, tmp_path):
    import pandas as pd

    frame = pd.DataFrame({"tenure": [1, 24, 60], "Churn": [1, 0, 0]})
    with tracking.pipeline_run("demo", SmallConfig(), None) as parent:
        with tracking.stage_run("demo", "train") as stage:
            for split in ("train", "test"):
                tracking.log_split(frame, split, targets="Churn")
    for run_id in (stage.info.run_id, parent.info.run_id):
        inputs = MlflowClient().get_run(run_id).inputs.dataset_inputs
        found = {i.dataset.name: ({t.key: t.value for t in i.tags}["mlflow.data.context"], i.dataset) for i in inputs}
        assert set(found) == {"demo-train", "demo-test"}
        context, dataset = found["demo-test"]
        assert context == "test" and dataset.source_type == "local"
        assert dataset.digest == mlflow.data.from_pandas(frame).digest
        source = json.loads(dataset.source)["uri"]
        assert source.endswith(f"{stage.info.run_id}/artifacts/splits/test.parquet")
        pd.testing.assert_frame_equal(pd.read_parquet(source.removeprefix("file://")), frame)


def test_quiet_libraries_keeps_mlflow_info_lines_out_and_its_warnings_in():
    tracking.quiet_libraries()
    assert logging.getLogger("mlflow.tracking.fluent").getEffectiveLevel() == logging.WARNING
    assert logging.getLogger("mlflow.models.evaluation").isEnabledFor(logging.WARNING)
