"""The retraining decision: the pure promotion rule, then the whole loop on a real store and a real log."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from monitoring.config import RetrainConfig
from monitoring.reference import load_watched_model
from monitoring.retrain import as_training_rows, decide_promotion, drop_rows_seen_in, retrain_and_decide, split_in_time
from pipelines.common import tracking
from tests.monitoring.conftest import temporary_store
from tests.monitoring.predlog_writer import log_predictions
from tests.monitoring.tiny_model import register_tiny_model

SETTINGS = RetrainConfig(bootstrap_samples=300, confidence=0.9, metric="roc_auc")
RECENT_ROWS = 600


def labels_and_scores(seed: int, rows: int = 400) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, a sharp score and a noisy one (the noisy one ranks churners far less well)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(rows) < 0.3).astype(int)
    sharp = 1 / (1 + np.exp(-(3 * y - 1.5 + rng.normal(0, 1, rows))))
    noisy = 1 / (1 + np.exp(-(1 * y - 0.5 + rng.normal(0, 2, rows))))
    return y, sharp, noisy


def test_a_clearly_better_challenger_is_promoted():
    y, sharp, noisy = labels_and_scores(0)
    decision = decide_promotion(y, p_champion=noisy, p_challenger=sharp, settings=SETTINGS)
    assert decision.promote and decision.p_better >= 0.9
    assert decision.challenger_score > decision.champion_score and decision.gain_ci[0] > 0
    assert decision.reason.startswith("promote")


def test_a_worse_or_identical_challenger_is_not_promoted():
    y, sharp, noisy = labels_and_scores(1)
    worse = decide_promotion(y, p_champion=sharp, p_challenger=noisy, settings=SETTINGS)
    assert not worse.promote and worse.p_better < 0.1
    same = decide_promotion(y, p_champion=sharp, p_challenger=sharp.copy(), settings=SETTINGS)
    assert not same.promote and same.p_better == 0.0  # a tie is not a win


def test_log_loss_is_oriented_so_lower_is_better():
    y, sharp, noisy = labels_and_scores(2)
    decision = decide_promotion(y, noisy, sharp, RetrainConfig(metric="log_loss", bootstrap_samples=300))
    assert decision.promote and decision.challenger_score < decision.champion_score


def test_bad_inputs_fail_clearly():
    y, sharp, _ = labels_and_scores(3)
    with pytest.raises(ValueError, match="length mismatch"):
        decide_promotion(y, sharp, sharp[:-1], SETTINGS)
    with pytest.raises(ValueError, match="one class only"):
        decide_promotion(np.zeros(50, int), sharp[:50], sharp[:50], SETTINGS)


def test_recent_rows_split_in_time_oldest_to_train():
    frame = pd.DataFrame({"ts": range(10)})
    train, judge = split_in_time(frame, eval_fraction=0.3)
    assert list(train["ts"]) == list(range(7)) and list(judge["ts"]) == [7, 8, 9]


def test_judge_rows_exclude_customers_the_challenger_trained_on():
    train = pd.DataFrame({"a": [1, 2, 2], "b": ["x", "y", "y"], "ts": [0, 1, 2]})
    judge = pd.DataFrame({"a": [2, 2, 3], "b": ["y", "z", "y"], "ts": [3, 4, 5]})
    assert list(drop_rows_seen_in(judge, train, ["a", "b"])["ts"]) == [4, 5]


# ---------------------------------------------------------------------------------- the loop, for real


def shuffled(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The same rows with labels shuffled: a model trained on them has learned nothing."""
    return frame.assign(Churn=frame["Churn"].sample(frac=1.0, random_state=seed).to_numpy())


def inverted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(Churn=frame["Churn"].map({"Yes": "No", "No": "Yes"}))


@pytest.fixture()
def loop(tmp_path, splits, config, _mlflow_template_db):
    """A fresh store whose champion learned nothing, and a log of recent labelled traffic it served."""
    with temporary_store(tmp_path, _mlflow_template_db):
        register_tiny_model(shuffled(splits["train"], 0), splits["reference"], splits["holdout"])
        tracking.configure_tracking(config.model("churn").experiment)
        champion = load_watched_model("churn")
        db = tmp_path / "predictions.db"
        log_predictions(db, champion, splits["rest"].head(RECENT_ROWS).rename(columns={"Churn": "label"}))
        settings = config.model_copy(update={"retrain": config.retrain.model_copy(
            update={"recent_rows": RECENT_ROWS, "bootstrap_samples": 300})})
        yield settings, db, champion


def challenger_trainer(splits, relabel):
    """A stand-in for run_project(alias="challenger"): a real tiny model, trained on the original
    training rows plus the recent rows it is handed, registered with alias `challenger`."""
    seen = {}

    def train(extra: pd.DataFrame) -> str:
        seen["extra"] = extra
        rows = pd.concat([splits["train"], extra], ignore_index=True)
        return register_tiny_model(relabel(rows), splits["reference"], splits["holdout"], alias="challenger")

    return train, seen


def decision_runs(experiment: str) -> list:
    found = MlflowClient().get_experiment_by_name(experiment)
    return MlflowClient().search_runs([found.experiment_id], "tags.kind = 'retrain-decision'")


def test_loop_promotes_a_challenger_that_wins(loop, splits):
    config, db, champion = loop
    train, seen = challenger_trainer(splits, relabel=lambda rows: rows)
    outcome = retrain_and_decide(config, "churn", db, trigger="test: drift", trainer=train)
    assert len(seen["extra"]) == RECENT_ROWS // 2 and "Churn" in seen["extra"]  # older half trained on
    assert seen["extra"]["tenure"].dtype == np.int64  # whole numbers per the contract
    assert outcome.decision.promote and outcome.decision.rows <= RECENT_ROWS // 2
    assert str(MlflowClient().get_model_version_by_alias("churn", "champion").version) == outcome.challenger_version
    [run] = decision_runs(config.model("churn").experiment)
    assert run.data.tags["decision"] == "promoted" and run.data.metrics["promoted"] == 1.0
    assert run.data.params["champion_version"] == champion.version
    assert "decision.json" in mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="retrain/decision.json")


def test_loop_keeps_the_champion_when_the_challenger_loses(loop, splits):
    config, db, champion = loop
    train, _ = challenger_trainer(splits, relabel=inverted)
    outcome = retrain_and_decide(config, "churn", db, trigger="test: quality", trainer=train)
    assert not outcome.decision.promote
    client = MlflowClient()
    assert str(client.get_model_version_by_alias("churn", "champion").version) == champion.version
    assert str(client.get_model_version_by_alias("churn", "challenger").version) == outcome.challenger_version
    [run] = decision_runs(config.model("churn").experiment)
    assert run.data.tags["decision"] == "kept champion"


def test_training_rows_carry_the_label_column_the_pipeline_expects(champion, splits):
    recent = champion.model.with_predictions(splits["rest"].head(5).rename(columns={"Churn": "label"}))
    rows = as_training_rows(recent, champion.model, "Churn")
    assert list(rows.columns) == [*champion.model.features, "Churn"]
    assert set(rows["Churn"]) <= {"Yes", "No"}
