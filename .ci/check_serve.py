"""Run with a venv holding only `.[serve]`: the server starts from bundles and answers every kind.

    python check_serve.py SERVING_YAML PORT

Fails (exit 1) when a model does not load or answer, or when the server imported anything a deployment
must not need (training or monitoring code, MLflow, scikit-learn, xgboost, torch, transformers, pandas).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request

FORBIDDEN = ("mlflow", "sklearn", "xgboost", "torch", "transformers", "pandas", "pipelines.churn", "monitoring")
PROBE = """
import sys
from serving.app import create_app
from serving.config import load_serving_config
create_app(load_serving_config(sys.argv[1]))
print(",".join(m for m in {forbidden!r} if m in sys.modules or any(k.startswith(m + ".") for k in sys.modules)))
"""


def get(url: str, body: bytes | None = None) -> dict:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def main(config: str, port: int) -> int:
    loaded = subprocess.run([sys.executable, "-c", PROBE.format(forbidden=FORBIDDEN), config],
                            capture_output=True, text=True, check=True).stdout.strip()
    if loaded:
        print(f"FAIL: the serving process imported {loaded}")
        return 1
    server = subprocess.Popen([sys.executable, "-m", "serving", "--config", config, "--port", str(port)])
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                ready = get(f"{base}/ready")
                break
            except OSError:
                time.sleep(0.2)
        else:
            print("FAIL: the server never became ready")
            return 1
        for model in get(f"{base}/v1/models")["models"]:
            example = get(f"{base}/openapi.json")["paths"][f"/v1/{model['name']}/predict"]["post"]["requestBody"]
            media = next(iter(example["content"].values()))
            answer = get(f"{base}/v1/{model['name']}/predict", json.dumps(media["example"]).encode())
            print(f"ok: {model['name']} ({model['kind']}) v{answer['version']} -> {answer['predictions'][0]['label']}")
        print(f"serve extra alone: {len(ready['models'])} models ready and answering; nothing of {FORBIDDEN} imported")
        return 0
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2])))
