"""Hyperparameter search: one search space, one objective, two engines, the same record in MLflow.

`optimize.backend` picks the engine:
  - `optuna`: Optuna's TPE sampler in this process, one trial after another;
  - `ray`: the same sampler inside Ray Tune (`OptunaSearch`), `ray.max_concurrent_trials` trials at once
    on a local Ray runtime of `ray.num_cpus` cores, or on the cluster `RAY_ADDRESS` names
    (pipelines/common/ray_runtime.py).
A project hands over its space (an Optuna define-by-run function), its objective (params -> `Outcome`;
picklable, since Ray runs it in worker processes) and the starting point (enqueued as trial 0, so tuning
can only match or beat the hand-set config). Whichever engine ran, every trial becomes a nested MLflow run
under the run active when the search began, with the same name, tags, params, metrics and times: the
driver logs it as the trial ends, so workers need no access to the tracking store and one SQLite file
never has two writers.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import mlflow
import optuna
from mlflow.entities import Metric, Param, RunStatus
from mlflow.tracking import MlflowClient
from mlflow.tracking.context import registry as run_context
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME
from pydantic import Field
from tqdm.auto import tqdm

from pipelines.common.config import Config

log = logging.getLogger(__name__)
optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial is MLflow's job, not the log's

TRIAL_TAG = "optuna_trial"  # the trial's number: both engines draw trials from an Optuna sampler
BACKEND_TAG = "search_backend"


class RaySearchConfig(Config):
    num_cpus: int | None = Field(None, ge=1)  # cores of the local Ray runtime (None: all); a cluster has its own
    max_concurrent_trials: int = Field(2, ge=1)
    cpus_per_trial: int = Field(1, ge=1)  # each trial's share: XGBoost/OpenMP threads follow it


class SearchConfig(Config):
    """The search part of a project's `optimize` section (projects add their own keys)."""

    backend: Literal["optuna", "ray"] = "optuna"
    n_trials: int = Field(20, ge=1)
    timeout_seconds: float | None = Field(60, gt=0)  # stop starting trials after this long (None: never)
    ray: RaySearchConfig = RaySearchConfig()


@dataclass(frozen=True)
class Outcome:
    """What the objective says of one set of params: the score to maximise, the metrics its MLflow run
    logs, and attributes the project reads back from the best trial (churn: the early-stopped tree count)."""

    score: float
    metrics: dict[str, float]
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrialRecord:
    """A finished trial, named as Optuna names its trials' fields."""

    number: int
    params: dict[str, Any]
    value: float
    user_attrs: dict[str, Any]


@dataclass(frozen=True)
class SearchResult:
    backend: str
    trials: list[TrialRecord]  # finished trials, by number
    wall_seconds: float

    @property
    def best_trial(self) -> TrialRecord:
        if not self.trials:
            raise RuntimeError("the search finished no trial (timeout too short?)")
        return max(self.trials, key=lambda trial: trial.value)

    @property
    def best_value(self) -> float:
        return self.best_trial.value


@dataclass(frozen=True)
class Search:
    space: Callable[[optuna.Trial], dict]  # define-by-run: suggests and returns the params
    objective: Callable[[dict], Outcome]  # a module-level function or a picklable callable object
    seed: int
    start: dict | None = None  # trial 0
    tags: dict[str, str] = field(default_factory=dict)  # on every trial's run (project)
    label: str = "trials"  # the progress bar's


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class TrialLog:
    """Writes one trial as a run nested under `parent_run_id`, with the context tags `mlflow.start_run`
    adds and the trial's own start and end times (a Ray trial is logged when it has ended)."""

    parent_run_id: str
    experiment_id: str
    tags: dict[str, str]

    @classmethod
    def under_active_run(cls, tags: dict[str, str]) -> "TrialLog":
        run = mlflow.active_run()
        if run is None:
            raise RuntimeError("a search logs its trials under the active MLflow run: start one first")
        return cls(run.info.run_id, run.info.experiment_id, tags)

    def write(self, number: int, params: dict, metrics: dict[str, float], started_ms: int,
              status: str = RunStatus.to_string(RunStatus.FINISHED)) -> None:
        name = f"trial-{number:03d}"
        tags = self.tags | {TRIAL_TAG: str(number), MLFLOW_PARENT_RUN_ID: self.parent_run_id, MLFLOW_RUN_NAME: name}
        client = MlflowClient()
        run = client.create_run(self.experiment_id, start_time=started_ms, tags=run_context.resolve_tags(tags),
                                run_name=name)
        ended = now_ms()
        client.log_batch(run.info.run_id, params=[Param(key, str(value)) for key, value in params.items()],
                         metrics=[Metric(key, float(value), ended, 0) for key, value in metrics.items()])
        client.set_terminated(run.info.run_id, status, end_time=ended)

    def failed(self, number: int, params: dict, started_ms: int) -> None:
        self.write(number, params, {}, started_ms, RunStatus.to_string(RunStatus.FAILED))


def sampler(seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(seed=seed)


def run_search(search: Search, settings: SearchConfig) -> SearchResult:
    """Run `settings.n_trials` trials (fewer if `timeout_seconds` passes) on the configured engine."""
    trial_log = TrialLog.under_active_run(search.tags | {BACKEND_TAG: settings.backend})
    started = time.perf_counter()
    with tqdm(total=settings.n_trials, desc=f"{search.label} ({settings.backend})", unit="trial") as bar:
        trials = engine(settings.backend)(search, settings, trial_log, bar)
    result = SearchResult(settings.backend, sorted(trials, key=lambda t: t.number), time.perf_counter() - started)
    log.info("%s search: %d trials in %.1f s, best %.4f (trial %d)", settings.backend, len(result.trials),
             result.wall_seconds, result.best_value, result.best_trial.number)
    return result


def engine(backend: str) -> Callable:
    """The function that runs the trials; Ray is imported only when it runs them."""
    if backend == "ray":
        from pipelines.common.search_ray import ray_trials

        return ray_trials
    return optuna_trials


# ------------------------------------------------------------------------------------------------ optuna
def optuna_trials(search: Search, settings: SearchConfig, trial_log: TrialLog, bar: tqdm) -> list[TrialRecord]:
    def objective(trial: optuna.Trial) -> float:
        params = search.space(trial)
        started = now_ms()
        try:
            outcome = search.objective(params)
        except Exception:
            trial_log.failed(trial.number, params, started)
            raise
        trial_log.write(trial.number, params, outcome.metrics, started)
        for key, value in outcome.attrs.items():
            trial.set_user_attr(key, value)
        return outcome.score

    study = optuna.create_study(direction="maximize", sampler=sampler(search.seed))
    if search.start is not None:
        study.enqueue_trial(search.start)
    study.optimize(objective, n_trials=settings.n_trials, timeout=settings.timeout_seconds,
                   callbacks=[lambda study, trial: bar.update(1)])
    return [TrialRecord(t.number, t.params, t.value, t.user_attrs) for t in study.trials
            if t.state == optuna.trial.TrialState.COMPLETE]
