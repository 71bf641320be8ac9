"""A team MLflow tracking server: a PostgreSQL backend store, artifacts proxied by the server.

`make mlflow-server` (`python -m pipelines.common.mlflow_server start`) starts PostgreSQL from the `pgserver`
wheel (a PostgreSQL build on PyPI: no system package, no manual step) and `mlflow server --serve-artifacts`
on it, in the background, and returns once the server answers; `stop` stops both, `status` says what runs.
Clients need nothing but MLFLOW_TRACKING_URI=http://host:port: runs, the registry and the artifacts (as
`mlflow-artifacts:` URIs) all go through the server, so training, serving and monitoring run unchanged.
Every setting is in configs/mlflow-server.yaml; docs/scale-out.md maps it onto managed services.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import Field, ValidationError

from pipelines.common.config import Config, ConfigError, load_config

DEFAULT_CONFIG = Path("configs/mlflow-server.yaml")
# Environment variable -> the key it overrides: the only settings the environment changes.
ENV_OVERRIDES: dict[str, str] = {
    "MLFLOW_BACKEND_STORE_URI": "backend_store_uri",
    "MLFLOW_ARTIFACTS_DESTINATION": "artifacts_destination",
    "MLFLOW_SERVER_HOST": "host",
    "MLFLOW_SERVER_PORT": "port",
    "MLFLOW_SERVER_ALLOWED_HOSTS": "allowed_hosts",
}
PID_FILE, LOG_FILE = "server.pid", "server.log"
POLL_SECONDS = 0.25
HEALTH_TIMEOUT_SECONDS = 2.0
NOT_RUNNING = 3  # `status` exit code when the server does not answer (as LSB init scripts say it)


class PostgresConfig(Config):
    data_dir: Path
    database: str = Field(pattern=r"^[a-z_][a-z0-9_]*$")


class MlflowServerConfig(Config):
    host: str
    port: int = Field(ge=1, le=65535)
    workers: int = Field(ge=1)
    uvicorn_opts: str = ""  # passed to `mlflow server --uvicorn-opts`
    job_execution: bool = False  # MLflow's server-side jobs (GenAI scorers, trace archival): a runner + 3 consumers
    allowed_hosts: list[str] = []
    state_dir: Path
    artifacts_destination: str = Field(min_length=1)
    backend_store_uri: str = ""  # "": the local PostgreSQL of `postgres`
    postgres: PostgresConfig
    start_timeout_seconds: float = Field(gt=0)
    stop_timeout_seconds: float = Field(gt=0)

    @property
    def url(self) -> str:
        """Where clients on this machine reach it (a server bound to every interface answers on loopback too)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def local_postgres(self) -> bool:
        return not self.backend_store_uri


def load_server_config(path: str | Path = DEFAULT_CONFIG, environ: dict[str, str] | None = None) -> MlflowServerConfig:
    """Read the YAML, then apply the environment overrides (pass `environ={}` to ignore the environment)."""
    config = load_config(path, MlflowServerConfig)
    environ = os.environ if environ is None else environ
    changes: dict[str, object] = {key: environ[var] for var, key in ENV_OVERRIDES.items() if environ.get(var)}
    if "allowed_hosts" in changes:
        changes["allowed_hosts"] = [h.strip() for h in str(changes["allowed_hosts"]).split(",") if h.strip()]
    try:
        return MlflowServerConfig.model_validate(config.model_dump() | changes)
    except ValidationError as error:
        raise ConfigError(f"{path} with the environment's overrides: {error}") from error


# ------------------------------------------------------------------------------------------------ PostgreSQL
def _pgserver():
    """pgserver, imported quietly: it warns at import when XDG_RUNTIME_DIR is unset (then it locks under /tmp)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver
        import pgserver.utils
    return pgserver


def start_postgres(config: PostgresConfig) -> str:
    """Start the local PostgreSQL (or find it running), create the database once; returns its SQLAlchemy URI.

    pgserver runs initdb on a new data dir and `pg_ctl start`, listening on a Unix socket only. As root it runs
    PostgreSQL as a system user `pgserver` it creates (PostgreSQL refuses to run as root)."""
    data_dir = config.data_dir.resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    server = _pgserver().get_server(data_dir, cleanup_mode=None)  # None: PostgreSQL outlives this process
    _ensure_database(server.get_uri(), config.database)
    socket_dir = quote(str(server.get_postmaster_info().socket_dir), safe="/")
    return f"postgresql+psycopg://postgres@/{config.database}?host={socket_dir}"


def _ensure_database(admin_uri: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_uri, autocommit=True) as connection:
        if connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def postgres_pid(config: PostgresConfig) -> int | None:
    """The running postmaster's pid, read from its data dir; None when it does not run."""
    data_dir = config.data_dir.resolve()
    if not data_dir.is_dir():
        return None
    info = _pgserver().utils.PostmasterInfo.read_from_pgdata(data_dir)
    return info.pid if info is not None and info.is_running() else None


def stop_postgres(config: PostgresConfig) -> bool:
    """Stop the local PostgreSQL if it runs (fast shutdown: sessions are closed, committed data is safe)."""
    if postgres_pid(config) is None:
        return False
    data_dir = config.data_dir.resolve()
    _pgserver().pg_ctl(["-w", "-m", "fast", "stop"], pgdata=data_dir, user=_data_dir_owner(data_dir))
    return True


def _data_dir_owner(data_dir: Path) -> str | None:
    """pg_ctl must run as the data dir's owner: as root, that is the user pgserver made; else ourselves."""
    if os.geteuid() != 0:
        return None
    import pwd

    return pwd.getpwuid(data_dir.stat().st_uid).pw_name


# ------------------------------------------------------------------------------------------- MLflow server
def artifacts_destination(value: str) -> str:
    """An object-store URI passes as it is; a folder is made absolute (the server's cwd must not matter)."""
    if "://" in value:
        return value
    path = Path(value).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def server_command(config: MlflowServerConfig, destination: str) -> list[str]:
    """The `mlflow server` command line; the backend store URI travels in the environment (it may hold a
    password, which a command line shows to every local user)."""
    command = [sys.executable, "-m", "mlflow", "server", "--serve-artifacts", "--artifacts-destination", destination,
               "--host", config.host, "--port", str(config.port), "--workers", str(config.workers)]
    if config.allowed_hosts:
        command += ["--allowed-hosts", ",".join(config.allowed_hosts)]
    if config.uvicorn_opts:
        command += ["--uvicorn-opts", config.uvicorn_opts]
    return command


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=HEALTH_TIMEOUT_SECONDS) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def server_pid(config: MlflowServerConfig) -> int | None:
    """The pid in the pid file, if that process still runs and is an MLflow server (pids get reused)."""
    import psutil

    pid_file = config.state_dir / PID_FILE
    if not pid_file.is_file():
        return None
    try:
        process = psutil.Process(int(pid_file.read_text()))
        alive = process.status() != psutil.STATUS_ZOMBIE and "mlflow" in " ".join(process.cmdline())
    except (ValueError, psutil.Error):
        return None
    return process.pid if alive else None


def start(config: MlflowServerConfig) -> float:
    """Start PostgreSQL and the server in the background; returns the seconds until the server answered."""
    began = time.monotonic()
    if server_pid(config) is not None:
        return 0.0
    if answers(config.url):
        raise RuntimeError(f"something else answers at {config.url}: set MLFLOW_SERVER_PORT to another port")
    backend = config.backend_store_uri or start_postgres(config.postgres)
    state_dir = config.state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    command = server_command(config, artifacts_destination(config.artifacts_destination))
    env = {"MLFLOW_DISABLE_TELEMETRY": "true", **os.environ,  # offline by default, as the Makefile says
           "MLFLOW_BACKEND_STORE_URI": backend,  # `mlflow server` reads it as --backend-store-uri
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": str(config.job_execution).lower()}
    with (state_dir / LOG_FILE).open("ab") as log:
        # Its own session: `stop` signals the whole group (mlflow, uvicorn and its workers, the job runner).
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   cwd=state_dir, env=env, start_new_session=True)
    (state_dir / PID_FILE).write_text(str(process.pid))
    _wait_until_answering(config, process)
    return time.monotonic() - began


def _wait_until_answering(config: MlflowServerConfig, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + config.start_timeout_seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            (config.state_dir / PID_FILE).unlink(missing_ok=True)
            raise RuntimeError(f"the MLflow server exited with code {process.returncode}:\n{log_tail(config)}")
        if answers(config.url):
            return
        time.sleep(POLL_SECONDS)
    stop_server(config)
    raise TimeoutError(f"the MLflow server did not answer at {config.url} within {config.start_timeout_seconds} s "
                       f"(start_timeout_seconds):\n{log_tail(config)}")


def stop_server(config: MlflowServerConfig) -> bool:
    """SIGTERM to the server's process group, SIGKILL to what is left after stop_timeout_seconds."""
    import psutil

    pid = server_pid(config)
    (config.state_dir / PID_FILE).unlink(missing_ok=True)
    if pid is None:
        return False
    root = psutil.Process(pid)
    processes = [root, *root.children(recursive=True)]
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + config.stop_timeout_seconds
    while _alive(processes) and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
    if _alive(processes):
        _signal_group(pid, signal.SIGKILL)
    return True


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass


def _alive(processes: list) -> bool:
    """Whether any of them still runs (a zombie has stopped: only its parent's wait() is missing)."""
    import psutil

    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            continue
    return False


def stop(config: MlflowServerConfig) -> tuple[bool, bool]:
    """Stop the server, then the local PostgreSQL (an external database is not ours to stop)."""
    server = stop_server(config)
    postgres = stop_postgres(config.postgres) if config.local_postgres else False
    return server, postgres


def log_tail(config: MlflowServerConfig, lines: int = 30) -> str:
    path = config.state_dir / LOG_FILE
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.is_file() else "(no log)"


def redact(uri: str) -> str:
    """A URI fit to print: the password, if any, replaced."""
    parts = urlsplit(uri)
    if not parts.password:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


# ------------------------------------------------------------------------------------------------------ CLI
def describe(config: MlflowServerConfig) -> str:
    backend = redact(config.backend_store_uri) if config.backend_store_uri else \
        f"PostgreSQL in {config.postgres.data_dir} (database {config.postgres.database})"
    return f"backend store: {backend}; artifacts: {redact(config.artifacts_destination)}"


def cmd_start(config: MlflowServerConfig) -> int:
    pid = server_pid(config)
    seconds = start(config)
    if pid is not None:
        print(f"MLflow server already running (pid {pid}) at {config.url}")
    else:
        print(f"MLflow server ready at {config.url} in {seconds:.1f} s ({describe(config)}); "
              f"log: {config.state_dir / LOG_FILE}")
    print(f"Point clients at it:  export MLFLOW_TRACKING_URI={config.url}")
    return 0


def cmd_stop(config: MlflowServerConfig) -> int:
    server, postgres = stop(config)
    print(f"MLflow server: {'stopped' if server else 'was not running'}"
          + (f"; PostgreSQL: {'stopped' if postgres else 'was not running'}" if config.local_postgres else ""))
    return 0


def cmd_status(config: MlflowServerConfig) -> int:
    pid, up = server_pid(config), answers(config.url)
    print(f"MLflow server: {'answering' if up else 'not answering'} at {config.url}"
          + (f" (pid {pid})" if pid is not None else ""))
    if config.local_postgres:
        pg = postgres_pid(config.postgres)
        print(f"PostgreSQL: {f'running (pid {pg})' if pg else 'stopped'} in {config.postgres.data_dir}")
    print(describe(config))
    return 0 if up else NOT_RUNNING


COMMANDS = {"start": cmd_start, "stop": cmd_stop, "status": cmd_status}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.common.mlflow_server",
                                     description="A team MLflow tracking server on PostgreSQL, in the background.")
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help=f"YAML config (default: {DEFAULT_CONFIG})")
    args = parser.parse_args(argv)
    try:
        config = load_server_config(args.config)
        return COMMANDS[args.command](config)
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        return 2
    except (RuntimeError, TimeoutError, subprocess.CalledProcessError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
