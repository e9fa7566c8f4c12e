"""The deployment files (Dockerfile, compose.yaml, deploy/) checked without Docker: compose parses and has the
services with the keys they need, every file it mounts exists, the Grafana dashboard and the Prometheus rules
only query metrics the scorer exports; `docker compose config` runs where Docker Compose exists."""
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from streaming.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def exported_metric_names() -> set[str]:
    """Every series name the scorer's registry can expose (labelled metrics too, before their first sample)."""
    suffixes = {"counter": ("_total", "_created"), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum"),
                "summary": ("_count", "_sum")}
    return {f.name + s for f in Metrics().registry.collect() for s in suffixes[f.type]}


def _metric_refs(expr: str) -> set[str]:
    return set(re.findall(r"\bfraud_[a-z0-9_]+", expr))


def test_compose_has_the_services_with_the_keys_they_need():
    svc = _compose()["services"]
    assert {"kafka", "postgres", "mlflow", "scorer", "review", "prometheus", "grafana", "fraud"} <= set(svc)
    for name in ("kafka", "postgres", "mlflow", "scorer", "review", "prometheus", "grafana"):
        assert "image" in svc[name], name
    assert svc["mlflow"]["build"] == "."
    assert "KAFKA_PROCESS_ROLES" in svc["kafka"]["environment"]                       # KRaft, no ZooKeeper
    mlflow_cmd = " ".join(svc["mlflow"]["command"])
    assert "--backend-store-uri=postgresql://" in mlflow_cmd and "--artifacts-destination" in mlflow_cmd
    assert any(v.startswith("mlflow-artifacts:") for v in svc["mlflow"]["volumes"])
    scorer = svc["scorer"]
    cmd = " ".join(scorer["command"])
    assert scorer["command"][0] == "serve" and "--group=fraud-scorer" in cmd and "--metrics-host=0.0.0.0" in cmd
    assert "replicas" in scorer["deploy"] and "/readyz" in " ".join(scorer["healthcheck"]["test"])
    assert scorer["environment"]["FRAUD_ALERTS_DB"].startswith("postgresql://")
    assert scorer["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert svc["review"]["command"][:2] == ["review", "serve"]
    labels = svc["labels"]["command"]  # the analysts' decisions reach the scorers' state as they are made
    assert labels[0] == "send-labels" and "--follow" in labels and "--topic=transactions" in labels
    assert "/readyz" in " ".join(svc["review"]["healthcheck"]["test"])
    for name, s in svc.items():
        for dep in s.get("depends_on", {}):
            assert dep in svc, f"{name} depends on unknown service {dep}"
        for v in s.get("volumes", []):
            src = v.split(":")[0]
            if not src.startswith("."):
                assert src in _compose()["volumes"], f"{name}: named volume {src} not declared"


def test_every_file_the_stack_references_exists():
    refs = []
    for s in _compose()["services"].values():
        refs += [v.split(":")[0] for v in s.get("volumes", []) if v.startswith(".")]
    refs += ["Dockerfile", ".dockerignore"]
    for r in refs:
        assert (ROOT / r).exists(), f"compose.yaml references {r}, which does not exist"
    prom = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    assert [Path(f).name for f in prom["rule_files"]] == ["alerts.yml"]
    assert prom["scrape_configs"][0]["dns_sd_configs"][0]["names"] == ["scorer"]
    prov = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/fraud.yml").read_text())
    assert prov["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_dockerfile_installs_cpu_torch_first_runs_as_non_root_with_fraud_entry_point():
    text = (ROOT / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    torch = next(i for i, line in enumerate(lines) if "torch==2.13.0" in line)
    project = next(i for i, line in enumerate(lines) if re.search(r"pip install '\.\[", line))
    assert torch < project and "whl/cpu" in lines[torch]
    assert re.search(r"^USER (?!root)\S+", text, re.M)
    assert 'ENTRYPOINT ["fraud"]' in text
    compile_at = next(i for i, line in enumerate(lines) if "fraud compile" in line)  # kernels cached in the image
    assert project < compile_at and "NUMBA_CACHE_DIR" in text
    for src in re.findall(r"^COPY (\S+)", text, re.M):
        assert (ROOT / src).exists(), src


def test_grafana_dashboard_queries_only_exported_metrics():
    dash = json.loads((ROOT / "deploy/grafana/dashboards/fraud-scorer.json").read_text())
    names = exported_metric_names()
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = set().union(*map(_metric_refs, exprs))
    assert used <= names, f"dashboard queries metrics the scorer does not export: {sorted(used - names)}"
    assert all(_metric_refs(e) for e in exprs)
    for needed in ("fraud_events_total", "fraud_consumer_lag", "fraud_latency_seconds_bucket", "fraud_alerts_total",
                   "fraud_dead_letters_total", "fraud_model_version", "fraud_checkpoint_failures_total",
                   "fraud_offset_resets_total"):
        assert needed in used, needed
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])


def test_prometheus_rules_parse_and_reference_real_metrics():
    rules = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    all_rules = [r for g in rules["groups"] for r in g["rules"]]
    names = exported_metric_names()
    for r in all_rules:
        assert {"alert", "expr", "labels", "annotations"} <= set(r), r
        refs = _metric_refs(r["expr"])
        assert refs and refs <= names, f"{r['alert']}: {sorted(refs - names)}"
        assert r["expr"].count("(") == r["expr"].count(")"), r["alert"]
    alerts = {r["alert"] for r in all_rules}
    assert {"FraudConsumerLagGrowing", "FraudDeadLetters", "FraudNoEvents", "FraudLatencyP99OverBudget"} <= alerts
    promtool = shutil.which("promtool")
    if promtool:
        subprocess.run([promtool, "check", "rules", str(ROOT / "deploy/prometheus/alerts.yml")], check=True)


def _compose_command() -> list[str] | None:
    """`docker compose` (v2) where installed, else `docker-compose` (v1, Debian's package), else None."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


@pytest.mark.skipif(_compose_command() is None, reason="neither docker compose nor docker-compose is installed here")
def test_docker_compose_config():
    out = subprocess.run([*_compose_command(), "-f", str(COMPOSE), "config", "--quiet"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_project_name_comes_from_the_env_file():
    assert "COMPOSE_PROJECT_NAME=fraud-graph" in (ROOT / ".env").read_text().splitlines()
