"""Customer segments: k chosen by silhouette, every customer labelled, one profile row per segment."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.churn import schema
from pipelines.churn.config import SegmentConfig
from pipelines.churn.segments import SEGMENT_COLUMN, assign_segments, fit_segments, segment_profiles

SEED = 0


def three_obvious_groups(customers: pd.DataFrame, per_group: int = 40) -> pd.DataFrame:
    """Three very different real customers, each copied `per_group` times with slightly jittered numbers."""
    prototypes = [
        customers[(customers["Contract"] == "Two year") & (customers["InternetService"] == "No")].iloc[0],
        customers[(customers["Contract"] == "Month-to-month") & (customers["InternetService"] == "Fiber optic")].iloc[0],
        customers[(customers["Contract"] == "One year") & (customers["InternetService"] == "DSL")].iloc[0],
    ]
    frame = pd.DataFrame([row for row in prototypes for _ in range(per_group)]).reset_index(drop=True)
    rng = np.random.default_rng(SEED)
    for column in ("MonthlyCharges", "TotalCharges"):
        frame[column] = frame[column] * rng.uniform(0.99, 1.01, len(frame))
    frame[schema.ID_COLUMN] = [f"copy-{i}" for i in range(len(frame))]
    return frame


@pytest.fixture(scope="module")
def real_segments(train_rows):
    return fit_segments(train_rows, SegmentConfig(k_min=2, k_max=4, sample_rows=300), seed=SEED)


def test_obvious_groups_are_found_as_three_segments(train_rows):
    frame = three_obvious_groups(train_rows)
    model = fit_segments(frame, SegmentConfig(k_min=2, k_max=5, sample_rows=90), seed=SEED)
    assert model.k == 3
    assert model.silhouettes[3] > 0.9
    labels = assign_segments(model.pipeline, frame).to_numpy().reshape(3, -1)
    assert all(len(set(group)) == 1 for group in labels)  # each group is exactly one segment
    assert len({group[0] for group in labels}) == 3


def test_every_k_in_the_range_is_scored_and_the_best_is_chosen(real_segments):
    assert list(real_segments.silhouettes) == [2, 3, 4]
    assert real_segments.k == max(real_segments.silhouettes, key=real_segments.silhouettes.get)
    assert real_segments.pipeline.named_steps["kmeans"].n_clusters == real_segments.k
    assert all(-1.0 <= score <= 1.0 for score in real_segments.silhouettes.values())


def test_segments_label_every_customer_with_a_segment_id(real_segments, holdout_rows):
    segments = assign_segments(real_segments.pipeline, holdout_rows)
    assert segments.name == SEGMENT_COLUMN
    assert segments.index.equals(holdout_rows.index)
    assert set(segments.unique()) <= set(range(real_segments.k))


def test_profiles_have_one_row_per_segment_and_count_every_customer(real_segments, train_rows):
    segments = assign_segments(real_segments.pipeline, train_rows)
    profiles = segment_profiles(train_rows, segments)
    assert profiles[SEGMENT_COLUMN].tolist() == list(range(real_segments.k))
    assert profiles["customers"].sum() == len(train_rows)
    assert profiles["churn_rate"].between(0, 1).all()


def test_profile_numbers_are_the_group_means(train_rows):
    rows = train_rows.head(6)
    segments = pd.Series([0, 0, 0, 1, 1, 1], index=rows.index)
    profiles = segment_profiles(rows, segments).set_index(SEGMENT_COLUMN)
    first = rows.iloc[:3]
    assert profiles.loc[0, "customers"] == 3
    assert profiles.loc[0, "churn_rate"] == round(first[schema.LABEL_COLUMN].mean(), 3)
    assert profiles.loc[0, "tenure_mean"] == round(first["tenure"].mean(), 3)
    assert profiles.loc[0, "month_to_month_share"] == round((first["Contract"] == "Month-to-month").mean(), 3)

