"""Reading a finished pipeline's MLflow runs, for the end-to-end tests of every project."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import mlflow
import pandas as pd
import yaml
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from modelpkg.contract import HOLDOUT_ARTIFACT
from modelpkg.package import load_model
from pipelines.common.runner import PipelineResult
from tests.live_server import free_port, wait_ready
from tests.paths import REPO


def stage_run(result: PipelineResult, project: str, stage: str) -> Run:
    """The run of one stage of the pipeline run `result`."""
    client = MlflowClient()
    experiment = client.get_experiment_by_name(project)
    return client.search_runs([experiment.experiment_id], f"tags.`mlflow.parentRunId` = '{result.parent_run_id}' "
                                                          f"and tags.stage = '{stage}'")[0]


def child_runs(run: Run) -> dict[str, Run]:
    """A stage's child runs (baselines, fits, the source pretraining) by run name."""
    found = MlflowClient().search_runs([run.info.experiment_id], f"tags.`mlflow.parentRunId` = '{run.info.run_id}'")
    return {child.data.tags["mlflow.runName"]: child for child in found}


def champion_holdout(project: str, rows: int) -> tuple[object, pd.DataFrame]:
    """The registered champion's package and the first `rows` rows of its held-out test split."""
    package = load_model(project, alias="champion")
    holdout = pd.read_parquet(mlflow.artifacts.download_artifacts(run_id=package.contract.run_id,
                                                                  artifact_path=HOLDOUT_ARTIFACT)).head(rows)
    return package, holdout


@contextmanager
def serving_champion(project: str, store: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """A real `python -m serving` process serving only `project`'s champion from the test store; yields its URL."""
    raw = yaml.safe_load((REPO / "configs" / "serving.yaml").read_text())
    raw["models"] = [m for m in raw["models"] if m["name"] == project]
    raw["source"] |= {"tracking_uri": store["MLFLOW_TRACKING_URI"], "cache_dir": str(tmp_path / "cache")}
    raw["prediction_log"]["path"] = str(tmp_path / "predictions.db")
    config = tmp_path / "serving.yaml"
    config.write_text(yaml.safe_dump(raw))
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "serving", "--config", str(config), "--port", str(port)],
                              cwd=REPO, env=os.environ | store, stderr=subprocess.PIPE)
    try:
        wait_ready(f"http://127.0.0.1:{port}", server)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)
