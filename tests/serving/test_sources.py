"""Models from the MLflow registry (alias -> version -> cached bundle) and from exported bundles."""

from __future__ import annotations

import json
import re

import pytest
from fastapi.testclient import TestClient

from modelpkg.package import package_files
from serving.app import create_app
from serving.bundle import export_bundle
from serving.sources import BUNDLE_META, BundleSource, RegistrySource
from tests.serving.conftest import KIND_NAMES, make_config, with_model

kinds = pytest.mark.parametrize("name", KIND_NAMES)


def bundle_files(name: str) -> list[str]:
    """A bundle's files: the package's (the text model carries its tokenizer) and bundle.json."""
    assets = ["tokenizer.json"] if name == "toy_text" else []
    return sorted(["model.onnx", "contract.json", BUNDLE_META, *assets])


def test_registry_mode_serves_the_champions(tmp_path, registry_uri, kind_records):
    config = make_config(tmp_path, source={"kind": "registry", "tracking_uri": registry_uri})
    with TestClient(create_app(config)) as client:
        ready = client.get("/ready").json()
        assert (ready["status"], ready["models"]) == ("ready", dict.fromkeys(KIND_NAMES, "1"))
        assert ready["prediction_log"]["status"] == "ok"
        for model in client.get("/v1/models").json()["models"]:
            assert (model["version"], model["alias"], model["source"]) == ("1", "champion", f"models:/{model['name']}/1")
        for name in KIND_NAMES:
            assert client.post(f"/v1/{name}/predict", json=kind_records[name][:2]).json()["version"] == "1"


@kinds
def test_registry_download_is_flattened_and_cached_per_version(tmp_path, registry_uri, monkeypatch, name):
    source = RegistrySource(registry_uri, tmp_path / "cache")
    first = source.resolve(name, "champion")
    assert sorted(p.name for p in first.directory.iterdir()) == bundle_files(name)
    assert first.directory.name.startswith("v1-") and first.files.contract.name == name
    monkeypatch.setattr(source, "_download", lambda *args: (_ for _ in ()).throw(AssertionError("downloaded twice")))
    assert source.resolve(name, "champion").directory == first.directory


def test_unknown_alias_makes_ready_503_with_the_reason(tmp_path, registry_uri, kind_records, caplog):
    config = make_config(tmp_path, source={"kind": "registry", "tracking_uri": registry_uri})
    config = with_model(config, "churn", alias="no-such-alias")
    with TestClient(create_app(config)) as client:
        ready = client.get("/ready")
        assert ready.status_code == 503 and list(ready.json()["reasons"]) == ["churn"]
        assert "no-such-alias" in logged_detail(ready.json()["reasons"]["churn"], caplog)  # in the log, by error id
        assert client.get("/health").status_code == 200
        assert client.post("/v1/churn/predict", json=[{}]).status_code == 503
        assert client.post("/v1/toy_text/predict", json=kind_records["toy_text"][:1]).status_code == 200


@kinds
def test_bundle_export_then_serve_without_registry(tmp_path, registry_uri, kind_records, name):
    config = make_config(tmp_path, source={"kind": "registry", "tracking_uri": registry_uri})
    bundle = export_bundle(config, name, "champion", tmp_path / "dist" / name)
    assert sorted(p.name for p in bundle.directory.iterdir()) == bundle_files(name)
    meta = json.loads((bundle.directory / BUNDLE_META).read_text())
    assert meta == {"name": name, "version": "1", "alias": "champion", "source": f"models:/{name}/1"}
    served = make_config(tmp_path, source={"kind": "bundles", "bundle_root": str(tmp_path / "dist")},
                         models=[m for m in config.model_dump()["models"] if m["name"] == name])
    with TestClient(create_app(served)) as client:
        assert client.get("/ready").json()["models"] == {name: "1"}
        assert client.post(f"/v1/{name}/predict", json=kind_records[name][:1]).status_code == 200


def test_a_model_not_in_the_serving_config_can_still_be_bundled(tmp_path, registry_uri):
    config = make_config(tmp_path, source={"kind": "registry", "tracking_uri": registry_uri},
                         models=[{"name": "churn"}])
    bundle = export_bundle(config, "toy_image", "champion", tmp_path / "dist" / "toy_image")
    assert package_files(bundle.directory).contract.kind == "image_classifier"


def test_a_bundle_missing_an_asset_is_refused_by_name(tmp_path, bundle_root):
    (tmp_path / "toy_text").mkdir()
    for file in ("model.onnx", "contract.json"):
        (tmp_path / "toy_text" / file).write_bytes((bundle_root / "toy_text" / file).read_bytes())
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        BundleSource(tmp_path).resolve("toy_text", "champion")


def logged_detail(reason: str, caplog) -> str:
    """The log record that a public reason's error id points to (the reason itself carries no details)."""
    error_id = re.search(r"error id ([0-9a-f]+)", reason).group(1)
    [record] = [r for r in caplog.records if error_id in r.getMessage()]
    return record.getMessage()


def test_a_broken_model_never_stops_the_others(tmp_path, bundle_root, example_records, caplog):
    config = make_config(tmp_path, source={"kind": "bundles", "bundle_root": str(bundle_root)})
    config = config.model_copy(update={"models": [*config.models, config.models[0].model_copy(update={"name": "broken"})]})
    with TestClient(create_app(config)) as client:
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert list(ready.json()["reasons"]) == ["broken"]
        assert "missing model.onnx" in logged_detail(ready.json()["reasons"]["broken"], caplog)
        assert client.post("/v1/churn/predict", json=example_records[:1]).status_code == 200
        broken = client.post("/v1/broken/predict", json=example_records[:1])
        assert broken.status_code == 503 and "not loaded" in broken.json()["detail"]
        statuses = {m["name"]: m["status"] for m in client.get("/v1/models").json()["models"]}
        assert statuses == {**dict.fromkeys(KIND_NAMES, "loaded"), "broken": "unavailable"}
