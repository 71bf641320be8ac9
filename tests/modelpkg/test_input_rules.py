"""A tabular input's rules in the contract: what they accept, how export bounds them from training data,
that they survive the contract file (and that a contract written before them still loads), and that the
tabular codec enforces each one, naming the field."""

from __future__ import annotations

import json
import math

import pytest
from pydantic import ValidationError

from modelpkg.codecs import InvalidRequest
from modelpkg.codecs.tabular import TabularCodec
from modelpkg.contract import CONTRACT_FILE, InputSpec, ModelContract
from tests.modelpkg.conftest import contract

FLAG = InputSpec(name="senior", dtype="float32", values=[0, 1], integer=True)
MONTHS = InputSpec(name="months", dtype="float32", minimum=0, integer=True)
SPEND = InputSpec(name="spend", dtype="float32", minimum=0)
PLAN = InputSpec(name="plan", dtype="string", allowed=["basic", "pro"])
NEW_FIELDS = ("values", "training_range")  # input fields a contract written before them lacks


def tabular(*inputs: InputSpec) -> ModelContract:
    return contract(kind="tabular_classifier", probability_output="probabilities", labels=["No", "Yes"],
                    positive_label="Yes", threshold=0.5, id_field="id", inputs=list(inputs))


def bounded() -> ModelContract:
    return tabular(PLAN, FLAG, MONTHS.with_training_range(1, 72, margin=0.5),
                   SPEND.with_training_range(18.25, 118.75, margin=0.5))


def rejected(codec: TabularCodec, record: dict) -> dict:
    with pytest.raises(InvalidRequest) as caught:
        codec.validate([record])
    (error,) = caught.value.errors
    return error


# ------------------------------------------------------------------------------------------- bounds
def test_bounds_widen_the_training_range_by_the_margin_of_its_width():
    spend = SPEND.with_training_range(20.0, 120.0, margin=0.25)
    assert (spend.minimum, spend.maximum, spend.training_range) == (0.0, 145.0, (20.0, 120.0))  # 20 - 25 < 0: rule wins
    assert SPEND.with_training_range(50.0, 60.0, margin=0.5).minimum == 45.0


def test_whole_number_bounds_round_outward_and_a_zero_margin_keeps_the_range():
    months = MONTHS.with_training_range(1, 72, margin=0.3)
    assert (months.minimum, months.maximum) == (0.0, math.ceil(72 + 0.3 * 71))
    assert (SPEND.with_training_range(18.25, 118.75, margin=0).minimum,
            SPEND.with_training_range(18.25, 118.75, margin=0).maximum) == (18.25, 118.75)


def test_categories_and_flags_keep_their_own_bounds():
    assert PLAN.with_training_range(0, 1, margin=0.5) == PLAN
    assert FLAG.with_training_range(0, 1, margin=0.5) == FLAG
    assert PLAN.categorical and FLAG.categorical and not SPEND.categorical


@pytest.mark.parametrize("low, high, margin", [(5, 1, 0.5), (0, math.inf, 0.5), (math.nan, 1, 0.5), (0, 1, -0.1)])
def test_a_range_that_cannot_bound_is_an_error(low, high, margin):
    with pytest.raises(ValueError, match="cannot bound"):
        SPEND.with_training_range(low, high, margin)


@pytest.mark.parametrize("fields, message", [
    ({"dtype": "string", "minimum": 0}, "string input"), ({"dtype": "float32", "allowed": ["a"]}, "takes `values`"),
    ({"dtype": "float32", "minimum": 2, "maximum": 1}, "minimum 2.0 > maximum"),
    ({"dtype": "float32", "values": [0, 0.5], "integer": True}, "must be whole"),
    ({"dtype": "float32", "values": [0, 2], "maximum": 1}, "outside"),
    ({"dtype": "float32", "values": []}, "not empty"),
])
def test_rules_that_contradict_each_other_are_refused(fields, message):
    with pytest.raises(ValidationError, match=message):
        InputSpec(name="x", **fields)


# ------------------------------------------------------------------------------------ contract file
def test_rules_and_bounds_round_trip_through_the_contract_file(tmp_path):
    written = bounded()
    written.save(tmp_path)
    assert ModelContract.load(tmp_path) == written
    assert ModelContract.load(tmp_path).input("spend").training_range == (18.25, 118.75)


def test_a_contract_written_before_the_new_rules_still_loads_with_defaults(tmp_path):
    written = tabular(PLAN, MONTHS, SPEND)
    raw = json.loads(written.model_dump_json())
    for spec in raw["inputs"]:
        for field in NEW_FIELDS:
            del spec[field]
    (tmp_path / CONTRACT_FILE).write_text(json.dumps(raw))
    loaded = ModelContract.load(tmp_path)
    assert loaded == written and all(spec.values is None and spec.training_range is None for spec in loaded.inputs)
    assert TabularCodec(loaded).validate([{"plan": "pro", "months": 3.0, "spend": 1e30}])  # no bound then


# -------------------------------------------------------------------------------------------- codec
@pytest.fixture(scope="module")
def codec() -> TabularCodec:
    return TabularCodec(bounded())


def good() -> dict:
    return {"plan": "basic", "senior": 0, "months": 12, "spend": 50.5}


def test_a_flag_takes_only_its_values(codec):
    assert codec.validate([good() | {"senior": 1.0}])
    error = rejected(codec, good() | {"senior": 2})
    assert (error["loc"], error["type"]) == ([0, "senior"], "not_allowed_value")
    assert error["msg"] == "senior: 2 is not an allowed value (allowed: 0, 1)"


def test_numbers_beyond_the_training_bounds_are_refused_saying_where_the_bounds_come_from(codec):
    error = rejected(codec, good() | {"months": 1e30})
    assert (error["loc"], error["type"]) == ([0, "months"], "less_than_equal")
    assert error["msg"].startswith("months: 1e+30 is above the maximum 108 (the training data held 1 to 72")
    assert rejected(codec, good() | {"spend": -1})["msg"].startswith("spend: -1 is below the minimum 0")


@pytest.mark.parametrize("value, words", [("", "blank value"), (" pro", "' pro' has leading/trailing whitespace"),
                                          ("gold", "unknown category 'gold'")])
def test_a_category_names_blanks_padding_and_unknown_values_as_training_does(codec, value, words):
    assert rejected(codec, good() | {"plan": value})["msg"] == f"plan: {words} (allowed: basic, pro)"


def test_every_error_on_an_input_names_the_field_and_a_blank_id_is_refused(codec):
    assert rejected(codec, good() | {"spend": None})["msg"].startswith("spend: ")
    assert rejected(codec, good() | {"months": 2.5})["msg"].startswith("months: ")
    assert rejected(codec, good() | {"id": "  "})["msg"] == "id: blank value"


def test_a_flag_is_a_categorical_descriptor_and_the_schema_documents_it(codec):
    assert {d.name: d.numeric for d in codec.descriptors} == {"plan": False, "senior": False, "months": True,
                                                             "spend": True}
    (record,) = codec.request_schema()["$defs"].values()
    assert record["properties"]["senior"]["enum"] == [0, 1] and record["properties"]["months"]["maximum"] == 108
