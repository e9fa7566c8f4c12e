"""The analyst's work queue: cases ordered by risk / sqrt(alerts), filtered, searched, paged, exported, with strength.

Strength: an alert's score as a percentile among the day's scored events (the archive's ``score``
column when the context carries it, else among the day's alerts, and the page says which) and a
band: critical = the day's top 0.1 % of scored events (top 10 % of alerts), high = top 0.5 % (top
50 %), medium = the rest. A case's budget share: its alerts per day it spans / the daily alert budget.
"""
from __future__ import annotations

import csv
import io
import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from fraud.errors import ConfigError
from fraud.review.cases import OUTCOME_WORDS, STATUS_WORDS, CaseBook
from fraud.review.reasons import words

BANDS = {"events": ((99.9, "critical"), (99.5, "high")), "alerts": ((90.0, "critical"), (50.0, "high"))}
STATUS_FILTERS = ("open", "in_progress", "closed", "merged", "active", "all")   # active = open + in progress
PER_PAGE = 25


def strength(alerts: pd.DataFrame, context: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per alert (``tx_id``): ``pct`` (its score's percentile among the day's scored events, or among the day's
    alerts without scored context), ``band`` and ``basis`` ("events" or "alerts")."""
    if len(alerts) == 0:
        return pd.DataFrame({"tx_id": [], "pct": [], "band": [], "basis": []})
    day = pd.to_datetime(alerts["timestamp"], utc=True).dt.floor("D")
    scored = context is not None and "score" in context.columns and context["score"].notna().any()
    basis = "events" if scored else "alerts"
    ref = context[["timestamp", "score"]].dropna() if scored else alerts[["timestamp", "score"]]
    ref_day = pd.to_datetime(ref["timestamp"], utc=True).dt.floor("D")
    by_day = {d: np.sort(g.to_numpy(dtype=float)) for d, g in ref["score"].groupby(ref_day)}
    pct = []
    for d, s in zip(day, alerts["score"].to_numpy(dtype=float)):
        arr = by_day.get(d)
        pct.append(100.0 * np.searchsorted(arr, s, side="right") / len(arr) if arr is not None and len(arr) else 100.0)
    return pd.DataFrame({"tx_id": alerts["tx_id"].astype(str).to_numpy(), "pct": pct,
                         "band": [band(p, basis) for p in pct], "basis": basis})


def band(pct: float, basis: str = "events") -> str:
    for cut, name in BANDS[basis]:
        if pct >= cut:
            return name
    return "medium"


def budget_share(n_alerts: int, first, last, budget: int) -> float:
    """The case's alerts per day it spans, as a share of the daily alert budget."""
    days = max(1, (pd.Timestamp(last).floor("D") - pd.Timestamp(first).floor("D")).days + 1)
    return n_alerts / days / max(int(budget), 1)


@dataclass
class Filters:
    status: str = "active"
    assignee: str = ""
    since: str = ""
    until: str = ""
    min_risk: float = 0.0
    ring: bool = False
    q: str = ""
    page: int = 1
    per_page: int = PER_PAGE
    errors: list = field(default_factory=list)

    @classmethod
    def parse(cls, params) -> "Filters":
        """From query parameters (a mapping of strings); bad values are reported in ``errors`` and ignored."""
        f = cls()
        get = lambda k: str(params.get(k, "") or "").strip()  # noqa: E731
        f.status = get("status") or "active"
        if f.status not in STATUS_FILTERS:
            f.errors.append(f"status {f.status!r} is not one of {', '.join(STATUS_FILTERS)}")
            f.status = "active"
        f.assignee, f.q = get("assignee"), get("q")
        for k in ("since", "until"):
            v = get(k)
            if v:
                try:
                    pd.Timestamp(v)
                    setattr(f, k, v)
                except (ValueError, TypeError):
                    f.errors.append(f"{k} {v!r} is not a date (use YYYY-MM-DD)")
        for k, conv in (("min_risk", float), ("page", int), ("per_page", int)):
            v = get(k)
            if v:
                try:
                    setattr(f, k, conv(v))
                except ValueError:
                    f.errors.append(f"{k.replace('_', ' ')} {v!r} is not a number")
        f.page, f.per_page = max(1, f.page), min(max(1, f.per_page), 500)
        f.ring = get("ring") in ("1", "on", "true", "yes")
        return f

    def query(self, **over) -> str:
        from urllib.parse import urlencode

        d = {"status": self.status, "assignee": self.assignee, "since": self.since, "until": self.until,
             "min_risk": self.min_risk or "", "ring": "1" if self.ring else "", "q": self.q, "page": self.page}
        d.update(over)
        return urlencode({k: v for k, v in d.items() if v not in ("", None) and not (k == "page" and v == 1)})


@dataclass
class Row:
    case_id: str
    status: str
    outcome: str | None
    assignee: str | None
    risk: float
    n_tx: int
    customers: list
    terminals: list
    amount: float
    first_seen: str
    last_seen: str
    ring: bool
    band: str
    budget_share: float
    reason: str
    created_at: str
    updated_at: str
    linked_to: str | None
    link_kind: str | None
    related: list = field(default_factory=list)   # live or closed cases the current clustering joins with it
    group_priority: float | None = None           # the group's place in the queue (``_grouped``), else its own
    lead: str | None = None                       # the first case of its group when it is listed under it

    @property
    def priority(self) -> float:
        """The queue's order: risk / sqrt(alerts). Total risk grows with a case's size (a large case of weak
        alerts outranks a small ring); risk per alert puts a single strong alert above a ring; the square
        root sits between them."""
        return self.risk / math.sqrt(max(self.n_tx, 1))

    @property
    def status_words(self) -> str:
        s = STATUS_WORDS.get(self.status, self.status)
        return f"{s} ({OUTCOME_WORDS[self.outcome]})" if self.status == "closed" and self.outcome else s


BAND_ORDER = {"critical": 0, "high": 1, "medium": 2}


def rows(book: CaseBook, result, strength_df: pd.DataFrame, budget: int,
         first_reasons: pd.Series | None = None) -> list[Row]:
    """Every case as a queue row, highest priority (risk / sqrt(alerts)) first (cases with no current cluster: risk 0).
    Cases the current clustering joins in one cluster (related cases) are listed together, in the place of that
    cluster's priority, each with its own risk: the group an analyst works through together. ``first_reasons``:
    :func:`first_reasons` of ``result``'s alerts, when the caller keeps it (the app computes it once per grouping)."""
    frame = book.frame()
    members = book.members()
    held = _held_alerts(members, result.alerts, strength_df, first_reasons)
    risks = case_risks(result, held)
    who = members.groupby("case_id", sort=False).agg(n=("tx_id", "size"), customers=("customer_id", _sorted_set),
                                                     terminals=("terminal_id", _sorted_set))
    per = held.assign(_band=held["band"].map(BAND_ORDER)).groupby("case_id", sort=False).agg(
        n=("tx_id", "size"), first=("timestamp", "min"), last=("timestamp", "max"), amount=("amount", "sum"),
        band=("_band", "min"), reason=("first_reason", _most_frequent))
    band_of = {v: k for k, v in BAND_ORDER.items()}
    out = []
    for r in frame.to_dict("records"):
        cid = r["case_id"]
        w = who.loc[cid] if cid in who.index else None
        p = per.loc[cid] if cid in per.index else None
        first = str(p["first"])[:16] if p is not None else ""
        last = str(p["last"])[:16] if p is not None else ""
        risk, ring = risks.get(cid, (0.0, False))
        out.append(Row(case_id=cid, status=r["status"], outcome=r["outcome"], assignee=r["assignee"],
                       risk=risk, n_tx=int(w["n"]) if w is not None else 0,
                       customers=w["customers"] if w is not None else [],
                       terminals=w["terminals"] if w is not None else [],
                       amount=float(p["amount"]) if p is not None else 0.0, first_seen=first, last_seen=last,
                       ring=ring, band=band_of.get(p["band"], "medium") if p is not None else "medium",
                       budget_share=budget_share(int(p["n"]), first, last, budget) if p is not None else 0.0,
                       reason=p["reason"] if p is not None else "",
                       created_at=str(r["created_at"])[:16], updated_at=str(r["updated_at"])[:16],
                       linked_to=r["linked_to"], link_kind=r["link_kind"]))
    return _grouped(out, frame, result)


def first_reasons(alerts: pd.DataFrame) -> pd.Series:
    """Per alert (index ``tx_id``): its first reason in words ("" when none stands out)."""
    texts = [w[0].text if w else "" for w in (words(r, top=1) for r in alerts["reasons"])]
    return pd.Series(texts, index=alerts["tx_id"].to_numpy(), dtype=object)


def _held_alerts(members: pd.DataFrame, alerts: pd.DataFrame, strength_df: pd.DataFrame,
                 reasons: pd.Series | None) -> pd.DataFrame:
    """The alerts of ``alerts`` each case holds, in the case's member order, with ``case_id``, ``band`` (None
    where strength has none) and ``first_reason``."""
    held = members[["tx_id", "case_id"]].merge(alerts, on="tx_id", how="inner", sort=False)
    band = strength_df.set_index("tx_id")["band"] if len(strength_df) else pd.Series(dtype=object)
    held["band"] = held["tx_id"].map(band).astype(object).where(held["tx_id"].isin(band.index), None)
    reasons = first_reasons(held) if reasons is None else reasons
    held["first_reason"] = held["tx_id"].map(reasons).fillna("")
    return held


def _sorted_set(values: pd.Series) -> list:
    return sorted(set(values))


def _most_frequent(texts: pd.Series) -> str:
    """The most frequent non-empty text (ties: the first seen)."""
    counts = Counter(t for t in texts if t)
    return counts.most_common(1)[0][0] if counts else ""


def _grouped(out: list, frame: pd.DataFrame, result) -> list:
    """Rows ordered by priority, where the cases sharing a cluster (``cluster_id``) form one group placed at
    that cluster's priority (risk / sqrt(alerts) of the whole cluster) or its best case's own priority when
    higher (grouping never sinks a case), its cases by their own priority."""
    clusters = {c.id: c for c in result.clusters}
    of = dict(zip(frame["case_id"], frame["cluster_id"]))
    groups: dict = {}
    for r in out:
        if of.get(r.case_id) in clusters:
            groups.setdefault(of[r.case_id], []).append(r)
    for cid, rs in groups.items():
        if len(rs) < 2:
            continue
        cl = clusters[cid]
        place = max([cl.risk / math.sqrt(max(cl.n_tx, 1))] + [r.priority for r in rs])
        for r in rs:
            r.group_priority = place
            r.related = sorted(x.case_id for x in rs if x is not r)
    key = {r.case_id: (r.group_priority if r.group_priority is not None else r.priority, of.get(r.case_id) or "")
           for r in out}
    out.sort(key=lambda x: (-key[x.case_id][0], key[x.case_id][1], -x.priority, -x.risk, x.case_id))
    for prev, r in zip(out, out[1:]):
        if r.group_priority is not None and of.get(r.case_id) == of.get(prev.case_id):
            r.lead = prev.lead or prev.case_id
    return out


def entries(items: list[Row]) -> list[list[Row]]:
    """The queue's entries: a case with the related cases listed under it (rows with its id as ``lead``);
    a related case whose lead is filtered out heads its own entry."""
    out: list = []
    for r in items:
        if r.lead is not None and out and (out[-1][0].lead or out[-1][0].case_id) == r.lead:
            out[-1].append(r)
        else:
            out.append([r])
    return out


def case_risks(result, held: pd.DataFrame) -> dict:
    """Case id -> (risk, ring signal) of the alerts it holds in ``result`` (``held``: one row per held alert,
    with ``case_id``, in the case's member order). A case holding exactly one cluster's alerts takes that
    cluster's figures; a case holding part of a cluster, or parts of several (cases own their alerts, the
    clustering regroups them), gets the clustering's formula over its own alerts: score percentiles among all
    clustered alerts, its shared terminals that surge in the context."""
    from fraud.review.clusters import colluding_customers, collusion_risk, risk_of

    by_tx = {tuple(sorted(c.tx_ids)): c for c in result.clusters}
    pct = pd.Series(result.alerts["score"].rank(method="average", pct=True).to_numpy(), index=result.alerts["tx_id"])
    held = held.assign(_pct=held["tx_id"].map(pct).to_numpy())
    surging = set().union(*[set(c.surging_terminals) for c in result.clusters])
    formula = getattr(result, "meta", {}).get("risk", "collusion")
    out = {}
    for case_id, part in held.groupby("case_id", sort=False):
        cl = by_tx.get(tuple(sorted(part["tx_id"])))
        if cl is not None:
            out[case_id] = (float(cl.risk), bool(cl.surging_terminals or cl.colluding_customers))
            continue
        per_t = part.groupby("terminal_id")["customer_id"].nunique()
        n_surging = len(set(per_t.index[per_t >= 2]) & surging)
        coll = colluding_customers(part["customer_id"], part["terminal_id"])
        risk = collusion_risk(part["customer_id"], part["terminal_id"], part["_pct"], part["amount"], None, n_surging,
                              len(coll)) \
            if formula == "collusion" else risk_of(part["score"], part["amount"], part["customer_id"].nunique())
        out[case_id] = (round(float(risk), 6), bool(coll or n_surging))
    return out


def select(all_rows: list[Row], f: Filters, book: CaseBook | None = None) -> list[Row]:
    """The rows passing the filters (search by customer, terminal, tx_id or case id)."""
    keep = []
    hits = _search(book, f.q) if f.q else None
    for r in all_rows:
        if f.status == "active" and r.status not in ("open", "in_progress"):
            continue
        if f.status not in ("active", "all") and r.status != f.status:
            continue
        if f.assignee and (r.assignee or "") != f.assignee and not (f.assignee == "-" and not r.assignee):
            continue
        if f.since and r.last_seen and r.last_seen < str(pd.Timestamp(f.since))[:16]:
            continue
        if f.until and r.first_seen and r.first_seen >= str(pd.Timestamp(f.until))[:16]:
            continue
        if r.risk < f.min_risk or (f.ring and not r.ring):
            continue
        if hits is not None and r.case_id not in hits:
            continue
        keep.append(r)
    return keep


def _search(book: CaseBook, q: str) -> set:
    q = q.strip()
    m = book.members()
    if not len(m):
        return {q}
    hit = (m["customer_id"] == q) | (m["terminal_id"] == q) | (m["tx_id"] == q) | (m["case_id"] == q.upper())
    return set(m.loc[hit, "case_id"]) | ({q.upper()} if q.upper().startswith("CASE-") else set())


def page(items: list, f: Filters) -> tuple[list, int]:
    """(the rows of page ``f.page``, number of pages); a page holds ``f.per_page`` entries (``entries``: a
    case with its related cases), so related cases are never cut apart."""
    groups = entries(items)
    pages = max(1, math.ceil(len(groups) / f.per_page))
    if f.page > pages:
        f.page = pages
    lo = (f.page - 1) * f.per_page
    return [r for g in groups[lo:lo + f.per_page] for r in g], pages


QUEUE_COLUMNS = ["case_id", "status", "outcome", "assignee", "risk", "band", "budget_share", "n_tx", "amount",
                 "customers", "terminals", "ring_signal", "first_seen", "last_seen", "top_reason", "created_at",
                 "updated_at", "linked_to", "link_kind", "related"]


def queue_csv(items: list[Row]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(QUEUE_COLUMNS)
    for r in items:
        w.writerow([r.case_id, r.status, r.outcome or "", r.assignee or "", f"{r.risk:.2f}", r.band,
                    f"{r.budget_share:.4f}", r.n_tx, f"{r.amount:.2f}", " ".join(r.customers), " ".join(r.terminals),
                    int(r.ring), r.first_seen, r.last_seen, r.reason, r.created_at, r.updated_at, r.linked_to or "",
                    r.link_kind or "", " ".join(r.related)])
    return buf.getvalue()


TX_COLUMNS = ["tx_id", "timestamp", "customer_id", "terminal_id", "amount", "score", "percentile", "band",
              "label", "labelled_by", "reasons"]


def transactions(book: CaseBook, case_id: str, result, strength_df: pd.DataFrame,
                 nearest: str | None = None) -> list[dict]:
    """A case's alerts with strength, worded reasons and the standing label."""
    tx = book.members(case_id)["tx_id"].tolist()
    a = result.alerts[result.alerts["tx_id"].isin(tx)].sort_values(["timestamp", "tx_id"])
    st = strength_df.set_index("tx_id") if len(strength_df) else None
    labels = book.store.labels().set_index("tx_id")
    out = []
    for r in a.to_dict("records"):
        t = r["tx_id"]
        lab = labels.loc[t] if t in labels.index else None
        out.append({"tx_id": t, "time": pd.Timestamp(r["timestamp"]).strftime("%Y-%m-%d %H:%M"),
                    "customer_id": r["customer_id"], "terminal_id": r["terminal_id"], "amount": float(r["amount"]),
                    "score": float(r["score"]),
                    "pct": float(st.loc[t, "pct"]) if st is not None and t in st.index else None,
                    "band": st.loc[t, "band"] if st is not None and t in st.index else "medium",
                    "label": None if lab is None else ("fraud" if int(lab["label"]) == 1 else "not fraud"),
                    "labelled_by": None if lab is None else lab["analyst"],
                    "reasons": [w.text for w in words(r.get("reasons") or [], nearest)]})
    return out


def transactions_csv(txs: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(TX_COLUMNS)
    for t in txs:
        w.writerow([t["tx_id"], t["time"], t["customer_id"], t["terminal_id"], f"{t['amount']:.2f}",
                    f"{t['score']:.4f}", "" if t["pct"] is None else f"{t['pct']:.2f}", t["band"], t["label"] or "",
                    t["labelled_by"] or "", "; ".join(t["reasons"])])
    return buf.getvalue()


def exposed(context: pd.DataFrame | None, alerts: pd.DataFrame, txs: list[dict], case_cards: set,
            limit: int = 100) -> dict | None:
    """The cards exposed at the terminals of the case's confirmed frauds (``txs``: :func:`transactions`;
    ``fraud.review.exposure``) in the ``context``, outside the case: None without context, else ``{"rows": the
    first ``limit``, "total": how many}`` (no rows before a fraud is confirmed). ``alerted``: the card has alerts."""
    from fraud.review.exposure import exposed_cards

    if context is None:
        return None
    frauds = [t["tx_id"] for t in txs if t["label"] == "fraud"]
    if not frauds:
        return {"rows": [], "total": 0}
    ex = exposed_cards(context, alerts[alerts["tx_id"].isin(frauds)], exclude=case_cards)
    alerted = set(alerts["customer_id"].astype(str))
    rows = [{"customer_id": r["customer_id"], "terminal_id": r["terminal_id"], "visits": int(r["visits"]),
             "first_seen": pd.Timestamp(r["first_seen"]).strftime("%Y-%m-%d %H:%M"),
             "confirmed": int(r["confirmed_nearby"]), "terminals": int(r["exposed_terminals"]),
             "alerted": r["customer_id"] in alerted,
             "score": None if pd.isna(r["top_score"]) else float(r["top_score"])}
            for r in ex.head(limit).to_dict("records")]
    return {"rows": rows, "total": len(ex)}


def nearest_fraud_case(book: CaseBook, customers, terminals, exclude: str | None = None) -> str | None:
    """A case closed as fraud sharing a customer or terminal (the lowest id), or None."""
    ids = set()
    customers, terminals = list(customers)[:50], list(terminals)[:50]
    for c in customers:
        ids |= set(book.cases_of(customer_id=c))
    for t in terminals:
        ids |= set(book.cases_of(terminal_id=t))
    ids.discard(exclude)
    if not ids:
        return None
    f = book.frame()
    fraud = f[(f["case_id"].isin(ids)) & (f["outcome"] == "fraud")]["case_id"]
    return sorted(fraud)[0] if len(fraud) else None


def check_budget(budget) -> int:
    if int(budget) < 1:
        raise ConfigError(f"alert budget {budget!r}: must be >= 1 alert a day")
    return int(budget)
