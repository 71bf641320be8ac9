"""Reload under load: hundreds of requests while the champion moves to a new version.

Zero failures, both versions seen in the answers, and every acknowledged prediction in the log.
"""

from __future__ import annotations

import asyncio

import httpx
import mlflow

from serving.app import create_app
from serving.predlog import read_predictions
from tests.serving.conftest import ADMIN_KEY, make_config, register_bundle

CONNECTIONS = 8
MIN_REQUESTS = 300
ALIAS = "reload-test"


async def traffic_during_reload(app, records: list[dict], new_version: str) -> tuple[list[httpx.Response], httpx.Response]:
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
                    answers.append(await http.post("/v1/churn/predict", json=[records[(offset + sent) % len(records)]]))
                return answers

            clients = [asyncio.create_task(client(i)) for i in range(CONNECTIONS)]
            while sent < MIN_REQUESTS // 3:  # traffic on version 1 first
                await asyncio.sleep(0.01)
            mlflow.MlflowClient().set_registered_model_alias("churn", ALIAS, new_version)
            reload = await http.post("/admin/reload", headers={"X-API-Key": ADMIN_KEY})
            reloaded.set()
            answers = [answer for batch in await asyncio.gather(*clients) for answer in batch]
    return answers, reload


def test_reload_under_load_loses_nothing(tmp_path, monkeypatch, registry_uri, bundle_root, example_records):
    # An alias of this test's own, so moving it leaves `champion` (what other tests serve) alone.
    client = mlflow.MlflowClient()
    old = str(client.get_model_version_by_alias("churn", "champion").version)
    new = register_bundle(bundle_root / "churn", alias=None)
    client.set_registered_model_alias("churn", ALIAS, old)
    config = make_config(tmp_path, source={"kind": "registry", "tracking_uri": registry_uri})
    config = config.model_copy(update={"models": [config.models[0].model_copy(update={"alias": ALIAS})]})
    monkeypatch.setenv(config.admin.api_key_env, ADMIN_KEY)

    answers, reload = asyncio.run(traffic_during_reload(create_app(config), example_records, new))

    assert reload.status_code == 200 and reload.json()["reloaded"]["churn"] == {"ok": True, "previous": old, "version": new}
    assert len(answers) >= MIN_REQUESTS
    assert [a.status_code for a in answers if a.status_code != 200] == []
    assert {a.json()["version"] for a in answers} == {old, new}
    logged = {row["id"]: row["version"] for row in read_predictions(config.prediction_log.path, "churn")}
    answered = {a.json()["predictions"][0]["id"]: a.json()["version"] for a in answers}
    assert logged == answered  # every answer logged, with the version that answered it
