"""fraud review clusters / show / report / serve through the CLI."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from fraud.cli import main
from fraud.errors import ConfigError
from fraud.store import AlertStore

from .helpers import hand_built_alerts


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('review_cli') / 'alerts.db'}"
    AlertStore(url).write_alerts(hand_built_alerts())
    return url


def run(args, env=None):
    return CliRunner().invoke(main, args, env=env or {}, catch_exceptions=True)


def test_clusters_json_highest_risk_first(db):
    r = run(["review", "clusters", "--alerts-db", db, "--json"])
    assert r.exit_code == 0, r.output
    js = json.loads(r.output)
    cl = js["clusters"]
    assert [c["risk"] for c in cl] == sorted((c["risk"] for c in cl), reverse=True)
    for key in ("id", "risk", "tx_ids", "customers", "terminals", "shared_terminals", "reasons", "scenario_mix",
                "first_seen", "last_seen", "amount_at_risk", "score_mean"):
        assert key in cl[0]
    assert sum(len(c["tx_ids"]) for c in cl) == len(hand_built_alerts())
    assert cl[0]["scenario_mix"]["4"] == 48
    table = run(["review", "clusters", "--alerts-db", db])
    assert table.exit_code == 0 and cl[0]["id"] in table.output
    since = json.loads(run(["review", "clusters", "--alerts-db", db, "--json", "--since", "2024-03-09"]).output)
    assert 0 < sum(len(c["tx_ids"]) for c in since["clusters"]) < len(hand_built_alerts())


def test_show_and_unknown_id(db):
    cl = json.loads(run(["review", "clusters", "--alerts-db", db, "--json"]).output)["clusters"]
    r = run(["review", "show", cl[1]["id"], "--alerts-db", db])
    assert r.exit_code == 0, r.output
    assert cl[1]["id"] in r.output and "T9" in r.output and "transactions:" in r.output
    js = json.loads(run(["review", "show", cl[1]["id"], "--alerts-db", db, "--json"]).output)
    assert len(js["transactions"]) == len(cl[1]["tx_ids"])
    bad = run(["review", "show", "Cdeadbeef0000", "--alerts-db", db])
    assert bad.exit_code != 0 and isinstance(bad.exception, ConfigError)
    assert "Cdeadbeef0000" in str(bad.exception)


def test_show_needs_the_since_its_cluster_was_listed_with(db):
    """Ids depend on --since (README, "Analyst review"): an id listed with --since is found with the same --since;
    without it the error names the id, the options given and the `clusters` command to list them with."""
    since = ["--since", "2024-03-09"]
    listed = json.loads(run(["review", "clusters", "--alerts-db", db, "--json", *since]).output)["clusters"]
    plain = {c["id"] for c in json.loads(run(["review", "clusters", "--alerts-db", db, "--json"]).output)["clusters"]}
    cid = next(c["id"] for c in listed if c["id"] not in plain)
    assert run(["review", "show", cid, "--alerts-db", db, *since]).exit_code == 0
    bad = run(["review", "show", cid, "--alerts-db", db])
    assert isinstance(bad.exception, ConfigError), bad.output
    msg = str(bad.exception)
    assert cid in msg and "no --since/--until/--archive/--context" in msg and "--since" in msg
    assert f"`fraud review clusters --alerts-db {db}`" in msg
    until = run(["review", "show", cid, "--alerts-db", db, "--until", "2024-03-20"])
    assert f"`fraud review clusters --alerts-db {db} --until 2024-03-20`" in str(until.exception)


def test_report_writes_html_and_pngs(db, tmp_path):
    out = tmp_path / "rep"
    r = run(["review", "report", "--alerts-db", db, "--out", str(out), "--detail", "1"])
    assert r.exit_code == 0, r.output
    html = (out / "index.html").read_text()
    assert "Fraud review report" in html and "purity" in html
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert {"risk.png", "scores.png", "map.png", "scenarios.png"} <= set(pngs)
    for name in ("risk.png", "map.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
        assert name in html
    top = json.loads(run(["review", "clusters", "--alerts-db", db, "--json"]).output)["clusters"][0]["id"]
    assert (out / f"{top}_graph.png").exists() and f"{top}_graph.png" in html
    assert len(pngs) == 4 + 3                          # 4 overview plots + 3 drawings of the top cluster


def test_serve_refuses_to_start_without_authentication(db):
    r = run(["review", "serve", "--alerts-db", db, "--port", "1"], env={"FRAUD_REVIEW_TOKEN": ""})
    assert isinstance(r.exception, ConfigError) and "FRAUD_REVIEW_TOKEN" in str(r.exception)


def test_serve_refuses_a_shared_token_with_a_users_file(db, tmp_path):
    users = tmp_path / "users.json"
    assert run(["review", "add-analyst", "alice", "--users", str(users)]).exit_code == 0
    r = run(["review", "serve", "--alerts-db", db, "--port", "1", "--users", str(users)],
            env={"FRAUD_REVIEW_TOKEN": "shared-token-123"})
    assert isinstance(r.exception, ConfigError) and "give one" in str(r.exception)
    r = run(["review", "serve", "--alerts-db", db, "--port", "1", "--users", str(tmp_path / "absent.json")])
    assert isinstance(r.exception, ConfigError) and "absent.json" in str(r.exception)


def test_add_rotate_remove_analyst(tmp_path):
    from fraud.review.auth import check_password, load_users

    users = tmp_path / "users.json"
    r = CliRunner().invoke(main, ["review", "add-analyst", "alice", "--users", str(users)])
    assert r.exit_code == 0, r.output
    token = r.stdout.strip().splitlines()[0]
    name, secret = token.split(":", 1)
    assert name == "alice" and len(secret) >= 32
    stored = load_users(users)["alice"]
    assert secret not in users.read_text() and check_password(secret, stored)
    assert users.stat().st_mode & 0o077 == 0                   # readable by its owner only
    rotated = run(["review", "add-analyst", "alice", "--users", str(users)]).output.strip().splitlines()[0]
    assert rotated != token and not check_password(secret, load_users(users)["alice"])
    bad = run(["review", "add-analyst", "eve:x", "--users", str(users)])
    assert isinstance(bad.exception, ConfigError) and "'eve:x'" in str(bad.exception)
    assert run(["review", "remove-analyst", "alice", "--users", str(users)]).exit_code == 0
    assert load_users(users) == {}
    missing = run(["review", "remove-analyst", "alice", "--users", str(users)])
    assert isinstance(missing.exception, ConfigError) and "'alice'" in str(missing.exception)


def test_review_secret_is_read_by_the_cli_settings_only():
    from fraud.config import Settings

    s = Settings.from_env({"FRAUD_REVIEW_SECRET": "s" * 32, "FRAUD_REVIEW_TOKEN": "t" * 16})
    assert s.review_secret == "s" * 32 and "s" * 32 not in repr(s) and "t" * 16 not in repr(s)


def test_serve_without_a_users_file_says_how_to_make_one(tmp_path):
    from fraud.errors import ConfigError
    from fraud.review.auth import load_users

    with pytest.raises(ConfigError, match=r"no such file; create it with `fraud review add-analyst NAME --users"):
        load_users(tmp_path / "analysts.json")
