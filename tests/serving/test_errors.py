"""Server-side failures answer with general words and an error id, never their own text or local paths;
the log has the details under that id."""

from __future__ import annotations

import json
import logging
import re

from fastapi.testclient import TestClient

from serving.app import create_app
from tests.serving.conftest import ADMIN_KEY, make_config

SECRET_PATH = "/srv/secret/layout/model-store"


def error_id(text: str) -> str:
    return re.search(r"error id ([0-9a-f]{12})", text).group(1)


def logged(caplog, error_id: str) -> str:
    [record] = [r for r in caplog.records if error_id in r.getMessage()]
    return record.getMessage() + (record.exc_text or "")


def test_a_model_that_fails_to_load_is_reported_by_error_id_only(tmp_path, bundle_root, example_records, caplog,
                                                                  monkeypatch):
    config = make_config(tmp_path, source={"kind": "bundles", "bundle_root": str(bundle_root)})
    config = config.model_copy(update={"models": [*config.models, config.models[0].model_copy(update={"name": "broken"})]})
    monkeypatch.setenv(config.admin.api_key_env, ADMIN_KEY)
    with caplog.at_level(logging.ERROR), TestClient(create_app(config)) as client:
        answers = {"ready": client.get("/ready"), "models": client.get("/v1/models"),
                   "predict": client.post("/v1/broken/predict", json=example_records[:1]),
                   "reload": client.post("/admin/reload?model=broken", headers={"X-API-Key": ADMIN_KEY})}
    assert [a.status_code for a in answers.values()] == [503, 200, 503, 500]
    for name, answer in answers.items():
        assert str(bundle_root) not in answer.text and "model.onnx" not in answer.text, (name, answer.text)
        assert "FileNotFoundError" not in answer.text, name
    reason = answers["ready"].json()["reasons"]["broken"]
    assert reason.startswith("failed to load (error id ") and reason in answers["predict"].json()["detail"]
    assert str(bundle_root / "broken") in logged(caplog, error_id(reason))  # the operator finds the details
    assert "model.onnx" in logged(caplog, error_id(answers["reload"].json()["reloaded"]["broken"]["error"]))
    assert all(m["source"] == f"bundle {m['name']}/" for m in answers["models"].json()["models"] if "source" in m)


def test_an_unexpected_error_is_a_generic_500_with_an_error_id(bundle_config, caplog):
    app = create_app(bundle_config)

    async def broken() -> None:
        raise RuntimeError(f"cannot open {SECRET_PATH}/weights.bin")

    app.add_api_route("/broken", broken)  # a bug in any route stands in here
    with caplog.at_level(logging.ERROR), TestClient(app, raise_server_exceptions=False) as client:
        answer = client.get("/broken")
    assert answer.status_code == 500 and SECRET_PATH not in answer.text
    body = json.loads(answer.text)
    assert body["detail"].startswith("internal server error (error id ") and error_id(body["detail"]) == body["error_id"]
    assert f"{SECRET_PATH}/weights.bin" in logged(caplog, body["error_id"])
