"""End to end: the whole churn pipeline on real data and a tiny config, against a real MLflow store."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from modelpkg.contract import HOLDOUT_ARTIFACT
from modelpkg.package import package_files
from pipelines.common.runner import run_project
from tests.factories import environment
from tests.paths import REPO, TELCO_CSV

TINY_CONFIG = str(REPO / "tests" / "churn" / "tiny.yaml")
ROC_AUC_FLOOR = 0.84  # published results on Telco: about 0.84-0.86

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    if not TELCO_CSV.is_file():
        pytest.skip(f"real Telco CSV not found at {TELCO_CSV}")
    root = tmp_path_factory.mktemp("mlflow")
    with environment(MLFLOW_TRACKING_URI=f"sqlite:///{root}/mlflow.db", CHURN_DATA=str(TELCO_CSV)) as env:
        yield env


@pytest.fixture(scope="module")
def mlflow_warnings() -> list[str]:
    """Every warning MLflow logs while the module's pipeline runs (its loggers do not reach caplog)."""
    warned: list[str] = []
    catcher = logging.Handler(logging.WARNING)
    catcher.emit = lambda record: warned.append(record.getMessage())
    logging.getLogger("mlflow").addHandler(catcher)
    yield warned
    logging.getLogger("mlflow").removeHandler(catcher)


@pytest.fixture(scope="module")
def first_run(store, mlflow_warnings):
    return run_project("churn", TINY_CONFIG)


def champion_dir() -> Path:
    return Path(mlflow.artifacts.download_artifacts("models:/churn@champion"))


def test_pipeline_registers_a_champion_above_the_quality_floor(first_run):
    assert first_run.registered_version == "1"
    version = MlflowClient().get_model_version_by_alias("churn", "champion")
    assert str(version.version) == "1"
    contract = package_files(champion_dir()).contract
    assert contract.metrics["test_roc_auc"] >= ROC_AUC_FLOOR
    assert contract.model_type in {"xgboost", "logistic_regression"}
    assert 0.0 < contract.threshold < 1.0
    assert float(version.tags["threshold"]) == contract.threshold
    assert contract.data_sha256 == "16320c9c1ec72448db59aa0a26a0b95401046bef5d02fd3aeb906448e3055e91"


def test_champion_directory_holds_onnx_and_contract(first_run):
    directory = champion_dir()
    assert (directory / "model.onnx").stat().st_size > 0
    assert (directory / "extra_files" / "contract.json").is_file()


def test_export_run_logs_parity_reference_and_native_model(first_run):
    contract = package_files(champion_dir()).contract
    run = mlflow.get_run(contract.run_id)
    assert run.data.metrics["test_onnx_max_abs_diff"] <= 1e-4
    reference = mlflow.artifacts.download_artifacts(run_id=contract.run_id, artifact_path=contract.reference_artifact)
    import pandas as pd

    frame = pd.read_parquet(reference)
    assert {"label", "probability", "predicted_label"} <= set(frame.columns)
    assert frame["probability"].between(0, 1).all()


def test_every_stage_and_model_is_a_nested_run_with_split_metrics(first_run):
    client = MlflowClient()
    experiment = client.get_experiment_by_name("churn")
    children = client.search_runs([experiment.experiment_id],
                                  f"tags.`mlflow.parentRunId` = '{first_run.parent_run_id}'")
    assert {r.data.tags.get("stage") for r in children} == {"train", "evaluate", "optimize", "export"}
    parent = client.get_run(first_run.parent_run_id)
    assert parent.data.tags["git_commit"]
    assert "config.json" in {Path(a.path).name for a in client.list_artifacts(first_run.parent_run_id, "config")}
    evaluate_run = next(r for r in children if r.data.tags.get("stage") == "evaluate")
    per_model = client.search_runs([experiment.experiment_id],
                                   f"tags.`mlflow.parentRunId` = '{evaluate_run.info.run_id}'")
    assert {r.data.tags.get("model_name") for r in per_model} == {
        "logistic_regression", "decision_tree", "random_forest", "xgboost"}
    for model_run in per_model:
        assert model_run.data.metrics["test_roc_auc"] > 0.75
        assert "test_roc_auc_gap_gender" in model_run.data.metrics


def test_runs_name_their_data_as_mlflow_datasets_by_context(first_run):
    """The UI's Dataset column: the splits on the train stage and the pipeline run, the test split on
    every evaluated model, and the experiment opens on its runs (MLflow 3's experimentKind)."""
    client = MlflowClient()
    experiment = client.get_experiment_by_name("churn")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"

    def datasets(run_id: str) -> dict[str, str]:
        return {i.dataset.name: {t.key: t.value for t in i.tags}["mlflow.data.context"]
                for i in client.get_run(run_id).inputs.dataset_inputs}

    splits = {"churn-train": "train", "churn-valid": "valid", "churn-test": "test"}
    train_run = client.search_runs([experiment.experiment_id], f"tags.`mlflow.parentRunId` = "
                                   f"'{first_run.parent_run_id}' and tags.stage = 'train'")[0]
    assert datasets(train_run.info.run_id) == splits
    assert datasets(first_run.parent_run_id) == splits
    evaluated = client.search_runs([experiment.experiment_id], "tags.model_name = 'xgboost' and metrics.test_roc_auc > 0")
    assert [datasets(run.info.run_id) for run in evaluated] == [{"churn-test": "test_"}]


def test_mlflow_evaluate_reads_the_labels_as_a_classifiers_without_a_warning(first_run, mlflow_warnings):
    assert not [message for message in mlflow_warnings if "model type" in message], mlflow_warnings


def test_export_alone_reuses_the_latest_run_and_keeps_an_equal_champion(first_run, store):
    """The CLI runs one stage on yesterday's outputs; a version no better than the champion stays off it."""
    result = subprocess.run(
        [sys.executable, "-m", "pipelines", "churn", "--config", TINY_CONFIG, "--stages", "export"],
        cwd=REPO, env=os.environ | store, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "registered_version" in result.stdout and "does not beat champion v1" in result.stdout
    assert str(MlflowClient().get_model_version_by_alias("churn", "champion").version) == "1"


def test_cli_reports_config_errors_clearly(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: 1\nmodels: {xgboost: {max_dept: 3}}\n")
    result = subprocess.run([sys.executable, "-m", "pipelines", "churn", "--config", str(bad)],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "models.xgboost.max_dept" in result.stderr


def test_serving_loads_the_champion_training_registered_and_agrees_with_it(first_run, store, tmp_path):
    """The contract test: what export wrote, serving reads, and its answers equal the native model's."""
    import pandas as pd
    from fastapi.testclient import TestClient

    from pipelines.churn import schema
    from serving.app import create_app
    from serving.config import load_serving_config, with_overrides

    config = with_overrides(
        load_serving_config(REPO / "configs" / "serving.yaml", environ={}),
        source={"kind": "registry", "tracking_uri": store["MLFLOW_TRACKING_URI"], "cache_dir": str(tmp_path / "cache")},
        prediction_log={"path": str(tmp_path / "predictions.db")},
    )
    contract = package_files(champion_dir()).contract
    holdout = pd.read_parquet(mlflow.artifacts.download_artifacts(
        run_id=contract.run_id, artifact_path=HOLDOUT_ARTIFACT)).head(50)
    native = mlflow.sklearn.load_model(f"runs:/{contract.run_id}/native")
    expected = native.predict_proba(holdout[list(schema.FEATURES)])[:, 1]
    records = holdout[list(schema.FEATURES)].astype({"SeniorCitizen": int, "tenure": int}).to_dict("records")

    with TestClient(create_app(config)) as client:
        assert client.get("/ready").status_code == 200
        body = client.post("/v1/churn/predict", json=records).json()
        listed = {m["name"]: m for m in client.get("/v1/models").json()["models"]}

    assert body["version"] == "1"
    served = [p["probability"] for p in body["predictions"]]
    assert max(abs(a - b) for a, b in zip(served, expected)) < 1e-4
    labels = [p["label"] for p in body["predictions"]]
    assert labels == ["Yes" if p >= contract.threshold else "No" for p in served]
    assert listed["churn"]["threshold"] == contract.threshold
