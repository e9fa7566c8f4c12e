"""``fraud compile`` (``fraud.warmup``): every numba kernel of the product gets compiled and its cache written."""
from __future__ import annotations

import os

from click.testing import CliRunner

from fraud.cli import main
from fraud.warmup import numba_dispatchers

#: kernels the product calls only in a mode the warm-up does not run: the skip-gram's lock-free threads
#: (``Node2Vec(workers > 1)``; the product trains with one worker)
NOT_WARMED = {"models.node2vec._sgns_hogwild"}


def _index_written(dispatcher) -> bool:
    """True when numba wrote this kernel's on-disk cache index (compiled here or by an earlier process)."""
    cache_file = getattr(getattr(dispatcher, "_cache", None), "_cache_file", None)
    return cache_file is not None and os.path.exists(cache_file._index_path)


def test_compile_caches_every_kernel_on_disk():
    result = CliRunner().invoke(main, ["compile"], catch_exceptions=False)
    assert result.exit_code == 0 and "kernels compiled and cached in" in result.output
    kernels = numba_dispatchers()
    # the kernels of each module that holds some (a new module's kernels are found the same way)
    assert {name.rsplit(".", 1)[0] for name in kernels} >= {
        "fraud.features.graph", "fraud.features.collusion", "fraud.features.tabular", "fraud.detectors.unsupervised",
        "fraud.detectors.supervised", "models.node2vec"}
    unwritten = sorted(name for name, d in kernels.items() if name not in NOT_WARMED and not _index_written(d))
    assert not unwritten, f"kernels the warm-up leaves without an on-disk cache: {unwritten}"
