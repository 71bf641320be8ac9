"""The `ray` engine of pipelines/common/search.py: Ray Tune with Optuna's sampler (`OptunaSearch`).

Trials run in Ray worker processes, `max_concurrent_trials` at a time with `cpus_per_trial` cores each
(Ray sets OMP_NUM_THREADS to that share, so XGBoost does not oversubscribe the node). The objective
travels to the workers once (`tune.with_parameters`: the training rows go through Ray's object store);
a callback in this process numbers the trials in the order the sampler made them, as Optuna would, and
writes each one to MLflow as it ends. Imported only when a search runs on Ray.
"""

from __future__ import annotations

import os
import tempfile
from typing import Callable

from ray import tune
from ray.tune.search.optuna import OptunaSearch
from tqdm.auto import tqdm

from pipelines.common.ray_runtime import ray_runtime
from pipelines.common.search import Outcome, Search, SearchConfig, TrialLog, TrialRecord, now_ms, sampler

# What a trial reports: its score, and the Outcome's metrics and attributes under these prefixes.
SCORE_KEY, METRIC_PREFIX, ATTR_PREFIX = "score", "metric/", "attr/"
QUIET_TUNE_ENV = {"RAY_AIR_NEW_OUTPUT": "0"}  # with verbose=0: no tables of trials (the progress bar and MLflow tell)
EXPERIMENT_NAME = "search"  # Tune's folder within a temporary storage path, deleted after the search


def trainable(config: dict, objective: Callable[[dict], Outcome]) -> None:
    """One trial, in a worker: the project's objective, its Outcome reported as one flat result."""
    outcome = objective(dict(config))
    tune.report({SCORE_KEY: outcome.score, **{METRIC_PREFIX + k: v for k, v in outcome.metrics.items()},
                 **{ATTR_PREFIX + k: v for k, v in outcome.attrs.items()}})


def unprefixed(result: dict, prefix: str) -> dict:
    return {key.removeprefix(prefix): value for key, value in result.items() if key.startswith(prefix)}


class TrialRecorder(tune.Callback):
    """Runs in the driver: logs each trial to MLflow as it ends and keeps its record."""

    def __init__(self, trial_log: TrialLog, bar: tqdm):
        self.trial_log, self.bar = trial_log, bar
        self.started: dict[str, int] = {}
        self.records: list[TrialRecord] = []

    def __getstate__(self) -> dict:
        """Tune pickles its callbacks with the experiment (for a resume); a progress bar cannot travel."""
        return self.__dict__ | {"bar": None}

    def on_trial_start(self, iteration, trials, trial, **info):
        self.started[trial.trial_id] = now_ms()

    def on_trial_complete(self, iteration, trials, trial, **info):
        result = trial.last_result
        number = trials.index(trial)  # trials are listed as the searcher suggested them
        self.trial_log.write(number, trial.config, unprefixed(result, METRIC_PREFIX), self.started[trial.trial_id])
        self.records.append(TrialRecord(number, dict(trial.config), float(result[SCORE_KEY]),
                                        unprefixed(result, ATTR_PREFIX)))
        self.progress()

    def on_trial_error(self, iteration, trials, trial, **info):
        self.trial_log.failed(trials.index(trial), trial.config, self.started.get(trial.trial_id, now_ms()))
        self.progress()

    def progress(self) -> None:
        if self.bar is not None:
            self.bar.update(1)


def ray_trials(search: Search, settings: SearchConfig, trial_log: TrialLog, bar: tqdm) -> list[TrialRecord]:
    for key, value in QUIET_TUNE_ENV.items():
        os.environ.setdefault(key, value)
    searcher = OptunaSearch(space=search.space, metric=SCORE_KEY, mode="max", sampler=sampler(search.seed),
                            points_to_evaluate=[search.start] if search.start is not None else None)
    resources = {"cpu": settings.ray.cpus_per_trial}
    recorder = TrialRecorder(trial_log, bar)
    with ray_runtime(settings.ray.num_cpus), tempfile.TemporaryDirectory(prefix="ray-tune-") as storage:
        tuner = tune.Tuner(
            tune.with_resources(tune.with_parameters(trainable, objective=search.objective), resources),
            tune_config=tune.TuneConfig(search_alg=searcher, num_samples=settings.n_trials,
                                        max_concurrent_trials=settings.ray.max_concurrent_trials,
                                        time_budget_s=settings.timeout_seconds, reuse_actors=True),
            run_config=tune.RunConfig(storage_path=storage, name=EXPERIMENT_NAME, callbacks=[recorder], verbose=0))
        grid = tuner.fit()
    if grid.errors:
        raise RuntimeError(f"{len(grid.errors)} Ray Tune trial(s) failed; the first: {grid.errors[0]!r}")
    return recorder.records
