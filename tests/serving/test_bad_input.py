"""Bad requests get 4xx answers that name the problem, never a 5xx, and never reach the model.

The churn cases cover the tabular codec field by field; the parametrized ones hold for every kind."""

from __future__ import annotations

import base64
import itertools
import json

import pytest

from serving.predlog import read_predictions
from tests.serving.conftest import FEEDBACK, KIND_NAMES

kinds = pytest.mark.parametrize("name", KIND_NAMES)
# Per kind: a record that fails on one field, that field, and the error type.
BAD_RECORDS = {
    "churn": (lambda good: {**good, "Contract": "monthly"}, "Contract", "literal_error"),
    "toy_image": (lambda good: {"image": "not base64 at all!"}, "image", "invalid_base64"),
    "toy_text": (lambda good: {"text": "  \n "}, "text", "blank_text"),
}


def with_change(record: dict, **change) -> dict:
    return {**record, **change}


def errors_of(response) -> list[dict]:
    assert response.status_code == 422, response.text
    return response.json()["detail"]


def test_missing_field(client, example_records):
    record = dict(example_records[0])
    del record["tenure"]
    (error,) = errors_of(client.post("/v1/churn/predict", json=[record]))
    assert error["loc"] == ["body", 0, "tenure"] and error["type"] == "missing"


@pytest.mark.parametrize("field, value", [("tenure", "12"), ("MonthlyCharges", True), ("gender", 1), ("TotalCharges", None)])
def test_wrong_type(client, example_records, field, value):
    (error,) = errors_of(client.post("/v1/churn/predict", json=[with_change(example_records[0], **{field: value})]))
    assert error["loc"] == ["body", 0, field]


def test_unknown_category_names_the_allowed_values(client, example_records):
    (error,) = errors_of(client.post("/v1/churn/predict", json=[with_change(example_records[0], Contract="monthly")]))
    assert error["loc"] == ["body", 0, "Contract"]
    assert error["msg"] == "Contract: unknown category 'monthly' (allowed: Month-to-month, One year, Two year)"


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_inf(client, example_records, literal):
    body = json.dumps([example_records[0]]).replace('"MonthlyCharges": ' + json.dumps(example_records[0]["MonthlyCharges"]),
                                                    f'"MonthlyCharges": {literal}')
    (error,) = errors_of(client.post("/v1/churn/predict", content=body, headers={"content-type": "application/json"}))
    assert error["loc"] == ["body", 0, "MonthlyCharges"] and error["type"] == "finite_number"


def test_negative_charges_and_fractional_tenure(client, example_records):
    errors = errors_of(client.post("/v1/churn/predict", json=[
        with_change(example_records[0], TotalCharges=-5.0), with_change(example_records[1], tenure=2.5)]))
    assert {(tuple(e["loc"]), e["type"]) for e in errors} == {
        (("body", 0, "TotalCharges"), "greater_than_equal"), (("body", 1, "tenure"), "whole_number")}


def test_unknown_field_is_rejected_by_name_but_customer_id_is_optional(client, example_records):
    (error,) = errors_of(client.post("/v1/churn/predict", json=[with_change(example_records[0], Churn="Yes")]))
    assert error["loc"] == ["body", 0, "Churn"] and "unknown field 'Churn'" in error["msg"]
    without_id = {k: v for k, v in example_records[0].items() if k != "customerID"}
    assert client.post("/v1/churn/predict", json=[without_id]).status_code == 200


def test_body_must_be_a_non_empty_list_of_records(client, example_records):
    assert errors_of(client.post("/v1/churn/predict", json=example_records[0]))[0]["type"] == "list_type"
    assert errors_of(client.post("/v1/churn/predict", json=[]))[0]["type"] == "too_short"
    assert errors_of(client.post("/v1/churn/predict", content=b"[{", headers={"content-type": "application/json"}))[0]["type"] == "json_invalid"


def test_batch_over_the_limit_names_the_limit(client, bundle_config, example_records):
    limit = bundle_config.limits.max_batch
    too_many = (example_records * (limit // len(example_records) + 1))[:limit + 1]
    (error,) = errors_of(client.post("/v1/churn/predict", json=too_many))
    assert error["msg"] == f"batch too large: at most {limit} records per request"


def test_body_over_the_limit_is_413(client, bundle_config, example_records):
    limit = bundle_config.limits.max_body_bytes
    padded = json.dumps(example_records[:1]) + " " * limit
    declared = client.post("/v1/churn/predict", content=padded, headers={"content-type": "application/json"})
    assert declared.status_code == 413 and str(limit) in declared.json()["detail"]

    def chunks():  # no Content-Length: the limit is enforced while the body streams in
        yield padded[: limit // 2].encode()
        yield padded[limit // 2:].encode()

    streamed = client.post("/v1/churn/predict", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413


@kinds
def test_a_bad_record_is_named_by_index_and_field_and_nothing_is_logged(client, bundle_config, kind_records, name):
    make_bad, field, kind = BAD_RECORDS[name]
    good = kind_records[name][0]
    (error,) = errors_of(client.post(f"/v1/{name}/predict", json=[good, good, make_bad(good)]))
    assert error["loc"] == ["body", 2, field] and error["type"] == kind and field in error["msg"]
    assert read_predictions(bundle_config.prediction_log.path, name) == []  # nothing of the batch ran


@kinds
def test_unknown_field_missing_field_and_not_a_list(client, kind_records, name):
    good = kind_records[name][0]
    (error,) = errors_of(client.post(f"/v1/{name}/predict", json=[{**good, "label": "x"}]))
    assert error["loc"] == ["body", 0, "label"] and f"unknown field 'label': not an input of model '{name}'" in error["msg"]
    field = next(iter(good))
    (error,) = errors_of(client.post(f"/v1/{name}/predict", json=[{k: v for k, v in good.items() if k != field}]))
    assert error["loc"] == ["body", 0, field] and error["type"] == "missing"
    assert errors_of(client.post(f"/v1/{name}/predict", json=good))[0]["type"] == "list_type"
    assert errors_of(client.post(f"/v1/{name}/predict", json=[]))[0]["msg"] == "empty batch: send at least one record"


def test_an_image_that_is_not_an_image(client):
    not_png = base64.b64encode(b"GIF89a but not really" * 10).decode()
    (error,) = errors_of(client.post("/v1/toy_image/predict", json=[{"image": not_png}]))
    assert error["loc"] == ["body", 0, "image"] and error["type"] == "invalid_image"


def test_feedback_body_is_validated(client, bundle_config):
    assert client.post("/v1/churn/feedback", json={"items": []}, headers=FEEDBACK).status_code == 422
    assert client.post("/v1/churn/feedback", json={"items": [{"id": "x"}]}, headers=FEEDBACK).status_code == 422
    too_many = [{"id": str(i), "label": "No"} for i in range(bundle_config.limits.max_feedback_items + 1)]
    assert client.post("/v1/churn/feedback", json={"items": too_many}, headers=FEEDBACK).status_code == 422


# Valid JSON (a \ud800 escape), not encodable as UTF-8: an answer that echoes it must still be written.
SURROGATE_BODIES = [b'{"label": "\\ud800"}', b'{"items": [{"id": "\\ud800", "label": "positive"}]}',
                    b'{"items": [{"id": "x", "label": "\\udfff"}], "\\ud800": 1}', b'[{"text": "\\ud800 good"}]',
                    b'\xff\xfe not UTF-8', b'{"items": [{"id": "x", "label": 1e400}]}']


def test_a_lone_surrogate_or_bad_encoding_is_a_4xx_never_a_500(client):
    for name, route, body in itertools.product(KIND_NAMES, ("predict", "feedback"), SURROGATE_BODIES):
        for headers in ({"content-type": "application/json"} | FEEDBACK, {"content-type": "text/plain"}):
            answer = client.post(f"/v1/{name}/{route}", content=body, headers=headers)
            assert 400 <= answer.status_code < 500, (name, route, body, answer.status_code, answer.text)
            answer.json()  # and the answer is JSON a client can read
