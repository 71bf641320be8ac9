"""Reference vs a production window -> a typed drift and quality summary, and Evidently's HTML reports.

Three questions per window:
  1. data drift: does any input column's distribution differ from the reference? (one p-value test per
     column: KS for numbers, chi-square for categories by default)
  2. prediction drift: does the model's predicted probability differ? (the same test on `probability`)
  3. quality: on the rows whose ground truth has arrived, is the model still as good? (ROC-AUC, accuracy
     and F1 from scikit-learn, computed the same way on the reference)

The p-values come from Evidently's own stat tests (`get_stattest`, what its DataDriftPreset calls per
column), run directly: that takes milliseconds, while building the report (plotly figures for the
HTML) takes seconds. The monitoring job builds the reports too (DataDriftPreset + ValueDrift, and
ClassificationPreset on labelled rows) and checks that they show the very p-values the alert used; the
benchmark, which judges thousands of windows, skips them.

Every test is a p-value test, so one rule controls false alarms: with T tests per window each is run at
family_alpha / T (Bonferroni), which keeps P(any false alarm in a no-drift window) <= family_alpha.
docs/monitoring.md shows why Evidently's own dataset-level rule (half the columns drifted) is not used.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from evidently import BinaryClassification, DataDefinition, Dataset, Report
from evidently.core.report import Snapshot
from evidently.legacy.calculations.stattests import get_stattest
from evidently.legacy.core import ColumnType
from evidently.metrics import ValueDrift
from evidently.presets import ClassificationPreset, DataDriftPreset
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from monitoring.config import DriftConfig, QualityConfig
from monitoring.reference import LABEL, PREDICTED_LABEL, PROBABILITY, WatchedModel

VALUE_DRIFT_TYPE = "evidently:metric_v2:ValueDrift"  # how a per-column drift result names itself
P_VALUE_TOLERANCE = 1e-9  # report and decision compute the same test: they must agree to rounding


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    method: str
    p_value: float  # Evidently's drift score for a p-value test: smaller = stronger evidence of drift
    drifted: bool  # p_value < the per-test alpha


@dataclass(frozen=True)
class DriftSummary:
    rows: int
    reference_rows: int
    alpha_per_test: float
    features: list[ColumnDrift]
    prediction: ColumnDrift | None
    labelled_rows: int = 0
    quality: dict[str, float] | None = None  # window metrics on labelled rows; None when too few
    reference_quality: dict[str, float] = field(default_factory=dict)

    @property
    def drifted_features(self) -> list[ColumnDrift]:
        return [column for column in self.features if column.drifted]

    @property
    def share_drifted(self) -> float:
        return len(self.drifted_features) / len(self.features) if self.features else 0.0

    def as_metrics(self) -> dict[str, float]:
        """MLflow metric names, `<split>_<metric>` style; drift scores are p-values."""
        metrics = {
            "window_rows": float(self.rows),
            "window_labelled_rows": float(self.labelled_rows),
            "window_share_drifted": self.share_drifted,
            "window_drifted_features": float(len(self.drifted_features)),
            "window_alpha_per_test": self.alpha_per_test,
        }
        metrics |= {f"drift_score_{column.column}": column.p_value for column in self.features}
        if self.prediction is not None:
            metrics["window_prediction_drift_score"] = self.prediction.p_value
        metrics |= {f"window_{name}": value for name, value in (self.quality or {}).items()}
        metrics |= {f"reference_{name}": value for name, value in self.reference_quality.items()}
        return {name: value for name, value in metrics.items() if math.isfinite(value)}

    def as_dict(self) -> dict:
        return asdict(self) | {"share_drifted": self.share_drifted,
                               "drifted_features": [c.column for c in self.drifted_features]}


@dataclass(frozen=True)
class DriftResult:
    summary: DriftSummary
    drift_report: Snapshot | None  # HTML: data drift per column + prediction drift (None: not asked for)
    quality_report: Snapshot | None  # HTML: classification quality on labelled rows, when enough


def tests_per_window(model: WatchedModel, config: DriftConfig) -> int:
    return len(model.features) + (1 if config.prediction_drift else 0)


def alpha_per_test(model: WatchedModel, config: DriftConfig) -> float:
    """Bonferroni: T tests at family_alpha / T each give at most family_alpha false alarms per window."""
    return config.family_alpha / tests_per_window(model, config)


def labelled(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows whose ground truth has arrived (the prediction log holds None until feedback comes)."""
    return frame[frame[LABEL].notna()] if LABEL in frame.columns else frame.iloc[:0]


def data_definition(model: WatchedModel, *, classification: bool = False) -> DataDefinition:
    """Column types from the contract (string inputs are categories), never guessed from values."""
    if not classification:
        return DataDefinition(numerical_columns=[*model.numerical, PROBABILITY], categorical_columns=model.categorical)
    task = BinaryClassification(target=LABEL, prediction_labels=PREDICTED_LABEL, prediction_probas=PROBABILITY,
                                pos_label=model.contract.positive_label)
    return DataDefinition(numerical_columns=[PROBABILITY], categorical_columns=[LABEL, PREDICTED_LABEL],
                          classification=[task])


def as_dataset(frame: pd.DataFrame, columns: list[str], definition: DataDefinition) -> Dataset:
    return Dataset.from_pandas(frame[columns].reset_index(drop=True), data_definition=definition)


def drift_report(reference: pd.DataFrame, current: pd.DataFrame, model: WatchedModel, config: DriftConfig) -> Snapshot:
    alpha = alpha_per_test(model, config)
    metrics: list = [DataDriftPreset(
        columns=model.features, num_method=config.num_method, cat_method=config.cat_method, threshold=alpha,
        # Evidently's headline "dataset drift" then agrees with our rule instead of its 50 % default.
        drift_share=config.min_drifted_features / len(model.features),
    )]
    if config.prediction_drift:
        metrics.append(ValueDrift(column=PROBABILITY, method=config.num_method, threshold=alpha))
    columns = [*model.features, PROBABILITY]
    definition = data_definition(model)
    return Report(metrics).run(as_dataset(current, columns, definition), as_dataset(reference, columns, definition))


def column_p_values(snapshot: Snapshot) -> dict[str, tuple[str, float]]:
    """column -> (test method, p-value), read from the report's own results."""
    found = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if config.get("type") == VALUE_DRIFT_TYPE:
            found[config["column"]] = (str(config.get("method")), float(metric["value"]))
    return found


def quality_metrics(frame: pd.DataFrame, positive_label: str) -> dict[str, float]:
    """Metrics on labelled rows: ROC-AUC from the probability, accuracy and F1 at the contract threshold."""
    truth = (frame[LABEL].astype(str) == positive_label).to_numpy()
    predicted = (frame[PREDICTED_LABEL].astype(str) == positive_label).to_numpy()
    both_classes = 0 < truth.sum() < len(truth)
    return {
        "roc_auc": float(roc_auc_score(truth, frame[PROBABILITY])) if both_classes else float("nan"),
        "accuracy": float(accuracy_score(truth, predicted)),
        "f1": float(f1_score(truth, predicted, zero_division=0.0)),
    }


def quality_report(reference: pd.DataFrame, current: pd.DataFrame, model: WatchedModel) -> Snapshot:
    columns = [LABEL, PREDICTED_LABEL, PROBABILITY]
    definition = data_definition(model, classification=True)
    return Report([ClassificationPreset()]).run(
        as_dataset(current, columns, definition), as_dataset(reference, columns, definition)
    )


def judge_column(reference: pd.Series, current: pd.Series, numeric: bool, config: DriftConfig,
                alpha: float, name: str) -> ColumnDrift:
    """One column, one Evidently stat test, as its DataDriftPreset runs it (infinities and NaN dropped)."""
    kind, method = (ColumnType.Numerical, config.num_method) if numeric else (ColumnType.Categorical, config.cat_method)
    reference = reference.replace([-np.inf, np.inf], np.nan).dropna()
    current = current.replace([-np.inf, np.inf], np.nan).dropna()
    if reference.empty or current.empty:
        raise ValueError(f"column '{name}' holds no values in the {'reference' if reference.empty else 'window'}")
    if not numeric:
        reference, current = reference.astype(str), current.astype(str)
    result = get_stattest(reference, current, kind, method)(reference, current, kind, alpha)
    return ColumnDrift(name, method, float(result.drift_score), bool(result.drift_score < alpha))


def judge_columns(reference: pd.DataFrame, current: pd.DataFrame, model: WatchedModel,
                 config: DriftConfig) -> tuple[list[ColumnDrift], ColumnDrift | None]:
    alpha = alpha_per_test(model, config)
    numeric = set(model.numerical)
    features = [judge_column(reference[c], current[c], c in numeric, config, alpha, c) for c in model.features]
    prediction = (judge_column(reference[PROBABILITY], current[PROBABILITY], True, config, alpha, PROBABILITY)
                  if config.prediction_drift else None)
    return features, prediction


def check_report_agrees(summary: DriftSummary, snapshot: Snapshot) -> None:
    """The HTML must show the p-values the alert was decided on; a mismatch is a bug, not a warning."""
    shown = column_p_values(snapshot)
    for column in summary.features + ([summary.prediction] if summary.prediction else []):
        method, p_value = shown.get(column.column, ("missing", float("nan")))
        if not abs(p_value - column.p_value) <= P_VALUE_TOLERANCE:
            raise RuntimeError(f"Evidently's report shows p={p_value} ({method}) for '{column.column}', "
                               f"the alert used p={column.p_value} ({column.method})")


def run_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    model: WatchedModel,
    drift: DriftConfig,
    quality: QualityConfig,
    *,
    reports: bool = True,
) -> DriftResult:
    """Compare one window with the reference; `current` holds the inputs, `probability`,
    `predicted_label` and `label` (None where ground truth has not arrived yet). `reports=False` skips
    the HTML reports, which only draw what the summary already holds (the benchmark judges thousands)."""
    if current.empty:
        raise ValueError(f"empty window: nothing to compare with the reference of {model.name} v{model.version}")
    features, prediction = judge_columns(reference, current, model, drift)
    window_labelled = labelled(current)
    judged = len(window_labelled) >= quality.min_labelled_rows
    positive = model.contract.positive_label or model.contract.labels[-1]
    summary = DriftSummary(
        rows=len(current),
        reference_rows=len(reference),
        alpha_per_test=alpha_per_test(model, drift),
        features=features,
        prediction=prediction,
        labelled_rows=len(window_labelled),
        quality=quality_metrics(window_labelled, positive) if judged else None,
        reference_quality=quality_metrics(reference, positive),
    )
    if not reports:
        return DriftResult(summary, None, None)
    snapshot = drift_report(reference, current, model, drift)
    check_report_agrees(summary, snapshot)
    return DriftResult(summary, snapshot, quality_report(reference, window_labelled, model) if judged else None)


def minus_log10(p_value: float) -> float:
    """For plots: -log10(p), capped so a p-value of exactly 0 still draws."""
    return float(-np.log10(max(p_value, 1e-300)))
