"""How the local broker's fetch cost grows with its log: a bare consumer (no model, no sinks) polls a fresh topic
while the stream bench's load generator appends at ``--rate`` events/s; per ``--bucket`` seconds it prints the
median poll time, the events per poll and the share of a core the broker process used. Tansu keeps its log in
memory and its fetch cost grows with it, which stretches every cycle of a scorer over a long latency phase
(docs/streaming.md, "The broker's fetch cost grows with its log").

Run: ``python -m benchmarks.broker_growth [--seconds 30] [--json]``.
"""
from __future__ import annotations

import argparse
import json
import os
import time
import uuid

import numpy as np


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        f = fh.read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def measure(seconds: float = 30.0, rate: float = 1000.0, bucket: float = 5.0, work_ms: float = 10.0) -> list[dict]:
    """Per bucket: start (s), median poll time (ms) of polls that returned events, median events per poll, and
    the broker's CPU use over the bucket (share of one core). ``work_ms``: the consumer sleeps this long after
    each poll, as a scorer's ``process()`` would take."""
    from kafka import KafkaConsumer

    from benchmarks.stream import start_load
    from fraud.simulate import simulate
    from streaming.broker import LocalBroker, ensure_topics
    from streaming.replay import encode_events

    n = int(seconds * rate) + int(rate)
    values, keys = encode_events(simulate(customers=1500, terminals=3000, days=30, seed=7).iloc[:n])
    broker = LocalBroker().start()
    gen = None
    try:
        topic = f"growth-{uuid.uuid4().hex[:6]}"
        ensure_topics(broker.bootstrap, {topic: 4})
        c = KafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id=f"g-{topic}", enable_auto_commit=False,
                          auto_offset_reset="earliest", fetch_max_wait_ms=20, session_timeout_ms=6000,
                          heartbeat_interval_ms=1000)
        while not c.assignment():
            c.poll(timeout_ms=100)
        gen = start_load(broker.bootstrap, topic, values, keys, rate, 5)
        polls, cpu = [], [(0.0, _cpu_seconds(broker.proc.pid))]
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            a = time.perf_counter()
            got = sum(len(v) for v in c.poll(timeout_ms=100).values())
            polls.append((a - t0, 1000.0 * (time.perf_counter() - a), got))
            if a - t0 >= cpu[-1][0] + bucket:
                cpu.append((a - t0, _cpu_seconds(broker.proc.pid)))
            time.sleep(work_ms / 1000.0)
        cpu.append((time.perf_counter() - t0, _cpu_seconds(broker.proc.pid)))
        c.close()
    finally:
        if gen is not None:
            gen.kill()
        broker.stop()
    P = np.array(polls)
    out = []
    for (s0, c0), (s1, c1) in zip(cpu[:-1], cpu[1:]):
        m = (P[:, 0] >= s0) & (P[:, 0] < s1) & (P[:, 2] > 0)
        if m.any():
            out.append({"from_s": round(s0, 1), "poll_ms": round(float(np.median(P[m, 1])), 2),
                        "events_per_poll": float(np.median(P[m, 2])), "broker_core_share": round((c1 - c0) / (s1 - s0), 3)})
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--bucket", type=float, default=5.0)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    rows = measure(a.seconds, a.rate, a.bucket)
    if a.json:
        print(json.dumps(rows))
        return
    for r in rows:
        print(f"{r['from_s']:5.1f}s  poll {r['poll_ms']:6.2f} ms  {r['events_per_poll']:5.1f} events/poll  "
              f"broker {100 * r['broker_core_share']:5.1f} % of a core")


if __name__ == "__main__":
    main()
