import pytest

from fraud.config import Settings
from fraud.errors import ConfigError


def test_env_is_read_only_through_from_env():
    s = Settings.from_env({"MLFLOW_TRACKING_URI": "sqlite:///x.db", "FRAUD_FEEDBACK_DELAY_DAYS": "3"})
    assert s.tracking_uri == "sqlite:///x.db" and s.feedback_delay_days == 3
    assert Settings.from_env({}).tracking_uri.endswith("mlflow/mlflow.db")


def test_bad_values_are_named():
    with pytest.raises(ConfigError, match="'x'"):
        Settings.from_env({"FRAUD_ALERT_BUDGET": "x"})
    with pytest.raises(ConfigError, match="-1"):
        Settings(feedback_delay_days=-1)
