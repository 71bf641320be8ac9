"""Threshold rules -> one alert decision per window, with a reason a person can act on.

Three independent rules; any one raises the alert:
  - feature drift: at least `min_drifted_features` inputs drifted at the per-test alpha (Bonferroni);
  - prediction drift: the predicted probability drifted at the same per-test alpha;
  - quality drop: on enough labelled rows, the window's metric fell more than `max_drop` below the
    reference's.
Pure functions of the summary and the config, so the rules are tested without Evidently or MLflow.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from monitoring.config import DriftConfig, QualityConfig
from monitoring.drift import ColumnDrift, DriftSummary

ALERT_EXIT_CODE = 1  # `python -m monitoring run` exits with this when a threshold is crossed
MAX_LISTED_FEATURES = 5


@dataclass(frozen=True)
class Alert:
    reasons: list[str] = field(default_factory=list)
    drift: bool = False  # data or prediction drift crossed its threshold
    quality: bool = False  # labelled quality dropped past its threshold

    @property
    def triggered(self) -> bool:
        return self.drift or self.quality

    def message(self, model: str, version: str) -> str:
        if not self.triggered:
            return f"OK: no drift or quality alert for {model} v{version}"
        return f"ALERT for {model} v{version}: " + "; ".join(self.reasons)


def describe(columns: list[ColumnDrift]) -> str:
    strongest = sorted(columns, key=lambda column: column.p_value)
    shown = ", ".join(f"{c.column} (p={c.p_value:.1e})" for c in strongest[:MAX_LISTED_FEATURES])
    return shown + (", ..." if len(columns) > MAX_LISTED_FEATURES else "")


def feature_drift_reason(summary: DriftSummary, config: DriftConfig) -> str | None:
    drifted = summary.drifted_features
    if len(drifted) < config.min_drifted_features:
        return None
    return (f"{len(drifted)} of {len(summary.features)} features drifted at p < {summary.alpha_per_test:.1e}: "
            f"{describe(drifted)}")


def prediction_drift_reason(summary: DriftSummary) -> str | None:
    if summary.prediction is None or not summary.prediction.drifted:
        return None
    return f"prediction drift (p={summary.prediction.p_value:.1e} < {summary.alpha_per_test:.1e})"


def quality_drop_reason(summary: DriftSummary, config: QualityConfig) -> str | None:
    if summary.quality is None:
        return None
    window = summary.quality.get(config.metric)
    reference = summary.reference_quality.get(config.metric)
    if window is None or reference is None or window != window or reference != reference:  # NaN: undefined
        return None
    drop = reference - window
    if drop <= config.max_drop:
        return None
    return (f"quality drop on {summary.labelled_rows} labelled rows: {config.metric} {window:.3f} vs reference "
            f"{reference:.3f} (drop {drop:.3f} > {config.max_drop})")


def evaluate_alert(summary: DriftSummary, drift: DriftConfig, quality: QualityConfig) -> Alert:
    drift_reasons = [r for r in (feature_drift_reason(summary, drift), prediction_drift_reason(summary)) if r]
    quality_reason = quality_drop_reason(summary, quality)
    return Alert(
        reasons=drift_reasons + ([quality_reason] if quality_reason else []),
        drift=bool(drift_reasons),
        quality=quality_reason is not None,
    )
