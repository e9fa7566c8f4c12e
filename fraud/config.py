"""One typed settings object. Environment variables are read only by ``Settings.from_env``,
which only entry points call (the CLI, the MLproject, a pyfunc model MLflow serves: its load_context)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from fraud.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
MLFLOW_DIR = PROJECT_ROOT / "mlflow"


def default_tracking_uri() -> str:
    return f"sqlite:///{MLFLOW_DIR / 'mlflow.db'}"


def default_artifact_root() -> str:
    return str(MLFLOW_DIR / "artifacts")


#: environment variables read as text by Settings.from_env, and the field each sets
_TEXT_ENV = {"MLFLOW_TRACKING_URI": "tracking_uri", "FRAUD_ARTIFACT_ROOT": "artifact_root",
             "FRAUD_ALERTS_DB": "alerts_db", "FRAUD_REVIEW_TOKEN": "review_token",
             "FRAUD_REVIEW_SECRET": "review_secret", "FRAUD_BUNDLE_KEY": "bundle_key", "FRAUD_ARCHIVE": "archive"}


@dataclass(frozen=True)
class Settings:
    feedback_delay_days: int = 7
    alert_budget_per_day: int = 100
    tracking_uri: str = field(default_factory=default_tracking_uri)
    artifact_root: str = field(default_factory=default_artifact_root)
    model_name: str = "fraud-detector"
    alerts_db: str = "sqlite:///alerts.db"
    review_token: str | None = field(default=None, repr=False)
    review_secret: str | None = field(default=None, repr=False)   # signs review sessions (FRAUD_REVIEW_SECRET)
    seed: int = 0
    bundle_key: str | None = field(default=None, repr=False)  # FRAUD_BUNDLE_KEY: HMAC key of registered bundles
    archive: str | None = None  # FRAUD_ARCHIVE: the scorer's archive, the history a served pyfunc model reads

    def __post_init__(self):
        if self.feedback_delay_days < 0:
            raise ConfigError(f"feedback_delay_days: {self.feedback_delay_days!r} must be >= 0")
        if self.alert_budget_per_day <= 0:
            raise ConfigError(f"alert_budget_per_day: {self.alert_budget_per_day!r} must be > 0")

    @classmethod
    def from_env(cls, env: dict | None = None, **overrides) -> "Settings":
        env = os.environ if env is None else env
        kw: dict = {name: env[key] for key, name in _TEXT_ENV.items() if env.get(key)}
        for name, key, conv in (
            ("feedback_delay_days", "FRAUD_FEEDBACK_DELAY_DAYS", int),
            ("alert_budget_per_day", "FRAUD_ALERT_BUDGET", int),
        ):
            if env.get(key):
                try:
                    kw[name] = conv(env[key])
                except ValueError:
                    raise ConfigError(f"environment {key}={env[key]!r}: not an integer") from None
        kw.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**kw)

    def with_(self, **kw) -> "Settings":
        return replace(self, **{k: v for k, v in kw.items() if v is not None})
