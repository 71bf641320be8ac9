"""The server as a real process: uvicorn on a free loopback port, inference-only imports, clean shutdown,
and nothing acknowledged lost when the process is killed outright."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import httpx

from serving.predlog import read_predictions
from tests.live_server import START_TIMEOUT_SECONDS, free_port, wait_ready
from tests.serving.conftest import ADMIN_KEY, KIND_NAMES, REPO, make_config, write_config

FORBIDDEN = ("torch", "torchvision", "transformers", "peft", "keras", "xgboost", "sklearn")

# Start the app (lifespan included) in a fresh interpreter with the config in argv[1], predict each
# model's documented example, and report which heavy modules got imported.
IMPORT_PROBE = """
import json, sys
from fastapi.testclient import TestClient
from serving.app import create_app
from serving.config import load_serving_config
with TestClient(create_app(load_serving_config(sys.argv[1]))) as client:
    ready = client.get("/ready").status_code
    spec = client.get("/openapi.json").json()
    predicted = {name: client.post(f"/v1/{name}/predict", json=spec["paths"][f"/v1/{name}/predict"]["post"]
        ["requestBody"]["content"]["application/json"]["example"]).status_code for name in client.app.state.services.store.names}
print(json.dumps({"ready": ready, "predicted": predicted, "modules": sorted(
    name for name in sys.modules if name.split(".")[0] in sys.argv[2:] or name.startswith("pipelines.churn"))}))
"""


def server_env(tmp_path, **extra) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PREDICTION_LOG": str(tmp_path / "predictions.db"),
           "SERVING_MODEL_CACHE": str(tmp_path / "cache"), "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    env.pop("SERVING_BUNDLES", None)
    return env | extra


def probe_imports(tmp_path, env: dict[str, str], *roots: str) -> dict:
    config = write_config(make_config(tmp_path), tmp_path / "serving.yaml")  # every kind
    result = subprocess.run([sys.executable, "-c", IMPORT_PROBE, str(config), *roots], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=START_TIMEOUT_SECONDS)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_bundle_mode_imports_inference_dependencies_only(tmp_path, bundle_root):
    found = probe_imports(tmp_path, server_env(tmp_path, SERVING_BUNDLES=str(bundle_root)), *FORBIDDEN, "mlflow")
    assert found == {"ready": 200, "predicted": dict.fromkeys(KIND_NAMES, 200), "modules": []}


def test_registry_mode_imports_no_training_frameworks(tmp_path, registry_uri):
    found = probe_imports(tmp_path, server_env(tmp_path, MLFLOW_TRACKING_URI=registry_uri), *FORBIDDEN)
    assert found == {"ready": 200, "predicted": dict.fromkeys(KIND_NAMES, 200), "modules": []}


def start_server(tmp_path, bundle_root, **env) -> tuple[subprocess.Popen, str]:
    port = free_port()
    config = write_config(make_config(tmp_path), tmp_path / "serving.yaml")
    process = subprocess.Popen([sys.executable, "-m", "serving", "--config", str(config), "--port", str(port)], cwd=REPO,
                               env=server_env(tmp_path, SERVING_BUNDLES=str(bundle_root), **env),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process)
    except BaseException:
        process.kill()
        raise
    return process, url


def test_uvicorn_process_serves_and_shuts_down_gracefully(tmp_path, bundle_root, kind_records):
    process, url = start_server(tmp_path, bundle_root, SERVING_ADMIN_KEY=ADMIN_KEY)
    try:
        with httpx.Client(base_url=url) as http:
            answers = [http.post(f"/v1/{name}/predict", json=kind_records[name][i:i + 4])
                       for name in KIND_NAMES for i in range(0, 40, 4)]
            assert [a.status_code for a in answers] == [200] * len(answers)
            assert http.post("/admin/reload", headers={"X-API-Key": ADMIN_KEY}).status_code == 200
            assert 'route="/v1/churn/predict",status="200"} 10.0' in http.get("/metrics").text
        process.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal: the exit status says "terminated"
        assert process.wait(timeout=START_TIMEOUT_SECONDS) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in process.stderr.read().decode()
    finally:
        if process.poll() is None:
            process.kill()
    logged = [row["id"] for name in KIND_NAMES for row in read_predictions(tmp_path / "predictions.db", name)]
    assert sorted(logged) == sorted(p["id"] for a in answers for p in a.json()["predictions"])


def test_kill_9_loses_no_acknowledged_prediction(tmp_path, bundle_root, kind_records):
    """wait_for_commit: an answer is sent only after its rows are committed, so SIGKILL right after the
    last answer (no shutdown, no flush) still finds every answered prediction in the log."""
    process, url = start_server(tmp_path, bundle_root)
    try:
        with httpx.Client(base_url=url) as http:
            answers = [http.post(f"/v1/{name}/predict", json=kind_records[name][i:i + 2])
                       for i in range(0, 20, 2) for name in KIND_NAMES]
        assert [a.status_code for a in answers] == [200] * len(answers)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=START_TIMEOUT_SECONDS)
    assert process.returncode == -signal.SIGKILL
    for name in KIND_NAMES:
        logged = {row["id"] for row in read_predictions(tmp_path / "predictions.db", name)}
        assert logged == {p["id"] for a in answers if a.json()["model"] == name for p in a.json()["predictions"]}
