"""The tabular adapter: request schema built from the contract alone, feeds, answers, examples."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipelines.common.contract import InputSpec, ModelContract
from serving.adapters import InvalidRequest, adapter_class
from serving.adapters.base import class_outputs
from serving.adapters.tabular import TabularClassifier


def contract(**changes) -> ModelContract:
    fields = dict(
        name="churn", kind="tabular_classifier", model_type="test", probability_output="probabilities",
        inputs=[InputSpec(name="plan", dtype="string", allowed=["basic", "pro"]),
                InputSpec(name="months", dtype="float32", minimum=0, integer=True),
                InputSpec(name="spend", dtype="float32", minimum=0)],
        labels=["No", "Yes"], positive_label="Yes", threshold=0.3, run_id="r", data_sha256="d",
        created_at="2026-01-01T00:00:00+00:00",
    )
    return ModelContract(**(fields | changes))


def parse(adapter, records):
    return adapter.parse(json.dumps(records).encode())


def test_kind_selects_the_adapter():
    assert adapter_class("tabular_classifier") is TabularClassifier
    with pytest.raises(ValueError, match="no serving adapter for model kind 'sound_classifier'"):
        adapter_class("sound_classifier")


def test_a_new_category_in_the_contract_needs_no_code_change():
    record = {"plan": "enterprise", "months": 3, "spend": 10.5}
    with pytest.raises(InvalidRequest, match="unknown category 'enterprise'"):
        parse(TabularClassifier(contract(), max_batch=8), [record])
    retrained = contract(inputs=[InputSpec(name="plan", dtype="string", allowed=["basic", "pro", "enterprise"]),
                                 *contract().inputs[1:]])
    assert parse(TabularClassifier(retrained, max_batch=8), [record]) == [{"plan": "enterprise", "months": 3.0, "spend": 10.5}]


def test_feeds_are_one_typed_column_per_input():
    adapter = TabularClassifier(contract(), max_batch=8)
    feeds = adapter.feeds(parse(adapter, [{"plan": "pro", "months": 2, "spend": 1.5, "customerID": "c1"},
                                          {"plan": "basic", "months": 0, "spend": 0}]))
    assert set(feeds) == {"plan", "months", "spend"}  # the id field is never fed to the model
    assert feeds["plan"].shape == (2, 1) and feeds["plan"].dtype == object
    assert feeds["months"].dtype == np.float32 and feeds["spend"].tolist() == [[1.5], [0.0]]


def test_numbers_must_fit_float32():
    adapter = TabularClassifier(contract(), max_batch=8)
    with pytest.raises(InvalidRequest, match="spend"):
        parse(adapter, [{"plan": "pro", "months": 2, "spend": 1e39}])  # would be inf inside the graph


def test_example_from_config_when_valid_else_from_contract():
    assert TabularClassifier(contract(), max_batch=8, example={"plan": "pro", "months": 1, "spend": 2.0}).example["plan"] == "pro"
    fallback = TabularClassifier(contract(), max_batch=8, example={"plan": "gone"}).example
    assert fallback == {"plan": "basic", "months": 0.0, "spend": 0.0}
    schema = TabularClassifier(contract(), max_batch=8).request_schema()
    assert schema["maxItems"] == 8 and schema["examples"] == [[fallback]]


def test_binary_answers_use_the_threshold_and_report_the_positive_probability():
    answers = class_outputs(np.array([[0.8, 0.2], [0.6, 0.4]], dtype=np.float32), contract())
    assert [a["label"] for a in answers] == ["No", "Yes"]  # threshold 0.3
    assert answers[1]["probability"] == pytest.approx(0.4)


def test_multiclass_answers_take_the_most_likely_class():
    three = contract(labels=["a", "b", "c"], positive_label=None, threshold=None)
    (answer,) = class_outputs(np.array([[0.1, 0.7, 0.2]]), three)
    assert answer["label"] == "b" and answer["probability"] == pytest.approx(0.7)
    assert answer["probabilities"] == pytest.approx({"a": 0.1, "b": 0.7, "c": 0.2})
