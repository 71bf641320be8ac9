"""The Telco customer schema: one place that names every column, its type and allowed values.

Validation, feature engineering, the synthetic generator and the model contract all read from here,
so a new category or column is a one-line change that every stage sees.
"""

ID_COLUMN = "customerID"
LABEL_COLUMN = "Churn"
LABEL_VALUES = ("No", "Yes")  # index = class id: 0 = stays, 1 = churns

YES_NO = ("No", "Yes")
PHONE_DEPENDENT = ("No", "No phone service", "Yes")
INTERNET_DEPENDENT = ("No", "No internet service", "Yes")

CATEGORICAL: dict[str, tuple[str, ...]] = {
    "gender": ("Female", "Male"),
    "Partner": YES_NO,
    "Dependents": YES_NO,
    "PhoneService": YES_NO,
    "MultipleLines": PHONE_DEPENDENT,
    "InternetService": ("DSL", "Fiber optic", "No"),
    "OnlineSecurity": INTERNET_DEPENDENT,
    "OnlineBackup": INTERNET_DEPENDENT,
    "DeviceProtection": INTERNET_DEPENDENT,
    "TechSupport": INTERNET_DEPENDENT,
    "StreamingTV": INTERNET_DEPENDENT,
    "StreamingMovies": INTERNET_DEPENDENT,
    "Contract": ("Month-to-month", "One year", "Two year"),
    "PaperlessBilling": YES_NO,
    "PaymentMethod": (
        "Bank transfer (automatic)",
        "Credit card (automatic)",
        "Electronic check",
        "Mailed check",
    ),
}

# Numeric columns with the smallest value a real customer can have. SeniorCitizen is a 0/1 flag in the
# source data and is kept numeric, as published.
NUMERIC: dict[str, float] = {
    "SeniorCitizen": 0.0,
    "tenure": 0.0,
    "MonthlyCharges": 0.0,
    "TotalCharges": 0.0,
}
INTEGER_COLUMNS = ("SeniorCitizen", "tenure")

FEATURES: tuple[str, ...] = tuple(CATEGORICAL) + tuple(NUMERIC)
# Column order of the published CSV, used to check and to write data.
CSV_COLUMNS: tuple[str, ...] = (
    ID_COLUMN, "gender", "SeniorCitizen", "Partner", "Dependents", "tenure", "PhoneService",
    "MultipleLines", "InternetService", "OnlineSecurity", "OnlineBackup", "DeviceProtection",
    "TechSupport", "StreamingTV", "StreamingMovies", "Contract", "PaperlessBilling", "PaymentMethod",
    "MonthlyCharges", "TotalCharges", LABEL_COLUMN,
)
