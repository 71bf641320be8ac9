"""Model registry helpers: register a version, move the `champion` / `challenger` aliases, read them.

Every project registers under its own name (churn, vision, text); serving and monitoring find the model
to use through an alias, never through a hard-coded version number.
"""

from __future__ import annotations

import time

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

CHAMPION = "champion"
CHALLENGER = "challenger"
# Registered-model tags written by every promotion (MLflow keeps no time of an alias change): the
# promotion rule's cooldown counts from PROMOTED_AT. A first version taking an empty alias is no promotion.
PROMOTED_AT, PROMOTED_VERSION = "champion_promoted_at", "champion_promoted_version"


class AliasMoved(RuntimeError):
    """The champion changed between reading it and replacing it: the decision judged another champion."""


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


def last_promotion(name: str) -> float | None:
    """Unix seconds of the last promotion of `name` (None: none recorded)."""
    try:
        tags = MlflowClient().get_registered_model(name).tags
    except MlflowException:
        return None
    return float(tags[PROMOTED_AT]) if PROMOTED_AT in tags else None


def promote(name: str, version: str, *, expected_champion: str) -> None:
    """Compare-and-set: move `champion` to `version` only if it still holds `expected_champion` (the one
    the decision judged), then record when. MLflow has no atomic compare-and-set: the re-read narrows
    the race to the moment between it and the move."""
    current = version_for_alias(name, CHAMPION)
    holder = None if current is None else str(current.version)
    if holder != str(expected_champion):
        raise AliasMoved(f"{name}: champion is v{holder} now, not v{expected_champion} as when the decision started: "
                         f"v{version} was judged against v{expected_champion} and is not promoted; retrain or "
                         f"judge again against the current champion")
    client = MlflowClient()
    client.set_registered_model_alias(name, CHAMPION, version)
    client.set_registered_model_tag(name, PROMOTED_AT, repr(time.time()))
    client.set_registered_model_tag(name, PROMOTED_VERSION, str(version))
