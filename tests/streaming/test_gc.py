"""freeze_heap: the scorer moves its start-up heap out of Python's full collections."""
import gc
import weakref

from streaming.model import freeze_heap, thaw_heap


class _Node:
    pass


def test_freeze_heap_collects_cycles_first_then_freezes():
    gc.unfreeze()
    before = gc.get_threshold()
    try:
        a, b = _Node(), _Node()
        a.other, b.other = b, a  # a reference cycle: only the cyclic collector frees it
        dead = weakref.ref(a)
        kept = _Node()
        kept.self = kept
        alive = weakref.ref(kept)
        del a, b
        n = freeze_heap()
        assert gc.get_threshold() == (*before[:2], 100)  # full collections 10x rarer while serving
        assert dead() is None  # collected before the freeze, not frozen forever
        assert alive() is kept
        # the count it returns is what it froze; frozen objects are still freed by reference counting (another
        # thread of the test process may drop some at any moment: 22 of 1.1 M in one CI run), never added
        assert 0 < gc.get_freeze_count() <= n
        # a later full collection leaves the frozen objects alone (kept stays) and still frees new cycles
        c = _Node()
        c.self = c
        dead_c = weakref.ref(c)
        del c
        gc.collect()
        assert dead_c() is None and alive() is kept
        # a second call (as after a model swap) unfreezes first: the old objects' cycles are collected
        old = _Node()
        old.self = old
        dead_old = weakref.ref(old)
        freeze_heap()
        del old
        gc.collect()
        assert dead_old() is not None  # frozen: the cyclic collector does not see it
        freeze_heap()
        assert dead_old() is None
    finally:
        thaw_heap()
    assert gc.get_freeze_count() == 0 and gc.get_threshold() == before
