"""Closing the loop: retrain on recent labelled traffic, then promote the challenger only if it wins.

1. Take the newest labelled predictions from the log and split them in time: the older part is added
   to the training data, the newest part is kept out to judge on (a model must not be judged on rows
   it learned from). What a model learns from is what the codec recovers from a log entry
   (`codec.training_row`): a tabular model's inputs, a text model's text. An image model cannot be
   retrained from the log, which keeps a hash and descriptors, never the pixels: that is an error
   saying so, before anything is trained.
2. Train and register a challenger (`run_project(..., alias="challenger")`: one line, replaceable).
3. Score the judging rows with the champion and the challenger packages (each through its own codec,
   as the server would) and let the repo's one promotion rule decide
   (`pipelines.common.bootstrap.decide`: a paired bootstrap on class indices, binary or multi-class).
   Promote (move the `champion` alias) only when P(challenger better) >= confidence.
4. Log the decision and its evidence to MLflow, promoted or not.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient

from modelpkg.contract import LABEL
from monitoring.config import MonitoringConfig, RetrainConfig
from modelpkg.runtime import class_indices
from monitoring.reference import WatchedModel, load_watched_model
from monitoring.window import TS, WindowSpec, read_records
from pipelines.common import tracking
from pipelines.common.bootstrap import Decision, decide
from pipelines.common.registry import CHALLENGER, CHAMPION

log = logging.getLogger(__name__)

Trainer = Callable[[pd.DataFrame], "str | None"]  # extra training rows -> registered challenger version
JUDGED_ON = "recent labelled traffic"


class CannotRetrain(ValueError):
    """The prediction log does not hold what this kind of model learns from."""


def recent_labelled_records(db_path: Path, model: str, rows: int) -> list[dict]:
    """The newest logged predictions whose ground truth has arrived, oldest first (all served versions:
    inputs and labels do not depend on which version answered)."""
    records = [record for record in read_records(db_path, model, WindowSpec()) if record["label"] is not None]
    if not records:
        raise LookupError(f"no labelled predictions of '{model}' in {db_path}: post feedback labels first")
    return records[-rows:]


def training_frame(records: list[dict], model: WatchedModel) -> pd.DataFrame:
    """Log entries -> what the model learns from (`codec.training_row`), plus `label` and `ts`."""
    try:
        rows = [model.codec.training_row(record["inputs"]) for record in records]
    except NotImplementedError as error:
        raise CannotRetrain(f"{model.name} ({model.contract.kind}) cannot be retrained from its prediction log: "
                            f"{error} (an image model's log keeps a hash and descriptors, never the pixels); "
                            f"retrain it from the project's own labelled data") from None
    except KeyError as error:
        raise ValueError(f"a logged prediction of {model.name} lacks {error}: was it logged by another model?") from None
    frame = pd.DataFrame(rows)
    return frame.assign(**{LABEL: [str(record["label"]) for record in records], TS: [record["ts"] for record in records]})


def input_columns(frame: pd.DataFrame) -> list[str]:
    return [column for column in frame.columns if column not in (LABEL, TS)]


def split_in_time(frame: pd.DataFrame, eval_fraction: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Older rows to learn from, newest rows to judge on: the judge always looks forward in time."""
    cut = int(round(len(frame) * (1 - eval_fraction)))
    return frame.iloc[:cut].reset_index(drop=True), frame.iloc[cut:].reset_index(drop=True)


def drop_rows_seen_in(judge: pd.DataFrame, train: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Judge only on inputs the challenger did not train on: a repeated row (same inputs) would let a
    model win by memory. Rare in production; common when traffic is resampled from a small pool."""
    seen = judge[columns].merge(train[columns].drop_duplicates(), how="left", on=columns, indicator=True)
    return judge[(seen["_merge"] == "left_only").to_numpy()].reset_index(drop=True)


def as_training_rows(frame: pd.DataFrame, label_column: str) -> pd.DataFrame:
    """The inputs as `codec.training_row` gave them + the label, under the name the pipeline expects."""
    rows = frame[input_columns(frame)].copy()
    rows[label_column] = frame[LABEL].astype(str).to_numpy()
    return rows


def judge(champion: WatchedModel, challenger: WatchedModel, rows: pd.DataFrame, settings: RetrainConfig,
          seed: int) -> Decision:
    """Both packages score the same stored rows (each through its own codec); the paired bootstrap decides."""
    if list(challenger.contract.labels) != list(champion.contract.labels):
        raise ValueError(f"{champion.name}: challenger v{challenger.version} has classes {challenger.contract.labels}, "
                         f"champion v{champion.version} {champion.contract.labels}: they cannot be compared")
    stored = rows[input_columns(rows)].to_dict(orient="records")
    return decide(class_indices(rows[LABEL], champion.contract.labels, champion.name), champion.predictor.score_rows(stored),
                  challenger.predictor.score_rows(stored), metric=settings.metric,
                  samples=settings.bootstrap_samples, confidence=settings.confidence, seed=seed)


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
    decision: Decision
    train_rows: int
    run_id: str | None = None  # the MLflow run holding the decision and its evidence

    @property
    def promoted(self) -> bool:
        return self.decision.passed

    @property
    def reason(self) -> str:
        return self.decision.reason(f"challenger v{self.challenger_version}", f"champion v{self.champion_version}",
                                    JUDGED_ON)


def log_decision(experiment: str, outcome: RetrainOutcome, trigger: str) -> str:
    tracking.configure_tracking(experiment)  # training may have switched the active experiment
    with mlflow.start_run(run_name=f"retrain-decision v{outcome.challenger_version}",
                          tags={"kind": "retrain-decision", "trigger": trigger[:5000]}) as run:
        d = outcome.decision
        mlflow.log_params({"champion_version": outcome.champion_version, "metric": d.metric,
                           "challenger_version": outcome.challenger_version, "confidence": d.required,
                           "train_extra_rows": outcome.train_rows, "judge_rows": d.rows})
        mlflow.log_metrics(d.as_metrics("judge") | {"promoted": float(outcome.promoted)})
        mlflow.set_tags({"decision": "promoted" if outcome.promoted else "kept champion", "reason": outcome.reason})
        tracking.log_json(asdict(outcome) | {"trigger": trigger, "reason": outcome.reason}, "retrain/decision.json")
    return run.info.run_id


def retrain_and_decide(config: MonitoringConfig, model_name: str, db_path: Path, *, trigger: str,
                       trainer: Trainer | None = None) -> RetrainOutcome:
    settings, model_cfg = config.retrain, config.model(model_name)
    champion = load_watched_model(model_name, alias=CHAMPION)
    recent = training_frame(recent_labelled_records(db_path, model_name, settings.recent_rows), champion)
    train_rows, judge_rows = split_in_time(recent, settings.eval_fraction)
    judge_rows = drop_rows_seen_in(judge_rows, train_rows, input_columns(recent))
    if len(judge_rows) < settings.min_judge_rows:
        raise LookupError(f"only {len(recent)} labelled predictions of '{model_name}': {len(judge_rows)} unseen rows "
                          f"to judge on, need {settings.min_judge_rows} (post feedback labels first)")
    log.info("retraining %s on %d recent labelled rows; judging on the newest %d", model_name, len(train_rows),
             len(judge_rows))
    trainer = trainer or pipeline_trainer(model_name, model_cfg.train_config)
    version = trainer(as_training_rows(train_rows, model_cfg.train_label_column))
    if version is None:
        raise RuntimeError(f"retraining {model_name} registered no version: nothing to compare")
    challenger = load_watched_model(model_name, version=str(version))
    decision = judge(champion, challenger, judge_rows, settings, config.seed)
    if decision.passed:
        MlflowClient().set_registered_model_alias(model_name, CHAMPION, challenger.version)
    outcome = RetrainOutcome(champion.version, challenger.version, decision, len(train_rows))
    log.info("%s: %s", model_name, outcome.reason)
    return replace(outcome, run_id=log_decision(model_cfg.experiment, outcome, trigger))
