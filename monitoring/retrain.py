"""Closing the loop: retrain on recent labelled traffic, then promote the challenger only if it wins.

1. Take the newest labelled predictions from the log and split them in time: the older part is added
   to the training data, the newest part is kept out to judge on (a model must not be judged on rows
   it learned from).
2. Train and register a challenger (`run_project(..., alias="challenger")`: one line, replaceable).
3. Score the judging rows with the champion and the challenger ONNX graphs, and compare them with a
   paired bootstrap: resample rows, score both models on the same resample, count how often the
   challenger wins. Promote (move the `champion` alias) only when P(challenger better) >= confidence.
4. Log the decision and its evidence to MLflow, promoted or not.

`decide_promotion` is a pure function of labels and two probability vectors: the rule is tested alone.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import mlflow
import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from monitoring.config import MonitoringConfig, RetrainConfig
from monitoring.reference import LABEL, WatchedModel, load_watched_model
from monitoring.window import WindowSpec, read_window
from pipelines.common import tracking
from pipelines.common.bootstrap import paired_bootstrap_gains, score
from pipelines.common.registry import CHALLENGER, CHAMPION

log = logging.getLogger(__name__)

Trainer = Callable[[pd.DataFrame], "str | None"]  # extra training rows -> registered challenger version
CI_QUANTILES = (0.05, 0.95)


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    metric: str
    rows: int
    champion_score: float
    challenger_score: float
    p_better: float  # share of bootstrap resamples where the challenger scores better
    gain_ci: tuple[float, float]  # 90 % interval of (challenger - champion), oriented so > 0 is better
    confidence: float
    reason: str


def decide_promotion(y_true: np.ndarray, p_champion: np.ndarray, p_challenger: np.ndarray,
                     settings: RetrainConfig, seed: int = 0) -> PromotionDecision:
    """Promote only when the challenger wins in at least `confidence` of the paired resamples."""
    y = np.asarray(y_true, dtype=int)
    champion, challenger = np.asarray(p_champion, float), np.asarray(p_challenger, float)
    if not len(y) == len(champion) == len(challenger):
        raise ValueError(f"length mismatch: {len(y)} labels, {len(champion)} and {len(challenger)} probabilities")
    if y.min() == y.max():
        raise ValueError(f"the judging rows hold one class only ({len(y)} rows): cannot compare models")
    gains = paired_bootstrap_gains(y, champion, challenger, metric=settings.metric,
                                   samples=settings.bootstrap_samples, seed=seed)
    p_better = float((gains > 0).mean())
    promote = p_better >= settings.confidence
    verdict = "promote" if promote else "keep champion"
    return PromotionDecision(
        promote=promote, metric=settings.metric, rows=len(y),
        champion_score=score(settings.metric, y, champion), challenger_score=score(settings.metric, y, challenger),
        p_better=p_better, gain_ci=tuple(float(q) for q in np.quantile(gains, CI_QUANTILES)),
        confidence=settings.confidence,
        reason=f"{verdict}: P(challenger better on {settings.metric}) = {p_better:.3f} "
               f"{'>=' if promote else '<'} {settings.confidence} over {len(gains)} paired resamples of {len(y)} rows",
    )


# ------------------------------------------------------------------------------------------- the loop


def recent_labelled_rows(db_path: Path, model: str, features: list[str], rows: int) -> pd.DataFrame:
    """The newest predictions whose ground truth has arrived, oldest first (all served versions:
    inputs and labels do not depend on which version answered)."""
    frame = read_window(db_path, model, WindowSpec(), features)
    return frame[frame[LABEL].notna()].tail(rows).reset_index(drop=True)


def split_in_time(frame: pd.DataFrame, eval_fraction: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Older rows to learn from, newest rows to judge on: the judge always looks forward in time."""
    cut = int(round(len(frame) * (1 - eval_fraction)))
    return frame.iloc[:cut].reset_index(drop=True), frame.iloc[cut:].reset_index(drop=True)


def drop_rows_seen_in(judge: pd.DataFrame, train: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """Judge only on customers the challenger did not train on: a repeated row (same inputs) would let
    a model win by memory. Rare in production; common when traffic is resampled from a small pool."""
    seen = judge[features].merge(train[features].drop_duplicates(), how="left", on=features, indicator=True)
    return judge[(seen["_merge"] == "left_only").to_numpy()].reset_index(drop=True)


def as_training_rows(frame: pd.DataFrame, model: WatchedModel, label_column: str) -> pd.DataFrame:
    """Inputs as the training data holds them (whole numbers as ints, per the contract) + the label."""
    rows = frame[model.features].copy()
    for spec in model.contract.inputs:
        if spec.integer:
            rows[spec.name] = rows[spec.name].astype(float).round().astype("int64")
    rows[label_column] = frame[LABEL].astype(str).to_numpy()
    return rows


def pipeline_trainer(project: str, config_path: str) -> Trainer:
    """The real retraining: the project's own pipeline, registering the result as `challenger`."""
    def train(extra: pd.DataFrame) -> str | None:
        from pipelines.common.runner import run_project  # training code only when retraining

        return run_project(project, config_path, extra_train_data=extra, alias=CHALLENGER).registered_version

    return train


@dataclass(frozen=True)
class RetrainOutcome:
    champion_version: str
    challenger_version: str
    decision: PromotionDecision
    train_rows: int
    run_id: str | None = None  # the MLflow run holding the decision and its evidence


def log_decision(experiment: str, outcome: RetrainOutcome, trigger: str) -> str:
    tracking.configure_tracking(experiment)  # training may have switched the active experiment
    with mlflow.start_run(run_name=f"retrain-decision v{outcome.challenger_version}",
                          tags={"kind": "retrain-decision", "trigger": trigger[:5000]}) as run:
        d = outcome.decision
        mlflow.log_params({"champion_version": outcome.champion_version, "metric": d.metric,
                           "challenger_version": outcome.challenger_version, "confidence": d.confidence,
                           "train_extra_rows": outcome.train_rows, "judge_rows": d.rows})
        mlflow.log_metrics({f"judge_champion_{d.metric}": d.champion_score, "judge_p_better": d.p_better,
                            f"judge_challenger_{d.metric}": d.challenger_score,
                            "judge_gain_low": d.gain_ci[0], "judge_gain_high": d.gain_ci[1],
                            "promoted": float(d.promote)})
        mlflow.set_tags({"decision": "promoted" if d.promote else "kept champion", "reason": d.reason})
        tracking.log_json(asdict(outcome) | {"trigger": trigger}, "retrain/decision.json")
    return run.info.run_id


def retrain_and_decide(config: MonitoringConfig, model_name: str, db_path: Path, *, trigger: str,
                       trainer: Trainer | None = None) -> RetrainOutcome:
    settings, model_cfg = config.retrain, config.model(model_name)
    champion = load_watched_model(model_name, alias=CHAMPION)
    recent = recent_labelled_rows(db_path, model_name, champion.features, settings.recent_rows)
    train_rows, judge_rows = split_in_time(recent, settings.eval_fraction)
    judge_rows = drop_rows_seen_in(judge_rows, train_rows, champion.features)
    if len(judge_rows) < settings.min_judge_rows:
        raise LookupError(f"only {len(recent)} labelled predictions of '{model_name}': {len(judge_rows)} unseen rows "
                          f"to judge on, need {settings.min_judge_rows} (post feedback labels first)")
    log.info("retraining %s on %d recent labelled rows; judging on the newest %d", model_name, len(train_rows),
             len(judge_rows))
    trainer = trainer or pipeline_trainer(model_name, model_cfg.train_config)
    version = trainer(as_training_rows(train_rows, champion, model_cfg.train_label_column))
    if version is None:
        raise RuntimeError(f"retraining {model_name} registered no version: nothing to compare")
    challenger = load_watched_model(model_name, version=str(version))
    truth = (judge_rows[LABEL].astype(str) == champion.contract.positive_label).to_numpy()
    decision = decide_promotion(truth, champion.positive_probability(judge_rows),
                                challenger.positive_probability(judge_rows), settings, seed=config.seed)
    if decision.promote:
        MlflowClient().set_registered_model_alias(model_name, CHAMPION, challenger.version)
    outcome = RetrainOutcome(champion.version, challenger.version, decision, len(train_rows))
    log.info("%s v%s vs v%s: %s", model_name, challenger.version, champion.version, decision.reason)
    return replace(outcome, run_id=log_decision(model_cfg.experiment, outcome, trigger))
