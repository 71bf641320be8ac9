"""Fixtures for the serving tests: one model of each kind, registered and bundled once per session.

tests/factories.py builds the models through their projects' own export and release path: `churn` (a
small logistic regression on real Telco rows, binary at a threshold, records keyed by customerID),
`toy_image` (3 classes from 16x16 PNGs, served with `execution: thread`) and `toy_text` (binary
sentiment, with its tokenizer.json as a package asset). They are registered in one throwaway SQLite
MLflow store as version 1, alias `champion`, and written out as bundles. No mocks: the server loads them
the way it loads the real thing.
"""

from __future__ import annotations

import os
import shutil
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from modelpkg.codecs import Codec, codec_for
from modelpkg.package import package_files
from serving.config import ServingConfig, load_serving_config, with_overrides
from tests import factories

REPO = Path(__file__).resolve().parents[2]
KIND_NAMES = list(factories.KINDS)  # churn, toy_image, toy_text
RECORDS = 80
ADMIN_KEY = "test-admin-key-" + "a" * 32  # keys shorter than admin.min_key_chars (32) stop start-up
FEEDBACK_KEY = "test-feedback-key-" + "f" * 32
FEEDBACK = {"X-API-Key": FEEDBACK_KEY}  # the header every feedback post of these tests sends
# What the tests serve: churn as configs/serving.yaml ships it, plus the toy image model in a worker
# thread (how a CNN is served) and the toy text model inline.
TEST_MODELS = [{"name": factories.TOY_IMAGE, "execution": "thread"}, {"name": factories.TOY_TEXT}]


@contextmanager
def using_store(uri: str) -> Iterator[str]:
    """MLflow (environment, tracking and registry URIs) pointed at `uri` for the duration, then forgotten."""
    import mlflow

    saved = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield uri
    finally:
        forget_mlflow()
        if saved is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved


def forget_mlflow() -> None:
    """Reset MLflow's process-wide store settings (as tests/conftest.py's tmp_mlflow does)."""
    mlflow = sys.modules.get("mlflow")
    if mlflow is None:
        return
    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)
    mlflow.tracking.fluent._active_experiment_id = None


@pytest.fixture(autouse=True)
def _forget_mlflow_after_each_test():
    """The registry source points MLflow at its store for the whole process: undo it after each test."""
    yield
    forget_mlflow()


@dataclass(frozen=True)
class ServedModels:
    registry_uri: str
    bundle_root: Path  # <root>/<name>/ for each kind, as factories.bundle writes it (no bundle.json)


@pytest.fixture(scope="session")
def served_models(tmp_path_factory, _mlflow_template_db) -> ServedModels:
    """Every kind exported by its factory into one store (version 1 = champion), and bundled."""
    store = tmp_path_factory.mktemp("mlflow")
    shutil.copy(_mlflow_template_db, store / "mlflow.db")
    root = tmp_path_factory.mktemp("bundles")
    with using_store(f"sqlite:///{store}/mlflow.db") as uri:
        for name, kind in factories.KINDS.items():
            released = kind.export()
            assert (released.version, released.alias) == ("1", "champion"), released.why
            factories.bundle(name, released.version, root / name)
    return ServedModels(uri, root)


@pytest.fixture(scope="session")
def registry_uri(served_models) -> str:
    return served_models.registry_uri


@pytest.fixture(scope="session")
def bundle_root(served_models) -> Path:
    return served_models.bundle_root


@pytest.fixture(scope="session")
def codecs(bundle_root) -> dict[str, Codec]:
    """Each served model's codec, as the server builds it: what a record is, what the log keeps."""
    codecs = {}
    for name in KIND_NAMES:
        files = package_files(bundle_root / name)
        codecs[name] = codec_for(files.contract, files.files_dir)
    return codecs


def stored_rows(name: str, n: int, seed: int = 7) -> list[dict]:
    """n stored rows of a kind, never seen in training (churn: with customerID; image: PNG bytes)."""
    if name == "churn":
        return factories.telco_customers().iloc[2000:2000 + n].to_dict("records")
    return factories.KINDS[name].holdout(n, seed).to_dict("records")


@pytest.fixture(scope="session")
def kind_records(codecs) -> dict[str, list[dict]]:
    """RECORDS request records per kind, as a client sends them (the codec turns stored rows into requests)."""
    return {name: codec.requests(stored_rows(name, RECORDS)) for name, codec in codecs.items()}


@pytest.fixture(scope="session")
def example_records(kind_records) -> list[dict]:
    """Churn request records: the 19 features plus customerID."""
    return kind_records["churn"]


def make_config(tmp_path: Path, **sections) -> ServingConfig:
    """configs/serving.yaml (environment ignored) serving every kind, with the log in tmp_path and any
    section overridden (`models=[...]` replaces the list)."""
    config = load_serving_config(REPO / "configs" / "serving.yaml", environ={})
    defaults: dict = {
        "prediction_log": {"path": str(tmp_path / "predictions.db")},
        "source": {"cache_dir": str(tmp_path / "cache")},
        "admin": {"key_file": str(tmp_path / "keys" / "admin.key")},  # never a key file in the checkout
        "feedback": {"key_file": str(tmp_path / "keys" / "feedback.key")},
        "models": [*(m for m in config.model_dump()["models"] if m["name"] == "churn"), *TEST_MODELS],
    }
    for section, values in sections.items():
        defaults[section] = defaults.get(section, {}) | values if isinstance(values, dict) else values
    return with_overrides(config, **defaults)


def with_model(config: ServingConfig, name: str, **changes) -> ServingConfig:
    """The config with one model's entry changed (`limits={...}`, `alias=...`, ...)."""
    models = [model | changes if model["name"] == name else model for model in config.model_dump()["models"]]
    return with_overrides(config, models=models)


def write_config(config: ServingConfig, path: Path) -> Path:
    """A config as the YAML file a server process reads."""
    path.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    return path


@pytest.fixture
def bundle_config(tmp_path, bundle_root) -> ServingConfig:
    return make_config(tmp_path, source={"kind": "bundles", "bundle_root": str(bundle_root)})


@pytest.fixture
def client(bundle_config, monkeypatch):
    """A TestClient over a bundle-mode app, started (models loaded, log open) and stopped around the test."""
    from fastapi.testclient import TestClient

    from serving.app import create_app

    monkeypatch.setenv(bundle_config.admin.api_key_env, ADMIN_KEY)
    monkeypatch.setenv(bundle_config.feedback.api_key_env, FEEDBACK_KEY)
    with TestClient(create_app(bundle_config)) as test_client:
        yield test_client
