"""Export stage (`pipelines/churn/export.py`): ONNX scoring, the contract, the reference and the alias rule.

Covers: `labelled_rows` (features plus a Yes/No label, nothing else), `onnx_probabilities` on a logistic
regression fitted on 500 real customers and converted with `to_onnx` (equal to `predict_proba` on 700
unseen ones, row for row), `build_contract` (the candidate, the active run, the train run's data hash),
`log_reference` (held-out rows with this model's own probabilities and decisions), and, against a real
tmp MLflow registry with real ONNX versions, `score_registered` and `choose_alias`: the first version
becomes champion, a better one takes champion over, a worse or equal one does not, and retraining
(ctx.alias "challenger") always registers as challenger. Not covered here: `run` (it needs the train and
optimize stages' artifacts; the slow end-to-end test runs it).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from pipelines.churn import schema
from pipelines.churn.config import ChurnConfig
from pipelines.churn.export import (
    HOLDOUT_ARTIFACT, build_contract, choose_alias, labelled_rows, log_onnx_model, log_reference,
    onnx_probabilities, score_registered,
)
from pipelines.churn.features import features, target
from pipelines.churn.models import BASELINE, build_classifiers
from pipelines.churn.onnx_convert import PROBABILITY_OUTPUT, input_specs, to_onnx
from pipelines.common import registry
from pipelines.common.contract import REFERENCE_ARTIFACT, ModelContract
from pipelines.common.onnx_parity import check_parity, open_session
from pipelines.common.runner import StageContext

CONFIG = ChurnConfig()
DATA_SHA256 = "0123456789abcdef" * 4


@pytest.fixture(scope="module")
def good_pipeline(train_rows):
    """The stage's baseline (binned logistic regression), fitted on 500 real customers: ROC-AUC ~0.85."""
    return build_classifiers(CONFIG)[BASELINE].fit(features(train_rows), target(train_rows))


@pytest.fixture(scope="module")
def poor_pipeline(train_rows):
    """The same model fitted on shuffled labels: it ranks customers about as well as a coin."""
    shuffled = np.random.default_rng(0).permutation(target(train_rows).to_numpy())
    return build_classifiers(CONFIG)[BASELINE].fit(features(train_rows), shuffled)


@pytest.fixture(scope="module")
def good_onnx(good_pipeline):
    return to_onnx(good_pipeline, name="churn")


def train_run(tags: dict[str, str] | None = None) -> str:
    """A finished stand-in for the train stage's run: build_contract reads its data hash tag."""
    with mlflow.start_run(run_name="train", tags={"stage": "train"} | (tags or {})) as run:
        pass
    return run.info.run_id


def stage_context(alias: str = registry.CHAMPION, **tags: str) -> StageContext:
    return StageContext("churn", CONFIG, parent_run_id="unused", alias=alias,
                        stage_runs={"train": train_run({"data_sha256": DATA_SHA256} | tags)})


# ---------------------------------------------------------------------------------------- labelled_rows


def test_labelled_rows_keep_the_features_and_spell_the_label_as_yes_no(holdout_rows):
    frame = holdout_rows.head(50)
    before = frame.copy()
    rows = labelled_rows(frame)
    assert list(rows.columns) == [*schema.FEATURES, "label"]  # no customer id, no 0/1 Churn column
    assert rows["label"].tolist() == np.where(frame[schema.LABEL_COLUMN] == 1, "Yes", "No").tolist()
    assert set(rows["label"]) == {"No", "Yes"}
    pd.testing.assert_frame_equal(rows[list(schema.FEATURES)], frame[list(schema.FEATURES)])
    pd.testing.assert_frame_equal(frame, before)  # the split it was given is left alone


# ---------------------------------------------------------------------------------- onnx_probabilities


def test_onnx_probabilities_match_the_native_pipeline_on_unseen_customers(good_pipeline, good_onnx, holdout_rows):
    exported = onnx_probabilities(open_session(good_onnx.SerializeToString()), holdout_rows)
    assert exported.shape == (len(holdout_rows), 2)
    report = check_parity(good_pipeline.predict_proba(features(holdout_rows)), exported, atol=1e-5)
    assert report.rows == len(holdout_rows)


def test_onnx_probabilities_follow_the_row_order_of_the_frame(good_onnx, holdout_rows):
    session = open_session(good_onnx.SerializeToString())
    forward = onnx_probabilities(session, holdout_rows.head(40))
    backward = onnx_probabilities(session, holdout_rows.head(40).iloc[::-1])
    np.testing.assert_array_equal(backward, forward[::-1])
    assert len(np.unique(forward[:, 1])) > 30  # distinct customers, distinct scores: the check means something


# -------------------------------------------------------------------------------------- build_contract


def test_build_contract_describes_the_candidate_the_export_run_and_the_training_data(churn_store, tmp_path):
    ctx = stage_context()
    with mlflow.start_run(run_name="export") as export_run:
        contract = build_contract(ctx, {"model_type": "xgboost", "threshold": 0.27}, {"test_roc_auc": 0.84})
    assert (contract.name, contract.model_type, contract.threshold) == ("churn", "xgboost", 0.27)
    assert contract.run_id == export_run.info.run_id  # the run that will hold the monitoring reference
    assert contract.data_sha256 == DATA_SHA256
    assert contract.metrics == {"test_roc_auc": 0.84}
    assert contract.inputs == input_specs() and contract.probability_output == PROBABILITY_OUTPUT
    assert (contract.labels, contract.positive_label) == (["No", "Yes"], "Yes")
    created = datetime.fromisoformat(contract.created_at)
    assert created.tzinfo is not None and abs(datetime.now(timezone.utc) - created) < timedelta(minutes=5)
    assert ModelContract.load(Path(contract.save(tmp_path)).parent) == contract


def test_build_contract_says_unknown_when_the_train_run_recorded_no_data_hash(churn_store):
    ctx = StageContext("churn", CONFIG, parent_run_id="unused", stage_runs={"train": train_run()})
    with mlflow.start_run():
        contract = build_contract(ctx, {"model_type": "logistic_regression", "threshold": 0.5}, {})
    assert contract.data_sha256 == "unknown"


# --------------------------------------------------------------------------------------- log_reference


def test_log_reference_logs_held_out_rows_with_this_models_probabilities_and_decisions(
        churn_store, good_pipeline, good_onnx, holdout_rows):
    valid, test = holdout_rows.iloc[:400], holdout_rows.iloc[400:]
    with mlflow.start_run() as run:
        log_reference(open_session(good_onnx.SerializeToString()), valid, test, threshold=0.3, max_rows=250, seed=1)
    reference, holdout = (
        pd.read_parquet(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path=path))
        for path in (REFERENCE_ARTIFACT, HOLDOUT_ARTIFACT)
    )
    assert list(reference.columns) == [*schema.FEATURES, "label", "probability", "predicted_label"]
    assert len(reference) == 250 and not reference.duplicated().any()
    native = good_pipeline.predict_proba(reference[list(schema.FEATURES)])[:, 1]
    np.testing.assert_allclose(reference["probability"], native, atol=1e-5)
    assert (reference["predicted_label"] == np.where(reference["probability"] >= 0.3, "Yes", "No")).all()
    assert 0 < (reference["predicted_label"] == "Yes").mean() < 1
    pd.testing.assert_frame_equal(holdout, labelled_rows(test).reset_index(drop=True))


# ------------------------------------------------------------------------- score_registered, choose_alias


def export_version(ctx: StageContext, pipeline, test: pd.DataFrame) -> tuple[str, float, str | None, str]:
    """The alias steps of the export stage's `run`, on a real ONNX model in the tmp registry:
    score on test -> contract -> log ONNX -> choose the alias -> register -> move the alias."""
    onnx_model = to_onnx(pipeline, name="churn")
    with mlflow.start_run(run_name="export"):
        auc = float(roc_auc_score(target(test), onnx_probabilities(open_session(onnx_model.SerializeToString()),
                                                                     test)[:, 1]))
        contract = build_contract(ctx, {"model_type": BASELINE, "threshold": 0.5}, {"test_roc_auc": auc})
        example = features(test).head(5).astype({name: "float32" for name in schema.NUMERIC})
        uri = log_onnx_model(onnx_model, contract, example)
        alias, why = choose_alias(ctx, auc, test)
        version = registry.register_version(uri, "churn")
        if alias:
            registry.set_alias("churn", alias, version)
    return version, auc, alias, why


def holder(alias: str) -> str | None:
    version = registry.version_for_alias("churn", alias)
    return None if version is None else str(version.version)


def test_score_registered_is_none_without_a_champion_and_its_roc_auc_with_one(churn_store, good_pipeline, holdout_rows):
    assert score_registered("churn", registry.CHAMPION, holdout_rows) is None
    export_version(stage_context(), good_pipeline, holdout_rows)
    native_auc = roc_auc_score(target(holdout_rows), good_pipeline.predict_proba(features(holdout_rows))[:, 1])
    assert score_registered("churn", registry.CHAMPION, holdout_rows) == pytest.approx(native_auc, abs=1e-4)
    assert score_registered("churn", registry.CHALLENGER, holdout_rows) is None
    downloaded = Path(mlflow.artifacts.download_artifacts("models:/churn@champion"))
    assert ModelContract.load(downloaded / "extra_files").metrics["test_roc_auc"] == pytest.approx(native_auc, abs=1e-4)


def test_the_first_version_becomes_champion(churn_store, good_pipeline, holdout_rows):
    version, _, alias, why = export_version(stage_context(), good_pipeline, holdout_rows)
    assert (version, alias) == ("1", registry.CHAMPION)
    assert why.startswith("first version")
    assert holder(registry.CHAMPION) == "1"


def test_a_better_version_takes_champion_over(churn_store, good_pipeline, poor_pipeline, holdout_rows):
    _, poor_auc, _, _ = export_version(stage_context(), poor_pipeline, holdout_rows)
    version, good_auc, alias, why = export_version(stage_context(), good_pipeline, holdout_rows)
    assert good_auc > poor_auc + 0.2
    assert (version, alias) == ("2", registry.CHAMPION)
    assert why.startswith("beats champion") and f"{poor_auc:.4f}" in why
    assert holder(registry.CHAMPION) == "2"


def test_a_worse_version_is_registered_but_does_not_take_champion(churn_store, good_pipeline, poor_pipeline, holdout_rows):
    export_version(stage_context(), good_pipeline, holdout_rows)
    version, _, alias, why = export_version(stage_context(), poor_pipeline, holdout_rows)
    assert (version, alias) == ("2", None)
    assert "champion kept" in why
    assert holder(registry.CHAMPION) == "1"


def test_a_version_that_only_ties_the_champion_does_not_take_champion(churn_store, good_pipeline, holdout_rows):
    export_version(stage_context(), good_pipeline, holdout_rows)
    champion_auc = score_registered("churn", registry.CHAMPION, holdout_rows)
    assert choose_alias(stage_context(), champion_auc, holdout_rows)[0] is None
    assert choose_alias(stage_context(), champion_auc + 1e-3, holdout_rows)[0] == registry.CHAMPION


def test_retraining_registers_as_challenger_even_when_worse_and_leaves_the_champion(
        churn_store, good_pipeline, poor_pipeline, holdout_rows):
    export_version(stage_context(), good_pipeline, holdout_rows)
    version, _, alias, why = export_version(stage_context(alias=registry.CHALLENGER), poor_pipeline, holdout_rows)
    assert (version, alias) == ("2", registry.CHALLENGER)
    assert why.startswith("retraining")
    assert (holder(registry.CHAMPION), holder(registry.CHALLENGER)) == ("1", "2")


def test_retraining_into_an_empty_registry_still_registers_as_challenger(churn_store):
    """Monitoring judges challengers against a champion; retraining never crowns itself, even first."""
    assert choose_alias(stage_context(alias=registry.CHALLENGER), 0.9, pd.DataFrame())[0] == registry.CHALLENGER
