"""The retraining decision: the promotion rule in monitoring's settings (binary and 3-class), then the
whole loop on a real store and a real log: evidence logged before the alias moves, the alias moved by
compare-and-set, the cooldown read from the registry, the log read in SQL, the reload confirmed.
The rule's every refusal on its own: tests/common/test_promotion.py."""

from __future__ import annotations

import asyncio
import time

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

import monitoring.retrain

from modelpkg.contract import LABEL
from modelpkg.package import save_package
from monitoring.__main__ import reload_server
from monitoring.client import ServingClient
from monitoring.config import RetrainConfig
from monitoring.reference import WatchedModel, load_watched_model
from monitoring.retrain import (as_training_rows, drop_rows_seen_in, judge, recent_labelled_records,
                                retrain_and_decide, split_in_time, training_frame)
from pipelines.churn.export import labelled_rows
from pipelines.common import registry, tracking
from pipelines.common.bootstrap import decide
from pipelines.common.config import DecisionConfig, PromotionConfig
from tests.factories import COLOURS, export_toy_image, toy_image_graph, toy_images
from tests.monitoring.conftest import REPO, export_splits, temporary_store
from serving.predlog import PredictionLog, StoredLabels, read_predictions
from tests.monitoring.predlog_writer import log_predictions

SETTINGS = RetrainConfig(bootstrap_samples=300, metric="roc_auc")
RECENT_ROWS = 600


def rule(y, p_champion, p_challenger, settings: RetrainConfig = SETTINGS):
    """The gain rule exactly as pipelines.common.promotion calls it for monitoring.retrain.judge."""
    return decide(y, p_champion, p_challenger, metric=settings.metric, samples=settings.bootstrap_samples,
                  confidence=settings.confidence, seed=0, min_gain=settings.min_gain)


def labels_and_scores(seed: int, rows: int = 400) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, a sharp score and a noisy one (the noisy one ranks churners far less well)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(rows) < 0.3).astype(int)
    sharp = 1 / (1 + np.exp(-(3 * y - 1.5 + rng.normal(0, 1, rows))))
    noisy = 1 / (1 + np.exp(-(1 * y - 0.5 + rng.normal(0, 2, rows))))
    return y, sharp, noisy


def test_retrain_config_is_the_common_promotion_rule_with_its_yaml_keys(config):
    assert isinstance(config.retrain, PromotionConfig) and isinstance(config.retrain, DecisionConfig)
    retrain = config.retrain
    assert (retrain.metric, retrain.bootstrap_samples, retrain.confidence, retrain.min_gain) == (
        "roc_auc", 1000, 0.8, 0.003)
    assert (retrain.min_judge_rows, retrain.test_tolerance, retrain.cost_tolerance, retrain.cooldown_hours) == (
        200, 0.01, 0.02, 24)
    assert RetrainConfig() == retrain.model_copy(update={"recent_rows": 2000})  # the yaml states the defaults
    assert config.model("churn").costs.false_negative == 500


def test_a_clearly_better_challenger_is_promoted():
    y, sharp, noisy = labels_and_scores(0)
    decision = rule(y, p_champion=noisy, p_challenger=sharp)
    assert decision.passed and decision.p_better >= 0.9
    assert decision.challenger > decision.incumbent and decision.gain_ci_low > SETTINGS.min_gain


def test_a_worse_or_identical_challenger_is_not_promoted():
    y, sharp, noisy = labels_and_scores(1)
    worse = rule(y, p_champion=sharp, p_challenger=noisy)
    assert not worse.passed and worse.p_better < 0.1
    same = rule(y, p_champion=sharp, p_challenger=sharp.copy())
    assert not same.passed and same.p_better == 0.0  # a tie is not a win


def test_log_loss_is_oriented_so_lower_is_better():
    y, sharp, noisy = labels_and_scores(2)
    decision = rule(y, noisy, sharp, RetrainConfig(metric="log_loss", bootstrap_samples=300))
    assert decision.passed and decision.challenger < decision.incumbent


def test_bad_inputs_fail_clearly():
    y, sharp, _ = labels_and_scores(3)
    with pytest.raises(ValueError, match="length mismatch"):
        rule(y, sharp, sharp[:-1])
    with pytest.raises(ValueError, match="one class only"):
        rule(np.zeros(50, int), sharp[:50], sharp[:50])


def test_recent_rows_split_in_time_oldest_to_train():
    frame = pd.DataFrame({"ts": range(10)})
    train, judged = split_in_time(frame, eval_fraction=0.3)
    assert list(train["ts"]) == list(range(7)) and list(judged["ts"]) == [7, 8, 9]


def test_judge_rows_exclude_inputs_the_challenger_trained_on():
    train = pd.DataFrame({"a": [1, 2, 2], "b": ["x", "y", "y"], "ts": [0, 1, 2]})
    judged = pd.DataFrame({"a": [2, 2, 3], "b": ["y", "z", "y"], "ts": [3, 4, 5]})
    assert list(drop_rows_seen_in(judged, train, ["a", "b"])["ts"]) == [4, 5]


# ------------------------------------------------------------------------- a 3-class decision, for real
def toy_image_package(directory, weights: np.ndarray) -> WatchedModel:
    """The factory's 3-class colour model with other weights (same contract), as a local package."""
    import onnx
    from onnx import numpy_helper

    graph, _, _ = toy_image_graph()
    model = onnx.load_from_string(graph)
    [initializer] = [i for i in model.graph.initializer if i.name == "weights"]
    initializer.CopyFrom(numpy_helper.from_array(weights.astype(np.float32), "weights"))
    contract = load_watched_model("toy_image").contract
    return WatchedModel("toy_image", directory.name, save_package(directory, model.SerializeToString(), contract))


def test_three_class_challenger_is_judged_by_the_same_rule(tmp_path, _mlflow_template_db):
    """A champion that confuses red and green against the right one, on 3-class labelled rows."""
    with temporary_store(tmp_path, _mlflow_template_db):
        export_toy_image()
        confused = toy_image_package(tmp_path / "1", np.eye(3)[[1, 0, 2]] * 4.0)
        right = toy_image_package(tmp_path / "2", np.eye(3) * 4.0)
    rows = toy_images(300, seed=5)
    settings = RetrainConfig(bootstrap_samples=300, metric="macro_f1")
    verdict = judge(confused, right, rows, settings, seed=0)
    assert verdict.decision.rows == 300 and verdict.decision.metric == "macro_f1"
    assert verdict.passed and verdict.decision.challenger > verdict.decision.incumbent + 0.3
    assert "cost ok: not judged" in str(verdict.checks[3])  # costs are for binary models
    assert judge(right, confused, rows, settings, seed=0).refused_by == ["gain"]
    roc = judge(right, right, rows, RetrainConfig(bootstrap_samples=300), seed=0)
    assert not roc.passed and roc.decision.p_better == 0.0  # one-vs-rest ROC-AUC over 3 classes, a tie
    assert set(rows[LABEL]) == set(COLOURS)


# ---------------------------------------------------------------------------------- the loop, for real
def shuffled(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The same rows with labels shuffled: a model trained on them has learned nothing."""
    return frame.assign(Churn=frame["Churn"].sample(frac=1.0, random_state=seed).to_numpy())


def inverted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(Churn=1 - frame["Churn"])


@pytest.fixture()
def loop(tmp_path, splits, config, _mlflow_template_db):
    """A fresh store whose champion learned nothing, and a log of recent labelled traffic it served."""
    with temporary_store(tmp_path, _mlflow_template_db):
        export_splits(splits, train=shuffled(splits["train"], 0))
        tracking.configure_tracking(config.model("churn").experiment)
        champion = load_watched_model("churn")
        db = tmp_path / "predictions.db"
        log_predictions(db, champion, labelled_rows(splits["rest"].head(RECENT_ROWS)))
        settings = config.model_copy(update={"retrain": config.retrain.model_copy(
            update={"recent_rows": RECENT_ROWS, "bootstrap_samples": 300})})
        yield settings, db, champion


def challenger_trainer(splits, relabel):
    """A stand-in for run_project(alias="challenger"): a real small model released by churn's export,
    trained on the original training rows plus the recent rows it is handed."""
    seen = {}

    def train(extra: pd.DataFrame) -> str:
        seen["extra"] = extra
        recent = extra.assign(Churn=(extra["Churn"] == "Yes").astype(int))  # as churn's validation reads Yes/No
        rows = pd.concat([splits["train"], recent], ignore_index=True)
        return export_splits(splits, train=relabel(rows), alias="challenger").version

    return train, seen


def decision_runs(experiment: str) -> list:
    found = MlflowClient().get_experiment_by_name(experiment)
    return MlflowClient().search_runs([found.experiment_id], "tags.kind = 'retrain-decision'")


def test_loop_promotes_a_challenger_that_wins(loop, splits):
    config, db, champion = loop
    train, seen = challenger_trainer(splits, relabel=lambda rows: rows)
    outcome = retrain_and_decide(config, "churn", db, trigger="test: drift", trainer=train)
    assert len(seen["extra"]) == RECENT_ROWS // 2 and "Churn" in seen["extra"]  # older half trained on
    assert seen["extra"]["tenure"].dtype == np.int64  # whole numbers per the contract (codec.training_row)
    assert outcome.promoted and outcome.decision.rows <= RECENT_ROWS // 2
    assert str(MlflowClient().get_model_version_by_alias("churn", "champion").version) == outcome.challenger_version
    assert registry.last_promotion("churn") == pytest.approx(time.time(), abs=60)  # the next cooldown starts now
    [run] = decision_runs(config.model("churn").experiment)
    assert run.data.tags["decision"] == "promoted" and run.data.metrics["promoted"] == 1.0
    assert run.data.tags["alias"] == f"champion v{champion.version} -> v{outcome.challenger_version}"
    assert run.data.params["champion_version"] == champion.version
    assert run.data.metrics["judge_gain_ci_low"] > config.retrain.min_gain
    assert run.data.metrics["rule_cost_passed"] == 1.0
    assert "beats champion" in run.data.tags["reason"] and "every rule passed" in run.data.tags["reason"]
    assert "decision.json" in mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="retrain/decision.json")


def test_loop_keeps_the_champion_when_the_challenger_loses(loop, splits):
    config, db, champion = loop
    train, _ = challenger_trainer(splits, relabel=inverted)
    outcome = retrain_and_decide(config, "churn", db, trigger="test: quality", trainer=train)
    assert not outcome.promoted
    client = MlflowClient()
    assert str(client.get_model_version_by_alias("churn", "champion").version) == champion.version
    assert str(client.get_model_version_by_alias("churn", "challenger").version) == outcome.challenger_version
    [run] = decision_runs(config.model("churn").experiment)
    assert run.data.tags["decision"] == "kept champion" and run.data.tags["refused_by"].startswith("gain")
    assert "alias" not in run.data.tags  # nothing was to move


def test_loop_refuses_within_the_cooldown_of_the_last_promotion(loop, splits):
    config, db, champion = loop
    MlflowClient().set_registered_model_tag("churn", registry.PROMOTED_AT, repr(time.time() - 3600))
    train, _ = challenger_trainer(splits, relabel=lambda rows: rows)
    outcome = retrain_and_decide(config, "churn", db, trigger="test: drift", trainer=train)
    assert not outcome.promoted and outcome.verdict.refused_by == ["cooldown"]  # it won on every other rule
    assert "1.00 h since the last promotion, need 24 h" in outcome.reason
    assert str(registry.version_for_alias("churn", "champion").version) == champion.version


def test_loop_aborts_when_the_champion_moved_while_retraining(loop, splits):
    """Another promotion lands while the challenger trains: this decision judged a champion that is gone."""
    config, db, champion = loop
    train, _ = challenger_trainer(splits, relabel=lambda rows: rows)

    def train_while_someone_promotes(extra: pd.DataFrame) -> str:
        meanwhile = export_splits(splits, alias="challenger").version
        registry.set_alias("churn", "champion", meanwhile)
        return train(extra)

    with pytest.raises(registry.AliasMoved, match=f"champion is v2 now, not v{champion.version}"):
        retrain_and_decide(config, "churn", db, trigger="test: drift", trainer=train_while_someone_promotes)
    assert str(registry.version_for_alias("churn", "champion").version) == "2"  # left where the other put it
    [run] = decision_runs(config.model("churn").experiment)  # logged before the move was tried: evidence first
    assert run.data.tags["decision"] == "aborted: champion moved" and run.data.metrics["promoted"] == 1.0
    assert run.data.tags["alias"].startswith("not moved: churn: champion is v2 now")


def test_training_rows_come_from_the_codec_with_the_label_column_the_pipeline_expects(champion, splits, tmp_path):
    db = tmp_path / "predictions.db"
    log_predictions(db, champion.model, labelled_rows(splits["rest"].head(5)))
    frame = training_frame(recent_labelled_records(db, "churn", 10), champion.model)
    rows = as_training_rows(frame, "Churn")
    assert list(rows.columns) == [*(spec.name for spec in champion.model.contract.inputs), "Churn"]
    assert set(rows["Churn"]) <= {"Yes", "No"} and rows["tenure"].dtype == np.int64


def test_retraining_needs_labelled_rows(champion, splits, tmp_path):
    db = tmp_path / "predictions.db"
    log_predictions(db, champion.model, labelled_rows(splits["rest"].head(5)), labelled=False)
    with pytest.raises(LookupError, match="no labelled predictions of 'churn'"):
        recent_labelled_records(db, "churn", 10)


def test_recent_labelled_rows_are_selected_in_sql_with_a_limit(champion, splits, tmp_path, monkeypatch):
    """Only the newest labelled rows leave SQLite, however long the log: never the whole log in memory."""
    db = tmp_path / "predictions.db"
    rows = labelled_rows(splits["rest"].head(40))
    labelled = log_predictions(db, champion.model, rows.iloc[:20], start_ts=1_000.0)
    log_predictions(db, champion.model, rows.iloc[20:], labelled=False, start_ts=2_000.0)  # newer, no labels yet
    calls = []
    real = monitoring.retrain.read_predictions
    monkeypatch.setattr(monitoring.retrain, "read_predictions", lambda *a, **kw: calls.append(kw) or real(*a, **kw))
    records = recent_labelled_records(db, "churn", 5)
    assert [r["id"] for r in records] == labelled[-5:] and all(r["label"] is not None for r in records)
    assert calls == [{"labelled": True, "last_n": 5}]


# ------------------------------------------------------------------------------- the reload, confirmed
class ReloadAnswer:
    """What POST /admin/reload answers for one model (serving.models.ModelStore.reload)."""

    def __init__(self, version: str, served_from: str):
        self.answer = {"reloaded": {"churn": {"ok": True, "previous": "1", "version": version,
                                              "source": f"models:/churn/{version}", "from": served_from}}}

    def __call__(self, client, model=None) -> dict:
        return self.answer


@pytest.mark.parametrize("served, served_from, confirmed, says", [
    ("2", "registry", True, "reloaded: churn v2 (models:/churn/2)"),
    ("1", "bundles", False, "serves churn v1 (models:/churn/1), not the new champion v2: it serves bundles"),
    ("1", "registry", False, "not the new champion v2: reload it again"),
])
def test_the_reload_is_confirmed_by_the_version_the_server_reports(config, monkeypatch, capsys, served, served_from,
                                                                  confirmed, says):
    from serving.config import load_serving_config

    serving = load_serving_config(REPO / config.serving_config)
    monkeypatch.setenv(serving.admin.api_key_env, "k" * 32)
    monkeypatch.setattr(ServingClient, "reload", ReloadAnswer(served, served_from))
    assert reload_server(serving, config, "churn", "2") is confirmed
    out = capsys.readouterr()
    assert says in (out.out + out.err)



# ------------------------------------------------------------------- labels cannot be poisoned
async def post_labels(db, items: list[tuple]) -> StoredLabels:
    """Labels through the writer the feedback route uses (after its key check), on the real log."""
    log = PredictionLog(db).start()
    try:
        return await log.add_feedback("churn", items)
    finally:
        log.close()


def test_forged_or_repeated_labels_cannot_change_the_promotion_decision(loop, splits):
    """Labels are the only evidence for promotion. Every prediction relabelled the other way (enough to
    make the winning challenger lose, were it taken) is refused, because each already has a label and
    none comes as an explicit correction: the log's labels, the training rows and the decision are the
    honest ones (the same as in test_loop_promotes_a_challenger_that_wins)."""
    config, db, _ = loop
    honest = {row["id"]: row["label"] for row in read_predictions(db, "churn")}
    forged = [(id_, "No" if label == "Yes" else "Yes") for id_, label in honest.items()]
    assert asyncio.run(post_labels(db, forged)).refused == list(range(len(forged)))
    assert asyncio.run(post_labels(db, forged[:1] + forged[:1])).refused == [0, 1]  # repeated, in one request too
    assert {row["id"]: row["label"] for row in read_predictions(db, "churn")} == honest
    train, seen = challenger_trainer(splits, relabel=lambda rows: rows)
    outcome = retrain_and_decide(config, "churn", db, trigger="test: forged labels", trainer=train)
    assert list(seen["extra"]["Churn"]) == list(honest.values())[:len(seen["extra"])]  # learned from honest labels
    assert outcome.promoted  # judged on honest labels: the better challenger wins, as without the forgery


def test_loop_decides_on_shadow_rows_when_the_server_shadowed_a_challenger(loop, splits):
    """The server scored live traffic with a registered challenger too: nothing is trained, the judge rows
    are the labelled shadow rows, and the same rule promotes."""
    from monitoring.report import shadow_comparison, shadow_section
    from tests.monitoring.predlog_writer import log_shadow

    config, db, champion = loop
    challenger = load_watched_model("churn", version=export_splits(splits, alias="challenger").version)
    logged = read_predictions(db, "churn")
    log_shadow(db, challenger, labelled_rows(splits["rest"].head(RECENT_ROWS)), [row["id"] for row in logged])

    [pair] = shadow_comparison(db, "churn")  # what the monitoring report's champion-vs-challenger table shows
    assert (pair["champion"], pair["challenger"], pair["rows"], pair["labelled"]) == (
        champion.version, challenger.version, RECENT_ROWS, RECENT_ROWS)
    assert pair["challenger_accuracy"] > pair["champion_accuracy"]
    assert f"<td>v{challenger.version}</td>" in shadow_section([pair])

    def never(extra):
        raise AssertionError("a shadowed challenger is judged, not trained again")

    outcome = retrain_and_decide(config, "churn", db, trigger="test: drift", trainer=never)
    assert outcome.promoted and outcome.challenger_version == challenger.version and outcome.train_rows == 0
    assert outcome.decision.rows == RECENT_ROWS and "judged on labelled shadow traffic" in outcome.reason
    assert str(MlflowClient().get_model_version_by_alias("churn", "champion").version) == challenger.version
    [run] = decision_runs(config.model("churn").experiment)
    assert run.data.tags["judged_on"] == "labelled shadow traffic" and run.data.tags["decision"] == "promoted"
