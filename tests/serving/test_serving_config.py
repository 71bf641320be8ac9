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
    assert [model.name for model in config.models] == ["churn", "text", "vision"]
    assert config.model("churn").required and not config.model("text").required  # text: only after `make text`
    assert not config.model("vision").required  # only after `make vision`
    assert config.settings("text").execution == "thread"
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


def models_yaml(tmp_path, models: str):
    """The shipped config with its `models:` list replaced by `models` (YAML)."""
    text = CONFIG.read_text()
    start, end = text.index("\nmodels:\n"), text.index("\nsource:\n")
    path = tmp_path / "serving.yaml"
    path.write_text(text[:start] + "\nmodels:\n" + models + text[end:])
    return path


def test_a_model_overrides_limits_threads_and_execution(tmp_path):
    config = load_serving_config(models_yaml(tmp_path, """
  - name: churn
  - name: vision
    execution: thread
    limits: {max_body_bytes: 8388608}
    onnxruntime: {intra_op_threads: 4}
"""), environ={})
    vision, churn = config.settings("vision"), config.settings("churn")
    assert (vision.execution, vision.max_body_bytes, vision.max_batch) == ("thread", 8388608, config.limits.max_batch)
    assert vision.onnxruntime == config.onnxruntime.model_copy(update={"intra_op_threads": 4})
    assert (churn.execution, churn.max_body_bytes, churn.onnxruntime) == ("inline", config.limits.max_body_bytes, config.onnxruntime)


@pytest.mark.parametrize("models, named", [
    ("  - name: churn\n    limits: {max_batchh: 3}\n", "models.0.limits.max_batchh"),
    ("  - name: churn\n    onnxruntime: {threads: 3}\n", "models.0.onnxruntime.threads"),
    ("  - name: churn\n    execution: gpu\n", "models.0.execution"),
    ("  - name: churn\n    limits: {max_batch: 0}\n", "models.0.limits.max_batch"),
    ("  - name: churn\n  - name: churn\n", "model names must be distinct"),
])
def test_a_bad_model_entry_is_an_error_naming_it(tmp_path, models, named):
    with pytest.raises(ConfigError, match=named):
        load_serving_config(models_yaml(tmp_path, models), environ={})


def test_overload_limits_and_log_bounds_are_validated(tmp_path):
    """The app's admission limit must sit below uvicorn's (else uvicorn sheds first, without Retry-After),
    and the log's bounds are positive."""
    bad = tmp_path / "serving.yaml"
    bad.write_text(CONFIG.read_text().replace("limit_concurrency: 1024", "limit_concurrency: 16"))
    with pytest.raises(ConfigError, match="max_requests_in_flight .* must be below limit_concurrency"):
        load_serving_config(bad, environ={})
    bad.write_text(CONFIG.read_text().replace("max_rows: 5000000", "max_rows: 0"))
    with pytest.raises(ConfigError, match="prediction_log.retention.max_rows"):
        load_serving_config(bad, environ={})
    config = load_serving_config(CONFIG, environ={})
    assert config.prediction_log.retention.max_age_days and config.prediction_log.max_size_bytes
