"""YAML configs validated into typed, frozen pydantic models at start-up.

Every tunable number lives in `configs/*.yaml`. Unknown keys are errors (a typo must not silently fall
back to a default), and the error names the offending key and file. Imports only pydantic and yaml, so
serving and monitoring can use it too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class Config(BaseModel):
    """Base class of every config section: strict (no unknown keys) and immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ConfigError(ValueError):
    """A config file that cannot be read or does not match its schema."""


C = TypeVar("C", bound=BaseModel)


def load_config(path: str | Path, schema: type[C]) -> C:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from error
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        return schema.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in e['loc']) or '<root>'}: {e['msg']}" for e in error.errors()
        )
        raise ConfigError(f"{path}: {problems}") from error


class DecisionConfig(Config):
    """The paired-bootstrap rule (pipelines.common.bootstrap.decide): which metric, how many resamples, the
    confidence of the gain's lower bound and the margin it must clear. Gate, export and retraining each
    carry one."""

    metric: Literal["roc_auc", "log_loss", "macro_f1"] = "roc_auc"
    bootstrap_samples: int = Field(1000, ge=100)
    confidence: float = Field(0.8, gt=0.5, lt=1)  # the gain's lower bound holds with this probability
    min_gain: float = Field(0.0, ge=0)  # ... and must exceed this (metric units; 0: any sure gain wins)


class OutcomeCosts(Config):
    """What one decision costs a binary model's owner, per row, by outcome (positive = the contract's
    positive label, predicted at the model's served threshold)."""

    true_positive: float = Field(ge=0)
    false_positive: float = Field(ge=0)
    false_negative: float = Field(ge=0)
    true_negative: float = Field(0.0, ge=0)


class PromotionConfig(DecisionConfig):
    """The guards an automatic promotion passes besides the gain (pipelines.common.promotion): enough judge
    rows, no regression on the curated test split nor on cost at the served threshold, a cooldown."""

    min_judge_rows: int = Field(200, ge=100)  # fewer labelled rows to judge on: no promotion
    test_metrics: list[Literal["roc_auc", "log_loss", "macro_f1"]] = Field(
        default_factory=lambda: ["roc_auc", "log_loss"], min_length=1)  # registered `test_<metric>`s compared
    test_tolerance: float = Field(0.01, ge=0)  # challenger may trail the champion by this much, no more
    cost_tolerance: float = Field(0.02, ge=0)  # cost per row may rise by this share, no more
    cooldown_hours: float = Field(24.0, ge=0)  # since the last promotion (registry tag)


class ReleaseConfig(Config):
    """What pipelines.common.release needs from a project's `export` section (projects add their own keys)."""

    parity_atol: float = Field(1e-4, gt=0)  # the package's probabilities vs the native model's, every test row
    reference_rows: int = Field(1000, ge=10)  # valid rows (with this package's predictions) monitoring compares with
    promotion: DecisionConfig = DecisionConfig()  # a new version takes champion only when it beats it on test
