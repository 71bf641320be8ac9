"""Typed churn config: every number the churn pipeline uses, validated from configs/churn.yaml."""

from __future__ import annotations

from pydantic import Field, model_validator

from pipelines.common.config import Config, DecisionConfig, ReleaseConfig
from pipelines.common.search import SearchConfig


class DataConfig(Config):
    path: str | None = "data/raw/Telco-Customer-Churn.csv"  # env CHURN_DATA overrides
    synthetic_rows: int = Field(7043, ge=200)  # used only when no CSV is found


class SplitConfig(Config):
    valid_fraction: float = Field(0.2, gt=0, lt=0.5)
    test_fraction: float = Field(0.2, gt=0, lt=0.5)


class FeatureConfig(Config):
    numeric_bins: int = Field(8, ge=0)  # linear models also see quantile bins of tenure and charges


class LogRegConfig(Config):
    C: float = Field(0.1, gt=0)
    max_iter: int = 3000


class TreeConfig(Config):
    max_depth: int = 6
    min_samples_leaf: int = 20


class ForestConfig(Config):
    n_estimators: int = 300
    max_depth: int | None = 10
    min_samples_leaf: int = 5


class XGBoostConfig(Config):
    n_estimators: int = 600
    learning_rate: float = 0.02
    max_depth: int = 2
    min_child_weight: float = 10
    subsample: float = 0.7
    colsample_bytree: float = 0.5
    reg_lambda: float = 5.0


class ModelsConfig(Config):
    logistic_regression: LogRegConfig = LogRegConfig()
    decision_tree: TreeConfig = TreeConfig()
    random_forest: ForestConfig = ForestConfig()
    xgboost: XGBoostConfig = XGBoostConfig()


class SegmentConfig(Config):
    k_min: int = Field(2, ge=2)
    k_max: int = 8
    sample_rows: int = 3000  # silhouette is O(n^2): score k on a sample


class RegressionConfig(Config):
    target: str = "tenure"  # expected customer lifetime in months, from contract and services
    n_estimators: int = 300
    max_depth: int = 4
    learning_rate: float = 0.05


class EvaluateConfig(Config):
    sensitive_attributes: list[str] = ["gender", "SeniorCitizen"]
    shap_rows: int = 500


class OptimizeConfig(SearchConfig):
    """The search (backend, trials, Ray's resources: pipelines/common/search.py) plus XGBoost's stopping rule."""

    early_stopping_rounds: int = 50
    max_estimators: int = 1500


class CostConfig(Config):
    """Business cost of a decision, per customer: picks the threshold that loses least money."""

    missed_churner: float = Field(500.0, gt=0)  # revenue lost when a churner gets no offer
    retention_offer: float = Field(100.0, gt=0)  # what an offer costs, churner or not
    offer_success_rate: float = Field(0.5, ge=0, le=1)  # share of offered churners who stay


class GateConfig(DecisionConfig):
    """Ship the tuned candidate over the baseline only when P(candidate better on valid) >= confidence."""


class ExportConfig(ReleaseConfig):
    refit_on_train_and_valid: bool = True  # the shipped model sees valid too, once choices are made
    reference_rows: int = Field(2000, ge=10)
    # Numeric inputs are served within the range of the run's validated data widened by this share of its
    # width on each side (tenure 0..72 -> 0..108 at 0.5), never past the schema's own limits.
    input_bounds_margin: float = Field(0.5, ge=0)


class ChurnConfig(Config):
    seed: int = 42
    data: DataConfig = DataConfig()
    split: SplitConfig = SplitConfig()
    features: FeatureConfig = FeatureConfig()
    models: ModelsConfig = ModelsConfig()
    segments: SegmentConfig = SegmentConfig()
    regression: RegressionConfig = RegressionConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    optimize: OptimizeConfig = OptimizeConfig()
    cost: CostConfig = CostConfig()
    gate: GateConfig = GateConfig()
    export: ExportConfig = ExportConfig()

    @model_validator(mode="after")
    def check_segments(self) -> "ChurnConfig":
        if self.segments.k_max < self.segments.k_min:
            raise ValueError(f"segments.k_max ({self.segments.k_max}) < segments.k_min ({self.segments.k_min})")
        return self
