"""configs/monitoring.yaml loads, and a typo in it is an error naming the key."""

from __future__ import annotations

import pytest

from monitoring.config import load_monitoring_config
from monitoring.scenarios import scenarios_for
from pipelines.common.config import ConfigError


def test_repo_config_loads_with_a_known_scenario_for_every_entry(config):
    churn = config.model("churn")
    assert churn.experiment == "churn-monitoring"
    assert set(churn.scenarios) <= set(scenarios_for("churn"))
    assert set(config.simulate.plan) <= set(scenarios_for("churn"))


def test_unknown_key_and_non_p_value_test_are_errors(tmp_path):
    path = tmp_path / "monitoring.yaml"
    path.write_text("models: {churn: {experiment: e, train_config: c, train_label_column: Churn}}\n"
                    "drift: {family_alpha: 0.01, famliy_alpha: 0.05}\n")
    with pytest.raises(ConfigError, match="drift.famliy_alpha"):
        load_monitoring_config(path)
    path.write_text("models: {churn: {experiment: e, train_config: c, train_label_column: Churn}}\n"
                    "drift: {num_method: wasserstein}\n")
    with pytest.raises(ConfigError, match="drift.num_method"):
        load_monitoring_config(path)


def test_unknown_model_is_a_clear_error(config):
    with pytest.raises(ValueError, match="model 'toy_image' has no monitoring section"):
        config.model("toy_image")
