"""Features shared by every churn model: one ColumnTransformer per model family.

Trees get one-hot categories and raw numbers (no scaling: splits don't care, and it keeps the ONNX
graph bit-exact in float32). Linear models get one-hot categories, standardised numbers and quantile
bins of tenure and charges, so a straight line can still bend where churn does (the first months).
"""

from __future__ import annotations

import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.preprocessing import KBinsDiscretizer, OneHotEncoder, StandardScaler

from pipelines.churn import schema

BINNED_COLUMNS = ("tenure", "MonthlyCharges", "TotalCharges")


def one_hot() -> OneHotEncoder:
    """Categories fixed by the schema: the encoding never depends on which rows a split got."""
    categories = [list(values) for values in schema.CATEGORICAL.values()]
    return OneHotEncoder(categories=categories, handle_unknown="ignore", sparse_output=False)


def tree_preprocessor(exclude: tuple[str, ...] = ()) -> ColumnTransformer:
    """`exclude` drops numeric columns, e.g. a regression target and its leaks."""
    numbers = [column for column in schema.NUMERIC if column not in exclude]
    return ColumnTransformer(
        [("categories", one_hot(), list(schema.CATEGORICAL)), ("numbers", "passthrough", numbers)],
        verbose_feature_names_out=False,
    )


def linear_preprocessor(numeric_bins: int) -> ColumnTransformer:
    parts = [
        ("categories", one_hot(), list(schema.CATEGORICAL)),
        ("numbers", StandardScaler(), list(schema.NUMERIC)),
    ]
    if numeric_bins > 0:
        bins = KBinsDiscretizer(n_bins=numeric_bins, encode="onehot-dense", strategy="quantile")
        parts.append(("bins", bins, list(BINNED_COLUMNS)))
    return ColumnTransformer(parts, verbose_feature_names_out=False)


def features(frame: pd.DataFrame) -> pd.DataFrame:
    """The model inputs of a validated customer frame, in schema order (ids and label dropped)."""
    return frame[list(schema.FEATURES)]


def target(frame: pd.DataFrame) -> pd.Series:
    return frame[schema.LABEL_COLUMN].astype(int)
