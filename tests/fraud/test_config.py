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


def test_every_text_variable_sets_its_field_and_empty_ones_are_ignored():
    env = {"MLFLOW_TRACKING_URI": "sqlite:///t.db", "FRAUD_ARTIFACT_ROOT": "/a", "FRAUD_ALERTS_DB": "sqlite:///al.db",
           "FRAUD_REVIEW_TOKEN": "tok", "FRAUD_REVIEW_SECRET": "sec", "FRAUD_BUNDLE_KEY": "key", "FRAUD_ARCHIVE": "/arc"}
    s = Settings.from_env(env)
    assert (s.tracking_uri, s.artifact_root, s.alerts_db, s.review_token, s.review_secret, s.bundle_key,
            s.archive) == ("sqlite:///t.db", "/a", "sqlite:///al.db", "tok", "sec", "key", "/arc")
    assert Settings.from_env({"FRAUD_ARCHIVE": ""}).archive is None
