"""The shipped churn config: it loads, it spells out every knob, and its cross-field rules hold."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from pipelines.churn.config import ChurnConfig
from pipelines.common.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]
CHURN_YAML = REPO / "configs" / "churn.yaml"
TINY_YAML = REPO / "tests" / "churn" / "tiny.yaml"


def fields_left_to_defaults(model: BaseModel, prefix: str = "") -> list[str]:
    """Dotted names of the fields the YAML did not set (pydantic remembers which ones it was given)."""
    missing = []
    for name in type(model).model_fields:
        dotted = f"{prefix}{name}"
        if name not in model.model_fields_set:
            missing.append(dotted)
            continue
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            missing += fields_left_to_defaults(value, prefix=f"{dotted}.")
    return missing


@pytest.mark.parametrize("path", [CHURN_YAML, TINY_YAML], ids=["churn.yaml", "tiny.yaml"])
def test_config_file_loads_into_churn_config(path):
    assert isinstance(load_config(path, ChurnConfig), ChurnConfig)


def test_churn_yaml_sets_every_field_so_it_documents_every_knob():
    config = load_config(CHURN_YAML, ChurnConfig)
    assert fields_left_to_defaults(config) == []


def test_the_field_check_would_notice_a_knob_left_out(tmp_path):
    partial = tmp_path / "partial.yaml"
    partial.write_text("seed: 1\nsegments: {k_min: 2, k_max: 3}\n")
    missing = fields_left_to_defaults(load_config(partial, ChurnConfig))
    assert "segments.sample_rows" in missing
    assert "gate" in missing
    assert "seed" not in missing and "segments.k_max" not in missing


def test_segments_k_max_below_k_min_is_rejected(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("segments: {k_min: 5, k_max: 3}\n")
    with pytest.raises(ConfigError, match=r"segments.k_max \(3\) < segments.k_min \(5\)"):
        load_config(path, ChurnConfig)


def test_segments_k_max_equal_to_k_min_is_allowed():
    assert ChurnConfig.model_validate({"segments": {"k_min": 3, "k_max": 3}}).segments.k_max == 3


@pytest.mark.parametrize("section, values, field", [
    ("split", {"valid_fraction": 0.6}, "split.valid_fraction"),
    ("cost", {"offer_success_rate": 1.5}, "cost.offer_success_rate"),
    ("gate", {"confidence": 0.5}, "gate.confidence"),
    ("optimize", {"n_trials": 0}, "optimize.n_trials"),
    ("segments", {"k_min": 1}, "segments.k_min"),
])
def test_out_of_range_knob_is_rejected_by_name(section, values, field):
    with pytest.raises(ValidationError) as caught:
        ChurnConfig.model_validate({section: values})
    locations = [".".join(str(part) for part in error["loc"]) for error in caught.value.errors()]
    assert locations == [field]


def test_unknown_model_name_is_rejected():
    with pytest.raises(ValidationError, match="lightgbm"):
        ChurnConfig.model_validate({"models": {"lightgbm": {"n_estimators": 10}}})
