"""fraud review clusters|show|serve|report|add-analyst|remove-analyst|hash-password, and fraud bench review."""
from __future__ import annotations

import json

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
             archive=None, context_path=None):
    from fraud.review.clusters import cluster_alerts, read_context
    from fraud.store import AlertStore

    url = alerts_db or ctx.obj.alerts_db
    store = AlertStore(url, must_exist=True)
    alerts = store.read_alerts()
    context = read_context(archive, context_path)
    return store, cluster_alerts(alerts, since=since, until=until, embedder=embedder, seed=seed, refine=refine,
                                 risk=risk, context=context)


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
        _, res = _cluster(ctx, alerts_db, since, until, embedder, refine=refine, risk=risk, archive=archive,
                          context_path=context_path)
        if as_json:
            click.echo(json.dumps(res.to_json_dict(), default=str))
            return
        from rich.console import Console
        from rich.table import Table

        m = res.meta
        t = Table(title=f"{m['n_clusters']} clusters from {m['n_alerts']} alerts "
                        f"({m['n_components']} components, {m['n_refined_components']} split by {m['refine']}"
                        + (f"; {m['context_links']} context links" if m.get("context") else "") + ")")
        for col in ("#", "cluster", "risk", "alerts", "amount", "cust.", "term.", "max score", "first", "last",
                    "top reasons", "scenarios"):
            t.add_column(col, no_wrap=col in ("cluster", "risk", "first", "last", "top reasons"),
                         overflow="ellipsis", max_width=60 if col == "top reasons" else None)
        for c in res.clusters[:top]:
            t.add_row(str(c.rank), c.id, f"{c.risk:.1f}", str(c.n_tx), f"{c.amount_at_risk:.2f}",
                      str(len(c.customers)), str(len(c.terminals)), f"{c.score_max:.3f}", c.first_seen[:16],
                      c.last_seen[:16], ", ".join(r for r, _ in c.reasons[:3]),
                      " ".join(f"{k}:{v}" for k, v in (c.scenario_mix or {}).items()))
        con = Console()
        Console(width=max(con.width, 160)).print(t)
        click.echo(f"risk = {m['risk_formula']}")

    @review.command("show")
    @click.argument("cluster_id")
    @_alerts_db_option
    @_window_options
    @click.option("--json", "as_json", is_flag=True, help="Print the cluster and its transactions as JSON.")
    @_context_options
    @click.pass_context
    def show_cmd(ctx, cluster_id, alerts_db, since, until, as_json, archive, context_path):
        """One cluster: summary, transactions and decisions so far (pass the same --archive/--context
        as to `fraud review clusters`: context changes the clusters and so their ids)."""
        from fraud.errors import ConfigError

        store, res = _cluster(ctx, alerts_db, since, until, archive=archive, context_path=context_path)
        c = res.get(cluster_id)
        if c is None:
            raise ConfigError(f"cluster {cluster_id!r} is not among the {len(res.clusters)} clusters of "
                              f"{alerts_db or ctx.obj.alerts_db} (ids change when new alerts join a cluster; "
                              f"list them with `fraud review clusters`)")
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
        click.echo("reasons: " + ", ".join(f"{r} ({n})" for r, n in c.reasons))
        if c.scenario_mix:
            click.echo("scenario mix: " + ", ".join(f"{k}={v}" for k, v in c.scenario_mix.items()))
        click.echo("transactions:")
        for r in a.to_dict("records"):
            click.echo(f"  {r['timestamp']}  {r['tx_id']}  c={r['customer_id']}  t={r['terminal_id']}  "
                       f"amount={r['amount']:.2f}  score={r['score']:.3f}  {','.join(r['reasons'] or [])}")
        if len(d):
            click.echo("decisions:")
            for r in d.to_dict("records"):
                click.echo(f"  {r['decided_at']}  {r['decision']}  by {r['analyst']}  tx={r['tx_id']}  {r['note'] or ''}")

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
                         throttle=Throttle(limit=login_limit, window=login_window), context_source=source)
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
        from fraud.review.report import write_report

        store, res = _cluster(ctx, alerts_db, since, until, archive=archive, context_path=context_path)
        path = write_report(res, out_dir, top=top, decisions=store.read_decisions(), detail=detail)
        click.echo(f"report written to {path}")

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
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_context
    def bench_review(ctx, customers, terminals, days, seed, seeds, detector, alerts_per_day, cap_budget, refine,
                     resolution, risk, cache_dir, keep_db, use_context, as_json):
        """Simulate, score, store alerts, cluster; purity and the ring share in the top 10 clusters."""
        from fraud.errors import ConfigError
        from fraud.review.bench import run_bench, run_bench_seeds

        cluster_kw = {"refine": refine, "risk": risk}
        if resolution is not None:
            cluster_kw["resolution"] = resolution
        kw = dict(customers=customers, terminals=terminals, days=days, detector=detector,
                  alerts_per_day=alerts_per_day or ctx.obj.alert_budget_per_day, settings=ctx.obj,
                  progress=not as_json, keep_db=keep_db, cap_budget=cap_budget, cache_dir=cache_dir,
                  cluster_kw=cluster_kw, context=use_context)
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
        from rich.table import Table

        cols = [("seed", lambda r: r["world"]["seed"]), ("ring tx", lambda r: r["world"]["test_ring_transactions"]),
                ("ring alerted", lambda r: r["ring_alerts"]), ("recall", lambda r: r["ring_recall_of_detector"]),
                ("ring in top 10", lambda r: r["ring_in_top_k"]),
                ("share (alerted)", lambda r: r["ring_share_top_k"]),
                ("share (all ring)", lambda r: r["ring_share_top_k_of_all"]), ("purity", lambda r: r["purity"]),
                ("top-10 load", lambda r: r["top_k_load"]), ("lift", lambda r: r["top_k_lift"]),
                ("alerts", lambda r: r["alerts"]), ("clusters", lambda r: r["n_clusters"])]
        if use_context:
            cols[4:4] = [("share no ctx", lambda r: r["without_context"]["ring_share_top_k"]),
                         ("purity no ctx", lambda r: r["without_context"]["purity"]),
                         ("load no ctx", lambda r: r["without_context"]["top_k_load"])]
        t = Table(title=f"bench review: {refine} refinement, {risk} risk, {'with' if use_context else 'no'} context, "
                        f"{'capped' if cap_budget else 'uncapped'} budget {kw['alerts_per_day']}/day")
        for name, _ in cols:
            t.add_column(name, justify="right")
        for r in out["runs"]:
            t.add_row(*[str(f(r)) for _, f in cols])
        sm = out["summary"]
        for stat in ("mean", "min"):
            extra = []
            if use_context:
                wc = sm["without_context"]
                extra = [str(wc["ring_share_top_k"][stat]), str(wc["purity"][stat]), str(wc["top_k_load"][stat])]
            t.add_row(stat, "", "", str(sm["ring_recall_of_detector"][stat]), *extra, "",
                      str(sm["ring_share_top_k"][stat]), str(sm["ring_share_top_k_of_all"][stat]),
                      str(sm["purity"][stat]), str(sm["top_k_load"][stat]), str(sm["top_k_lift"][stat]), "", "")
        Console(width=200).print(t)
