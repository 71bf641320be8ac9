"""The serving config: `configs/serving.yaml` validated into frozen pydantic models.

Every limit, path and switch of the server lives in that file, and the environment can override a few
of them here, in one place, so a deployment changes them without editing YAML. Imports only pydantic
and the shared YAML loader (no training code), so the serving process stays small.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from pipelines.common.config import Config, load_config

DEFAULT_CONFIG = Path("configs/serving.yaml")

# Environment variable -> (section, key) it overrides. The only place the environment is read.
ENV_OVERRIDES: dict[str, tuple[str, str]] = {
    "MLFLOW_TRACKING_URI": ("source", "tracking_uri"),
    "PREDICTION_LOG": ("prediction_log", "path"),
    "SERVING_MODEL_CACHE": ("source", "cache_dir"),
    "SERVING_HOST": ("server", "host"),
    "SERVING_PORT": ("server", "port"),
}
BUNDLES_ENV = "SERVING_BUNDLES"  # a folder of bundles: switches the source to bundle mode


class ServerConfig(Config):
    host: str
    port: int = Field(ge=0, le=65535)
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    access_log: bool = False
    graceful_shutdown_seconds: float = Field(gt=0)
    # Overload answers 503 at once rather than queueing without bound (docs/serving.md, "Faults and overload").
    # uvicorn's own guard: open connections + requests beyond which uvicorn answers 503 and closes the
    # connection (no Retry-After). It counts idle keep-alive connections too, so it sits above the clients
    # expected; the app's limit below does the everyday shedding.
    limit_concurrency: int = Field(gt=0)
    max_requests_in_flight: int = Field(gt=0)  # POSTs under /v1/ being answered at once; more: 503 + Retry-After
    retry_after_seconds: int = Field(ge=1)  # Retry-After on every 503 that a retry may cure
    # Several workers (docs/serving.md, "Several workers"): uvicorn runs this many processes on one socket;
    # each has its own prediction log file and follows the others' /admin/reload.
    workers: int = Field(1, ge=1)
    reload_poll_seconds: float = Field(1.0, gt=0)  # how often a worker looks for a reload another one took
    reload_confirm_seconds: float = Field(5.0, gt=0)  # how long /admin/reload waits for the others to confirm

    @model_validator(mode="after")
    def app_limit_below_uvicorn(self) -> "ServerConfig":
        if self.max_requests_in_flight >= self.limit_concurrency:
            raise ValueError(f"max_requests_in_flight ({self.max_requests_in_flight}) must be below limit_concurrency "
                             f"({self.limit_concurrency}), or uvicorn sheds first, without Retry-After")
        return self


class SourceConfig(Config):
    """Where models come from: the MLflow registry (development) or exported bundles (deployment)."""

    kind: Literal["registry", "bundles"] = "registry"
    tracking_uri: str = "sqlite:///mlruns/mlflow.db"
    cache_dir: Path = Path(".cache/serving/models")
    bundle_root: Path = Path("dist/bundles")


class LimitsConfig(Config):
    max_body_bytes: int = Field(gt=0)
    max_batch: int = Field(gt=0)
    max_feedback_items: int = Field(gt=0)


class OnnxRuntimeConfig(Config):
    intra_op_threads: int = Field(ge=0)  # 0 = onnxruntime's choice (all cores)
    inter_op_threads: int = Field(ge=0)
    allow_spinning: bool = False


class ModelLimitsConfig(Config):
    """A model's own limits; a key left out takes the top-level `limits` value."""

    max_body_bytes: int | None = Field(None, gt=0)
    max_batch: int | None = Field(None, gt=0)


class ModelOnnxRuntimeConfig(Config):
    """A model's own session settings; a key left out takes the top-level `onnxruntime` value."""

    intra_op_threads: int | None = Field(None, ge=0)
    inter_op_threads: int | None = Field(None, ge=0)
    allow_spinning: bool | None = None


class BatchingConfig(Config):
    """Dynamic micro-batching (serving/batcher.py): concurrent requests run as one graph call.

    Off by default: it pays where one call of many rows costs much less than many calls of one row (a
    transformer, a CNN), not for a tabular graph of microseconds."""

    enabled: bool = False
    max_wait_ms: float = Field(2.0, ge=0)  # how long the first request of a batch waits for company
    max_records: int = Field(32, gt=0)  # records per graph call; a request larger than this runs alone


class ShadowConfig(Config):
    """A challenger scored beside the champion on live traffic (serving/shadow.py): the client gets the
    champion's answer only; the challenger's prediction is logged under the same id, for promotion."""

    enabled: bool = False
    alias: str = "challenger"  # the registry alias (bundle mode: the folder <bundle_root>/<name>@<alias>/)
    # records waiting to be shadow-scored beyond which new ones are skipped (counted, never a failed request)
    max_pending_records: int = Field(8192, gt=0)
    # after a request arrives, the scorer gathers others this long into one graph call and one log hand-over
    # (the scorer is shared: the smallest value of the shadowed models counts)
    gather_ms: float = Field(10.0, ge=0)


class ModelConfig(Config):
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")  # also the URL segment: /v1/<name>/predict
    alias: str = "champion"
    example: dict | None = None  # one request record for the API docs (the contract's own is used if invalid)
    # inline: onnxruntime runs on the event loop (a tabular model's 30 us cost less than a hop to a thread);
    # thread: decoding and onnxruntime run in a worker thread (a CNN's milliseconds must not stall the loop)
    execution: Literal["inline", "thread"] = "inline"
    # required: /ready answers 503 until this model is loaded. An optional model that has not been trained
    # yet (no registered version) is reported by /ready and /v1/models but keeps no one else from serving.
    required: bool = True
    limits: ModelLimitsConfig = ModelLimitsConfig()
    onnxruntime: ModelOnnxRuntimeConfig = ModelOnnxRuntimeConfig()
    batching: BatchingConfig = BatchingConfig()
    # multi-class answers list this many most likely classes (`top_k`); 0: none. Binary answers never do.
    top_k: int = Field(3, ge=0)
    shadow: ShadowConfig = ShadowConfig()


@dataclass(frozen=True)
class ModelSettings:
    """What one model is served with: its own overrides over the top-level defaults, resolved once."""

    execution: Literal["inline", "thread"]
    max_body_bytes: int
    max_batch: int
    onnxruntime: OnnxRuntimeConfig
    batching: BatchingConfig
    top_k: int


class RetentionConfig(Config):
    """Which rows the log keeps (None: no limit of that kind); the writer deletes the oldest first."""

    max_age_days: float | None = Field(gt=0)
    max_rows: int | None = Field(gt=0)
    interval_seconds: float = Field(gt=0)  # how often the writer looks for rows past the limits
    batch_rows: int = Field(gt=0)  # rows deleted per transaction: what a request may wait behind


class PredictionLogConfig(Config):
    enabled: bool = True
    path: Path = Path("data/predictions/predictions.db")
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    wait_for_commit: bool = True
    max_batch_rows: int = Field(gt=0)
    checkpoint_interval_seconds: float = Field(gt=0)
    commit_timeout_seconds: float = Field(gt=0)  # a request waits this long for its commit, then 503
    max_queue_rows: int = Field(gt=0)  # rows waiting for the writer beyond which appends answer 503 at once
    retry_interval_seconds: float = Field(gt=0)  # while failing and idle, the writer tries a commit this often
    journal_size_limit_bytes: int = Field(ge=0)  # the WAL is cut back to this size after a checkpoint
    max_size_bytes: int | None = Field(gt=0)  # the database's hard cap (null: none); past it writes answer 503
    retention: RetentionConfig


class MetricsConfig(Config):
    enabled: bool = True
    latency_buckets_seconds: list[float] = Field(min_length=1)
    probability_buckets: list[float] = Field(min_length=1)
    batch_size_buckets: list[float] = Field(min_length=1)  # records per batched graph call


class AdminConfig(Config):
    api_key_env: str = "SERVING_ADMIN_KEY"
    # Used when the variable is unset: read, or created (random, mode 600) at start-up; monitoring reads it
    # to ask for a reload after a promotion, so the retraining loop closes on one machine with no setup.
    key_file: Path = Path(".secrets/serving-admin.key")
    # Every key the server takes (admin, feedback, read) must be at least this long, or it refuses to start.
    min_key_chars: int = Field(32, ge=16)


class FeedbackConfig(Config):
    """Who may post labels. Labels are the only evidence for quality alerts and promotion, so posting
    them needs a key of its own unless `auth: none` says otherwise (logged as a warning at start-up)."""

    auth: Literal["key", "none"] = "key"
    api_key_env: str = "SERVING_FEEDBACK_KEY"
    # Used when the variable is unset: read, or created (random, mode 600) at start-up; the simulator reads it.
    key_file: Path = Path(".secrets/serving-feedback.key")


class ReadConfig(Config):
    """GET /metrics and /v1/models name versions, runs and inputs: behind a read key when a variable is
    named here (the server then refuses to start without it); open when it is empty."""

    api_key_env: str = ""


class ServingConfig(Config):
    """Every section is required: the YAML file is the one place the numbers live."""

    server: ServerConfig
    models: list[ModelConfig] = Field(min_length=1)
    source: SourceConfig
    limits: LimitsConfig
    onnxruntime: OnnxRuntimeConfig
    prediction_log: PredictionLogConfig
    metrics: MetricsConfig
    admin: AdminConfig
    feedback: FeedbackConfig
    read: ReadConfig

    @field_validator("models")
    @classmethod
    def distinct_names(cls, models: list[ModelConfig]) -> list[ModelConfig]:
        names = [model.name for model in models]
        if len(set(names)) != len(names):
            raise ValueError(f"model names must be distinct (they are URL segments): {names}")
        return models

    def model(self, name: str) -> ModelConfig:
        return next(model for model in self.models if model.name == name)

    def settings(self, name: str) -> ModelSettings:
        """The limits, session settings and execution of model `name`: its own, else the defaults."""
        model = self.model(name)
        limits = self.limits.model_dump() | model.limits.model_dump(exclude_none=True)
        session = self.onnxruntime.model_dump() | model.onnxruntime.model_dump(exclude_none=True)
        return ModelSettings(execution=model.execution, max_body_bytes=limits["max_body_bytes"],
                             max_batch=limits["max_batch"],
                             onnxruntime=OnnxRuntimeConfig(**session), batching=model.batching, top_k=model.top_k)


def with_overrides(config: ServingConfig, **sections: dict | list) -> ServingConfig:
    """A copy with some keys replaced, validated again: `with_overrides(c, metrics={"enabled": False})`.
    A mapping is merged into its section; anything else (the `models` list) replaces it."""
    raw = config.model_dump()
    for section, values in sections.items():
        raw[section] = raw[section] | values if isinstance(values, dict) else values
    return ServingConfig.model_validate(raw)


def env_overrides(environ: dict[str, str]) -> dict[str, dict]:
    """The config changes the environment asks for, grouped by section."""
    sections: dict[str, dict] = {}
    for variable, (section, key) in ENV_OVERRIDES.items():
        if environ.get(variable):
            sections.setdefault(section, {})[key] = environ[variable]
    if environ.get(BUNDLES_ENV):
        sections.setdefault("source", {}).update(kind="bundles", bundle_root=environ[BUNDLES_ENV])
    return sections


def load_serving_config(path: str | Path = DEFAULT_CONFIG, environ: dict[str, str] | None = None) -> ServingConfig:
    """Read the YAML, then apply the environment overrides (pass `environ={}` to ignore the environment)."""
    config = load_config(path, ServingConfig)
    return with_overrides(config, **env_overrides(os.environ if environ is None else environ))
