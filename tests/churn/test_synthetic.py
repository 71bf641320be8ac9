"""The synthetic customers look like the real CSV, hang together, and carry a learnable churn signal."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from pipelines.churn import schema
from pipelines.churn.data import validate_customers
from pipelines.churn.synthetic import PRICE, generate_customers

ROWS = 3000
ADD_ONS = ("OnlineSecurity", "OnlineBackup", "DeviceProtection", "TechSupport", "StreamingTV", "StreamingMovies")


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    return generate_customers(ROWS, seed=0)


@pytest.fixture(scope="module")
def customers(raw) -> pd.DataFrame:
    return validate_customers(raw)[0]


def test_raw_text_columns_in_csv_order(raw):
    assert list(raw.columns) == list(schema.CSV_COLUMNS)
    assert len(raw) == ROWS
    assert raw.map(type).eq(str).all().all()


def test_passes_validation_with_blank_total_charges_only_for_new_customers(raw):
    frame, notes = validate_customers(raw)
    new = raw["tenure"] == "0"
    assert new.sum() > 0
    assert (raw.loc[new, "TotalCharges"] == " ").all()
    assert (raw.loc[~new, "TotalCharges"].str.strip() != "").all()
    assert notes[0].startswith(f"TotalCharges: {new.sum()} blank values for tenure-0 customers")
    assert (frame.loc[new.to_numpy(), "TotalCharges"] == 0.0).all()


def test_deterministic_per_seed():
    pd.testing.assert_frame_equal(generate_customers(200, seed=7), generate_customers(200, seed=7))
    assert not generate_customers(200, seed=7).equals(generate_customers(200, seed=8))


def test_customer_ids_are_unique_and_shaped_like_the_real_ones(raw):
    ids = raw[schema.ID_COLUMN]
    assert ids.is_unique
    assert ids.str.fullmatch(r"\d{4}-[A-Z]{5}").all()


def test_churn_rate_is_about_a_quarter(customers):
    assert 0.22 <= customers[schema.LABEL_COLUMN].mean() <= 0.30


def test_services_are_consistent(customers):
    no_internet = customers["InternetService"] == "No"
    for add_on in ADD_ONS:
        assert ((customers[add_on] == "No internet service") == no_internet).all(), add_on
    no_phone = customers["PhoneService"] == "No"
    assert ((customers["MultipleLines"] == "No phone service") == no_phone).all()
    assert not (no_phone & no_internet).any(), "every customer has at least one service"


def test_charges_follow_from_services_and_tenure(customers):
    list_price = sum(np.where(customers[service] == "Yes", price, 0.0)
                     for service, price in PRICE.items() if service in customers)
    list_price = list_price + customers["InternetService"].map(PRICE).fillna(0.0)
    assert (customers["MonthlyCharges"] - list_price).abs().max() < 8.0
    billed = customers[customers["tenure"] > 0]
    ratio = billed["TotalCharges"] / (billed["tenure"] * billed["MonthlyCharges"])
    assert ratio.between(0.8, 1.2).all()


def test_churn_is_driven_by_contract_internet_and_tenure(customers):
    by_contract = customers.groupby("Contract")[schema.LABEL_COLUMN].mean()
    assert by_contract["Month-to-month"] > by_contract["One year"] > by_contract["Two year"]
    by_internet = customers.groupby("InternetService")[schema.LABEL_COLUMN].mean()
    assert by_internet["Fiber optic"] > by_internet["DSL"] > by_internet["No"]
    churned = customers[schema.LABEL_COLUMN] == 1
    assert customers.loc[churned, "tenure"].mean() < customers.loc[~churned, "tenure"].mean()


def test_a_simple_model_learns_churn_but_not_perfectly(customers):
    features = pd.get_dummies(customers[list(schema.CATEGORICAL)]).astype(float)
    numbers = customers[list(schema.NUMERIC)]
    features = features.join((numbers - numbers.mean()) / numbers.std())
    half = len(customers) // 2
    labels = customers[schema.LABEL_COLUMN]
    model = LogisticRegression(max_iter=500).fit(features[:half], labels[:half])
    auc = roc_auc_score(labels[half:], model.predict_proba(features[half:])[:, 1])
    assert 0.75 < auc < 0.95


def test_rejects_a_non_positive_size():
    with pytest.raises(ValueError, match="at least 1"):
        generate_customers(0, seed=0)
