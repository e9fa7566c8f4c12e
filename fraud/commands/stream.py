"""fraud serve / replay / broker / bench stream: the live scoring service (package ``streaming``)."""
from __future__ import annotations

import functools
import json
import logging
import sys

import click

from fraud.commands.common import log_format_option


def kafka_options(f):
    """--bootstrap and the security / SASL / TLS passthrough options for kafka-python."""
    opts = [
        click.option("--bootstrap", required=True, metavar="HOST:PORT[,HOST:PORT]",
                     help="Kafka bootstrap servers."),
        click.option("--security-protocol", default=None,
                     type=click.Choice(["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]),
                     help="kafka-python security_protocol (default PLAINTEXT)."),
        click.option("--sasl-mechanism", default=None, help="e.g. PLAIN, SCRAM-SHA-256, SCRAM-SHA-512."),
        click.option("--sasl-username", default=None, envvar="FRAUD_KAFKA_SASL_USERNAME"),
        click.option("--sasl-password", default=None, envvar="FRAUD_KAFKA_SASL_PASSWORD",
                     help="Or the environment variable FRAUD_KAFKA_SASL_PASSWORD."),
        click.option("--ssl-cafile", default=None, type=click.Path(dir_okay=False)),
        click.option("--ssl-certfile", default=None, type=click.Path(dir_okay=False)),
        click.option("--ssl-keyfile", default=None, type=click.Path(dir_okay=False)),
    ]
    for o in reversed(opts):
        f = o(f)
    return functools.wraps(f)(f)


def client_kw(kw: dict) -> dict:
    """Pop the security options from a command's kwargs into kafka-python client settings."""
    out = {}
    for opt, name in (("security_protocol", "security_protocol"), ("sasl_mechanism", "sasl_mechanism"),
                      ("sasl_username", "sasl_plain_username"), ("sasl_password", "sasl_plain_password"),
                      ("ssl_cafile", "ssl_cafile"), ("ssl_certfile", "ssl_certfile"),
                      ("ssl_keyfile", "ssl_keyfile")):
        v = kw.pop(opt, None)
        if v is not None:
            out[name] = v
    return out


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Structured log lines on stderr (key=value text or JSON); see fraud.commands.common.setup_logging."""
    from fraud.commands.common import setup_logging as setup

    setup(level, fmt)


def install_stop_signals(stop, doing: str = "flushing, checkpointing and committing") -> None:
    import signal

    def handler(signum, frame):
        logging.getLogger("streaming").info("signal=%s received: %s", signal.Signals(signum).name, doing)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _bundle_loader(key: str | None):
    """The scorer's model loader: ``fraud.registry.load_bundle`` verifying with ``FRAUD_BUNDLE_KEY`` too."""

    def load(uri: str, tracking_uri: str | None):
        from fraud.registry import load_bundle

        return load_bundle(uri, tracking_uri=tracking_uri, key=key)

    return load


def register(main: click.Group, bench: click.Group) -> None:
    @main.command()
    @kafka_options
    @click.option("--topic", default="transactions", show_default=True)
    @click.option("--group", default="fraud-scorer", show_default=True, help="Consumer group.")
    @click.option("--model", "model_uri", default=None, help="Model URI [default: models:/<model_name>@champion].")
    @click.option("--tracking-uri", default=None, help="MLflow tracking store [default: settings].")
    @click.option("--alerts-db", default=None, help="Alert store URL [default: settings, sqlite:///alerts.db].")
    @click.option("--archive", "archive", default=None, type=click.Path(file_okay=False),
                  help="Parquet archive folder (DIR/date=YYYY-MM-DD/part-*.parquet); input of `fraud retrain`.")
    @click.option("--state-dir", default="state", show_default=True, type=click.Path(file_okay=False),
                  help="Checkpoints of the online state (shared by all scorers of the group).")
    @click.option("--metrics-port", default=None, type=int, help="Serve Prometheus metrics on this port.")
    @click.option("--metrics-host", default="127.0.0.1", show_default=True,
                  help="Address the metrics endpoint binds (0.0.0.0: every interface, e.g. in a container).")
    @click.option("--max-event-age-days", default=3650.0, show_default=True, type=float,
                  help="Events whose timestamp is older than this (against the broker's time) are dead-lettered.")
    @click.option("--max-event-lead-hours", default=24.0, show_default=True, type=float,
                  help="Events whose timestamp is this far ahead of the broker's time are dead-lettered.")
    @click.option("--dedup-days", default=7.0, show_default=True, type=float,
                  help="A tx_id scored within this many days (event time) is not scored again.")
    @click.option("--dedup-max-ids", default=500_000, show_default=True, type=int,
                  help="At most this many remembered tx_ids per partition (oldest forgotten first).")
    @click.option("--reload-interval", default=60.0, show_default=True, type=float,
                  help="Seconds between checks of the model alias (hot reload).")
    @click.option("--batch-size", default=10000, show_default=True, type=int,
                  help="Max events per micro-batch (a poll returns fewer at low load; more amortise the model's "
                       "per-call cost under backlog).")
    @click.option("--checkpoint-interval", default=5.0, show_default=True, type=float,
                  help="Seconds between archive flush + checkpoint + commit.")
    @click.option("--snapshot-events", default=100_000, show_default=True, type=int,
                  help="With --archive, checkpoints are light (base state + the archived events since); a "
                       "partition's state is serialised as a new base after this many events (bounds the replay "
                       "on restart). 0 = serialise the full state at every checkpoint.")
    @click.option("--partitions", default=8, show_default=True, type=int,
                  help="Partitions of the input topic when it is created here.")
    @click.option("--max-message-bytes", default=256 * 1024, show_default=True, type=int,
                  help="Larger events go to the dead-letter topic.")
    @click.option("--scores-topic", default="scores", show_default=True)
    @click.option("--alerts-topic", default="alerts", show_default=True)
    @click.option("--dlq-topic", default="transactions.dlq", show_default=True)
    @click.option("--session-timeout-ms", default=10000, show_default=True, type=int)
    @click.option("--threads", default=1, show_default=True, type=int,
                  help="Native threads (OpenMP/BLAS) for scoring; 0 = library default.")
    @click.option("--broker-wait", default=None, type=float,
                  help="Give up after this many seconds if the broker is unreachable at start [default: retry forever].")
    @click.option("--max-events", default=None, type=int, help="Stop after this many events (tests, demos).")
    @click.option("--log-level", default="INFO", show_default=True)
    @log_format_option
    @click.pass_obj
    def serve(settings, **kw):
        """Score transaction events from Kafka (consumer group) into topics, the alert store and the archive.

        Stops cleanly on SIGTERM/SIGINT (flush, checkpoint, commit). Several scorers with the same --group
        and a shared --state-dir split the partitions; state follows a partition through its checkpoint.
        """
        import threading

        from streaming.loop import Scorer, ServeConfig

        setup_logging(kw.pop("log_level"), kw.pop("log_format"))
        ckw = client_kw(kw)
        try:
            from fraud.registry import quiet_mlflow

            quiet_mlflow()
        except ImportError:  # pragma: no cover
            pass
        cfg = ServeConfig(
            bootstrap=kw["bootstrap"], topic=kw["topic"], group=kw["group"],
            model_uri=kw["model_uri"] or f"models:/{settings.model_name}@champion",
            tracking_uri=kw["tracking_uri"] or settings.tracking_uri,
            alerts_db=kw["alerts_db"] or settings.alerts_db, archive_dir=kw["archive"], state_dir=kw["state_dir"],
            metrics_port=kw["metrics_port"], metrics_host=kw["metrics_host"],
            max_event_age_days=kw["max_event_age_days"], max_event_lead_hours=kw["max_event_lead_hours"],
            dedup_days=kw["dedup_days"], dedup_max_ids=kw["dedup_max_ids"], reload_interval=kw["reload_interval"], batch_size=kw["batch_size"],
            checkpoint_interval=kw["checkpoint_interval"], partitions=kw["partitions"],
            snapshot_events=kw["snapshot_events"],
            max_message_bytes=kw["max_message_bytes"], scores_topic=kw["scores_topic"] or None,
            alerts_topic=kw["alerts_topic"] or None, dlq_topic=kw["dlq_topic"],
            broker_wait_timeout=kw["broker_wait"], client_kw=ckw, threads=kw["threads"] or None,
            consumer_kw={"session_timeout_ms": kw["session_timeout_ms"],
                         "heartbeat_interval_ms": max(300, kw["session_timeout_ms"] // 6)},
        )
        stop = threading.Event()
        scorer = Scorer(cfg, loader=_bundle_loader(settings.bundle_key))
        scorer.load_model()  # registry unavailable at first start -> RegistryError naming the URI, exit 2
        install_stop_signals(stop)
        scorer.run(stop, max_events=kw["max_events"])

    @main.command()
    @kafka_options
    @click.option("--data", required=True, type=click.Path(dir_okay=False, exists=True),
                  help="Transactions file (.csv or .parquet).")
    @click.option("--columns", default=None, metavar="MAP", help="Column mapping canonical=SOURCE,...")
    @click.option("--preset", default=None, type=click.Choice(["handbook", "canonical"]))
    @click.option("--topic", default="transactions", show_default=True)
    @click.option("--rate", default=None, type=float, help="Events per second.")
    @click.option("--speedup", default=None, type=float, help="X times real time (by event timestamps).")
    @click.option("--limit", default=None, type=int, help="Only the first N events (in time order).")
    @click.option("--since", default=None, metavar="DATE",
                  help="Only events at or after this time (e.g. the model's training cutoff: events it already "
                       "learned from would be scored as if new).")
    @click.option("--partitions", default=8, show_default=True, type=int,
                  help="Partitions of the topic when it is created here.")
    @click.option("--no-labels", is_flag=True, help="Do not send label/scenario fields.")
    def replay(**kw):
        """Produce a transaction file into a topic in time order, keyed by customer_id (JSON events)."""
        import threading

        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        from fraud.commands.common import load_or_fail
        from streaming.broker import ensure_topics, wait_for_broker
        from streaming.replay import replay as do_replay

        setup_logging("WARNING")
        ckw = client_kw(kw)
        df = load_or_fail(kw["data"], kw["columns"], kw["preset"])
        if kw["since"] is not None:
            from fraud.training.data import to_utc

            df = df[df["timestamp"] >= to_utc(kw["since"], "--since")].reset_index(drop=True)
        if kw["limit"] is not None:
            df = df.iloc[: kw["limit"]]
        wait_for_broker(kw["bootstrap"], timeout=60, client_kw=ckw)
        ensure_topics(kw["bootstrap"], {kw["topic"]: kw["partitions"]}, client_kw=ckw)
        stop = threading.Event()
        install_stop_signals(stop)
        with Progress(TextColumn("replay"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                      TimeRemainingColumn(), transient=True) as prog:
            task = prog.add_task("replay", total=len(df))
            res = do_replay(df, kw["bootstrap"], kw["topic"], rate=kw["rate"], speedup=kw["speedup"],
                            labels=not kw["no_labels"], client_kw=ckw, stop=stop,
                            progress=lambda i, n: prog.update(task, completed=i))
        click.echo(f"sent {res['sent']} events to {kw['topic']} in {res['seconds']:.1f}s "
                   f"({res['rate']:.0f} events/s)")

    @main.command("send-labels")
    @kafka_options
    @click.option("--topic", default="transactions", show_default=True,
                  help="The scorer's input topic (label events go where their transactions went).")
    @click.option("--alerts-db", default=None, help="Send the analysts' decisions of this alert store.")
    @click.option("--labels", "labels_path", default=None, type=click.Path(dir_okay=False),
                  help="CSV/Parquet of tx_id,label (e.g. chargebacks); the transactions are looked up in "
                       "--archive or --data.")
    @click.option("--archive", default=None, type=click.Path(file_okay=False),
                  help="The scorer's archive, where --labels' transactions are found.")
    @click.option("--data", default=None, type=click.Path(dir_okay=False, exists=True),
                  help="A transactions file, where --labels' transactions are found.")
    @click.option("--since", default=None, metavar="DATE",
                  help="With --alerts-db: only decisions made at or after this time.")
    @click.option("--follow", is_flag=True,
                  help="With --alerts-db: keep running, sending every --interval seconds the decisions made or "
                       "undone since the last pass, until SIGTERM/SIGINT.")
    @click.option("--interval", default=30.0, show_default=True, type=click.FloatRange(0.1),
                  help="With --follow: seconds between passes.")
    @click.option("--position", default=None, type=click.Path(dir_okay=False),
                  help="With --follow: a JSON file of the labels already sent, so that a restart sends only what "
                       "changed (without it the first pass sends every decision again; harmless).")
    def send_labels(**kw):
        """Send fraud labels (analysts' decisions, chargebacks) to the live scorer.

        Each labelled transaction goes to the input topic as a label event; the scorer applies it to its
        state, so the card and terminal fraud-history features count confirmed frauds as training did.
        Sending a label twice changes nothing."""
        from fraud.errors import ConfigError
        from streaming.broker import wait_for_broker
        from streaming.feedback import labelled_transactions, send

        setup_logging("WARNING")
        ckw = client_kw(kw)
        if kw["follow"]:
            return _follow(kw, ckw)
        labels, tx = _labels_to_send(kw)
        if not len(labels):  # e.g. no decision since --since: nothing to do (a scheduled run is not an error)
            click.echo("no labels to send")
            return None
        rows, missing = labelled_transactions(labels, tx)
        if missing:
            click.echo(f"{len(missing)} labelled tx_id(s) not found among the transactions (not sent), e.g. "
                       f"{', '.join(map(repr, missing[:5]))}", err=True)
        if not len(rows):
            raise ConfigError(f"none of the {len(missing)} labelled tx_id(s) is among the transactions (see above)")
        wait_for_broker(kw["bootstrap"], timeout=60, client_kw=ckw)
        n = send(rows, kw["bootstrap"], kw["topic"], client_kw=ckw)
        click.echo(f"sent {n} label(s) to {kw['topic']} ({int(rows['label'].sum())} fraud, "
                   f"{int((rows['label'] == 0).sum())} genuine)")

    @main.command()
    @click.option("--port", default=9092, show_default=True, type=int)
    @click.option("--host", default="127.0.0.1", show_default=True)
    @click.option("--topic", "topics", multiple=True, metavar="NAME:PARTITIONS",
                  help="Create a topic up front (repeatable), e.g. transactions:8.")
    def broker(port, host, topics):
        """Run a local Kafka-compatible broker (Tansu, in-memory) until SIGTERM/SIGINT."""
        import signal
        import threading

        from fraud.errors import ConfigError
        from streaming.broker import LocalBroker, ensure_topics

        setup_logging("WARNING")
        want = {}
        for t in topics:
            name, _, n = t.rpartition(":")
            if not name or not n.isdigit() or int(n) < 1:
                raise ConfigError(f"--topic {t!r}: expected NAME:PARTITIONS, e.g. transactions:8")
            want[name] = int(n)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *a: stop.set())
        signal.signal(signal.SIGINT, lambda *a: stop.set())
        b = LocalBroker(port=port, host=host).start()
        try:
            if want:
                ensure_topics(b.bootstrap, want)
            click.echo(f"bootstrap: {b.bootstrap}", nl=True)
            sys.stdout.flush()
            while not stop.wait(0.5):
                if b.proc is None or b.proc.poll() is not None:
                    raise click.ClickException(f"broker on {b.bootstrap} exited unexpectedly")
        finally:
            b.stop()
            click.echo("broker stopped", err=True)

    @bench.command("stream")
    @click.option("--bootstrap", default=None, help="Use this broker instead of starting a local one.")
    @click.option("--model", "model_uri", default=None, multiple=True,
                  help="Model URI [default: models:/<model_name>@champion]. Repeat to measure several models in one "
                       "run (same broker and events); the JSON then adds \"models\": {URI: figures}.")
    @click.option("--tracking-uri", default=None)
    @click.option("--events", default=20000, show_default=True, type=int, help="Events for the rate phase.")
    @click.option("--partitions", default=4, show_default=True, type=int)
    @click.option("--load", "offered", default=1000.0, show_default=True, type=float,
                  help="Offered load (events/s) of the latency phase.")
    @click.option("--seconds", default=10.0, show_default=True, type=float, help="Length of the latency phase.")
    @click.option("--batch-size", default=10000, show_default=True, type=int, help="Max events per scorer micro-batch.")
    @click.option("--linger-ms", default=None, type=int, help="Scorer producer linger [default: serve's].")
    @click.option("--data", default=None, type=click.Path(dir_okay=False, exists=True),
                  help="Events file (canonical .parquet/.csv) instead of a simulated world; the events after "
                       "the model's training cutoff are used when there are enough.")
    @click.option("--customers", default=1500, show_default=True, type=int,
                  help="Simulated world: customers (its traffic starts at the model's training cutoff). The "
                       "defaults are `fraud demo`'s world, the default model's: the stream then continues the "
                       "world the model learned (another world alerts far more: its customers are strangers).")
    @click.option("--terminals", default=3000, show_default=True, type=int, help="Simulated world: terminals.")
    @click.option("--seed", default=7, show_default=True, type=int, help="Simulated world: seed.")
    @click.option("--snapshot-events", default=None, type=int, help="Scorer --snapshot-events [default: serve's].")
    @click.option("--trace", default=None, type=click.Path(dir_okay=False),
                  help="Write a per-cycle trace of the latency phase (JSON) here; its summary joins the result.")
    @click.option("--ceiling", is_flag=True,
                  help="Also measure the scorer with a model that does no work (score 0): the most its share of "
                       "the pass-through could be with a free model (null_model_rate).")
    @click.option("--json", "as_json", is_flag=True, help="Print only the JSON result.")
    @click.pass_obj
    def bench_stream(settings, **kw):
        """Raw kafka-python consume rate vs the scorer's end-to-end rate, and p50/p99 latency at a fixed load."""
        from benchmarks.stream import run_stream_bench

        setup_logging("WARNING")
        data = None
        if kw["data"]:
            from fraud.io import load_transactions

            data = load_transactions(kw["data"])
        extra = {} if kw["snapshot_events"] is None else {"snapshot_events": kw["snapshot_events"]}
        res = run_stream_bench(data=data, customers=kw["customers"], terminals=kw["terminals"], seed=kw["seed"],
                               **extra,model_uri=list(kw["model_uri"]) or f"models:/{settings.model_name}@champion",
                               linger_ms=kw["linger_ms"],
                               tracking_uri=kw["tracking_uri"] or settings.tracking_uri, bootstrap=kw["bootstrap"],
                               n_events=kw["events"], partitions=kw["partitions"], offered=kw["offered"],
                               seconds=kw["seconds"], batch_size=kw["batch_size"], verbose=not kw["as_json"],
                               trace=kw["trace"], ceiling=kw["ceiling"])
        click.echo(json.dumps(res))


def _labels_to_send(kw) -> tuple:
    """(labels tx_id,label; the transactions they name) from ``fraud send-labels``' options."""
    from fraud.errors import ConfigError

    if bool(kw["alerts_db"]) == bool(kw["labels_path"]):
        raise ConfigError("give --alerts-db or --labels (one of them)")
    if kw["alerts_db"]:
        from fraud.store import AlertStore
        from fraud.training.data import to_utc

        store = AlertStore(kw["alerts_db"], must_exist=True)
        return store.live_labels(to_utc(kw["since"], "--since") if kw["since"] is not None else None), \
            store.read_alerts()
    from fraud.training.data import read_labels

    if bool(kw["archive"]) == bool(kw["data"]):
        raise ConfigError("--labels needs --archive or --data (one of them): where its transactions are")
    if kw["archive"]:
        from fraud.archive import events

        return read_labels(kw["labels_path"]), events(kw["archive"])
    from fraud.commands.common import load_or_fail

    return read_labels(kw["labels_path"]), load_or_fail(kw["data"], None, None)


def _follow(kw, ckw) -> None:
    """``fraud send-labels --follow``: :func:`streaming.feedback.follow` until a signal."""
    import threading

    from fraud.errors import ConfigError
    from fraud.store import AlertStore
    from fraud.training.data import to_utc
    from streaming.feedback import follow

    if not kw["alerts_db"] or kw["labels_path"]:
        raise ConfigError("--follow goes with --alerts-db (the decisions as analysts make them), not --labels")
    setup_logging("INFO")
    stop = threading.Event()
    install_stop_signals(stop, "stopping after the current pass")
    follow(AlertStore(kw["alerts_db"], must_exist=True), kw["bootstrap"], kw["topic"], stop,
           interval=kw["interval"], since=to_utc(kw["since"], "--since") if kw["since"] is not None else None,
           position=kw["position"], client_kw=ckw)
