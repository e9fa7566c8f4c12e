"""The live scorer: a kafka-python consumer group that validates, scores and sinks transaction events.

Loop (one micro-batch at a time)::

    poll -> validate (bad events to the dead-letter topic; streaming.fastpath: a cheap path for plainly
    well-formed batches, identical results) -> update state and score (per partition, with the partition's
    own online state; one detector call for all partitions via ``score_many``) -> write sinks (scores/alerts
    topics: sent at once, values pre-encoded; alert store and archive: buffered) -> [every checkpoint
    interval: hand the buffers and the planned checkpoints (light: nothing serialised) to a writer thread, which
    flushes the producer, the alert store and the archive, then saves state+offsets; once it is done the scoring
    thread commits the offsets]

Latency (metric ``fraud_latency_seconds``) = the time the batch's results were handed to the producer minus
the event's Kafka timestamp (producer create time); the producer delivers them within its linger time
(``linger_ms``, 2 ms). Archive and alert-store writes are off this path (writer thread).

Delivery is at-least-once with idempotent sinks (alert store and archive keyed by tx_id / offsets). The
state is keyed per partition and checkpointed with the offset it reflects, so on restart or rebalance the
scorer that gets a partition loads its checkpoint and seeks to that offset.

Checkpoints are light when there is an archive (``snapshot_events`` > 0): the state is *base + log*. The base is
the model's own starting state (``warm_state``: nothing stored) or a state serialised once every
``snapshot_events`` events of the partition (a base file); the log is the partition's archived events since the
base, which the checkpoint job has flushed before it writes the checkpoint. So a periodic checkpoint serialises
nothing on the scoring thread (a warm state of ~17 MB took ~40-100 ms per partition to pickle); a restore replays
at most ``snapshot_events`` archived events per partition through the bundle's online features
(:meth:`Scorer.restore_light`). A partition revoked with events since its last checkpoint is checkpointed in full
(the next owner may not read this scorer's archive); after a model swap the next checkpoint takes new bases.
Scorers of one group share STATE_DIR and, for light checkpoints, the archive (its path is in the checkpoint). The model is swapped between
batches when the registry alias moves (polled every ``reload_interval`` seconds).

Tail latency: once started (model, consumer, sinks loaded) and after each model swap, the scorer freezes the
Python heap (``freeze_heap``, ``ServeConfig.gc_freeze``): full garbage collections otherwise traverse the ~0.55 M
objects of torch/pandas/sklearn/mlflow/SQLAlchemy and the model, ~0.3-0.7 s each on this machine, on the scoring
thread. The writer thread shares the GIL with the scoring thread: whatever it does in Python stretches the
batches scored meanwhile (with the archive and alert store buffering DataFrames, each checkpoint's ~50 ms of
pandas concatenation stretched ~5 batches 2-3x: bench stream p99 60-69 ms); the buffering sinks keep each batch's
column arrays instead (``streaming.sinks.concat_columns``: p99 35-45 ms), and the writer takes each step of its
job while the scoring thread waits in poll (``writer_gate_ms``): batches scored during a checkpoint 20-25 ms ->
12-14 ms against 9-10 ms otherwise, p99 33-43 ms. The micro-batch policy needs no tuning for latency: a poll
returns at once with what was fetched (the next fetch is in flight while a batch is scored; measured: the newest
event of a batch is ~10 ms old when the poll returns), so a batch is what arrived during the previous cycle.

Nothing here depends on a particular broker: ``client_kw`` (security_protocol, sasl_*, ssl_*) passes through
to kafka-python.
"""
from __future__ import annotations

import gc
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import crc32c
import numpy as np
import pandas as pd

from fraud.errors import ConfigError, FraudError, RegistryError
from streaming.broker import ensure_topics, parse_bootstrap, wait_for_broker
from streaming.checkpoint import Item, Job, run_job
from streaming.dlq import DeadLetterSink
from streaming.decode import EventRules, Letter, decode, to_frame
from streaming.dedup import CONFLICT, NEW, REPLAY, SeenIds
from streaming.metrics import Metrics
from streaming.sinks import AlertStoreSink, ArchiveSink, TopicSink, TrackedProducer
from streaming.state import CheckpointStore, dump_state, load_state

log = logging.getLogger("streaming.loop")


@dataclass
class ServeConfig:
    bootstrap: str
    topic: str = "transactions"
    group: str = "fraud-scorer"
    model_uri: str = "models:/fraud-detector@champion"
    tracking_uri: str | None = None
    alerts_db: str | None = None
    archive_dir: str | None = None
    state_dir: str = "state"
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    reload_interval: float = 60.0
    batch_size: int = 2000  # max events per micro-batch: at low load a poll returns fewer (latency)
    poll_timeout_ms: int = 100
    checkpoint_interval: float = 5.0
    scores_topic: str | None = "scores"
    alerts_topic: str | None = "alerts"
    dlq_topic: str = "transactions.dlq"
    max_message_bytes: int = 256 * 1024
    max_event_age_days: float = 3650.0  # older events (against the broker's time) are dead-lettered
    max_event_lead_hours: float = 24.0  # so are events this far ahead of it (a broken clock moves the state's)
    dedup_days: float = 7.0  # a tx_id scored within this many days (event time) is not scored again
    dedup_max_ids: int = 500_000  # remembered tx_ids per partition (bounded memory; oldest forgotten first)
    max_pending_rows: int = 2_000_000  # archive rows failed checkpoints may leave unwritten before input pauses
    partitions: int = 8  # used only when the input topic is created here
    create_topics: bool = True
    auto_offset_reset: str = "earliest"
    broker_wait_timeout: float | None = None  # None = retry forever
    warmup_days: float = 7.0  # on a model swap, new states absorb this many days of archived events
    linger_ms: int = 2  # producer linger (scores/alerts/dead letters): part of the produce -> score latency
    background_checkpoint: bool = True  # periodic checkpoints write archive/store/state on a writer thread
    # light checkpoints (with an archive): a checkpoint names the partition's base state + offset, and the archive
    # holds the events since (nothing serialised on the scoring thread). A new base (the state serialised in full)
    # is taken once a partition absorbed this many events since its base: it bounds the replay on restore.
    # 0 = every checkpoint serialises the full state.
    snapshot_events: int = 100_000
    threads: int | None = 1  # native (OpenMP/BLAS) threads for scoring micro-batches; None = library default
    # after start-up (model, consumer, sinks) and after each model swap, move every live object to Python's
    # permanent GC generation (freeze_heap): full collections then skip the ~0.55 M objects of torch, pandas,
    # sklearn, mlflow, SQLAlchemy and the model (measured in `fraud bench stream`: full collections of 0.3-0.7 s
    # while scoring, a p99 latency; at most ~60 ms each once frozen, on a loaded 2-core machine)
    gc_freeze: bool = True
    # the checkpoint writer runs each step of its job (alert store, archive concatenation and conversion, each
    # archive file, the checkpoint files) when the scoring thread is waiting in poll, or after this many ms
    # (it shares the GIL: see the module doc); 0 = no gate
    writer_gate_ms: float = 50.0
    client_kw: dict = field(default_factory=dict)  # security / SASL / TLS passthrough
    consumer_kw: dict = field(default_factory=dict)
    producer_kw: dict = field(default_factory=dict)

    def __post_init__(self):
        parse_bootstrap(self.bootstrap)
        if self.batch_size <= 0:
            raise ConfigError(f"--batch-size {self.batch_size!r}: must be > 0")
        if self.reload_interval <= 0:
            raise ConfigError(f"--reload-interval {self.reload_interval!r}: must be > 0")
        if self.snapshot_events < 0:
            raise ConfigError(f"--snapshot-events {self.snapshot_events!r}: must be >= 0")
        if self.dedup_max_ids <= 0:
            raise ConfigError(f"--dedup-max-ids {self.dedup_max_ids!r}: must be > 0")
        if self.max_event_age_days <= 0 or self.max_event_lead_hours < 0:
            raise ConfigError(f"--max-event-age-days {self.max_event_age_days!r} / --max-event-lead-hours "
                              f"{self.max_event_lead_hours!r}: must be > 0 / >= 0")

    @property
    def rules(self) -> EventRules:
        return EventRules(max_bytes=self.max_message_bytes, max_age_days=self.max_event_age_days,
                          max_lead_hours=self.max_event_lead_hours)


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``models:/NAME@ALIAS`` -> (NAME, ALIAS, None); ``models:/NAME/VERSION`` -> (NAME, None, VERSION)."""
    if not uri.startswith("models:/"):
        return uri, None, None
    rest = uri[len("models:/"):]
    if "@" in rest:
        name, alias = rest.split("@", 1)
        return name, alias, None
    if "/" in rest:
        name, ver = rest.rsplit("/", 1)
        return name, None, ver
    return rest, None, None


def default_loader(uri: str, tracking_uri: str | None):
    from fraud.registry import load_bundle

    return load_bundle(uri, tracking_uri=tracking_uri)


def default_resolver(name: str, alias: str, tracking_uri: str | None) -> str:
    from fraud import registry

    try:
        return str(registry.resolve_alias(name, alias, tracking_uri=tracking_uri))
    except TypeError:  # resolve_alias(name, alias) without tracking_uri
        return str(registry.resolve_alias(name, alias))



def freeze_heap() -> int:
    """Collect once, then move every live object to Python's permanent GC generation (``gc.freeze``); returns
    how many objects are frozen. Full (generation 2) collections traverse every tracked object: with torch,
    pandas, sklearn, mlflow and SQLAlchemy loaded that is ~0.55 M objects, ~0.5 s per collection on this
    machine, a pause on the scoring thread every few seconds under load. Frozen objects are still freed by
    reference counting; only reference cycles among them are never collected, so the scorer freezes at
    start-up and after a model swap (``unfreeze`` first, so the old model's cycles are collected)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    # full collections 10x rarer than Python's default (one per 100 young-generation collections, not 10):
    # the scorer's unfrozen heap is mostly the producer's pending futures and the sinks' buffers (50-175 k
    # objects between checkpoints), freed by reference counting; a full pass over them took 3-35 ms on the
    # scoring thread, 4-5 times per 10 s at 1,000 events/s (measured with `fraud bench stream`)
    g0, g1, g2 = gc.get_threshold()
    _GC_BEFORE.setdefault("threshold", (g0, g1, g2))
    gc.set_threshold(g0, g1, 100)
    return gc.get_freeze_count()


_GC_BEFORE: dict = {}


def thaw_heap() -> None:
    """Undo :func:`freeze_heap` (objects back to the collected generations, the thresholds as they were)."""
    gc.unfreeze()
    if "threshold" in _GC_BEFORE:
        gc.set_threshold(*_GC_BEFORE.pop("threshold"))


def _crc(value) -> int:
    return crc32c.crc32c(value or b"")


def _warm_or_new(bundle):
    """The bundle's training-cutoff state when it has one (``warm_state``), else an empty state."""
    return bundle.warm_state() if hasattr(bundle, "warm_state") else bundle.new_state()

def score_partitions(bundle, groups: list) -> list:
    """Score several partitions' micro-batches, each with its own online state: ``groups`` is a list of
    (canonical rows, state); returns one result frame per group, as ``bundle.score(rows, state)`` would.

    Uses ``bundle.score_many(groups)`` when the bundle has it. Otherwise, for a
    :class:`fraud.bundle.ScoringBundle`, each partition's features come from its own state
    (``features_online``) and the detector runs ONCE over all of them (its per-call cost dominates small
    batches; its per-row scores do not depend on the other rows: a test proves the results equal per-partition
    ``score`` calls). Any other object: one ``score`` call per partition.
    """
    if len(groups) == 1:
        rows, st = groups[0]
        return [bundle.score(rows, st)]
    many = getattr(bundle, "score_many", None)
    if callable(many):
        return list(many(groups))
    if not (hasattr(bundle, "features_online") and hasattr(bundle, "_decide")):
        return [bundle.score(rows, st) for rows, st in groups]
    from fraud import schema

    parts, xs = [], []
    for rows, st in groups:
        bundle.check_columns(rows)
        parts.append(rows)
        xs.append(bundle.features_online(rows, st))
    all_rows = pd.concat(parts, ignore_index=True)
    X = pd.concat(xs, ignore_index=True)
    out = bundle._decide(all_rows, X)
    res, i = [], 0
    for rows, st in groups:
        n = len(rows)
        res.append(out.iloc[i:i + n].reset_index(drop=True))
        i += n
        st.n_scored += n
        st.last_timestamp = rows[schema.TIMESTAMP].iloc[-1]
    return res


def archive_rows(root, topic: str, partition: int, lo: int | None = None, hi: int | None = None) -> pd.DataFrame:
    """The archived events of ``partition`` with ``lo <= kafka_offset < hi`` (bounds optional), in offset order,
    with the archive's columns (canonical + kafka_* + results)."""
    files = [f for f, _, first, last in ArchiveSink(root, topic).files(partition)
             if (hi is None or first < hi) and (lo is None or last >= lo)]
    if not files:
        return pd.DataFrame()
    df = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    keep = np.ones(len(df), dtype=bool)
    if lo is not None:
        keep &= df["kafka_offset"].to_numpy() >= lo
    if hi is not None:
        keep &= df["kafka_offset"].to_numpy() < hi
    return df[keep].sort_values("kafka_offset", kind="stable").reset_index(drop=True)


def absorb(bundle, st, df: pd.DataFrame, chunk: int = 5000) -> int:
    """Absorb archived events ``df`` (offset order) into ``st`` through the online path, as scoring them did
    (features only: nothing is scored or written). Returns the number of events absorbed."""
    if not len(df):
        return 0
    drop = [c for c in ("kafka_partition", "kafka_offset", "score", "is_alert", "reasons", "model_version")
            if c in df.columns]
    rows = df.drop(columns=drop).reset_index(drop=True)
    rows["timestamp"] = rows["timestamp"].astype("datetime64[ns, UTC]")
    for i in range(0, len(rows), chunk):
        part = rows.iloc[i:i + chunk].sort_values("timestamp", kind="stable").reset_index(drop=True)
        if hasattr(bundle, "features_online") and hasattr(st, "n_scored"):
            bundle.features_online(part, st)
            st.n_scored += len(part)
            st.last_timestamp = part["timestamp"].iloc[-1]
        else:
            bundle.score(part, st)
    return len(rows)


def warm_up(bundle) -> float:
    """Score two synthetic events on a throwaway state, so one-time costs (numba JIT compilation in some
    detectors, lazy imports) are paid at load time, not on the first live batch. Returns seconds taken."""
    t0 = time.perf_counter()
    ts = pd.Timestamp.now(tz="UTC").floor("s")
    rows = pd.DataFrame({"tx_id": ["__warmup_1", "__warmup_2"],
                         "timestamp": pd.Series([ts, ts + pd.Timedelta(seconds=1)], dtype="datetime64[ns, UTC]"),
                         "customer_id": ["__warmup", "__warmup"], "terminal_id": ["__warmup", "__warmup"],
                         "amount": np.array([10.0, 5000.0])})
    st = bundle.new_state()
    bundle.score(rows, st)
    # a row that alerts exercises the explanation path too, when the model explains alerts
    old = getattr(bundle, "threshold", None)
    if old is not None:
        try:
            bundle.threshold = -np.inf
            bundle.score(rows.assign(tx_id=["__warmup_3", "__warmup_4"]), bundle.new_state())
        finally:
            bundle.threshold = old
    if hasattr(bundle, "timings"):
        bundle.timings.clear()
    dt = time.perf_counter() - t0
    log.info("model warm-up seconds=%.2f", dt)
    return dt


class Scorer:
    """One member of the scoring consumer group. ``run(stop)`` until ``stop`` (a threading.Event) is set."""

    def __init__(self, config: ServeConfig, loader: Callable | None = None, resolver: Callable | None = None,
                 on_batch: Callable | None = None):
        self.cfg = config
        self.loader = loader or default_loader
        self.resolver = resolver or default_resolver
        self.on_batch = on_batch  # on_batch(results_df, latencies_ms ndarray) after each batch is written
        self.metrics = Metrics()
        self.metrics.ready = self.readiness  # /readyz on the metrics port
        self.bundle = None
        self.version: str | None = None
        self.states: dict[int, object] = {}
        # light checkpoints: per partition, the base its state grew from ({"kind": "fresh"|"file", "file",
        # "offset", "n_scored", "archive"}), or None when the state has no reproducible base (a full one is due)
        self.bases: dict[int, dict | None] = {}
        self.next_offset: dict[int, int] = {}
        self.dirty: set[int] = set()
        self.seen: dict[int, SeenIds] = {}  # per partition: the tx_ids scored (replays are not scored again)
        self.last_record: dict[int, object] = {}  # per partition: the last message consumed (checkpointed)
        self._verify: dict[int, tuple] = {}  # restored partitions: (offset, timestamp, crc) their log must hold
        self._carry: Job | None = None  # what a failed checkpoint job left to write
        self.consumer = None
        self.producer = None
        self.sinks: list = []
        self.archive: ArchiveSink | None = None
        self.store = None
        self.dlq: DeadLetterSink | None = None
        self.ckpt = CheckpointStore(config.state_dir, config.topic)
        self.n_events = 0
        self.n_scored = 0
        self.n_alerts = 0
        self._last_ckpt = time.monotonic()
        self._last_reload_check = time.monotonic()
        self._stop = threading.Event()
        self._pending_start: set[int] = set()
        self._ck_exec = None  # single writer thread of background checkpoints
        # set while the scoring thread waits (in poll, or for the checkpoint job): the writer's gate
        self._polling = threading.Event()
        self._ck_job = None  # (future, Job) of the checkpoint job in flight
        self._last_lag = 0.0
        self._topic_id = None  # the input topic's id (kafka-python's metadata): a new one means it was recreated
        self.t_first_poll: float | None = None

    # -- model -------------------------------------------------------------------------------------------
    def load_model(self) -> None:
        """First load: failure is fatal, with the URI in the message."""
        uri = self.cfg.model_uri
        try:
            b = self.loader(uri, self.cfg.tracking_uri)
        except FraudError as e:
            raise RegistryError(f"cannot load model {uri!r} (tracking store {self.cfg.tracking_uri or 'default'}): "
                                f"{e}") from e
        except Exception as e:  # noqa: BLE001 - the registry client raises many kinds
            raise RegistryError(f"cannot load model {uri!r} (tracking store {self.cfg.tracking_uri or 'default'}): "
                                f"{e.__class__.__name__}: {e}") from e
        self._install(b)

    def _install(self, bundle, warm: bool = True) -> None:
        if warm:
            warm_up(bundle)
        self.bundle = bundle
        self.version = str(getattr(bundle, "version", None) or "unknown")
        self.metrics.set_version(self.version)
        log.info("model loaded uri=%s version=%s", self.cfg.model_uri, self.version)

    def maybe_reload(self, force: bool = False) -> bool:
        """Between batches: if the alias points at another version, load it and swap. Returns True on swap."""
        name, alias, _ = parse_model_uri(self.cfg.model_uri)
        if alias is None:
            return False
        now = time.monotonic()
        if not force and now - self._last_reload_check < self.cfg.reload_interval:
            return False
        self._last_reload_check = now
        try:
            target = self.resolver(name, alias, self.cfg.tracking_uri)
        except Exception as e:  # noqa: BLE001
            self.metrics.reload_failures.inc()
            log.warning("model reload check failed uri=%s error=%r: keeping version %s", self.cfg.model_uri,
                        f"{e.__class__.__name__}: {e}", self.version)
            return False
        if str(target) == str(self.version):
            return False
        uri = f"models:/{name}/{target}"
        self._ck_wait(commit=True)  # a failed background checkpoint is a checkpoint failure, not a reload one
        try:
            new = self.loader(uri, self.cfg.tracking_uri)
            warm_up(new)
            if self.archive is not None:
                self.archive.flush()  # the warm-up below reads everything scored so far from the archive
            new_states = self.warm_states(new, {p: self.next_offset.get(p) for p in self.states})
        except Exception as e:  # noqa: BLE001
            self.metrics.reload_failures.inc()
            log.error("model reload failed uri=%s error=%r: keeping version %s", uri,
                      f"{e.__class__.__name__}: {e}", self.version)
            return False
        # Swap between batches: everything consumed so far was scored by the old version, everything after by
        # the new one. A state belongs to the bundle that built it: the new version's states were rebuilt from
        # the archived events of the last ``warmup_days`` of each partition (fresh when there is no archive).
        old = self.version
        self.states = new_states
        self.bases = {p: None for p in new_states}  # rebuilt states: the next checkpoint serialises them in full
        self.dirty |= set(new_states)
        self._install(new, warm=False)
        del new_states, new
        if self.cfg.gc_freeze:
            freeze_heap()  # the old model's objects are collected, the new one's frozen
        self.metrics.reloads.inc()
        log.info("model swapped from=%s to=%s alias=%s partitions=%s", old, self.version, alias,
                 sorted(self.states))
        return True

    def warm_states(self, bundle, upto: dict) -> dict:
        """New states of ``bundle`` for partitions ``upto`` ({partition: offset or None}), each having absorbed
        the partition's archived events below that offset from the last ``warmup_days`` (features only:
        nothing is scored or written). Without an archive the states are fresh."""
        out = {p: _warm_or_new(bundle) for p in upto}
        if self.archive is None or self.cfg.warmup_days <= 0:
            return out
        t0 = time.perf_counter()
        n = 0
        for p, off in upto.items():
            df = archive_rows(self.archive.root, self.cfg.topic, p, hi=off)
            if not len(df):
                continue
            df = df[df["timestamp"] >= df["timestamp"].max() - pd.Timedelta(days=self.cfg.warmup_days)]
            warm_until = out[p].last_timestamp if hasattr(out[p], "last_timestamp") else None
            if warm_until is not None:  # the bundle's warm state already reflects events up to its cutoff
                df = df[df["timestamp"] > warm_until]
            n += absorb(bundle, out[p], df)
        log.info("state warm-up from archive partitions=%s events=%d days=%s seconds=%.2f", sorted(upto), n,
                 self.cfg.warmup_days, time.perf_counter() - t0)
        return out

    # -- kafka -------------------------------------------------------------------------------------------
    def connect(self) -> None:
        from kafka import KafkaConsumer, KafkaProducer

        cfg = self.cfg
        wait_for_broker(cfg.bootstrap, timeout=cfg.broker_wait_timeout, client_kw=cfg.client_kw, stop=self._stop)
        if cfg.create_topics:
            topics = {cfg.topic: cfg.partitions, cfg.dlq_topic: 1}
            if cfg.scores_topic:
                topics[cfg.scores_topic] = 1
            if cfg.alerts_topic:
                topics[cfg.alerts_topic] = 1
            created = ensure_topics(cfg.bootstrap, topics, client_kw=cfg.client_kw)
            if created:
                log.info("topics created %s", created)
        servers = parse_bootstrap(cfg.bootstrap)
        ckw = dict(group_id=cfg.group, enable_auto_commit=False, auto_offset_reset=cfg.auto_offset_reset,
                   max_poll_records=cfg.batch_size, fetch_max_wait_ms=20, session_timeout_ms=10000,
                   heartbeat_interval_ms=1000, client_id="fraud-scorer")
        ckw.update(cfg.consumer_kw)
        self.consumer = KafkaConsumer(bootstrap_servers=servers, **cfg.client_kw, **ckw)
        pkw = dict(linger_ms=cfg.linger_ms, batch_size=256 * 1024, acks=1, retries=5, max_request_size=max(1048576, cfg.max_message_bytes * 2),
                   client_id="fraud-scorer")
        pkw.update(cfg.producer_kw)
        self.producer = TrackedProducer(KafkaProducer(bootstrap_servers=servers, **cfg.client_kw, **pkw))
        self.dlq = DeadLetterSink(self.producer, cfg.dlq_topic, max_bytes=cfg.max_message_bytes,
                                  metrics=self.metrics)
        self.sinks = []
        if cfg.scores_topic or cfg.alerts_topic:
            self.sinks.append(TopicSink(self.producer, cfg.scores_topic, cfg.alerts_topic))
        if cfg.alerts_db:
            from fraud.store import AlertStore

            self.store = AlertStore(cfg.alerts_db)
            self.sinks.append(AlertStoreSink(self.store))
        if cfg.archive_dir:
            self.archive = ArchiveSink(cfg.archive_dir, cfg.topic)

        from kafka import ConsumerRebalanceListener

        scorer = self

        class _Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked):
                scorer._on_revoked(revoked)

            def on_partitions_assigned(self, assigned):
                scorer._on_assigned(assigned)

        self.consumer.subscribe([cfg.topic], listener=_Listener())
        log.info("scorer started bootstrap=%s topic=%s group=%s model=%s version=%s", cfg.bootstrap, cfg.topic,
                 cfg.group, cfg.model_uri, self.version)

    def _on_revoked(self, revoked) -> None:
        parts = sorted(tp.partition for tp in revoked if tp.topic == self.cfg.topic)
        if not parts:
            return
        try:
            # runs on kafka-python's IO thread: no blocking consumer call (commit) here; the checkpoint is the
            # source of truth and the next owner seeks to it
            self._ck_wait(commit=False)
            # partitions with events since their last checkpoint: full checkpoints (the next owner may not see
            # this scorer's archive); the others' checkpoints are up to date
            self.checkpoint(sorted(set(parts) & self.dirty), commit=False, full=True)
        except Exception as e:  # noqa: BLE001 - never let a failing checkpoint kill the rebalance
            log.error("checkpoint on revoke failed partitions=%s error=%r: their next owner reads them again from "
                      "their last checkpoint", parts, f"{e.__class__.__name__}: {e}")
            if self._carry is not None:
                self._carry.drop_partitions(parts)
        for p in parts:
            for d in (self.states, self.bases, self.next_offset, self.seen, self.last_record, self._verify):
                d.pop(p, None)
            self.dirty.discard(p)
        self.metrics.assigned.set(len(self.states))
        log.info("partitions revoked %s", parts)

    def _on_assigned(self, assigned) -> None:
        from kafka import TopicPartition

        try:  # a background checkpoint still writing archive files must finish before any are discarded
            self._ck_wait(commit=False)
        except Exception as e:  # noqa: BLE001 - its writes are kept for the next checkpoint
            log.error("background checkpoint failed error=%r", f"{e.__class__.__name__}: {e}")

        for tp in sorted(assigned, key=lambda t: t.partition):
            if tp.topic != self.cfg.topic:
                continue
            p = tp.partition
            ck = self.ckpt.load(p, template=self.bundle.new_state())
            if ck is not None:
                if ck.model_version == self.version and ck.base is None:
                    self.states[p] = ck.state
                    self.bases[p] = None
                    if self._light():  # the restored full state becomes the base of the next light checkpoints
                        name = self.ckpt.save_base(p, ck.offset, ck.blob, self.version, ck.state.n_scored)
                        self.ckpt.prune_bases(p, name)
                        self.bases[p] = {"kind": "file", "file": name, "offset": ck.offset,
                                         "n_scored": ck.state.n_scored, "archive": self._archive_root()}
                    how = "restored"
                elif ck.model_version == self.version:
                    try:
                        self.states[p], n = self.restore_light(p, ck)
                        own = ck.base.get("archive") == self._archive_root()
                        self.bases[p] = dict(ck.base) if own and self._light() else None
                        how = (f"restored (base {ck.base['kind']} at offset {ck.base['offset']} + {n} archived "
                               f"events)")
                    except Exception as e:  # noqa: BLE001 - an unreadable base or archive is never fatal
                        log.error("checkpoint restore failed partition=%d error=%r: rebuilding the state from the "
                                  "archive's last %s days", p, f"{e.__class__.__name__}: {e}", self.cfg.warmup_days)
                        self.states[p] = self.warm_states(self.bundle, {p: ck.offset})[p]
                        self.bases[p] = None
                        how = "rebuilt from the archive (light checkpoint unreadable)"
                else:
                    self.states[p] = self.warm_states(self.bundle, {p: ck.offset})[p]
                    self.bases[p] = None
                    how = (f"rebuilt from the archive (checkpoint was model {ck.model_version}, now "
                           f"{self.version})")
                self.seen[p] = SeenIds(self.cfg.dedup_days, self.cfg.dedup_max_ids).restore(ck.extras)
                start = ck.offset
                last = ck.extras.get("last_record")
                if last is not None and len(last) == 3 and int(last[0]) == ck.offset - 1:
                    # read the last consumed record again: it shows the log is still the one checkpointed
                    self._verify[p] = tuple(int(v) for v in last)
                    self.consumer.seek(TopicPartition(self.cfg.topic, p), ck.offset - 1)
                else:
                    self.consumer.seek(TopicPartition(self.cfg.topic, p), ck.offset)
            else:
                # no checkpoint: start where the group's committed offset (or auto_offset_reset) says; the
                # offset is known at the first message (no blocking consumer call on the IO thread here)
                self.states[p] = _warm_or_new(self.bundle)
                # the base is the model's own starting state; its offset is that of the first message
                self.bases[p] = {"kind": "fresh", "file": None, "offset": None,
                                 "n_scored": getattr(self.states[p], "n_scored", 0), "archive": self._archive_root()}
                how = ("warm (the model's training-cutoff state; no checkpoint)"
                       if getattr(self.bundle, "initial_state_", None) is not None else "fresh (no checkpoint)")
                start = None
                self._pending_start.add(p)
            if start is not None:
                self.next_offset[p] = start
                self._pending_start.discard(p)
                if self.archive is not None and p not in self._verify:  # else once the log is verified
                    self.archive.discard_from(p, start)
            log.info("partition assigned partition=%d offset=%s state=%s", p, start, how)
        self.metrics.assigned.set(len(self.states))

    # -- where each partition's log stands --------------------------------------------------------------
    def _start_partitions(self, msgs) -> None:
        """Partitions assigned without a checkpoint start at their first message: its offset is the base's."""
        self._ck_wait(commit=True)
        for m in msgs:
            if m.partition in self._pending_start:
                self._pending_start.discard(m.partition)
                b = self.bases.get(m.partition)
                if b is not None and b["offset"] is None:
                    b["offset"] = m.offset
                if self.archive is not None:
                    self.archive.discard_from(m.partition, m.offset)

    def _check_positions(self, msgs) -> list:
        """Drop or re-read what a partition's log no longer matches. A partition restored from a checkpoint was
        sought to its last consumed record: the record is still there (same offset, time and CRC) -> dropped, the
        events after it are new; else the log was replaced (a broker that came back empty) or truncated ->
        :meth:`_log_reset`. A partition whose messages go back below the position reached is reset too."""
        if not msgs:
            return msgs
        first: dict[int, object] = {}
        for m in msgs:
            first.setdefault(m.partition, m)
        drop: set[int] = set()
        skip_first: set[int] = set()
        for p, m in first.items():
            want = self._verify.pop(p, None)
            if want is not None:
                if m.offset == want[0] and (m.timestamp, _crc(m.value)) == (want[1], want[2]):
                    skip_first.add(p)
                    if self.archive is not None:
                        self.archive.discard_from(p, m.offset + 1)
                    continue
                if m.offset > want[0]:  # the record is gone (retention) but the log goes on after it
                    log.warning("partition %d: the last consumed record (offset %d) is no longer in the log; "
                                "resuming at offset %d", p, want[0], m.offset)
                    continue
                self._log_reset(p, f"the record at offset {want[0]} this scorer had consumed last is not in the "
                                   f"log (found offset {m.offset} with other content)")
                drop.add(p)
            elif p in self.next_offset and m.offset < self.next_offset[p]:
                self._log_reset(p, f"offset {m.offset} was read after offset {self.next_offset[p] - 1}")
                drop.add(p)
        if not drop and not skip_first:
            return msgs
        return [m for m in msgs if m.partition not in drop and not (m.partition in skip_first
                                                                      and m is first[m.partition])]

    def _watch_log(self) -> None:
        """Each cycle (in-memory lookups): the input topic recreated (its topic id changed: a broker that came back
        empty, or a topic deleted and created again) or a partition's log ending below the position reached means
        the log is not the one read so far -> :meth:`_log_reset`."""
        from kafka import TopicPartition

        topic = self.cfg.topic
        cluster = getattr(getattr(self.consumer, "_client", None), "cluster", None)  # kafka-python's metadata
        tid = cluster.topic_id(topic) if cluster is not None and hasattr(cluster, "topic_id") else None
        if tid is not None:
            if self._topic_id is not None and tid != self._topic_id:
                for p in sorted(self.next_offset):
                    self._log_reset(p, f"topic {topic!r} was created again (its id changed from {self._topic_id} to "
                                       f"{tid})")
            self._topic_id = tid
        for p, pos in list(self.next_offset.items()):
            hw = self.consumer.highwater(TopicPartition(topic, p))
            if hw is not None and hw < pos:
                self._log_reset(p, f"the log ends at offset {hw}, below the position {pos} reached (it shrank)")

    def _log_reset(self, p: int, why: str) -> None:
        """Partition ``p``'s log is not the one this scorer read (replaced or truncated): count it, keep what was
        archived from the old log under its own name, and read the new log from its start. The online state
        keeps what it learnt; the next checkpoint serialises it in full."""
        from kafka import TopicPartition

        self.metrics.offset_resets.labels(partition=str(p)).inc()
        log.warning("log reset partition=%d: %s; reading the partition again from its start (the broker's log was "
                    "replaced or truncated: events that were only in the old log are in the archive)", p, why)
        self._ck_wait(commit=False)
        if self.archive is not None:
            self.archive.flush()
            self.archive.retire(p)
        self.bases[p] = None
        self.next_offset.pop(p, None)
        self.last_record.pop(p, None)
        self.dirty.add(p)
        self.consumer.seek_to_beginning(TopicPartition(self.cfg.topic, p))

    # -- one batch ---------------------------------------------------------------------------------------
    def _dead_letter(self, letter: Letter) -> None:
        m, topic = letter.msg, self.cfg.topic
        self.dlq.send(m.value, m.key, letter.kind, f"{topic}[{m.partition}]@{m.offset}: {letter.reason}", topic,
                      m.partition, m.offset)

    def _seen(self, p: int) -> SeenIds:
        if p not in self.seen:
            self.seen[p] = SeenIds(self.cfg.dedup_days, self.cfg.dedup_max_ids)
        return self.seen[p]

    def _dedup(self, d) -> tuple[list[int], list[Letter]]:
        """Indices of the events of ``d`` not scored before (the first of a poll's copies counts); a tx_id already
        scored with other content is a conflict (dead letter); with the same content, a replay (skipped)."""
        keep, letters, batch = [], [], {}
        for i, m in enumerate(d.msgs):
            k, c = d.key[i], d.content[i]
            got = batch.get(k)
            verdict = self._seen(m.partition).check(k, c) if got is None else (REPLAY if got == c else CONFLICT)
            if verdict == NEW:
                batch[k] = c
                keep.append(i)
            elif verdict == CONFLICT:
                letters.append(Letter(m, "conflict", f"tx_id {d.tx[i]!r} was already scored with other content "
                                                     f"(timestamp, ids, amount, label or attributes differ)"))
            else:
                self.metrics.replays.inc()
        return keep, letters

    def _remember(self, d) -> None:
        """Add scored events (arrival order) to their partitions' memories of scored tx_ids."""
        by_part: dict[int, list[int]] = {}
        for i, m in enumerate(d.msgs):
            by_part.setdefault(m.partition, []).append(i)
        for p, idx in by_part.items():
            self._seen(p).add([d.key[i] for i in idx], [d.content[i] for i in idx], [d.ts[i] for i in idx])

    def process(self, msgs) -> pd.DataFrame:
        """Decode, score and sink one micro-batch of consumed messages. Returns the scored rows. A bad event
        goes to the dead-letter topic with its reason; nothing in one event stops the batch."""
        t0 = time.perf_counter()
        if self._pending_start:
            self._start_partitions(msgs)
        msgs = self._check_positions(msgs)
        self.n_events += len(msgs)
        self.metrics.events.inc(len(msgs))
        self.metrics.tick_rate(len(msgs))
        good, letters = decode(msgs, self.cfg.rules)
        keep, conflicts = self._dedup(good)
        results, lat = None, np.empty(0)
        if keep:
            d = good.take(keep)
            results, lat = self._score_and_sink(d, letters)
        for letter in letters + conflicts:
            self._dead_letter(letter)
        # the producer (scores, alerts, dead letters) sends in the background (linger 2 ms); it is flushed before
        # each checkpoint, never after it: nothing is committed before it is on the broker
        for m in msgs:
            if m.offset + 1 > self.next_offset.get(m.partition, -1):
                self.next_offset[m.partition] = m.offset + 1
            self.last_record[m.partition] = m
            self.dirty.add(m.partition)
        self.metrics.batch_seconds.observe(time.perf_counter() - t0)
        if results is not None:
            n_alert = int(results["is_alert"].sum())
            self.n_scored += len(results)
            self.n_alerts += n_alert
            self.metrics.scored.inc(len(results))
            self.metrics.alerts.inc(n_alert)
        if self.on_batch is not None:
            self.on_batch(results, lat)
        return results if results is not None else pd.DataFrame()

    def _score_and_sink(self, d, letters: list) -> tuple:
        """Score the new events ``d`` and hand them to the sinks. Returns (results, latencies in ms). When the
        model fails on the batch, its events go to the dead-letter topic (``letters``) with the error: the scorer
        goes on, and they can be replayed from there."""
        rows, order = to_frame(d)
        ms = [d.msgs[i] for i in order]
        part = np.fromiter((m.partition for m in ms), dtype=np.int32, count=len(ms))
        offs = np.fromiter((m.offset for m in ms), dtype=np.int64, count=len(ms))
        sent_ms = np.fromiter((m.timestamp for m in ms), dtype=np.float64, count=len(ms))
        try:
            results, order2, cols = self._score(rows, part, offs)
        except Exception as e:  # noqa: BLE001 - a model failure must not stop the stream
            log.exception("scoring failed on a batch of %d events (model %s): dead-lettered", len(ms), self.version)
            letters.extend(Letter(m, "scoring_error", f"model {self.version}: {e.__class__.__name__}: "
                                                      f"{str(e)[:300]}") for m in ms)
            return None, np.empty(0)
        if order2 is not None:
            sent_ms = sent_ms[order2]
        for s in self.sinks:
            s.write(results, columns=cols)
        if self.archive is not None:
            self.archive.write(results, columns=cols)
        self._remember(d)
        lat = time.time() * 1000.0 - sent_ms
        self.metrics.latency.observe_many(np.maximum(lat, 0.0) / 1000.0)
        return results, lat

    def _score(self, rows: pd.DataFrame, part: np.ndarray, offs: np.ndarray) -> tuple:
        """Score valid canonical ``rows`` (time order) read from partitions ``part`` at offsets ``offs``, each
        partition with its own state. Returns (results, order, columns): results grouped by partition (time order
        within each), the canonical columns plus kafka_partition, kafka_offset, score, is_alert, reasons,
        model_version, built in one go (pandas column inserts cost ~1 ms each under the pandas 3 string
        index); ``order`` maps result rows to ``rows`` (None: same order); ``columns``: the results' columns as
        the dict of arrays they were built from (the buffering sinks keep it)."""
        n = len(rows)
        order = None
        if n > 1 and (part[1:] != part[0]).any():
            order = np.argsort(part, kind="stable")
            rows = rows.take(order)
            part, offs = part[order], offs[order]
        rows = rows.reset_index(drop=True)
        cuts = np.flatnonzero(part[1:] != part[:-1]) + 1
        bounds = list(zip([0, *cuts.tolist()], [*cuts.tolist(), n]))
        groups = []
        for a, b in bounds:
            p = int(part[a])
            if p not in self.states:  # should not happen (assigned first); a fresh state is always safe
                self.states[p] = _warm_or_new(self.bundle)
                self.bases[p] = None
            groups.append((rows if len(bounds) == 1 else rows.iloc[a:b].reset_index(drop=True), self.states[p]))
        results = score_partitions(self.bundle, groups)
        for (a, b), res in zip(bounds, results):
            if len(res) != b - a:
                raise FraudError(f"model version {self.version}: score() returned {len(res)} rows for the "
                                 f"{b - a} events of {self.cfg.topic}[{int(part[a])}]")
        res = results[0] if len(results) == 1 else pd.concat(results, ignore_index=True)
        got_tx = res["tx_id"].to_numpy()
        want_tx = rows["tx_id"].to_numpy()
        if not np.array_equal(got_tx, want_tx) and not np.array_equal(got_tx.astype(str), want_tx.astype(str)):
            raise FraudError(f"model version {self.version}: score() returned tx_ids that do not match the events "
                             f"of {self.cfg.topic} (partitions {sorted(set(part.tolist()))})")
        cols = {c: rows[c].array for c in rows.columns}
        cols["kafka_partition"] = part.astype(np.int32, copy=False)
        cols["kafka_offset"] = offs.astype(np.int64, copy=False)
        cols["score"] = res["score"].to_numpy()
        cols["is_alert"] = res["is_alert"].to_numpy().astype(bool)
        cols["reasons"] = res["reasons"].to_numpy()
        cols["model_version"] = pd.array([self.version] * n, dtype="str")
        return pd.DataFrame(cols, copy=False), order, cols

    # -- checkpoint and commit ---------------------------------------------------------------------------
    def _commit(self, offsets: dict, sync: bool = True) -> None:
        """Commit offsets whose sinks are flushed and states checkpointed (advisory: the checkpoint is the source
        of truth, so a failed commit is logged, not raised). ``sync=False`` (the periodic checkpoints while
        serving): sent without waiting for the coordinator's answer (a round trip of ~3-7 ms measured on the
        scoring thread every checkpoint); a failure is logged by the callback, and the next checkpoint's commit
        covers the same partitions again."""
        if not offsets or self.consumer is None:
            return
        try:
            if sync:
                self.consumer.commit(offsets)
            else:
                self.consumer.commit_async(offsets, callback=self._commit_done)
        except Exception as e:  # noqa: BLE001 - the checkpoint is the source of truth; commit is advisory
            self._commit_done(offsets, e)

    @staticmethod
    def _commit_done(offsets, result) -> None:
        if isinstance(result, BaseException):
            log.warning("offset commit failed offsets=%s error=%r (checkpoints are saved; a restart resumes "
                        "from them)", {tp.partition: o.offset for tp, o in offsets.items()},
                        f"{result.__class__.__name__}: {result}")

    def _light(self) -> bool:
        return self.archive is not None and self.cfg.snapshot_events > 0

    def _archive_root(self) -> str | None:
        return str(self.archive.root.resolve()) if self.archive is not None else None

    def restore_light(self, partition: int, ck) -> tuple:
        """The state of a light checkpoint ``ck``: its base state, then the partition's archived events from the
        base offset up to the checkpoint's offset absorbed through the online path. Returns (state, events
        replayed). Raises when the base cannot be read."""
        b = ck.base
        if b["kind"] == "fresh":
            st = _warm_or_new(self.bundle)
        else:
            d = self.ckpt.load_base(b["file"])
            st = load_state(d["state"], self.bundle.new_state())
        root = b.get("archive") or self._archive_root()
        t0 = time.perf_counter()
        df = archive_rows(root, self.cfg.topic, partition, lo=b["offset"], hi=ck.offset) if root else pd.DataFrame()
        n = absorb(self.bundle, st, df)
        got = getattr(st, "n_scored", None)
        if ck.n_scored is not None and got is not None and got != ck.n_scored:
            log.error("checkpoint restore partition=%d: the archive %s holds %d events at offsets [%d, %d) but the "
                      "checkpointed state had absorbed %d since its base (archive files removed?): the state is "
                      "rebuilt from the events found", partition, root, n, b["offset"], ck.offset,
                      ck.n_scored - b["n_scored"])
        log.info("checkpoint restore partition=%d base=%s base_offset=%s replayed=%d seconds=%.2f", partition,
                 b["kind"], b["offset"], n, time.perf_counter() - t0)
        return st, n

    def _plan(self, parts, full: bool = False, max_compact: int | None = None) -> list[Item]:
        """On the scoring thread: what to save for each partition (see :class:`streaming.checkpoint.Item`). A
        state is serialised for a full checkpoint (no archive, ``full=True``, or a state without ``n_scored``)
        or a new base ("compact": no base yet, or ``snapshot_events`` absorbed since; at most ``max_compact``
        of the latter at once, spreading the cost over checkpoints); otherwise the checkpoint is light."""
        items, n_compact = [], 0
        for p in parts:
            if p not in self.states or p not in self.next_offset:
                continue
            off, st = self.next_offset[p], self.states[p]
            n = getattr(st, "n_scored", None)
            b = self.bases.get(p)
            extras = self._extras(p)
            if full or not self._light() or not isinstance(n, (int, np.integer)):
                items.append(Item(p, off, "full", blob=dump_state(st), extras=extras))
            elif b is None or b["offset"] is None or (n - b["n_scored"] >= self.cfg.snapshot_events and (
                    max_compact is None or n_compact < max_compact)):
                n_compact += b is not None and b["offset"] is not None
                items.append(Item(p, off, "compact", blob=dump_state(st), n_scored=int(n), extras=extras))
                self.bases[p] = {"kind": "file", "file": self.ckpt.base_path(p, off).name, "offset": off,
                                 "n_scored": int(n), "archive": self._archive_root()}
            else:
                items.append(Item(p, off, "light", base=dict(b), n_scored=int(n), extras=extras))
        return items

    def _extras(self, p: int) -> dict:
        """Arrays saved with partition ``p``'s checkpoint: its scored tx_ids and its last record consumed."""
        out = self._seen(p).to_arrays()
        m = self.last_record.get(p)
        if m is not None:
            out["last_record"] = np.array([m.offset, m.timestamp, _crc(m.value)], dtype=np.int64)
        return out

    def _save(self, items: list[Item], version) -> None:
        """Write planned checkpoints (after the sinks they reflect are flushed)."""
        for it in items:
            if it.kind == "full":
                self.ckpt.save(it.partition, it.offset, None, version, blob=it.blob, extras=it.extras)
            elif it.kind == "light":
                self.ckpt.save(it.partition, it.offset, None, version, base=it.base, n_scored=it.n_scored,
                               extras=it.extras)
            else:
                name = self.ckpt.save_base(it.partition, it.offset, it.blob, version, it.n_scored)
                self.ckpt.save(it.partition, it.offset, None, version, n_scored=it.n_scored, extras=it.extras,
                               base={"kind": "file", "file": name, "offset": it.offset, "n_scored": it.n_scored,
                                     "archive": self._archive_root()})
                self.ckpt.prune_bases(it.partition, name)

    def _take_job(self, parts, full: bool = False, max_compact: int | None = None) -> Job:
        """On the scoring thread, at a batch boundary: the records sent and the sinks' buffers so far, the planned
        checkpoints of ``parts``, after whatever a failed job left to write."""
        job = Job(sent=self.producer.take() if self.producer is not None else [],
                  stores=[(s, s.take()) for s in self.sinks if hasattr(s, "take")],
                  archive=[self.archive.take()] if self.archive is not None else [],
                  items=self._plan(parts, full=full, max_compact=max_compact), version=self.version)
        job, self._carry = job.after(self._carry), None
        self.dirty -= {it.partition for it in job.items}
        return job

    def _run_job(self, job: Job, gate=None) -> None:
        run_job(job, self.producer, self.archive, self._save, gate)

    def _done(self, job: Job, error: BaseException | None, commit: bool, sync: bool = True) -> None:
        """After a job: commit its offsets, or, when it failed, keep what it did not write for the next job and
        mark its partitions dirty again (a base it was writing may not exist)."""
        if error is not None:
            self._carry = job.carry() if self._carry is None else self._carry.after(job.carry())
            for it in job.items:
                if it.partition in self.states:
                    self.dirty.add(it.partition)
                    if it.kind == "compact":
                        self.bases[it.partition] = None
            self.metrics.checkpoint_failures.inc()
            return
        self.metrics.checkpoints.inc()
        if commit:
            self._commit(self._offsets(job.items), sync=sync)
        log.debug("checkpoint partitions=%s", {it.partition: (it.offset, it.kind) for it in job.items})

    def _offsets(self, items: list[Item]) -> dict:
        from kafka import TopicPartition
        from kafka.structs import OffsetAndMetadata

        return {TopicPartition(self.cfg.topic, it.partition): OffsetAndMetadata(it.offset, "", -1) for it in items}

    def checkpoint(self, partitions=None, commit: bool = True, full: bool = False) -> None:
        """Synchronously: flush the sinks and the archive, save the states of ``partitions`` (default: all dirty)
        with their offsets (light checkpoints where possible; ``full``: serialised in full), then commit those
        offsets. Raises when it fails (its writes are kept for the next checkpoint)."""
        self._ck_wait(commit=commit)
        parts = sorted(self.dirty if partitions is None else set(partitions) & (self.dirty | set(self.states)))
        job = self._take_job(parts, full=full)
        try:
            self._run_job(job)
        except Exception as e:
            self._done(job, e, commit)
            raise
        self._done(job, None, commit)
        self._last_ckpt = time.monotonic()

    def checkpoint_async(self) -> bool:
        """The periodic checkpoint off the scoring path: the job is built here (light checkpoints serialise
        nothing; a state is serialised only for a new base, at most one partition per checkpoint unless a base is
        missing) and written by the writer thread; its offsets are committed by the scoring thread once it is
        done (``_ck_wait``). At most one job is in flight (returns False, nothing done, while one runs)."""
        from concurrent.futures import ThreadPoolExecutor

        if self._ck_job is not None:
            if not self._ck_job[0].done():
                return False
            self._ck_wait(commit=True, sync=False)
        job = self._take_job(sorted(self.dirty), max_compact=1)
        if self._ck_exec is None:
            self._ck_exec = ThreadPoolExecutor(1, thread_name_prefix="fraud-checkpoint")
        self._ck_job = (self._ck_exec.submit(self._run_job, job, self._writer_gate), job)
        self._last_ckpt = time.monotonic()
        return True

    def _writer_gate(self) -> None:
        """Called by the writer thread before each step of a checkpoint job: waits until the scoring thread is in
        poll or waits for this job (at most ``writer_gate_ms``). A step then takes the GIL while the scorer waits
        for the broker, and delays at most the next batch's start, instead of the two threads alternating on the
        GIL in 5 ms slices through a whole job, stretching every batch scored meanwhile ~2x."""
        ms = self.cfg.writer_gate_ms
        if ms and ms > 0:
            self._polling.wait(ms / 1000.0)

    def _ck_wait(self, commit: bool = True, sync: bool = True) -> None:
        """Finish the background checkpoint in flight (if any) and commit its offsets (when ``commit``; ``sync``
        as in :meth:`_commit`). A failed job re-raises here, on the scoring thread, as a failed synchronous
        checkpoint would (its writes are kept for the next checkpoint)."""
        pending, self._ck_job = self._ck_job, None
        if pending is None:
            return
        fut, job = pending
        was_open = self._polling.is_set()  # (inside poll when a rebalance callback checkpoints)
        self._polling.set()  # the scoring thread waits here: the writer's gate is open (else each step times out)
        try:
            fut.result()
        except Exception as e:
            self._done(job, e, commit)
            raise
        finally:
            if not was_open:
                self._polling.clear()
        self._done(job, None, commit, sync=sync)

    def _update_lag(self) -> None:
        """Lag per partition = the broker's high watermark - the next offset to read, not clamped: a negative lag
        means the log ends below the position reached (it shrank: see :meth:`_watch_log`)."""
        from kafka import TopicPartition

        for p in list(self.states):
            try:
                hw = self.consumer.highwater(TopicPartition(self.cfg.topic, p))
            except Exception:  # noqa: BLE001
                hw = None
            if hw is not None and p in self.next_offset:
                lag = hw - self.next_offset[p]
                self.metrics.lag.labels(partition=str(p)).set(lag)

    # -- main loop ---------------------------------------------------------------------------------------
    def readiness(self) -> tuple[bool, str]:
        """(ready, reason) for /readyz: a model is loaded and the consumer is connected to the broker."""
        if self.bundle is None:
            return False, f"no model loaded yet ({self.cfg.model_uri})"
        if self.consumer is None:
            return False, f"not connected to the broker {self.cfg.bootstrap} yet"
        return True, f"model version {self.version}; {len(self.states)} partition(s) assigned"

    def stop(self) -> None:
        self._stop.set()

    def run(self, stop: threading.Event | None = None, max_events: int | None = None) -> None:
        """Serve until ``stop`` is set (or ``max_events`` were consumed). Flushes and commits before return."""
        if stop is not None:
            self._stop = stop
        if self.cfg.threads is not None:
            # small micro-batches: thread fan-out costs more than it gains (measured 2x slower on 2 shared
            # cores); scale out with partitions and scorers instead. OpenMP limits are per calling thread.
            from threadpoolctl import threadpool_limits

            self._limits = threadpool_limits(limits=int(self.cfg.threads))
        if self.bundle is None:
            self.load_model()
        if self.cfg.metrics_port is not None:
            self.metrics.serve(self.cfg.metrics_port, addr=self.cfg.metrics_host)
            log.info("metrics on http://%s:%d/metrics", self.cfg.metrics_host, self.cfg.metrics_port)
        if self.consumer is None:
            self.connect()
        if self.cfg.gc_freeze:
            t0 = time.perf_counter()
            n = freeze_heap()
            log.info("gc heap frozen objects=%d seconds=%.2f", n, time.perf_counter() - t0)
        backoff = 0.5
        try:
            while not self._stop.is_set():
                try:
                    self._cycle()
                    backoff = 0.5
                except Exception as e:  # noqa: BLE001 - the scorer never stops on an error: it waits and goes on
                    self._recover(e, backoff)
                    backoff = min(10.0, backoff * 2)
                if max_events is not None and self.n_events >= max_events:
                    break
        finally:
            self.close()

    def _cycle(self) -> None:
        """One poll, its batch, and what is due: a checkpoint, the lag, a model reload check."""
        self._throttle()
        self._polling.set()
        try:
            polled = self.consumer.poll(timeout_ms=self.cfg.poll_timeout_ms, max_records=self.cfg.batch_size)
        finally:
            self._polling.clear()
        msgs = [m for tp in sorted(polled, key=lambda t: t.partition) for m in polled[tp]]
        if msgs:
            if self.t_first_poll is None:
                self.t_first_poll = time.perf_counter()
            try:
                self.process(msgs)
            except Exception:
                self._rewind(msgs)
                raise
        self._watch_log()
        now = time.monotonic()
        if self._ck_job is not None and self._ck_job[0].done():
            self._checkpoint_step(lambda: self._ck_wait(commit=True, sync=False))
        if self.dirty and now - self._last_ckpt >= self.cfg.checkpoint_interval:
            self._checkpoint_step(self.checkpoint_async if self.cfg.background_checkpoint else self.checkpoint)
        if now - self._last_lag >= 2.0:
            self._update_lag()
            self._last_lag = now
        self.maybe_reload()

    def _checkpoint_step(self, step) -> None:
        """Run a checkpoint step; a failure is logged and counted, and its writes retried by the next one."""
        try:
            step()
        except Exception as e:  # noqa: BLE001
            self._last_ckpt = time.monotonic()
            log.error("checkpoint failed error=%r: nothing of it is committed; its writes are retried by the next "
                      "checkpoint (%d archive rows waiting)", f"{e.__class__.__name__}: {e}",
                      self._carry.rows() if self._carry is not None else 0)

    def _throttle(self) -> None:
        """While failed checkpoints have left more than ``max_pending_rows`` archive rows unwritten, pause the
        input partitions (poll goes on: the group keeps its members) until a checkpoint writes them."""
        backlog = self._carry is not None and self._carry.rows() > self.cfg.max_pending_rows
        paused = bool(self.consumer.paused())
        if backlog and not paused:
            log.warning("pausing consumption: %d archive rows wait for a checkpoint that succeeds",
                        self._carry.rows())
            self.consumer.pause(*self.consumer.assignment())
        elif paused and not backlog:
            self.consumer.resume(*self.consumer.paused())

    def _rewind(self, msgs) -> None:
        """A batch failed part-way: seek its partitions back to its first offsets, so its events are read again
        (at-least-once) rather than skipped by the next commit."""
        from kafka import TopicPartition

        first: dict[int, int] = {}
        for m in msgs:
            first[m.partition] = min(first.get(m.partition, m.offset), m.offset)
        for p, off in first.items():
            if p in self.states:
                self.consumer.seek(TopicPartition(self.cfg.topic, p), off)

    def _recover(self, e: BaseException, backoff: float) -> None:
        from kafka.errors import KafkaError

        if isinstance(e, KafkaError):
            log.warning("broker error error=%r retry_in=%.1fs (resuming; uncommitted events will be re-read)",
                        f"{e.__class__.__name__}: {e}", backoff)
        else:
            log.exception("error in the scoring loop error=%r retry_in=%.1fs (the batch is read again)",
                          f"{e.__class__.__name__}: {e}", backoff)
        self._stop.wait(backoff)

    def close(self) -> None:
        if self.consumer is None:
            return
        try:
            self._ck_wait(commit=True)
        except Exception as e:  # noqa: BLE001
            log.error("background checkpoint failed error=%r (uncommitted events will be re-read on restart)",
                      f"{e.__class__.__name__}: {e}")
        try:
            self.checkpoint()
        except Exception as e:  # noqa: BLE001
            log.error("final checkpoint failed error=%r (uncommitted events will be re-read on restart)",
                      f"{e.__class__.__name__}: {e}")
        try:
            self.consumer.close(autocommit=False)
        except Exception:  # noqa: BLE001
            pass
        try:
            self.producer.close(timeout=5)
        except Exception:  # noqa: BLE001
            pass
        self.metrics.close()
        if self.cfg.gc_freeze:
            thaw_heap()  # a process that runs scorers one after another (tests, bench) gets its objects back
        if self._ck_exec is not None:
            self._ck_exec.shutdown(wait=True)
            self._ck_exec = None
        self.consumer = None
        log.info("scorer stopped events=%d scored=%d alerts=%d dead_letters=%d version=%s", self.n_events,
                 self.n_scored, self.n_alerts, sum(self.dlq.counts.values()) if self.dlq else 0, self.version)
