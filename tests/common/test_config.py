"""`load_config`: a YAML file becomes a typed, frozen pydantic model, or an error that names the problem.

A toy schema stands in for a project's config, so these tests say what every project gets for free.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field, ValidationError

from pipelines.common.config import Config, ConfigError, load_config


class TrainingConfig(Config):
    depth: int = Field(3, ge=1)
    rate: float = 0.1


class ToyConfig(Config):
    name: str = "toy"
    training: TrainingConfig = TrainingConfig()


def write(tmp_path: Path, text: str, name: str = "toy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def config_error(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path, ToyConfig)
    return str(caught.value)


def test_valid_yaml_becomes_a_typed_config(tmp_path):
    config = load_config(write(tmp_path, "name: churn\ntraining: {depth: 5, rate: 0.3}\n"), ToyConfig)
    assert config == ToyConfig(name="churn", training=TrainingConfig(depth=5, rate=0.3))


def test_keys_left_out_keep_their_defaults(tmp_path):
    config = load_config(write(tmp_path, "training: {depth: 7}\n"), ToyConfig)
    assert (config.name, config.training.depth, config.training.rate) == ("toy", 7, 0.1)


def test_empty_file_gives_the_defaults(tmp_path):
    assert load_config(write(tmp_path, ""), ToyConfig) == ToyConfig()


def test_unknown_config_key_is_named_in_the_error(tmp_path):
    path = write(tmp_path, "training: {depht: 4}\n")  # a typo must not silently fall back to the default
    message = config_error(path)
    assert "training.depht" in message
    assert str(path) in message


def test_unknown_top_level_key_is_named_in_the_error(tmp_path):
    message = config_error(write(tmp_path, "name: toy\nlearning_rate: 0.1\n"))
    assert "learning_rate" in message


def test_wrong_type_names_the_dotted_field(tmp_path):
    message = config_error(write(tmp_path, "training: {depth: deep}\n"))
    assert "training.depth" in message
    assert "integer" in message


def test_out_of_range_value_names_the_dotted_field(tmp_path):
    message = config_error(write(tmp_path, "training: {depth: 0}\n"))
    assert "training.depth" in message
    assert "greater than or equal to 1" in message


def test_every_problem_is_reported_at_once(tmp_path):
    message = config_error(write(tmp_path, "training: {depth: deep, rate: fast}\n"))
    assert "training.depth" in message and "training.rate" in message


def test_missing_file_is_an_error_naming_the_path(tmp_path):
    path = tmp_path / "absent.yaml"
    assert config_error(path) == f"config file not found: {path}"


def test_invalid_yaml_is_an_error_naming_the_file(tmp_path):
    path = write(tmp_path, "training: [1, 2\n")
    message = config_error(path)
    assert message.startswith(f"{path}: not valid YAML")


@pytest.mark.parametrize("text, kind", [("- name\n- training\n", "list"), ("just words\n", "str")])
def test_top_level_must_be_a_mapping(tmp_path, text, kind):
    message = config_error(write(tmp_path, text))
    assert message.endswith(f"expected a mapping at the top level, got {kind}")


def test_config_error_is_a_value_error_so_the_cli_reports_it_cleanly():
    assert issubclass(ConfigError, ValueError)


def test_loaded_config_is_immutable(tmp_path):
    config = load_config(write(tmp_path, "name: churn\n"), ToyConfig)
    with pytest.raises(ValidationError):
        config.name = "other"
