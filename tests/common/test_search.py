"""The search engines (`pipelines/common/search.py`): Optuna in-process and Ray Tune record alike.

Covers: the same toy search (trial 0 the given start, then seeded TPE start-up draws) run by both engines
into a tmp MLflow store gives the same trials, each a nested run with the same name, tags, params and
metrics, whichever engine ran it, with the trial's own start and end times; a failing trial is logged as a
FAILED run and fails the search (Optuna engine); `optimize.backend` rejects an unknown engine. The Ray
runs use the session's one local runtime (`ray_session`). Not covered here: the churn objective on Ray
(tests/churn/test_optimize.py).
"""

from __future__ import annotations

import mlflow
import pytest
from mlflow.tracking import MlflowClient
from pydantic import ValidationError

from pipelines.common import tracking
from pipelines.common.search import Outcome, Search, SearchConfig, run_search

START = {"x": 0.5, "depth": 2}
TRIALS = 3


def space(trial) -> dict:
    return {"x": trial.suggest_float("x", -2.0, 2.0), "depth": trial.suggest_int("depth", 1, 4)}


def objective(params: dict) -> Outcome:
    """A maximum at x = 1: the score, a metric named like churn's, and an attribute read back."""
    score = -(params["x"] - 1.0) ** 2 - 0.01 * params["depth"]
    return Outcome(score, {"tune_score": score, "depth_used": params["depth"]}, {"twice_depth": 2 * params["depth"]})


def broken(params: dict) -> Outcome:
    raise ValueError("the objective failed")


def settings(backend: str) -> SearchConfig:
    return SearchConfig(backend=backend, n_trials=TRIALS, timeout_seconds=None,
                        ray={"max_concurrent_trials": 2, "cpus_per_trial": 1})


def searched(backend: str, fn=objective):
    """Run the toy search under a fresh parent run; its result and its child runs by trial number."""
    with mlflow.start_run(run_name=f"parent-{backend}") as parent:
        result = run_search(Search(space, fn, seed=3, start=START, tags={"project": "toy"}), settings(backend))
    return result, trial_runs(parent)


def trial_runs(parent) -> dict[int, object]:
    children = MlflowClient().search_runs([parent.info.experiment_id],
                                          f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    return {int(run.data.tags["optuna_trial"]): run for run in children}


def shape(run) -> tuple:
    """What the MLflow UI shows of a trial, less values that differ by engine or by run."""
    tags = {key for key in run.data.tags if key not in {"mlflow.parentRunId"}}
    return run.info.run_name, run.info.status, sorted(tags), run.data.params, run.data.metrics


@pytest.fixture
def store(tmp_mlflow):
    """The toy experiment in a fresh store, set up as a pipeline sets up its own (artifacts beside it)."""
    tracking.configure_tracking("toy")
    return tmp_mlflow


def test_both_engines_run_the_same_trials_and_log_them_alike(store, ray_session):
    local, local_runs = searched("optuna")
    remote, remote_runs = searched("ray")
    assert [t.params for t in local.trials] == [t.params for t in remote.trials]
    assert local.trials[0].params == START
    assert remote.best_trial.user_attrs == {"twice_depth": 2 * remote.best_trial.params["depth"]}
    assert remote.best_value == pytest.approx(local.best_value)
    assert sorted(local_runs) == sorted(remote_runs) == list(range(TRIALS))
    for number in range(TRIALS):
        local_run, remote_run = local_runs[number], remote_runs[number]
        assert shape(local_run) == shape(remote_run)
        assert local_run.info.run_name == f"trial-{number:03d}"
        assert {local_run.data.tags["search_backend"], remote_run.data.tags["search_backend"]} == {"optuna", "ray"}
        assert remote_run.info.start_time <= remote_run.info.end_time
    assert set(local_runs[0].data.params) == {"x", "depth"}
    assert set(local_runs[0].data.metrics) == {"tune_score", "depth_used"}


def test_a_failing_trial_is_logged_as_failed_and_fails_the_search(store):
    """On Optuna; on Ray the same TrialLog writes it (TrialRecorder.on_trial_error), left out here because
    each Ray search costs its trial actors' start-up (seconds) and the suite's time is budgeted."""
    with mlflow.start_run() as parent:
        with pytest.raises(ValueError, match="failed"):
            run_search(Search(space, broken, seed=3, start=START), settings("optuna"))
    runs = trial_runs(parent)
    assert runs and all(run.info.status == "FAILED" for run in runs.values())
    assert runs[0].data.params == {key: str(value) for key, value in START.items()}


def test_the_backend_must_be_a_known_engine():
    with pytest.raises(ValidationError, match="backend"):
        SearchConfig(backend="dask")
