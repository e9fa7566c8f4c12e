"""One micro-batch of decoded events: which are new, and their scores with each partition's own state.

A tx_id a partition already scored is not scored again (an exact replay is skipped; the same id with other
content is a conflict, dead-lettered). The new events are scored with one model call for all partitions
(``score_poll``: the poll's result columns in one go; per-call costs dominate small batches) and returned as
the column dict the sinks buffer.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from fraud.errors import FraudError
from streaming.decode import Letter
from streaming.dedup import CONFLICT, NEW, REPLAY


def new_events(d, seen, on_replay) -> tuple[list[int], list[Letter]]:
    """Indices of the events of ``d`` (arrival order) not scored before, and the conflicts' dead letters.
    ``seen(partition)``: that partition's :class:`streaming.dedup.SeenIds`; the first of a poll's copies counts."""
    keep, letters, batch = [], [], {}
    for i, m in enumerate(d.msgs):
        k, c = d.key[i], d.content[i]
        got = batch.get(k)
        verdict = seen(m.partition).check(k, c) if got is None else (REPLAY if got == c else CONFLICT)
        if verdict == NEW:
            batch[k] = c
            keep.append(i)
        elif verdict == CONFLICT:
            letters.append(Letter(m, "conflict", f"tx_id {d.tx[i]!r} was already scored with other content "
                                                 f"(timestamp, ids, amount, label or attributes differ; a label sent "
                                                 f"later needs the header fraud-event: label)"))
        else:
            on_replay()
    return keep, letters


def remember(d, seen) -> None:
    """Add scored events (arrival order) to their partitions' memories of scored tx_ids."""
    by_part: dict[int, list[int]] = {}
    for i, m in enumerate(d.msgs):
        by_part.setdefault(m.partition, []).append(i)
    for p, idx in by_part.items():
        seen(p).add([d.key[i] for i in idx], [d.content[i] for i in idx], [d.ts[i] for i in idx])


def score(bundle, version: str, states: dict, rows: pd.DataFrame, part: np.ndarray, offs: np.ndarray,
          topic: str) -> tuple:
    """Score valid canonical ``rows`` (time order within each partition) read from partitions ``part`` at offsets ``offs``, each with
    its partition's state (``states[p]``). Returns (results, order, columns): results grouped by partition (time
    order within each) with the canonical columns plus kafka_partition, kafka_offset, score, is_alert, reasons,
    model_version; ``order`` maps result rows to ``rows`` (None: same order); ``columns`` the dict of arrays the
    results were built from (built in one go: pandas column inserts cost ~1 ms each)."""
    n, order = len(rows), None
    if n > 1 and (part[1:] < part[:-1]).any():  # not grouped by partition yet (streaming.decode.to_frame groups)
        order = np.argsort(part, kind="stable")
        rows, part, offs = rows.take(order), part[order], offs[order]
    idx = rows.index
    if not (isinstance(idx, pd.RangeIndex) and idx.start == 0 and idx.step == 1):  # to_frame's index already is
        rows = rows.reset_index(drop=True)
    cuts = np.flatnonzero(part[1:] != part[:-1]) + 1
    bounds = list(zip([0, *cuts.tolist()], [*cuts.tolist(), n]))
    out = bundle.score_poll(rows, bounds, [states[int(part[a])] for a, _ in bounds])
    got, score_, alert, reasons = (np.asarray(out[c]) for c in ("tx_id", "score", "is_alert", "reasons"))
    if not len(got) == len(score_) == len(alert) == len(reasons) == n:
        raise FraudError(f"model version {version}: score_poll() returned {len(score_)} scores for the {n} events "
                         f"of {topic} (partitions {sorted(set(part.tolist()))})")
    want = rows["tx_id"].to_numpy()
    if not np.array_equal(got, want) and not np.array_equal(got.astype(str), want.astype(str)):
        raise FraudError(f"model version {version}: score() returned tx_ids that do not match the events of {topic} "
                         f"(partitions {sorted(set(part.tolist()))})")
    cols = {c: s.array for c, s in rows.items()}
    cols["kafka_partition"] = part.astype(np.int32, copy=False)
    cols["kafka_offset"] = offs.astype(np.int64, copy=False)
    cols["score"] = score_
    cols["is_alert"] = alert.astype(bool)
    cols["reasons"] = reasons
    cols["model_version"] = _constant(version, n)
    return pd.DataFrame(cols, copy=False), order, cols


_CONSTANT: dict = {}


def _constant(text: str, n: int):
    """A string array of ``n`` times ``text`` (immutable: the last one is reused while version and size repeat)."""
    key = (text, n)
    if key not in _CONSTANT:
        _CONSTANT.clear()
        _CONSTANT[key] = pd.array([text] * n, dtype="str")
    return _CONSTANT[key]
