"""`fraud retrain --alerts-db sqlite:///wrong/path.db` (README, "Configuration"): a missing alert store is an error
naming the path, given before the data is read (reading a large file or archive and measuring the champion's
drift took minutes before the mistake was reported)."""
from __future__ import annotations

from click.testing import CliRunner

from fraud.cli import main
from fraud.errors import ConfigError
from fraud.simulate import simulate


def test_retrain_reports_a_missing_alert_store_before_reading_the_data(tmp_path):
    data = tmp_path / "world.csv"
    simulate(customers=20, terminals=20, days=3, seed=0).to_csv(data, index=False)
    missing = tmp_path / "wrong" / "path.db"
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
           "FRAUD_ARTIFACT_ROOT": str(tmp_path / "artifacts")}
    r = CliRunner().invoke(main, ["retrain", "--data", str(data), "--alerts-db", f"sqlite:///{missing}"], env=env)
    assert isinstance(r.exception, ConfigError), r.output    # `fraud` (fraud.cli.entry) exits 2 with its message
    assert str(missing) in str(r.exception)
    assert "reading" not in r.output, r.output
    assert not missing.exists()
