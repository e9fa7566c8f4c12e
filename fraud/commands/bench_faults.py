"""fraud bench faults: the scorer under injected faults and poison events (issue 13's acceptance benchmark;
the harness is ``benchmarks.faults``, outside the product)."""
from __future__ import annotations

import json

import click


def register(main: click.Group, bench: click.Group) -> None:
    @bench.command("faults")
    @click.option("--events", default=2000, show_default=True, type=int, help="Good events in the corpus.")
    @click.option("--seed", default=7, show_default=True, type=int, help="Simulated world and corpus order.")
    @click.option("--workdir", default=None, type=click.Path(file_okay=False),
                  help="Where the run's files go (kept) [default: a temporary directory].")
    @click.option("--keep", is_flag=True, help="Keep the temporary directory (logs, archive, alert store).")
    @click.option("--lock-seconds", default=15.0, show_default=True, type=float,
                  help="How long the alert store is write-locked.")
    @click.option("--json", "as_json", is_flag=True, help="Print only the JSON result.")
    def bench_faults(**kw):
        """The real scorer (`fraud serve`, restarted when it exits) against a local broker while poison, odd and
        duplicate events stream in with four faults: archive unwritable, alert store locked, broker restart,
        kill -9. Counts scored, lost, duplicated, dead-lettered and crashes; `goal_met` when none is wrong."""
        from benchmarks.faults import FaultConfig, run_faults, table
        from fraud.commands.stream import setup_logging

        setup_logging("WARNING")
        cfg = FaultConfig(events=kw["events"], seed=kw["seed"], workdir=kw["workdir"], keep=kw["keep"],
                          lock_seconds=kw["lock_seconds"])
        say = (lambda s: None) if kw["as_json"] else (lambda s: click.echo(s, err=True))
        res = run_faults(cfg, say=say)
        click.echo(json.dumps(res) if kw["as_json"] else table(res))
