"""ONNX export of the churn pipelines: raw customer columns in, the same probabilities out.

Small real models (a binned logistic regression and a 20-tree XGBoost, fitted on 500 real customers)
are converted once per module and compared with `predict_proba` on 700 customers they never saw.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from pipelines.churn import schema
from pipelines.churn.config import ChurnConfig
from pipelines.churn.features import features, target
from pipelines.churn.models import BASELINE, CANDIDATE, build_classifiers, xgboost_pipeline
from modelpkg.codecs.tabular import TabularCodec
from modelpkg.contract import ModelContract
from modelpkg.runtime import open_session
from pipelines.churn.export import contract_fields
from pipelines.churn.onnx_convert import PROBABILITY_OUTPUT, input_specs, to_onnx
from pipelines.common.onnx_parity import check_parity

ATOL = 1e-5
ONNX_TYPES = {"string": onnx.TensorProto.STRING, "float32": onnx.TensorProto.FLOAT}


@pytest.fixture(scope="module")
def small_config() -> ChurnConfig:
    return ChurnConfig.model_validate({
        "features": {"numeric_bins": 4},
        "models": {"xgboost": {"n_estimators": 20, "max_depth": 3}},
    })


@pytest.fixture(scope="module")
def linear_pipeline(small_config, train_rows):
    """The baseline: one-hot categories, standardised numbers and quantile bins, then logistic regression."""
    return build_classifiers(small_config)[BASELINE].fit(features(train_rows), target(train_rows))


@pytest.fixture(scope="module")
def xgboost_fitted(small_config, train_rows):
    pipeline = xgboost_pipeline(small_config.models.xgboost, small_config.seed)
    return pipeline.fit(features(train_rows), target(train_rows))


@pytest.fixture(scope="module", params=[BASELINE, CANDIDATE])
def converted(request):
    """(name, fitted sklearn pipeline, ONNX model, onnxruntime session) for each model family."""
    pipeline = request.getfixturevalue("linear_pipeline" if request.param == BASELINE else "xgboost_fitted")
    model = to_onnx(pipeline)
    return request.param, pipeline, model, open_session(model.SerializeToString())


CODEC = TabularCodec(ModelContract(**contract_fields({"model_type": "test", "threshold": 0.5}, input_specs()),
                                   name="churn", run_id="-", data_sha256="-", created_at="-"))


def onnx_feeds(frame) -> dict[str, np.ndarray]:
    """Rows -> feeds by the churn codec, skipping request validation (these tests probe the graph)."""
    return CODEC.feeds(CODEC.requests(frame.to_dict(orient="records")))


def onnx_probabilities(session, frame) -> np.ndarray:
    return session.run([PROBABILITY_OUTPUT], onnx_feeds(frame))[0]


def test_onnx_probabilities_match_predict_proba_on_unseen_rows(converted, holdout_rows):
    name, pipeline, _, session = converted
    report = check_parity(pipeline.predict_proba(features(holdout_rows)), onnx_probabilities(session, holdout_rows),
                          atol=ATOL)
    assert report.rows == len(holdout_rows)
    assert report.max_abs_diff < ATOL, name


def test_the_linear_pipeline_converted_above_really_has_bins(linear_pipeline):
    names = list(linear_pipeline.named_steps["features"].get_feature_names_out())
    assert [name for name in names if name.startswith("tenure_")] == [f"tenure_{b}.0" for b in range(4)]


def test_graph_inputs_match_the_contract_input_specs(converted):
    _, _, model, _ = converted
    specs = input_specs()
    assert [i.name for i in model.graph.input] == [spec.name for spec in specs]
    for graph_input, spec in zip(model.graph.input, specs):
        tensor = graph_input.type.tensor_type
        assert tensor.elem_type == ONNX_TYPES[spec.dtype], spec.name
        assert tensor.shape.dim[1].dim_value == 1 and spec.shape == [None, 1]
        assert not tensor.shape.dim[0].dim_value  # any batch size


def test_graph_outputs_a_label_and_a_probability_tensor(converted, holdout_rows):
    _, _, model, session = converted
    assert [output.name for output in model.graph.output] == ["label", PROBABILITY_OUTPUT]
    label, probabilities = session.run(None, onnx_feeds(holdout_rows.head(5)))
    assert probabilities.shape == (5, 2)  # zipmap off: a plain tensor, not a list of dicts
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(label, probabilities.argmax(axis=1))


@pytest.mark.filterwarnings("ignore:Found unknown categories")
def test_unknown_category_in_a_feed_is_encoded_as_nothing_like_the_native_model(converted, holdout_rows):
    _, pipeline, _, session = converted
    rows = holdout_rows.head(3).copy()
    rows.loc[0, "Contract"] = "monthly"
    rows.loc[1, "PaymentMethod"] = "Bitcoin"
    exported = onnx_probabilities(session, rows)  # must not raise
    assert np.all(np.isfinite(exported))
    check_parity(pipeline.predict_proba(features(rows)), exported, atol=ATOL)


def test_feeds_have_one_column_per_input_typed_as_the_graph_expects(holdout_rows):
    feeds = onnx_feeds(holdout_rows.head(4))
    assert list(feeds) == list(schema.FEATURES)
    for name in schema.CATEGORICAL:
        assert feeds[name].shape == (4, 1) and isinstance(feeds[name][0, 0], str)
    for name in schema.NUMERIC:
        assert feeds[name].shape == (4, 1) and feeds[name].dtype == np.float32
    assert feeds["tenure"][:, 0].tolist() == holdout_rows["tenure"].head(4).astype(float).tolist()


def test_input_specs_carry_allowed_values_minimums_and_integer_flags():
    specs = {spec.name: spec for spec in input_specs()}
    assert specs["Contract"].allowed == ["Month-to-month", "One year", "Two year"]
    assert specs["tenure"].integer and specs["tenure"].minimum == 0.0
    assert not specs["MonthlyCharges"].integer
