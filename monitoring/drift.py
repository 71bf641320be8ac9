"""Reference vs a production window -> a typed drift and quality summary, and Evidently's HTML reports.

Three questions per window:
  1. data drift: does any descriptor column's distribution differ from the reference? The columns are the
     model codec's descriptors (`codec.descriptors`: the inputs of a tabular model, brightness, contrast,
     size ... of images, length and character shares of texts), numeric or categorical as the codec says;
     one p-value test per column (KS for numbers, chi-square for categories by default)
  2. prediction drift: does the model's reported probability differ? (the same test on `probability`:
     P(positive) of a binary model, the winning class's probability of a multi-class one)
  3. quality: on the rows whose ground truth has arrived, is the model still as good? (ROC-AUC, accuracy and
     F1 of binary models, ROC-AUC one-vs-rest, accuracy and macro F1 of multi-class ones, all from
     pipelines.common.metrics, the functions export measured the model with; computed the same way on the
     reference)

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
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from evidently import BinaryClassification, DataDefinition, Dataset, MulticlassClassification, Report
from evidently.core.report import Snapshot
from evidently.legacy.calculations.stattests import get_stattest
from evidently.legacy.core import ColumnType
from evidently.metrics import ValueDrift
from evidently.presets import ClassificationPreset, DataDriftPreset

from modelpkg.contract import LABEL, PREDICTED_LABEL, PROBABILITY, class_probability_column
from monitoring.config import DriftConfig, QualityConfig
from modelpkg.runtime import class_indices
from monitoring.reference import WatchedModel
from pipelines.common.bootstrap import probability_matrix
from pipelines.common.metrics import classification_metrics

VALUE_DRIFT_TYPE = "evidently:metric_v2:ValueDrift"  # how a per-column drift result names itself
P_VALUE_TOLERANCE = 1e-9  # report and decision compute the same test: they must agree to rounding
# The quality metrics an alert may watch (higher is better, so a drop is a fall): F1 of the positive class
# is defined for binary models only, macro F1 (the mean of every class's F1) for multi-class ones.
QUALITY_METRICS = {"binary": ("roc_auc", "accuracy", "f1"), "multiclass": ("roc_auc", "accuracy", "macro_f1")}


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    method: str
    p_value: float  # Evidently's drift score for a p-value test: smaller = stronger evidence of drift
    drifted: bool  # p_value < the per-test alpha
    constant: bool = False  # one and the same value on both sides: nothing to test (p = 1 by definition)


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
    return len(model.descriptors) + (1 if config.prediction_drift else 0)


def alpha_per_test(model: WatchedModel, config: DriftConfig) -> float:
    """Bonferroni: T tests at family_alpha / T each give at most family_alpha false alarms per window."""
    return config.family_alpha / tests_per_window(model, config)


def binary(model: WatchedModel) -> bool:
    return len(model.contract.labels) == 2


def positive_label(model: WatchedModel) -> str:
    """The class `probability` is about for a binary model: the contract's positive class."""
    return model.contract.labels[model.contract.positive_index]


def check_quality_metric(model: WatchedModel, quality: QualityConfig) -> None:
    """A metric the model's class count does not define is a config error, said before any window is judged
    (not silently mapped: F1 of one class and macro F1 are different numbers with different reference values)."""
    kind = "binary" if binary(model) else "multiclass"
    if quality.metric not in QUALITY_METRICS[kind]:
        raise ValueError(f"quality.metric {quality.metric!r} is not defined for {model.name} ({kind}, classes "
                         f"{model.contract.labels}): use one of {', '.join(QUALITY_METRICS[kind])}")


def labelled(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows whose ground truth has arrived (the prediction log holds None until feedback comes)."""
    return frame[frame[LABEL].notna()] if LABEL in frame.columns else frame.iloc[:0]


def class_probability_columns(model: WatchedModel) -> list[str]:
    return [class_probability_column(label) for label in model.contract.labels]


def data_definition(model: WatchedModel) -> DataDefinition:
    """Column types from the model's descriptors (numeric or categorical), never guessed from values."""
    return DataDefinition(numerical_columns=[*(d.name for d in model.descriptors if d.numeric), PROBABILITY],
                          categorical_columns=[d.name for d in model.descriptors if not d.numeric])


def as_dataset(frame: pd.DataFrame, columns: list[str], definition: DataDefinition) -> Dataset:
    return Dataset.from_pandas(frame[columns].reset_index(drop=True), data_definition=definition)


def drift_report(reference: pd.DataFrame, current: pd.DataFrame, model: WatchedModel, config: DriftConfig) -> Snapshot:
    alpha = alpha_per_test(model, config)
    columns = model.descriptor_names
    metrics: list = [DataDriftPreset(
        columns=columns, num_method=config.num_method, cat_method=config.cat_method, threshold=alpha,
        # Evidently's headline "dataset drift" then agrees with our rule instead of its 50 % default.
        drift_share=config.min_drifted_features / len(columns),
    )]
    if config.prediction_drift:
        metrics.append(ValueDrift(column=PROBABILITY, method=config.num_method, threshold=alpha))
    definition = data_definition(model)
    with warnings.catch_warnings():
        # A descriptor holding one value (every image the same size) has no correlation to draw: NumPy's
        # 0/0 warning says only that. The p-values are checked against ours afterwards.
        warnings.filterwarnings("ignore", "invalid value encountered in divide", RuntimeWarning)
        return Report(metrics).run(as_dataset(current, [*columns, PROBABILITY], definition),
                                   as_dataset(reference, [*columns, PROBABILITY], definition))


def column_p_values(snapshot: Snapshot) -> dict[str, tuple[str, float]]:
    """column -> (test method, p-value), read from the report's own results."""
    found = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if config.get("type") == VALUE_DRIFT_TYPE:
            found[config["column"]] = (str(config.get("method")), float(metric["value"]))
    return found


def frame_probabilities(frame: pd.DataFrame, model: WatchedModel) -> np.ndarray:
    """[rows, classes] probabilities from a frame's prediction columns: binary frames hold P(positive)
    only, multi-class frames one column per class."""
    if not binary(model):
        return frame[class_probability_columns(model)].to_numpy(dtype=np.float64)
    return probability_matrix(frame[PROBABILITY], positive=model.contract.positive_index)


def quality_metrics(frame: pd.DataFrame, model: WatchedModel) -> dict[str, float]:
    """Metrics on labelled rows (pipelines.common.metrics): ROC-AUC from the probabilities, accuracy and F1
    (binary) or macro F1 (multi-class) from the labels the model answered."""
    y = class_indices(frame[LABEL].astype(str), model.contract.labels, model.name)
    predicted = class_indices(frame[PREDICTED_LABEL].astype(str), model.contract.labels, model.name)
    return classification_metrics("", y, frame_probabilities(frame, model), predicted, model.contract.positive_index)


def quality_frame(frame: pd.DataFrame, model: WatchedModel) -> tuple[pd.DataFrame, DataDefinition]:
    """The labelled rows as Evidently's classification report reads them, and their definition. Binary:
    `probability` is P(positive). Multi-class: Evidently wants one probability column per class, named
    by the class label itself, so `probability__<label>` columns are renamed for the report."""
    if binary(model):
        task = BinaryClassification(target=LABEL, prediction_labels=PREDICTED_LABEL, prediction_probas=PROBABILITY,
                                    pos_label=positive_label(model))
        definition = DataDefinition(numerical_columns=[PROBABILITY], categorical_columns=[LABEL, PREDICTED_LABEL],
                                    classification=[task])
        return frame[[LABEL, PREDICTED_LABEL, PROBABILITY]].astype({LABEL: str, PREDICTED_LABEL: str}), definition
    labels = list(model.contract.labels)
    renamed = frame[[LABEL, PREDICTED_LABEL, *class_probability_columns(model)]].rename(
        columns=dict(zip(class_probability_columns(model), labels))).astype({LABEL: str, PREDICTED_LABEL: str})
    task = MulticlassClassification(target=LABEL, prediction_labels=PREDICTED_LABEL, prediction_probas=labels)
    definition = DataDefinition(numerical_columns=labels, categorical_columns=[LABEL, PREDICTED_LABEL],
                                classification=[task])
    return renamed, definition


def quality_report(reference: pd.DataFrame, current: pd.DataFrame, model: WatchedModel) -> Snapshot:
    current_rows, definition = quality_frame(current, model)
    reference_rows, _ = quality_frame(reference, model)
    with warnings.catch_warnings():
        # Class probabilities are a float32 softmax: they sum to one within float32 rounding, which
        # scikit-learn's float64 check calls "not summing to one".
        warnings.filterwarnings("ignore", "The y_prob values do not sum to one", UserWarning)
        return Report([ClassificationPreset()]).run(
            Dataset.from_pandas(current_rows.reset_index(drop=True), data_definition=definition),
            Dataset.from_pandas(reference_rows.reset_index(drop=True), data_definition=definition))


def single_value(reference: pd.Series, current: pd.Series) -> bool:
    """Both sides hold one and the same value (every image PNG, say): nothing can have moved."""
    values = set(reference.unique()) | set(current.unique())
    return len(values) == 1


def judge_column(reference: pd.Series, current: pd.Series, numeric: bool, config: DriftConfig,
                 alpha: float, name: str) -> ColumnDrift:
    """One column, one Evidently stat test, as its DataDriftPreset runs it (infinities and NaN dropped).
    A column holding one and the same value on both sides gets p = 1, marked `constant`: chi-square has
    no degrees of freedom there, and Evidently's report shows NaN or 0 for it (check_report_agrees skips it)."""
    kind, method = (ColumnType.Numerical, config.num_method) if numeric else (ColumnType.Categorical, config.cat_method)
    reference = reference.replace([-np.inf, np.inf], np.nan).dropna()
    current = current.replace([-np.inf, np.inf], np.nan).dropna()
    if reference.empty or current.empty:
        raise ValueError(f"column '{name}' holds no values in the {'reference' if reference.empty else 'window'}")
    if not numeric:
        reference, current = reference.astype(str), current.astype(str)
    else:
        reference, current = reference.astype(np.float64), current.astype(np.float64)
    if single_value(reference, current):
        return ColumnDrift(name, method, 1.0, False, constant=True)
    result = get_stattest(reference, current, kind, method)(reference, current, kind, alpha)
    return ColumnDrift(name, method, float(result.drift_score), bool(result.drift_score < alpha))


def judge_columns(reference: pd.DataFrame, current: pd.DataFrame, model: WatchedModel,
                  config: DriftConfig) -> tuple[list[ColumnDrift], ColumnDrift | None]:
    alpha = alpha_per_test(model, config)
    features = [judge_column(reference[d.name], current[d.name], d.numeric, config, alpha, d.name)
                for d in model.descriptors]
    prediction = (judge_column(reference[PROBABILITY], current[PROBABILITY], True, config, alpha, PROBABILITY)
                  if config.prediction_drift else None)
    return features, prediction


def check_report_agrees(summary: DriftSummary, snapshot: Snapshot) -> None:
    """The HTML must show the p-values the alert was decided on; a mismatch is a bug, not a warning.
    A constant column (one value on both sides) has no test to agree on: Evidently shows NaN or 0 there."""
    shown = column_p_values(snapshot)
    for column in summary.features + ([summary.prediction] if summary.prediction else []):
        method, p_value = shown.get(column.column, ("missing", float("nan")))
        if column.constant and column.column in shown:
            continue
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
    """Compare one window with the reference; both frames hold the codec's descriptor columns, the
    prediction columns and `label` (None where ground truth has not arrived yet). `reports=False` skips
    the HTML reports, which only draw what the summary already holds (the benchmark judges thousands)."""
    check_quality_metric(model, quality)
    if current.empty:
        raise ValueError(f"empty window: nothing to compare with the reference of {model.name} v{model.version}")
    features, prediction = judge_columns(reference, current, model, drift)
    window_labelled = labelled(current)
    judged = len(window_labelled) >= quality.min_labelled_rows
    summary = DriftSummary(
        rows=len(current),
        reference_rows=len(reference),
        alpha_per_test=alpha_per_test(model, drift),
        features=features,
        prediction=prediction,
        labelled_rows=len(window_labelled),
        quality=quality_metrics(window_labelled, model) if judged else None,
        reference_quality=quality_metrics(reference, model),
    )
    if not reports:
        return DriftResult(summary, None, None)
    snapshot = drift_report(reference, current, model, drift)
    check_report_agrees(summary, snapshot)
    return DriftResult(summary, snapshot, quality_report(reference, window_labelled, model) if judged else None)


def minus_log10(p_value: float) -> float:
    """For plots: -log10(p), capped so a p-value of exactly 0 still draws."""
    return float(-np.log10(max(p_value, 1e-300)))
