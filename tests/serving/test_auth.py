"""API keys: too short refuses start-up, key files are private and shared with clients on the machine,
and the optional read key guards /metrics and /v1/models."""

from __future__ import annotations

import stat

import pytest
from fastapi.testclient import TestClient

from serving.__main__ import main as serve
from serving.app import create_app
from serving.auth import KeyRefused, feedback_key, server_keys
from serving.config import with_overrides
from tests.serving.conftest import write_config

READ_KEY = "test-read-key-" + "r" * 32


def test_a_short_admin_key_stops_start_up(bundle_config, tmp_path, monkeypatch):
    monkeypatch.setenv(bundle_config.admin.api_key_env, "x" * 31)
    with pytest.raises(KeyRefused, match=r"\$SERVING_ADMIN_KEY holds a key of 31 characters: the server needs at least 32"):
        create_app(bundle_config)
    with pytest.raises(SystemExit, match="error: .*SERVING_ADMIN_KEY holds a key of 31 characters"):  # python -m serving
        serve(["--config", str(write_config(bundle_config, tmp_path / "serving.yaml"))])


def test_key_files_are_private_made_once_and_read_by_clients(bundle_config, monkeypatch):
    for variable in (bundle_config.admin.api_key_env, bundle_config.feedback.api_key_env):
        monkeypatch.delenv(variable, raising=False)
    assert feedback_key(bundle_config, {}) is None  # a client before any server started: no key yet
    keys = server_keys(bundle_config, {})
    path = bundle_config.feedback.key_file
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(keys.feedback) >= bundle_config.admin.min_key_chars
    assert keys.admin != keys.feedback and server_keys(bundle_config, {}) == keys  # made once, then read
    assert feedback_key(bundle_config, {}) == keys.feedback  # what `make simulate` sends
    mine = "k" * 40
    assert feedback_key(bundle_config, {bundle_config.feedback.api_key_env: mine}) == mine  # the variable wins
    path.write_text("short\n")
    with pytest.raises(KeyRefused, match="holds a key of 5 characters"):
        server_keys(bundle_config, {})


def test_a_read_key_guards_metrics_and_models(bundle_config, monkeypatch):
    config = with_overrides(bundle_config, read={"api_key_env": "SERVING_READ_KEY"})
    monkeypatch.delenv("SERVING_READ_KEY", raising=False)
    with pytest.raises(KeyRefused, match=r"read.api_key_env names \$SERVING_READ_KEY, which is not set"):
        create_app(config)
    monkeypatch.setenv("SERVING_READ_KEY", READ_KEY)
    with TestClient(create_app(config)) as client:
        for path in ("/metrics", "/v1/models"):
            assert client.get(path).status_code == 401
            assert client.get(path, headers={"X-API-Key": "wrong"}).status_code == 403
            assert client.get(path, headers={"X-API-Key": READ_KEY}).status_code == 200
        assert client.get("/health").status_code == 200 and client.get("/ready").status_code == 200
    with TestClient(create_app(bundle_config)) as client:  # no read key configured: open, as before
        assert client.get("/v1/models").status_code == 200 and client.get("/metrics").status_code == 200
