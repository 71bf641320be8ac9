"""One validation from training to serving: every rule the training validator applies to a churn column
is refused, naming the column, by the training validator (and so the retraining-row check), by the codec
(batch scoring, the retraining judge) and by a live server (422 naming the field); the contract's bounds
from the training data are enforced too.

The rules walked are the schema's input specs (`pipelines.churn.schema.INPUTS`), which the training
validator reads; the served package is the session's churn model (tests/serving/conftest.py)."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from dataclasses import dataclass

import httpx
import pandas as pd
import pytest

from modelpkg.codecs import InvalidRequest
from modelpkg.contract import InputSpec
from pipelines.churn import schema
from pipelines.churn.data import DataValidationError, validate_customers
from pipelines.churn.synthetic import generate_customers
from tests.live_server import free_port, wait_ready
from tests.serving.conftest import REPO, make_config, write_config
from tests.serving.test_process import server_env

@dataclass(frozen=True)
class Violation:
    column: str
    rule: str
    request_value: object  # what a client sends (JSON)
    csv_text: str  # the same mistake in a CSV cell

    def __str__(self) -> str:
        return f"{self.column}-{self.rule}"


def violations(spec: InputSpec) -> list[Violation]:
    """A value breaking each rule the spec carries: its categories (unknown, padded, blank), or its numbers
    (blank, text, non-finite, below the minimum, above the maximum, fractional, not one of the values)."""
    if spec.dtype == "string":
        return [Violation(spec.name, "unknown", "no such category", "no such category"),
                Violation(spec.name, "padded", f" {spec.allowed[0]} ", f" {spec.allowed[0]} "),
                Violation(spec.name, "blank", "", "")]
    found = [Violation(spec.name, "blank", None, ""), Violation(spec.name, "text", "twelve", "twelve"),
             Violation(spec.name, "non-finite", math.inf, "inf")]
    if spec.minimum is not None:
        found.append(Violation(spec.name, "minimum", spec.minimum - 1, f"{spec.minimum - 1:g}"))
    if spec.maximum is not None:
        found.append(Violation(spec.name, "maximum", spec.maximum + 1, f"{spec.maximum + 1:g}"))
    if spec.integer:
        fractional = (spec.minimum or 0) + 0.5
        found.append(Violation(spec.name, "whole", fractional, f"{fractional:g}"))
    if spec.values is not None:
        found.append(Violation(spec.name, "values", max(spec.values) + 1, f"{max(spec.values) + 1:g}"))
    return found


TRAINING_RULES = [violation for spec in schema.INPUTS for violation in violations(spec)]


@pytest.fixture(scope="module")
def live_churn(tmp_path_factory, bundle_root):
    """A real `python -m serving` process serving the session's churn bundle; yields its URL."""
    tmp_path = tmp_path_factory.mktemp("live-churn")
    config = make_config(tmp_path, source={"kind": "bundles", "bundle_root": str(bundle_root)},
                         models=[m for m in make_config(tmp_path).model_dump()["models"] if m["name"] == "churn"])
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "serving", "--config", str(write_config(config, tmp_path / "serving.yaml")),
         "--port", str(port)], cwd=REPO, env=server_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process)
        with httpx.Client(base_url=url) as client:
            yield client
    finally:
        process.kill()
        process.wait()


def raw_customers() -> pd.DataFrame:
    """Valid customers as CSV text, one per training rule, every one billed (a blank TotalCharges is then
    an error)."""
    frame = generate_customers(len(TRAINING_RULES), seed=1)
    frame.loc[frame["tenure"] == "0", ["tenure", "TotalCharges"]] = ["1", "20.0"]
    return frame


@pytest.fixture(scope="module")
def training_problems() -> list[str]:
    """The training validator's verdict on a CSV whose row i breaks rule i (one validation run for all)."""
    raw = raw_customers()
    for row, violation in enumerate(TRAINING_RULES):
        raw.loc[row, violation.column] = violation.csv_text
    with pytest.raises(DataValidationError) as caught:
        validate_customers(raw)
    return caught.value.problems


def names_row(problem: str, row: int) -> bool:
    """The problem's example rows, '(row 7)' or '(rows 3, 7, ...)', include `row`."""
    listed = re.search(r"\(rows? ([\d, .]+)\)$", problem)
    return listed is not None and str(row) in listed.group(1).split(", ")


def post(client: httpx.Client, record: dict) -> httpx.Response:
    """JSON as Python writes it (Infinity included), so a non-finite number reaches the server."""
    return client.post("/v1/churn/predict", content=json.dumps([record]), headers={"content-type": "application/json"})


def test_the_base_record_and_customers_are_valid(live_churn, example_records):
    assert post(live_churn, example_records[0]).status_code == 200
    validate_customers(raw_customers())


@pytest.mark.parametrize("row, violation", enumerate(TRAINING_RULES), ids=[str(v) for v in TRAINING_RULES])
def test_every_training_rule_is_refused_naming_the_field_by_training_codec_and_server(
        row, violation, training_problems, live_churn, codecs, example_records):
    assert any(problem.startswith(f"{violation.column}: ") and names_row(problem, row)
               for problem in training_problems), training_problems

    record = example_records[0] | {violation.column: violation.request_value}
    with pytest.raises(InvalidRequest) as scoring:
        codecs["churn"].validate([record])
    assert [error["loc"] for error in scoring.value.errors] == [[0, violation.column]]

    answer = post(live_churn, record)
    assert answer.status_code == 422, answer.text
    (error,) = answer.json()["detail"]
    assert error["loc"] == ["body", 0, violation.column] and error["msg"].startswith(f"{violation.column}: ")


def test_senior_citizen_2_is_refused_as_the_issue_reported(live_churn, example_records):
    (error,) = post(live_churn, example_records[0] | {"SeniorCitizen": 2}).json()["detail"]
    assert error["loc"] == ["body", 0, "SeniorCitizen"]
    assert error["msg"] == "SeniorCitizen: 2 is not an allowed value (allowed: 0, 1)"


def test_every_number_is_bounded_by_the_training_data_and_a_huge_one_is_refused(live_churn, codecs, example_records):
    contract = codecs["churn"].contract
    for spec in contract.inputs:
        if not spec.categorical:
            assert spec.training_range is not None and spec.maximum >= spec.training_range[1], spec.name
            (error,) = post(live_churn, example_records[0] | {spec.name: 1e30}).json()["detail"]
            assert error["loc"] == ["body", 0, spec.name] and "above the maximum" in error["msg"]
    assert post(live_churn, example_records[0] | {"tenure": contract.input("tenure").maximum}).status_code == 200
