"""The shared ColumnTransformers: columns fixed by the schema, unknown categories harmless, bins optional."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.churn import schema
from pipelines.churn.features import (
    BINNED_COLUMNS, features, linear_preprocessor, one_hot, target, tree_preprocessor,
)

ONE_HOT_WIDTH = sum(len(values) for values in schema.CATEGORICAL.values())  # 41 columns


def one_hot_names() -> list[str]:
    return [f"{column}_{value}" for column, values in schema.CATEGORICAL.items() for value in values]


def test_features_are_the_schema_columns_in_order_without_id_or_label(train_rows):
    X = features(train_rows)
    assert list(X.columns) == list(schema.FEATURES)
    assert schema.ID_COLUMN not in X and schema.LABEL_COLUMN not in X


def test_target_is_the_churn_label_as_integers(train_rows):
    y = target(train_rows)
    assert y.dtype == "int64" and set(y.unique()) == {0, 1}


def test_one_hot_categories_come_from_the_schema_not_from_the_rows(train_rows):
    monthly_only = train_rows[train_rows["Contract"] == "Month-to-month"]
    assert set(monthly_only["Contract"]) == {"Month-to-month"}  # one- and two-year contracts are absent
    fitted = tree_preprocessor().fit(features(monthly_only))
    names = list(fitted.get_feature_names_out())
    assert names == one_hot_names() + list(schema.NUMERIC)
    assert "Contract_Two year" in names


def test_column_set_is_the_same_whichever_rows_are_fitted(train_rows, holdout_rows):
    few = tree_preprocessor().fit(features(train_rows.head(20)))
    many = tree_preprocessor().fit(features(holdout_rows))
    assert list(few.get_feature_names_out()) == list(many.get_feature_names_out())
    assert few.transform(features(holdout_rows.head(50))).shape == (50, ONE_HOT_WIDTH + len(schema.NUMERIC))


@pytest.mark.filterwarnings("ignore:Found unknown categories")
def test_unknown_category_encodes_as_all_zeros_without_error(train_rows):
    fitted = tree_preprocessor().fit(features(train_rows))
    row = features(train_rows.head(1)).copy()
    known = fitted.transform(row)[0]
    row["Contract"] = "monthly"  # not in the schema
    unknown = fitted.transform(row)[0]
    names = list(fitted.get_feature_names_out())
    contract = [i for i, name in enumerate(names) if name.startswith("Contract_")]
    assert known[contract].sum() == 1
    assert np.all(unknown[contract] == 0)
    others = [i for i in range(len(names)) if i not in contract]
    np.testing.assert_array_equal(unknown[others], known[others])


def test_one_hot_is_dense_with_one_block_per_categorical_column():
    encoder = one_hot()
    assert encoder.sparse_output is False
    assert [list(c) for c in encoder.categories] == [list(v) for v in schema.CATEGORICAL.values()]


def test_linear_preprocessor_with_bins_adds_one_column_per_bin(train_rows):
    X = features(train_rows)
    plain = linear_preprocessor(numeric_bins=0).fit(X)
    binned = linear_preprocessor(numeric_bins=4).fit(X)
    extra = [name for name in binned.get_feature_names_out() if name not in set(plain.get_feature_names_out())]
    assert extra == [f"{column}_{b}.0" for column in BINNED_COLUMNS for b in range(4)]
    rows = binned.transform(X)
    bin_block = rows[:, -len(extra):]
    assert np.all(bin_block.sum(axis=1) == len(BINNED_COLUMNS))  # each row falls in one bin per column


def test_zero_bins_adds_no_bin_columns(train_rows):
    names = list(linear_preprocessor(numeric_bins=0).fit(features(train_rows)).get_feature_names_out())
    assert names == one_hot_names() + list(schema.NUMERIC)


def test_linear_numbers_are_standardised_and_tree_numbers_are_raw(train_rows):
    X = features(train_rows)
    width = ONE_HOT_WIDTH
    scaled = linear_preprocessor(numeric_bins=0).fit_transform(X)[:, width:]
    np.testing.assert_allclose(scaled.mean(axis=0), 0.0, atol=1e-9)
    np.testing.assert_allclose(scaled.std(axis=0), 1.0, atol=1e-9)
    raw = tree_preprocessor().fit_transform(X)[:, width:]
    np.testing.assert_array_equal(raw, X[list(schema.NUMERIC)].to_numpy(dtype=float))


def test_tree_preprocessor_exclude_drops_those_columns(train_rows):
    names = list(tree_preprocessor(exclude=("tenure", "TotalCharges")).fit(features(train_rows)).get_feature_names_out())
    assert "tenure" not in names and "TotalCharges" not in names
    assert names[-2:] == ["SeniorCitizen", "MonthlyCharges"]
    assert len(names) == ONE_HOT_WIDTH + 2


def test_exclude_ignores_the_dropped_column_entirely(train_rows):
    fitted = tree_preprocessor(exclude=("tenure",)).fit(features(train_rows))
    X = features(train_rows.head(30))
    shuffled = X.assign(tenure=X["tenure"].sample(frac=1, random_state=0).to_numpy())
    np.testing.assert_array_equal(fitted.transform(X), fitted.transform(shuffled))


def test_transform_does_not_depend_on_column_order(train_rows):
    fitted = tree_preprocessor().fit(features(train_rows))
    X = features(train_rows.head(10))
    reordered = X[list(reversed(X.columns))]
    assert isinstance(reordered, pd.DataFrame)
    np.testing.assert_array_equal(fitted.transform(X), fitted.transform(reordered))
