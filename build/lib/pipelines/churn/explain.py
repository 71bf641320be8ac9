"""SHAP explanations of the XGBoost pipeline: which features push a customer towards churn, and how.

XGBoost computes exact TreeSHAP values itself (`pred_contribs`), so no explainer needs to understand
the whole scikit-learn pipeline: we transform the rows, ask the booster, and let `shap` draw.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import mlflow  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import shap  # noqa: E402
import xgboost  # noqa: E402

TOP_FEATURES = 15


def shap_values(pipeline, rows: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    encoded = pipeline.named_steps["features"].transform(rows)
    names = list(pipeline.named_steps["features"].get_feature_names_out())
    encoded = pd.DataFrame(np.asarray(encoded, dtype=np.float32), columns=names)
    booster = pipeline.named_steps["model"].get_booster()
    contributions = booster.predict(xgboost.DMatrix(encoded), pred_contribs=True)
    return contributions[:, :-1], encoded  # the last column is the bias term


def log_shap_summary(pipeline, rows: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    sample = rows.sample(n=min(max_rows, len(rows)), random_state=seed)
    values, encoded = shap_values(pipeline, sample)
    importance = pd.DataFrame({"feature": encoded.columns, "mean_abs_shap": np.abs(values).mean(axis=0)})
    importance = importance.sort_values("mean_abs_shap", ascending=False).reset_index(drop=True)
    mlflow.log_table(importance.round(5), "shap/top_features.json")
    for plot_type, artifact in (("dot", "shap/summary_beeswarm.png"), ("bar", "shap/summary_bar.png")):
        shap.summary_plot(values, encoded, plot_type=plot_type, max_display=TOP_FEATURES, show=False,
                          rng=np.random.default_rng(seed))
        fig = plt.gcf()
        fig.set_size_inches(8, 6)
        fig.tight_layout()
        mlflow.log_figure(fig, artifact)
        plt.close(fig)
    return importance
