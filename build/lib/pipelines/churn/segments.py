"""Customer segments with KMeans: who are our customers, and where does churn concentrate?

k is chosen by silhouette score (how much closer each customer is to its own segment than to the
next), on a sample because silhouette costs O(n^2). Segments then label every customer, so evaluation
can report model quality per segment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score
from sklearn.pipeline import Pipeline

from pipelines.churn import schema
from pipelines.churn.config import SegmentConfig
from pipelines.churn.features import features, linear_preprocessor
from pipelines.common.plots import log_figure, new_figure

SEGMENT_COLUMN = "segment"


@dataclass(frozen=True)
class SegmentModel:
    pipeline: Pipeline  # features -> KMeans
    k: int
    silhouettes: dict[int, float]


def fit_segments(train: pd.DataFrame, config: SegmentConfig, seed: int) -> SegmentModel:
    """Fit KMeans for each k in range and keep the k with the best silhouette."""
    encoder = linear_preprocessor(numeric_bins=0).fit(features(train))
    encoded = encoder.transform(features(train))
    rng = np.random.default_rng(seed)
    sample = rng.choice(len(encoded), size=min(config.sample_rows, len(encoded)), replace=False)
    silhouettes = {}
    for k in range(config.k_min, config.k_max + 1):
        labels = KMeans(n_clusters=k, n_init=5, random_state=seed).fit_predict(encoded[sample])
        silhouettes[k] = float(silhouette_score(encoded[sample], labels, random_state=seed))
    best_k = max(silhouettes, key=silhouettes.get)
    pipeline = Pipeline([("features", encoder), ("kmeans", KMeans(n_clusters=best_k, n_init=10, random_state=seed))])
    pipeline.fit(features(train))
    return SegmentModel(pipeline, best_k, silhouettes)


def assign_segments(model: Pipeline, frame: pd.DataFrame) -> pd.Series:
    return pd.Series(model.predict(features(frame)), index=frame.index, name=SEGMENT_COLUMN)


def segment_profiles(frame: pd.DataFrame, segments: pd.Series) -> pd.DataFrame:
    """One row per segment: size, churn rate and what its customers look like."""
    data = frame.assign(**{SEGMENT_COLUMN: segments.values})
    grouped = data.groupby(SEGMENT_COLUMN)
    profile = pd.DataFrame({
        "customers": grouped.size(),
        "churn_rate": grouped[schema.LABEL_COLUMN].mean(),
        "tenure_mean": grouped["tenure"].mean(),
        "monthly_charges_mean": grouped["MonthlyCharges"].mean(),
        "month_to_month_share": grouped["Contract"].apply(lambda s: (s == "Month-to-month").mean()),
        "fiber_share": grouped["InternetService"].apply(lambda s: (s == "Fiber optic").mean()),
        "no_internet_share": grouped["InternetService"].apply(lambda s: (s == "No").mean()),
    })
    return profile.round(3).reset_index()


def log_silhouette_plot(model: SegmentModel) -> None:
    fig, ax = new_figure()
    ks = list(model.silhouettes)
    ax.plot(ks, [model.silhouettes[k] for k in ks], marker="o")
    ax.axvline(model.k, color="tab:red", linestyle="--", label=f"chosen k = {model.k}")
    ax.set(xlabel="number of segments k", ylabel="silhouette score", title="Choosing k for customer segments")
    ax.legend()
    log_figure(fig, "segments/silhouette.png")
