"""Kernels compiled by numba on first use: on-disk cache where the package folder allows one; callers fall back
to their numpy/library path when numba is absent (``compiled`` then returns None)."""
from __future__ import annotations


def njit(numba, f, **kw):
    """numba.njit with an on-disk cache where the package folder allows one, else without."""
    try:
        return numba.njit(cache=True, nogil=True, **kw)(f)
    except Exception:  # no cache locator (read-only install): compile per process
        return numba.njit(nogil=True, **kw)(f)


def compiled(store: list, f):
    """The compiled ``f``, kept in ``store`` (a one-element list a test can set to ``[None]`` to force the
    fallback), or None without numba."""
    if not store:
        try:
            import numba
        except ImportError:  # pragma: no cover - numba is a dependency
            store.append(None)
            return None
        store.append(njit(numba, f))
    return store[0]
