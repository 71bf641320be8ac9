"""The server as a real process: uvicorn on a free loopback port, inference-only imports, clean shutdown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import httpx

from serving.predlog import read_predictions
from tests.live_server import START_TIMEOUT_SECONDS, free_port, wait_ready
from tests.serving.conftest import ADMIN_KEY, REPO

FORBIDDEN = ("torch", "transformers", "xgboost", "sklearn")

# Start the app (lifespan included) in a fresh interpreter and report which heavy modules got imported.
IMPORT_PROBE = """
import json, sys
from fastapi.testclient import TestClient
from serving.app import create_app
from serving.config import load_serving_config
with TestClient(create_app(load_serving_config())) as client:
    ready = client.get("/ready").status_code
    predicted = client.post("/v1/churn/predict", json=[client.get("/openapi.json").json()["paths"]
        ["/v1/churn/predict"]["post"]["requestBody"]["content"]["application/json"]["example"][0]]).status_code
print(json.dumps({"ready": ready, "predicted": predicted, "modules": sorted(
    name for name in sys.modules if name.split(".")[0] in sys.argv[1:] or name.startswith("pipelines.churn"))}))
"""


def server_env(tmp_path, **extra) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PREDICTION_LOG": str(tmp_path / "predictions.db"),
           "SERVING_MODEL_CACHE": str(tmp_path / "cache"), "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    return env | extra


def probe_imports(env: dict[str, str], *roots: str) -> dict:
    result = subprocess.run([sys.executable, "-c", IMPORT_PROBE, *roots], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=START_TIMEOUT_SECONDS)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_bundle_mode_imports_inference_dependencies_only(tmp_path, bundle_root):
    found = probe_imports(server_env(tmp_path, SERVING_BUNDLES=str(bundle_root)), *FORBIDDEN, "mlflow")
    assert found == {"ready": 200, "predicted": 200, "modules": []}


def test_registry_mode_imports_no_training_frameworks(tmp_path, registry_uri):
    env = server_env(tmp_path, MLFLOW_TRACKING_URI=registry_uri)
    env.pop("SERVING_BUNDLES", None)
    found = probe_imports(env, *FORBIDDEN)
    assert found == {"ready": 200, "predicted": 200, "modules": []}


def test_uvicorn_process_serves_and_shuts_down_gracefully(tmp_path, bundle_root, example_records):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = server_env(tmp_path, SERVING_BUNDLES=str(bundle_root), SERVING_ADMIN_KEY=ADMIN_KEY)
    process = subprocess.Popen([sys.executable, "-m", "serving", "--port", str(port)], cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_ready(url, process)
        with httpx.Client(base_url=url) as http:
            answers = [http.post("/v1/churn/predict", json=example_records[i:i + 4]) for i in range(0, 40, 4)]
            assert [a.status_code for a in answers] == [200] * 10
            assert http.post("/admin/reload", headers={"X-API-Key": ADMIN_KEY}).status_code == 200
            assert 'route="/v1/churn/predict",status="200"} 10.0' in http.get("/metrics").text
        process.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal: the exit status says "terminated"
        assert process.wait(timeout=START_TIMEOUT_SECONDS) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in process.stderr.read().decode()
    finally:
        if process.poll() is None:
            process.kill()
    logged = read_predictions(tmp_path / "predictions.db", "churn")
    assert sorted(row["id"] for row in logged) == sorted(p["id"] for a in answers for p in a.json()["predictions"])
