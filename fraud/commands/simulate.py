"""fraud simulate; fraud bench simulate."""
from __future__ import annotations

import json

import click

# Runs in a child process so that its peak RSS (ru_maxrss of RUSAGE_SELF) is the simulation's
# alone (plus the interpreter and imports, reported separately as base_mib).
_BENCH_CHILD = r"""
import json, resource, sys, time
import numpy, pandas
from fraud.simulate import simulate
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
c, t, d, s = (int(x) for x in sys.argv[1:5])
t0 = time.perf_counter()
df = simulate(customers=c, terminals=t, days=d, seed=s)
sec = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"transactions": len(df), "seconds": sec, "peak_kib": peak, "base_kib": base,
                  "frauds": int(df["label"].sum())}))
"""


def _summary(df) -> str:
    counts = df["scenario"].value_counts().sort_index()
    per = ", ".join(f"{int(k)}={int(v)}" for k, v in counts.items() if k > 0)
    return (f"{len(df)} transactions, {df['customer_id'].nunique()} customers, "
            f"{df['terminal_id'].nunique()} terminals, {int(df['label'].sum())} frauds "
            f"({df['label'].mean():.3%}); per scenario: {per or 'none'}")


def _world_options(f):
    opts = [
        click.option("--customers", default=5000, show_default=True, type=click.IntRange(min=1),
                     help="Number of customers (cards)."),
        click.option("--terminals", default=10000, show_default=True, type=click.IntRange(min=1),
                     help="Number of terminals."),
        click.option("--days", default=183, show_default=True, type=click.IntRange(min=1),
                     help="Number of days."),
        click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0), help="Random seed."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def register(main: click.Group, bench: click.Group) -> None:
    @main.command()
    @_world_options
    @click.option("--start", default="2018-04-01", show_default=True, help="First day (UTC).")
    @click.option("--out", required=True, type=click.Path(dir_okay=False),
                  help="Output file (.parquet or .csv).")
    def simulate(customers, terminals, days, seed, start, out):
        """Simulate a labelled world (genuine traffic and fraud scenarios 1-6) and write it."""
        from fraud.errors import ConfigError
        from fraud.io import write_transactions
        from fraud.simulate import simulate as run_sim

        if not str(out).lower().endswith((".parquet", ".pq", ".csv")):
            raise ConfigError(f"--out: {out!r} has unknown file type; use .csv or .parquet")
        df = run_sim(customers=customers, terminals=terminals, days=days, seed=seed, start=start,
                     progress=True)
        path = write_transactions(df, out)
        click.echo(f"wrote {path}: {_summary(df)}")

    @bench.command("simulate")
    @_world_options
    @click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
    def bench_simulate(customers, terminals, days, seed, as_json):
        """Time the simulator; peak memory = ru_maxrss of a child process that runs it."""
        import subprocess
        import sys

        from rich.console import Console

        from fraud.errors import FraudError

        cmd = [sys.executable, "-c", _BENCH_CHILD, str(customers), str(terminals), str(days), str(seed)]
        console = Console(stderr=True)
        with console.status(f"simulating {customers} customers, {terminals} terminals, {days} days"):
            proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise FraudError(f"bench simulate: the simulation child process failed "
                             f"(exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        out = {
            "transactions": r["transactions"],
            "seconds": round(r["seconds"], 3),
            "tx_per_s": round(r["transactions"] / max(r["seconds"], 1e-9), 1),
            "peak_mib": round(r["peak_kib"] / 1024, 1),
        }
        if as_json:
            click.echo(json.dumps(out))
            return
        click.echo(f"world: {customers} customers, {terminals} terminals, {days} days, seed {seed}")
        click.echo(f"transactions: {out['transactions']} ({r['frauds']} frauds)")
        click.echo(f"seconds: {out['seconds']:.2f}")
        click.echo(f"tx/s: {out['tx_per_s']:,.0f}")
        click.echo(f"peak memory: {out['peak_mib']:.0f} MiB (peak RSS of the child process running the "
                   f"simulation; {r['base_kib'] / 1024:.0f} MiB of it is Python, numpy and pandas after import)")
