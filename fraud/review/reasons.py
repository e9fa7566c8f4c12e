"""Reason codes in words: each code the detectors write becomes a sentence an analyst can act on.

The scorer writes codes such as ``feature:BH_T_KNOWN_FRAUD_28D high (3.00 vs p99 1.00)`` or
``detector:autoencoder 1.00`` (``fraud.detectors.reasons``). Here each code is parsed and worded
from the feature's meaning (its name) and the row's values. Embedding dimensions (``g_c3``, ``g_t7``,
``g_cos``, ``seq_emb_*``) are never shown alone: they fold into one "unusual pairing" sentence. A
reason with no signal (its value at the training median) is dropped. ``GLOSSARY`` lists every family.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

FEATURE = re.compile(r"^feature:(?P<name>\S+) (?P<dir>high|low) \((?P<value>\S+) vs (?P<ref>p1|p50|p99) "
                     r"(?P<q>\S+)\)$")
DETECTOR = re.compile(r"^detector:(?P<name>\S+) (?P<score>\S+)$")
# fraud.detectors.activity's alarm reason: a feature above its training quantile
ALARM = re.compile(r"^activity: (?P<name>\S+) = (?P<value>\S+) above its training \S+ quantile (?P<q>\S+)$")
GRAPH_EMBEDDING = re.compile(r"^g_(c|t)\d+$|^g_cos$")
SEQ_EMBEDDING = re.compile(r"^seq_emb_\d+$")
PAIRING = "unusual customer-terminal pairing in the transaction graph"
SEQUENCE = "unusual for this customer's history (sequence model)"


@dataclass(frozen=True)
class Reason:
    """One worded reason: ``kind`` is "feature", "pairing" (embeddings), "detector" or "other";
    ``strength`` 2 = beyond the training 1st/99th percentile, 1 = on the unusual side of the median,
    0 = no signal (not shown)."""
    code: str
    text: str
    kind: str
    strength: int
    family: str


def _num(s: str) -> float | None:
    try:
        return float(s)
    except (TypeError, ValueError):
        return None


def _n(v: float) -> str:
    """A count or figure as an analyst reads it: 3 (not 3.00), 4.3, 0.25."""
    if v is None:
        return "?"
    if abs(v - round(v)) < 1e-9:
        return f"{int(round(v))}"
    return f"{v:.1f}" if abs(v) >= 1 else f"{v:.2f}"


def _plural(days: str) -> str:
    return f"{days}-day"


def _pct(v: float) -> str:
    return f"{100 * v:.0f} %"


def _days(m) -> str:
    return m.group(1) if m else "recent"


# (pattern, family, sentence for high values, sentence for low values); {v}: the value, {q}: the
# reference (typical value or percentile), {w}: the window in days from the name
RULES: list[tuple[str, str, str, str]] = [
    (r"^(?:TX_AMOUNT|BH_AMOUNT)$", "amount", "amount {v} is unusually high (typical {q})",
     "amount {v} is unusually low (typical {q}): card testing?"),
    (r"^TX_DURING_NIGHT$", "night", "made at night (00:00-06:00 UTC)", "made in the daytime"),
    (r"^TX_DURING_WEEKEND$", "weekend", "made at the weekend", "made on a weekday"),
    (r"^CUSTOMER_ID_NB_TX_(\d+)DAY_WINDOW$", "card activity", "card used {v} times in {w} days (typical {q})",
     "card used only {v} times in {w} days (typical {q}): a dormant card?"),
    (r"^CUSTOMER_ID_AVG_AMOUNT_(\d+)DAY_WINDOW$", "card average amount",
     "card's average amount over {w} days is {v} (typical {q})", "card's average amount over {w} days is only {v}"),
    (r"^TERMINAL_ID_NB_TX_(\d+)DAY_WINDOW$", "terminal activity",
     "terminal had {v} transactions in {w} days (typical {q})", "terminal had only {v} transactions in {w} days"),
    (r"^TERMINAL_ID_RISK_(\d+)DAY_WINDOW$", "terminal fraud rate",
     "{p} of the terminal's transactions in {w} days were confirmed frauds", "terminal has a clean {w}-day record"),
    (r"^BH_C_NB_TX_(\d+)D$", "card activity", "card used {v} times in {w} days (typical {q})",
     "card used only {v} times in {w} days (typical {q})"),
    (r"^BH_C_AMT_RATIO_(?:LAG)?(\d+)D$", "amount vs card average",
     "amount {v}x this card's usual average", "amount {v}x this card's usual average (unusually small)"),
    (r"^BH_C_AMT_Z_(\d+)D$", "amount vs card average",
     "amount {v} standard deviations above this card's {w}-day average", "amount below this card's {w}-day average"),
    (r"^BH_C_RECENT_RATIO_(\d+)D$", "recent spending",
     "card's spending over the last {w} days is {v}x its longer-term average", "card's recent spending dropped"),
    (r"^BH_C_NB_UNUSUAL_(\d+)D$", "unusual amounts", "{v} unusually large amounts on this card in {w} days",
     "no unusually large amounts on this card"),
    (r"^BH_C_MAX_PRIOR_RATIO_(\d+)D$", "unusual amounts",
     "card already had an amount {v}x its usual in the last {w} days", "card's recent amounts were ordinary"),
    (r"^BH_C_KNOWN_FRAUD_(\d+)D$", "card fraud history", "card had {v} confirmed frauds in the last {w} days",
     "card has no confirmed fraud"),
    (r"^BH_C_DAYS_SINCE_FRAUD$", "card fraud history", "card's last confirmed fraud was long ago ({v} days)",
     "card's last confirmed fraud was {v} days ago"),
    (r"^BH_T_KNOWN_FRAUD_(\d+)D$", "terminal fraud history", "terminal had {v} confirmed frauds in the last {w} days",
     "terminal has no confirmed fraud in {w} days"),
    (r"^BH_T_DAYS_SINCE_FRAUD$", "terminal fraud history", "terminal's last confirmed fraud was {v} days ago",
     "terminal's last confirmed fraud was only {v} days ago"),
    (r"^BH_T_DAYS_SINCE_FIRST_FRAUD$", "terminal fraud history", "terminal's first confirmed fraud was {v} days ago",
     "terminal's first confirmed fraud was only {v} days ago: a fresh compromise?"),
    (r"^BH_T_FRAUD_SHARE_SINCE_FIRST$", "terminal fraud rate",
     "{p} of the terminal's transactions since its first confirmed fraud were fraud",
     "few frauds at the terminal since its first one"),
    (r"^BH_T_LAST_IS_FRAUD$", "terminal fraud history", "terminal's last known transaction was a confirmed fraud",
     "terminal's last known transaction was genuine"),
    (r"^BH_T_KNOWN_NORMAL_FRAUD_(\d+)D$", "terminal fraud history",
     "terminal had {v} confirmed frauds of ordinary-looking amounts in {w} days", "no ordinary-looking frauds here"),
    (r"^BH_T_FRAUD_STREAK$", "terminal fraud history", "the terminal's last {v} known transactions were all fraud",
     "no fraud streak at the terminal"),
    (r"^BH_T_GENUINE_AFTER_FRAUD$", "terminal fraud history",
     "{v} genuine transactions at the terminal since its last fraud",
     "only {v} genuine transactions at the terminal since its last fraud: it may still be compromised"),
    (r"^BH_T_KNOWN_PLAIN_FRAUD_(\d+)D$", "terminal fraud history",
     "terminal had {v} confirmed frauds in {w} days that neither amount nor card explains (compromise?)",
     "no unexplained frauds at the terminal"),
    (r"^BH_C_TX_EXCESS_(\d+)D$", "card activity",
     "card used more often in the last {w} days than its own usual rate ({v} standard deviations above)",
     "card used no more often than its own usual rate"),
    (r"^BH_C_NB_SMALL_(\d+)D$", "unusual amounts",
     "{v} unusually small amounts on this card in {w} days (card testing?)", "no unusually small amounts on this card"),
    (r"^BH_T_TX_EXCESS_(\d+)D$", "terminal activity",
     "terminal busier in the last {w} days than its own usual rate ({v} standard deviations above): compromise?",
     "terminal no busier than its own usual rate"),
    (r"^BH_T_CARDS_SURPRISE_(\d+)D$", "terminal activity",
     "more distinct cards at this terminal in the last {w} days than its own rate explains (surprise {v}): "
     "compromise?", "no more distinct cards at this terminal than its own rate explains"),
    (r"^g_pair_prior$", "first visit", "card used at this terminal {v} times before",
     "card used at this terminal only {v} times before (0 = first visit)"),
    (r"^g_pair_share$", "first visit", "this terminal is {p} of the card's recent use",
     "this terminal is only {p} of the card's recent use: a new place for this card"),
    (r"^g_c_ndist$", "many terminals", "card used at {v} different terminals recently (typical {q})",
     "card used at only {v} terminals recently"),
    (r"^g_t_ndist$", "many customers", "terminal served {v} different customers recently (typical {q})",
     "terminal served only {v} customers recently"),
    (r"^g_c_known$", "card fraud history", "card had {v} confirmed frauds recently", "card has no recent fraud"),
    (r"^g_t_known_cust$", "fraud near the terminal", "{v} of the terminal's recent customers had a confirmed fraud",
     "none of the terminal's recent customers had a fraud"),
    (r"^g_t_known_cust_share$", "fraud near the terminal",
     "{p} of the terminal's recent customers had a confirmed fraud", "the terminal's customers look clean"),
    (r"^g_c_nbr_risk$", "fraud near the card", "card visited {v} other terminals with a recent confirmed fraud",
     "card's other terminals look clean"),
    (r"^g_overlap$", "ring signal",
     "{v} customers shared between this terminal and another the card used (ring signal)",
     "few customers shared with the card's other terminals"),
    (r"^g_overlap_share$", "ring signal",
     "{p} of the terminal's recent customers also use another terminal this card used (ring signal)",
     "little customer overlap with the card's other terminals"),
    (r"^g_c_age_days$", "new account", "account is {v} days old", "new account: first seen {v} days ago"),
    (r"^g_t_new_cust$", "new accounts at the terminal", "{v} of the terminal's recent customers are new accounts",
     "no new accounts at the terminal"),
    (r"^g_t_new_cust_share$", "new accounts at the terminal",
     "{p} of the terminal's recent customers are new accounts (mule recruiting?)", "no new accounts at the terminal"),
    (r"^g_c_seen$", "unknown entity", "customer known from the transaction graph", "customer never seen before"),
    (r"^g_t_seen$", "unknown entity", "terminal known from the transaction graph", "terminal never seen before"),
    (r"^g_c_core$", "dense neighbourhood", "customer sits in a dense part of the graph (core {v})",
     "customer on the edge of the graph"),
    (r"^g_t_core$", "dense neighbourhood", "terminal sits in a dense part of the graph (core {v})",
     "terminal on the edge of the graph"),
    (r"^CL_NEW_PAIR$", "first visit", "card's first visit to this terminal (not among its recent places)",
     "card is a regular at this terminal"),
    (r"^CL_C_AGE_DAYS$", "new account", "account is {v} days old", "new account: first seen {v} days ago"),
    (r"^CL_T_NEW_AGED$", "ring signal",
     "{v} established cards came to this terminal for the first time in the last week (typical {q}): cards "
     "converging (ring signal)", "few established cards new to this terminal"),
    (r"^CL_T_UNRELATED_NEW$", "ring signal",
     "{v} established cards with no place in common with this card came to this terminal for the first time in "
     "the last week (ring signal)", "no unrelated newcomers at this terminal"),
    (r"^CL_T_NEW_RATIO$", "new customers at the terminal",
     "terminal drew {v}x its usual number of first-time customers this week (typical {q})",
     "terminal drew fewer first-time customers than usual"),
    (r"^CL_CONVERGE$", "ring signal",
     "an established card's first visit here, in step with {v} unrelated established cards (ring signal)",
     "no sign of cards converging on this terminal"),
    (r"^g_(c|t)_shift$", "changed behaviour",
     "the {e}'s place in the transaction graph moved far from where the model learned it ({v} graph spreads)",
     "the {e}'s place in the transaction graph is where the model learned it"),
    (r"^g_conv_dist$", "ring signal", "card unlike this terminal's usual customers (distance {v}, typical {q})",
     "card like this terminal's usual customers"),
    (r"^g_conv_rel$", "ring signal",
     "card {v}x further from this terminal's usual customers than they are from each other",
     "card close to this terminal's usual customers"),
    (r"^g_conv_far$", "ring signal",
     "{v} recent first visits here by cards unlike its usual customers: cards converging (ring signal)",
     "no unlike cards converging on this terminal"),
    (r"^g_conv_disp$", "new customers at the terminal",
     "this terminal's recent customers are unlike its past ones ({v}x its usual spread)",
     "this terminal's customers are like its past ones"),
    (r"^seq_nll_amount$", "sequence model", "amount unusual for this customer's history (sequence model)", ""),
    (r"^seq_nll_gap$", "sequence model", "timing unusual for this customer's history (sequence model)", ""),
    (r"^seq_nll_hour$", "sequence model", "hour of day unusual for this customer (sequence model)", ""),
    (r"^seq_nll_novel$", "sequence model", "a new terminal is unusual for this customer (sequence model)", ""),
    (r"^seq_nll_terminal$", "sequence model", "terminal unlike this customer's usual places (sequence model)", ""),
    (r"^seq_nll_total$", "sequence model", SEQUENCE, ""),
    (r"^seq_amount_z$", "sequence model", "amount {v} standard deviations above what this customer's history predicts",
     "amount {v} standard deviations below what this customer's history predicts"),
    (r"^seq_gap_z$", "sequence model", "long pause before this transaction for this customer",
     "transaction came unusually soon after the previous one"),
    (r"^seq_novel$", "first visit", "card never used at this terminal before", "card used at this terminal before"),
    (r"^seq_since_z$", "sequence model", "long time since this card last used this terminal",
     "card returned to this terminal unusually soon"),
    (r"^seq_n_distinct$", "many terminals", "card used {v} distinct terminals so far (typical {q})",
     "card used only {v} distinct terminals so far"),
    (r"^seq_term_dist$", "far terminal", "terminal far from the card's usual terminals (distance {v}, typical {q})",
     "terminal close to the card's usual terminals"),
]
_RULES = [(re.compile(p), fam, hi, lo) for p, fam, hi, lo in RULES]

DETECTORS = {
    "supervised": "resembles confirmed frauds the model learned from (supervised model {s})",
    "autoencoder": "unusual combination of this transaction's features (autoencoder {s})",
    "iforest": "easy to isolate from normal traffic (isolation forest {s})",
    "ecod": "extreme values in several features at once (ECOD {s})",
    "copod": "extreme values in several features at once (COPOD {s})",
    "hbos": "rare values for several features (histogram model {s})",
    "lof": "far from its nearest normal neighbours (LOF {s})",
}

# a cluster's grouped code has no value and no direction: "unusual <family>", or these where that reads badly
GROUPED = {
    "first visit": "cards at terminals new to them",
    "ring signal": "signs of a ring: cards converging on shared terminals",
    "sequence model": "unusual for the customers' own histories (sequence model)",
    "changed behaviour": "cards or terminals acting unlike when the model learned them",
    "new account": "unusual account ages",
    "new accounts at the terminal": "new accounts among the terminals' customers",
    "new customers at the terminal": "unusual numbers of first-time customers at the terminals",
    "many terminals": "cards used at unusually many or few terminals",
    "many customers": "terminals with unusually many or few customers",
    "far terminal": "unusual distance from the cards' usual terminals",
    "unknown entity": "cards or terminals new to the model",
    "dense neighbourhood": "unusual place in the transaction graph",
    "fraud near the terminal": "confirmed frauds among the terminals' customers",
    "fraud near the card": "confirmed frauds at the cards' other terminals",
    "unusual amounts": "runs of unusually large or small amounts on the cards",
    "night": "unusual time of day",
    "weekend": "unusual day of the week",
}

# hand-written codes (tests, older scorers) that carry no value
PLAIN = {
    "amount": "amount unusually high",
    "terminal_risk": "terminal has a recent record of confirmed frauds",
    "graph_density": "customers and terminals form a dense block (ring signal)",
    "shared_terminal": "terminals shared by several flagged customers (ring signal)",
}


# counts said as an analyst says them: "once", "1 day", "not used", "no transactions"
_PLAIN_COUNTS = [(r"\b1 days\b", "1 day"), (r"\b1 times\b", "once"), (r"\bused only 0 times\b", "not used"),
                 (r"\bhad only 0 (\w)", r"had no \1")]


def _word(name: str, high: bool, value: float | None, ref: float | None) -> tuple[str, str] | None:
    for rx, fam, hi, lo in _RULES:
        m = rx.match(name)
        if not m:
            continue
        text = hi if high else lo
        if not text:  # this direction carries no suspicion (e.g. a low surprise): no sentence
            return fam, ""
        w = next((g for g in m.groups() if g), None) if m.groups() else None
        e = {"c": "card", "t": "terminal"}.get(w, "")  # g_c_* / g_t_*: the group names the entity, not a window
        text = text.format(v=_n(value), q=_n(ref), p=_pct(value) if value is not None else "?", w=w or "recent", e=e)
        for pat, rep in _PLAIN_COUNTS:
            text = re.sub(pat, rep, text)
        return fam, text
    return None


def _feature(code: str, m) -> Reason:
    name, high = m.group("name"), m.group("dir") == "high"
    value, q = _num(m.group("value")), _num(m.group("q"))
    strength = 2 if m.group("ref") in ("p1", "p99") else (0 if value is None or value == q else 1)
    if GRAPH_EMBEDDING.match(name):
        return Reason(code, PAIRING, "pairing", strength, "graph embedding")
    if SEQ_EMBEDDING.match(name):
        return Reason(code, SEQUENCE, "pairing", strength, "sequence embedding")
    worded = _word(name, high, value, q if m.group("ref") != "p50" else q)
    if worded is not None and not worded[1]:
        return Reason(code, "", "feature", 0, worded[0])  # no signal: words() drops it
    if worded is None:
        text = f"{name} is {'high' if high else 'low'}: {_n(value)} (typical {_n(q)})"
        return Reason(code, text, "feature", strength, "other feature")
    return Reason(code, worded[1], "feature", strength, worded[0])


def explain(code: str) -> Reason:
    """One reason code as a Reason (never raises: an unknown code is shown as it is, kind "other")."""
    code = str(code)
    m = FEATURE.match(code)
    if m:
        return _feature(code, m)
    m = DETECTOR.match(code)
    if m:
        name, s = m.group("name"), _num(m.group("score"))
        tmpl = DETECTORS.get(name, "flagged by the " + name + " detector ({s})")
        return Reason(code, tmpl.format(s=f"{s:.2f}" if s is not None else "?"), "detector",
                      2 if (s or 0) >= 0.9 else 1, "detector")
    m = ALARM.match(code)
    worded = m and _word(m.group("name"), True, _num(m.group("value")), _num(m.group("q")))
    if worded:
        return Reason(code, worded[1], "feature", 2, worded[0])
    if GRAPH_EMBEDDING.match(code):
        return Reason(code, PAIRING, "pairing", 1, "graph embedding")
    if SEQ_EMBEDDING.match(code):
        return Reason(code, SEQUENCE, "pairing", 1, "sequence embedding")
    if code in PLAIN:
        return Reason(code, PLAIN[code], "other", 1, code)
    if code.startswith("feature:"):  # a cluster's grouped code (clusters.reason_code): the feature, no value
        r = explain(code[len("feature:"):])
        return Reason(code, r.text, r.kind, r.strength, r.family)
    if code.startswith("detector:"):  # grouped, no score: the detector's sentence without it
        name = code[len("detector:"):]
        tmpl = DETECTORS.get(name, "flagged by the " + name + " detector ({s})")
        text = tmpl.replace(" ({s})", "").replace(" {s})", ")")
        return Reason(code, text, "detector", 1, "detector")
    worded = _word(code, True, None, None)  # a bare feature name (e.g. the IForest bench): no value to quote,
    if worded is not None:  # and no direction (a cluster groups high and low): "unusual", not "unusually high"
        w = re.search(r"_(\d+)D(?:AY_WINDOW)?$", code)
        text = GROUPED.get(worded[0], f"unusual {worded[0]}")
        return Reason(code, text + (f" ({_plural(w.group(1))} window)" if w else ""),
                      "feature", 1, worded[0])
    return Reason(code, code.replace("_", " "), "other", 1, "other")


def words(codes, nearest_fraud_case: str | None = None, top: int = 3) -> list[Reason]:
    """The reasons of one alert as an analyst reads them, strongest first: no-signal reasons dropped,
    embedding dimensions folded into one pairing sentence (naming ``nearest_fraud_case`` when given),
    features before detectors, at most ``top`` (0: all)."""
    out: list[Reason] = []
    pairing: Reason | None = None
    seen: set[str] = set()
    for code in codes or []:
        r = explain(code)
        if r.strength == 0 or r.text in seen:
            continue
        if r.kind == "pairing":
            if pairing is None or r.strength > pairing.strength:
                pairing = r
            continue
        seen.add(r.text)
        out.append(r)
    if pairing is not None:
        text = pairing.text
        if nearest_fraud_case and pairing.family == "graph embedding":
            text += f", near confirmed-fraud case {nearest_fraud_case}"
        # folded, it never leads: it is shown after the reasons an analyst can check
        out.append(Reason(pairing.code, text, "pairing", pairing.strength, pairing.family))
    order = {"feature": 0, "other": 0, "detector": 1, "pairing": 2}
    out.sort(key=lambda r: (-r.strength, order[r.kind]))
    if out and out[0].kind == "pairing":   # a pairing leads only when nothing else stands out
        lead = [r for r in out if r.kind != "pairing"]
        out = lead + [r for r in out if r.kind == "pairing"] if lead else out
    return out[:top] if top else out


def grouped_words(counted, top: int = 3) -> list[tuple[str, int]]:
    """A cluster's grouped reason codes, ``(code, alerts)`` most frequent first, as ``(sentence, alerts)``: one
    sentence per feature family (one family twice says nothing new), at most ``top`` (0: all)."""
    out, keys = [], set()
    for code, n in counted or []:
        for w in words([code], top=1):
            key = w.family if w.kind == "feature" else w.text
            if key not in keys:
                keys.add(key)
                out.append((w.text, n))
    return out[:top] if top else out


def texts(codes) -> list[str]:
    """One alert's reasons in words (what :func:`words` says, as sentences)."""
    return [r.text for r in words(codes)]


def top_reason_is_opaque(codes) -> bool:
    """True when an alert's first shown reason is an embedding dimension alone or a no-signal reason
    (the figure the review bench reports; 0 alerts is the goal)."""
    shown = words(codes, top=1)
    if not shown:
        return False
    r = shown[0]
    return r.strength == 0 or bool(GRAPH_EMBEDDING.match(r.text) or SEQ_EMBEDDING.match(r.text))


def glossary() -> list[dict]:
    """Every reason family: the code pattern and the sentence (high / low) an analyst sees."""
    rows = [{"code": p.strip("^$"), "family": fam, "high": hi, "low": lo or "-"} for p, fam, hi, lo in RULES]
    rows.append({"code": "g_c0.., g_t0.., g_cos", "family": "graph embedding", "high": PAIRING
                 + " (never shown alone; names the nearest confirmed-fraud case when one shares an entity)",
                 "low": "-"})
    rows.append({"code": "seq_emb_0..", "family": "sequence embedding", "high": SEQUENCE, "low": "-"})
    rows += [{"code": f"detector:{k}", "family": "detector", "high": v.replace("{s}", "score"), "low": "-"}
             for k, v in DETECTORS.items()]
    rows += [{"code": k, "family": "hand-written", "high": v, "low": "-"} for k, v in PLAIN.items()]
    rows.append({"code": "any, value at the median", "family": "no signal", "high": "not shown", "low": "-"})
    return rows
