"""The runner: stages run in lifecycle order, each in a nested MLflow run, and talk only through MLflow.

A toy project with two stages stands in for churn: `produce` logs a text artifact, `consume` reads it
back through `StageContext.artifact`. Running `consume` alone must find what the latest finished
`produce` logged, or what a named pipeline run logged, against a real (temporary) SQLite store.
"""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from pipelines.common import runner
from pipelines.common.config import Config, ConfigError
from pipelines.common.runner import Project, StageContext, load_project, run_project, select_stages


class ToyConfig(Config):
    seed: int = 0
    greeting: str = "hello"
    fail_after_logging: bool = False  # makes `produce` log its artifact, then crash


def produce(ctx: StageContext) -> None:
    mlflow.log_text(ctx.config.greeting, "out/greeting.txt")
    if ctx.config.fail_after_logging:
        raise RuntimeError("produce crashed")
    ctx.summary["draw"] = float(np.random.rand())  # seeded by the runner from config.seed


def consume(ctx: StageContext) -> None:
    ctx.summary["consumed"] = ctx.artifact("produce", "out/greeting.txt").read_text()
    ctx.summary["produce_run"] = ctx.run_id_of("produce")


PROJECT = Project(
    name="toy", config_schema=ToyConfig, default_config="configs/toy.yaml",
    stages={"produce": produce, "consume": consume},
)


@pytest.fixture
def toy(monkeypatch, tmp_mlflow):
    """Register the toy project (this module) with the runner, against a fresh MLflow store."""
    monkeypatch.setitem(runner.PROJECT_MODULES, "toy", __name__)


@pytest.fixture
def config_file(tmp_path):
    """Writes a toy YAML config and returns its path: `config_file(greeting="hi")`."""
    def write(**values) -> str:
        path = tmp_path / f"toy-{len(list(tmp_path.glob('toy-*.yaml')))}.yaml"
        path.write_text("".join(f"{key}: {value}\n" for key, value in values.items()))
        return str(path)
    return write


def child_runs(parent_run_id: str) -> list:
    experiment = MlflowClient().get_experiment_by_name("toy")
    return MlflowClient().search_runs(
        [experiment.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_run_id}'",
        order_by=["attributes.start_time ASC"],
    )


# ------------------------------------------------------------------------------ choosing stages


def test_stages_run_in_lifecycle_order_whatever_order_they_are_named_in():
    assert select_stages(PROJECT, ["consume", "produce"]) == ["produce", "consume"]


@pytest.mark.parametrize("chosen", [None, []])
def test_no_stages_named_means_every_stage(chosen):
    assert select_stages(PROJECT, chosen) == ["produce", "consume"]


def test_unknown_stage_is_named_in_the_error():
    with pytest.raises(ValueError, match=r"unknown stage\(s\) \['publish'\] for toy \(stages: produce, consume\)"):
        select_stages(PROJECT, ["produce", "publish"])


def test_unknown_project_is_named_with_the_known_ones():
    with pytest.raises(ValueError, match="unknown project 'nope' \\(known: churn"):
        load_project("nope")


def test_a_registered_project_is_loaded_by_name(monkeypatch):
    monkeypatch.setitem(runner.PROJECT_MODULES, "toy", __name__)
    assert load_project("toy") is PROJECT


# --------------------------------------------------------------------------------- a full run


def test_each_stage_gets_a_nested_run_tagged_with_its_name(toy, config_file):
    result = run_project("toy", config_file(greeting="bonjour"))
    children = child_runs(result.parent_run_id)
    assert [run.data.tags["stage"] for run in children] == ["produce", "consume"]
    assert all(run.info.status == "FINISHED" for run in children)
    assert all("stage_seconds" in run.data.metrics for run in children)
    assert result.summary["consumed"] == "bonjour"
    assert result.summary["produce_run"] == children[0].info.run_id  # this invocation's own stage run


def test_pipeline_run_records_config_chosen_stages_and_numeric_summary(toy, config_file):
    result = run_project("toy", config_file(greeting="bonjour", seed=5))
    parent = MlflowClient().get_run(result.parent_run_id).data
    assert parent.tags["stages"] == "produce,consume"
    assert parent.params["greeting"] == "bonjour" and parent.params["seed"] == "5"
    assert parent.metrics["draw"] == pytest.approx(result.summary["draw"])  # numbers become metrics
    assert "consumed" not in parent.metrics  # text stays in the printed summary only
    assert "pipeline_seconds" in parent.metrics


def test_the_config_seed_makes_runs_repeatable(toy, config_file):
    first = run_project("toy", config_file(seed=11)).summary["draw"]
    again = run_project("toy", config_file(seed=11)).summary["draw"]
    assert first == again


# ------------------------------------------------------------------------- a stage run alone


def test_stage_run_alone_reads_the_latest_pipeline_runs_artifact(toy, config_file):
    run_project("toy", config_file(greeting="first"))
    latest = run_project("toy", config_file(greeting="second"))
    alone = run_project("toy", config_file(greeting="ignored"), stages=["consume"])
    assert alone.summary["consumed"] == "second"
    produce_run = alone.summary["produce_run"]
    assert mlflow.get_run(produce_run).data.tags["mlflow.parentRunId"] == latest.parent_run_id
    consume_run = child_runs(alone.parent_run_id)[0]
    assert consume_run.data.tags["input_run.produce"] == produce_run  # lineage recorded on the reader
    assert [run.data.tags["stage"] for run in child_runs(alone.parent_run_id)] == ["consume"]


def test_from_run_takes_outputs_from_the_named_pipeline_run(toy, config_file):
    older = run_project("toy", config_file(greeting="first"))
    run_project("toy", config_file(greeting="second"))
    alone = run_project("toy", config_file(), stages=["consume"], from_run=older.parent_run_id)
    assert alone.summary["consumed"] == "first"


def test_a_failed_stage_run_is_never_used_as_input(toy, config_file):
    run_project("toy", config_file(greeting="good"))
    with pytest.raises(RuntimeError, match="produce crashed"):
        run_project("toy", config_file(greeting="broken", fail_after_logging="true"))
    failed = MlflowClient().search_runs(
        [MlflowClient().get_experiment_by_name("toy").experiment_id], "attributes.status = 'FAILED'"
    )
    assert {run.data.tags.get("stage") for run in failed} == {"produce", None}  # the stage and its pipeline
    alone = run_project("toy", config_file(), stages=["consume"])
    assert alone.summary["consumed"] == "good"


def test_stage_run_alone_with_nothing_before_it_raises_a_clear_lookup_error(toy, config_file):
    with pytest.raises(LookupError, match="no finished 'produce' stage run in experiment 'toy': run that stage first"):
        run_project("toy", config_file(), stages=["consume"])


def test_from_run_without_that_stage_names_the_pipeline_run(toy, config_file):
    run_project("toy", config_file())  # a `produce` run exists, just not in the pipeline run named
    with pytest.raises(LookupError, match="no finished 'produce' stage run in pipeline run nope-123"):
        run_project("toy", config_file(), stages=["consume"], from_run="nope-123")


def test_missing_config_file_fails_before_any_run_starts(toy, tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        run_project("toy", str(tmp_path / "absent.yaml"))
    assert MlflowClient().get_experiment_by_name("toy") is None


# ------------------------------------------------------------------------------ lineage across stage-alone runs


def report(ctx: StageContext) -> None:
    """Reads `consume` first, then `produce`: produce must be the run consume itself read."""
    ctx.summary["consumed"] = ctx.artifact("consume", "out/consumed.txt").read_text()
    ctx.summary["produced"] = ctx.artifact("produce", "out/greeting.txt").read_text()


def consume_and_log(ctx: StageContext) -> None:
    mlflow.log_text(ctx.artifact("produce", "out/greeting.txt").read_text(), "out/consumed.txt")


LINEAGE_PROJECT = Project(
    name="toy", config_schema=ToyConfig, default_config="configs/toy.yaml",
    stages={"produce": produce, "consume": consume_and_log, "report": report},
)


def test_stages_run_one_at_a_time_read_one_consistent_lineage(monkeypatch, tmp_mlflow, config_file):
    """produce(A), consume alone (reads A), produce(B), report alone: report must see A twice, not B."""
    monkeypatch.setattr(runner, "load_project", lambda name: LINEAGE_PROJECT)
    run_project("toy", config_file(greeting="A"), stages=["produce"])
    run_project("toy", config_file(), stages=["consume"])
    run_project("toy", config_file(greeting="B"), stages=["produce"])
    alone = run_project("toy", config_file(), stages=["report"])
    assert alone.summary["consumed"] == "A"
    assert alone.summary["produced"] == "A"
