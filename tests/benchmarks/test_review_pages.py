"""`fraud bench pages` on a small real store: every figure present, and the user's store left as it was (the
bench works on a copy)."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from fraud.cli import main
from fraud.errors import ConfigError
from fraud.store import AlertStore



def _hand_built_alerts():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "review_test_helpers", Path(__file__).resolve().parents[1] / "fraud" / "review" / "helpers.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.hand_built_alerts()


@pytest.fixture()
def store_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'alerts.db'}"
    AlertStore(url).write_alerts(_hand_built_alerts())
    return url


def test_cli_reports_every_page_and_leaves_the_store_alone(store_url):
    before = AlertStore(store_url).count_alerts()
    r = CliRunner().invoke(main, ["bench", "pages", "--alerts-db", store_url, "--repeat", "1"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "first grouping" in r.output and "new alert 1: queue" in r.output
    assert AlertStore(store_url).count_alerts() == before


def test_figures_are_all_there_and_the_store_is_left_alone(store_url):
    from benchmarks.review_pages import run

    before = AlertStore(store_url).count_alerts()
    out = run(store_url, repeat=2)
    assert out["alerts"] == before and out["cases"] >= 1 and out["first_grouping_s"] > 0
    assert set(out["pages"]) == {"queue", "clusters", "api_clusters", "cluster", "case"}
    assert all(t["best_ms"] > 0 and t["median_ms"] >= t["best_ms"] for t in out["pages"].values())
    assert len(out["after_one_new_alert"]) == 2
    for after in out["after_one_new_alert"]:
        assert after["queue_ms"] > 0 and after["grouping_landed_s"] * 1000 + 1 >= after["queue_ms"]
    assert AlertStore(store_url).count_alerts() == before                 # the copy took the new alerts


def test_only_sqlite_files(tmp_path):
    from benchmarks.review_pages import run

    with pytest.raises(ConfigError, match="copy of a SQLite store file"):
        run("postgresql://u@h/db")
    with pytest.raises(ConfigError, match="copy of a SQLite store file"):
        run(f"sqlite:///{tmp_path / 'missing.db'}")
