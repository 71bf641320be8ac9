"""Per-model serving settings (limits, onnxruntime threads, execution) and the media type a model takes."""

from __future__ import annotations

import asyncio
import base64
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from modelpkg.codecs.image import encode_png
from serving.app import create_app
from serving.predlog import read_predictions
from tests.serving.conftest import ADMIN_KEY, KIND_NAMES, with_model


@pytest.fixture
def tuned_config(bundle_config):
    """Defaults lowered to 100 kB and 8 threads; toy_text tighter, toy_image looser, each on its own."""
    config = bundle_config.model_copy(update={
        "limits": bundle_config.limits.model_copy(update={"max_body_bytes": 100_000}),
        "onnxruntime": bundle_config.onnxruntime.model_copy(update={"intra_op_threads": 1, "allow_spinning": False})})
    config = with_model(config, "toy_text", limits={"max_batch": 4, "max_body_bytes": 2_000})
    return with_model(config, "toy_image", limits={"max_body_bytes": 4 * 2**20},
                      onnxruntime={"intra_op_threads": 2, "allow_spinning": True})


@pytest.fixture
def tuned(tuned_config, monkeypatch):
    monkeypatch.setenv(tuned_config.admin.api_key_env, ADMIN_KEY)
    with TestClient(create_app(tuned_config)) as client:
        yield client


def model(client, name: str):
    return client.app.state.services.store.get(name)


def test_a_model_overrides_only_the_keys_it_names(tuned_config):
    text, image, churn = (tuned_config.settings(name) for name in ("toy_text", "toy_image", "churn"))
    assert (text.max_batch, text.max_body_bytes) == (4, 2_000)
    assert (image.max_batch, image.max_body_bytes) == (tuned_config.limits.max_batch, 4 * 2**20)
    assert (churn.max_batch, churn.max_body_bytes) == (tuned_config.limits.max_batch, 100_000)
    threads = (image.onnxruntime.intra_op_threads, image.onnxruntime.inter_op_threads)
    assert threads == (2, tuned_config.onnxruntime.inter_op_threads)
    assert image.onnxruntime.allow_spinning and not churn.onnxruntime.allow_spinning
    assert (image.execution, text.execution, churn.execution) == ("thread", "inline", "inline")


def test_each_model_has_its_own_batch_limit(tuned, kind_records):
    answer = tuned.post("/v1/toy_text/predict", json=kind_records["toy_text"][:5])
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["msg"] == "batch too large: at most 4 records per request"
    assert tuned.post("/v1/toy_text/predict", json=kind_records["toy_text"][:4]).status_code == 200
    assert tuned.post("/v1/churn/predict", json=kind_records["churn"][:5]).status_code == 200
    served = {m["name"]: m["serving"] for m in tuned.get("/v1/models").json()["models"]}
    assert served["toy_text"]["max_batch"] == 4 and served["churn"]["max_batch"] == 256


def padded(records: list[dict], size: int) -> bytes:
    body = json.dumps(records).encode()
    return body + b" " * (size - len(body))


def test_each_model_has_its_own_body_limit(tuned, kind_records):
    json_type = {"content-type": "application/json"}
    small = padded(kind_records["toy_text"][:1], 3_000)  # over toy_text's 2 kB, under the 100 kB default
    too_big = tuned.post("/v1/toy_text/predict", content=small, headers=json_type)
    assert too_big.status_code == 413 and too_big.json()["detail"] == "request body too large: at most 2000 bytes"

    def chunks():  # no Content-Length: the model's limit holds while the body streams in
        yield small[:1_500]
        yield small[1_500:]

    assert tuned.post("/v1/toy_text/predict", content=chunks(), headers=json_type).status_code == 413
    assert tuned.post("/v1/toy_text/feedback", content=small, headers=json_type).status_code == 413  # its routes
    assert tuned.post("/v1/churn/predict", content=padded(kind_records["churn"][:1], 3_000), headers=json_type).status_code == 200

    noise = np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)  # ~160 kB of base64
    image = [{"image": base64.b64encode(encode_png(noise)).decode()}]
    assert len(json.dumps(image)) > 100_000
    assert tuned.post("/v1/toy_image/predict", json=image).status_code == 200  # its own, larger limit
    churn = tuned.post("/v1/churn/predict", content=padded(kind_records["churn"][:1], 150_000), headers=json_type)
    assert churn.status_code == 413 and "at most 100000 bytes" in churn.json()["detail"]  # the default


def test_each_model_has_its_own_session_settings(tuned):
    image, churn = model(tuned, "toy_image").session, model(tuned, "churn").session
    assert image.get_session_options().intra_op_num_threads == 2
    assert churn.get_session_options().intra_op_num_threads == 1
    spinning = "session.intra_op.allow_spinning"
    assert churn.get_session_options().get_session_config_entry(spinning) == "0"
    with pytest.raises(RuntimeError, match="does not have configuration"):  # not switched off: it spins
        image.get_session_options().get_session_config_entry(spinning)


def test_thread_execution_runs_the_graph_off_the_event_loop(client, kind_records, monkeypatch):
    """toy_image is served with `execution: thread`, churn and toy_text inline."""
    on_loop: dict[str, list[bool]] = {}
    for name in KIND_NAMES:
        session = model(client, name).session
        run = session.run

        def spy(*args, _run=run, _name=name, **kwargs):
            try:
                asyncio.get_running_loop()
                on_loop.setdefault(_name, []).append(True)
            except RuntimeError:  # no running loop: a worker thread
                on_loop.setdefault(_name, []).append(False)
            return _run(*args, **kwargs)

        monkeypatch.setattr(session, "run", spy)
    for name in KIND_NAMES:
        assert client.post(f"/v1/{name}/predict", json=kind_records[name][:2]).status_code == 200
    assert on_loop == {"churn": [True], "toy_image": [False], "toy_text": [True]}


@pytest.mark.parametrize("name", KIND_NAMES)
def test_a_body_not_in_the_models_media_type_is_415(client, bundle_config, kind_records, name):
    body = json.dumps(kind_records[name][:1]).encode()
    uploads = name == "toy_image"  # image models also take file parts (tests/serving/test_multipart.py)
    accepted = "application/json or multipart/form-data" if uploads else "application/json"
    wrong = ("text/plain", "application/x-www-form-urlencoded") + (() if uploads else ("multipart/form-data; boundary=x",))
    for sent in wrong:
        answer = client.post(f"/v1/{name}/predict", content=body, headers={"content-type": sent})
        assert answer.status_code == 415
        assert answer.json()["detail"] == f"unsupported Content-Type {sent!r}: /v1/{name}/predict takes {accepted}"
    assert read_predictions(bundle_config.prediction_log.path, name) == []
    for sent in ("application/json", "Application/JSON; charset=utf-8"):
        assert client.post(f"/v1/{name}/predict", content=body, headers={"content-type": sent}).status_code == 200
    # no Content-Type at all: a browser may send that cross-site without asking, so it is refused too
    untyped = client.post(f"/v1/{name}/predict", content=body)
    assert untyped.status_code == 415
    assert untyped.json()["detail"] == f"missing Content-Type: /v1/{name}/predict takes {accepted}"
    assert f'route="/v1/{name}/predict",status="415"}} {len(wrong) + 1}.0' in client.get("/metrics").text


def test_an_optional_model_without_a_version_keeps_the_server_ready_and_reloads_succeeding(bundle_config, monkeypatch):
    """`make churn` alone, then `make serve`: the text entry (required: false) has nothing to load yet."""
    models = [*bundle_config.model_dump()["models"], {"name": "untrained", "required": False}]
    config = bundle_config.model_copy(update={"models": type(bundle_config.models)(
        type(bundle_config.models[0]).model_validate(m) for m in models)})
    monkeypatch.setenv(config.admin.api_key_env, ADMIN_KEY)
    with TestClient(create_app(config)) as client:
        ready = client.get("/ready")
        assert ready.status_code == 200
        assert "untrained" in ready.json()["optional_unavailable"] and "untrained" not in ready.json()["models"]
        listed = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
        assert listed["untrained"]["status"] == "unavailable"
        reload = client.post("/admin/reload", headers={"X-API-Key": ADMIN_KEY})
        assert reload.status_code == 200 and reload.json()["reloaded"]["untrained"]["ok"] is False
        assert client.post("/v1/untrained/predict", json=[{}]).status_code == 503


def test_a_required_model_that_is_missing_makes_the_server_not_ready(bundle_config):
    models = [*bundle_config.model_dump()["models"], {"name": "untrained"}]
    config = bundle_config.model_copy(update={"models": type(bundle_config.models)(
        type(bundle_config.models[0]).model_validate(m) for m in models)})
    with TestClient(create_app(config)) as client:
        ready = client.get("/ready")
        assert ready.status_code == 503 and "untrained" in ready.json()["reasons"]
