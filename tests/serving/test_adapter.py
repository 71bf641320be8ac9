"""The server's one adapter: everything kind-specific comes from the contract's codec, answers from
modelpkg.runtime. A contract written by hand here shows it needs no serving code per model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from modelpkg.codecs import InvalidRequest, codec_for
from modelpkg.contract import InputSpec, ModelContract
from serving.adapter import Adapter


def contract(**changes) -> ModelContract:
    fields = dict(
        name="plans", kind="tabular_classifier", model_type="test", probability_output="probabilities",
        inputs=[InputSpec(name="plan", dtype="string", allowed=["basic", "pro"]),
                InputSpec(name="months", dtype="float32", minimum=0, integer=True),
                InputSpec(name="spend", dtype="float32", minimum=0)],
        labels=["No", "Yes"], positive_label="Yes", threshold=0.3, id_field="account", run_id="r",
        data_sha256="d", created_at="2026-01-01T00:00:00+00:00",
    )
    return ModelContract(**(fields | changes))


def adapter(example: dict | None = None, **changes) -> Adapter:
    return Adapter(codec_for(contract(**changes), max_batch=8, example=example))


def parse(adapter: Adapter, records: list[dict]):
    return adapter.parse(json.dumps(records).encode())


def test_a_kind_without_a_codec_cannot_load():
    with pytest.raises(ValueError, match="no codec for model kind 'sound_classifier'"):
        codec_for(contract().model_copy(update={"kind": "sound_classifier"}))


def test_a_new_category_in_the_contract_needs_no_code_change():
    record = {"plan": "enterprise", "months": 3, "spend": 10.5}
    with pytest.raises(InvalidRequest, match="unknown category 'enterprise'"):
        parse(adapter(), [record])
    retrained = [InputSpec(name="plan", dtype="string", allowed=["basic", "pro", "enterprise"]), *contract().inputs[1:]]
    assert parse(adapter(inputs=retrained), [record]) == [{"plan": "enterprise", "months": 3.0, "spend": 10.5}]


def test_the_id_field_comes_from_the_contract_and_is_logged_never_fed():
    served = adapter()
    records = parse(served, [{"plan": "pro", "months": 2, "spend": 1.5, "account": "a-1"}])
    assert set(served.codec.feeds(records)) == {"plan", "months", "spend"}
    assert served.log_inputs(records) == [{"plan": "pro", "months": 2.0, "spend": 1.5, "account": "a-1"}]
    with pytest.raises(InvalidRequest, match="unknown field 'customerID'"):  # nothing churn-specific is allowed
        parse(served, [{"plan": "pro", "months": 2, "spend": 1.5, "customerID": "c"}])


def test_numbers_must_fit_float32():
    with pytest.raises(InvalidRequest, match="spend"):
        parse(adapter(), [{"plan": "pro", "months": 2, "spend": 1e39}])  # would be inf inside the graph


def test_example_schema_and_media_type_come_from_the_codec():
    configured = adapter(example={"plan": "pro", "months": 1, "spend": 2.0})
    assert configured.example["plan"] == "pro"
    built = adapter()
    assert built.example == {"plan": "basic", "months": 0.0, "spend": 0.0}  # from the contract alone
    schema = built.request_schema()
    assert schema["maxItems"] == 8 and schema["examples"] == [[built.example]]
    assert built.media_type == "application/json"
    assert built.example_records() == [built.example]


def test_a_configured_example_the_contract_no_longer_accepts_is_replaced():
    assert adapter(example={"plan": "gone"}).example == {"plan": "basic", "months": 0.0, "spend": 0.0}


def test_binary_answers_use_the_threshold_and_report_the_positive_probability():
    answers = adapter().outputs(np.array([[0.8, 0.2], [0.6, 0.4]], dtype=np.float32))
    assert [a["label"] for a in answers] == ["No", "Yes"]  # threshold 0.3
    assert answers[1]["probability"] == pytest.approx(0.4) and type(answers[1]["probability"]) is float


def test_multiclass_answers_take_the_most_likely_class():
    three = adapter(labels=["a", "b", "c"], positive_label=None, threshold=None)
    (answer,) = three.outputs(np.array([[0.1, 0.7, 0.2]]))
    assert answer["label"] == "b" and answer["probability"] == pytest.approx(0.7)
    assert answer["probabilities"] == pytest.approx({"a": 0.1, "b": 0.7, "c": 0.2})
