"""Image models take multipart/form-data uploads (file parts named `image`) beside the JSON body: the same
answers, the same validation (errors name the part), the model's limits, and `top_k` in every answer."""

from __future__ import annotations

import base64

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.predlog import read_predictions
from tests.serving.conftest import stored_rows, with_model

IMAGE = "/v1/toy_image/predict"


@pytest.fixture(scope="module")
def pngs() -> list[bytes]:
    """Real PNG files of the toy image model, never seen in training, of more than one colour."""
    rows = stored_rows("toy_image", 12)
    assert len({row["label"] for row in rows}) > 1
    return [row["image"] for row in rows]


def files(*images: bytes, field: str = "image") -> list[tuple]:
    return [(field, (f"picture-{i}.png", data, "image/png")) for i, data in enumerate(images)]


def as_json(*images: bytes) -> list[dict]:
    return [{"image": base64.b64encode(data).decode()} for data in images]


def without_ids(predictions: list[dict]) -> list[dict]:
    return [{key: value for key, value in p.items() if key != "id"} for p in predictions]


def errors_of(response) -> list[dict]:
    assert response.status_code == 422, response.text
    return response.json()["detail"]


def test_one_png_is_answered_like_its_json_record(client, pngs):
    upload = client.post(IMAGE, files=files(pngs[0]))
    assert upload.status_code == 200, upload.text
    json_body = client.post(IMAGE, json=as_json(pngs[0]))
    assert without_ids(upload.json()["predictions"]) == without_ids(json_body.json()["predictions"])


def test_several_pngs_are_answered_in_order_and_logged(client, bundle_config, pngs):
    upload = client.post(IMAGE, files=files(*pngs[:5]))
    assert upload.status_code == 200, upload.text
    predictions = upload.json()["predictions"]
    assert without_ids(predictions) == without_ids(client.post(IMAGE, json=as_json(*pngs[:5])).json()["predictions"])
    assert len({p["label"] for p in predictions}) > 1  # distinct images, distinct answers: order matters
    logged = {row["id"]: row["inputs"] for row in read_predictions(bundle_config.prediction_log.path, "toy_image")}
    assert [logged[p["id"]]["bytes"] for p in predictions] == [len(data) for data in pngs[:5]]


def test_answers_carry_the_top_k_classes(client, pngs):
    (prediction,) = client.post(IMAGE, files=files(pngs[0])).json()["predictions"]
    ranked = prediction["top_k"]
    assert len(ranked) == 3  # the default; toy_image has exactly three classes
    assert ranked[0] == {"label": prediction["label"], "probability": prediction["probability"]}
    assert [r["probability"] for r in ranked] == sorted(prediction["probabilities"].values(), reverse=True)
    assert all(prediction["probabilities"][r["label"]] == r["probability"] for r in ranked)


def test_a_bad_file_among_good_ones_is_named_by_its_part_and_nothing_runs(client, bundle_config, pngs):
    not_an_image = b"GIF89a but not really" * 10
    (error,) = errors_of(client.post(IMAGE, files=files(pngs[0], not_an_image, pngs[1])))
    assert error["loc"] == ["body", 1, "image"] and error["type"] == "invalid_image"
    (error,) = errors_of(client.post(IMAGE, files=files(pngs[0], b"")))  # an empty file
    assert error["loc"] == ["body", 1, "image"]
    assert read_predictions(bundle_config.prediction_log.path, "toy_image") == []


def test_a_part_under_another_field_name_or_not_a_file_is_named(client, pngs):
    errors = errors_of(client.post(IMAGE, files=files(pngs[0]) + files(pngs[1], field="photo")))
    assert [(e["loc"], e["type"]) for e in errors] == [(["body", 1, "photo"], "unknown_part")]
    assert "'photo'" in errors[0]["msg"] and "'image'" in errors[0]["msg"]
    (error,) = errors_of(client.post(IMAGE, files=files(pngs[0]), data={"image": "cat.png"}))
    assert error["type"] == "not_a_file" and error["loc"][-1] == "image"


def test_a_multipart_body_without_a_file_is_422(client):
    multipart = {"content-type": "multipart/form-data; boundary=xyz"}
    empty = client.post(IMAGE, content=b"--xyz--\r\n", headers=multipart)
    assert errors_of(empty)[0]["msg"] == "no image: send one or more files in form field 'image'"
    text_only = b'--xyz\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello\r\n--xyz--\r\n'
    (error,) = errors_of(client.post(IMAGE, content=text_only, headers=multipart))
    assert error["loc"] == ["body", 0, "note"] and error["type"] == "unknown_part"
    no_boundary = client.post(IMAGE, content=b"x", headers={"content-type": "multipart/form-data"})
    assert errors_of(no_boundary)[0]["type"] == "multipart_boundary"
    garbled = client.post(IMAGE, content=b"--xyz\r\nnot a header line\r\n\r\n", headers=multipart)
    assert errors_of(garbled)[0]["type"] == "multipart_invalid"


def test_a_content_type_the_model_does_not_take_is_415_naming_what_it_takes(client, pngs, kind_records):
    answer = client.post(IMAGE, content=pngs[0], headers={"content-type": "image/png"})
    assert answer.status_code == 415
    assert answer.json()["detail"] == ("unsupported Content-Type 'image/png': /v1/toy_image/predict takes "
                                       "application/json or multipart/form-data")
    churn = client.post("/v1/churn/predict", files=files(pngs[0]))  # a tabular model takes no files
    assert churn.status_code == 415 and churn.json()["detail"].endswith("takes application/json")


@pytest.fixture
def limited(bundle_config):
    """toy_image takes at most 3 images and 4000 bytes per request (the toy PNGs are ~800 bytes)."""
    config = with_model(bundle_config, "toy_image", execution="thread", limits={"max_batch": 3, "max_body_bytes": 4000})
    with TestClient(create_app(config)) as client:
        yield client


def test_too_many_files_is_422_naming_the_limit(limited, pngs):
    assert limited.post(IMAGE, files=files(*pngs[:3])).status_code == 200
    (error,) = errors_of(limited.post(IMAGE, files=files(*pngs[:4])))
    assert error["loc"] == ["body"] and error["msg"] == "too many files: at most 3 images per request"


def test_a_body_over_the_models_limit_is_413(limited, pngs):
    big = pngs[0] + bytes(5000)  # a PNG with trailing bytes: the size is what counts here
    declared = limited.post(IMAGE, files=files(big))
    assert declared.status_code == 413 and declared.json()["detail"] == "request body too large: at most 4000 bytes"
    request = limited.build_request("POST", IMAGE, files=files(big))
    body, content_type = request.read(), request.headers["content-type"]

    def chunks():  # no Content-Length: the limit holds while the upload streams in
        yield body[:2000]
        yield body[2000:]

    streamed = limited.post(IMAGE, content=chunks(), headers={"content-type": content_type})
    assert streamed.status_code == 413


def test_openapi_shows_both_bodies_for_the_image_route(client, bundle_config):
    spec = client.get("/openapi.json").json()
    content = spec["paths"][IMAGE]["post"]["requestBody"]["content"]
    assert list(content) == ["application/json", "multipart/form-data"]
    upload = content["multipart/form-data"]["schema"]
    assert upload["required"] == ["image"]
    assert upload["properties"]["image"]["maxItems"] == bundle_config.settings("toy_image").max_batch
    assert upload["properties"]["image"]["items"]["contentMediaType"] == "application/octet-stream"
    assert list(spec["paths"]["/v1/churn/predict"]["post"]["requestBody"]["content"]) == ["application/json"]
    described = {m["name"]: m["serving"] for m in client.get("/v1/models").json()["models"]}
    assert described["toy_image"]["media_types"] == ["application/json", "multipart/form-data"]
    assert described["toy_text"]["media_types"] == ["application/json"]
