"""Tests of genrobust.store.cached, the one cache-file mechanism (units, the decoded-data cache and FID's caches use
it): a good file is read and not recomputed (the negative control of every corrupt case); a corrupt, truncated or
foreign file warns once in one line, is deleted with its companions and computed again; a reader's own bug is not
taken for a corrupt file; writes are atomic; a best-effort cache that cannot be written warns and goes on."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from genrobust.store.cached import CacheWarning, CachedFile


class Counter:
    def __init__(self, value):
        self.value, self.calls = value, 0

    def __call__(self):
        self.calls += 1
        return self.value


def _array_file(path, shape=(4, 3), **kw) -> CachedFile:
    def read(p):
        a = np.load(p, allow_pickle=False)
        if a.shape != shape:
            raise ValueError(f"shape {a.shape}, expected {shape}")
        return a

    return CachedFile(path, read, np.save, what="test cache file", **kw)


def _value():
    return np.arange(12.0).reshape(4, 3)


def test_a_good_file_is_read_and_not_recomputed(tmp_path):
    compute = Counter(_value())
    entry = _array_file(tmp_path / "a.npy")
    assert entry.get() is None                                  # absent: no warning, nothing read
    first = entry.get_or_compute(compute)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                          # a good file reads silently
        again = entry.get_or_compute(compute)
    assert compute.calls == 1 and np.array_equal(first, again)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy"]     # no temporary file left


@pytest.mark.parametrize("damage", [
    lambda p: p.write_bytes(b"garbage"),                        # edited / not ours
    lambda p: p.write_bytes(p.read_bytes()[:60]),               # truncated mid-copy
    lambda p: np.save(p, np.zeros((2, 2))),                     # parses, but not what was asked (foreign key/shape)
    lambda p: p.write_bytes(b""),                               # empty
])
def test_a_corrupt_file_warns_once_is_deleted_and_recomputed(tmp_path, damage):
    compute = Counter(_value())
    companion = tmp_path / "a.pt"
    entry = _array_file(tmp_path / "a.npy", companions=(companion,))
    entry.get_or_compute(compute)
    companion.write_bytes(b"vouched for by a.npy")
    damage(entry.path)
    with pytest.warns(CacheWarning) as caught:
        got = entry.get()
    assert got is None and not entry.path.exists() and not companion.exists()     # deleted with its companion
    (w,) = caught                                               # once, in one line naming the file and the problem
    msg = str(w.message)
    assert "\n" not in msg and str(entry.path) in msg and "corrupt test cache file" in msg
    again = entry.get_or_compute(compute)
    assert compute.calls == 2 and np.array_equal(again, _value())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.array_equal(entry.get(), _value())            # the rewritten file reads silently


def test_the_warning_class_is_the_callers(tmp_path):
    class MyWarning(UserWarning):
        pass

    entry = _array_file(tmp_path / "a.npy", category=MyWarning)
    entry.path.write_bytes(b"garbage")
    with pytest.warns(MyWarning, match="corrupt"):
        entry.get()


def test_a_readers_own_bug_is_not_taken_for_a_corrupt_file(tmp_path):
    def read(p):
        return undefined_name  # noqa: F821 - the bug under test

    entry = CachedFile(tmp_path / "a.json", read, lambda fh, v: fh.write(json.dumps(v).encode()))
    entry.put({"x": 1})
    with pytest.raises(NameError):
        entry.get()
    assert entry.path.is_file()                                 # not deleted


def test_writes_are_atomic(tmp_path):
    entry = CachedFile(tmp_path / "r.json", lambda p: json.loads(p.read_text()),
                       lambda fh, v: fh.write(json.dumps(v).encode()))
    entry.put({"v": 1})

    def broken(fh, v):
        fh.write(b'{"v": ')                                     # half a file, then the writer dies
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="killed"):
        CachedFile(entry.path, entry.read, broken).put({"v": 2})
    assert entry.get() == {"v": 1} and [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_best_effort_write_failure_warns_and_returns_the_value(tmp_path):
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the cache directory should be")
    entry = _array_file(blocked / "a.npy", best_effort=True)
    with pytest.warns(CacheWarning, match="cannot write"):
        assert np.array_equal(entry.get_or_compute(_value), _value())
    with pytest.raises(OSError):                                # negative control: results are never best effort
        _array_file(blocked / "a.npy").put(_value())
