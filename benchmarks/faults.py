"""``fraud bench faults``: issue 13's acceptance benchmark. The real scorer (``fraud serve`` in a subprocess under
a supervisor that restarts it) against a real local broker (Tansu) while a corpus of good, poison, odd-but-valid
and duplicate events streams in and four faults are injected: the archive made unwritable, a long write lock on
the alert store, a broker restart (it comes back empty; the topics are recreated) and a kill -9 of the scorer.

At the end every produced message is traced (archive by tx_id, dead letters by broker epoch + source partition
+ offset) and counted: scored, lost, duplicated, dead-lettered (with a reason), skipped duplicates, crashes.
``goal_met``: nothing lost or duplicated, no crash, every bad event dead-lettered with its reason, every
odd-but-valid event scored, every exact replay skipped. A measurement: it never fails on the scorer's account.
"""
from __future__ import annotations

import shutil
import sqlite3
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from benchmarks import corpus as C
from benchmarks.procs import DeadLetterCollector, Supervisor, start_broker
from streaming.broker import ensure_topics, free_port

MODEL = "fraud-detector"


@dataclass
class FaultConfig:
    events: int = 2000  # good events
    seed: int = 7
    workdir: str | None = None  # default: a temporary directory, removed unless keep
    keep: bool = False
    customers: int = 200
    terminals: int = 400
    train_days: int = 14
    partitions: int = 4
    rate: float = 100.0  # messages per second
    max_message_bytes: int = 256 * 1024
    sink_seconds: float = 4.0  # archive unwritable
    lock_seconds: float = 15.0  # alert store write lock
    settle_timeout: float = 60.0  # wait for the scorer to catch up before the broker restart
    final_timeout: float = 120.0  # ... and at the end
    stall_timeout: float = 30.0  # give up waiting once nothing new was accounted for this long
    ready_timeout: float = 120.0  # first scorer to join its group
    checkpoint_interval: float = 0.5
    session_timeout_ms: int = 6000  # the scorer's group session: a killed scorer's partitions move after it


class Harness:
    """One run: the workdir's files, the broker, the scorer and the dead-letter collector."""

    def __init__(self, cfg: FaultConfig, work: Path, say: Callable[[str], None]):
        self.cfg, self.work, self.say = cfg, work, say
        self.archive, self.alerts_db = work / "archive", work / "alerts.db"
        self.topic, self.dlq = "transactions", "transactions.dlq"
        self.port = free_port()
        self.broker = self.scorer = self.dlqc = self.producer = None
        self.epoch = 0
        self.faults: list[dict] = []
        self._bg: list[threading.Thread] = []

    # -- set-up ------------------------------------------------------------------------------------------
    def topics(self) -> dict:
        return {self.topic: self.cfg.partitions, "scores": 1, "alerts": 1, self.dlq: 1}

    def start_broker(self) -> None:
        self.broker = start_broker(self.port, self.work / "broker.log")
        ensure_topics(self.broker.bootstrap, self.topics())

    def serve_cmd(self, tracking_uri: str) -> list[str]:
        c = self.cfg
        return [sys.executable, "-m", "fraud.cli", "serve", "--bootstrap", self.broker.bootstrap,
                "--topic", self.topic, "--group", "bench-faults", "--model", f"models:/{MODEL}@champion",
                "--tracking-uri", tracking_uri, "--alerts-db", f"sqlite:///{self.alerts_db}",
                "--archive", str(self.archive), "--state-dir", str(self.work / "state"),
                "--dlq-topic", self.dlq, "--partitions", str(c.partitions),
                "--checkpoint-interval", str(c.checkpoint_interval), "--batch-size", "200",
                "--session-timeout-ms", str(c.session_timeout_ms), "--max-message-bytes", str(c.max_message_bytes)]

    def start_scorer(self, tracking_uri: str) -> None:
        import fraud

        root = str(Path(fraud.__file__).resolve().parents[1])  # `-m fraud.cli` runs the code imported here
        self.scorer = Supervisor(self.serve_cmd(tracking_uri), root, self.work / "scorer.log").start()
        ok = _wait(lambda: b"partition assigned" in _read(self.work / "scorer.log"), self.cfg.ready_timeout)
        self.say(f"scorer {'joined its group' if ok else 'did not join its group in time'}")

    def make_producer(self):
        from streaming.replay import make_producer

        return make_producer(self.broker.bootstrap, max_request_size=4 * 1024 * 1024, request_timeout_ms=10000,
                             client_id="bench-faults")

    # -- sending -----------------------------------------------------------------------------------------
    def send(self, msgs: list[C.Msg]) -> None:
        """Send ``msgs`` at ``rate`` per second, recording each one's epoch, partition and offset."""
        step = max(1, int(self.cfg.rate // 10))
        for i in range(0, len(msgs), step):
            t0 = time.monotonic()
            chunk = msgs[i:i + step]
            futs = [self.producer.send(self.topic, key=m.key, value=m.value) for m in chunk]
            self.producer.flush(timeout=30)
            for m, f in zip(chunk, futs):
                _record(m, f, self.epoch)
            time.sleep(max(0.0, step / self.cfg.rate - (time.monotonic() - t0)))

    # -- faults ------------------------------------------------------------------------------------------
    def _background(self, fn, *args) -> None:
        t = threading.Thread(target=fn, args=args, daemon=True)
        t.start()
        self._bg.append(t)

    def join_background(self, timeout: float = 60.0) -> None:
        for t in self._bg:
            t.join(timeout)
        self._bg = []

    def fault_sink(self, at: int, days: list[str]) -> None:
        """The archive unwritable for ``sink_seconds``: every day folder of the corpus replaced by a file."""
        self._background(self._sink_outage, at, days)

    def _sink_outage(self, at: int, days: list[str]) -> None:
        t0 = time.monotonic()
        moved = _block_days(self.archive, days)
        time.sleep(self.cfg.sink_seconds)
        _unblock_days(self.archive, days, moved)
        self.faults.append({"fault": "archive_unwritable", "at_message": at,
                            "seconds": round(time.monotonic() - t0, 1), "days_blocked": len(days)})

    def fault_lock(self, at: int) -> None:
        self._background(self._lock_store, at)

    def _lock_store(self, at: int) -> None:
        t0 = time.monotonic()
        note = "held"
        con = sqlite3.connect(self.alerts_db, timeout=30, isolation_level=None)
        try:
            con.execute("BEGIN EXCLUSIVE")
            time.sleep(self.cfg.lock_seconds)
            con.execute("ROLLBACK")
        except sqlite3.Error as e:
            note = f"not taken: {e}"
        finally:
            con.close()
        self.faults.append({"fault": "alert_store_lock", "at_message": at,
                            "seconds": round(time.monotonic() - t0, 1), "note": note})

    def fault_broker_restart(self, at: int, sent: list[C.Msg]) -> None:
        """Wait until what was sent is accounted for, then restart the broker (empty) and recreate the topics."""
        t0 = time.monotonic()
        settled = self.settle(sent, self.cfg.settle_timeout)
        left = self.outstanding(sent)  # lost with the broker's memory unless the scorer already read them
        self.dlqc.suspend()
        self.producer.close(timeout=5)
        self.broker.stop()
        self.start_broker()
        self.epoch = self.dlqc.resume()
        self.producer = self.make_producer()
        self.faults.append({"fault": "broker_restart", "at_message": at, "settled_before": settled,
                            "unaccounted_at_restart": left,
                            "seconds": round(time.monotonic() - t0, 1)})

    def fault_kill(self, at: int) -> None:
        """kill -9 the scorer (waiting, bounded, for one to be running: it may be restarting after a crash)."""
        _wait(self.scorer.alive, 30.0)
        killed = self.scorer.kill9()
        self.faults.append({"fault": "scorer_kill_9", "at_message": at, "killed": killed})

    # -- accounting --------------------------------------------------------------------------------------
    def outstanding(self, sent: list[C.Msg]) -> int:
        """Sent messages not yet accounted for: expected-scored absent from the archive, expected-dead-lettered
        without a dead letter."""
        arch = set(_archive(self.archive)["tx_id"].astype(str)) if self.archive.exists() else set()
        dead = {(d.epoch, d.partition, d.offset) for d in list(self.dlqc.records)}
        n = 0
        for m in sent:
            if m.expect == C.SCORED and m.tx_id not in arch:
                n += 1
            elif m.expect == C.DEAD and m.offset is not None and (m.epoch, m.partition, m.offset) not in dead:
                n += 1
        return n

    def settle(self, sent: list[C.Msg], timeout: float) -> bool:
        """Wait until everything sent is accounted for (True), or ``timeout``, or no progress for a while."""
        deadline = time.monotonic() + timeout
        last, since = None, time.monotonic()
        while time.monotonic() < deadline:
            n = self.outstanding(sent)
            if n == 0:
                return True
            if n != last:
                last, since = n, time.monotonic()
            elif time.monotonic() - since > self.cfg.stall_timeout:
                break
            time.sleep(0.5)
        self.say(f"{last} message(s) still unaccounted for; going on")
        return False

    def stop(self) -> None:
        """Stop everything this run started; each step on its own (never raises)."""
        for step in (lambda: self.join_background(30), lambda: self.scorer and self.scorer.stop(),
                     lambda: self.dlqc and self.dlqc.stop(), lambda: self.producer and self.producer.close(5),
                     lambda: self.broker and self.broker.stop()):
            try:
                step()
            except Exception as e:  # noqa: BLE001 - clean-up must go on
                self.say(f"clean-up step failed: {e!r}")


# -- helpers -----------------------------------------------------------------------------------------------
def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def _wait(cond, timeout: float, every: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(every)
    return False


def _record(m: C.Msg, fut, epoch: int) -> None:
    try:
        md = fut.get(timeout=30)
        m.epoch, m.partition, m.offset = epoch, md.partition, md.offset
    except Exception as e:  # noqa: BLE001 - a message the broker refused: reported, not fatal
        m.send_error = f"{e.__class__.__name__}: {e}"


def _archive(root: Path) -> pd.DataFrame:
    from fraud.archive import read as read_archive

    try:
        df = read_archive(root)
    except Exception:  # noqa: BLE001 - a half-written or blocked archive: read it again later
        df = pd.DataFrame()
    return df if len(df) else pd.DataFrame({"tx_id": pd.Series([], dtype=str), "amount": []})


def _block_days(root: Path, days: list[str]) -> dict:
    moved = {}
    for d in days:
        p = root / f"date={d}"
        try:
            if p.is_dir():
                aside = root / f".bench-aside-date={d}"
                p.rename(aside)
                moved[d] = aside
            p.write_bytes(b"blocked by fraud bench faults\n")
        except OSError:
            pass
    return moved


def _unblock_days(root: Path, days: list[str], moved: dict) -> None:
    for d in days:
        p = root / f"date={d}"
        try:
            if p.is_file():
                p.unlink()
            if d in moved:
                if p.exists():  # created meanwhile (should not happen): keep both sets of files
                    for f in moved[d].iterdir():
                        f.rename(p / f.name)
                    moved[d].rmdir()
                else:
                    moved[d].rename(p)
        except OSError:
            pass


def train_model(world: pd.DataFrame, train_days: int, root: Path) -> str:
    """Train a small bundle (tabular + ECOD) on the first days and register it as champion; the store's URI."""
    from fraud import registry
    from fraud.training import TrainConfig, train

    uri = f"sqlite:///{root / 'mlflow.db'}"
    registry.configure(uri)
    registry.quiet_mlflow()
    hist = world[world["timestamp"] < world["timestamp"].min() + pd.Timedelta(days=train_days)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = train(hist, TrainConfig(featurizers=("tabular",), unsupervised=("ecod",), supervised=None,
                                      alert_budget_per_day=15, warmup_days=3, eval_days=3))
        registry.log_and_register(res.bundle, name=MODEL, artifact_root=str(root / "artifacts"))
    return uri


def make_world(cfg: FaultConfig) -> pd.DataFrame:
    """The simulated world: enough days after the training days for the corpus (~1.7 events/customer/day)."""
    from fraud.simulate import simulate

    live_days = int((cfg.events + 100) / (1.4 * cfg.customers)) + 2
    return simulate(customers=cfg.customers, terminals=cfg.terminals, days=cfg.train_days + live_days,
                    seed=cfg.seed)


# -- the run -------------------------------------------------------------------------------------------------
def run_faults(cfg: FaultConfig, say: Callable[[str], None] = lambda s: None) -> dict:
    """Run the benchmark; the result dict (see :func:`count`). Always stops the broker and the scorer."""
    t0 = time.monotonic()
    own = cfg.workdir is None
    work = Path(tempfile.mkdtemp(prefix="fraud-bench-faults-") if own else cfg.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    h = Harness(cfg, work, say)
    try:
        world = make_world(cfg)
        say(f"world: {len(world)} events; training the model")
        uri = train_model(world, cfg.train_days, work)
        live = world[world["timestamp"] >= world["timestamp"].min() + pd.Timedelta(days=cfg.train_days)]
        msgs = C.build(live.reset_index(drop=True), cfg.events, cfg.seed, cfg.max_message_bytes)
        h.start_broker()
        h.dlqc = DeadLetterCollector(h.broker.bootstrap, h.dlq).start()
        h.start_scorer(uri)
        h.producer = h.make_producer()
        stream(h, msgs, _days(live, cfg.events))
        say("corpus sent; waiting for the scorer to finish")
        settled = h.settle(msgs, cfg.final_timeout)
        h.join_background()
        h.scorer.stop()
        time.sleep(1.0)  # the last dead letters reach the collector
        res = count(msgs, h)
        res.update(settled=settled, seconds=round(time.monotonic() - t0, 1), workdir=str(work) if cfg.keep or not own
                   else None)
        return res
    finally:
        h.stop()
        if own and not cfg.keep:
            shutil.rmtree(work, ignore_errors=True)


def _days(live: pd.DataFrame, n: int) -> list[str]:
    ts = live["timestamp"].iloc[: n + 20]
    return sorted({t.strftime("%Y-%m-%d") for t in ts})


def stream(h: Harness, msgs: list[C.Msg], days: list[str]) -> None:
    """Send the corpus, injecting the four faults after 20%, 40%, 60% and 80% of it."""
    n = len(msgs)
    cuts = [int(n * f) for f in (0.2, 0.4, 0.6, 0.8)]
    faults = [("archive unwritable", lambda at: h.fault_sink(at, days)), ("alert store lock", h.fault_lock),
              ("broker restart", lambda at: (h.join_background(), h.fault_broker_restart(at, msgs[:at]))),
              ("kill -9", h.fault_kill)]
    lo = 0
    for cut, (name, fault) in zip(cuts, faults):
        h.send(msgs[lo:cut])
        h.say(f"sent {cut}/{n}; fault: {name}")
        fault(cut)
        lo = cut
    h.send(msgs[lo:])


# -- counting ------------------------------------------------------------------------------------------------
def count(msgs: list[C.Msg], h: Harness) -> dict:
    """Trace every message to the archive (by tx_id) and the dead letters (by epoch, partition, offset)."""
    arch = _archive(h.archive)
    unmatched = _match_dead_letters(msgs, h.dlqc.records)
    tx_counts = Counter(arch["tx_id"].astype(str)) if len(arch) else Counter()
    conflict_scored = _conflicts_scored(msgs, arch)
    per = {}
    for m in msgs:
        row = per.setdefault(m.category, Counter(sent=0))
        row["sent"] += 1
        row[_outcome(m, tx_counts, conflict_scored)] += 1
    alerts = _alerts(h.alerts_db)
    want_scored = {m.tx_id for m in msgs if m.expect == C.SCORED}
    got = set(tx_counts)
    bad = [m for m in msgs if m.expect == C.DEAD]
    odd = [m for m in msgs if m.category in ("extra_attr_type_change", "no_label")]
    replays = [m for m in msgs if m.expect == C.SKIPPED]
    res = {
        "events_sent": len(msgs) - sum(m.send_error is not None for m in msgs),
        "send_errors": sum(m.send_error is not None for m in msgs),
        "sent_by_category": {k: v["sent"] for k, v in sorted(per.items())},
        "expected": dict(Counter(m.expect for m in msgs)),
        "scored": len(want_scored & got),
        "lost": len(want_scored - got),
        "lost_alerts": int((~alerts["tx_id"].isin(got)).sum()),
        "duplicated_archive": sum(1 for c in tx_counts.values() if c > 1),
        "duplicated_alert_store": int(alerts["tx_id"].duplicated().sum()),
        "archive_rows": len(arch),
        "alert_store_rows": len(alerts),
        "dead_lettered": sum(bool(m.dead_letters) for m in bad),
        "bad_not_dead_lettered": sum(not m.dead_letters for m in bad),
        "bad_scored": sum(per[k]["scored"] for k in per if k not in ("good", "extra_attr_type_change", "no_label",
                                                                     "replayed_duplicate")),
        "dead_letters_without_reason": sum(1 for m in msgs for d in m.dead_letters if not d.error.strip()),
        "good_dead_lettered": sum(bool(m.dead_letters) for m in msgs if m.expect != C.DEAD),
        "dead_letters_total": len(h.dlqc.records),
        "dead_letters_unmatched": unmatched,
        "odd_valid_scored": sum(m.tx_id in got for m in odd),
        "odd_valid_sent": len(odd),
        "duplicates_skipped": sum(_outcome(m, tx_counts, conflict_scored) == "skipped" for m in replays),
        "duplicates_sent": len(replays),
        "crashes": len(h.scorer.crashes),
        "restarts": h.scorer.restarts,
        "harness_kills": h.scorer.kills,
        "final_exit_code": h.scorer.final_rc,
        "faults": h.faults,
        "outcomes_by_category": {k: {o: n for o, n in v.items() if o != "sent"} for k, v in sorted(per.items())},
        "missing_dead_letters": sorted({m.category for m in bad if not m.dead_letters}),
        "crash_reasons": crash_reasons(h.work / "scorer.log", h.scorer.crashes),
    }
    res["goal_met"] = goal_met(res)
    return res


def crash_reasons(log: Path, crashes: list) -> list[str]:
    """The last error line the scorer printed before each crash (from its log, split at each start)."""
    text = _read(log).decode("utf-8", "replace")
    starts = text.split("=== bench faults: scorer start ")
    out = []
    for c in crashes:
        part = starts[c["start"]] if c["start"] < len(starts) else ""
        out.append(f"exit {c['rc']}: " + _last_error(part)[:300])
    return out


def _last_error(text: str) -> str:
    """The exception line of the last traceback in ``text``, or its last ``error:`` line (the CLI's)."""
    lines = text.splitlines()
    tb = max((i for i, ln in enumerate(lines) if ln.startswith("Traceback (most recent call last)")), default=None)
    if tb is not None:
        tail = [ln for ln in lines[tb + 1:] if ln.strip() and not ln.startswith(" ")]
        if tail:
            return tail[0].strip()
    errs = [ln.strip() for ln in lines if ln.startswith("error:")]
    return errs[-1] if errs else "no error line in the log"


def goal_met(r: dict) -> bool:
    return (r["lost"] == 0 and r["lost_alerts"] == 0 and r["duplicated_archive"] == 0
            and r["duplicated_alert_store"] == 0 and r["crashes"] == 0 and r["bad_not_dead_lettered"] == 0
            and r["bad_scored"] == 0 and r["dead_letters_without_reason"] == 0 and r["good_dead_lettered"] == 0
            and r["odd_valid_scored"] == r["odd_valid_sent"] and r["duplicates_skipped"] == r["duplicates_sent"]
            and r["send_errors"] == 0 and r["final_exit_code"] == 0)


def _match_dead_letters(msgs: list[C.Msg], records) -> int:
    """Attach each dead letter to the message it came from (same epoch, partition, offset and bytes); the
    number of dead letters that match no message."""
    where = {(m.epoch, m.partition, m.offset): m for m in msgs if m.offset is not None}
    unmatched = 0
    for d in list(records):
        m = where.get((d.epoch, d.partition, d.offset))
        v, dv = (m.value or b"") if m is not None else b"", d.value or b""
        if m is not None and (dv == v or (d.truncated and v.startswith(dv))):
            m.dead_letters.append(d)
        else:
            unmatched += 1
    return unmatched


def _conflicts_scored(msgs: list[C.Msg], arch: pd.DataFrame) -> set:
    """tx_ids of conflicting duplicates whose changed amount reached the archive."""
    conf = {m.tx_id: m.amount for m in msgs if m.category == "conflicting_duplicate"}
    if not conf or not len(arch):
        return set()
    sub = arch[arch["tx_id"].astype(str).isin(list(conf))]
    return {t for t, a in zip(sub["tx_id"].astype(str), sub["amount"]) if abs(float(a) - conf[t]) < 1e-9}


def _outcome(m: C.Msg, tx_counts: Counter, conflict_scored: set) -> str:
    if m.send_error is not None:
        return "not_sent"
    if m.dead_letters:
        return "dead_lettered"
    if m.category == "conflicting_duplicate":
        return "scored" if m.tx_id in conflict_scored else "missing"
    if m.category == "replayed_duplicate":  # right when its original is in the archive once
        n = tx_counts.get(m.tx_id, 0)
        return "scored" if n > 1 else "skipped" if n == 1 else "missing"
    if isinstance(m.tx_id, str) and tx_counts.get(m.tx_id, 0) and (m.expect != C.DEAD or m.tx_id.startswith("bad-")):
        return "scored"
    return "missing"


def _alerts(db: Path) -> pd.DataFrame:
    if not db.exists():
        return pd.DataFrame({"tx_id": pd.Series([], dtype=str)})
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as con:
        try:
            return pd.read_sql_query("SELECT tx_id FROM alerts", con)
        except Exception:  # noqa: BLE001 - no table: the scorer never wrote
            return pd.DataFrame({"tx_id": pd.Series([], dtype=str)})


# -- report --------------------------------------------------------------------------------------------------
def table(r: dict) -> str:
    """The human-readable report."""
    lines = [f"{'category':<26}{'sent':>6}  outcomes"]
    for cat, n in r["sent_by_category"].items():
        outs = ", ".join(f"{o} {k}" for o, k in sorted(r["outcomes_by_category"][cat].items()))
        lines.append(f"{cat:<26}{n:>6}  {outs}")
    lines.append("")
    keys = ("events_sent", "scored", "lost", "lost_alerts", "duplicated_archive", "duplicated_alert_store",
            "dead_lettered", "bad_not_dead_lettered", "bad_scored", "dead_letters_without_reason",
            "good_dead_lettered", "dead_letters_unmatched", "odd_valid_scored", "odd_valid_sent",
            "duplicates_skipped", "duplicates_sent", "crashes", "restarts", "harness_kills", "final_exit_code",
            "settled", "seconds", "goal_met")
    lines += [f"{k:<32}{r.get(k)}" for k in keys]
    lines += [f"fault: {f}" for f in r["faults"]]
    if r["missing_dead_letters"]:
        lines.append("not dead-lettered: " + ", ".join(r["missing_dead_letters"]))
    return "\n".join(lines)
