"""The live scorer: one member of a kafka-python consumer group that decodes, scores and sinks transactions.

Each cycle: poll -> decode each event on its own (bad ones to the dead-letter topic with the reason:
``streaming.decode``) -> skip tx_ids already scored -> score with each partition's own online state (one model
call for all partitions) -> hand to the sinks (scores/alerts topics at once; the alert store and the archive
buffer) -> apply the poll's label events (``streaming.feedback``). Every ``checkpoint_interval`` a
:class:`streaming.checkpoint.Checkpointer` job flushes the producer and writes the sinks, then saves each
partition's state with its offset, then commits: nothing is committed that was not written, and a failed job's
writes are kept for the next. No error stops the loop: it logs, waits and goes on. Figures: docs/streaming.md.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

import numpy as np
import pandas as pd

from fraud.archive import ArchiveWriter
from fraud.errors import FraudError, RegistryError
from fraud.registry import parse_model_uri
from streaming import batch, feedback, late, rejoin
from streaming.broker import ensure_scorer_topics, log_loop_error, scorer_clients, wait_for_broker
from streaming.checkpoint import Checkpointer
from streaming.config import ServeConfig
from streaming.decode import Letter, decode, to_frame
from streaming.dedup import SeenIds
from streaming.dlq import DeadLetterSink
from streaming.logwatch import LogWatch
from streaming.metrics import Metrics
from streaming.model import default_loader, default_resolver, freeze_heap, newer_model, thaw_heap, warm_up
from streaming.outbox import Outbox
from streaming.partitions import fresh, restore, rewind, warm_states
from streaming.sinks import AlertStoreSink, TopicSink, TrackedProducer
from streaming.state import CheckpointStore

log = logging.getLogger("streaming.loop")


class Scorer:
    """One member of the scoring consumer group. ``run(stop)`` until ``stop`` (a threading.Event) is set."""

    def __init__(self, config: ServeConfig, loader: Callable | None = None, resolver: Callable | None = None,
                 on_batch: Callable | None = None):
        self.cfg = config
        self.loader = loader or default_loader
        self.resolver = resolver or default_resolver
        self.on_batch = on_batch  # on_batch(results_df, latencies_ms ndarray) after each batch (sinks may be pending)
        self.metrics = Metrics()
        self.metrics.ready = self.readiness  # /readyz on the metrics port
        self.bundle = None
        self.version: str | None = None
        self.parts: dict = {}  # partition -> streaming.partitions.Partition
        self._seen: Callable[[int], SeenIds] = lambda p: self.parts[p].seen
        self.ck = Checkpointer(config, CheckpointStore(config.state_dir, config.topic), self.metrics, self.parts)
        # a restored log still holds its last consumed record: archive files past it (a scorer that died after the
        # checkpoint wrote them) are rewritten, their events are read again now
        self.watch = LogWatch(config.topic, self._log_reset, lambda p, off: self.archive is not None and
                              self.archive.discard_from(p, off + 1), lag=self.metrics.lag)
        self.outbox = Outbox(self.metrics.sink_failures.inc)  # a scored batch until every sink has it
        self.late = late.LateEvents(self.metrics.late_events, config.late_event_hours)
        self.consumer = self.producer = self.archive = self.store = None
        self.sinks: list = []
        self.dlq: DeadLetterSink | None = None
        self.n_events = self.n_scored = self.n_alerts = 0
        self._last_reload_check = time.monotonic()
        self._stop = threading.Event()
        self.t_first_poll: float | None = None

    # -- model -------------------------------------------------------------------------------------------
    def load_model(self) -> None:
        """First load: failure is fatal, with the URI in the message."""
        uri, where = self.cfg.model_uri, self.cfg.tracking_uri or "default"
        try:
            b = self.loader(uri, self.cfg.tracking_uri)
        except Exception as e:  # noqa: BLE001 - the registry client raises many kinds
            text = str(e) if isinstance(e, FraudError) else f"{e.__class__.__name__}: {e}"
            raise RegistryError(f"cannot load model {uri!r} (tracking store {where}): {text}") from e
        warm_up(b)
        self._install(b)

    def _install(self, bundle) -> None:
        self.bundle = bundle
        self.version = str(getattr(bundle, "version", None) or "unknown")
        self.metrics.set_model(bundle, self.version)  # version gauge; drift counted against its training window
        log.info("model loaded uri=%s version=%s", self.cfg.model_uri, self.version)

    def maybe_reload(self, force: bool = False) -> bool:
        """Between batches: if the alias points at another version, load it and swap. Returns True on swap.
        Everything consumed so far was scored by the old version; the new one's states are rebuilt from the
        archive's last ``warmup_days`` (a state belongs to the model that built it)."""
        now = time.monotonic()
        if parse_model_uri(self.cfg.model_uri)[1] is None or (
                not force and now - self._last_reload_check < self.cfg.reload_interval):
            return False
        self._last_reload_check = now
        try:
            new = newer_model(self.cfg, self.loader, self.resolver, self.version)
            if new is None:
                return False
            self.ck.now(version=self.version)  # the warm-up below reads everything scored so far
            states = warm_states(new, {p: part.next_offset for p, part in self.parts.items()},
                                 self.ck.archive_root, self.cfg)
        except Exception as e:  # noqa: BLE001
            self.metrics.reload_failures.inc()
            log.error("model reload failed uri=%s error=%r: keeping version %s", self.cfg.model_uri,
                      f"{e.__class__.__name__}: {e}", self.version)
            return False
        old = self.version
        for p, part in self.parts.items():
            part.state, part.base = feedback.reapply(new, states[p], part.labels), None  # serialised next
        self.ck.dirty |= set(self.parts)
        self._install(new)
        del states, new
        if self.cfg.gc_freeze:
            freeze_heap()  # the old model's objects are collected, the new one's frozen
        self.metrics.reloads.inc()
        log.info("model swapped from=%s to=%s partitions=%s", old, self.version, sorted(self.parts))
        return True

    # -- kafka -------------------------------------------------------------------------------------------
    def connect(self) -> None:
        from kafka import ConsumerRebalanceListener

        cfg = self.cfg
        wait_for_broker(cfg.bootstrap, timeout=cfg.broker_wait_timeout, client_kw=cfg.client_kw, stop=self._stop)
        if cfg.create_topics:
            ensure_scorer_topics(cfg)
        self.consumer, producer = scorer_clients(cfg)
        self.producer = TrackedProducer(producer)
        self.dlq = DeadLetterSink(self.producer, cfg.dlq_topic, max_bytes=cfg.max_message_bytes, metrics=self.metrics)
        sinks = [TopicSink(self.producer, cfg.scores_topic, cfg.alerts_topic)] if (
            cfg.scores_topic or cfg.alerts_topic) else []
        if cfg.alerts_db:
            from fraud.store import AlertStore

            self.store = AlertStore(cfg.alerts_db)
            sinks.append(AlertStoreSink(self.store))
        self.sinks = sinks
        self.archive = ArchiveWriter(cfg.archive_dir, cfg.topic) if cfg.archive_dir else None
        self.ck.attach(self.producer, sinks, self.archive, self.consumer)
        scorer = self

        class _Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked):
                scorer._on_revoked(revoked)

            def on_partitions_assigned(self, assigned):
                scorer._on_assigned(assigned)

            def on_partitions_lost(self, lost):  # evicted from the group: another member may own them already
                scorer._on_revoked(lost, lost=True)

        self.consumer.subscribe([cfg.topic], listener=_Listener())
        log.info("scorer started bootstrap=%s topic=%s group=%s model=%s version=%s", cfg.bootstrap, cfg.topic,
                 cfg.group, cfg.model_uri, self.version)

    def _on_revoked(self, revoked, lost: bool = False) -> None:
        """On kafka-python's IO thread (no blocking consumer call): partitions with events since their last
        checkpoint are checkpointed in full (the next owner may not read this scorer's archive). ``lost`` (evicted):
        none is, their buffered archive rows are dropped; their owner reads them again from the last commit."""
        parts = sorted(tp.partition for tp in revoked if tp.topic == self.cfg.topic)
        if not parts:
            return
        try:  # no checkpoint may claim a batch still waiting for its sinks (possible only at close)
            if self.outbox.pending is None:
                self.ck.wait(commit=False)  # lost too: a failed job's rows of them go back to its carry, dropped below
            if self.outbox.pending is None and not lost:
                self.ck.now(sorted(set(parts) & self.ck.dirty), version=self.version, commit=False, full=True)
        except Exception as e:  # noqa: BLE001 - never let a failing checkpoint kill the rebalance
            log.error("checkpoint on revoke failed partitions=%s error=%r: their next owner reads them again from "
                      "their last checkpoint", parts, f"{e.__class__.__name__}: {e}")
        self.ck.forget(parts)
        if lost and self.archive is not None:
            self.archive.drop_partitions(parts)
        for p in parts:
            self.parts.pop(p, None)
        self.metrics.assigned.set(len(self.parts))
        log.info("partitions revoked %s", parts)

    def _on_assigned(self, assigned) -> None:
        """Restore each partition from its checkpoint and seek to its last consumed record (read again to verify
        the log: ``streaming.logwatch``); without checkpoint, start at the group's offset with the model's state."""
        try:  # a background checkpoint still writing archive files must finish before any are discarded
            self.ck.wait(commit=False)
        except Exception as e:  # noqa: BLE001 - its writes are kept for the next checkpoint
            log.error("background checkpoint failed error=%r", f"{e.__class__.__name__}: {e}")
        for tp in sorted(assigned, key=lambda t: t.partition):
            if tp.topic != self.cfg.topic:
                continue
            part, how = self._restored(tp)
            self.parts[tp.partition] = part
            log.info("partition assigned partition=%d offset=%s state=%s", tp.partition, part.next_offset, how)
        self.metrics.assigned.set(len(self.parts))

    def _restored(self, tp) -> tuple:
        """(partition, how) from ``tp``'s checkpoint, the consumer moved to its last consumed record."""
        how = " (no checkpoint)"
        try:
            ck = self.ck.store.load(tp.partition, template=self.bundle.new_state())
            if ck is not None:
                part, how = restore(ck, self.bundle, self.version, self.cfg, self.ck.store, self.ck.archive_root)
        except Exception as e:  # noqa: BLE001 - one partition that cannot be restored never stops the others
            ck, how = None, f" (restore failed: {e.__class__.__name__}: {e}; read from the group's committed offset)"
        if ck is None:
            return fresh(self.bundle, self.cfg, self.ck.archive_root), "the model's starting state" + how
        part.next_offset = ck.offset
        last = ck.extras.get("last_record")
        if last is not None and len(last) == 3 and int(last[0]) == ck.offset - 1:
            part.verify = tuple(int(v) for v in last)
        self.consumer.seek(tp, ck.offset - (part.verify is not None))
        if self.archive is not None and part.verify is None:
            self.archive.discard_from(tp.partition, ck.offset)
        return part, how

    def _log_reset(self, p: int, why: str) -> None:
        """Partition ``p``'s log is not the one read so far: count it, write what the old log gave, keep its
        archive files under their own name, and read the new log from its start. The state keeps what it
        learnt; the next checkpoint serialises it."""
        from kafka import TopicPartition

        self.metrics.offset_resets.labels(partition=str(p)).inc()
        log.warning("log reset partition=%d: %s; reading the partition again from its start (events only in the old "
                    "log are in the archive)", p, why)
        self.ck.now(version=self.version, commit=False)  # raises: retried next cycle
        if self.archive is not None:
            self.archive.retire(p)
        part = self.parts[p]
        part.base, part.next_offset, part.last, part.verify = None, None, None, None
        self.ck.dirty.add(p)
        self.consumer.seek_to_beginning(TopicPartition(self.cfg.topic, p))

    # -- one batch ---------------------------------------------------------------------------------------
    def process(self, msgs) -> pd.DataFrame:
        """Decode, score and sink one micro-batch of consumed messages. Returns the scored rows."""
        t0 = time.perf_counter()
        self.watch.begin()
        self.outbox.deliver()  # a scored batch a sink failed on goes first (raises: this batch is read again)
        self._start_fresh(msgs)
        msgs = self.watch.check(msgs, self.parts)
        self.n_events += len(msgs)
        self.metrics.consumed(len(msgs))
        tx_msgs, label_msgs = feedback.split(msgs)
        good, letters = decode(tx_msgs, self.cfg.rules)
        keep, conflicts = batch.new_events(good, self._seen, self.metrics.replays.inc)
        results, lat = self._score_and_sink(good.take(keep), letters) if keep else (None, np.empty(0))
        if label_msgs:  # after scoring: a label may follow its transaction in the same poll
            letters += feedback.apply(self.bundle, self.parts, label_msgs, self.cfg.rules, self.metrics)
        for x in letters + conflicts:
            self.dlq.send(x.msg.value, x.msg.key, x.kind, f"{self.cfg.topic}[{x.msg.partition}]@{x.msg.offset}: "
                          f"{x.reason}", self.cfg.topic, x.msg.partition, x.msg.offset)
        for m in msgs:  # sent in the background; the next checkpoint checks delivery before it commits
            part = self.parts[m.partition]
            part.next_offset, part.last = max(part.next_offset or 0, m.offset + 1), m
            self.ck.dirty.add(m.partition)
        self.metrics.batch_seconds.observe(time.perf_counter() - t0)
        if results is not None:
            n_alert = int(results["is_alert"].sum())
            self.n_scored, self.n_alerts = self.n_scored + len(results), self.n_alerts + n_alert
            self.metrics.scored_batch(len(results), n_alert)
        if self.on_batch is not None:
            self.on_batch(results, lat)
        return results if results is not None else pd.DataFrame()

    def _start_fresh(self, msgs) -> None:
        """A partition assigned without checkpoint starts at its first message: that offset is its base's, and
        archive files from there on (a scorer that died before its first checkpoint) are rewritten."""
        for m in msgs:
            part = self.parts.get(m.partition)
            if part is None:  # not assigned through the listener (should not happen): the model's state is safe
                part = self.parts[m.partition] = fresh(self.bundle, self.cfg, self.ck.archive_root)
            if part.next_offset is None and part.verify is None:
                self.ck.wait(commit=True)
                if part.base is not None and part.base["offset"] is None:
                    part.base["offset"] = m.offset
                if self.archive is not None:
                    self.archive.discard_from(m.partition, m.offset)
                part.next_offset = m.offset

    def _score_and_sink(self, d, letters: list) -> tuple:
        """Score the new events ``d`` and hand them to the sinks. Returns (results, latencies in ms). When the
        model fails on the batch, its events go to the dead-letter topic (``letters``) with the error."""
        rows, order = to_frame(d)
        ms = [d.msgs[i] for i in order]
        part = np.fromiter((m.partition for m in ms), dtype=np.int32, count=len(ms))
        offs = np.fromiter((m.offset for m in ms), dtype=np.int64, count=len(ms))
        sent_ms = np.fromiter((m.timestamp for m in ms), dtype=np.float64, count=len(ms))
        try:
            states = {p: self.parts[p].state for p in set(part.tolist())}
            self.late.check(rows, part, states, self.version)
            results, order2, cols = batch.score(self.bundle, self.version, states, rows, part, offs, self.cfg.topic)
        except Exception as e:  # noqa: BLE001 - a model failure must not stop the stream
            log.exception("scoring failed on a batch of %d events (model %s): dead-lettered", len(ms), self.version)
            letters.extend(Letter(m, "scoring_error", f"model {self.version}: {e.__class__.__name__}: "
                                                      f"{str(e)[:300]}") for m in ms)
            return None, np.empty(0)
        batch.remember(d, self._seen)  # first: the states hold the batch now, it is never scored again
        self.outbox.put(results, cols, self.sinks + [a for a in (self.archive,) if a is not None])
        self.outbox.try_deliver()
        lat = time.time() * 1000.0 - (sent_ms if order2 is None else sent_ms[order2])
        self.metrics.latency.observe_many(np.maximum(lat, 0.0) / 1000.0)
        return results, lat

    # -- main loop ---------------------------------------------------------------------------------------
    def readiness(self) -> tuple[bool, str]:
        """(ready, reason) for /readyz: a model is loaded and the consumer is connected to the broker."""
        if self.bundle is None:
            return False, f"no model loaded yet ({self.cfg.model_uri})"
        if self.consumer is None:
            return False, f"not connected to the broker {self.cfg.bootstrap} yet"
        return True, f"model version {self.version}; {len(self.parts)} partition(s) assigned"

    def run(self, stop: threading.Event | None = None, max_events: int | None = None) -> None:
        """Serve until ``stop`` is set (or ``max_events`` were consumed). Flushes and commits before return."""
        if stop is not None:
            self._stop = stop
        if self.cfg.threads is not None:  # small batches: thread fan-out costs more than it gains
            from threadpoolctl import threadpool_limits

            self._limits = threadpool_limits(limits=int(self.cfg.threads))
        if self.bundle is None:
            self.load_model()
        if self.cfg.metrics_port is not None:
            self.metrics.serve(self.cfg.metrics_port, addr=self.cfg.metrics_host)
        if self.consumer is None:
            self.connect()
        if self.cfg.gc_freeze:
            log.info("gc heap frozen objects=%d", freeze_heap())
        backoff = 0.5
        try:
            while not self._stop.is_set() and (max_events is None or self.n_events < max_events):
                try:
                    self._cycle()
                    backoff = 0.5
                except Exception as e:  # noqa: BLE001 - the scorer never stops on an error: it waits and goes on
                    log_loop_error(e, backoff)
                    self._stop.wait(backoff)
                    backoff = min(10.0, backoff * 2)
        finally:
            self.close()

    def _cycle(self) -> None:
        """One poll, its batch, then what is due; first a batch a sink failed on (until then no poll, no rebalance)."""
        if not self.outbox.try_deliver():
            self._stop.wait(self.outbox.retry_in)
            return
        self.ck.throttle(self.consumer)
        self.ck.polling.set()
        try:
            polled = self.consumer.poll(timeout_ms=self.cfg.poll_timeout_ms, max_records=self.cfg.batch_size)
        finally:
            self.ck.polling.clear()
        msgs = [m for tp in sorted(polled, key=lambda t: t.partition) for m in polled[tp]]
        if msgs:
            self.t_first_poll = self.t_first_poll or time.perf_counter()
            try:
                self.process(msgs)
            except Exception:
                rewind(self.consumer, self.cfg.topic, self.parts, msgs, self.watch)
                raise
        if self.outbox.pending is not None:  # its sinks first: no checkpoint, log check or swap may claim the batch
            self._stop.wait(self.outbox.retry_in)
            return
        self.watch.watch(self.consumer, self.parts)
        rejoin.unstick(self.consumer, self.metrics.rejoins)
        now = time.monotonic()
        if self.ck.in_flight is not None and self.ck.in_flight[0].done():
            self.ck.guarded(lambda: self.ck.wait(commit=True, sync=False))
        if self.ck.dirty and now - self.ck.last >= self.cfg.checkpoint_interval:
            self.ck.guarded(lambda: self.ck.start(self.version) if self.cfg.background_checkpoint
                                  else self.ck.now(version=self.version))
        self.maybe_reload()

    def close(self) -> None:
        if self.consumer is None:
            return
        final = (lambda: (self.outbox.deliver(), self.ck.now(version=self.version)))  # the sinks before any commit
        for step, what in ((lambda: self.ck.wait(commit=True), "background"), (final, "final")):
            try:
                step()
            except Exception as e:  # noqa: BLE001
                log.error("%s checkpoint failed error=%r (uncommitted events will be re-read on restart)", what,
                          f"{e.__class__.__name__}: {e}")
        for c, kw in ((self.consumer, {"autocommit": False}), (self.producer, {"timeout": 5})):
            try:
                c.close(**kw)
            except Exception:  # noqa: BLE001
                pass
        self.metrics.close()
        if self.cfg.gc_freeze:
            thaw_heap()  # a process that runs scorers one after another (tests, bench) gets its objects back
        self.ck.close()
        self.consumer = None
        log.info("scorer stopped events=%d scored=%d alerts=%d dead_letters=%d version=%s", self.n_events,
                 self.n_scored, self.n_alerts, sum(self.dlq.counts.values()) if self.dlq else 0, self.version)
