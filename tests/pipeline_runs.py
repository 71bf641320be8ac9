"""Reading a finished pipeline's MLflow runs, for the end-to-end tests of every project."""

from __future__ import annotations

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from pipelines.common.runner import PipelineResult


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
