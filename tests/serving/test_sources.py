"""Models from the MLflow registry (alias -> version -> cached bundle) and from exported bundles."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from serving.app import create_app
from serving.bundle import export_bundle
from serving.sources import BUNDLE_META, RegistrySource
from tests.serving.conftest import make_config


def test_registry_mode_serves_the_champion(tmp_path, registry_uri, example_records):
    config = make_config(tmp_path, source={"kind": "registry", "tracking_uri": registry_uri})
    with TestClient(create_app(config)) as client:
        assert client.get("/ready").json() == {"status": "ready", "models": {"churn": "1"}}
        (model,) = client.get("/v1/models").json()["models"]
        assert (model["version"], model["alias"], model["source"]) == ("1", "champion", "models:/churn/1")
        assert client.post("/v1/churn/predict", json=example_records[:2]).json()["version"] == "1"


def test_registry_download_is_cached_per_version(tmp_path, registry_uri, monkeypatch):
    source = RegistrySource(registry_uri, tmp_path / "cache")
    first = source.resolve("churn", "champion")
    assert sorted(p.name for p in first.directory.iterdir()) == sorted(["model.onnx", "contract.json", BUNDLE_META])
    monkeypatch.setattr(source, "_download", lambda *args: (_ for _ in ()).throw(AssertionError("downloaded twice")))
    assert source.resolve("churn", "champion").directory == first.directory


def test_unknown_alias_makes_ready_503_with_the_reason(tmp_path, registry_uri):
    config = make_config(tmp_path, source={"kind": "registry", "tracking_uri": registry_uri})
    config = config.model_copy(update={"models": [config.models[0].model_copy(update={"alias": "no-such-alias"})]})
    with TestClient(create_app(config)) as client:
        ready = client.get("/ready")
        assert ready.status_code == 503 and "no-such-alias" in ready.json()["reasons"]["churn"]
        assert client.get("/health").status_code == 200
        assert client.post("/v1/churn/predict", json=[{}]).status_code == 503


def test_bundle_export_then_serve_without_registry(tmp_path, registry_uri, example_records):
    config = make_config(tmp_path, source={"kind": "registry", "tracking_uri": registry_uri})
    bundle = export_bundle(config, "churn", "champion", tmp_path / "dist" / "churn")
    meta = json.loads((bundle.directory / BUNDLE_META).read_text())
    assert meta == {"name": "churn", "version": "1", "alias": "champion", "source": "models:/churn/1"}
    served = make_config(tmp_path, source={"kind": "bundles", "bundle_root": str(tmp_path / "dist")})
    with TestClient(create_app(served)) as client:
        assert client.get("/ready").json()["models"] == {"churn": "1"}
        assert client.post("/v1/churn/predict", json=example_records[:1]).status_code == 200


def test_a_broken_model_never_stops_the_others(tmp_path, bundle_root, example_records):
    config = make_config(tmp_path, source={"kind": "bundles", "bundle_root": str(bundle_root)})
    config = config.model_copy(update={"models": [*config.models, config.models[0].model_copy(update={"name": "broken"})]})
    with TestClient(create_app(config)) as client:
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert list(ready.json()["reasons"]) == ["broken"] and "missing model.onnx" in ready.json()["reasons"]["broken"]
        assert client.post("/v1/churn/predict", json=example_records[:1]).status_code == 200
        broken = client.post("/v1/broken/predict", json=example_records[:1])
        assert broken.status_code == 503 and "not loaded" in broken.json()["detail"]
        statuses = {m["name"]: m["status"] for m in client.get("/v1/models").json()["models"]}
        assert statuses == {"churn": "loaded", "broken": "unavailable"}
