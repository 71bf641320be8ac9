"""Optimize stage (`pipelines/churn/optimize.py`): the search space, early stopping and the tuning loop.

Covers: `suggest_params` with a fixed Optuna trial (exactly the six XGBoost knobs, and every shipped
config's hand-set start lies inside the space, so the enqueued trial 0 is really the config), and
`fit_with_early_stopping` stopping well below `max_estimators` when the held-out log loss stops
improving (but not when scored on its own training rows), its `best_iteration + 1` trees rebuilding the
same model, as the stage's rebuild relies on. Also `search` run for three real trials into a tmp MLflow
store (trial 0 is the config, each trial a child run, the best trial's tree count is returned) and
the same search on the Ray backend (`optimize.backend: ray`, 2 trials at once on the session's Ray
runtime), logged alike, and `gate` (the common decision, worded for churn) and `log_gate`. Not covered here: `run` (it needs the train stage's logged splits and models;
the slow end-to-end test runs it).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pytest
from mlflow.tracking import MlflowClient
from sklearn.metrics import roc_auc_score

from pipelines.churn.config import ChurnConfig, XGBoostConfig
from pipelines.churn.features import features, target
from pipelines.churn.models import xgboost_pipeline
from pipelines.churn.optimize import fit_with_early_stopping, gate, log_gate, search, suggest_params
from pipelines.common.config import load_config
from pipelines.common.runner import StageContext

REPO = Path(__file__).resolve().parents[2]
CONFIGS = [REPO / "configs" / "churn.yaml", REPO / "tests" / "churn" / "tiny.yaml"]
SEARCHED = {"learning_rate", "max_depth", "min_child_weight", "subsample", "colsample_bytree", "reg_lambda"}
# Deliberately eager: a high learning rate and deep trees overfit 375 rows within a few dozen rounds.
EAGER = {"learning_rate": 0.2, "max_depth": 4, "min_child_weight": 1.0, "subsample": 0.8,
         "colsample_bytree": 1.0, "reg_lambda": 1.0}
MAX_TREES, PATIENCE = 400, 10


def stage_context(**optimize) -> StageContext:
    config = ChurnConfig.model_validate({"optimize": {"max_estimators": MAX_TREES, "early_stopping_rounds": PATIENCE}
                                                     | optimize})
    return StageContext("churn", config, parent_run_id="unused")


@pytest.fixture(scope="module")
def fit_and_tune(train_rows):
    """The 500 training customers cut as `search` cuts them: 375 to fit on, 125 to score and stop on."""
    return train_rows.iloc[:375], train_rows.iloc[375:]


# -------------------------------------------------------------------------------------- suggest_params


def test_suggest_params_returns_exactly_the_values_a_fixed_trial_holds():
    chosen = {"learning_rate": 0.05, "max_depth": 3, "min_child_weight": 2.5, "subsample": 0.9,
              "colsample_bytree": 0.4, "reg_lambda": 12.0}
    assert suggest_params(optuna.trial.FixedTrial(chosen)) == chosen


def test_suggest_params_searches_every_xgboost_knob_but_the_tree_count():
    """`search` enqueues the config (minus n_estimators) as trial 0: its keys must be the searched ones."""
    assert set(XGBoostConfig.model_fields) - {"n_estimators"} == SEARCHED
    with pytest.raises(ValueError, match="max_depth"):  # a fixed trial lacking a knob is asked for it
        suggest_params(optuna.trial.FixedTrial({k: v for k, v in EAGER.items() if k != "max_depth"}))


@pytest.mark.parametrize("config_path", CONFIGS, ids=lambda path: path.name)
def test_every_shipped_config_starts_inside_the_search_space(config_path):
    start = load_config(config_path, ChurnConfig).models.xgboost.model_dump(exclude={"n_estimators"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # optuna warns when a fixed value lies outside a distribution
        assert suggest_params(optuna.trial.FixedTrial(start)) == start


def test_suggest_params_notices_a_start_outside_the_search_space():
    """The check above can fail: a learning rate above the space's 0.2 is reported."""
    with pytest.warns(UserWarning, match="learning_rate"):
        suggest_params(optuna.trial.FixedTrial(EAGER | {"learning_rate": 0.5}))


# ---------------------------------------------------------------------------- fit_with_early_stopping


def test_early_stopping_keeps_the_tree_count_well_below_the_maximum(fit_and_tune, holdout_rows):
    fit_rows, tune_rows = fit_and_tune
    model = fit_with_early_stopping(EAGER, fit_rows, tune_rows, stage_context()).named_steps["model"]
    assert model.best_iteration + 1 < MAX_TREES // 4
    # It ran exactly `early_stopping_rounds` past the best round, then stopped.
    assert model.get_booster().num_boosted_rounds() == model.best_iteration + 1 + PATIENCE


def test_early_stopping_watches_the_eval_rows_not_the_fit_rows(fit_and_tune):
    """Scored on its own training rows the loss keeps falling, so nothing stops it before the maximum."""
    fit_rows, _ = fit_and_tune
    model = fit_with_early_stopping(EAGER | {"subsample": 1.0}, fit_rows, fit_rows, stage_context())
    assert model.named_steps["model"].get_booster().num_boosted_rounds() == MAX_TREES


def test_early_stopped_pipeline_scores_raw_customers_and_ranks_them(fit_and_tune, holdout_rows):
    fit_rows, tune_rows = fit_and_tune
    pipeline = fit_with_early_stopping(EAGER, fit_rows, tune_rows, stage_context())
    p_churn = pipeline.predict_proba(features(holdout_rows))[:, 1]  # the encoder was fitted in place
    assert roc_auc_score(target(holdout_rows), p_churn) > 0.75


def test_rebuilding_with_best_iteration_plus_one_trees_gives_the_early_stopped_model(fit_and_tune, holdout_rows):
    """The stage ships `xgboost_pipeline(params | n_estimators=best_iteration + 1)`: the same model."""
    fit_rows, tune_rows = fit_and_tune
    ctx = stage_context()
    stopped = fit_with_early_stopping(EAGER, fit_rows, tune_rows, ctx)
    trees = stopped.named_steps["model"].best_iteration + 1
    rebuilt = xgboost_pipeline(EAGER | {"n_estimators": trees}, ctx.config.seed)
    rebuilt.fit(features(fit_rows), target(fit_rows))
    np.testing.assert_allclose(rebuilt.predict_proba(features(holdout_rows)),
                               stopped.predict_proba(features(holdout_rows)), atol=1e-6)


# ---------------------------------------------------------------------------------------------- search


def test_search_starts_from_the_config_and_returns_the_best_trial_with_its_tree_count(churn_store, train_rows):
    ctx = stage_context(n_trials=3, timeout_seconds=None)
    with mlflow.start_run() as parent:
        best, study = search(ctx, train_rows)
    assert len(study.trials) == 3
    assert study.trials[0].params == ctx.config.models.xgboost.model_dump(exclude={"n_estimators"})
    assert best == study.best_trial.params | {"n_estimators": study.best_trial.user_attrs["n_estimators"]}
    assert 1 <= best["n_estimators"] <= MAX_TREES
    children = MlflowClient().search_runs([parent.info.experiment_id],
                                          f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert sorted(run.data.tags["optuna_trial"] for run in children) == ["0", "1", "2"]
    scores = {run.data.tags["optuna_trial"]: run.data.metrics["tune_roc_auc"] for run in children}
    assert max(scores.values()) == pytest.approx(study.best_value)


def test_search_on_ray_runs_the_same_objective_and_logs_trials_as_the_local_search(churn_store, train_rows,
                                                                                   ray_session):
    """`optimize.backend: ray`: two trials at once on the session's Ray runtime, each still a nested run
    under the stage's run with the local search's params, metrics and trial tags."""
    ctx = stage_context(n_trials=2, timeout_seconds=None, backend="ray", ray={"max_concurrent_trials": 2})
    with mlflow.start_run() as parent:
        best, result = search(ctx, train_rows)
    assert [trial.number for trial in result.trials] == [0, 1]
    assert result.trials[0].params == ctx.config.models.xgboost.model_dump(exclude={"n_estimators"})
    assert best == result.best_trial.params | {"n_estimators": result.best_trial.user_attrs["n_estimators"]}
    children = MlflowClient().search_runs([parent.info.experiment_id],
                                          f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert sorted(run.data.tags["optuna_trial"] for run in children) == ["0", "1"]
    for run in children:
        assert set(run.data.params) == SEARCHED and set(run.data.metrics) == {"tune_roc_auc", "n_trees"}
        assert run.data.tags["search_backend"] == "ray" and run.data.tags["project"] == "churn"
    assert max(run.data.metrics["tune_roc_auc"] for run in children) == pytest.approx(result.best_value)


# ------------------------------------------------------------------------------------- gate, log_gate


def test_gate_ships_the_candidate_only_when_it_beats_the_baseline_and_logs_the_evidence(churn_store, holdout_rows):
    y = target(holdout_rows).to_numpy()
    informative = np.where(y == 1, 0.7, 0.3) + np.linspace(-0.2, 0.2, len(y))
    coin = np.full(len(y), 0.5) + np.linspace(0, 0.01, len(y))
    config = ChurnConfig.model_validate({"gate": {"bootstrap_samples": 200}})
    decision, reason = gate(y, informative, coin, config)
    assert decision.passed and reason.startswith("tuned xgboost beats logistic_regression: valid roc_auc")
    assert reason.endswith(": xgboost ships")
    refused, why = gate(y, coin, informative, config)
    assert not refused.passed and why.endswith(": logistic_regression ships")
    with mlflow.start_run() as run:
        log_gate(decision, reason)
    logged = MlflowClient().get_run(run.info.run_id).data
    assert logged.tags["gate_decision"] == reason
    assert logged.metrics["gate_passed"] == 1.0
    assert logged.metrics["gate_challenger"] == pytest.approx(decision.challenger)
    assert logged.metrics["gate_required"] == 0.8
    assert "gate_metric" not in logged.metrics  # the metric's name is text, not a number
