"""Typed monitoring config: every threshold, window size and scenario parameter, from configs/monitoring.yaml.

The generic sections (window, drift, quality, retrain, simulate) apply to every model; the `models`
section holds what differs per project: its MLflow experiment, its training config for retraining, and
the parameters of its drift scenarios. Unknown keys are errors, as everywhere in the repo.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from modelpkg.contract import HOLDOUT_ARTIFACT
from monitoring.scenarios import scenarios_for
from pipelines.common.config import Config, OutcomeCosts, PromotionConfig, load_config

DEFAULT_CONFIG = "configs/monitoring.yaml"


class WindowConfig(Config):
    rows: int = Field(500, ge=10)  # default window: the last N predictions (power: see docs/monitoring.md)
    min_rows: int = Field(100, ge=10)  # fewer rows than this is an error: too little to test anything
    max_rows: int = Field(100_000, ge=10)  # a --start/--end window holding more is an error: memory is bounded


# Evidently's p-value tests. Distance measures (wasserstein, jensenshannon, psi) are left out on purpose:
# they have no false-alarm rate to split across columns, so no Bonferroni rule can be built on them.
NumericTest = Literal["ks", "mannw", "t_test", "anderson", "cramer_von_mises"]
CategoricalTest = Literal["chisquare", "z", "g_test", "fisher_exact"]


class DriftConfig(Config):
    num_method: NumericTest = "ks"  # Evidently test for numeric columns (p-value: smaller = more drift)
    cat_method: CategoricalTest = "chisquare"  # ... and for categorical columns
    family_alpha: float = Field(0.01, gt=0, lt=1)  # false-alarm budget per window, shared by all tests
    min_drifted_features: int = Field(1, ge=1)  # alert when at least this many features drift
    prediction_drift: bool = True  # also test the predicted probability (counts as one more test)


class QualityConfig(Config):
    # Higher-is-better metrics only (a drop is a fall). roc_auc and accuracy suit every model; f1 (of the
    # positive class) only binary ones and macro_f1 only multi-class ones: the job refuses a metric the
    # watched model does not define (monitoring.drift.check_quality_metric) rather than swap it silently.
    metric: Literal["roc_auc", "accuracy", "f1", "macro_f1"] = "roc_auc"
    max_drop: float = Field(0.05, gt=0)  # alert when window metric < reference metric - max_drop
    min_labelled_rows: int = Field(200, ge=10)  # fewer labelled rows: quality is not judged


class RetrainConfig(PromotionConfig):
    """Which recent rows retraining uses, and the repo's one promotion rule with every guard
    (pipelines.common.promotion: judge rows, gain margin, test split, cost, cooldown)."""

    recent_rows: int = Field(2000, ge=20)  # newest labelled predictions to learn from and judge on (SQL LIMIT)
    eval_fraction: float = Field(0.5, gt=0, lt=1)  # newest share kept out of training, to compare on
    confidence: float = Field(0.8, gt=0.5, lt=1)  # the gain's lower bound holds with this probability ...
    min_gain: float = Field(0.003, ge=0)  # ... and must exceed this (docs/monitoring.md: make bench-promotion)


class SimulateConfig(Config):
    window_rows: int = Field(500, ge=1)  # rows per simulated window
    batch_rows: int = Field(100, ge=1)  # records per POST request
    label_delay_windows: int = Field(1, ge=0)  # labels of window k are posted after window k+delay
    label_share: float = Field(1.0, ge=0, le=1)  # share of predictions that ever get ground truth
    plan: list[str] = Field(default_factory=lambda: ["no_drift", "no_drift"])  # windows, in order


class ModelMonitoring(Config):
    """What one registered model needs beyond the generic settings."""

    experiment: str  # MLflow experiment for monitoring runs, e.g. churn-monitoring
    alias: str = "champion"  # the version under watch
    train_config: str  # training config used when retraining, e.g. configs/churn.yaml
    train_label_column: str  # label column name the training pipeline expects in extra data
    holdout_artifact: str = HOLDOUT_ARTIFACT  # in the contract's run: the simulator's source rows
    costs: OutcomeCosts | None = None  # binary models: promotion must not raise the cost per decision
    scenarios: dict[str, dict[str, float | int | str]] = Field(default_factory=dict)
    plan: list[str] | None = None  # this model's simulated windows (default: simulate.plan)


class MonitoringConfig(Config):
    seed: int = 0
    reports_dir: str = "reports/monitoring"
    # The server's address, its prediction log and its admin key variable are read from the serving
    # config (with its environment overrides), so the two sides can never disagree about them.
    serving_config: str = "configs/serving.yaml"
    request_timeout_seconds: float = Field(30.0, gt=0)
    window: WindowConfig = WindowConfig()
    drift: DriftConfig = DriftConfig()
    quality: QualityConfig = QualityConfig()
    retrain: RetrainConfig = RetrainConfig()
    simulate: SimulateConfig = SimulateConfig()
    models: dict[str, ModelMonitoring]

    @model_validator(mode="after")
    def check_scenario_names(self) -> "MonitoringConfig":
        """A misspelt scenario or parameter would otherwise be ignored and the scenario's default used."""
        for name, model in self.models.items():
            known = scenarios_for(name)
            for scenario, params in model.scenarios.items():
                where = f"models.{name}.scenarios.{scenario}"
                if scenario not in known:
                    raise ValueError(f"{where}: unknown scenario for {name} (known: {', '.join(known)})")
                unknown = sorted(set(params) - set(known[scenario].parameter_names()))
                if unknown:
                    raise ValueError(f"{where}: unknown parameter(s) {unknown} "
                                     f"(accepts: {', '.join(known[scenario].parameter_names()) or 'none'})")
            for scenario in model.plan or []:
                if scenario not in known:
                    raise ValueError(f"models.{name}.plan: unknown scenario '{scenario}' (known: {', '.join(known)})")
        return self

    def model(self, name: str) -> ModelMonitoring:
        if name not in self.models:
            raise ValueError(f"model '{name}' has no monitoring section (configured: {', '.join(self.models)})")
        return self.models[name]

    def reports_for(self, model: str) -> Path:
        return Path(self.reports_dir) / model


def load_monitoring_config(path: str | Path = DEFAULT_CONFIG) -> MonitoringConfig:
    return load_config(path, MonitoringConfig)
