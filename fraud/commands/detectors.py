"""fraud bench detectors (ECOD/COPOD/IForest vs PyOD, the ensemble's scoring rate); fraud bench heads
(LightGBM vs HistGradientBoosting, reason attributions vs TreeSHAP); the code they run is
``benchmarks.detectors`` and ``benchmarks.heads``."""
from __future__ import annotations

import json

import click

from fraud.commands.common import data_options


def register(main: click.Group, bench: click.Group) -> None:
    @bench.command("detectors")
    @click.option("--rows", default=200_000, show_default=True, help="Training rows (synthetic, lognormal features).")
    @click.option("--features", default=15, show_default=True, help="Number of features.")
    @click.option("--seed", default=0, show_default=True)
    @click.option("--skip-pyod", is_flag=True, help="Skip PyOD's ECOD/COPOD (slow) and report only ours.")
    def bench_detectors(rows, features, seed, skip_pyod):
        """Speed of FastECOD/FastCOPOD vs PyOD (1 row, 10,000 rows) and of the unsupervised ensemble
        (rows/s on a large batch, ms per 100-row micro-batch). Ratios are measured in the same process."""
        from benchmarks.detectors import run_detectors

        run_detectors(rows=rows, features=features, seed=seed, skip_pyod=skip_pyod)

    @bench.command("heads")
    @data_options(required=False, rejects=False)
    @click.option("--customers", default=1000, show_default=True, help="Simulated world size when --data is absent.")
    @click.option("--days", default=60, show_default=True)
    @click.option("--trees", default=300, show_default=True, help="Boosting iterations of both heads.")
    @click.option("--delay-days", default=7, show_default=True, help="Feedback delay: training labels end this long before the test window.")
    @click.option("--explain-rows", default=2000, show_default=True, help="Top-scored test rows used to compare reason attributions.")
    @click.option("--seed", default=0, show_default=True)
    @click.option("--json", "as_json", is_flag=True)
    def bench_heads(data, columns, preset, customers, days, trees, delay_days, explain_rows, seed, as_json):
        """Supervised head choice and reason-code attributions, on tabular features (BaselineFeatures).

        Time split: the last third of the period is the test window; the heads train on labelled
        rows older than its start minus the feedback delay. Reports, for LightGBM and sklearn's
        HistGradientBoosting with the same settings: fit seconds, single-threaded scoring rows/s,
        AP and ROC AUC on the test window. Then, on the top-scored test rows of the LightGBM head, how
        well the cheap attributions agree with TreeSHAP (LightGBM pred_contrib): path attributions
        (used for reason codes) and ECDF tail outlyingness weighted by gain importance; agreement =
        top-1 equal, top-1 within TreeSHAP's top 3, mean overlap of the top-3 sets; and their speed."""
        from benchmarks.heads import run_heads
        from fraud.commands.common import load_or_fail

        load = (lambda: load_or_fail(data, columns, preset)) if data else None
        out = run_heads(load, data, customers=customers, days=days, trees=trees, delay_days=delay_days,
                        explain_rows=explain_rows, seed=seed)
        if as_json:
            click.echo(json.dumps(out))
        else:
            for k, v in out.items():
                if k != "features":
                    click.echo(f"{k}: {v}")
