"""The scorer's settings: one typed object, filled by ``fraud serve`` (environment variables are read there only)."""
from __future__ import annotations

from dataclasses import dataclass, field

from fraud.errors import ConfigError
from streaming.broker import parse_bootstrap
from streaming.decode import EventRules


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
    batch_size: int = 10000  # max events per micro-batch: at low load a poll returns fewer (latency); under
    # backlog a bigger one amortises the model's per-call costs (docs/streaming.md: 1.25x the bench rate vs 2,000)
    poll_timeout_ms: int = 100
    checkpoint_interval: float = 5.0
    scores_topic: str | None = "scores"
    alerts_topic: str | None = "alerts"
    dlq_topic: str = "transactions.dlq"
    max_message_bytes: int = 256 * 1024
    max_event_age_days: float = 3650.0  # older events (against the broker's time) are dead-lettered
    max_event_lead_hours: float = 24.0  # so are events this far ahead of it (a broken clock moves the state's)
    late_event_hours: float = 24.0  # events this far behind their partition state's newest are counted and warned of
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
    # and, before each step, it first sleeps this many times the time its previous step took (at most until the
    # job has run half the checkpoint interval): its share of the GIL <= 1 / (1 + pace) while it paces, so a job
    # is spread over ~1 s instead of stretching a dozen consecutive batches (docs/streaming.md: Tail latency);
    # 0 = no pacing
    writer_pace: float = 4.0
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
        if self.writer_pace < 0:
            raise ConfigError(f"writer_pace {self.writer_pace!r}: must be >= 0")
        if self.dedup_max_ids <= 0:
            raise ConfigError(f"--dedup-max-ids {self.dedup_max_ids!r}: must be > 0")
        if self.max_event_age_days <= 0 or self.max_event_lead_hours < 0:
            raise ConfigError(f"--max-event-age-days {self.max_event_age_days!r} / --max-event-lead-hours "
                              f"{self.max_event_lead_hours!r}: must be > 0 / >= 0")

    @property
    def rules(self) -> EventRules:
        return EventRules(max_bytes=self.max_message_bytes, max_age_days=self.max_event_age_days,
                          max_lead_hours=self.max_event_lead_hours)
