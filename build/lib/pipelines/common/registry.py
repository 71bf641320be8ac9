"""Model registry helpers: register a version, move the `champion` / `challenger` aliases, read them.

Every project registers under its own name (churn, vision, text); serving and monitoring find the model
to use through an alias, never through a hard-coded version number.
"""

from __future__ import annotations

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

CHAMPION = "champion"
CHALLENGER = "challenger"


def register_version(model_uri: str, name: str, tags: dict[str, str] | None = None) -> str:
    """Register a logged model as a new version of `name` (created if new); returns the version."""
    return str(mlflow.register_model(model_uri, name, tags=tags or {}).version)


def set_alias(name: str, alias: str, version: str) -> None:
    MlflowClient().set_registered_model_alias(name, alias, version)


def version_for_alias(name: str, alias: str) -> ModelVersion | None:
    try:
        return MlflowClient().get_model_version_by_alias(name, alias)
    except MlflowException:
        return None
