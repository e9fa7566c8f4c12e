"""fraud review clusters|show|serve|report|add-analyst|remove-analyst|hash-password, and fraud bench review."""
from __future__ import annotations

import json
from dataclasses import dataclass

import click

from fraud.commands.common import log_format_option, setup_logging


def _alerts_db_option(f):
    return click.option("--alerts-db", "alerts_db", default=None, metavar="URL",
                        help="Alert store URL (default: FRAUD_ALERTS_DB or sqlite:///alerts.db).")(f)


def _window_options(f):
    f = click.option("--until", default=None, metavar="DATE", help="Only alerts before this time (exclusive).")(f)
    f = click.option("--since", default=None, metavar="DATE", help="Only alerts at or after this time.")(f)
    return f


def _context_options(f):
    f = click.option("--context", "context_path", default=None, type=click.Path(dir_okay=False, exists=True),
                     help="Transactions file (CSV/Parquet, e.g. `fraud score` output) used as context to link alerts.")(f)
    f = click.option("--archive", "archive", default=None, type=click.Path(file_okay=False, exists=True),
                     help="The stream scorer's archive folder (date=*/...parquet): context to link alerts.")(f)
    return f


def _cluster(ctx, alerts_db, since, until, embedder="deepwalk", seed=0, refine="hdbscan", risk="collusion",
             context=None):
    """The alert store and the clusters of its alerts; ``context``: the context frame (``read_context`` of
    --archive / --context), or None."""
    from fraud.review.clusters import cluster_alerts
    from fraud.store import AlertStore

    url = alerts_db or ctx.obj.alerts_db
    store = AlertStore(url, must_exist=True)
    alerts = store.read_alerts()
    return store, cluster_alerts(alerts, since=since, until=until, embedder=embedder, seed=seed, refine=refine,
                                 risk=risk, context=context)


def _cluster_table(clusters) -> str:
    """Plain fixed-width lines (readable piped and at 100 columns): one line of figures per cluster and an
    indented line of its top reasons in words."""
    import textwrap

    from fraud.review.reasons import grouped_words

    head = f"{'#':>3} {'cluster':<13} {'risk':>8} {'alerts':>6} {'amount':>10} {'cust':>4} {'term':>4} " \
           f"{'max':>5}  {'first':<16} {'last':<16}"
    lines = [head, "-" * len(head)]
    for c in clusters:
        lines.append(f"{c.rank:>3} {c.id:<13} {c.risk:>8.1f} {c.n_tx:>6} {c.amount_at_risk:>10.2f} "
                     f"{len(c.customers):>4} {len(c.terminals):>4} {c.score_max:>5.3f}  {c.first_seen[:16]:<16} "
                     f"{c.last_seen[:16]:<16}")
        said = [text for text, _ in grouped_words(c.reasons, top=2)]
        mix = " ".join(f"{k}:{v}" for k, v in (c.scenario_mix or {}).items())
        why = f"why: {'; '.join(said) or '-'}" + (f"  [scenarios {mix}]" if mix else "")
        lines += textwrap.wrap(why, width=96, initial_indent="    ", subsequent_indent="      ")
    return "\n".join(lines)


@dataclass
class _Cases:
    book: object           # the CaseBook synced with the current clusters
    result: object         # the clustering result
    strength: object       # per alert: percentile and band (a DataFrame)
    rows: list             # the queue rows
    context: object        # the context frame, or None without --archive / --context


def _cases(ctx, alerts_db, since, until, archive, context_path) -> _Cases:
    """The case book synced with the current clusters, the result, strength, queue rows and the context (read once)."""
    from fraud.review.cases import CaseBook
    from fraud.review.clusters import read_context
    from fraud.review.queue import rows, strength

    context = read_context(archive, context_path)
    store, res = _cluster(ctx, alerts_db, since, until, context=context)
    book = CaseBook(store)
    book.sync(res)
    st = strength(res.alerts, context)
    return _Cases(book, res, st, rows(book, res, st, ctx.obj.alert_budget_per_day), context)


def _log_access(path: str | None, fmt: str = "text") -> None:
    """Send the review app's access log (logger ``fraud.review.access``) to ``path`` or stderr (JSON lines with
    ``fmt="json"``)."""
    import logging

    from fraud.commands.common import JsonLogFormatter

    log = logging.getLogger("fraud.review.access")
    handler = logging.FileHandler(path) if path else logging.StreamHandler()
    handler.setFormatter(JsonLogFormatter() if fmt == "json" else logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def register(main: click.Group, bench: click.Group) -> None:
    @main.group()
    def review() -> None:
        """Analyst review of flagged clusters (cluster, show, serve the web app, static report)."""

    @review.command("clusters")
    @_alerts_db_option
    @_window_options
    @click.option("--json", "as_json", is_flag=True, help='Print {"clusters": [...]} (highest risk first).')
    @click.option("--top", default=20, show_default=True, help="Clusters to list in the table (JSON lists all).")
    @click.option("--embedder", default="deepwalk", type=click.Choice(["deepwalk", "node2vec"]), show_default=True,
                  help="Entity embedding (the map; and the split with --refine hdbscan; node2vec = models.node2vec).")
    @click.option("--refine", default="hdbscan", type=click.Choice(["louvain", "hdbscan"]), show_default=True,
                  help="How large flagged components are split: Louvain communities or HDBSCAN over the embedding.")
    @click.option("--risk", default="collusion", type=click.Choice(["collusion", "score"]), show_default=True,
                  help="Ranking formula (score = sum of raw scores; see fraud.review.clusters).")
    @_context_options
    @click.pass_context
    def clusters_cmd(ctx, alerts_db, since, until, as_json, top, embedder, refine, risk, archive, context_path):
        """Cluster the flagged transactions and rank the clusters by risk.

        With --archive/--context, the alerted customers' other transactions link alert groups
        (co-visited terminals with a surge of distinct customers) and count colluding customers."""
        from fraud.review.clusters import read_context

        _, res = _cluster(ctx, alerts_db, since, until, embedder, refine=refine, risk=risk,
                          context=read_context(archive, context_path))
        if as_json:
            click.echo(json.dumps(res.to_json_dict(), default=str))
            return
        m = res.meta
        click.echo(f"{m['n_clusters']} clusters from {m['n_alerts']} alerts ({m['n_components']} components, "
                   f"{m['n_refined_components']} split by {m['refine']}"
                   + (f"; {m['context_links']} context links" if m.get("context") else "") + ")")
        import textwrap

        click.echo(_cluster_table(res.clusters[:top]))
        click.echo(textwrap.fill(f"risk = {m['risk_formula']}", width=100, subsequent_indent="    "))

    @review.command("show")
    @click.argument("cluster_id")
    @_alerts_db_option
    @_window_options
    @click.option("--json", "as_json", is_flag=True, help="Print the cluster and its transactions as JSON.")
    @_context_options
    @click.pass_context
    def show_cmd(ctx, cluster_id, alerts_db, since, until, as_json, archive, context_path):
        """One cluster: summary, transactions and decisions so far (pass the same --since/--until and
        --archive/--context as to `fraud review clusters`: they change the clusters and so their ids)."""
        from fraud.errors import ConfigError
        from fraud.review.reasons import grouped_words
        from fraud.review.clusters import read_context
        from fraud.review.reasons import texts as reason_texts

        store, res = _cluster(ctx, alerts_db, since, until, context=read_context(archive, context_path))
        c = res.get(cluster_id)
        if c is None:
            url = alerts_db or ctx.obj.alerts_db
            given = [f"--{k} {v}" for k, v in (("since", since), ("until", until), ("archive", archive),
                                                 ("context", context_path)) if v is not None]
            raise ConfigError(f"cluster {cluster_id!r} (the CLUSTER_ID argument) is not among the "
                              f"{len(res.clusters)} clusters of {url} with "
                              f"{' '.join(given) or 'no --since/--until/--archive/--context'}: ids depend on "
                              f"--since, --until, --archive and --context (give `show` the ones given to "
                              f"`clusters`) and change when new alerts join a cluster; list them with "
                              f"`fraud review clusters --alerts-db {url}{''.join(' ' + g for g in given)}`")
        a = res.alerts[res.alerts["cluster_id"] == c.id]
        d = store.read_decisions()
        if len(d):
            d = d[(d["cluster_id"] == c.id) | d["tx_id"].isin(c.tx_ids)]
        if as_json:
            out = c.to_dict()
            out["transactions"] = json.loads(a.drop(columns=["cluster_id"]).to_json(orient="records", date_format="iso"))
            out["decisions"] = json.loads(d.to_json(orient="records", date_format="iso")) if len(d) else []
            click.echo(json.dumps(out, default=str))
            return
        click.echo(f"cluster {c.id}  rank {c.rank}  risk {c.risk:.2f}")
        click.echo(f"alerts: {c.n_tx}  amount at risk: {c.amount_at_risk:.2f}  time span: {c.first_seen} .. {c.last_seen}")
        click.echo(f"score: sum {c.score_sum:.3f} mean {c.score_mean:.3f} min {c.score_min:.3f} "
                   f"median {c.score_median:.3f} max {c.score_max:.3f}")
        click.echo(f"customers ({len(c.customers)}): {', '.join(c.customers[:40])}")
        click.echo(f"terminals ({len(c.terminals)}): {', '.join(c.terminals[:40])}")
        click.echo(f"shared terminals: {', '.join(c.shared_terminals[:40]) or '-'}")
        if res.meta.get("context"):
            click.echo(f"surging terminals: {', '.join(c.surging_terminals[:40]) or '-'}  "
                       f"context transactions at its terminals: {c.context_tx}  "
                       f"alert groups linked by context: {c.context_groups}")
        click.echo("reasons (alerts): " + "; ".join(f"{r} ({n})" for r, n in grouped_words(c.reasons, top=0)))
        if c.scenario_mix:
            click.echo("scenario mix: " + ", ".join(f"{k}={v}" for k, v in c.scenario_mix.items()))
        click.echo("transactions:")
        for r in a.to_dict("records"):  # the reason codes in words (--json keeps the codes)
            click.echo(f"  {r['timestamp']}  {r['tx_id']}  c={r['customer_id']}  t={r['terminal_id']}  "
                       f"amount={r['amount']:.2f}  score={r['score']:.3f}")
            for text in reason_texts(r["reasons"] or []):
                click.echo(f"      - {text}")
        if len(d):
            click.echo("decisions:")
            for r in d.to_dict("records"):
                click.echo(f"  {r['decided_at']}  {r['decision']}  by {r['analyst']}  tx={r['tx_id']}  {r['note'] or ''}")

    @review.group("cases")
    def cases_grp() -> None:
        """Cases: stable ids over re-clustering; list, show, assign, decide, undo, export."""

    def _case_opts(f):
        return _alerts_db_option(_window_options(_context_options(f)))

    @cases_grp.command("list")
    @_case_opts
    @click.option("--status", default="active", show_default=True,
                  type=click.Choice(["active", "open", "in_progress", "closed", "merged", "all"]))
    @click.option("--assignee", default="", help="Only this analyst's cases ('-' = unassigned).")
    @click.option("--min-risk", default=0.0, type=float)
    @click.option("--ring", is_flag=True, help="Only cases with a ring signal.")
    @click.option("--search", "q", default="", help="A customer, terminal, tx_id or case id.")
    @click.option("--top", default=20, show_default=True)
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_context
    def cases_list(ctx, alerts_db, since, until, archive, context_path, status, assignee, min_risk, ring, q, top,
                   as_json):
        """The queue: cases passing the filters, highest priority (risk / sqrt(alerts)) first."""
        from fraud.review.queue import Filters, select

        cs = _cases(ctx, alerts_db, since, until, archive, context_path)
        book, res, st, all_rows = cs.book, cs.result, cs.strength, cs.rows
        items = select(all_rows, Filters(status=status, assignee=assignee, min_risk=min_risk, ring=ring, q=q), book)
        if as_json:
            click.echo(json.dumps({"cases": [r.__dict__ for r in items]}, default=str))
            return
        click.echo(f"{len(items)} case(s) ({status}); highest priority (risk / sqrt(alerts)) first, "
                   "related cases (+) under the first of them")
        head = f"{'case':<10} {'status':<16} {'risk':>8} {'band':<8} {'alerts':>6} {'budget':>6} {'assignee':<10} ring"
        click.echo(head + "\n" + "-" * len(head))
        for r in items[:top]:
            click.echo(f"{('+' if r.lead else '') + r.case_id:<10} {r.status_words[:16]:<16} {r.risk:>8.1f} {r.band:<8} {r.n_tx:>6} "
                       f"{100 * r.budget_share:>5.0f}% {(r.assignee or '-')[:10]:<10} {'yes' if r.ring else ''}")
            click.echo(f"    why: {r.reason or '-'}" + (f"; related: {', '.join(r.related)}" if r.related else ""))

    @cases_grp.command("show")
    @click.argument("case_id")
    @_case_opts
    @click.pass_context
    def cases_show(ctx, case_id, alerts_db, since, until, archive, context_path):
        """One case: state, history, transactions with their reasons in words, and (with context) the cards exposed
        at the terminals of its confirmed frauds."""
        from fraud.review.cases import OUTCOME_WORDS, STATUS_WORDS
        from fraud.review.queue import exposed, transactions

        cs = _cases(ctx, alerts_db, since, until, archive, context_path)
        book, res, st = cs.book, cs.result, cs.strength
        c = book.get(case_id)
        click.echo(f"{c['case_id']}  {STATUS_WORDS[c['status']]} {OUTCOME_WORDS[c['outcome']]}  "
                   f"assignee {c['assignee'] or '-'}  created {str(c['created_at'])[:16]}  updated {str(c['updated_at'])[:16]}")
        if c["linked_to"]:
            click.echo(f"{c['link_kind'].replace('_', ' ')} {c['linked_to']}")
        if book.related(case_id):
            click.echo(f"related cases (the clustering joined their alerts): {', '.join(book.related(case_id))}")
        click.echo("history:")
        for h in book.history(case_id):
            click.echo(f"  #{h['id']} {str(h['at'])[:16]} {h['analyst']}: {h['text']}" + (" (undone)" if h["undone_by"] else ""))
        click.echo("transactions:")
        txs = transactions(book, case_id, res, st)
        for t in txs:
            click.echo(f"  {t['time']} {t['tx_id']} c={t['customer_id']} t={t['terminal_id']} {t['amount']:.2f} "
                       f"{t['band']} {t['label'] or ''}")
            for w in t["reasons"]:
                click.echo(f"      - {w}")
        ex = exposed(cs.context, res.alerts, txs, set(book.members(case_id)["customer_id"]))
        if ex and ex["rows"]:
            more = f", the first {len(ex['rows'])} of {ex['total']}" if ex["total"] > len(ex["rows"]) else ""
            click.echo("cards exposed at the terminals of its confirmed frauds "
                       f"(used there within a day of one{more}):")
            for e in ex["rows"]:
                click.echo(f"  c={e['customer_id']} t={e['terminal_id']} first visit {e['first_seen']} "
                           f"visits there {e['visits']} confirmed frauds there within a day {e['confirmed']}"
                           + (f" exposed terminals {e['terminals']}" if e["terminals"] > 1 else "")
                           + (f" top score {e['score']:.3f}" if e["score"] is not None else "")
                           + (" (has alerts)" if e["alerted"] else ""))

    @cases_grp.command("assign")
    @click.argument("case_id")
    @click.argument("assignee")
    @click.option("--analyst", required=True, help="Who does it (recorded in the history).")
    @_case_opts
    @click.pass_context
    def cases_assign(ctx, case_id, assignee, analyst, alerts_db, since, until, archive, context_path):
        """Assign a case ('-' = unassign)."""
        book = _cases(ctx, alerts_db, since, until, archive, context_path).book
        eid = book.assign(case_id, None if assignee == "-" else assignee, analyst)
        click.echo(f"{case_id}: assigned to {assignee} (event #{eid})")

    @cases_grp.command("decide")
    @click.argument("case_id")
    @click.argument("outcome", type=click.Choice(["fraud", "not_fraud", "mixed"]))
    @click.option("--analyst", required=True, help="Who decides (recorded with the labels).")
    @click.option("--tx-id", "tx_ids", multiple=True, help="Label only these transactions (the case stays open).")
    @click.option("--note", default=None)
    @click.option("--yes", is_flag=True, help="Do not ask to confirm.")
    @_case_opts
    @click.pass_context
    def cases_decide(ctx, case_id, outcome, analyst, tx_ids, note, yes, alerts_db, since, until, archive, context_path):
        """Close a case as fraud / not_fraud (labelling every transaction) or mixed, or label some transactions."""
        book = _cases(ctx, alerts_db, since, until, archive, context_path).book
        n = len(tx_ids) if tx_ids else (len(book.members(case_id)) if outcome != "mixed" else 0)
        if not yes:
            click.confirm(f"{case_id}: label {n} transaction(s) {outcome.replace('_', ' ')}"
                          + ("" if tx_ids else " and close the case") + "?", abort=True)
        eid, n = book.decide(case_id, outcome, analyst, tx_ids=list(tx_ids), note=note)
        click.echo(f"{case_id}: {outcome.replace('_', ' ')}, {n} transaction(s) labelled (event #{eid}; "
                   f"undo: fraud review cases undo {case_id} {eid} --analyst NAME)")

    @cases_grp.command("undo")
    @click.argument("case_id")
    @click.argument("event_id", type=int)
    @click.option("--analyst", required=True)
    @_case_opts
    @click.pass_context
    def cases_undo(ctx, case_id, event_id, analyst, alerts_db, since, until, archive, context_path):
        """Undo an assign, status or decide event of a case (its labels are taken back)."""
        from fraud.errors import ConfigError

        book = _cases(ctx, alerts_db, since, until, archive, context_path).book
        if book.event(event_id)["case_id"] != case_id:
            raise ConfigError(f"event {event_id} is not an event of case {case_id!r}")
        uid = book.undo(event_id, analyst)
        click.echo(f"{case_id}: event #{event_id} undone (event #{uid})")

    @cases_grp.command("export")
    @click.argument("case_id", required=False)
    @click.option("--out", "out_path", default="-", type=click.Path(dir_okay=False), help="CSV file (default: stdout).")
    @click.option("--status", default="active", show_default=True,
                  type=click.Choice(["active", "open", "in_progress", "closed", "merged", "all"]))
    @_case_opts
    @click.pass_context
    def cases_export(ctx, case_id, out_path, status, alerts_db, since, until, archive, context_path):
        """CSV of the queue (no CASE_ID) or of one case's transactions."""
        from fraud.review.queue import Filters, queue_csv, select, transactions, transactions_csv

        cs = _cases(ctx, alerts_db, since, until, archive, context_path)
        book, res, st, all_rows = cs.book, cs.result, cs.strength, cs.rows
        if case_id:
            book.get(case_id)
            text = transactions_csv(transactions(book, case_id, res, st))
        else:
            text = queue_csv(select(all_rows, Filters(status=status), book))
        with click.open_file(out_path, "w") as fh:
            fh.write(text)

    @review.command("serve")
    @click.option("--port", default=8765, show_default=True, type=int)
    @click.option("--host", default="127.0.0.1", show_default=True)
    @_alerts_db_option
    @_window_options
    @click.option("--users", "users_file", default=None, type=click.Path(dir_okay=False),
                  help="Users file of the analysts' token hashes (`fraud review add-analyst`); re-read when it changes.")
    @click.option("--secure-cookie", is_flag=True, help="Mark the session cookie Secure (behind HTTPS).")
    @click.option("--session-hours", default=12.0, show_default=True, type=float, help="A session's lifetime.")
    @click.option("--login-limit", default=5, show_default=True, type=int,
                  help="Wrong sign-ins allowed per address and per analyst in --login-window; then a lockout "
                       "that doubles each time (at most an hour).")
    @click.option("--login-window", default=60.0, show_default=True, type=float, help="Seconds (and first lockout).")
    @click.option("--access-log", "access_log", default=None, type=click.Path(dir_okay=False),
                  help="Append the access log (a line per request and sign-in event) here (default: stderr).")
    @_context_options
    @click.option("--context-refresh", default=30.0, show_default=True, type=float,
                  help="Seconds between looks for new archive files / a changed --context file.")
    @log_format_option
    @click.pass_context
    def serve_cmd(ctx, port, host, alerts_db, since, until, users_file, secure_cookie, session_hours, login_limit,
                  login_window, access_log, archive, context_path, context_refresh, log_format="text"):
        """The review web app. Each analyst signs in with their own token from --users FILE
        (`fraud review add-analyst`); FRAUD_REVIEW_TOKEN alone is a shared-token mode for local use.
        FRAUD_REVIEW_SECRET signs sessions (default: a random secret kept in the alert store).
        With --archive, the scorer's new archive files join the context as they are written."""
        import uvicorn

        from fraud.errors import ConfigError
        from fraud.review.app import create_app
        from fraud.review.auth import Throttle, load_users
        from fraud.review.clusters import ContextSource

        setup_logging("INFO", log_format)
        if users_file:
            load_users(users_file)  # a missing or bad file fails at start, with its message
        if ctx.obj.review_token and users_file:
            raise ConfigError(f"FRAUD_REVIEW_TOKEN and --users {users_file!r}: give one; with a users file each "
                              f"analyst signs in with their own token (unset FRAUD_REVIEW_TOKEN)")
        source = None
        if archive is not None or context_path is not None:
            source = ContextSource(archive, context_path, refresh_s=context_refresh)
            source.get()  # read now: a bad archive or file fails at start, with its message
        from fraud.store import AlertStore

        store = AlertStore(alerts_db or ctx.obj.alerts_db, must_exist=True)  # a wrong path: an error naming it
        app = create_app(store, token=None if users_file else ctx.obj.review_token,
                         users=users_file, secret=ctx.obj.review_secret, since=since, until=until,
                         https_only=secure_cookie, session_hours=session_hours,
                         throttle=Throttle(limit=login_limit, window=login_window), context_source=source,
                         alert_budget=ctx.obj.alert_budget_per_day)
        _log_access(access_log, log_format)
        if not users_file:
            click.echo("shared-token mode (local use): decisions are recorded as 'shared-token'; "
                       "give each analyst a token with `fraud review add-analyst NAME --users FILE`")
        click.echo(f"review app on http://{host}:{port}/ (alerts: {alerts_db or ctx.obj.alerts_db})")
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)

    @review.command("add-analyst")
    @click.argument("name")
    @click.option("--users", "users_file", required=True, type=click.Path(dir_okay=False),
                  help="The users file (created if absent).")
    def add_analyst_cmd(name, users_file):
        """Add an analyst, or rotate their token: prints the new token once (only its hash is kept).
        A running app sees the change at once: the old token and its sessions stop working."""
        from fraud.review.auth import add_analyst

        token = add_analyst(users_file, name)
        click.echo(token)
        click.echo(f"(the token of {name!r}; shown once, give it to them privately)", err=True)

    @review.command("remove-analyst")
    @click.argument("name")
    @click.option("--users", "users_file", required=True, type=click.Path(dir_okay=False, exists=True))
    def remove_analyst_cmd(name, users_file):
        """Remove an analyst: their token and sessions stop working."""
        from fraud.review.auth import remove_analyst

        remove_analyst(users_file, name)
        click.echo(f"removed {name!r} from {users_file}")

    @review.command("hash-password")
    @click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
    def hash_password_cmd(password):
        """Print a pbkdf2 hash of a chosen password for a --users file (sign in with NAME:PASSWORD)."""
        from fraud.review.auth import hash_password

        click.echo(hash_password(password))

    @review.command("report")
    @_alerts_db_option
    @_window_options
    @click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
    @click.option("--top", default=20, show_default=True, help="Clusters listed in the report's table.")
    @click.option("--detail", default=10, show_default=True, help="Top clusters drawn (subgraph, timeline, map).")
    @_context_options
    @click.pass_context
    def report_cmd(ctx, alerts_db, since, until, out_dir, top, detail, archive, context_path):
        """A static HTML report (index.html + PNG plots) of the ranked clusters."""
        from fraud.review.clusters import read_context
        from fraud.review.report import write_report

        store, res = _cluster(ctx, alerts_db, since, until, context=read_context(archive, context_path))
        path = write_report(res, out_dir, top=top, decisions=store.read_decisions(), detail=detail)
        click.echo(f"report written to {path}")

    @bench.command("pages")
    @click.option("--alerts-db", required=True, help="A SQLite alert store (sqlite:///FILE); the bench works on a copy.")
    @click.option("--repeat", default=3, show_default=True, help="Calls per page, and new alerts added one by one.")
    @click.option("--json", "as_json", is_flag=True)
    def bench_pages(alerts_db, repeat, as_json):
        """The review app's page times on a store: the first grouping, each main page with nothing new, and the
        queue right after one new alert (with the time the new grouping takes to land)."""
        from benchmarks.review_pages import run

        out = run(alerts_db, repeat=repeat)
        if as_json:
            click.echo(json.dumps(out))
            return
        click.echo(f"{out['alerts']} alerts, {out['cases']} cases, {out['clusters']} clusters; "
                   f"first grouping {out['first_grouping_s']} s")
        for name, t in out["pages"].items():
            click.echo(f"  {name:<13} best {t['best_ms']:>8} ms   median {t['median_ms']:>8} ms")
        for k, a in enumerate(out["after_one_new_alert"], 1):
            click.echo(f"  new alert {k}: queue {a['queue_ms']} ms (note shown: {'yes' if a['showed_note'] else 'no'}), "
                       f"grouping landed after {a['grouping_landed_s']} s")

    @bench.command("review")
    @click.option("--customers", default=2000, show_default=True)
    @click.option("--terminals", default=4000, show_default=True)
    @click.option("--days", default=60, show_default=True)
    @click.option("--seed", default=7, show_default=True, help="One seed (ignored when --seeds is given).")
    @click.option("--seeds", default=None, metavar="S1,S2,...",
                  help="Several seeds: a table per seed plus the mean and the worst of each figure.")
    @click.option("--detector", default="auto", type=click.Choice(["auto", "pipeline", "iforest"]), show_default=True,
                  help="pipeline = fraud.training/fraud.bundle; iforest = IForest over fraud.features.tabular.")
    @click.option("--alerts-per-day", default=None, type=int, help="Alert budget (default: Settings).")
    @click.option("--cap-budget/--no-cap-budget", default=True, show_default=True,
                  help="Keep at most --alerts-per-day alerts a day (highest scores), as analysts receive them.")
    @click.option("--refine", default="hdbscan", type=click.Choice(["louvain", "hdbscan"]), show_default=True,
                  help="How large flagged components are split.")
    @click.option("--resolution", default=None, type=float, help="Louvain resolution (default: cluster_alerts').")
    @click.option("--risk", default="collusion", type=click.Choice(["collusion", "score"]), show_default=True,
                  help="Cluster ranking formula (score = the first one).")
    @click.option("--cache", "cache_dir", default=None, type=click.Path(file_okay=False),
                  help="Keep each seed's scored alerts here and reuse them (compare clustering options cheaply).")
    @click.option("--keep-db", default=None, metavar="URL", help="Write the alerts to this store (kept) instead of a temp one.")
    @click.option("--context/--no-context", "use_context", default=True, show_default=True,
                  help="Give the clustering the test window's transactions as context (what the scorer's archive "
                       "holds, as `fraud review ... --archive DIR` reads it) and report the figures with and "
                       "without it.")
    @click.option("--cases/--no-cases", "with_cases", default=False, show_default=True,
                  help="Also stream the alerts day by day through the case book: case stability, ring share of "
                       "the top 10 open cases, share of alerts whose top reason is opaque.")
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_context
    def bench_review(ctx, customers, terminals, days, seed, seeds, detector, alerts_per_day, cap_budget, refine,
                     resolution, risk, cache_dir, keep_db, use_context, with_cases, as_json):
        """Simulate, score, store alerts, cluster; purity and the ring share in the top 10 clusters."""
        from benchmarks.review import cases_lines, run_bench, run_bench_seeds, seeds_table
        from fraud.errors import ConfigError

        cluster_kw = {"refine": refine, "risk": risk}
        if resolution is not None:
            cluster_kw["resolution"] = resolution
        kw = dict(customers=customers, terminals=terminals, days=days, detector=detector,
                  alerts_per_day=alerts_per_day or ctx.obj.alert_budget_per_day, settings=ctx.obj,
                  progress=not as_json, keep_db=keep_db, cap_budget=cap_budget, cache_dir=cache_dir,
                  cluster_kw=cluster_kw, context=use_context, cases=with_cases)
        if seeds is None:
            out = run_bench(seed=seed, **kw)
            if as_json:
                click.echo(json.dumps(out, default=str))
            else:
                for k, v in out.items():
                    click.echo(f"{k}: {v}")
            return
        try:
            seed_list = [int(x) for x in seeds.split(",") if x.strip()]
        except ValueError:
            raise ConfigError(f"--seeds {seeds!r}: not a comma-separated list of integers") from None
        if keep_db and len(seed_list) > 1:
            raise ConfigError(f"--keep-db {keep_db!r}: one store cannot hold several seeds' worlds; use --seed")
        out = run_bench_seeds(seed_list, **kw)
        if as_json:
            click.echo(json.dumps(out, default=str))
            return
        from rich.console import Console

        Console(width=200).print(seeds_table(out, refine=refine, risk=risk, context=use_context,
                                             cap_budget=cap_budget, budget=kw["alerts_per_day"]))
        for line in cases_lines(out):
            click.echo(line)
