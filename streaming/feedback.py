"""Label feedback: fraud labels that arrive after their transaction was scored, applied to the live state.

A live transaction carries no label; it is known days later (an analyst's decision, a cardholder's dispute).
The featurizers count a fraud only once its transaction is older than the feedback delay, so without feedback
the live state never learns of any fraud and the card / terminal risk features stay at "none known", unlike in
training. A label event is the labelled transaction (the same JSON as the event, with ``label`` 0 or 1) on the
transactions topic, keyed by customer_id, with the Kafka header ``fraud-event: label``: it reaches the
partition whose state holds the transaction, in order, and is checkpointed with the same offsets. The scorer
applies it after scoring its poll (``ScoringBundle.add_labels``); it is not scored, archived or deduplicated
(applying a label twice changes nothing).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os

import numpy as np
import pandas as pd

from streaming.decode import UNKNOWN, Letter, decode, to_frame

log = logging.getLogger("streaming.feedback")

HEADER = "fraud-event"
LABEL_EVENT = b"label"
HEADERS = [(HEADER, LABEL_EVENT)]
COLUMNS = ("tx_id", "timestamp", "customer_id", "terminal_id", "amount", "label")
AGE_DAYS = 365.0 * 100  # a label event's timestamp is its transaction's: any age (the lead limit still holds)
MAX_KEPT = 5_000  # label events a partition keeps (the newest) for its checkpoints and a model swap


def is_label(msg) -> bool:
    """True when ``msg`` is a label event (its headers say so)."""
    return any(k == HEADER and v == LABEL_EVENT for k, v in (msg.headers or ()))


def split(msgs) -> tuple[list, list]:
    """(transaction messages, label messages) of a poll, each in arrival order."""
    if not any(m.headers for m in msgs):  # the common poll: no headers at all
        return msgs, []
    tx, labels = [], []
    for m in msgs:
        (labels if is_label(m) else tx).append(m)
    return tx, labels


def apply(bundle, parts: dict, msgs, rules, metrics=None) -> list[Letter]:
    """Apply the label events ``msgs`` to their partitions' states (``parts[p].state``). Returns the dead letters:
    events that are not valid labelled transactions, of a partition not held here, or that the model refused.
    ``metrics.labels`` counts the events applied and rejected. Nothing here raises: a failure dead-letters."""
    try:
        good, letters = decode(msgs, dataclasses.replace(rules, max_age_days=AGE_DAYS))  # labels come late
        keep = []
        for i, (m, lab) in enumerate(zip(good.msgs, good.label)):
            if lab == UNKNOWN:
                letters.append(Letter(m, "invalid", "label event without field 'label' (0 or 1)"))
            elif m.partition not in parts:
                letters.append(Letter(m, "label_error", f"partition {m.partition} is not held by this scorer"))
            else:
                keep.append(i)
        if keep:
            letters += _apply(bundle, parts, good.take(keep))
    except Exception as e:  # noqa: BLE001 - label events must never stop the scorer
        letters = [Letter(m, "label_error", f"{e.__class__.__name__}: {str(e)[:300]}") for m in msgs]
    if metrics is not None:
        metrics.labels.labels(result="applied").inc(len(msgs) - len(letters))
        metrics.labels.labels(result="rejected").inc(len(letters))
    return letters


def _apply(bundle, parts: dict, d) -> list[Letter]:
    """``bundle.add_labels`` per partition of the valid label events ``d``; a refused group is dead-lettered.
    What was applied is kept in its canonical form (``encode``'s: what :func:`reapply` reads back)."""
    rows, order = to_frame(d)
    part = np.fromiter((d.msgs[i].partition for i in order), dtype=np.int64, count=len(order))
    letters = []
    for p in np.unique(part).tolist():
        sel = np.flatnonzero(part == p)
        group = rows.iloc[sel].reset_index(drop=True)
        try:
            bundle.add_labels(parts[p].state, group)
            kept = encode(group)[0]
        except Exception as e:  # noqa: BLE001 - one bad label must not stop the scorer
            letters.extend(Letter(d.msgs[order[i]], "label_error", f"{e.__class__.__name__}: {str(e)[:300]}")
                           for i in sel)
            continue
        held = parts[p]
        held.labels.extend(kept)
        del held.labels[:-MAX_KEPT]  # the newest: what a restore or a model swap applies again
        held.labels_since_base += len(kept)
        if held.labels_since_base >= MAX_KEPT:  # older ones would fall out of the kept list: save a new base
            held.base = None
    return letters


def to_arrays(values: list) -> dict:
    """Label events (:func:`encode`'s values) as checkpoint arrays; none when there are none."""
    if not values:
        return {}
    return {"label_bytes": np.frombuffer(b"".join(values), dtype=np.uint8),
            "label_sizes": np.array([len(v) for v in values], dtype=np.int64)}


def from_arrays(arrays: dict) -> list:
    """Inverse of :func:`to_arrays`."""
    if "label_sizes" not in arrays:
        return []
    data, ends = bytes(arrays["label_bytes"]), np.cumsum(arrays["label_sizes"]).tolist()
    return [data[a:b] for a, b in zip([0, *ends[:-1]], ends)]


def reapply(bundle, state, values: list) -> object:
    """Apply label events a checkpoint carried (as :func:`encode` wrote them) to a restored or rebuilt ``state``;
    returns ``state``. Never raises: labels it cannot apply are named in the log and left out (the state is kept)."""
    if not values:
        return state
    try:
        recs = [json.loads(v) for v in values]
        rows = pd.DataFrame({c: [r[c] for r in recs] for c in COLUMNS})
        rows["timestamp"] = pd.DatetimeIndex(np.array([t[:-1] for t in rows["timestamp"]], "datetime64[ns]"),
                                             tz="UTC")
        rows = rows.astype({"amount": np.float64, "label": np.int8})
        bundle.add_labels(state, rows)
    except Exception as e:  # noqa: BLE001 - a restore goes on without them
        log.error("label events not applied to the restored state: %d of them, error=%r", len(values),
                  f"{e.__class__.__name__}: {e}")
    return state


def encode(df: pd.DataFrame) -> tuple[list[bytes], list[bytes]]:
    """Label events of canonical rows with a ``label`` column: (values, keys), keyed by customer_id."""
    ts = pd.DatetimeIndex(df["timestamp"]).tz_convert("UTC").tz_localize(None).to_numpy("datetime64[ns]")
    recs = zip(df["tx_id"].astype(str), np.datetime_as_string(ts, unit="ns"), df["customer_id"].astype(str),
               df["terminal_id"].astype(str), df["amount"].astype(float), df["label"].astype(int))
    # the time to the nanosecond: the state finds the transaction by its entities, time and tx_id's key
    values = [json.dumps({"tx_id": tx, "timestamp": t + "Z", "customer_id": c, "terminal_id": te, "amount": a,
                          "label": lab}).encode() for tx, t, c, te, a, lab in recs]
    return values, [str(k).encode() for k in df["customer_id"].to_numpy()]


def send(df: pd.DataFrame, bootstrap: str, topic: str, client_kw: dict | None = None) -> int:
    """Produce label events for ``df`` (canonical rows with ``label``) to ``topic``; returns how many."""
    from streaming.replay import make_producer

    values, keys = encode(df)
    prod = make_producer(bootstrap, client_kw, client_id="fraud-labels")
    try:
        sent = [prod.send(topic, key=k, value=v, headers=HEADERS) for k, v in zip(keys, values)]
        prod.flush()
        for f in sent:  # flush does not raise on a failed delivery: each record's future does
            f.get(timeout=30)
    finally:
        prod.close(timeout=10)
    return len(values)


def labelled_transactions(labels: pd.DataFrame, transactions: pd.DataFrame) -> tuple[pd.DataFrame, list]:
    """``labels`` (tx_id, label) joined to the transactions they name: (rows to send, tx_ids not found)."""
    from fraud.errors import ConfigError

    missing_cols = [c for c in ("tx_id", "label") if c not in labels.columns]
    if missing_cols:
        raise ConfigError(f"labels: missing column(s) {missing_cols}; columns present: {list(labels.columns)}")
    bad = ~labels["label"].isin([0, 1])
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise ConfigError(f"labels: row {i + 1} (tx_id {labels['tx_id'].iloc[i]!r}) has label "
                          f"{labels['label'].iloc[i]}; a label is 0 (genuine) or 1 (fraud)")
    tx = transactions.drop(columns=["label"], errors="ignore").drop_duplicates("tx_id", keep="last")
    lab = labels[["tx_id", "label"]].astype({"tx_id": str}).drop_duplicates("tx_id", keep="last")
    rows = lab.merge(tx.astype({"tx_id": str}), on="tx_id", how="inner")
    missing = sorted(set(lab["tx_id"]) - set(rows["tx_id"]))
    return rows.sort_values("timestamp", kind="stable").reset_index(drop=True), missing


def follow(store, bootstrap: str, topic: str, stop, interval: float = 30.0, since=None, position=None,
           client_kw: dict | None = None, passes: int | None = None) -> int:
    """Send the alert store's labels as analysts decide (``store.live_labels``) every ``interval`` seconds until
    ``stop`` is set (or after ``passes``): each pass sends the labels that are new or changed since the last one
    (an undone decision: label 0). ``position``: a JSON file of what was sent, read at start and rewritten after
    each send. A pass that fails (store locked, broker away) is logged and tried again. Returns labels sent."""
    sent_map = _read_position(position)
    total, n = 0, 0
    while passes is None or n < passes:
        if n and stop.wait(interval):
            break
        n += 1
        try:
            lab = store.live_labels(since)
            new = lab[[sent_map.get(t) != int(v) for t, v in zip(lab["tx_id"], lab["label"])]]
            if not len(new):
                continue
            rows, missing = labelled_transactions(new, store.read_alerts(tx_ids=new["tx_id"]))
            if missing:
                log.warning("labels for %d tx_id(s) not in the alert store's alerts (not sent), e.g. %s",
                            len(missing), missing[:5])
            k = send(rows, bootstrap, topic, client_kw) if len(rows) else 0
            sent_map.update(zip(new["tx_id"].astype(str), new["label"].astype(int)))  # the missing: warned once
            _write_position(position, sent_map)
            total += k
            log.info("labels sent=%d fraud=%d genuine=%d topic=%s", k, int(rows["label"].sum()),
                     int((rows["label"] == 0).sum()), topic)
        except Exception as e:  # noqa: BLE001 - a follower never stops on an error: the next pass tries again
            log.error("sending labels failed error=%r (next pass in %.0fs)", f"{e.__class__.__name__}: {e}", interval)
    return total


def _read_position(path) -> dict:
    if path is None:
        return {}
    try:
        with open(path) as f:
            return {str(k): int(v) for k, v in json.load(f).items()}
    except FileNotFoundError:
        return {}
    except Exception as e:  # noqa: BLE001 - an unreadable position only means sending again (harmless)
        log.error("position file %s unreadable (%s): every label is sent again", path, f"{e.__class__.__name__}: {e}")
        return {}


def _write_position(path, sent: dict) -> None:
    if path is None:
        return
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(sent, f)
    os.replace(tmp, path)
