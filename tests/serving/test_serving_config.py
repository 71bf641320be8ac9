"""configs/serving.yaml: strict keys, environment overrides in one place."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.common.config import ConfigError
from serving.config import load_serving_config
from tests.serving.conftest import REPO

CONFIG = REPO / "configs" / "serving.yaml"


def test_the_shipped_config_loads():
    config = load_serving_config(CONFIG, environ={})
    assert [model.name for model in config.models] == ["churn"]
    assert config.source.kind == "registry" and config.prediction_log.wait_for_commit


def test_environment_overrides():
    config = load_serving_config(CONFIG, environ={
        "PREDICTION_LOG": "/tmp/x.db", "MLFLOW_TRACKING_URI": "sqlite:///other.db",
        "SERVING_BUNDLES": "/srv/bundles", "SERVING_PORT": "9000", "SERVING_MODEL_CACHE": "/var/cache/m"})
    assert config.prediction_log.path == Path("/tmp/x.db")
    assert config.source.tracking_uri == "sqlite:///other.db"
    assert (config.source.kind, config.source.bundle_root) == ("bundles", Path("/srv/bundles"))
    assert config.server.port == 9000 and config.source.cache_dir == Path("/var/cache/m")


def test_unknown_keys_are_errors_naming_the_key(tmp_path):
    bad = tmp_path / "serving.yaml"
    bad.write_text(CONFIG.read_text().replace("max_batch:", "max_batchh:"))
    with pytest.raises(ConfigError, match="limits.max_batchh"):
        load_serving_config(bad, environ={})
