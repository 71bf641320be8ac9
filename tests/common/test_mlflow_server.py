"""The team MLflow server. End to end (slow): `python -m pipelines.common.mlflow_server` starts a real
PostgreSQL (pgserver) and `mlflow server --serve-artifacts` on a free port, the tiny churn pipeline runs
against it over HTTP, then a real serving process serves the champion it registered. Unit: the config and
the command line it builds."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest
import yaml
from mlflow.tracking import MlflowClient

from modelpkg.package import load_model
from modelpkg.runtime import Predictor
from pipelines.common.config import ConfigError
from pipelines.common.mlflow_server import (artifacts_destination, load_server_config, postgres_pid, redact,
                                            server_command, server_pid)
from pipelines.common.runner import run_project
from tests.factories import environment
from tests.live_server import free_port
from tests.paths import REPO, TELCO_CSV
from tests.pipeline_runs import serving_champion

TINY_CONFIG = str(REPO / "tests" / "churn" / "tiny.yaml")
SERVER_CONFIG = REPO / "configs" / "mlflow-server.yaml"


# ------------------------------------------------------------------------------------------------------ unit
def test_the_environment_overrides_the_yaml():
    config = load_server_config(SERVER_CONFIG, environ={
        "MLFLOW_SERVER_PORT": "5002", "MLFLOW_SERVER_ALLOWED_HOSTS": "mlflow.team.internal, 10.0.0.7:5002",
        "MLFLOW_BACKEND_STORE_URI": "postgresql+psycopg://mlflow:pw@db:5432/mlflow",
        "MLFLOW_ARTIFACTS_DESTINATION": "s3://team-bucket/mlflow"})
    assert config.port == 5002 and config.allowed_hosts == ["mlflow.team.internal", "10.0.0.7:5002"]
    assert not config.local_postgres and config.artifacts_destination == "s3://team-bucket/mlflow"
    assert load_server_config(SERVER_CONFIG, environ={}).local_postgres


def test_a_bad_override_is_a_config_error():
    with pytest.raises(ConfigError, match="port"):
        load_server_config(SERVER_CONFIG, environ={"MLFLOW_SERVER_PORT": "fifty"})


def test_the_command_proxies_artifacts_and_keeps_the_backend_uri_off_the_command_line():
    config = load_server_config(SERVER_CONFIG, environ={"MLFLOW_BACKEND_STORE_URI": "postgresql+psycopg://u:secret@db/m"})
    command = server_command(config, "/data/artifacts")
    assert command[command.index("--artifacts-destination") + 1] == "/data/artifacts" and "--serve-artifacts" in command
    assert not any("secret" in part or "backend" in part for part in command)


def test_a_folder_destination_becomes_absolute_and_a_bucket_passes_unchanged(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert artifacts_destination("state/artifacts") == str(tmp_path / "state" / "artifacts")
    assert (tmp_path / "state" / "artifacts").is_dir()
    assert artifacts_destination("s3://bucket/prefix") == "s3://bucket/prefix"


def test_printed_uris_hide_the_password():
    assert redact("postgresql+psycopg://mlflow:s3cret@db:5432/mlflow") == "postgresql+psycopg://mlflow:***@db:5432/mlflow"
    assert redact("postgresql+psycopg://postgres@/mlflow?host=/tmp/pg") == "postgresql+psycopg://postgres@/mlflow?host=/tmp/pg"


# ------------------------------------------------------------------------------------------------ end to end


def pgserver_cannot_run() -> str | None:
    """Why PostgreSQL cannot start here, if it cannot: it refuses to run as root, so pgserver runs it as a
    user `pgserver` it creates with useradd."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("pgserver")
        return None
    except KeyError:
        return None if shutil.which("useradd") else "running as root without useradd: pgserver cannot create " \
                                                      "the user PostgreSQL must run as"


def team_config(root: Path) -> Path:
    """configs/mlflow-server.yaml with every path under `root`, a free port and one worker (a quick start)."""
    raw = yaml.safe_load(SERVER_CONFIG.read_text())
    raw |= {"port": free_port(), "workers": 1, "state_dir": str(root / "state"),
            "artifacts_destination": str(root / "artifacts"), "backend_store_uri": ""}
    raw["postgres"]["data_dir"] = str(root / "postgres")
    path = root / "mlflow-server.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def server_cli(command: str, config: Path) -> subprocess.CompletedProcess:
    """The CLI `make mlflow-server` runs, with none of the overrides this shell may carry."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_BACKEND", "MLFLOW_ARTIFACTS_DEST",
                                                                      "MLFLOW_SERVER_"))}
    return subprocess.run([sys.executable, "-m", "pipelines.common.mlflow_server", command, "--config", str(config)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def team_server():
    """A started server, its config and its URL; stopped (with PostgreSQL) and deleted afterwards."""
    if not TELCO_CSV.is_file():
        pytest.skip(f"real Telco CSV not found at {TELCO_CSV}")
    if reason := pgserver_cannot_run():
        pytest.skip(reason)
    # Not under pytest's 0700 basetemp: as root, PostgreSQL runs as another user that must reach its data dir.
    root = Path(tempfile.mkdtemp(prefix="mlflow-team-"))
    config_path = team_config(root)
    config = load_server_config(config_path, environ={})
    try:
        started = server_cli("start", config_path)
        assert started.returncode == 0, started.stdout + started.stderr
        yield config, config.url
    finally:
        stopped = server_cli("stop", config_path)
        shutil.rmtree(root, ignore_errors=True)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr


@pytest.fixture(scope="module")
def store(team_server):
    _config, url = team_server
    with environment(MLFLOW_TRACKING_URI=url, CHURN_DATA=str(TELCO_CSV)) as env:
        yield env


@pytest.fixture(scope="module")
def result(store):
    return run_project("churn", TINY_CONFIG)


def postgres_rows(config, table: str) -> int:
    """Rows of an MLflow table, read from PostgreSQL itself (not through the server)."""
    import psycopg

    socket_dir = config.postgres.data_dir.resolve()
    with psycopg.connect(host=str(socket_dir), user="postgres", dbname=config.postgres.database) as connection:
        return connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


@pytest.mark.slow
def test_the_pipeline_is_tracked_in_postgres_with_artifacts_proxied_by_the_server(team_server, result):
    config, _url = team_server
    assert server_pid(config) is not None and postgres_pid(config.postgres) is not None
    assert result.registered_version == "1"
    client = MlflowClient()
    experiment = client.get_experiment_by_name("churn")
    runs = client.search_runs([experiment.experiment_id])
    assert postgres_rows(config, "runs") == len(runs) >= 5  # the pipeline, its stages, their models
    assert postgres_rows(config, "model_versions") >= 1
    assert experiment.artifact_location.startswith("mlflow-artifacts:")
    assert all(run.info.artifact_uri.startswith("mlflow-artifacts:") for run in runs)
    assert list(Path(config.artifacts_destination).rglob("model.onnx")), "no ONNX graph in the artifacts folder"


@pytest.mark.slow
def test_the_champion_is_served_from_the_team_server(store, result, tmp_path):
    package = load_model("churn", alias="champion")  # downloaded through the server's artifact proxy
    example = next(m["example"] for m in yaml.safe_load((REPO / "configs" / "serving.yaml").read_text())["models"]
                   if m["name"] == "churn")
    expected = float(Predictor(package.files).score_rows([example])[0, 1])
    with serving_champion("churn", store, tmp_path) as url:
        response = httpx.post(f"{url}/v1/churn/predict", json=[example], timeout=30)
    assert response.status_code == 200, response.text
    assert abs(response.json()["predictions"][0]["probability"] - expected) < 1e-6
