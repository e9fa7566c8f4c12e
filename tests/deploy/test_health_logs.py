"""Probes (/healthz, /readyz) of the scorer's metrics port and of the review app; --log-format json."""
import io
import json
import logging
import urllib.error
import urllib.request

import pytest

from streaming.metrics import Metrics


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_metrics_port_serves_metrics_health_and_readiness():
    m = Metrics()
    server, _ = m.serve(0)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        m.events.inc(3)
        code, body = _get(base + "/metrics")
        assert code == 200 and "fraud_events_total 3.0" in body
        assert _get(base + "/healthz")[0] == 200
        m.ready = lambda: (False, "no model loaded yet (models:/x@champion)")
        code, body = _get(base + "/readyz")
        assert code == 503 and "no model loaded" in json.loads(body)["reason"]
        m.ready = lambda: (True, "model version 3")
        assert _get(base + "/readyz")[0] == 200
        assert _get(base + "/nope")[0] == 404
    finally:
        m.close()


def test_scorer_readiness_needs_model_and_consumer(tmp_path):
    from streaming.loop import Scorer, ServeConfig

    s = Scorer(ServeConfig(bootstrap="127.0.0.1:9", topic="t", group="g", model_uri="models:/m@champion",
                           state_dir=str(tmp_path)))
    assert s.metrics.ready == s.readiness
    ok, reason = s.readiness()
    assert not ok and "models:/m@champion" in reason
    s.bundle, s.version = object(), "7"
    ok, reason = s.readiness()
    assert not ok and "127.0.0.1:9" in reason
    s.consumer = object()
    assert s.readiness() == (True, "model version 7; 0 partition(s) assigned")
    s.consumer = None


def test_json_log_lines_carry_time_level_logger_message_and_fields():
    from fraud.commands.common import setup_logging

    buf = io.StringIO()
    setup_logging("INFO", "json", stream=buf)
    try:
        logging.getLogger("streaming.loop").info("model loaded uri=%s version=%s note=%s", "models:/m@champion", 3,
                                                 '"two words"')
        line = json.loads(buf.getvalue().strip().splitlines()[-1])
        assert line["level"] == "INFO" and line["logger"] == "streaming.loop"
        assert line["message"].startswith("model loaded uri=models:/m@champion")
        assert line["uri"] == "models:/m@champion" and line["version"] == "3" and line["note"] == "two words"
        assert line["time"].endswith("+00:00")
    finally:
        setup_logging("WARNING", "text")


@pytest.mark.parametrize("cmd", [["serve"], ["review", "serve"]])
def test_log_format_option_on_long_running_commands(cmd):
    from click.testing import CliRunner

    from fraud.cli import main

    out = CliRunner().invoke(main, cmd + ["--help"]).output
    assert "--log-format [text|json]" in out


def test_review_app_probes_need_no_sign_in(tmp_path):
    from fastapi.testclient import TestClient

    from fraud.review.app import create_app

    app = create_app(f"sqlite:///{tmp_path / 'a.db'}", token="t" * 24)
    c = TestClient(app)
    assert c.get("/healthz").json() == {"status": "ok"}
    assert c.get("/readyz").json() == {"status": "ready"}
    assert c.get("/api/clusters").status_code == 401
