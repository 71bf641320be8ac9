"""MLflow set-up and run bookkeeping shared by every project.

One parent run per pipeline invocation and one nested run per stage, so the MLflow UI shows a pipeline
as a tree. Every run records what is needed to reproduce it: config, git commit, data hash and package
versions.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import warnings
from contextlib import contextmanager
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Iterator

import mlflow
from mlflow.tracking import MlflowClient
from pydantic import BaseModel

log = logging.getLogger(__name__)

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
# MLflow 3's UI opens an experiment by this tag: without it, on the GenAI overview instead of the runs.
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
# Libraries whose INFO lines (one per logged model, evaluation, request or DB migration) bury our own log.
NOISY_LOGGERS = ("alembic", "mlflow", "urllib3", "httpx", "matplotlib", "shap", "numba", "optuna", "evidently")
# Warnings MLflow raises on every run that say nothing about ours:
QUIET_WARNINGS = (
    # every project validates its data before a model sees it, so no integer column can carry a missing
    # value: MLflow's hint about that (one screenful per logged model) is only noise;
    "Hint: Inferred schema contains integer",
    # a local path matches MLflow's two registrations of the same local dataset source.
    "The specified dataset source can be interpreted in multiple ways",
)
TRACKED_PACKAGES = (
    "mlflow", "numpy", "pandas", "scikit-learn", "xgboost", "onnx", "onnxruntime", "skl2onnx",
    "onnxmltools", "optuna", "torch", "torchvision", "transformers", "peft", "evidently",
)


def tracking_uri() -> str:
    """The store every command talks to: MLFLOW_TRACKING_URI wins, else the repo's SQLite file."""
    return os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI)


def artifact_root(uri: str) -> str | None:
    """Keep artifacts beside a SQLite store (`<db dir>/artifacts`), so one folder holds everything."""
    if not uri.startswith("sqlite:///"):
        return None
    db_path = Path(uri.removeprefix("sqlite:///"))
    return (db_path.parent.resolve() / "artifacts").as_uri()


def configure_logging(level: int = logging.INFO) -> None:
    """The pipelines' log lines (time, level, logger), library chatter kept out: the CLI, and the processes
    a stage starts (the vision curve's second process)."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S")
    quiet_libraries()


def quiet_libraries() -> None:
    """Keep library chatter out of every command's output (pipelines, monitoring, benchmarks): their
    warnings still show, their INFO lines and MLflow's per-run notices do not."""
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for message in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=UserWarning)


def configure_tracking(experiment: str) -> str:
    """Point MLflow at the store and select (creating if needed) the experiment; returns its id."""
    uri = tracking_uri()
    # Small local artifacts: a progress bar per download is noise in the pipeline's log.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    quiet_libraries()
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient()
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        experiment_id = found.experiment_id
    else:
        experiment_id = client.create_experiment(experiment, artifact_location=artifact_root(uri))
    if found is None or found.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:  # older experiments too
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


@lru_cache(maxsize=1)
def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=5
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def flatten(prefix: str, value: object) -> dict[str, object]:
    """Nested config -> dotted MLflow params (`models.xgboost.max_depth`), searchable in the UI."""
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for key, inner in value.items():
            out.update(flatten(f"{prefix}.{key}" if prefix else str(key), inner))
        return out
    return {prefix: value}


def log_run_context(config: BaseModel, config_path: str | None) -> None:
    """What anyone needs to reproduce this run: the config (as params and as a file), code, packages."""
    params = flatten("", config.model_dump(mode="json"))
    mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
    mlflow.log_dict(config.model_dump(mode="json"), "config/config.json")
    if config_path:
        mlflow.log_artifact(config_path, "config")
    mlflow.set_tag("git_commit", git_commit())
    mlflow.log_dict(package_versions(), "environment/packages.json")


DATA_TAGS = ("data_sha256", "data_source", "data_path")


def log_data_identity(sha256: str, source: str, path: str | None, rows: int) -> None:
    mlflow.set_tags(dict(zip(DATA_TAGS, (sha256, source, path or "-"))))
    mlflow.log_param("data_rows", rows)


def log_loaded_data(sha256: str, source: str, path: str | None, rows: int, notes: list[str], *,
                    synthetic_warning: str) -> None:
    """What a train stage records of the data it read: identity, a loud tag for synthetic data, and every
    validation note (in the log and as an artifact)."""
    log_data_identity(sha256, source, path, rows)
    if source == "synthetic":
        mlflow.set_tag("WARNING", synthetic_warning)
    if notes:
        mlflow.log_text("\n".join(notes) + "\n", "data/validation_notes.txt")
    for note in notes:
        log.info("data: %s", note)


def promote_data_identity(stage_run_id: str) -> None:
    """Copy a stage's data tags onto the active (pipeline) run, so the parent says what data it saw."""
    tags = run_tags(stage_run_id)
    found = {key: tags[key] for key in DATA_TAGS if key in tags}
    if found:
        mlflow.set_tags(found)


@contextmanager
def pipeline_run(project: str, config: BaseModel, config_path: str | None) -> Iterator[mlflow.ActiveRun]:
    configure_tracking(project)
    with mlflow.start_run(run_name=f"{project}-pipeline", tags={"project": project, "kind": "pipeline"}) as run:
        log_run_context(config, config_path)
        yield run


@contextmanager
def stage_run(project: str, stage: str) -> Iterator[mlflow.ActiveRun]:
    tags = {"project": project, "stage": stage, "git_commit": git_commit()}
    with mlflow.start_run(run_name=stage, nested=True, tags=tags) as run:
        yield run


@contextmanager
def child_run(name: str, parent_run_id: str | None = None, **tags: str) -> Iterator[mlflow.ActiveRun]:
    """A run nested under the active one: one per model in a comparison, one per Optuna trial. Or under
    `parent_run_id`, a run another process holds open (this process has no active run to nest in)."""
    nesting = {"parent_run_id": parent_run_id} if parent_run_id else {"nested": True}
    with mlflow.start_run(run_name=name, tags=tags, **nesting) as run:
        yield run


def log_json(obj: object, artifact_file: str) -> None:
    mlflow.log_text(json.dumps(obj, indent=2, default=str), artifact_file)


def run_tags(run_id: str) -> dict[str, str]:
    return MlflowClient().get_run(run_id).data.tags


def set_run_tag(run_id: str, key: str, value: str) -> None:
    MlflowClient().set_tag(run_id, key, value)


def latest_stage_run(project: str, stage: str, parent_run_id: str | None = None) -> str:
    """Run id of the newest finished `stage` run, optionally within one pipeline run."""
    experiment = MlflowClient().get_experiment_by_name(project)
    if experiment is None:
        raise LookupError(f"no MLflow experiment '{project}' in {tracking_uri()}: run the pipeline first")
    query = f"tags.stage = '{stage}' and attributes.status = 'FINISHED'"
    if parent_run_id:
        query += f" and tags.`mlflow.parentRunId` = '{parent_run_id}'"
    runs = MlflowClient().search_runs(
        [experiment.experiment_id], query, order_by=["attributes.start_time DESC"], max_results=1
    )
    if not runs:
        where = f" in pipeline run {parent_run_id}" if parent_run_id else ""
        raise LookupError(f"no finished '{stage}' stage run{where} in experiment '{project}': run that stage first")
    return runs[0].info.run_id


def pinned_requirements(*packages: str) -> list[str]:
    """Pin the model's runtime packages ourselves: MLflow's own inference runs a slow subprocess."""
    return [f"{name}=={metadata.version(name)}" for name in packages]


@contextmanager
def temporary_dir() -> Iterator[Path]:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="mlpipe-") as tmp:
        yield Path(tmp)


def log_frame(frame, artifact_file: str) -> None:
    """A DataFrame as a Parquet artifact: typed, compact, and readable by every later stage."""
    with temporary_dir() as tmp:
        path = tmp / Path(artifact_file).name
        frame.to_parquet(path, index=False)
        mlflow.log_artifact(str(path), str(Path(artifact_file).parent))


def pandas_dataset(frame, *, name: str, source: str, targets: str | None = None):
    """`frame` as an MLflow dataset: its name, where it lives, its digest and schema (what the UI shows).
    A source MLflow cannot name (a remote artifact URI) falls back to MLflow's default, the code."""
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.data.from_pandas(frame, source=source, name=name, targets=targets)
    except MlflowException:
        log.debug("dataset %s: MLflow cannot resolve source %s; recording the code as its source", name, source)
        return mlflow.data.from_pandas(frame, name=name, targets=targets)


def log_dataset(dataset, context: str) -> None:
    """Record a dataset as an input of the active run and of its pipeline run, with its context (train,
    valid, test, monitoring): the runs table's Dataset column, and the lineage from data to model."""
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT, MLFLOW_PARENT_RUN_ID

    mlflow.log_input(dataset, context=context)
    parent = mlflow.active_run().data.tags.get(MLFLOW_PARENT_RUN_ID)
    if parent:
        tagged = DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)])
        MlflowClient().log_inputs(parent, datasets=[tagged])


def split_artifact(split: str) -> str:
    return f"splits/{split}.parquet"


def split_dataset(frame, split: str, run_id: str, targets: str | None = None):
    """A split as the dataset `<experiment>-<split>`, sourced at the Parquet file run `run_id` stored it in:
    the train stage that logs it and every later stage that reads it name it alike."""
    run = MlflowClient().get_run(run_id)
    experiment = MlflowClient().get_experiment(run.info.experiment_id).name
    return pandas_dataset(frame, name=f"{experiment}-{split}", targets=targets,
                          source=f"{run.info.artifact_uri}/{split_artifact(split)}")


def log_split(frame, split: str, targets: str | None = None) -> None:
    """A split (`train`, `valid`, `test`, ...) as `splits/<split>.parquet` and as the run's dataset of
    that context."""
    log_frame(frame, split_artifact(split))
    log_dataset(split_dataset(frame, split, mlflow.active_run().info.run_id, targets), context=split)
