"""Optimize stage: tune XGBoost (Optuna's sampler, in this process or on Ray Tune: `optimize.backend`), gate it
against the baseline, pick the cost-optimal threshold.

Honest by construction: trials are scored on a `tune` slice carved out of the training split, so the
valid split stays unseen until the gate compares the tuned model with logistic regression on it. Early
stopping picks the number of trees, and the shipped model is rebuilt with exactly that many, which
keeps it compact (and its ONNX graph equal to what was evaluated).

Outputs: `candidate` (sklearn pipeline, the model that ships), `candidate.json` (what it is, its
threshold, the gate's evidence), plots of the search and the cost curve.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import mlflow
import optuna
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from pipelines.churn.evaluate import metrics_at_threshold
from pipelines.churn.features import features, target
from pipelines.churn.metrics import probability_metrics
from pipelines.churn.models import BASELINE, CANDIDATE, xgboost_pipeline
from pipelines.churn.threshold import best_threshold, cost_curve, log_cost_curve
from pipelines.churn.train import load_model_uris, load_split, log_sklearn_model
from pipelines.common import tracking
from pipelines.common.bootstrap import Decision, decide
from pipelines.common.plots import log_figure, new_figure
from pipelines.common.runner import StageContext
from pipelines.common.search import Outcome, Search, SearchResult, run_search

log = logging.getLogger(__name__)
TUNE_FRACTION = 0.25  # share of the training split held out to score the search's trials


def suggest_params(trial: optuna.Trial) -> dict:
    return {
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.2, log=True),
        "max_depth": trial.suggest_int("max_depth", 2, 6),
        "min_child_weight": trial.suggest_float("min_child_weight", 1.0, 30.0, log=True),
        "subsample": trial.suggest_float("subsample", 0.5, 1.0),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.3, 1.0),
        "reg_lambda": trial.suggest_float("reg_lambda", 0.1, 30.0, log=True),
    }


def fit_with_early_stopping(params: dict, fit_rows: pd.DataFrame, eval_rows: pd.DataFrame, ctx: StageContext):
    """Fit XGBoost with up to `max_estimators` trees, stopping when eval log loss stops improving."""
    opt = ctx.config.optimize
    pipeline = xgboost_pipeline(params | {"n_estimators": opt.max_estimators}, ctx.config.seed,
                                early_stopping_rounds=opt.early_stopping_rounds)
    encoder = pipeline.named_steps["features"].fit(features(fit_rows))
    pipeline.named_steps["model"].fit(
        encoder.transform(features(fit_rows)), target(fit_rows),
        eval_set=[(encoder.transform(features(eval_rows)), target(eval_rows))], verbose=False,
    )
    return pipeline


@dataclass(frozen=True)
class TuneObjective:
    """One trial: fit with early stopping, score on the tune slice. The objective both search engines run
    (a picklable object: Ray ships it, rows included, to its workers)."""

    fit_rows: pd.DataFrame
    tune_rows: pd.DataFrame
    ctx: StageContext

    def __call__(self, params: dict) -> Outcome:
        model = fit_with_early_stopping(params, self.fit_rows, self.tune_rows, self.ctx)
        score = roc_auc_score(target(self.tune_rows), model.predict_proba(features(self.tune_rows))[:, 1])
        trees = model.named_steps["model"].best_iteration + 1
        return Outcome(score, {"tune_roc_auc": score, "n_trees": trees}, {"n_estimators": trees})


def search(ctx: StageContext, train: pd.DataFrame) -> tuple[dict, SearchResult]:
    """TPE search on the configured engine; each trial is a nested MLflow run with its params and tune-slice
    ROC-AUC. Trial 0 is the hand-set config: tuning can only match or beat it."""
    fit_rows, tune_rows = train_test_split(train, test_size=TUNE_FRACTION, stratify=target(train),
                                           random_state=ctx.config.seed)
    start = ctx.config.models.xgboost.model_dump(exclude={"n_estimators"})
    result = run_search(Search(suggest_params, TuneObjective(fit_rows, tune_rows, ctx), ctx.config.seed, start,
                               tags={"project": ctx.project}, label="xgboost trials"), ctx.config.optimize)
    best = result.best_trial.params | {"n_estimators": result.best_trial.user_attrs["n_estimators"]}
    return best, result


def log_search_plot(result: SearchResult) -> None:
    trials = result.trials
    fig, ax = new_figure()
    ax.plot([t.number for t in trials], [t.value for t in trials], "o", alpha=0.6, label="trial")
    best_so_far = pd.Series([t.value for t in trials]).cummax()
    ax.plot([t.number for t in trials], best_so_far, "-", color="tab:red", label="best so far")
    ax.set(xlabel="trial", ylabel="tune ROC-AUC", title=f"Optuna search for XGBoost ({result.backend})")
    ax.legend()
    log_figure(fig, "optuna/search.png")


def gate(y_valid, p_candidate, p_baseline, config) -> tuple[Decision, str]:
    """The quality gate: the tuned candidate ships only when it beats the baseline by more than noise
    (the lower end of its gain's paired-bootstrap interval on the valid rows > gate.min_gain). On Telco
    the two are within a few thousandths of ROC-AUC, well inside split-to-split noise, so the baseline
    usually ships."""
    rule = config.gate
    decision = decide(y_valid, p_baseline, p_candidate, metric=rule.metric, samples=rule.bootstrap_samples,
                      confidence=rule.confidence, seed=config.seed, min_gain=rule.min_gain)
    shipped = CANDIDATE if decision.passed else BASELINE
    return decision, f"{decision.reason(f'tuned {CANDIDATE}', BASELINE, 'valid')}: {shipped} ships"


def log_gate(decision: Decision, reason: str) -> None:
    mlflow.log_metrics(decision.as_metrics("gate"))
    mlflow.set_tag("gate_decision", reason)


def run(ctx: StageContext) -> None:
    config = ctx.config
    train, valid, test = (load_split(ctx, name) for name in ("train", "valid", "test"))
    best_params, result = search(ctx, train)
    log_search_plot(result)
    mlflow.log_metric("search_seconds", result.wall_seconds)
    mlflow.log_params({f"best.{k}": v for k, v in best_params.items()})

    tuned = xgboost_pipeline(best_params, config.seed).fit(features(train), target(train))
    baseline = mlflow.sklearn.load_model(load_model_uris(ctx)["classifiers"][BASELINE])
    p_valid = {name: m.predict_proba(features(valid))[:, 1] for name, m in ((CANDIDATE, tuned), (BASELINE, baseline))}
    decision, reason = gate(target(valid), p_valid[CANDIDATE], p_valid[BASELINE], config)
    log.info("gate: %s", reason)
    log_gate(decision, reason)
    chosen_name, chosen = (CANDIDATE, tuned) if decision.passed else (BASELINE, baseline)

    curve = cost_curve(target(valid), p_valid[chosen_name], config.cost)
    threshold = best_threshold(curve)
    log_cost_curve(curve, threshold, config.cost, "threshold/cost_curve.png")
    mlflow.log_table(curve, "threshold/cost_curve.json")

    if config.export.refit_on_train_and_valid:
        train_and_valid = pd.concat([train, valid], ignore_index=True)
        chosen = chosen.fit(features(train_and_valid), target(train_and_valid))
    p_test = chosen.predict_proba(features(test))[:, 1]
    metrics = probability_metrics("test", target(test), p_test)
    metrics |= metrics_at_threshold("test", target(test), p_test, threshold, config.cost)
    mlflow.log_metrics(metrics | {"threshold": threshold})
    uri = log_sklearn_model(chosen, "candidate", features(train).head(5))
    tracking.log_json({"model_uri": uri, "model_type": chosen_name, "threshold": threshold,
                       "params": best_params if chosen_name == CANDIDATE else None,
                       "gate": decision.as_dict(), "gate_reason": reason}, "candidate.json")
    ctx.summary |= {"gate": reason, "shipped_model": chosen_name, "threshold": threshold,
                    "candidate_test_roc_auc": metrics["test_roc_auc"]}


def load_candidate(ctx: StageContext) -> dict:
    return json.loads(ctx.artifact("optimize", "candidate.json").read_text())
