"""Export stage (`pipelines/churn/export.py`): churn's own part, then the common release path it ends in.

Covers `labelled_rows` and `contract_fields` (what only churn knows), then, against a real tmp MLflow
registry, `release_pipeline` (ONNX conversion + pipelines.common.release: parity on every test row, the
contract's run, data hash and metrics, the monitoring reference with this package's own probabilities,
the holdout) and the alias rule through the real path: the first version becomes champion, a better one
takes over by the paired-bootstrap decision, a worse or equal one does not, retraining always registers a
challenger. `run` itself is exercised on a stage context whose train and optimize stages logged real
artifacts, so dropping any step of it fails here.
"""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from modelpkg.contract import HOLDOUT_ARTIFACT, REFERENCE_ARTIFACT
from modelpkg.package import load_model
from pipelines.churn import export, schema
from pipelines.churn.config import ChurnConfig
from pipelines.churn.export import bounded_inputs, contract_fields, labelled_rows, release_pipeline
from pipelines.churn.features import features, target
from pipelines.churn.models import BASELINE, build_classifiers
from pipelines.churn.onnx_convert import PROBABILITY_OUTPUT, input_specs
from pipelines.churn.train import log_sklearn_model
from pipelines.common import registry, tracking
from pipelines.common.bootstrap import roc_auc
from pipelines.common.runner import StageContext
from tests.factories import churn_config, export_context

CONFIG = ChurnConfig()
DATA_SHA256 = "0123456789abcdef" * 4
CANDIDATE = {"model_type": BASELINE, "threshold": 0.3}


@pytest.fixture(scope="module")
def good_pipeline(train_rows):
    """The stage's baseline (binned logistic regression), fitted on 500 real customers: ROC-AUC ~0.85."""
    return build_classifiers(CONFIG)[BASELINE].fit(features(train_rows), target(train_rows))


@pytest.fixture(scope="module")
def poor_pipeline(train_rows):
    """The same model fitted on shuffled labels: it ranks customers about as well as a coin."""
    shuffled = np.random.default_rng(0).permutation(target(train_rows).to_numpy())
    return build_classifiers(CONFIG)[BASELINE].fit(features(train_rows), shuffled)


def release_version(pipeline, holdout_rows, alias: str = registry.CHAMPION):
    """Release through churn's export into the tmp registry; valid = the first 300 unseen rows."""
    valid, test = holdout_rows.iloc[:300], holdout_rows.iloc[300:]
    with export_context("churn", alias=alias, config=churn_config(reference_rows=250),
                        data_sha256=DATA_SHA256) as ctx:
        # No train rows: bounds from valid and test alone (these tests judge the release and alias rules).
        released = release_pipeline(ctx, pipeline, CANDIDATE, valid, test, train=valid.iloc[:0])
        run_id = mlflow.active_run().info.run_id
    return released, run_id


def holder(alias: str) -> str | None:
    version = registry.version_for_alias("churn", alias)
    return None if version is None else str(version.version)


# ------------------------------------------------------------------------------- what churn knows


def test_labelled_rows_keep_the_features_and_spell_the_label_as_yes_no(holdout_rows):
    frame = holdout_rows.head(50)
    before = frame.copy()
    rows = labelled_rows(frame)
    assert list(rows.columns) == [*schema.FEATURES, "label"]  # no customer id, no 0/1 Churn column
    assert rows["label"].tolist() == np.where(frame[schema.LABEL_COLUMN] == 1, "Yes", "No").tolist()
    assert set(rows["label"]) == {"No", "Yes"}
    pd.testing.assert_frame_equal(rows[list(schema.FEATURES)], frame[list(schema.FEATURES)].reset_index(drop=True))
    pd.testing.assert_frame_equal(frame, before)  # the split it was given is left alone


def test_contract_fields_describe_a_binary_tabular_model_at_the_tuned_threshold():
    fields = contract_fields({"model_type": "xgboost", "threshold": 0.27}, input_specs())
    assert (fields["kind"], fields["model_type"], fields["threshold"]) == ("tabular_classifier", "xgboost", 0.27)
    assert fields["inputs"] == input_specs() and fields["probability_output"] == PROBABILITY_OUTPUT
    assert (fields["labels"], fields["positive_label"], fields["id_field"]) == (["No", "Yes"], "Yes", schema.ID_COLUMN)


def test_numeric_inputs_are_bounded_by_the_data_widened_by_the_margin_and_categories_keep_their_rules(holdout_rows):
    inputs = {spec.name: spec for spec in bounded_inputs(holdout_rows, margin=0.5)}
    low, high = holdout_rows["MonthlyCharges"].min(), holdout_rows["MonthlyCharges"].max()
    charges = inputs["MonthlyCharges"]
    assert charges.training_range == (low, high) and charges.maximum == pytest.approx(high + 0.5 * (high - low))
    assert charges.minimum == 0.0  # low - half the width is below zero: the schema's own minimum holds
    tenure = inputs["tenure"]
    months = holdout_rows["tenure"]
    assert tenure.maximum == np.ceil(months.max() + 0.5 * (months.max() - months.min()))  # whole, rounded outward
    schema_rules = {spec.name: spec for spec in input_specs()}
    assert inputs["Contract"] == schema_rules["Contract"]
    assert inputs["SeniorCitizen"] == schema_rules["SeniorCitizen"] and inputs["SeniorCitizen"].values == [0, 1]


# ------------------------------------------------------------------------------------ release_pipeline


def test_release_registers_a_package_whose_contract_names_its_run_data_and_test_metrics(
        churn_store, good_pipeline, holdout_rows):
    released, run_id = release_version(good_pipeline, holdout_rows)
    test = holdout_rows.iloc[300:]
    native_auc = roc_auc(target(test).to_numpy(), good_pipeline.predict_proba(features(test))[:, 1])
    package = load_model("churn", alias=registry.CHAMPION)
    contract = package.contract
    assert (package.version, contract.run_id, contract.data_sha256) == ("1", run_id, DATA_SHA256)
    assert contract.threshold == 0.3 and contract.id_field == schema.ID_COLUMN
    assert contract.metrics["test_roc_auc"] == pytest.approx(native_auc, abs=1e-6)
    assert {"test_accuracy", "test_f1", "test_log_loss"} <= set(contract.metrics)
    logged = MlflowClient().get_run(run_id).data
    assert logged.metrics["test_onnx_max_abs_diff"] == released.parity.max_abs_diff < 1e-5
    assert logged.tags["registered_version"] == "1" and logged.tags["alias_decision"].startswith("first version")


def test_release_logs_the_reference_with_this_packages_probabilities_and_the_holdout(
        churn_store, good_pipeline, holdout_rows):
    _, run_id = release_version(good_pipeline, holdout_rows)
    reference, holdout = (
        pd.read_parquet(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path))
        for path in (REFERENCE_ARTIFACT, HOLDOUT_ARTIFACT))
    assert list(reference.columns) == [*schema.FEATURES, "label", "probability", "predicted_label"]
    assert len(reference) == 250 and not reference.duplicated().any()
    native = good_pipeline.predict_proba(reference[list(schema.FEATURES)])[:, 1]
    np.testing.assert_allclose(reference["probability"], native, atol=1e-5)
    assert (reference["predicted_label"] == np.where(reference["probability"] >= 0.3, "Yes", "No")).all()
    assert 0 < (reference["predicted_label"] == "Yes").mean() < 1
    pd.testing.assert_frame_equal(holdout, labelled_rows(holdout_rows.iloc[300:]))


# ------------------------------------------------------------------------------------------ the alias


def test_the_first_version_becomes_champion(churn_store, good_pipeline, holdout_rows):
    released, _ = release_version(good_pipeline, holdout_rows)
    assert (released.version, released.alias, released.decision) == ("1", registry.CHAMPION, None)
    assert holder(registry.CHAMPION) == "1"


def test_a_better_version_takes_champion_over_by_the_paired_bootstrap(churn_store, good_pipeline, poor_pipeline,
                                                                       holdout_rows):
    release_version(poor_pipeline, holdout_rows)
    released, run_id = release_version(good_pipeline, holdout_rows)
    assert (released.version, released.alias) == ("2", registry.CHAMPION)
    assert released.decision.passed and released.decision.challenger > released.decision.incumbent + 0.2
    assert released.why.startswith("new version beats champion v1: test roc_auc")
    assert MlflowClient().get_run(run_id).data.metrics["promotion_p_better"] == 1.0
    assert holder(registry.CHAMPION) == "2"


def test_a_worse_version_is_registered_but_does_not_take_champion(churn_store, good_pipeline, poor_pipeline,
                                                                   holdout_rows):
    release_version(good_pipeline, holdout_rows)
    released, _ = release_version(poor_pipeline, holdout_rows)
    assert (released.version, released.alias) == ("2", None)
    assert released.why.startswith("new version does not beat champion v1")
    assert holder(registry.CHAMPION) == "1"


def test_a_version_that_only_ties_the_champion_does_not_take_champion(churn_store, good_pipeline, holdout_rows):
    release_version(good_pipeline, holdout_rows)
    released, _ = release_version(good_pipeline, holdout_rows)
    assert released.alias is None and released.decision.p_better == 0.0  # a tie is not a win
    assert holder(registry.CHAMPION) == "1"


def test_retraining_registers_as_challenger_even_when_worse_and_leaves_the_champion(
        churn_store, good_pipeline, poor_pipeline, holdout_rows):
    release_version(good_pipeline, holdout_rows)
    released, _ = release_version(poor_pipeline, holdout_rows, alias=registry.CHALLENGER)
    assert (released.version, released.alias) == ("2", registry.CHALLENGER)
    assert released.why.startswith("retraining")
    assert (holder(registry.CHAMPION), holder(registry.CHALLENGER)) == ("1", "2")


def test_retraining_into_an_empty_registry_still_registers_as_challenger(churn_store, good_pipeline, holdout_rows):
    """Monitoring judges challengers against a champion; retraining never crowns itself, even first."""
    released, _ = release_version(good_pipeline, holdout_rows, alias=registry.CHALLENGER)
    assert released.alias == registry.CHALLENGER and holder(registry.CHAMPION) is None


# ---------------------------------------------------------------------------------------------- run


def test_run_releases_the_optimize_stages_candidate_and_logs_the_native_model_beside_it(
        churn_store, good_pipeline, holdout_rows, train_rows):
    """The stage as the runner calls it: splits from `train`, candidate from `optimize`, in MLflow."""
    ctx = StageContext("churn", churn_config(reference_rows=250), parent_run_id="unused")
    with mlflow.start_run(run_name="pipeline"):
        with tracking.stage_run("churn", "train") as train:
            tracking.log_data_identity(DATA_SHA256, "test", None, len(train_rows))
            for name, frame in (("train", train_rows), ("valid", holdout_rows.iloc[:300]),
                                ("test", holdout_rows.iloc[300:])):
                tracking.log_frame(frame, f"splits/{name}.parquet")
        with tracking.stage_run("churn", "optimize") as optimize:
            uri = log_sklearn_model(good_pipeline, "candidate", features(train_rows).head(5))
            tracking.log_json(CANDIDATE | {"model_uri": uri}, "candidate.json")
        ctx.stage_runs |= {"train": train.info.run_id, "optimize": optimize.info.run_id}
        with tracking.stage_run("churn", "export") as run:
            export.run(ctx)
    assert holder(registry.CHAMPION) == "1"
    contract = load_model("churn", version="1").contract
    assert (contract.run_id, contract.model_type, contract.threshold) == (run.info.run_id, BASELINE, 0.3)
    assert contract.data_sha256 == DATA_SHA256
    every_split = pd.concat([train_rows, holdout_rows])  # the bounds come from all the data the run validated
    assert contract.input("TotalCharges").training_range == (every_split["TotalCharges"].min(),
                                                             every_split["TotalCharges"].max())
    native = mlflow.sklearn.load_model(f"runs:/{run.info.run_id}/native")
    np.testing.assert_allclose(native.predict_proba(features(holdout_rows))[:, 1],
                               good_pipeline.predict_proba(features(holdout_rows))[:, 1])
