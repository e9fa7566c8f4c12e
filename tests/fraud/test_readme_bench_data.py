"""The README's bench table writes `fraud bench node2vec --data HANDBOOK` and `fraud bench sequence --data HANDBOOK`
without `--preset`: like `fraud bench handbook` and `fraud bench features`, they take a file with the handbook's
column names as it is (they failed with "missing required column(s)"). A file with the canonical names keeps them."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from fraud.cli import main
from fraud.io import PRESETS
from fraud.simulate import simulate


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench_data")
    world = simulate(customers=60, terminals=120, days=20, seed=0)
    world.rename(columns=PRESETS["handbook"]).to_parquet(d / "handbook.parquet")
    world.to_csv(d / "canonical.csv", index=False)
    return d


@pytest.mark.parametrize("args", [
    ["sequence", "--epochs", "1", "--fit-days", "10", "--events", "20", "--json"],
    ["node2vec", "--compare-nodes", "50", "--no-defaults", "--json"],
])
def test_bench_reads_a_handbook_file_without_preset(files, args):
    r = CliRunner().invoke(main, ["bench", args[0], "--data", str(files / "handbook.parquet"), *args[1:]])
    assert r.exception is None and r.exit_code == 0, r.output


def test_auto_preset_names_the_handbook_only_for_its_columns(files):
    from fraud.commands.common import auto_preset

    assert auto_preset(str(files / "handbook.parquet"), None, None) == "handbook"
    assert auto_preset(str(files / "canonical.csv"), None, None) is None
    assert auto_preset(str(files / "handbook.parquet"), None, "canonical") == "canonical"   # an explicit choice wins
