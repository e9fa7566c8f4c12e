"""fraud bench sequence: speed of the sequence encoder (batch encode, one-event update); the code it runs is
``benchmarks.sequence``."""
from __future__ import annotations

import json

import click

from fraud.commands.common import auto_preset, data_options, load_or_fail


def register(main: click.Group, bench: click.Group) -> None:
    @bench.command("sequence")
    @data_options(required=False, rejects=False)
    @click.option("--customers", default=5000, show_default=True, help="Without --data: simulated customers.")
    @click.option("--terminals", default=10000, show_default=True, help="Without --data: simulated terminals.")
    @click.option("--days", default=183, show_default=True, help="Without --data: simulated days (handbook size).")
    @click.option("--fit-days", default=30, show_default=True, help="Fit the encoder on the first N days.")
    @click.option("--epochs", default=4, show_default=True, help="Self-supervised training epochs.")
    @click.option("--max-train-events", default=300_000, show_default=True, help="Training budget (events).")
    @click.option("--events", default=2000, show_default=True, help="Single events timed (the last N rows).")
    @click.option("--threads", default=1, show_default=True,
                  help="torch.set_num_threads for the single-event timing (as the stream scorer runs).")
    @click.option("--seed", default=0, show_default=True)
    @click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
    def sequence(data, columns, preset, customers, terminals, days, fit_days, epochs, max_train_events, events,
                 threads, seed, as_json):
        """Encode every transaction in batch (target <= 120 s for 1.75M) and time one-event updates
        (target median <= 1 ms). Without --data, a handbook-sized simulated world is used."""
        from benchmarks.sequence import run_sequence, table

        load = (lambda: load_or_fail(data, columns, auto_preset(data, columns, preset))) if data else None
        try:
            res = run_sequence(load, data, customers=customers, terminals=terminals, days=days, fit_days=fit_days,
                               epochs=epochs, max_train_events=max_train_events, events=events, threads=threads,
                               seed=seed)
        except ValueError as e:
            raise click.ClickException(str(e)) from None
        click.echo(json.dumps(res, indent=1) if as_json else table(res))
