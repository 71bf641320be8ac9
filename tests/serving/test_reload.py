"""Reload under load, for every kind: hundreds of requests while the alias moves to a new version.

Zero failures, both versions seen in the answers, and every acknowledged prediction in the log.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from serving.app import create_app
from serving.config import with_overrides
from serving.predlog import read_predictions
from tests.serving.conftest import ADMIN_KEY, KIND_NAMES, make_config, using_store, with_model

CONNECTIONS = 8
MIN_REQUESTS = 300
ALIAS = "reload-test"


async def traffic_during_reload(app, name: str, records: list[dict], move_alias) -> tuple[list[httpx.Response], httpx.Response]:
    """CONNECTIONS clients post records until the reload is done (and MIN_REQUESTS are sent), then a few more."""
    reloaded = asyncio.Event()
    sent = 0

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://serving") as http:

            async def client(offset: int) -> list[httpx.Response]:
                nonlocal sent
                answers = []
                while not reloaded.is_set() or sent < MIN_REQUESTS:
                    sent += 1
                    answers.append(await http.post(f"/v1/{name}/predict", json=[records[(offset + sent) % len(records)]]))
                return answers

            clients = [asyncio.create_task(client(i)) for i in range(CONNECTIONS)]
            while sent < MIN_REQUESTS // 3:  # traffic on the old version first
                await asyncio.sleep(0.01)
            move_alias()
            reload = await http.post("/admin/reload", params={"model": name}, headers={"X-API-Key": ADMIN_KEY})
            reloaded.set()
            answers = [answer for batch in await asyncio.gather(*clients) for answer in batch]
    return answers, reload


@pytest.mark.parametrize("name", KIND_NAMES)
def test_reload_under_load_loses_nothing(tmp_path, monkeypatch, registry_uri, kind_records, name):
    # A new version of the same package, and an alias of this test's own: `champion` (what other tests
    # serve) never moves.
    registry = MlflowClient(tracking_uri=registry_uri, registry_uri=registry_uri)
    champion = registry.get_model_version_by_alias(name, "champion")
    old = str(champion.version)
    with using_store(registry_uri):  # MLflow resolves the logged model's URI in the current store
        new = str(registry.create_model_version(name, source=champion.source, run_id=champion.run_id).version)
    registry.set_registered_model_alias(name, ALIAS, old)
    config = make_config(tmp_path, source={"kind": "registry", "tracking_uri": registry_uri})
    config = with_model(config, name, alias=ALIAS)
    config = with_overrides(config, models=[m for m in config.model_dump()["models"] if m["name"] == name])
    monkeypatch.setenv(config.admin.api_key_env, ADMIN_KEY)

    answers, reload = asyncio.run(traffic_during_reload(
        create_app(config), name, kind_records[name], lambda: registry.set_registered_model_alias(name, ALIAS, new)))

    assert reload.status_code == 200 and reload.json()["reloaded"][name] == {
        "ok": True, "previous": old, "version": new, "source": f"models:/{name}/{new}", "from": "registry"}
    assert len(answers) >= MIN_REQUESTS
    assert [a.status_code for a in answers if a.status_code != 200] == []
    assert {a.json()["version"] for a in answers} == {old, new}
    logged = {row["id"]: row["version"] for row in read_predictions(config.prediction_log.path, name)}
    answered = {a.json()["predictions"][0]["id"]: a.json()["version"] for a in answers}
    assert logged == answered  # every answer logged, with the version that answered it



def edit_contract(bundle: Path, change) -> None:
    """Change a bundle's contract.json in place (`change` edits its `inputs` list), as a new export would."""
    path = bundle / "contract.json"
    contract = json.loads(path.read_text())
    change({spec["name"]: spec for spec in contract["inputs"]})
    path.write_text(json.dumps(contract))


def test_a_reload_that_changes_the_inputs_is_refused_unless_allowed(tmp_path, bundle_root, example_records, monkeypatch):
    """Clients would get 422 and monitoring could not compare older rows: a version that takes other
    inputs is not switched to silently (409 naming what differs); bounds that moved with the data are."""
    shutil.copytree(bundle_root / "churn", tmp_path / "bundles" / "churn")
    config = make_config(tmp_path, source={"kind": "bundles", "bundle_root": str(tmp_path / "bundles")})
    config = with_overrides(config, models=[m for m in config.model_dump()["models"] if m["name"] == "churn"])
    monkeypatch.setenv(config.admin.api_key_env, ADMIN_KEY)
    two_year = [{**example_records[0], "Contract": "Two year"}]
    reload = lambda query="": client.post(f"/admin/reload{query}", headers={"X-API-Key": ADMIN_KEY})  # noqa: E731
    with TestClient(create_app(config)) as client:
        edit_contract(tmp_path / "bundles" / "churn", lambda inputs: inputs["TotalCharges"].update(minimum=-1.0))
        assert reload().status_code == 200  # a bound is not the schema
        edit_contract(tmp_path / "bundles" / "churn", lambda inputs: inputs["Contract"]["allowed"].remove("Two year"))
        refused = reload()
        assert refused.status_code == 409
        assert refused.json()["reloaded"]["churn"]["schema_changes"] == ["Contract.allowed: removed ['Two year'], added []"]
        assert "allow_schema_change=true" in refused.json()["reloaded"]["churn"]["error"]
        assert client.post("/v1/churn/predict", json=two_year).status_code == 200  # the serving version stays
        assert reload("?allow_schema_change=true").status_code == 200
        assert client.post("/v1/churn/predict", json=two_year).status_code == 422  # now the new one serves
