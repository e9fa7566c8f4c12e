"""One BLAS thread while the scorer works (a micro-batch's features and detectors): the scorer runs single-threaded,
and on its small matrices BLAS threads cost far more than they save (a 10,000-row autoencoder pass: 20 ms with
OpenBLAS's 2 threads on a busy 2-core machine vs 1.1 ms with one). Shared by the bundle and the detectors; a
context entered inside another is a no-op."""
from __future__ import annotations

import contextlib
import threading

_BLAS = []


def single_threaded_blas():
    """A context limiting BLAS to one thread while a micro-batch is scored. The scorer runs single-threaded:
    OpenBLAS's threads on the small matrices of the sequence encoder's GRU and heads cost far more than they
    save (measured on a 10,000-row batch: 102 ms of CPU with 2 threads vs 40 ms with one, the GRU loop alone
    52 ms vs 2 ms). The library lookup is done once per process; entering costs ~35 us."""
    if not _BLAS:
        try:
            from threadpoolctl import ThreadpoolController

            _BLAS.append(ThreadpoolController().select(user_api="blas"))
        except Exception:  # pragma: no cover - threadpoolctl missing or a BLAS it cannot drive
            _BLAS.append(None)
    if _BLAS[0] is None or getattr(_ONE_THREAD, "active", False):  # already limited by an outer call
        return contextlib.nullcontext()
    return _limited(_BLAS[0])


_ONE_THREAD = threading.local()


@contextlib.contextmanager
def _limited(controller):
    with controller.limit(limits=1):
        _ONE_THREAD.active = True
        try:
            yield
        finally:
            _ONE_THREAD.active = False
