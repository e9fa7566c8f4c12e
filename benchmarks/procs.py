"""Processes and background readers of ``fraud bench faults``: the scorer under a supervisor that restarts it
(counting the exits the harness did not cause as crashes), a restartable local broker, and a dead-letter
collector that follows the DLQ topic across broker restarts (each restart starts a new epoch)."""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from streaming.broker import LocalBroker, wait_for_broker


@dataclass
class Supervisor:
    """Runs ``cmd`` in its own process group, restarting it whenever it exits until :meth:`stop`."""

    cmd: list[str]
    cwd: str
    log_path: Path
    backoff: float = 1.0
    max_backoff: float = 8.0
    starts: int = 0
    crashes: list = field(default_factory=list)
    kills: int = 0
    final_rc: int | None = None
    proc: subprocess.Popen | None = None

    def __post_init__(self):
        self._lock = threading.Lock()
        self._expected = False
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="scorer-supervisor", daemon=True)

    def start(self) -> "Supervisor":
        self._thread.start()
        return self

    def _spawn(self) -> subprocess.Popen:
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== bench faults: scorer start {self.starts} at {time.time():.3f}\n".encode())
            log.flush()
            return subprocess.Popen(self.cmd, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)

    def _loop(self) -> None:
        delay = self.backoff
        while not self._stopping.is_set():
            with self._lock:
                if self._stopping.is_set():
                    return
                self.proc = self._spawn()
            rc = self.proc.wait()
            with self._lock:
                expected, self._expected = self._expected, False
            if self._stopping.is_set():
                self.final_rc = rc
                return
            if expected:
                delay = self.backoff
            else:
                self.crashes.append({"start": self.starts, "rc": rc, "at": time.time()})
                delay = min(self.max_backoff, delay * 2)
            self._stopping.wait(delay)

    @property
    def restarts(self) -> int:
        return max(0, self.starts - 1)

    def alive(self) -> bool:
        p = self.proc
        return p is not None and p.poll() is None

    def kill9(self) -> bool:
        """kill -9 the running scorer (an exit the harness caused: not a crash). False when none ran."""
        with self._lock:
            p = self.proc
            if p is None or p.poll() is not None:
                return False
            self._expected = True
            _killpg(p, signal.SIGKILL)
            self.kills += 1
            return True

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM (flush, checkpoint, commit), then SIGKILL to the whole group after ``timeout``."""
        with self._lock:
            self._stopping.set()
            p = self.proc
        if p is not None and p.poll() is None:
            _killpg(p, signal.SIGTERM, group=False)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                _killpg(p, signal.SIGKILL)
                p.wait(10)
            self.final_rc = p.returncode
        if p is not None:
            _killpg(p, signal.SIGKILL)  # anything its children left
        self._thread.join(15)


def _killpg(p: subprocess.Popen, sig: int, group: bool = True) -> None:
    try:
        if group:
            os.killpg(p.pid, sig)
        else:
            p.send_signal(sig)
    except (ProcessLookupError, PermissionError):
        pass


def start_broker(port: int, log_path: Path, tries: int = 5) -> LocalBroker:
    """A Tansu broker on ``port`` (retried: the port can take a moment to be free after a stop)."""
    err = None
    for i in range(tries):
        b = LocalBroker(port=port, log_path=str(log_path))
        try:
            b.start()
            wait_for_broker(b.bootstrap, timeout=30)
            return b
        except Exception as e:  # noqa: BLE001 - retried, then raised
            err = e
            b.stop()
            time.sleep(1.0 + i)
    raise RuntimeError(f"could not start a broker on port {port}: {err}")


@dataclass
class DeadLetter:
    epoch: int
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    error: str
    kind: str
    truncated: bool


class DeadLetterCollector:
    """Reads the DLQ topic from its start in a background thread; :meth:`suspend` before a broker restart and
    :meth:`resume` after it (the new, empty topic is read from its start, tagged with the next epoch)."""

    def __init__(self, bootstrap: str, topic: str):
        self.bootstrap, self.topic = bootstrap, topic
        self.records: list[DeadLetter] = []
        self.errors = 0
        self.epoch = 0
        self._want: int | None = 0
        self._reading: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="dlq-collector", daemon=True)

    def start(self) -> "DeadLetterCollector":
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            epoch = self._want
            if epoch is None:
                self._stop.wait(0.1)
                continue
            try:
                self._read(epoch)
            except Exception:  # noqa: BLE001 - broker gone or topic missing: retry
                self.errors += 1
                self._reading = None
                self._stop.wait(0.5)

    def _read(self, epoch: int) -> None:
        from kafka import KafkaConsumer, TopicPartition

        c = KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                          auto_offset_reset="earliest", request_timeout_ms=6000,
                          fetch_max_bytes=8 * 1024 * 1024, max_partition_fetch_bytes=4 * 1024 * 1024)
        try:
            tp = TopicPartition(self.topic, 0)
            c.assign([tp])
            c.seek_to_beginning(tp)
            self._reading = epoch
            while not self._stop.is_set() and self._want == epoch:
                for recs in c.poll(timeout_ms=200).values():
                    self.records.extend(_dead_letter(epoch, r) for r in recs)
        finally:
            self._reading = None
            c.close()

    def suspend(self, timeout: float = 15.0) -> None:
        self._want = None
        deadline = time.monotonic() + timeout
        while self._reading is not None and time.monotonic() < deadline:
            time.sleep(0.05)

    def resume(self) -> int:
        self.epoch += 1
        self._want = self.epoch
        return self.epoch

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)


def _dead_letter(epoch: int, r) -> DeadLetter:
    h = {k: (v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)) for k, v in (r.headers or [])}
    num = lambda k: int(h[k]) if h.get(k, "").lstrip("-").isdigit() else -1  # noqa: E731
    return DeadLetter(epoch, num("source.partition"), num("source.offset"), r.key, r.value, h.get("error", ""),
                      h.get("error.kind", ""), h.get("truncated") == "1")
