"""The common release path (pipelines/common/release.py) on the kinds churn does not cover: a 3-class image
model and a binary text model with a tokenizer asset, released as vision and text will be. Churn's own
release (binary at a tuned threshold) is covered in tests/churn/test_export.py."""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest

from modelpkg.contract import HOLDOUT_ARTIFACT, REFERENCE_ARTIFACT, class_probability_column
from modelpkg.package import load_model
from pipelines.common import registry
from pipelines.common.config import DecisionConfig, ReleaseConfig
from pipelines.common.onnx_parity import ParityError
from pipelines.common.release import Candidate, release
from tests import factories


@pytest.fixture
def store(tmp_mlflow):
    return tmp_mlflow


def artifact(run_id: str, path: str) -> pd.DataFrame:
    return pd.read_parquet(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path))


def test_a_multi_class_release_logs_per_class_probabilities_and_multi_class_metrics(store):
    released = factories.export_toy_image(rows=90)
    contract = released.contract
    assert set(contract.metrics) == {"test_roc_auc", "test_accuracy", "test_log_loss", "test_macro_f1"}
    assert contract.metrics["test_accuracy"] > 0.95
    reference = artifact(contract.run_id, REFERENCE_ARTIFACT)
    assert list(reference.columns) == ["image", "label", "probability", "predicted_label",
                                       *(class_probability_column(c) for c in factories.COLOURS)]
    per_class = reference[[class_probability_column(c) for c in factories.COLOURS]].to_numpy()
    assert (reference["probability"] == per_class.max(axis=1)).all()
    holdout = artifact(contract.run_id, HOLDOUT_ARTIFACT)
    assert isinstance(holdout["image"][0], bytes) and len(holdout) == 90


def test_a_better_multi_class_model_takes_champion_over_by_the_paired_bootstrap(store):
    factories.export_toy_image(rows=120, sharpness=0.5)  # right classes, poorly calibrated: higher log loss
    same_ranking = factories.export_toy_image(rows=120, sharpness=4.0)
    assert same_ranking.alias is None  # by ROC-AUC (the default promotion metric) the two tie
    assert "does not beat champion v1: test roc_auc" in same_ranking.why
    by_log_loss = factories.export_toy_image(rows=120, sharpness=4.0, promotion=DecisionConfig(
        metric="log_loss", bootstrap_samples=200))
    assert by_log_loss.alias == registry.CHAMPION and by_log_loss.decision.p_better == 1.0
    assert by_log_loss.why.startswith("new version beats champion v1: test log_loss")
    assert registry.version_for_alias(factories.TOY_IMAGE, registry.CHAMPION).version == 3


def test_the_text_packages_tokenizer_travels_to_the_registry(store):
    released = factories.export_toy_text(rows=60)
    package = load_model(factories.TOY_TEXT, alias=registry.CHAMPION)
    assert package.version == released.version == "1" and package.contract.assets == ["tokenizer.json"]
    assert package.files.asset("tokenizer.json").is_file()
    assert set(released.contract.metrics) == {"test_roc_auc", "test_accuracy", "test_log_loss", "test_f1"}


def test_parity_failure_stops_the_release_before_anything_is_registered(store):
    graph, weights, bias = factories.toy_image_graph()
    valid, test = factories.toy_images(40, 0), factories.toy_images(40, 1)
    native = factories.toy_image_native(test, weights, bias)
    native[7] = native[7][::-1]  # the "native" model disagrees on one row
    fields = dict(kind="image_classifier", model_type="t", inputs=[{"name": "image", "dtype": "float32",
                  "shape": [None, 3, 16, 16]}], probability_output="probabilities", labels=list(factories.COLOURS),
                  preprocessing=factories.image_preprocessing())
    with factories.export_context(factories.TOY_IMAGE) as ctx, pytest.raises(ParityError, match="worst row 7"):
        release(ctx, Candidate(graph, fields, native, test, valid),
                ReleaseConfig(parity_atol=1e-5, promotion=factories.PROMOTION, reference_rows=40))
    assert registry.version_for_alias(factories.TOY_IMAGE, registry.CHAMPION) is None
    with pytest.raises(Exception):
        mlflow.MlflowClient().get_registered_model(factories.TOY_IMAGE)


def test_a_test_label_outside_the_contracts_classes_is_named(store):
    graph, weights, bias = factories.toy_image_graph()
    valid, test = factories.toy_images(20, 0), factories.toy_images(20, 1)
    test.loc[3, "label"] = "purple"
    fields = dict(kind="image_classifier", model_type="t", inputs=[{"name": "image", "dtype": "float32",
                  "shape": [None, 3, 16, 16]}], probability_output="probabilities", labels=list(factories.COLOURS),
                  preprocessing=factories.image_preprocessing())
    with factories.export_context(factories.TOY_IMAGE) as ctx, pytest.raises(ValueError, match=r"\['purple'\]"):
        release(ctx, Candidate(graph, fields, factories.toy_image_native(test, weights, bias), test, valid),
                ReleaseConfig(parity_atol=1e-5, promotion=factories.PROMOTION, reference_rows=20))


def test_a_version_with_other_classes_is_registered_but_never_compared_with_the_champion(store):
    factories.export_toy_image(rows=60)
    graph, weights, bias = factories.toy_image_graph()
    valid, test = factories.toy_images(60, 0), factories.toy_images(60, 1)
    renamed = {"red": "rouge", "green": "vert", "blue": "bleu"}
    valid, test = (frame.assign(label=frame["label"].map(renamed)) for frame in (valid, test))
    fields = dict(kind="image_classifier", model_type="t", inputs=[{"name": "image", "dtype": "float32",
                  "shape": [None, 3, 16, 16]}], probability_output="probabilities", labels=["rouge", "vert", "bleu"],
                  preprocessing=factories.image_preprocessing())
    with factories.export_context(factories.TOY_IMAGE) as ctx:
        released = release(ctx, Candidate(graph, fields, factories.toy_image_native(test, weights, bias), test, valid),
                           ReleaseConfig(parity_atol=1e-5, promotion=factories.PROMOTION, reference_rows=60))
    assert (released.version, released.alias, released.decision) == ("2", None, None)
    assert "not comparable, champion kept" in released.why
    assert registry.version_for_alias(factories.TOY_IMAGE, registry.CHAMPION).version == 1
