"""Validation, loading and splitting of the Telco customers.

Each bad-input case corrupts a few cells of a small, valid synthetic frame and checks that the error
names the column, the problem and the rows, as a person fixing the file would need.
"""

from __future__ import annotations

import logging

import pandas as pd
import pytest

from pipelines.churn import schema
from pipelines.churn.data import (
    DataValidationError,
    load_customers,
    read_raw_csv,
    resolve_data_path,
    split_customers,
    validate_customers,
)
from pipelines.churn.download import SHA256
from pipelines.churn.synthetic import generate_customers

from tests.paths import TELCO_CSV as REAL_CSV
needs_real_csv = pytest.mark.skipif(not REAL_CSV.is_file(), reason=f"real data set not found at {REAL_CSV}")


@pytest.fixture
def raw() -> pd.DataFrame:
    """40 valid customers as raw text, every tenure above 0 so blanks in TotalCharges are errors."""
    frame = generate_customers(40, seed=1)
    billed = frame["tenure"] == "0"
    frame.loc[billed, "tenure"] = "1"
    frame.loc[billed, "TotalCharges"] = frame.loc[billed, "MonthlyCharges"]
    return frame


@pytest.fixture(autouse=True)
def no_data_override(monkeypatch):
    monkeypatch.delenv("CHURN_DATA", raising=False)


def validation_error(raw: pd.DataFrame) -> DataValidationError:
    with pytest.raises(DataValidationError) as caught:
        validate_customers(raw)
    return caught.value


# ------------------------------------------------------------------------------- valid data


def test_valid_frame_is_typed_as_promised(raw):
    frame, notes = validate_customers(raw)
    assert list(frame.columns) == list(schema.CSV_COLUMNS)
    assert notes == []
    for column in schema.INTEGER_COLUMNS:
        assert frame[column].dtype == "int64"
    assert frame["MonthlyCharges"].dtype == frame["TotalCharges"].dtype == "float64"
    assert frame[schema.LABEL_COLUMN].dtype == "int64"
    assert set(frame[schema.LABEL_COLUMN]) <= {0, 1}
    assert frame[schema.LABEL_COLUMN].sum() == (raw[schema.LABEL_COLUMN] == "Yes").sum()
    assert all(isinstance(value, str) for value in frame["Contract"])


def test_blank_total_charges_of_tenure_zero_customers_become_zero_with_a_note(raw):
    raw.loc[[3, 7], "tenure"] = "0"
    raw.loc[[3, 7], "TotalCharges"] = " "
    frame, notes = validate_customers(raw)
    assert frame.loc[[3, 7], "TotalCharges"].tolist() == [0.0, 0.0]
    assert notes == ["TotalCharges: 2 blank values for tenure-0 customers set to 0.0 (rows 3, 7)"]


def test_read_raw_csv_keeps_blanks_and_spaces_as_text(tmp_path, raw):
    raw.loc[2, "TotalCharges"] = " "
    raw.loc[4, "Contract"] = " One year"
    path = tmp_path / "customers.csv"
    raw.to_csv(path, index=False)
    back = read_raw_csv(path)
    assert back.loc[2, "TotalCharges"] == " "
    assert back.loc[4, "Contract"] == " One year"
    assert back["tenure"].map(type).eq(str).all()


def test_empty_csv_file_is_a_validation_error(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(DataValidationError, match="empty file"):
        read_raw_csv(path)


# --------------------------------------------------------------------------------- bad input


def test_empty_frame(raw):
    assert "no rows" in str(validation_error(raw.iloc[0:0]))


def test_missing_column(raw):
    assert "Contract: missing column" in validation_error(raw.drop(columns="Contract")).problems


def test_extra_column(raw):
    raw["Region"] = "North"
    assert "Region: unexpected column (not in the schema)" in validation_error(raw).problems


def test_non_numeric_text_in_numeric_column(raw):
    raw.loc[3, "tenure"] = "twelve"
    raw.loc[5, "MonthlyCharges"] = "$29.85"
    problems = validation_error(raw).problems
    assert "tenure: 1 non-numeric value ('twelve') (row 3)" in problems
    assert "MonthlyCharges: 1 non-numeric value ('$29.85') (row 5)" in problems


def test_blank_total_charges_for_billed_customer_is_an_error(raw):
    raw.loc[[2, 9], "TotalCharges"] = " "
    assert validation_error(raw).problems == ["TotalCharges: 2 blank values where tenure is not 0 (rows 2, 9)"]


def test_blank_in_other_numeric_column(raw):
    raw.loc[6, "MonthlyCharges"] = ""
    assert validation_error(raw).problems == ["MonthlyCharges: 1 blank value (row 6)"]


def test_unknown_category_names_allowed_values(raw):
    raw.loc[[1, 4], "Contract"] = "monthly"
    assert validation_error(raw).problems == [
        "Contract: unknown category 'monthly' (allowed: Month-to-month, One year, Two year) in 2 rows (rows 1, 4)"
    ]


def test_whitespace_around_category(raw):
    raw.loc[8, "PaymentMethod"] = "Mailed check "
    assert validation_error(raw).problems == [
        "PaymentMethod: 1 value with leading/trailing whitespace ('Mailed check ') (row 8)"
    ]


def test_blank_category(raw):
    raw.loc[0, "gender"] = ""
    assert validation_error(raw).problems == ["gender: 1 blank value (row 0)"]


def test_duplicate_customer_ids(raw):
    raw.loc[5, schema.ID_COLUMN] = raw.loc[2, schema.ID_COLUMN]
    duplicate = raw.loc[2, schema.ID_COLUMN]
    assert validation_error(raw).problems == [f"customerID: 1 duplicate ID ('{duplicate}') in 2 rows (rows 2, 5)"]


def test_blank_customer_id(raw):
    raw.loc[4, schema.ID_COLUMN] = " "
    assert validation_error(raw).problems == ["customerID: 1 blank value (row 4)"]


def test_label_other_than_yes_no(raw):
    raw.loc[3, schema.LABEL_COLUMN] = "Maybe"
    raw.loc[6, schema.LABEL_COLUMN] = "1"
    problems = validation_error(raw).problems
    assert "Churn: unknown label 'Maybe' (allowed: No, Yes) in 1 row (row 3)" in problems
    assert "Churn: unknown label '1' (allowed: No, Yes) in 1 row (row 6)" in problems


def test_negative_value(raw):
    raw.loc[7, "MonthlyCharges"] = "-5.00"
    assert validation_error(raw).problems == ["MonthlyCharges: 1 value below the minimum 0 ('-5.00') (row 7)"]


def test_non_integer_tenure(raw):
    raw.loc[2, "tenure"] = "12.5"
    assert validation_error(raw).problems == ["tenure: 1 non-integer value ('12.5') (row 2)"]


def test_senior_citizen_must_be_a_flag(raw):
    raw.loc[9, "SeniorCitizen"] = "2"
    assert validation_error(raw).problems == ["SeniorCitizen: 1 value other than 0/1 ('2') (row 9)"]


def test_all_problems_are_reported_at_once_with_at_most_five_example_rows(raw):
    raw.loc[0:7, "gender"] = "F"
    raw.loc[3, "tenure"] = "-1"
    raw = raw.drop(columns="PaperlessBilling")
    error = validation_error(raw)
    assert error.problems == [
        "PaperlessBilling: missing column",
        "gender: unknown category 'F' (allowed: Female, Male) in 8 rows (rows 0, 1, 2, 3, 4, ...)",
        "tenure: 1 value below the minimum 0 ('-1') (row 3)",
    ]
    message = str(error)
    assert all(problem in message.splitlines() for problem in error.problems)
    assert "CSV line number minus 2" in message.splitlines()[0]


# ---------------------------------------------------------------------------------- real data


@needs_real_csv
def test_real_csv_loads_and_validates():
    data = load_customers(str(REAL_CSV), synthetic_rows=10, seed=0)
    assert (data.source, data.path, data.sha256) == ("csv", str(REAL_CSV), SHA256)
    assert data.frame.shape == (7043, 21)
    assert data.notes == [
        "TotalCharges: 11 blank values for tenure-0 customers set to 0.0 (rows 488, 753, 936, 1082, 1340, ...)"
    ]
    assert data.frame["Churn"].mean() == pytest.approx(0.265, abs=0.001)


# ------------------------------------------------------------------------- choosing the source


def test_synthetic_data_when_no_csv_is_found_is_loud(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="pipelines.churn.data"):
        data = load_customers(str(tmp_path / "absent.csv"), synthetic_rows=200, seed=3)
    assert (data.source, data.path, len(data.frame)) == ("synthetic", None, 200)
    assert data.notes[0].startswith("SYNTHETIC DATA")
    assert "SYNTHETIC DATA" in caplog.text
    assert data.sha256 == load_customers(None, synthetic_rows=200, seed=3).sha256
    assert data.sha256 != load_customers(None, synthetic_rows=200, seed=4).sha256


def test_configured_path_is_read_when_present(tmp_path, raw):
    path = tmp_path / "customers.csv"
    raw.to_csv(path, index=False)
    data = load_customers(str(path), synthetic_rows=10, seed=0)
    assert (data.source, data.path, len(data.frame)) == ("csv", str(path), len(raw))


def test_churn_data_env_overrides_configured_path(tmp_path, raw, monkeypatch):
    override = tmp_path / "override.csv"
    raw.to_csv(override, index=False)
    monkeypatch.setenv("CHURN_DATA", str(override))
    assert resolve_data_path(str(tmp_path / "configured.csv")) == override


def test_churn_data_env_pointing_nowhere_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("CHURN_DATA", str(tmp_path / "missing.csv"))
    with pytest.raises(FileNotFoundError, match="CHURN_DATA=.*missing.csv"):
        resolve_data_path(None)


def test_no_path_at_all_means_synthetic(tmp_path):
    assert resolve_data_path(None) is None
    assert resolve_data_path(str(tmp_path / "absent.csv")) is None


# ---------------------------------------------------------------------------------- splitting


@pytest.fixture(scope="module")
def customers() -> pd.DataFrame:
    return validate_customers(generate_customers(1000, seed=5))[0]


def test_split_is_stratified_disjoint_and_complete(customers):
    parts = split_customers(customers, valid_fraction=0.2, test_fraction=0.2, seed=0)
    ids = {name: set(part[schema.ID_COLUMN]) for name, part in parts.items()}
    assert sum(len(part) for part in parts.values()) == len(customers)
    assert set().union(*ids.values()) == set(customers[schema.ID_COLUMN])
    assert not (ids["train"] & ids["valid"] or ids["train"] & ids["test"] or ids["valid"] & ids["test"])
    assert len(parts["valid"]) == len(parts["test"]) == 200
    for part in parts.values():
        assert part[schema.LABEL_COLUMN].mean() == pytest.approx(customers[schema.LABEL_COLUMN].mean(), abs=0.01)
        assert part.index.equals(pd.RangeIndex(len(part)))


def test_split_is_deterministic_for_a_seed(customers):
    first = split_customers(customers, valid_fraction=0.2, test_fraction=0.2, seed=0)
    again = split_customers(customers, valid_fraction=0.2, test_fraction=0.2, seed=0)
    other = split_customers(customers, valid_fraction=0.2, test_fraction=0.2, seed=1)
    for name in first:
        pd.testing.assert_frame_equal(first[name], again[name])
    assert not first["test"][schema.ID_COLUMN].equals(other["test"][schema.ID_COLUMN])


@pytest.mark.parametrize("valid, test", [(0.0, 0.2), (0.5, 0.5), (0.2, 1.2)])
def test_split_rejects_impossible_fractions(customers, valid, test):
    with pytest.raises(ValueError, match="split fractions"):
        split_customers(customers, valid_fraction=valid, test_fraction=test, seed=0)
