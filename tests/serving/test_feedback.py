"""POST /v1/<model>/feedback: labels drive alerts and promotion, so they cannot be poisoned.

Behind a key of its own, JSON only, the first label counts, and a later one only as an explicit
correction; every label posted stays in the log's history."""

from __future__ import annotations

import logging

from fastapi.testclient import TestClient

from serving.app import create_app
from serving.config import with_overrides
from serving.predlog import read_label_history, read_predictions
from tests.serving.conftest import ADMIN_KEY, FEEDBACK, FEEDBACK_KEY


def predict_ids(client, records: list[dict], n: int = 2) -> list[str]:
    answer = client.post("/v1/churn/predict", json=records[:n])
    return [prediction["id"] for prediction in answer.json()["predictions"]]


def labels(config) -> dict[str, str | None]:
    return {row["id"]: row["label"] for row in read_predictions(config.prediction_log.path, "churn")}


def test_feedback_needs_its_own_key(client, bundle_config, example_records):
    [id_] = predict_ids(client, example_records, 1)
    body = {"items": [{"id": id_, "label": "Yes"}]}
    missing = client.post("/v1/churn/feedback", json=body)
    assert missing.status_code == 401 and "X-API-Key" in missing.json()["detail"]
    assert "$SERVING_FEEDBACK_KEY" in missing.json()["detail"]
    for wrong in ("wrong", ADMIN_KEY, FEEDBACK_KEY[:-1]):  # the admin key is not the feedback key
        assert client.post("/v1/churn/feedback", json=body, headers={"X-API-Key": wrong}).status_code == 403
    assert labels(bundle_config) == {id_: None}  # nothing refused was stored
    assert client.post("/v1/churn/feedback", json=body, headers=FEEDBACK).status_code == 200
    assert labels(bundle_config) == {id_: "Yes"}
    assert "FeedbackKey" in client.get("/openapi.json").json()["components"]["securitySchemes"]


def test_open_feedback_takes_explicit_config_and_warns(bundle_config, example_records, caplog, monkeypatch):
    monkeypatch.delenv(bundle_config.feedback.api_key_env, raising=False)
    config = with_overrides(bundle_config, feedback={"auth": "none"})
    with caplog.at_level(logging.WARNING), TestClient(create_app(config)) as client:
        [id_] = predict_ids(client, example_records, 1)
        assert client.post("/v1/churn/feedback", json={"items": [{"id": id_, "label": "No"}]}).status_code == 200
    assert any(r.levelno == logging.WARNING and "ANYONE" in r.getMessage() for r in caplog.records)
    assert not config.feedback.key_file.exists()  # no key was needed, none was made


def test_feedback_takes_json_only(client, bundle_config, example_records):
    [id_] = predict_ids(client, example_records, 1)
    body = f'{{"items": [{{"id": "{id_}", "label": "Yes"}}]}}'
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = FEEDBACK | ({"content-type": content_type} if content_type else {})
        answer = client.post("/v1/churn/feedback", content=body, headers=headers)
        assert answer.status_code == 415 and answer.json()["detail"].endswith("/v1/churn/feedback takes application/json")
    assert labels(bundle_config) == {id_: None}
    json_type = FEEDBACK | {"content-type": "application/json; charset=utf-8"}
    assert client.post("/v1/churn/feedback", content=body, headers=json_type).status_code == 200


def test_a_repeated_label_is_409_and_only_a_correction_changes_it(client, bundle_config, example_records):
    first, other = predict_ids(client, example_records)
    post = lambda *items: client.post("/v1/churn/feedback", json={"items": list(items)}, headers=FEEDBACK)  # noqa: E731
    assert post({"id": first, "label": "No"}).status_code == 200
    repeated = post({"id": other, "label": "Yes"}, {"id": first, "label": "Yes"})
    assert repeated.status_code == 409
    [error] = repeated.json()["detail"]
    assert error["loc"] == ["body", "items", 1, "id"] and first in error["msg"] and '"correction": true' in error["msg"]
    assert labels(bundle_config) == {first: "No", other: None}  # all or nothing: neither label changed
    assert post({"id": first, "label": "Yes", "correction": True}).status_code == 200
    assert labels(bundle_config) == {first: "Yes", other: None}
    history = read_label_history(bundle_config.prediction_log.path, first)
    assert [(h["label"], h["outcome"]) for h in history] == [("No", "first"), ("Yes", "refused"), ("Yes", "correction")]
