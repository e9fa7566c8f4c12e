"""``fraud bench stream``: raw consume rate vs the scorer's end-to-end rate, and latency at a fixed load.

One run, one broker (a local Tansu unless ``bootstrap`` is given), the same events for both rates:

(a) raw: a kafka-python consumer (manual assignment, no group) reads the topic from the beginning,
    JSON-decodes each value and counts;
(b) scorer: a :class:`streaming.loop.Scorer` (all sinks: scores/alerts topics, SQLite alert store,
    Parquet archive, checkpoints) consumes the same topic in a fresh group.
Both rates are measured from the first poll that returned data to the last event handled.
(a') pass-through (``passthrough_rate``; ``passthrough_ratio`` = it / raw; ``scorer_share_of_passthrough`` = (b) / it,
    the figure to read for the scorer's overhead): a consumer that decodes every event
    and sends it back unchanged to another topic with the scorer's producer settings (:func:`passthrough_rate`):
    the ceiling of any scorer writing one ``scores`` record per event with kafka-python here, model excluded.
(a'') with ``ceiling``: the scorer of (b) with a model that does no work (:func:`null_model`: score 0, no alert),
    in its own group: the ceiling of this scorer's own path (decode, dedup, frames, every sink, checkpoints)
    (``null_model_rate``; ``null_model_share_of_passthrough``: the most (b)'s share could reach with a free model).
(c) latency: the same scorer keeps running while new events are produced at ``offered`` events/s by a load
    generator in another process (:func:`offer_load`; its producer lingers ``load_linger_ms``, 5 ms, as
    ``fraud replay``'s does: sending each event in its own request cost the generator ~40% and the broker ~60%
    of a core on this 2-core machine, beside the scorer; the linger is inside the measured latency);
    latency = time the batch's scores were handed to the producer (``scores`` topic; the producer sends
    within its linger) minus the event's Kafka timestamp (producer create time).

Events: a simulated world (``customers``, ``terminals``, ``seed``; default ``fraud demo``'s, the default model's)
whose traffic starts at the newest model's training cutoff (``config["train_until"]``), so the stream continues the
time line and the customers of the model's warm state; events before it, or another world's strangers, alert
nearly every event and measure the explanation and alert sinks instead (docs/streaming.md). For another model,
pass the sizes and seed it was simulated with, or ``data``. The result's ``alert_rate`` says which regime was
measured.
"""
from __future__ import annotations

import copy
import dataclasses
import gc
import json
import os
import pickle
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np


def _say(verbose, msg):
    if verbose:
        import click

        click.echo(msg, err=True)


def _consume_rate(bootstrap: str, topic: str, n: int, partitions: int, on_record, *, max_poll_records: int = 500,
                  on_end=None, timeout: float = 120.0, what: str = "raw consumer") -> float:
    """Events/s of a manually assigned consumer reading ``n`` events of ``topic`` from the beginning and calling
    ``on_record`` on each (then ``on_end``), from the first poll that returned data to the end."""
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                      auto_offset_reset="earliest", max_poll_records=max_poll_records, fetch_max_wait_ms=20)
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    got = 0
    t_first = None
    deadline = time.monotonic() + timeout
    try:
        while got < n and time.monotonic() < deadline:
            polled = c.poll(timeout_ms=200)
            for recs in polled.values():
                if t_first is None:
                    t_first = time.perf_counter()
                for m in recs:
                    on_record(m)
                    got += 1
        if on_end is not None:
            on_end()
        t_end = time.perf_counter()
    finally:
        c.close()
    if got < n:
        raise RuntimeError(f"{what} read {got} of {n} events of {topic} within {timeout:.0f}s")
    return got / (t_end - t_first)


def raw_consume_rate(bootstrap: str, topic: str, n: int, partitions: int, timeout: float = 120.0) -> float:
    """The raw kafka-python consume rate: JSON-decode each value and count."""
    return _consume_rate(bootstrap, topic, n, partitions, lambda m: json.loads(m.value), timeout=timeout)


def passthrough_rate(bootstrap: str, topic: str, out_topic: str, n: int, partitions: int,
                     linger_ms: int = 2, timeout: float = 120.0) -> float:
    """The ceiling of any scorer that writes one record per event with kafka-python: consume as
    :func:`raw_consume_rate` does, JSON-decode each value, send it back unchanged (key: its tx_id) to
    ``out_topic`` with the scorer's producer settings, flush at the end. No model, no validation, no other
    sink. Measured from the first poll that returned data to the end of the flush."""
    from kafka import KafkaProducer

    prod = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=linger_ms, batch_size=256 * 1024, acks="all",
                         enable_idempotence=False)

    def send(m):
        rec = json.loads(m.value)
        prod.send(out_topic, key=str(rec.get("tx_id")).encode(), value=m.value, partition=0)

    try:
        return _consume_rate(bootstrap, topic, n, partitions, send, max_poll_records=2000, on_end=prod.flush,
                             timeout=timeout, what="pass-through consumer")
    finally:
        prod.close()


def offer_load(bootstrap: str, topic: str, values: list, keys: list, offered: float, linger_ms: float = 0) -> None:
    """Produce ``values`` (keyed) to ``topic`` at ``offered`` events/s: the latency phase's load generator
    (:func:`start_load` runs it in its own process). ``linger_ms`` 0: each event is sent at once (a flush every
    50 events); > 0: the producer batches what arrives within that time (its latency is part of the measured
    produce -> score latency: event timestamps are the producer's create times)."""
    from streaming.replay import make_producer

    prod = make_producer(bootstrap, linger_ms=linger_ms, client_id="fraud-bench-load")
    t0 = time.monotonic()
    try:
        for i in range(len(values)):
            dly = t0 + i / offered - time.monotonic()
            if dly > 0:
                time.sleep(dly)
            prod.send(topic, key=keys[i], value=values[i])
            if not linger_ms and i % 50 == 0:
                prod.flush()
        prod.flush()
    finally:
        prod.close(timeout=10)


def start_load(bootstrap: str, topic: str, values: list, keys: list, offered: float,
               linger_ms: float = 0) -> subprocess.Popen:
    """:func:`offer_load` in a child Python process (the arguments go through its stdin): the offered load comes
    from outside the scorer's process, as in production (a producer loop beside the scorer competes with it for
    the GIL: measured, its sender thread alone took ~0.6 of a core)."""
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])]))
    proc = subprocess.Popen([sys.executable, "-c", "import pickle, sys; from benchmarks.stream import offer_load; "
                             "offer_load(*pickle.load(sys.stdin.buffer))"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    proc.stdin.write(pickle.dumps((bootstrap, topic, values, keys, offered, linger_ms)))
    proc.stdin.close()
    proc.stdin = None  # communicate() must not flush a closed pipe
    return proc


def run_stream_bench(model_uri, tracking_uri: str | None = None, bootstrap: str | None = None,
                     n_events: int = 20000, partitions: int = 4, offered: float = 1000.0, seconds: float = 10.0,
                     batch_size: int = 10000, verbose: bool = True, data=None, seed: int = 7,
                     linger_ms: int | None = None, customers: int = 1500, terminals: int = 3000,
                     load_linger_ms: float = 5, trace: str | None = None, ceiling: bool = False,
                     **serve_kw) -> dict:
    """``model_uri``: one URI, or several (list): each model is measured in turn against the same broker and
    events (fresh topic and group each); the result is then the first model's figures plus
    ``"models": {uri: figures}`` for all of them. ``data``: the events (canonical frame; those after the
    newest model's training cutoff when there are enough of them), default simulated (module doc).
    ``serve_kw``: other :class:`streaming.loop.ServeConfig` fields for the scorer. ``trace``: a JSON file for
    the latency phase's :class:`CycleTrace` (first model; its summary is added to the result as ``trace``).
    ``ceiling``: also measure each model's scorer with :func:`null_model` (module doc, (a'')))."""
    import pandas as pd

    from fraud.simulate import simulate
    from streaming.broker import LocalBroker
    from streaming.model import default_loader

    uris = [model_uri] if isinstance(model_uri, str) else list(model_uri)
    bundles = {uri: default_loader(uri, tracking_uri) for uri in uris}
    cutoffs = [pd.Timestamp(b.config["train_until"]) for b in bundles.values()
               if getattr(b, "config", {}).get("train_until")]
    cutoff = max(cutoffs) if cutoffs else None

    n_lat = int(offered * seconds)
    if data is None:
        start = cutoff.tz_convert("UTC").strftime("%Y-%m-%d") if cutoff is not None else "2018-04-01"
        _say(verbose, f"simulating events of a world of {customers} customers, {terminals} terminals from {start} ...")
        days = 14
        while True:
            data = simulate(customers=customers, terminals=terminals, days=days, seed=seed, start=start)
            if len(data) >= n_events + n_lat or days >= 400:
                break
            days = int(days * 1.5 * (n_events + n_lat) / max(len(data), 1)) + 1
    data = data.sort_values("timestamp", kind="stable").reset_index(drop=True)
    if cutoff is not None:
        after = data[data["timestamp"] >= cutoff]
        if len(after) >= n_events + n_lat:
            data = after.reset_index(drop=True)
        else:
            _say(verbose, f"note: only {len(after)} events after the models' training cutoff {cutoff}: using all")
    if len(data) < n_events + n_lat:
        n_events = max(1, len(data) - n_lat)
    first, second = data.iloc[:n_events], data.iloc[n_events:n_events + n_lat]

    broker = None
    if bootstrap is None:
        broker = LocalBroker().start()
        bootstrap = broker.bootstrap
    try:
        out = {}
        for uri in uris:
            out[uri] = _bench_one(uri, tracking_uri, bootstrap, first, second, partitions, offered, batch_size,
                                  verbose, linger_ms, bundles[uri], serve_kw, load_linger_ms,
                                  trace if uri == uris[0] else None, ceiling=ceiling)
    finally:
        if broker is not None:
            broker.stop()
    res = dict(out[uris[0]])
    if len(uris) > 1:
        res["models"] = out
    return res


def null_model(bundle):
    """A shallow copy of ``bundle`` whose ``score_poll`` does no work: every event scores 0, no alert, no
    reasons; the states only count the events, as the real call does. Bench only (an instance attribute)."""
    from fraud.bundle import RESULT_COLUMNS

    nb = copy.copy(bundle)

    def score_poll(rows, bounds, states):
        n = len(rows)
        reasons = np.empty(n, dtype=object)
        reasons.fill([])
        ts = rows["timestamp"].array
        for (a, b), st in zip(bounds, states):
            if b > a:
                st.absorbed(b - a, ts[b - 1])
        out = {"tx_id": rows["tx_id"].to_numpy(), "score": np.zeros(n), "is_alert": np.zeros(n, dtype=bool),
               "reasons": reasons}
        return {c: out[c] for c in RESULT_COLUMNS}

    nb.score_poll = score_poll
    return nb


def null_scorer_rate(cfg, bundle, n: int, timeout: float = 300.0) -> float:
    """Events/s of a :class:`streaming.loop.Scorer` with ``cfg`` and :func:`null_model` of ``bundle`` over the
    first ``n`` events of its topic, from its first poll that returned data to the batch that reached ``n``; the
    scorer is stopped (and its last checkpoint written) afterwards."""
    from streaming.loop import Scorer

    done = {}

    def on_batch(results, lat):
        if scorer.n_events >= n and "t" not in done:
            done["t"] = time.perf_counter()

    scorer = Scorer(cfg, on_batch=on_batch)
    scorer._install(null_model(bundle))
    stop = threading.Event()
    th = threading.Thread(target=scorer.run, args=(stop,), name="bench-null-scorer", daemon=True)
    th.start()
    deadline = time.monotonic() + timeout
    try:
        while "t" not in done and time.monotonic() < deadline and th.is_alive():
            time.sleep(0.05)
    finally:
        stop.set()
        th.join(30)
    if "t" not in done:
        raise RuntimeError(f"the scorer with a null model handled {scorer.n_events} of {n} events")
    return n / (done["t"] - scorer.t_first_poll)


def _bench_one(model_uri, tracking_uri, bootstrap, first, second, partitions, offered, batch_size, verbose,
               linger_ms, bundle, serve_kw, load_linger_ms: float = 0, trace: str | None = None,
               ceiling: bool = False) -> dict:
    from streaming.broker import ensure_topics
    from streaming.loop import Scorer, ServeConfig
    from streaming.model import freeze_heap, warm_up
    from streaming.replay import encode_events, replay

    tag = uuid.uuid4().hex[:8]
    topic = f"bench-tx-{tag}"
    tmp = tempfile.TemporaryDirectory(prefix="fraud-bench-")
    stop = threading.Event()
    try:
        _say(verbose, f"broker {bootstrap}; model {model_uri}")
        ensure_topics(bootstrap, {topic: partitions, f"{topic}.scores": 1, f"{topic}.alerts": 1,
                                  f"{topic}.dlq": 1, f"{topic}.passthrough": 1})
        _say(verbose, f"producing {len(first)} events to {topic} ...")
        replay(first, bootstrap, topic)

        _say(verbose, "(a) raw kafka-python consume (deserialize and count) ...")
        # under the scorer's garbage-collection policy (it freezes the heap when it starts): with the model and
        # its libraries loaded in this process, full collections over ~0.5 M objects otherwise take the
        # allocation-heavy baselines' time (measured: pass-through 37 k/s instead of 61 k/s)
        freeze_heap()
        raw_rate = raw_consume_rate(bootstrap, topic, len(first), partitions)
        _say(verbose, f"    raw_rate {raw_rate:,.0f} events/s")
        _say(verbose, "    pass-through: consume, decode and send every event back (the producer's share) ...")
        pass_rate = passthrough_rate(bootstrap, topic, f"{topic}.passthrough", len(first), partitions,
                                     linger_ms=linger_ms if linger_ms is not None else ServeConfig.linger_ms)
        _say(verbose, f"    passthrough_rate {pass_rate:,.0f} events/s ({pass_rate / raw_rate:.2f} of raw)")

        d = Path(tmp.name)
        kw = dict(bootstrap=bootstrap, topic=topic, group=f"bench-{tag}", model_uri=model_uri,
                  tracking_uri=tracking_uri, alerts_db=f"sqlite:///{d / 'alerts.db'}",
                  archive_dir=str(d / "archive"), state_dir=str(d / "state"), batch_size=batch_size,
                  scores_topic=f"{topic}.scores", alerts_topic=f"{topic}.alerts", dlq_topic=f"{topic}.dlq",
                  create_topics=False, reload_interval=3600, checkpoint_interval=5.0,
                  consumer_kw={"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000})
        if linger_ms is not None:
            kw["linger_ms"] = linger_ms
        cfg = ServeConfig(**{**kw, **serve_kw})
        null_rate = None
        if ceiling:
            _say(verbose, "    the scorer with a model that does no work (its own path's ceiling) ...")
            null_rate = null_scorer_rate(dataclasses.replace(
                cfg, group=f"bench-null-{tag}", alerts_db=f"sqlite:///{d / 'null-alerts.db'}",
                archive_dir=str(d / "null-archive"), state_dir=str(d / "null-state")), bundle, len(first))
            _say(verbose, f"    null_model_rate {null_rate:,.0f} events/s ({null_rate / pass_rate:.2f} of the "
                          f"pass-through)")
        marks = {"done": None, "lat": []}
        target = len(first)

        def on_batch(results, lat):
            if scorer.n_events >= target and marks["done"] is None:
                marks["done"] = time.perf_counter()
            if marks["done"] is not None and results is not None and len(lat) and marks.get("measure"):
                marks["lat"].append(lat)
                marks.setdefault("batches", []).append((len(lat), time.perf_counter()))

        scorer = Scorer(cfg, on_batch=on_batch)
        warm_up(bundle)  # as Scorer.load_model does: one-time costs (numba, lazy imports) before the first poll
        scorer._install(bundle)
        th = threading.Thread(target=scorer.run, args=(stop,), name="bench-scorer", daemon=True)
        _say(verbose, "(b) scorer end-to-end on the same events ...")
        th.start()
        deadline = time.monotonic() + 600
        while marks["done"] is None and time.monotonic() < deadline and th.is_alive():
            time.sleep(0.05)
        if marks["done"] is None:
            raise RuntimeError(f"scorer handled {scorer.n_events} of {target} events")
        elapsed = marks["done"] - scorer.t_first_poll
        scorer_rate = target / elapsed
        _say(verbose, f"    scorer_rate {scorer_rate:,.0f} events/s")
        tm = dict(getattr(scorer.bundle, "timings", {}) or {})
        if tm:
            b_s = sum(tm.values())
            parts = ", ".join(f"{k} {v:.2f}s" for k, v in sorted(tm.items(), key=lambda kv: -kv[1]))
            _say(verbose, f"    time split: model {b_s:.2f}s of {elapsed:.2f}s ({parts}); the rest is decode, "
                          f"validation, sinks, Kafka")

        _say(verbose, f"(c) latency at {offered:,.0f} events/s for {len(second) / offered:.0f}s ...")
        tracer = CycleTrace(scorer).install() if trace else None
        marks["measure"] = True
        values, keys = encode_events(second)
        gen = start_load(bootstrap, topic, values, keys, offered, load_linger_ms)
        try:
            _, err = gen.communicate(timeout=len(values) / offered + 120)
        except subprocess.TimeoutExpired:
            gen.kill()
            raise RuntimeError(f"the load generator (a producer at {offered:,.0f} events/s) did not finish") from None
        if gen.returncode != 0:
            raise RuntimeError(f"the load generator (a producer at {offered:,.0f} events/s) failed: exit code "
                               f"{gen.returncode}: {err.decode(errors='replace')[-2000:]}")
        target2 = target + len(values)
        deadline = time.monotonic() + 120
        while scorer.n_events < target2 and time.monotonic() < deadline:
            time.sleep(0.05)
        # n_events counts a batch when it starts; wait for its latencies too (on_batch runs after the sinks)
        while sum(len(x) for x in marks["lat"]) < len(values) and time.monotonic() < deadline:
            time.sleep(0.02)
        lat = np.concatenate(marks["lat"]) if marks["lat"] else np.array([np.nan])
        if tracer is not None:
            tracer.remove()
            tracer.dump(trace)
        bt = marks.get("batches", [])
        if len(bt) > 1:
            sizes = np.array([b[0] for b in bt])
            gaps = np.diff([b[1] for b in bt])
            _say(verbose, f"    {len(bt)} batches: mean size {sizes.mean():.0f} events, mean time between batch ends "
                          f"{1000 * gaps.mean():.0f} ms (p99 {1000 * np.percentile(gaps, 99):.0f} ms)")
        res = {"raw_rate": round(raw_rate, 1), "scorer_rate": round(scorer_rate, 1),
               "ratio": round(scorer_rate / raw_rate, 4),
               "p50_ms": round(float(np.percentile(lat, 50)), 2), "p99_ms": round(float(np.percentile(lat, 99)), 2)}
        res["events_measured"] = int(len(lat))
        # what a scorer that did nothing but write one record per event would reach (kafka-python's producer)
        res["passthrough_rate"] = round(pass_rate, 1)
        res["passthrough_ratio"] = round(pass_rate / raw_rate, 4)
        # issue 15's figure: the scorer's rate as a share of the pass-through's (goal >= 0.6)
        res["scorer_share_of_passthrough"] = round(scorer_rate / pass_rate, 4)
        if null_rate is not None:  # the most that share could be with a model that costs nothing
            res["null_model_rate"] = round(null_rate, 1)
            res["null_model_share_of_passthrough"] = round(null_rate / pass_rate, 4)
        # the alert share drives the explanation and alert-sink costs: a world unlike the model's alerts far more
        res["alert_rate"] = round(scorer.n_alerts / max(scorer.n_scored, 1), 4)
        if tracer is not None:
            res["trace"] = tracer.summary()
        _say(verbose, f"    p50 {res['p50_ms']} ms  p99 {res['p99_ms']} ms over {len(lat)} events "
                      f"(offered {offered:,.0f}/s; model version {scorer.version}; partitions {partitions}; "
                      f"batch size {batch_size})")
        return res
    finally:
        stop.set()
        try:
            th.join(30)
        except NameError:
            pass
        tmp.cleanup()


_MISSING = object()


class CycleTrace:
    """``--trace FILE``: what each scoring cycle of the latency phase did, joined to its events' latencies.

    Bench only: it wraps the running scorer's objects (instance attributes, put back by :meth:`remove`), never
    the product's code. Per poll that returned events: poll start and end, size, ``process()`` and its model call
    and sink writes, whether a checkpoint job was in flight, the collections on the scoring thread and when the
    results were handed over; beside it the writer thread's jobs and gated steps and every garbage collection
    (``gc.callbacks``). Times are wall-clock ms (``time.time``: the clock of the events' Kafka timestamps).
    :meth:`summary` compares the events above the p95 latency with the others (docs/streaming.md, Tail latency)."""

    def __init__(self, scorer):
        self.s = scorer
        self.cycles: list[dict] = []
        self.writer: list[tuple] = []  # (t0, t1, what): "take" (scoring thread); the writer's "job", its "gate"
        # waits and its steps (producer "flush", each sink's flush, "save" of the checkpoint files)
        self.gcs: list[tuple] = []  # (t0, t1, generation, thread name)
        self._saved: list = []
        self._cur: dict | None = None
        self._gc0: dict = {}
        self._on_batch = None

    @staticmethod
    def _now() -> float:
        return time.time() * 1000.0

    def _wrap(self, obj, name: str, make) -> None:
        self._saved.append((obj, name, obj.__dict__.get(name, _MISSING)))
        setattr(obj, name, make(getattr(obj, name)))

    def _timed(self, record):
        """A wrapper maker: ``record(t0, t1)`` (ms) after each call of the wrapped function."""
        def mk(orig):
            def f(*a, **k):
                t0 = self._now()
                try:
                    return orig(*a, **k)
                finally:
                    record(t0, self._now())
            return f
        return mk

    def _span(self, what: str):
        return self._timed(lambda t0, t1: self.writer.append((t0, t1, what)))

    def _add(self, key: str):
        def add(t0, t1):
            if self._cur is not None:
                self._cur[key] += t1 - t0
        return self._timed(add)

    def install(self) -> "CycleTrace":
        s, now = self.s, self._now

        def poll(orig):
            def f(*a, **k):
                t0 = now()
                out = orig(*a, **k)
                ts = [m.timestamp for recs in out.values() for m in recs]
                cur = self._cur
                if ts and cur is not None and "proc0" not in cur:  # a second poll before the batch: one batch
                    cur["poll1"], cur["n"], cur["ts"] = now(), cur["n"] + len(ts), cur["ts"] + ts
                elif ts:
                    ck = s.ck.in_flight
                    self._cur = {"poll0": t0, "poll1": now(), "n": len(ts), "ts": ts, "score": 0.0, "sinks": 0.0,
                                 "gc": 0.0, "ck_in_flight": ck is not None and not ck[0].done()}
                return out
            return f

        def process(orig):
            def f(msgs):
                cur = self._cur
                if cur is not None:
                    cur["proc0"], c0, p0 = now(), time.thread_time(), time.process_time()
                try:
                    return orig(msgs)
                finally:
                    if cur is not None:
                        cur["proc1"] = now()
                        # CPU time of the scoring thread and of the whole process during process(): the rest of
                        # the wall time it waited (for the GIL, or for a core)
                        cur["cpu_thread"] = 1000.0 * (time.thread_time() - c0)
                        cur["cpu_proc"] = 1000.0 * (time.process_time() - p0)
                        self.cycles.append(cur)
                        self._cur = None
            return f

        def on_batch(results, lat):
            if self._cur is not None and len(lat) == self._cur["n"]:
                # the scorer's latency is (hand-off time - Kafka timestamp) per event: the newest event has the least
                self._cur["handoff"] = float(max(self._cur["ts"]) + np.min(lat))
            if self._on_batch is not None:
                self._on_batch(results, lat)

        self._wrap(s.consumer, "poll", poll)
        self._wrap(s, "process", process)
        self._wrap(s.bundle, "score_poll", self._add("score"))
        for sink in [*s.sinks, *([s.archive] if s.archive is not None else [])]:
            self._wrap(sink, "write", self._add("sinks"))
        self._wrap(s.ck, "run", self._span("job"))
        self._wrap(s.ck, "gate", self._span("gate"))
        self._wrap(s.ck, "start", self._span("take"))
        self._wrap(s.ck, "save", self._span("save"))
        self._wrap(s.producer, "flush", self._span("flush"))
        for sink in [*s.sinks, *([s.archive] if s.archive is not None else [])]:
            if hasattr(sink, "take"):
                self._wrap(sink, "flush", self._span(type(sink).__name__))
        self._on_batch, s.on_batch = s.on_batch, on_batch
        gc.callbacks.append(self._on_gc)
        return self

    def _on_gc(self, phase, info) -> None:
        th = threading.current_thread().name
        if phase == "start":
            self._gc0[th] = self._now()
        elif th in self._gc0:
            t0, t1 = self._gc0.pop(th), self._now()
            self.gcs.append((t0, t1, info.get("generation"), th))
            if self._cur is not None and th == "bench-scorer":
                self._cur["gc"] += t1 - t0

    def remove(self) -> None:
        gc.callbacks.remove(self._on_gc)
        self.s.on_batch = self._on_batch
        for obj, name, old in reversed(self._saved):
            if old is _MISSING:
                delattr(obj, name)
            else:
                setattr(obj, name, old)

    def per_event(self) -> dict:
        """One row per traced event: latency and its parts, and the features of its cycle."""
        cyc = [c for c in self.cycles if "handoff" in c]
        jobs = [(a, b) for a, b, w in self.writer if w == "job"]
        cols: dict = {k: [] for k in ("lat", "age_at_poll", "after_poll", "polls_passed", "poll_n", "poll_wait",
                                      "process", "cpu_thread", "cpu_proc", "score", "sinks", "gc", "ck_in_flight",
                                      "writer_overlap", "prev_process")}
        prev = 0.0
        returns = np.array([c["poll1"] for c in cyc])
        for k, c in enumerate(cyc):
            ts = np.asarray(c["ts"], dtype=float)
            lo, hi = c["poll0"], c["handoff"]
            w = sum(max(0.0, min(b, hi) - max(a, lo)) for a, b in jobs)
            feats = {"poll_n": c["n"], "process": c["proc1"] - c["proc0"], "cpu_thread": c["cpu_thread"],
                     "cpu_proc": c["cpu_proc"], "score": c["score"], "sinks": c["sinks"],
                     "gc": c["gc"], "ck_in_flight": float(c["ck_in_flight"]), "writer_overlap": w,
                     "prev_process": prev, "poll_wait": c["poll1"] - c["poll0"]}
            prev = feats["process"]
            cols["lat"].append(hi - ts)
            cols["age_at_poll"].append(c["poll1"] - ts)
            cols["after_poll"].append(np.full(len(ts), hi - c["poll1"]))
            # polls that returned without the event although it was created 10 ms (the load generator's linger
            # and the broker) before them: it waited in the broker or the client's buffer for a later fetch
            cols["polls_passed"].append(np.maximum(0, k - np.searchsorted(returns, ts + 10.0)).astype(float))
            for name, v in feats.items():
                cols[name].append(np.full(len(ts), float(v)))
        return {k: np.concatenate(v) if v else np.empty(0) for k, v in cols.items()}

    def summary(self, q: float = 95.0) -> dict:
        """Mean of each per-event column for the events above the ``q`` percentile latency vs the others."""
        ev = self.per_event()
        if not len(ev["lat"]):
            return {}
        cut = np.percentile(ev["lat"], q)
        slow = ev["lat"] > cut
        out = {"cut_ms": round(float(cut), 2), "n_slow": int(slow.sum()), "n": int(len(slow)),
               "load_avg": os.getloadavg()[0]}
        for g in (0, 1, 2):
            ms = [b - a for a, b, gen, th in self.gcs if gen == g and th == "bench-scorer"]
            out[f"gc{g}_scoring_thread"] = (len(ms), round(max(ms, default=0.0), 1))
        for k, v in ev.items():
            out[k] = (round(float(v[slow].mean()), 2), round(float(v[~slow].mean()), 2))
        return out

    def dump(self, path: str) -> None:
        """The raw trace and its summary as JSON."""
        cyc = [{k: (list(map(float, v)) if k == "ts" else v) for k, v in c.items()} for c in self.cycles]
        Path(path).write_text(json.dumps({"cycles": cyc, "writer": self.writer, "gc": self.gcs,
                                          "summary": self.summary()}, default=float))
