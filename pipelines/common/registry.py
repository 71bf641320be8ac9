"""Model registry helpers: register a version, move the `champion` / `challenger` aliases, read them.

Every project registers under its own name (churn, vision, text); serving and monitoring find the model
to use through an alias, never through a hard-coded version number.
"""

from __future__ import annotations

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

CHAMPION = "champion"
CHALLENGER = "challenger"


def register_version(model_uri: str, name: str, tags: dict[str, str] | None = None) -> ModelVersion:
    client = MlflowClient()
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name)
    source_run = model_uri.split("/")[1] if model_uri.startswith("runs:/") else None
    version = client.create_model_version(name, model_uri, run_id=source_run, tags=tags or {})
    return version


def set_alias(name: str, alias: str, version: str) -> None:
    MlflowClient().set_registered_model_alias(name, alias, version)


def version_for_alias(name: str, alias: str) -> ModelVersion | None:
    try:
        return MlflowClient().get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def set_version_tags(name: str, version: str, tags: dict[str, str]) -> None:
    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
