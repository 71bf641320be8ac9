"""Bad requests get 4xx answers that name the problem, never a 5xx, and never reach the model."""

from __future__ import annotations

import json

import pytest

from serving.predlog import read_predictions


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


def test_rejected_requests_are_not_logged(client, bundle_config, example_records):
    client.post("/v1/churn/predict", json=[with_change(example_records[0], Contract="monthly")])
    assert read_predictions(bundle_config.prediction_log.path, "churn") == []


def test_feedback_body_is_validated(client, bundle_config):
    assert client.post("/v1/churn/feedback", json={"items": []}).status_code == 422
    assert client.post("/v1/churn/feedback", json={"items": [{"id": "x"}]}).status_code == 422
    too_many = [{"id": str(i), "label": "No"} for i in range(bundle_config.limits.max_feedback_items + 1)]
    assert client.post("/v1/churn/feedback", json={"items": too_many}).status_code == 422
