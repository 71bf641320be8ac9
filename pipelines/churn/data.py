"""Load the Telco customers (the real CSV or a synthetic stand-in), validate them, and split them.

Validation reads the CSV as raw text so it sees exactly what is in the file: blanks, stray spaces,
typos. Every column rule it applies comes from the schema's input specs (`schema.INPUTS`: allowed
categories, a flag's values, minimum and maximum, whole numbers), the very specs the model contract
carries and the serving codec enforces, so a value refused here is refused by serving too. One rule is
reading's alone: a blank TotalCharges of a tenure-0 customer means "not billed yet" and becomes 0.0.
It reports every problem at once, each naming the column, the problem and up to MAX_EXAMPLE_ROWS example
rows, and it never drops a row silently. Row numbers are the frame's index; for a frame from
`read_raw_csv` that is the 0-based data row (the CSV line number minus 2).
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from modelpkg.contract import InputSpec
from pipelines.churn import schema
from pipelines.churn.synthetic import generate_customers

log = logging.getLogger(__name__)

DATA_PATH_ENV = "CHURN_DATA"
MAX_EXAMPLE_ROWS = 5
MAX_EXAMPLE_VALUES = 3
UNBILLED_TOTAL_CHARGES = 0.0  # tenure-0 customers have not been billed yet


class DataValidationError(ValueError):
    """Customer data that cannot be trusted for training; `.problems` holds one line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        header = (
            f"customer data failed validation with {len(self.problems)} problem(s) "
            "(rows are the frame index: 0-based data rows, CSV line number minus 2):"
        )
        super().__init__("\n".join([header, *self.problems]))


@dataclass(frozen=True)
class CustomerData:
    """Validated customers plus where they came from, so every run can log its data provenance."""

    frame: pd.DataFrame
    source: str  # "csv" or "synthetic"
    path: str | None
    sha256: str
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------- reading


def resolve_data_path(configured: str | None) -> Path | None:
    """Pick the CSV to read: $CHURN_DATA wins, then the configured path if present; None = synthetic.

    A set CHURN_DATA that points nowhere is an error, not a fallback: the user asked for that file.
    """
    override = os.environ.get(DATA_PATH_ENV, "").strip()
    if override:
        path = Path(override).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{DATA_PATH_ENV}={override}: no such file")
        return path
    if configured:
        path = Path(configured).expanduser()
        if path.is_file():
            return path
    return None


def read_raw_csv(path: str | Path) -> pd.DataFrame:
    """Read every cell as text (blanks stay blank), so validation judges what the file really holds."""
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError as error:
        raise DataValidationError([f"{path}: empty file (no header, no rows)"]) from error
    except pd.errors.ParserError as error:
        raise DataValidationError([f"{path}: not a well-formed CSV: {error}"]) from error


# -------------------------------------------------------------------------------------- validation


def _rows(index) -> str:
    """'rows 488, 753, ...' (or 'row 7'): the first few row labels, so a reader can find the bad lines."""
    labels = [str(label) for label in list(index)[:MAX_EXAMPLE_ROWS]]
    more = ", ..." if len(index) > MAX_EXAMPLE_ROWS else ""
    return f"{'row' if len(index) == 1 else 'rows'} {', '.join(labels)}{more}"


def _count(number: int, noun: str) -> str:
    """'1 blank value', '11 blank values': counts that read as English."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _values(series: pd.Series) -> str:
    """A few distinct offending values, quoted so blanks and stray spaces stay visible."""
    distinct = list(dict.fromkeys(series.tolist()))
    shown = ", ".join(repr(value) for value in distinct[:MAX_EXAMPLE_VALUES])
    return shown + (", ..." if len(distinct) > MAX_EXAMPLE_VALUES else "")


def _as_text(series: pd.Series) -> pd.Series:
    """Cells as str; a missing cell (NaN/None from a frame not read by read_raw_csv) becomes ''."""
    return series.map(lambda value: "" if pd.isna(value) else str(value))


def _check_columns(raw: pd.DataFrame) -> list[str]:
    missing = [column for column in schema.CSV_COLUMNS if column not in raw.columns]
    extra = [str(column) for column in raw.columns if column not in schema.CSV_COLUMNS]
    duplicated = sorted({str(c) for c in raw.columns[raw.columns.duplicated()]})
    problems = [f"{column}: missing column" for column in missing]
    problems += [f"{column}: unexpected column (not in the schema)" for column in extra]
    problems += [f"{column}: column appears more than once" for column in duplicated]
    return problems


def _check_ids(text: pd.Series) -> list[str]:
    """Customer IDs must be present and unique: a duplicate would leak one customer across splits."""
    problems = []
    blank = text[text.str.strip() == ""]
    if len(blank):
        problems.append(f"{schema.ID_COLUMN}: {_count(len(blank), 'blank value')} ({_rows(blank.index)})")
    duplicated = text[text.duplicated(keep=False) & (text.str.strip() != "")]
    if len(duplicated):
        problems.append(
            f"{schema.ID_COLUMN}: {_count(duplicated.nunique(), 'duplicate ID')} ({_values(duplicated)}) "
            f"in {_count(len(duplicated), 'row')} ({_rows(duplicated.index)})"
        )
    return problems


def _check_categories(column: str, text: pd.Series, allowed: tuple[str, ...], kind: str) -> list[str]:
    """Each value must be one of `allowed` exactly; padded values are named apart from unknown ones."""
    problems = []
    bad = text[~text.isin(allowed)]
    padded = bad[bad.str.strip().isin(allowed)]
    if len(padded):
        problems.append(
            f"{column}: {_count(len(padded), 'value')} with leading/trailing whitespace "
            f"({_values(padded)}) ({_rows(padded.index)})"
        )
    blank = bad[bad.str.strip() == ""]
    if len(blank):
        problems.append(f"{column}: {_count(len(blank), 'blank value')} ({_rows(blank.index)})")
    unknown = bad[~bad.str.strip().isin(allowed) & (bad.str.strip() != "")]
    for value, rows in unknown.groupby(unknown, sort=False).groups.items():
        problems.append(
            f"{column}: unknown {kind} {value!r} (allowed: {', '.join(allowed)}) "
            f"in {_count(len(rows), 'row')} ({_rows(rows)})"
        )
    return problems


def _check_numbers(
    spec: InputSpec, text: pd.Series, blank_ok: pd.Series, blank_rule: str = ""
) -> tuple[pd.Series, list[str]]:
    """Parse one numeric column; report blanks (unless `blank_ok`), text, and breaks of the spec's rules."""
    problems = []
    column = spec.name
    stripped = text.str.strip()
    numbers = pd.to_numeric(stripped, errors="coerce")
    blank = stripped == ""
    bad_blank = text[blank & ~blank_ok]
    if len(bad_blank):
        count = _count(len(bad_blank), "blank value")
        problems.append(f"{column}: {count}{blank_rule} ({_rows(bad_blank.index)})")
    not_numeric = text[numbers.isna() & ~blank]
    if len(not_numeric):
        problems.append(
            f"{column}: {_count(len(not_numeric), 'non-numeric value')} ({_values(not_numeric)}) "
            f"({_rows(not_numeric.index)})"
        )
    infinite = numbers.isin([np.inf, -np.inf])
    numbers = numbers.mask(infinite)  # reported once, as what it is, not again as out of range
    for rows, noun, detail in _rule_breaks(spec, numbers) + [(infinite, "non-finite value", "")]:
        broken = text[rows]
        if len(broken):
            problems.append(f"{column}: {_count(len(broken), noun)}{detail} ({_values(broken)}) "
                            f"({_rows(broken.index)})")
    return numbers, problems


def _rule_breaks(spec: InputSpec, numbers: pd.Series) -> list[tuple[pd.Series, str, str]]:
    """(rows, noun, what is wrong) for each rule of the spec a parsed number can break (NaN breaks none)."""
    present = numbers.notna()
    breaks = []
    if spec.minimum is not None:
        breaks.append((numbers < spec.minimum, "value", f" below the minimum {spec.minimum:g}"))
    if spec.maximum is not None:
        breaks.append((numbers > spec.maximum, "value", f" above the maximum {spec.maximum:g}"))
    if spec.integer:
        breaks.append((present & (numbers != np.floor(numbers)), "non-integer value", ""))
    if spec.values is not None:
        shown = "/".join(f"{value:g}" for value in spec.values)
        breaks.append((present & ~numbers.isin(spec.values), "value", f" other than {shown}"))
    return breaks


def _blank_rule(spec: InputSpec, unbilled: pd.Series) -> tuple[pd.Series, str]:
    """Which blanks a column may hold: only TotalCharges, and only for customers not billed yet."""
    if spec.name == "TotalCharges":
        return unbilled, " where tenure is not 0"
    return pd.Series(False, index=unbilled.index), ""


def _unbilled_rows(text: dict[str, pd.Series], index: pd.Index) -> pd.Series:
    """Rows of tenure-0 customers with a blank TotalCharges: new customers not billed yet."""
    if "tenure" not in text or "TotalCharges" not in text:
        return pd.Series(False, index=index)
    tenure = pd.to_numeric(text["tenure"].str.strip(), errors="coerce")
    return (text["TotalCharges"].str.strip() == "") & (tenure == 0)


def _fill_unbilled_total_charges(typed: pd.DataFrame, unbilled: pd.Series) -> list[str]:
    """Blank TotalCharges of tenure-0 customers means 'not billed yet': set 0.0 and say so."""
    if not unbilled.any():
        return []
    typed.loc[unbilled, "TotalCharges"] = UNBILLED_TOTAL_CHARGES
    rows = typed.index[unbilled]
    return [
        f"TotalCharges: {_count(len(rows), 'blank value')} for tenure-0 customers set to "
        f"{UNBILLED_TOTAL_CHARGES} ({_rows(rows)})"
    ]


def validate_customers(raw: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Check raw text cells against the schema and return (typed frame, notes).

    Raises DataValidationError listing every problem found, so one run shows all that must be fixed.
    """
    if raw.empty:
        raise DataValidationError(["customer data: no rows"])
    problems = _check_columns(raw)
    if any(line.endswith("more than once") for line in problems):
        raise DataValidationError(problems)  # cells cannot be read unambiguously
    present = [column for column in schema.CSV_COLUMNS if column in raw.columns]
    text = {column: _as_text(raw[column]) for column in present}
    typed = pd.DataFrame(index=raw.index)

    if schema.ID_COLUMN in text:
        problems += _check_ids(text[schema.ID_COLUMN])
        typed[schema.ID_COLUMN] = text[schema.ID_COLUMN]
    unbilled = _unbilled_rows(text, raw.index)
    for spec in schema.INPUTS:
        if spec.name not in text:
            continue
        if spec.dtype == "string":
            problems += _check_categories(spec.name, text[spec.name], tuple(spec.allowed), "category")
            typed[spec.name] = text[spec.name]
        else:
            typed[spec.name], column_problems = _check_numbers(spec, text[spec.name], *_blank_rule(spec, unbilled))
            problems += column_problems

    if schema.LABEL_COLUMN in text:
        label = text[schema.LABEL_COLUMN]
        problems += _check_categories(schema.LABEL_COLUMN, label, schema.LABEL_VALUES, "label")
    if problems:
        raise DataValidationError(problems)

    notes = _fill_unbilled_total_charges(typed, unbilled)
    typed = typed.astype(
        {column: "int64" if column in schema.INTEGER_COLUMNS else "float64" for column in schema.NUMERIC}
    )
    typed[schema.LABEL_COLUMN] = (text[schema.LABEL_COLUMN] == schema.LABEL_VALUES[1]).astype("int64")
    return typed[list(schema.CSV_COLUMNS)], notes


# ----------------------------------------------------------------------------------------- loading


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_customers(configured_path: str | None, *, synthetic_rows: int, seed: int) -> CustomerData:
    """Read and validate the real CSV if one is found, else generate synthetic customers (loudly)."""
    path = resolve_data_path(configured_path)
    if path is not None:
        raw = read_raw_csv(path)
        frame, notes = validate_customers(raw)
        log.info("read %d customers from %s", len(frame), path)
        return CustomerData(frame, "csv", str(path), _sha256(path.read_bytes()), notes)

    raw = generate_customers(synthetic_rows, seed)
    frame, notes = validate_customers(raw)
    warning = (
        f"SYNTHETIC DATA: no customer CSV found (config: {configured_path!r}, ${DATA_PATH_ENV} unset); "
        f"generated {synthetic_rows} synthetic customers with seed {seed}. Metrics say nothing about "
        "real customers: run `make data` or set CHURN_DATA to use the real data set."
    )
    log.warning("%s\n%s\n%s", "!" * 100, warning, "!" * 100)
    csv_bytes = raw.to_csv(index=False).encode()
    return CustomerData(frame, "synthetic", None, _sha256(csv_bytes), [warning, *notes])


# --------------------------------------------------------------------------------------- splitting


def split_customers(
    frame: pd.DataFrame, *, valid_fraction: float, test_fraction: float, seed: int
) -> dict[str, pd.DataFrame]:
    """Split into train/valid/test with the churn rate kept equal in each, reproducibly for a seed."""
    if not (0 < valid_fraction < 1 and 0 < test_fraction < 1 and valid_fraction + test_fraction < 1):
        raise ValueError(
            "split fractions must be in (0, 1) and sum below 1: "
            f"valid={valid_fraction}, test={test_fraction}"
        )
    rest, test = train_test_split(
        frame, test_size=test_fraction, stratify=frame[schema.LABEL_COLUMN], random_state=seed
    )
    train, valid = train_test_split(
        rest,
        test_size=valid_fraction / (1 - test_fraction),
        stratify=rest[schema.LABEL_COLUMN],
        random_state=seed,
    )
    parts = {"train": train, "valid": valid, "test": test}
    return {name: part.reset_index(drop=True) for name, part in parts.items()}
