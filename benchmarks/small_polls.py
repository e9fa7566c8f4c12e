"""Small polls in process: the scorer's per-poll path (decode, to_frame, ``streaming.batch.score`` with a drift
observer) on polls of ~28 events over 4 partitions, as ``fraud bench stream`` sees at 1,000 events/s, without a
broker or a load generator. Prints ms per poll (median, p90) and, with ``--profile``, where the time goes.

The model is trained once on a simulated world (``--customers/--terminals/--days/--seed``, training until
``--train-until-day``); the stream continues from its warm state (``initial_state_``) with the events after the
cutoff. ``--cache FILE`` keeps the trained bundle (a pickle this harness wrote itself, read back only from a folder
private to this user) so that two code trees can be measured back to back on the same model; ``--save FILE`` writes
the scores (npy) so that two trees' scores can be compared bit for bit.

Run: ``python -m benchmarks.small_polls`` (or ``python benchmarks/small_polls.py`` with another tree on
PYTHONPATH). Figures go to docs/streaming.md.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import os
import pickle
import pstats
import time
import zlib
from types import SimpleNamespace

import numpy as np


def trained_bundle(args):
    """The bundle (trained now, or read from ``args.cache`` when that file exists) and the world's events."""
    from fraud.simulate import simulate

    df = simulate(customers=args.customers, terminals=args.terminals, days=args.days, seed=args.seed)
    df = df.sort_values("timestamp", kind="stable").reset_index(drop=True)
    if args.cache and os.path.exists(args.cache):
        _check_private(args.cache)
        with open(args.cache, "rb") as fh:
            return pickle.load(fh), df
    from fraud.training import train

    cut = df["timestamp"].min().normalize() + np.timedelta64(args.train_until_day, "D")
    bundle = train(df[df["timestamp"] < cut], train_until=cut).bundle
    if args.cache:
        with open(args.cache, "wb") as fh:
            pickle.dump(bundle, fh)
    return bundle, df


def _check_private(path: str) -> None:
    """Refuse a cache that someone else could have written (unpickling runs code): the file and its folder must be
    this user's and writable by no one else, as ssh's StrictModes asks of its key files."""
    import stat

    from fraud.errors import ConfigError

    for p in (path, os.path.dirname(os.path.abspath(path))):
        st = os.stat(p)
        if st.st_uid != os.getuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise ConfigError(f"--cache {path!r}: {p!r} is not private to this user (owner uid {st.st_uid}, mode "
                              f"{stat.filemode(st.st_mode)}); the cache is a pickle, so it is read only from a folder "
                              "no one else can write (e.g. mkdir -m 700 ~/.cache/fraud-bench)")


def polls(bundle, df, size: int, partitions: int, n_polls: int) -> list:
    """Messages (as the consumer hands them) of ``n_polls`` polls of ``size`` events after the model's cutoff,
    each event on partition crc32(customer_id) % ``partitions``, grouped by partition within a poll."""
    from streaming.replay import encode_events

    cut = np.datetime64(str(bundle.config.get("train_until")).replace("+00:00", ""))
    ev = df[df["timestamp"].dt.tz_localize(None) >= cut].iloc[:size * n_polls].reset_index(drop=True)
    values, keys = encode_events(ev)
    ms = (ev["timestamp"].astype("int64") // 10**6).to_numpy()
    part = [zlib.crc32(k) % partitions for k in keys]
    offs = [0] * partitions
    out = []
    for lo in range(0, len(values), size):
        batch = []
        for i in sorted(range(lo, min(lo + size, len(values))), key=lambda i: part[i]):
            batch.append(SimpleNamespace(value=values[i], key=keys[i], partition=part[i], offset=offs[part[i]],
                                         timestamp=int(ms[i])))
            offs[part[i]] += 1
        out.append(batch)
    return out


def run(bundle, all_polls, partitions: int, warm: int, prof=None):
    """Score the polls through the scorer's path; returns ((wall, thread CPU) ms per poll after ``warm`` polls),
    scores). The CPU time is what contention on a shared machine blurs least. ``prof``:
    a profiler enabled for the timed polls only."""
    from fraud.drift import DriftWindow
    from streaming import batch
    from streaming.decode import EventRules, decode, to_frame
    from streaming.model import warm_up

    warm_up(bundle)
    if bundle.drift_profile:
        bundle.observer = DriftWindow(bundle.drift_profile, bundle.feature_names).update
    states = {p: bundle.warm_state() for p in range(partitions)}
    rules, times, scores = EventRules(), [], []
    for k, msgs in enumerate(all_polls):
        if prof is not None and k == warm:
            prof.enable()
        t0, c0 = time.perf_counter(), time.thread_time()
        d, _ = decode(msgs, rules)
        rows, order = to_frame(d)
        ms = [d.msgs[i] for i in order]
        part = np.fromiter((m.partition for m in ms), dtype=np.int32, count=len(ms))
        offs = np.fromiter((m.offset for m in ms), dtype=np.int64, count=len(ms))
        res, _, cols = batch.score(bundle, "1", {p: states[p] for p in set(part.tolist())}, rows, part, offs, "tx")
        times.append(((time.perf_counter() - t0) * 1000.0, (time.thread_time() - c0) * 1000.0))
        scores.append(cols["score"])
    if prof is not None:
        prof.disable()
    return np.asarray(times[warm:]).T, np.concatenate(scores)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=1500)
    ap.add_argument("--terminals", type=int, default=3000)
    ap.add_argument("--days", type=int, default=75)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--train-until-day", type=int, default=60)
    ap.add_argument("--size", type=int, default=28, help="events per poll")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--polls", type=int, default=400)
    ap.add_argument("--warm", type=int, default=20, help="polls not timed (first calls, caches)")
    ap.add_argument("--cache", help="pickle of the trained bundle (written by this harness)")
    ap.add_argument("--save", help="write the scores (npy) here")
    ap.add_argument("--profile", type=int, default=0, help="print the top N functions (cProfile, cumulative)")
    ap.add_argument("--sort", default="cumulative", help="cProfile order (cumulative, tottime)")
    args = ap.parse_args(argv)
    import fraud

    bundle, df = trained_bundle(args)
    ps = polls(bundle, df, args.size, args.partitions, args.polls)
    prof = cProfile.Profile() if args.profile else None
    (ms, cpu), scores = run(bundle, ps, args.partitions, args.warm, prof)
    if prof:
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats(args.sort).print_stats(args.profile)
        print(s.getvalue())
    if args.save:
        np.save(args.save, scores)
    print(f"code {os.path.dirname(fraud.__file__)}: {len(ms)} polls of {args.size} events over {args.partitions} "
          f"partitions: median {np.median(ms):.2f} ms, p90 {np.percentile(ms, 90):.2f} ms, mean {ms.mean():.2f} ms; "
          f"CPU (this thread) median {np.median(cpu):.2f} ms, p90 {np.percentile(cpu, 90):.2f} ms; "
          f"alerts {(scores >= bundle.threshold).mean():.3f}")
    per = {k: v * 1000.0 / len(ps) for k, v in bundle.timings.items()}
    print("per poll (ms): " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(per.items(), key=lambda kv: -kv[1])))


if __name__ == "__main__":
    main()
