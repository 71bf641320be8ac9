"""End to end against a real server: simulate -> monitor -> alert -> retrain -> promote -> reload.

A uvicorn process (`python -m serving`) serves a small churn champion (released by churn's own export,
tests.factories.export_churn) from a temporary MLflow registry on
a free loopback port. The simulator sends a no-drift window and a price-increase window through HTTP and
posts their labels; the monitor must stay quiet on the first and alert on the second (exit code 1). With
--retrain, a challenger is trained (a small stand-in for the pipeline), wins, is promoted, and the server
is told to reload: it then answers with the new version.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pandas as pd
import pytest
import yaml

from monitoring.__main__ import main
from monitoring.simulate import MANIFEST
from tests.live_server import START_TIMEOUT_SECONDS, free_port, wait_ready
from tests.monitoring.conftest import REPO, export_splits, temporary_store

pytestmark = pytest.mark.slow
ADMIN_KEY = "monitoring-e2e-key-" + "a" * 32  # at least admin.min_key_chars
WINDOW_ROWS = 300


def write_configs(directory, port: int) -> str:
    """A serving config on a free port with its own log and cache, and a tiny monitoring config on top."""
    serving = yaml.safe_load((REPO / "configs" / "serving.yaml").read_text())
    serving["server"] |= {"port": port}
    serving["source"] |= {"cache_dir": str(directory / "cache")}
    serving["prediction_log"] |= {"path": str(directory / "predictions.db")}
    # The server writes the feedback key there; the simulator (this process) reads it from there.
    serving["feedback"] |= {"key_file": str(directory / "keys" / "feedback.key")}
    serving["admin"] |= {"key_file": str(directory / "keys" / "admin.key")}
    (directory / "serving.yaml").write_text(yaml.safe_dump(serving))
    monitoring = yaml.safe_load((REPO / "configs" / "monitoring.yaml").read_text())
    monitoring |= {"reports_dir": str(directory / "reports"), "serving_config": str(directory / "serving.yaml")}
    monitoring["simulate"] |= {"window_rows": WINDOW_ROWS, "plan": ["no_drift", "price_increase"]}
    monitoring["quality"] |= {"min_labelled_rows": 10 * WINDOW_ROWS}  # the champion is bad on purpose: judge drift
    monitoring["retrain"] |= {"recent_rows": 2 * WINDOW_ROWS, "bootstrap_samples": 300}
    (directory / "monitoring.yaml").write_text(yaml.safe_dump(monitoring))
    return str(directory / "monitoring.yaml")


def shuffled_labels(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(Churn=frame["Churn"].sample(frac=1.0, random_state=0).to_numpy())


@pytest.fixture()
def server(tmp_path, splits, monkeypatch, _mlflow_template_db):
    """A champion that learned nothing (so a real challenger must win), served by a real uvicorn process."""
    with temporary_store(tmp_path, _mlflow_template_db) as uri:
        export_splits(splits, train=shuffled_labels(splits["train"]))
        port = free_port()
        config = write_configs(tmp_path, port)
        for key in ("PREDICTION_LOG", "SERVING_PORT", "SERVING_HOST", "SERVING_BUNDLES", "SERVING_FEEDBACK_KEY"):
            monkeypatch.delenv(key, raising=False)
        monkeypatch.setenv("SERVING_ADMIN_KEY", ADMIN_KEY)
        env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_TRACKING_URI": uri, "MLFLOW_DISABLE_TELEMETRY": "true"}
        process = subprocess.Popen([sys.executable, "-m", "serving", "--config", str(tmp_path / "serving.yaml")],
                                   cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url, process)
            yield config, url, tmp_path
        finally:
            process.terminate()
            process.wait(timeout=START_TIMEOUT_SECONDS)


def good_challenger(splits):
    def train(extra: pd.DataFrame) -> str:
        recent = extra.assign(Churn=(extra["Churn"] == "Yes").astype(int))  # as churn's validation reads Yes/No
        rows = pd.concat([splits["train"], recent], ignore_index=True)
        return export_splits(splits, train=rows, alias="challenger").version

    return lambda project, config_path: train  # replaces pipeline_trainer: same signature, small training


def test_simulate_monitor_retrain_promote_reload(server, splits, monkeypatch, capsys):
    config, url, directory = server
    assert main(["simulate", "--config", config, "--flush-labels"]) == 0
    windows = json.loads((directory / "reports" / "churn" / MANIFEST).read_text())["windows"]
    assert [(w["scenario"], w["rows"], w["labels_posted"], w["version"]) for w in windows] == [
        ("no_drift", WINDOW_ROWS, WINDOW_ROWS, "1"), ("price_increase", WINDOW_ROWS, WINDOW_ROWS, "1")]

    capsys.readouterr()
    assert main(["run", "--config", config, "--simulated"]) == 1  # the drifted window alerts
    out = capsys.readouterr().out
    assert "[no_drift] rows 300, labelled 300; drifted: none" in out
    assert "[price_increase]" in out and "MonthlyCharges" in out.split("[price_increase]")[1]
    summaries = sorted((directory / "reports" / "churn").glob("*/summary.json"))
    assert [json.loads(p.read_text())["alert"]["triggered"] for p in summaries] == [False, True]
    assert (directory / "reports" / "churn" / "index.html").is_file()

    monkeypatch.setattr("monitoring.retrain.pipeline_trainer", good_challenger(splits))
    assert main(["run", "--config", config, "--window", str(WINDOW_ROWS), "--retrain"]) == 1
    out = capsys.readouterr().out
    assert "retrain: challenger v2 vs champion v1: promote" in out and "reloaded" in out
    assert httpx.get(f"{url}/ready").json()["models"]["churn"] == "2"  # the server now serves the winner
