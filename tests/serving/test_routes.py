"""Every route, in process (TestClient over a bundle-mode app): answers, headers, metrics, the log."""

from __future__ import annotations

from serving.predlog import read_predictions
from tests.serving.conftest import ADMIN_KEY, THRESHOLD


def test_health_ready_and_models(client):
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json()["models"] == {"churn": "unknown"}  # bundle without bundle.json
    (model,) = client.get("/v1/models").json()["models"]
    assert model["name"] == "churn" and model["status"] == "loaded" and model["threshold"] == THRESHOLD
    assert model["run_id"] == "test-run" and model["alias"] == "champion"
    inputs = {spec["name"]: spec for spec in model["inputs"]}
    assert inputs["Contract"]["allowed"] == ["Month-to-month", "One year", "Two year"]
    assert inputs["tenure"]["integer"] is True and inputs["tenure"]["minimum"] == 0.0


def test_predict_answers_each_record_and_logs_it(client, bundle_config, example_records):
    batch = example_records[:5]
    response = client.post("/v1/churn/predict", json=batch)
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == "churn" and body["version"] == "unknown"
    assert response.headers["x-request-id"] == body["request_id"]
    assert len(body["predictions"]) == 5
    for prediction in body["predictions"]:
        assert 0.0 <= prediction["probability"] <= 1.0
        assert prediction["label"] == ("Yes" if prediction["probability"] >= THRESHOLD else "No")
    logged = read_predictions(bundle_config.prediction_log.path, "churn")
    assert [row["id"] for row in logged] == [p["id"] for p in body["predictions"]]
    assert logged[0]["inputs"]["customerID"] == batch[0]["customerID"]  # kept in the log, not fed to the model
    assert logged[0]["outputs"] == {k: body["predictions"][0][k] for k in ("label", "probability")}
    assert {row["request_id"] for row in logged} == {body["request_id"]}


def test_client_request_id_is_kept_and_a_bad_one_replaced(client, example_records):
    mine = client.post("/v1/churn/predict", json=example_records[:1], headers={"X-Request-ID": "order-42"})
    assert mine.headers["x-request-id"] == "order-42" and mine.json()["request_id"] == "order-42"
    odd = client.post("/v1/churn/predict", json=example_records[:1], headers={"X-Request-ID": "a b\tc"})
    assert odd.headers["x-request-id"] != "a b\tc"


def test_feedback_is_joined_to_predictions(client, bundle_config, example_records):
    predictions = client.post("/v1/churn/predict", json=example_records[:2]).json()["predictions"]
    ids = [p["id"] for p in predictions]
    response = client.post("/v1/churn/feedback", json={"items": [{"id": ids[0], "label": "Yes"}]})
    assert response.status_code == 200 and response.json() == {"accepted": 1}
    labels = {row["id"]: row["label"] for row in read_predictions(bundle_config.prediction_log.path, "churn")}
    assert labels == {ids[0]: "Yes", ids[1]: None}


def test_feedback_names_unknown_ids_and_labels(client, example_records):
    known = client.post("/v1/churn/predict", json=example_records[:1]).json()["predictions"][0]["id"]
    bad_label = client.post("/v1/churn/feedback", json={"items": [{"id": known, "label": "Maybe"}]})
    assert bad_label.status_code == 422
    assert "unknown label 'Maybe' (allowed: No, Yes)" in bad_label.json()["detail"][0]["msg"]
    bad_id = client.post("/v1/churn/feedback", json={"items": [{"id": known, "label": "No"},
                                                               {"id": "no-such-id", "label": "No"}]})
    assert bad_id.status_code == 422
    (error,) = bad_id.json()["detail"]
    assert error["loc"] == ["body", "items", 1, "id"] and "no-such-id" in error["msg"]


def test_metrics_count_requests_predictions_and_versions(client, example_records):
    client.post("/v1/churn/predict", json=example_records[:3])
    client.post("/v1/churn/predict", json=[{"tenure": "x"}])
    text = client.get("/metrics").text
    assert 'serving_requests_total{method="POST",route="/v1/churn/predict",status="200"} 1.0' in text
    assert 'serving_requests_total{method="POST",route="/v1/churn/predict",status="422"} 1.0' in text
    assert 'serving_request_duration_seconds_count{route="/v1/churn/predict"} 2.0' in text
    assert 'serving_prediction_probability_count{model="churn",version="unknown"} 3.0' in text
    assert 'serving_model_info{alias="champion",kind="tabular_classifier",model="churn",run_id="test-run",version="unknown"} 1.0' in text
    assert "serving_predictions_total{" in text


def test_unmatched_paths_share_one_metrics_label(client):
    for path in ("/a", "/b", "/c"):
        assert client.get(path).status_code == 404
    assert 'route="unmatched",status="404"} 3.0' in client.get("/metrics").text


def test_admin_reload_needs_the_key(client):
    assert client.post("/admin/reload").status_code == 401
    assert client.post("/admin/reload", headers={"X-API-Key": "wrong"}).status_code == 401
    response = client.post("/admin/reload", headers={"X-API-Key": ADMIN_KEY})
    assert response.status_code == 200
    assert response.json()["reloaded"]["churn"]["ok"] is True
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


def test_graceful_shutdown_flushes_the_log(bundle_config, example_records):
    from fastapi.testclient import TestClient

    from serving.app import create_app

    config = bundle_config.model_copy(update={"prediction_log": bundle_config.prediction_log.model_copy(
        update={"wait_for_commit": False})})
    with TestClient(create_app(config)) as test_client:
        for record in example_records[:20]:
            assert test_client.post("/v1/churn/predict", json=[record]).status_code == 200
    assert len(read_predictions(config.prediction_log.path, "churn")) == 20
