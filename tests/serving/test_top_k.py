"""`top_k`: multi-class answers list the k most likely classes (a per-model setting, default 3); binary
answers (churn, text) keep their shape."""

from __future__ import annotations

import numpy as np
from fastapi.testclient import TestClient

from modelpkg.runtime import answers, most_likely
from serving.app import create_app
from tests.serving.conftest import with_model


def test_most_likely_ranks_classes_and_ties_keep_the_label_order():
    assert most_likely({"red": 0.2, "green": 0.5, "blue": 0.3}, 2) == [
        {"label": "green", "probability": 0.5}, {"label": "blue", "probability": 0.3}]
    assert [r["label"] for r in most_likely({"a": 0.4, "b": 0.4, "c": 0.2}, 3)] == ["a", "b", "c"]
    assert len(most_likely({"a": 0.6, "b": 0.4}, 5)) == 2  # k above the class count: every class


def test_the_first_ranked_class_is_the_answer_even_on_ties(codecs):
    contract = codecs["toy_image"].contract
    probabilities = np.array([[0.2, 0.4, 0.4], [1 / 3, 1 / 3, 1 / 3]], dtype=np.float32)
    for answer in answers(probabilities, contract, top_k=2):
        assert answer["top_k"][0]["label"] == answer["label"]


def test_binary_answers_never_rank(codecs):
    (answer,) = answers(np.array([[0.3, 0.7]], dtype=np.float32), codecs["toy_text"].contract, top_k=3)
    assert set(answer) == {"label", "probability"}


def test_top_k_is_a_per_model_setting_and_churn_keeps_its_shape(bundle_config, kind_records):
    config = with_model(bundle_config, "toy_image", top_k=2)
    with TestClient(create_app(config)) as client:
        (image,) = client.post("/v1/toy_image/predict", json=kind_records["toy_image"][:1]).json()["predictions"]
        (churn,) = client.post("/v1/churn/predict", json=kind_records["churn"][:1]).json()["predictions"]
        (text,) = client.post("/v1/toy_text/predict", json=kind_records["toy_text"][:1]).json()["predictions"]
        served = {m["name"]: m["serving"]["top_k"] for m in client.get("/v1/models").json()["models"]}
    assert [r["label"] for r in image["top_k"]] == sorted(image["probabilities"], key=image["probabilities"].get,
                                                          reverse=True)[:2]
    assert set(churn) == {"id", "label", "probability"} and set(text) == {"id", "label", "probability"}
    assert served["toy_image"] == 2
    with TestClient(create_app(with_model(bundle_config, "toy_image", top_k=0))) as client:
        (image,) = client.post("/v1/toy_image/predict", json=kind_records["toy_image"][:1]).json()["predictions"]
    assert set(image) == {"id", "label", "probability", "probabilities"}  # 0: no ranking
