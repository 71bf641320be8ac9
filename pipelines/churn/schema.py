"""The Telco customer schema: one place that names every column, its type and its rules.

`INPUTS` is the one definition of every model input's rules (allowed categories, a flag's values,
minimum, whole numbers), as contract input specs: the training validator (pipelines/churn/data.py) checks
the data with them, export writes them into the contract with bounds from the training data, and the
tabular codec enforces them on every served, batch-scored or replayed record. Feature engineering and the
synthetic generator read the names from here too, so a new category or column is a one-line change that
every stage sees.
"""

from modelpkg.contract import InputSpec

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

FLAG = [0.0, 1.0]  # SeniorCitizen is published as a 0/1 flag: a number to the model, a category to monitoring
NO_CHARGE = 0.0  # the smallest amount a customer can be billed

# Every model input with its rules, in the graph's order: categories first, then numbers. Numeric upper
# bounds are not written here: export takes them from the training data (ExportConfig.input_bounds_margin).
INPUTS: tuple[InputSpec, ...] = (
    *(InputSpec(name=name, dtype="string", allowed=list(values)) for name, values in CATEGORICAL.items()),
    InputSpec(name="SeniorCitizen", dtype="float32", values=FLAG, integer=True, description="1 = a senior citizen"),
    InputSpec(name="tenure", dtype="float32", minimum=0.0, integer=True, description="months with the company"),
    InputSpec(name="MonthlyCharges", dtype="float32", minimum=NO_CHARGE, description="current monthly bill"),
    InputSpec(name="TotalCharges", dtype="float32", minimum=NO_CHARGE, description="billed so far"),
)
NUMERIC: tuple[str, ...] = tuple(spec.name for spec in INPUTS if spec.dtype != "string")
INTEGER_COLUMNS: tuple[str, ...] = tuple(spec.name for spec in INPUTS if spec.integer)

FEATURES: tuple[str, ...] = tuple(spec.name for spec in INPUTS)
# Column order of the published CSV, used to check and to write data.
CSV_COLUMNS: tuple[str, ...] = (
    ID_COLUMN, "gender", "SeniorCitizen", "Partner", "Dependents", "tenure", "PhoneService",
    "MultipleLines", "InternetService", "OnlineSecurity", "OnlineBackup", "DeviceProtection",
    "TechSupport", "StreamingTV", "StreamingMovies", "Contract", "PaperlessBilling", "PaymentMethod",
    "MonthlyCharges", "TotalCharges", LABEL_COLUMN,
)
