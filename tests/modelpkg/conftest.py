"""Packages of each kind on local disk (no MLflow): the toy graphs of tests/factories.py with their contracts."""

from __future__ import annotations

import pytest

from modelpkg.contract import InputSpec, ModelContract
from modelpkg.package import save_package
from tests import factories


def contract(**fields) -> ModelContract:
    return ModelContract(**({"name": "toy", "model_type": "test", "run_id": "run", "data_sha256": "sha",
                             "created_at": "2026-01-01T00:00:00+00:00"} | fields))


def image_contract(**overrides) -> ModelContract:
    return contract(**({"kind": "image_classifier", "probability_output": "probabilities",
                        "inputs": [InputSpec(name="image", dtype="float32", shape=[None, 3, 16, 16])],
                        "labels": list(factories.COLOURS), "preprocessing": factories.image_preprocessing()}
                       | overrides))


def text_contract(**overrides) -> ModelContract:
    return contract(**({"kind": "text_classifier", "probability_output": "probabilities",
                        "inputs": [InputSpec(name="input_ids", dtype="int64", shape=[None, None]),
                                   InputSpec(name="attention_mask", dtype="int64", shape=[None, None])],
                        "labels": ["negative", "positive"], "assets": ["tokenizer.json"],
                        "preprocessing": {"max_length": 16, "logged_chars": 20}} | overrides))


@pytest.fixture(scope="session")
def image_package(tmp_path_factory):
    graph, _, _ = factories.toy_image_graph()
    return save_package(tmp_path_factory.mktemp("image") / "package", graph, image_contract())


@pytest.fixture(scope="session")
def text_package(tmp_path_factory):
    folder = tmp_path_factory.mktemp("text")
    tokenizer = factories.save_toy_tokenizer(folder / "source-tokenizer.json")
    graph = factories.toy_text_graph(factories.toy_text_embeddings())
    return save_package(folder / "package", graph, text_contract(), {"tokenizer.json": tokenizer})
