"""The retraining loop closes with the defaults: a server started with no admin key variable writes a
random key to a file only its user can read, and monitoring on the same machine reloads the server with
it after a promotion. With the variable set, the variable is the key and no file is read or written."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

from monitoring.__main__ import reload_server
from monitoring.config import load_monitoring_config
from serving.auth import admin_key
from serving.config import with_overrides
from tests.live_server import START_TIMEOUT_SECONDS, free_port, wait_ready
from tests.serving.conftest import REPO, make_config, write_config

OWNER_ONLY = 0o600
KEY_VARIABLES = ("SERVING_ADMIN_KEY", "SERVING_FEEDBACK_KEY", "SERVING_BUNDLES", "PREDICTION_LOG",
                 "MLFLOW_TRACKING_URI")


def local_config(tmp_path, registry_uri, port: int = 8000):
    """Serving the test registry's champions on `port`, with every file (log, cache, keys) under tmp_path."""
    secrets = tmp_path / "secrets"
    config = make_config(tmp_path, server={"port": port}, source={"kind": "registry", "tracking_uri": registry_uri},
                         admin={"key_file": str(secrets / "admin.key")},
                         feedback={"key_file": str(secrets / "feedback.key")})
    return with_overrides(config, models=[config.model("churn").model_dump()])  # one model: a quick start


def test_a_server_without_an_admin_key_writes_one_that_monitoring_reloads_it_with(tmp_path, registry_uri,
                                                                                  monkeypatch, capsys):
    port = free_port()
    config = local_config(tmp_path, registry_uri, port)
    for variable in KEY_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    env = os.environ | {"PYTHONPATH": str(REPO), "MLFLOW_DISABLE_TELEMETRY": "true"}
    process = subprocess.Popen([sys.executable, "-m", "serving", "--config", str(write_config(config, tmp_path / "s.yaml"))],
                               cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_ready(f"http://127.0.0.1:{port}", process)
        key_file = config.admin.key_file
        assert stat.S_IMODE(key_file.stat().st_mode) == OWNER_ONLY
        assert len(key_file.read_text().strip()) >= config.admin.min_key_chars
        monitoring = load_monitoring_config(REPO / "configs" / "monitoring.yaml")
        assert reload_server(config, monitoring, "churn", "1")  # the key read from the server's file
        assert "reloaded: churn v1" in capsys.readouterr().out
    finally:
        process.terminate()
        process.wait(timeout=START_TIMEOUT_SECONDS)


def test_with_the_variable_set_it_is_the_key_and_no_file_is_read_or_written(tmp_path, registry_uri):
    config = local_config(tmp_path, registry_uri)
    key = "k" * config.admin.min_key_chars
    assert admin_key(config, {config.admin.api_key_env: key}, create=True) == key
    assert not config.admin.key_file.exists()


def test_a_client_never_creates_the_key_file(tmp_path, registry_uri):
    config = local_config(tmp_path, registry_uri)
    assert admin_key(config, {}) is None  # no server has run here: monitoring warns, the promotion stands
    assert not config.admin.key_file.exists()
