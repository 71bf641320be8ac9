"""Overload against a real uvicorn process: 256 clients at once get answers, 200 or 503 with Retry-After,
never a dropped connection, a timeout or a 500 (configs/serving.yaml's own limits). The latency of the
200s under overload is measured by `make bench-serve` (its overload rows), not asserted here: on a
shared 2-CPU machine any bound tight enough to mean something would be flaky."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import Counter

from serving.predlog import read_predictions
from tests.live_server import START_TIMEOUT_SECONDS, free_port, hammer, wait_ready
from tests.serving.conftest import REPO, make_config, write_config
from tests.serving.test_process import server_env

CLIENTS = 256
SECONDS = 2.0


def test_256_clients_get_only_200s_and_503s_with_retry_after(tmp_path, bundle_root, example_records):
    config = make_config(tmp_path, source={"kind": "bundles", "bundle_root": str(bundle_root)})
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "serving", "--config", str(write_config(config, tmp_path / "s.yaml")),
                                "--port", str(port)], cwd=REPO, env=server_env(tmp_path, SERVING_BUNDLES=str(bundle_root)),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_ready(f"http://127.0.0.1:{port}", process)
        answers = hammer(port, "/v1/churn/predict", json.dumps(example_records[:1]).encode(),
                         clients=CLIENTS, seconds=SECONDS)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=START_TIMEOUT_SECONDS)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    statuses = Counter(answer.status for answer in answers)
    assert set(statuses) == {200, 503}, (statuses, [a.error for a in answers if a.error][:3])
    assert all(answer.retry_after == str(config.server.retry_after_seconds) for answer in answers if answer.status == 503)
    assert len(read_predictions(tmp_path / "predictions.db", "churn")) == statuses[200]  # every 200 logged
