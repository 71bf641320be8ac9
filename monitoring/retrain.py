"""Closing the loop: retrain on recent labelled traffic, then promote the challenger only if it wins.

1. Take the newest labelled predictions from the log and split them in time: the older part is added
   to the training data, the newest part is kept out to judge on (a model must not be judged on rows
   it learned from). What a model learns from is what the codec recovers from a log entry
   (`codec.training_row`): a tabular model's inputs, a text model's text. An image model cannot be
   retrained from the log, which keeps a hash and descriptors, never the pixels: that is an error
   saying so, before anything is trained.
2. Train and register a challenger (`run_project(..., alias="challenger")`: one line, replaceable).
3. Score the judging rows with the champion and the challenger packages (each through its own codec,
   as the server would) and let the repo's one promotion rule decide (`pipelines.common.promotion`:
   enough judge rows, the lower end of the gain's paired-bootstrap interval above a margin, no regression
   on the curated test split nor on cost at the served threshold, a cooldown since the last promotion).
   With a shadow challenger (serving/shadow.py: the server scored live traffic with both), steps 1-3 give
   way: the judge rows are the shadow rows whose labels arrived, each with both models' logged answers
   (the challenger never trained on traffic served after it was registered), judged by the same rule.
4. Log the decision and its evidence to MLflow first, promoted or not; then, only if promoted, move the
   `champion` alias by compare-and-set: if another promotion moved it since step 1, abort (AliasMoved).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import mlflow
import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from modelpkg.contract import LABEL
from modelpkg.runtime import class_indices, decide as served_decisions
from monitoring.config import MonitoringConfig, RetrainConfig
from monitoring.reference import WatchedModel, load_watched_model
from monitoring.window import TS
from pipelines.common import registry, tracking
from pipelines.common.bootstrap import Decision, probability_matrix
from pipelines.common.config import OutcomeCosts
from pipelines.common.promotion import Evidence, Side, Verdict, check_rows, decide_promotion
from pipelines.common.registry import CHALLENGER, CHAMPION
from serving.predlog import read_predictions, read_shadow

log = logging.getLogger(__name__)

Trainer = Callable[[pd.DataFrame], "str | None"]  # extra training rows -> registered challenger version
JUDGED_ON = "recent labelled traffic"
JUDGED_ON_SHADOW = "labelled shadow traffic"


class CannotRetrain(ValueError):
    """The prediction log does not hold what this kind of model learns from."""


def recent_labelled_records(db_path: Path, model: str, rows: int) -> list[dict]:
    """The newest `rows` logged predictions whose ground truth has arrived, oldest first, selected in SQL
    (all served versions: inputs and labels do not depend on which version answered)."""
    records = read_predictions(db_path, model, labelled=True, last_n=rows)
    if not records:
        raise LookupError(f"no labelled predictions of '{model}' in {db_path}: post feedback labels first")
    return records


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


def side(model: WatchedModel, stored: list[dict]) -> Side:
    """One package's evidence: its probabilities and its served decisions (at its own threshold) on the
    stored rows, scored through its own codec as the server would, and its registered test metrics."""
    probabilities = model.predictor.score_rows(stored)
    return Side(probabilities, served_decisions(probabilities, model.contract)[0], dict(model.contract.metrics))


def judge(champion: WatchedModel, challenger: WatchedModel, rows: pd.DataFrame, settings: RetrainConfig,
          seed: int, *, costs: OutcomeCosts | None = None, last_promotion: float | None = None,
          now: float | None = None) -> Verdict:
    """Both packages score the same stored rows; the repo's one promotion rule gives the verdict."""
    if list(challenger.contract.labels) != list(champion.contract.labels):
        raise ValueError(f"{champion.name}: challenger v{challenger.version} has classes {challenger.contract.labels}, "
                         f"champion v{champion.version} {champion.contract.labels}: they cannot be compared")
    stored = rows[input_columns(rows)].to_dict(orient="records")
    return verdict(champion, rows[LABEL], side(champion, stored), side(challenger, stored), settings, seed,
                   costs=costs, last_promotion=last_promotion, now=now)


def verdict(champion: WatchedModel, labels, champion_side: Side, challenger_side: Side, settings: RetrainConfig,
            seed: int, *, costs: OutcomeCosts | None = None, last_promotion: float | None = None,
            now: float | None = None) -> Verdict:
    """The repo's one promotion rule on two sides' evidence, however they were scored."""
    binary = len(champion.contract.labels) == 2
    evidence = Evidence(class_indices(labels, champion.contract.labels, champion.name), champion_side,
                        challenger_side, positive=champion.contract.positive_index if binary else None,
                        last_promotion=last_promotion, now=now)
    return decide_promotion(evidence, settings, costs=costs, seed=seed)


def logged_probabilities(outputs: list[dict], model: WatchedModel) -> np.ndarray:
    """Logged answers -> [rows, classes] probabilities (a binary answer carries P(positive) alone)."""
    labels = model.contract.labels
    if len(labels) == 2:
        return probability_matrix([output["probability"] for output in outputs], model.contract.positive_index)
    return np.array([[output["probabilities"][label] for label in labels] for output in outputs], dtype=np.float64)


def logged_side(model: WatchedModel, outputs: list[dict]) -> Side:
    """A side from what the server answered (or shadow-logged), decided at the model's own threshold."""
    probabilities = logged_probabilities(outputs, model)
    return Side(probabilities, served_decisions(probabilities, model.contract)[0], dict(model.contract.metrics))


def shadow_rows(db_path: Path, model: str, champion_version: str, rows: int) -> list[dict]:
    """The newest labelled shadow rows of the champion now serving and of the newest shadow version;
    empty when the server shadowed nothing (yet) for it."""
    found = [row for row in read_shadow(db_path, model, labelled=True, last_n=rows) if row["version"] == champion_version]
    newest = found[-1]["shadow_version"] if found else None
    return [row for row in found if row["shadow_version"] == newest]


def judge_shadow(champion: WatchedModel, challenger: WatchedModel, rows: list[dict], settings: RetrainConfig,
                 seed: int, **rules) -> Verdict:
    """Both sides as the server logged them on live traffic: no rescoring, the same rule."""
    return verdict(champion, [row["label"] for row in rows], logged_side(champion, [row["outputs"] for row in rows]),
                   logged_side(challenger, [row["shadow_outputs"] for row in rows]), settings, seed, **rules)


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
    verdict: Verdict
    train_rows: int
    run_id: str | None = None  # the MLflow run holding the decision and its evidence
    judged_on: str = JUDGED_ON

    @property
    def decision(self) -> Decision:
        """The gain rule's paired-bootstrap evidence."""
        return self.verdict.decision

    @property
    def promoted(self) -> bool:
        return self.verdict.passed

    @property
    def reason(self) -> str:
        return (f"{self.verdict.reason(f'challenger v{self.challenger_version}', f'champion v{self.champion_version}')}"
                f" (judged on {self.judged_on})")


def log_decision(experiment: str, outcome: RetrainOutcome, trigger: str) -> str:
    """The evidence goes to MLflow before any alias moves: a promotion is never without its record."""
    tracking.configure_tracking(experiment)  # training may have switched the active experiment
    with mlflow.start_run(run_name=f"retrain-decision v{outcome.challenger_version}",
                          tags={"kind": "retrain-decision", "trigger": trigger[:5000]}) as run:
        d = outcome.decision
        mlflow.log_params({"champion_version": outcome.champion_version, "metric": d.metric,
                           "challenger_version": outcome.challenger_version, "confidence": d.required,
                           "min_gain": d.min_gain, "train_extra_rows": outcome.train_rows, "judge_rows": d.rows})
        mlflow.log_metrics(d.as_metrics("judge") | outcome.verdict.as_metrics() | {"promoted": float(outcome.promoted)})
        mlflow.set_tags({"decision": "promoted" if outcome.promoted else "kept champion", "judged_on": outcome.judged_on,
                         "reason": outcome.reason[:5000], "refused_by": ", ".join(outcome.verdict.refused_by) or "-"})
        tracking.log_json({"champion_version": outcome.champion_version,
                           "challenger_version": outcome.challenger_version, "train_rows": outcome.train_rows,
                           "verdict": outcome.verdict.as_dict(), "trigger": trigger, "reason": outcome.reason},
                          "retrain/decision.json")
    return run.info.run_id


def promote(model: str, outcome: RetrainOutcome) -> None:
    """Compare-and-set the alias to the challenger; the decision run records what became of it."""
    client = MlflowClient()
    try:
        registry.promote(model, outcome.challenger_version, expected_champion=outcome.champion_version)
    except registry.AliasMoved as error:
        client.set_tag(outcome.run_id, "decision", "aborted: champion moved")
        client.set_tag(outcome.run_id, "alias", f"not moved: {error}"[:5000])
        raise
    client.set_tag(outcome.run_id, "alias", f"champion v{outcome.champion_version} -> v{outcome.challenger_version}")


def retrain_and_decide(config: MonitoringConfig, model_name: str, db_path: Path, *, trigger: str,
                       trainer: Trainer | None = None) -> RetrainOutcome:
    settings, model_cfg = config.retrain, config.model(model_name)
    champion = load_watched_model(model_name, alias=CHAMPION)
    shadowed = shadow_rows(db_path, model_name, champion.version, settings.recent_rows)
    if shadowed:
        return decide_on_shadow(config, champion, shadowed, trigger)
    recent = training_frame(recent_labelled_records(db_path, model_name, settings.recent_rows), champion)
    train_rows, judge_rows = split_in_time(recent, settings.eval_fraction)
    judge_rows = drop_rows_seen_in(judge_rows, train_rows, input_columns(recent))
    rows_rule = check_rows(len(judge_rows), settings)  # the verdict's first rule, asked before minutes of training
    if not rows_rule.passed:
        raise LookupError(f"only {len(recent)} labelled predictions of '{model_name}': {rows_rule.detail} "
                          f"(unseen by the challenger; post feedback labels first)")
    log.info("retraining %s on %d recent labelled rows; judging on the newest %d", model_name, len(train_rows),
             len(judge_rows))
    trainer = trainer or pipeline_trainer(model_name, model_cfg.train_config)
    version = trainer(as_training_rows(train_rows, model_cfg.train_label_column))
    if version is None:
        raise RuntimeError(f"retraining {model_name} registered no version: nothing to compare")
    challenger = load_watched_model(model_name, version=str(version))
    verdict = judge(champion, challenger, judge_rows, settings, config.seed, costs=model_cfg.costs,
                    last_promotion=registry.last_promotion(model_name))
    return record_and_promote(config, RetrainOutcome(champion.version, challenger.version, verdict, len(train_rows)),
                              model_name, trigger)


def decide_on_shadow(config: MonitoringConfig, champion: WatchedModel, rows: list[dict], trigger: str) -> RetrainOutcome:
    """The challenger the server shadowed, judged on its labelled shadow rows: nothing is trained."""
    settings, model_cfg = config.retrain, config.model(champion.name)
    challenger = load_watched_model(champion.name, version=rows[-1]["shadow_version"])
    log.info("judging shadow challenger v%s against champion v%s on %d labelled shadow rows", challenger.version,
             champion.version, len(rows))
    verdict = judge_shadow(champion, challenger, rows, settings, config.seed, costs=model_cfg.costs,
                           last_promotion=registry.last_promotion(champion.name))
    outcome = RetrainOutcome(champion.version, challenger.version, verdict, 0, judged_on=JUDGED_ON_SHADOW)
    return record_and_promote(config, outcome, champion.name, trigger)


def record_and_promote(config: MonitoringConfig, outcome: RetrainOutcome, model_name: str, trigger: str) -> RetrainOutcome:
    """Evidence to MLflow first, then (only if promoted) the alias."""
    log.info("%s: %s", model_name, outcome.reason)
    outcome = replace(outcome, run_id=log_decision(config.model(model_name).experiment, outcome, trigger))
    if outcome.promoted:
        promote(model_name, outcome)
    return outcome
