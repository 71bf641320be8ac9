"""The alert rules alone: hand-made summaries in, alert decisions (and exit codes) out."""

from __future__ import annotations

from monitoring.alerts import ALERT_EXIT_CODE, evaluate_alert
from monitoring.config import DriftConfig, QualityConfig
from monitoring.drift import ColumnDrift, DriftSummary

ALPHA = 0.0005
DRIFT, QUALITY = DriftConfig(), QualityConfig(metric="roc_auc", max_drop=0.05, min_labelled_rows=200)


def column(name: str, p_value: float) -> ColumnDrift:
    return ColumnDrift(name, "ks", p_value, p_value < ALPHA)


def summary(*, drifted: tuple[str, ...] = (), prediction_p: float = 0.5, window_auc: float | None = None,
            reference_auc: float = 0.84) -> DriftSummary:
    features = [column(name, 1e-9 if name in drifted else 0.3) for name in ("tenure", "Contract", "MonthlyCharges")]
    return DriftSummary(
        rows=500, reference_rows=1400, alpha_per_test=ALPHA, features=features,
        prediction=column("probability", prediction_p), labelled_rows=400 if window_auc is not None else 0,
        quality={"roc_auc": window_auc} if window_auc is not None else None,
        reference_quality={"roc_auc": reference_auc},
    )


def test_no_drift_and_steady_quality_raise_nothing():
    alert = evaluate_alert(summary(window_auc=0.83), DRIFT, QUALITY)
    assert not alert.triggered and alert.reasons == []
    assert alert.message("churn", "3").startswith("OK")


def test_one_drifted_feature_is_enough_by_default():
    alert = evaluate_alert(summary(drifted=("MonthlyCharges",)), DRIFT, QUALITY)
    assert alert.triggered and alert.drift and not alert.quality
    assert "1 of 3 features" in alert.reasons[0] and "MonthlyCharges" in alert.reasons[0]
    assert ALERT_EXIT_CODE == 1


def test_min_drifted_features_raises_the_bar():
    strict = DriftConfig(min_drifted_features=2)
    assert not evaluate_alert(summary(drifted=("tenure",)), strict, QUALITY).triggered
    assert evaluate_alert(summary(drifted=("tenure", "Contract")), strict, QUALITY).triggered


def test_prediction_drift_alone_raises_the_alert():
    alert = evaluate_alert(summary(prediction_p=1e-6), DRIFT, QUALITY)
    assert alert.drift and alert.reasons == ["prediction drift (p=1.0e-06 < 5.0e-04)"]


def test_quality_drop_past_the_threshold_raises_a_quality_alert():
    alert = evaluate_alert(summary(window_auc=0.75), DRIFT, QUALITY)
    assert alert.quality and not alert.drift
    assert "roc_auc 0.750 vs reference 0.840" in alert.reasons[0]


def test_small_quality_drop_or_missing_labels_raise_nothing():
    assert not evaluate_alert(summary(window_auc=0.80), DRIFT, QUALITY).triggered  # drop 0.04 <= 0.05
    assert not evaluate_alert(summary(window_auc=None), DRIFT, QUALITY).triggered
    assert not evaluate_alert(summary(window_auc=float("nan")), DRIFT, QUALITY).triggered
