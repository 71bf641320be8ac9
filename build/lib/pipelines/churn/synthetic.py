"""Synthetic Telco customers: the embedded default when the real CSV is absent.

The generator mimics the published data closely enough that the whole pipeline runs unchanged: the
same columns as raw text (blank TotalCharges for tenure-0 customers included), services that depend
on each other as in the real data, charges that follow from the services, and churn drawn from a
logistic model driven by contract, tenure, internet service, payment method and support services.
It is a stand-in for development and CI only: metrics on it say nothing about real customers.
"""

from __future__ import annotations

import string

import numpy as np
import pandas as pd

from pipelines.churn import schema

TARGET_CHURN_RATE = 0.26
MAX_TENURE_MONTHS = 72
NEW_CUSTOMER_RATE = 0.005  # share of tenure-0 customers (blank TotalCharges), as in the real data
TOTAL_CHARGES_NOISE = 0.03  # relative spread of billed total around tenure x monthly charge
MONTHLY_CHARGES_NOISE = 1.5  # dollars
ID_DIGITS, ID_LETTERS = 4, 5  # customer IDs look like "7590-VHVEG"

SHARES: dict[str, dict[str, float]] = {  # marginal shares, roughly those of the real data
    "gender": {"Female": 0.5, "Male": 0.5},
    "Partner": {"No": 0.52, "Yes": 0.48},
    "Contract": {"Month-to-month": 0.55, "One year": 0.21, "Two year": 0.24},
    "PhoneService": {"No": 0.1, "Yes": 0.9},
    "InternetService": {"DSL": 0.34, "Fiber optic": 0.44, "No": 0.22},
    "PaperlessBilling": {"No": 0.41, "Yes": 0.59},
    "PaymentMethod": {
        "Bank transfer (automatic)": 0.22,
        "Credit card (automatic)": 0.22,
        "Electronic check": 0.34,
        "Mailed check": 0.22,
    },
}
SENIOR_RATE = 0.16
DEPENDENTS_RATE = {"Yes": 0.5, "No": 0.1}  # by Partner
MULTIPLE_LINES_RATE = 0.47
# Tenure in months / MAX_TENURE_MONTHS ~ Beta(a, b) per contract: means of about 18, 42 and 57 months.
TENURE_BETA = {"Month-to-month": (0.8, 2.4), "One year": (1.5, 1.07), "Two year": (2.5, 0.7)}
# Add-on uptake among internet customers; longer-tenured customers take more of them.
ADD_ON_RATE = {
    "OnlineSecurity": 0.37, "OnlineBackup": 0.44, "DeviceProtection": 0.44,
    "TechSupport": 0.37, "StreamingTV": 0.49, "StreamingMovies": 0.49,
}
ADD_ON_TENURE_EFFECT = 0.03  # log-odds per month of tenure away from the middle
PRICE = {  # monthly list prices in dollars
    "PhoneService": 20.0, "MultipleLines": 5.0, "DSL": 25.0, "Fiber optic": 50.0,
    "OnlineSecurity": 5.0, "OnlineBackup": 5.0, "DeviceProtection": 5.0, "TechSupport": 5.0,
    "StreamingTV": 10.0, "StreamingMovies": 10.0,
}
# Log-odds of churning, relative to a baseline customer; the intercept is solved for the target rate.
CHURN_EFFECTS = {
    ("Contract", "One year"): -1.2,
    ("Contract", "Two year"): -2.4,
    ("InternetService", "Fiber optic"): 0.9,
    ("InternetService", "No"): -0.9,
    ("PaymentMethod", "Electronic check"): 0.6,
    ("OnlineSecurity", "No"): 0.5,
    ("TechSupport", "No"): 0.5,
    ("PaperlessBilling", "Yes"): 0.3,
    ("SeniorCitizen", "1"): 0.3,
    ("Dependents", "Yes"): -0.2,
}
CHURN_PER_TENURE_MONTH = -0.035


def _choose(rng: np.random.Generator, shares: dict[str, float], n: int) -> np.ndarray:
    values = list(shares)
    probabilities = np.array([shares[value] for value in values])
    return rng.choice(values, size=n, p=probabilities / probabilities.sum())


def _yes_no(rng: np.random.Generator, probability: np.ndarray | float, n: int) -> np.ndarray:
    return np.where(rng.random(n) < probability, "Yes", "No")


def _customer_ids(rng: np.random.Generator, n: int) -> list[str]:
    """Unique IDs shaped like the real ones ("1234-ABCDE"), drawn until there are n distinct."""
    ids: dict[str, None] = {}
    letters = np.array(list(string.ascii_uppercase))
    while len(ids) < n:
        digits = rng.integers(0, 10**ID_DIGITS)
        suffix = "".join(rng.choice(letters, size=ID_LETTERS))
        ids[f"{digits:0{ID_DIGITS}d}-{suffix}"] = None
    return list(ids)


def _tenure(rng: np.random.Generator, contract: np.ndarray) -> np.ndarray:
    """Months with the company: longer contracts go with longer tenure; a few are brand new (0)."""
    tenure = np.zeros(len(contract), dtype=int)
    for kind, (a, b) in TENURE_BETA.items():
        chosen = contract == kind
        months = np.ceil(rng.beta(a, b, size=chosen.sum()) * MAX_TENURE_MONTHS)
        tenure[chosen] = np.clip(months, 1, MAX_TENURE_MONTHS)
    tenure[rng.random(len(contract)) < NEW_CUSTOMER_RATE] = 0
    return tenure


def _services(rng: np.random.Generator, n: int, tenure: np.ndarray) -> dict[str, np.ndarray]:
    """Phone, internet and add-ons, consistent with each other as in the real data."""
    phone = _choose(rng, SHARES["PhoneService"], n)
    internet = _choose(rng, SHARES["InternetService"], n)
    internet[(phone == "No") & (internet != "DSL")] = "DSL"  # every customer has some service
    services = {
        "PhoneService": phone,
        "MultipleLines": np.where(
            phone == "Yes", _yes_no(rng, MULTIPLE_LINES_RATE, n), "No phone service"
        ),
        "InternetService": internet,
    }
    tenure_shift = ADD_ON_TENURE_EFFECT * (tenure - MAX_TENURE_MONTHS / 2)
    for add_on, rate in ADD_ON_RATE.items():
        probability = 1 / (1 + np.exp(-(np.log(rate / (1 - rate)) + tenure_shift)))
        services[add_on] = np.where(internet == "No", "No internet service", _yes_no(rng, probability, n))
    return services


def _monthly_charges(rng: np.random.Generator, columns: dict[str, np.ndarray]) -> np.ndarray:
    """The sum of list prices of the services taken, plus a little noise, in 5-cent steps."""
    n = len(columns["PhoneService"])
    total = np.zeros(n)
    for service, price in PRICE.items():
        if service in ("DSL", "Fiber optic"):
            total += np.where(columns["InternetService"] == service, price, 0.0)
        else:
            total += np.where(columns[service] == "Yes", price, 0.0)
    noisy = total + rng.normal(0.0, MONTHLY_CHARGES_NOISE, size=n)
    return np.round(np.maximum(noisy, 0.0) * 20) / 20


def _churn_probability(columns: dict[str, np.ndarray], tenure: np.ndarray) -> np.ndarray:
    """Logistic churn model, with the intercept solved so the mean probability is the target rate."""
    logit = CHURN_PER_TENURE_MONTH * tenure.astype(float)
    for (column, value), effect in CHURN_EFFECTS.items():
        logit = logit + effect * (columns[column] == value)
    low, high = -20.0, 20.0
    for _ in range(60):  # bisection: the mean probability grows with the intercept
        intercept = (low + high) / 2
        if np.mean(1 / (1 + np.exp(-(logit + intercept)))) < TARGET_CHURN_RATE:
            low = intercept
        else:
            high = intercept
    return 1 / (1 + np.exp(-(logit + intercept)))


def _money(values: np.ndarray) -> list[str]:
    return [f"{value:.2f}" for value in values]


def generate_customers(n: int, seed: int) -> pd.DataFrame:
    """n synthetic customers as raw text columns in CSV order, exactly as read_raw_csv returns them."""
    if n < 1:
        raise ValueError(f"synthetic customers: n must be at least 1, got {n}")
    rng = np.random.default_rng(seed)
    columns: dict[str, np.ndarray] = {
        column: _choose(rng, SHARES[column], n) for column in ("gender", "Partner", "Contract")
    }
    columns["SeniorCitizen"] = np.where(rng.random(n) < SENIOR_RATE, "1", "0")
    columns["Dependents"] = _yes_no(rng, np.vectorize(DEPENDENTS_RATE.get)(columns["Partner"]), n)
    tenure = _tenure(rng, columns["Contract"])
    columns.update(_services(rng, n, tenure))
    for column in ("PaperlessBilling", "PaymentMethod"):
        columns[column] = _choose(rng, SHARES[column], n)

    monthly = _monthly_charges(rng, columns)
    billed = tenure * monthly * (1 + rng.normal(0.0, TOTAL_CHARGES_NOISE, size=n))
    total = np.where(tenure == 0, " ", _money(np.maximum(billed, 0.0)))
    churned = rng.random(n) < _churn_probability(columns, tenure)

    columns[schema.ID_COLUMN] = np.array(_customer_ids(rng, n))
    columns["tenure"] = tenure.astype(str)
    columns["MonthlyCharges"] = np.array(_money(monthly))
    columns["TotalCharges"] = total
    columns[schema.LABEL_COLUMN] = np.where(churned, schema.LABEL_VALUES[1], schema.LABEL_VALUES[0])
    return pd.DataFrame({column: columns[column].astype(str) for column in schema.CSV_COLUMNS}).astype(object)
