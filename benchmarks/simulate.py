"""Speed and peak memory of the simulator (``fraud bench simulate``). The simulation runs in a child process
so that its peak RSS (ru_maxrss of RUSAGE_SELF) is the simulation's alone, plus the interpreter and imports,
reported apart."""
from __future__ import annotations

import json

_CHILD = r"""
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


def run_simulate(customers: int, terminals: int, days: int, seed: int) -> tuple[dict, dict]:
    """The figures (``transactions``, ``seconds``, ``tx_per_s``, ``peak_mib``) and the child's raw record.
    Raises FraudError when the child fails."""
    import subprocess
    import sys

    from fraud.errors import FraudError

    cmd = [sys.executable, "-c", _CHILD, str(customers), str(terminals), str(days), str(seed)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise FraudError(f"bench simulate: the simulation child process failed "
                         f"(exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"transactions": r["transactions"], "seconds": round(r["seconds"], 3),
            "tx_per_s": round(r["transactions"] / max(r["seconds"], 1e-9), 1),
            "peak_mib": round(r["peak_kib"] / 1024, 1)}, r


def table(out: dict, raw: dict, customers: int, terminals: int, days: int, seed: int) -> str:
    """The figures as text."""
    return "\n".join([
        f"world: {customers} customers, {terminals} terminals, {days} days, seed {seed}",
        f"transactions: {out['transactions']} ({raw['frauds']} frauds)",
        f"seconds: {out['seconds']:.2f}",
        f"tx/s: {out['tx_per_s']:,.0f}",
        f"peak memory: {out['peak_mib']:.0f} MiB (peak RSS of the child process running the "
        f"simulation; {raw['base_kib'] / 1024:.0f} MiB of it is Python, numpy and pandas after import)"])
