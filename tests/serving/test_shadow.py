"""Shadow challenger: scored beside the champion on every request, logged under the same prediction id,
never part of the client's answer, and never able to fail a request (missing or broken).

The challenger is the tests' churn bundle with another threshold and version "2" (same graph, other
labels): its rows are told apart from the champion's, and an answer that leaked it would show."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.config import with_overrides
from serving.predlog import read_predictions, read_shadow
from tests.serving.conftest import ADMIN_KEY, FEEDBACK, FEEDBACK_KEY, make_config, with_model

CHALLENGER_THRESHOLD = 0.05  # far from the champion's: most answers' labels differ
SHADOW = {"enabled": True, "alias": "challenger"}


def challenger_bundle(champion: Path, out: Path, version: str = "2") -> Path:
    """The champion's bundle as another version at another threshold."""
    shutil.copytree(champion, out)
    contract_file = next(out.rglob("contract.json"))
    contract = json.loads(contract_file.read_text())
    contract["threshold"] = CHALLENGER_THRESHOLD
    contract_file.write_text(json.dumps(contract))
    (out / "bundle.json").write_text(json.dumps({"version": version, "alias": "challenger"}))
    return out


@pytest.fixture
def shadow_root(tmp_path, bundle_root) -> Path:
    root = tmp_path / "bundles"
    root.mkdir()
    (root / "churn").symlink_to(bundle_root / "churn")
    challenger_bundle(bundle_root / "churn", root / "churn@challenger")
    return root


def serve(tmp_path: Path, root: Path, monkeypatch, **shadow) -> TestClient:
    config = make_config(tmp_path, source={"kind": "bundles", "bundle_root": str(root)})
    churn_alone = with_overrides(config, models=[m for m in config.model_dump()["models"] if m["name"] == "churn"])
    config = with_model(churn_alone, "churn", shadow=SHADOW | shadow)
    monkeypatch.setenv(config.admin.api_key_env, ADMIN_KEY)
    monkeypatch.setenv(config.feedback.api_key_env, FEEDBACK_KEY)
    return TestClient(create_app(config))


def wait_for_shadow_rows(db: Path, rows: int, timeout: float = 10.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = read_shadow(db, "churn")
        if len(found) >= rows:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{len(read_shadow(db, 'churn'))} shadow rows after {timeout} s, expected {rows}")


def test_shadow_rows_share_the_id_are_flagged_and_the_answer_is_the_champions(tmp_path, shadow_root, example_records,
                                                                               monkeypatch):
    records = example_records[:20]
    with serve(tmp_path / "plain", shadow_root, monkeypatch, enabled=False) as plain:
        champion_only = plain.post("/v1/churn/predict", json=records).json()
    with serve(tmp_path, shadow_root, monkeypatch) as client:
        described = client.get("/v1/models").json()["models"][0]
        assert described["shadow"] == {"enabled": True, "alias": "challenger", "status": "loaded", "version": "2",
                                       "source": "bundle churn@challenger/"}
        answer = client.post("/v1/churn/predict", json=records).json()
        db = tmp_path / "predictions.db"
        shadow = wait_for_shadow_rows(db, len(records))
        ids = [p["id"] for p in answer["predictions"]]
        assert client.post("/v1/churn/feedback", json={"items": [{"id": ids[0], "label": "Yes"}]},
                           headers=FEEDBACK).status_code == 200
    strip = lambda body: [{k: v for k, v in p.items() if k != "id"} for p in body["predictions"]]  # noqa: E731
    assert strip(answer) == strip(champion_only)  # the client sees the champion alone
    assert answer["version"] == "unknown"
    assert [row["id"] for row in shadow] == ids  # same ids, one shadow row each
    assert {row["shadow_version"] for row in shadow} == {"2"}
    champion = {row["id"]: row for row in read_predictions(db, "churn")}
    assert len(champion) == len(records)  # shadow rows are not champion predictions: monitoring reads as before
    for row in shadow:
        assert row["outputs"] == champion[row["id"]]["outputs"]
        assert row["shadow_outputs"]["probability"] == pytest.approx(row["outputs"]["probability"])
        assert row["shadow_outputs"]["label"] == ("Yes" if row["outputs"]["probability"] >= CHALLENGER_THRESHOLD else "No")
    assert any(row["shadow_outputs"]["label"] != row["outputs"]["label"] for row in shadow)
    assert [row["id"] for row in read_shadow(db, "churn", labelled=True)] == [ids[0]]


def test_a_missing_challenger_changes_nothing_and_says_so(tmp_path, bundle_root, example_records, monkeypatch):
    root = tmp_path / "bundles"
    root.mkdir()
    (root / "churn").symlink_to(bundle_root / "churn")
    with serve(tmp_path, root, monkeypatch) as client:
        assert client.get("/ready").status_code == 200
        shadow = client.get("/v1/models").json()["models"][0]["shadow"]
        assert shadow["status"] == "unavailable" and "churn@challenger" in shadow["error"]
        assert client.post("/v1/churn/predict", json=example_records[:3]).status_code == 200
    assert read_shadow(tmp_path / "predictions.db", "churn") == []


def test_a_broken_challenger_never_fails_a_request(tmp_path, shadow_root, example_records, monkeypatch):
    with serve(tmp_path, shadow_root, monkeypatch) as client:
        store = client.app.state.services.store
        shadow = store.shadow("churn")
        broken = type("Broken", (), {"scores": lambda self, records: 1 / 0})()
        object.__setattr__(shadow, "predictor", broken)  # the loaded challenger now fails when it scores
        for _ in range(3):
            assert client.post("/v1/churn/predict", json=example_records[:2]).status_code == 200
        scorer = client.app.state.services.shadow
        deadline = time.monotonic() + 5
        while scorer.stats.failed < 6 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert scorer.stats.failed == 6 and "ZeroDivisionError" in scorer.stats.last_error
        assert client.get("/ready").status_code == 200
    assert read_shadow(tmp_path / "predictions.db", "churn") == []
    assert len(read_predictions(tmp_path / "predictions.db", "churn")) == 6


def test_reload_reloads_the_shadow(tmp_path, shadow_root, example_records, monkeypatch):
    with serve(tmp_path, shadow_root, monkeypatch) as client:
        shutil.rmtree(shadow_root / "churn@challenger")
        challenger_bundle(shadow_root / "churn", shadow_root / "churn@challenger", version="3")
        reloaded = client.post("/admin/reload", headers={"X-API-Key": ADMIN_KEY}).json()["reloaded"]["churn"]
        assert reloaded["shadow"]["version"] == "3"
        client.post("/v1/churn/predict", json=example_records[:2])
        rows = wait_for_shadow_rows(tmp_path / "predictions.db", 2)
    assert {row["shadow_version"] for row in rows} == {"3"}
