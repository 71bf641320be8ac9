"""Every route, in process (TestClient over a bundle-mode app serving one model of each kind): answers,
headers, metrics, the log. Kind-agnostic behaviour is checked for churn, toy_image and toy_text alike."""

from __future__ import annotations

import base64
import sqlite3

import pytest

from modelpkg.runtime import DEFAULT_THRESHOLD
from serving.predlog import read_predictions
from tests.serving.conftest import ADMIN_KEY, FEEDBACK, KIND_NAMES

kinds = pytest.mark.parametrize("name", KIND_NAMES)


def test_health_ready_and_models(client):
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200  # bundles without bundle.json: version unknown
    assert ready.json()["models"] == {name: "unknown" for name in KIND_NAMES}
    churn = {m["name"]: m for m in client.get("/v1/models").json()["models"]}["churn"]
    assert churn["threshold"] == 0.5 and churn["positive_label"] == "Yes" and churn["id_field"] == "customerID"
    inputs = {spec["name"]: spec for spec in churn["inputs"]}
    assert inputs["Contract"]["allowed"] == ["Month-to-month", "One year", "Two year"]
    assert inputs["tenure"]["integer"] is True and inputs["tenure"]["minimum"] == 0.0


@kinds
def test_models_describe_each_kind(client, codecs, name):
    described = {m["name"]: m for m in client.get("/v1/models").json()["models"]}[name]
    contract = codecs[name].contract
    assert described["status"] == "loaded" and described["alias"] == "champion"
    assert (described["kind"], described["labels"], described["run_id"]) == (contract.kind, contract.labels, contract.run_id)
    assert described["media_type"] == "application/json" and described["metrics"] == contract.metrics
    assert [spec["name"] for spec in described["inputs"]] == [spec.name for spec in contract.inputs]
    assert described["serving"]["execution"] == ("thread" if name == "toy_image" else "inline")


def expected_label(prediction: dict, labels: list[str], threshold: float) -> str:
    if len(labels) > 2:
        return max(prediction["probabilities"], key=prediction["probabilities"].get)
    return labels[1] if prediction["probability"] >= threshold else labels[0]


@kinds
def test_predict_answers_each_record_and_logs_it(client, bundle_config, codecs, kind_records, name):
    batch = kind_records[name][:5]
    response = client.post(f"/v1/{name}/predict", json=batch)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == name and body["version"] == "unknown"
    assert response.headers["x-request-id"] == body["request_id"]
    contract = codecs[name].contract
    assert len(body["predictions"]) == 5
    for prediction in body["predictions"]:
        assert 0.0 <= prediction["probability"] <= 1.0
        assert prediction["label"] == expected_label(prediction, contract.labels, contract.threshold or DEFAULT_THRESHOLD)
        if len(contract.labels) > 2:
            assert set(prediction["probabilities"]) == set(contract.labels)
            assert prediction["probability"] == max(prediction["probabilities"].values())
    logged = read_predictions(bundle_config.prediction_log.path, name)
    assert [row["id"] for row in logged] == [p["id"] for p in body["predictions"]]
    assert {row["request_id"] for row in logged} == {body["request_id"]}
    assert [row["outputs"] for row in logged] == [{k: v for k, v in p.items() if k != "id"} for p in body["predictions"]]
    # the log keeps what the codec says it keeps, nothing else
    codec = codecs[name]
    assert [row["inputs"] for row in logged] == [codec.log_entry(record) for record in codec.validate(batch)]


def test_churn_logs_its_inputs_and_the_id_field(client, bundle_config, example_records):
    record = example_records[0]
    client.post("/v1/churn/predict", json=[record])
    (logged,) = read_predictions(bundle_config.prediction_log.path, "churn")
    assert logged["inputs"] == record  # customerID kept in the log, never fed to the model


def test_image_log_keeps_no_image_bytes(client, bundle_config, kind_records):
    batch = kind_records["toy_image"][:3]
    client.post("/v1/toy_image/predict", json=batch)
    stored = sqlite3.connect(bundle_config.prediction_log.path).execute(
        "SELECT inputs FROM predictions WHERE model = 'toy_image'").fetchall()
    assert len(stored) == 3
    for (inputs,), record in zip(stored, batch):
        assert record["image"][:40] not in inputs  # not the base64, not even a piece of it
        assert len(inputs) < 600  # a hash and a few numbers, not a picture
    entry = read_predictions(bundle_config.prediction_log.path, "toy_image")[0]["inputs"]
    assert set(entry) == {"sha256", "bytes", "width", "height", "format", "mode", "brightness", "contrast", "sharpness"}
    assert (entry["width"], entry["height"], entry["format"], entry["bytes"]) == (16, 16, "PNG", len(base64.b64decode(batch[0]["image"])))


def test_text_log_keeps_the_text_truncated(client, bundle_config, codecs):
    logged_chars = codecs["toy_text"].settings.logged_chars
    long_text = " ".join(["good phone and great service"] * 40)
    assert len(long_text) > logged_chars
    answer = client.post("/v1/toy_text/predict", json=[{"text": long_text}, {"text": "awful"}])
    assert answer.status_code == 200
    first, second = (row["inputs"] for row in read_predictions(bundle_config.prediction_log.path, "toy_text"))
    assert first["text"] == long_text[:logged_chars] and first["chars"] == len(long_text)
    assert first["truncated"] == "yes"
    assert (second["text"], second["chars"], second["truncated"]) == ("awful", 5.0, "no")


def test_client_request_id_is_kept_and_a_bad_one_replaced(client, example_records):
    mine = client.post("/v1/churn/predict", json=example_records[:1], headers={"X-Request-ID": "order-42"})
    assert mine.headers["x-request-id"] == "order-42" and mine.json()["request_id"] == "order-42"
    odd = client.post("/v1/churn/predict", json=example_records[:1], headers={"X-Request-ID": "a b\tc"})
    assert odd.headers["x-request-id"] != "a b\tc"


@kinds
def test_feedback_is_joined_to_predictions(client, bundle_config, codecs, kind_records, name):
    predictions = client.post(f"/v1/{name}/predict", json=kind_records[name][:2]).json()["predictions"]
    ids = [p["id"] for p in predictions]
    label = codecs[name].contract.labels[-1]
    response = client.post(f"/v1/{name}/feedback", json={"items": [{"id": ids[0], "label": label}]}, headers=FEEDBACK)
    assert response.status_code == 200 and response.json() == {"accepted": 1}
    labels = {row["id"]: row["label"] for row in read_predictions(bundle_config.prediction_log.path, name)}
    assert labels == {ids[0]: label, ids[1]: None}


@kinds
def test_feedback_names_unknown_labels_and_ids(client, codecs, kind_records, name):
    labels = codecs[name].contract.labels
    known = client.post(f"/v1/{name}/predict", json=kind_records[name][:1]).json()["predictions"][0]["id"]
    bad_label = client.post(f"/v1/{name}/feedback", json={"items": [{"id": known, "label": "Maybe"}]}, headers=FEEDBACK)
    assert bad_label.status_code == 422
    (error,) = bad_label.json()["detail"]
    assert error["loc"] == ["body", "items", 0, "label"]
    assert error["msg"] == f"unknown label 'Maybe' (allowed: {', '.join(labels)})"
    bad_id = client.post(f"/v1/{name}/feedback", json={"items": [{"id": known, "label": labels[0]},
                                                                 {"id": "no-such-id", "label": labels[0]}]},
                         headers=FEEDBACK)
    assert bad_id.status_code == 422
    (error,) = bad_id.json()["detail"]
    assert error["loc"] == ["body", "items", 1, "id"] and "no-such-id" in error["msg"]


def test_feedback_ids_belong_to_their_model(client, kind_records):
    churn_id = client.post("/v1/churn/predict", json=kind_records["churn"][:1]).json()["predictions"][0]["id"]
    answer = client.post("/v1/toy_text/feedback", json={"items": [{"id": churn_id, "label": "positive"}]}, headers=FEEDBACK)
    assert answer.status_code == 422 and "of model 'toy_text'" in answer.json()["detail"][0]["msg"]


def test_metrics_count_requests_predictions_and_versions(client, codecs, kind_records):
    client.post("/v1/churn/predict", json=kind_records["churn"][:3])
    client.post("/v1/churn/predict", json=[{"tenure": "x"}])
    client.post("/v1/toy_image/predict", json=kind_records["toy_image"][:2])
    text = client.get("/metrics").text
    assert 'serving_requests_total{method="POST",route="/v1/churn/predict",status="200"} 1.0' in text
    assert 'serving_requests_total{method="POST",route="/v1/churn/predict",status="422"} 1.0' in text
    assert 'serving_request_duration_seconds_count{route="/v1/churn/predict"} 2.0' in text
    assert 'serving_prediction_probability_count{model="churn",version="unknown"} 3.0' in text
    assert 'serving_prediction_probability_count{model="toy_image",version="unknown"} 2.0' in text
    for name in KIND_NAMES:
        contract = codecs[name].contract
        assert (f'serving_model_info{{alias="champion",kind="{contract.kind}",model="{name}",'
                f'run_id="{contract.run_id}",version="unknown"}} 1.0') in text
    assert "serving_predictions_total{" in text


def test_unmatched_paths_share_one_metrics_label(client):
    for path in ("/a", "/b", "/c"):
        assert client.get(path).status_code == 404
    assert 'route="unmatched",status="404"} 3.0' in client.get("/metrics").text


def test_admin_reload_needs_the_key(client):
    assert client.post("/admin/reload").status_code == 401
    assert client.post("/admin/reload", headers={"X-API-Key": "wrong"}).status_code == 403
    response = client.post("/admin/reload", headers={"X-API-Key": ADMIN_KEY})
    assert response.status_code == 200
    assert {name: result["ok"] for name, result in response.json()["reloaded"].items()} == dict.fromkeys(KIND_NAMES, True)
    only = client.post("/admin/reload?model=toy_text", headers={"X-API-Key": ADMIN_KEY})
    assert list(only.json()["reloaded"]) == ["toy_text"]
    assert client.post("/admin/reload?model=nope", headers={"X-API-Key": ADMIN_KEY}).status_code == 404


def test_openapi_documents_the_contract_schema_with_an_example(client):
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/v1/churn/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert body["example"][0]["customerID"] == "7590-VHVEG"
    record = spec["components"]["schemas"]["ChurnRecord"]
    assert record["properties"]["Contract"]["enum"] == ["Month-to-month", "One year", "Two year"]
    assert record["properties"]["TotalCharges"]["minimum"] == 0.0
    assert record["additionalProperties"] is False
    assert client.get("/docs").status_code == 200


@kinds
def test_openapi_documents_each_body_under_its_media_type(client, codecs, name):
    operation = client.get("/openapi.json").json()["paths"][f"/v1/{name}/predict"]["post"]
    media_type, *uploads = operation["requestBody"]["content"]
    assert media_type == codecs[name].media_type
    assert uploads == (["multipart/form-data"] if name == "toy_image" else [])  # image files also come as file parts
    example = operation["requestBody"]["content"][media_type]["example"]
    assert client.post(f"/v1/{name}/predict", json=example).status_code == 200  # the documented example works
    assert "415" in operation["responses"]


def test_graceful_shutdown_flushes_the_log(bundle_config, example_records):
    from fastapi.testclient import TestClient

    from serving.app import create_app

    config = bundle_config.model_copy(update={"prediction_log": bundle_config.prediction_log.model_copy(
        update={"wait_for_commit": False})})
    with TestClient(create_app(config)) as test_client:
        for record in example_records[:20]:
            assert test_client.post("/v1/churn/predict", json=[record]).status_code == 200
    assert len(read_predictions(config.prediction_log.path, "churn")) == 20
