"""``fraud bench worlds --set KEY=VALUE``: training overrides parsed into TrainConfig keyword arguments."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from benchmarks.worlds import train_overrides
from fraud.errors import ConfigError
from fraud.training import TrainConfig


def test_featurizer_parameters_and_fields():
    kw = train_overrides(["graph.refresh_lr=0.05", "graph.convergence=true", "graph.embedder=gnn", "seed=3",
                          "featurizers=[\"tabular\", \"graph\"]"])
    assert kw == {"featurizer_params": {"graph": {"refresh_lr": 0.05, "convergence": True, "embedder": "gnn"}},
                  "seed": 3, "featurizers": ["tabular", "graph"]}
    assert TrainConfig(**kw).featurizer_params["graph"]["refresh_lr"] == 0.05
    assert train_overrides([]) == {}


@pytest.mark.parametrize("bad", ["refresh_lr", "=1", "bogus_field=1"])
def test_a_bad_override_is_named(bad):
    with pytest.raises(ConfigError, match="--set"):
        train_overrides([bad])


def test_the_cli_option_reaches_the_config():
    from fraud.cli import main

    res = CliRunner().invoke(main, ["bench", "worlds", "--set", "nonsense", "--seeds", "1000"])
    assert res.exit_code != 0 and "nonsense" in str(res.exception or res.output)
