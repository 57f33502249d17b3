"""The server's shared answers (server/cache.py): one computation for concurrent callers, reused only while
its key is unchanged, never a kept failure."""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from jupyter_containers.backends.base import EngineEvent
from jupyter_containers.server.cache import EngineWatch, Snapshot, stamps


def test_concurrent_callers_share_one_computation():
    snapshot: Snapshot[int] = Snapshot()
    calls = []
    started = threading.Event()

    def compute() -> int:
        calls.append(1)
        started.set()
        time.sleep(0.2)
        return 42

    results = []
    threads = [threading.Thread(target=lambda: results.append(snapshot.get("k", compute))) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [42] * 10
    assert len(calls) == 1


def test_a_new_key_computes_again_and_reuse_false_always_does():
    snapshot: Snapshot[int] = Snapshot()
    counter = iter(range(100))
    assert snapshot.get("a", lambda: next(counter)) == 0
    assert snapshot.get("a", lambda: next(counter)) == 0
    assert snapshot.get("b", lambda: next(counter)) == 1
    assert snapshot.get("b", lambda: next(counter), reuse=False) == 2


def test_a_failure_is_raised_and_not_kept():
    snapshot: Snapshot[int] = Snapshot()

    def fail() -> int:
        raise ValueError("engine gone")

    with pytest.raises(ValueError):
        snapshot.get("k", fail)
    assert snapshot.get("k", lambda: 7) == 7


def test_stamps_change_when_a_file_does(tmp_path):
    path = tmp_path / "containers.lock"
    before = stamps([path])
    path.write_text("x")
    after = stamps([path])
    assert before != after
    path.write_text("xy")
    assert stamps([path]) != after


def test_the_event_counter_moves_with_each_event_and_is_unknown_without_a_stream():
    # A stand-in for the engine's event stream (the real one is exercised by the server tests).
    events: list[EngineEvent] = []
    gate = threading.Event()
    done = threading.Event()

    def stream():
        gate.wait(5)
        yield from events
        done.wait(5)  # the connection stays open, as the engine's does

    watch = EngineWatch(lambda: stream())
    assert watch.generation("image") is None  # not connected yet: nothing may be reused
    watch.start()
    deadline = time.monotonic() + 5
    while watch.generation("image") is None and time.monotonic() < deadline:
        time.sleep(0.01)
    first = watch.generation("image")
    assert first is not None
    events.extend([EngineEvent("image", "tag", "sha256:1"), EngineEvent("container", "start", "c")])
    gate.set()
    deadline = time.monotonic() + 5
    while watch.generation("image") == first and time.monotonic() < deadline:
        time.sleep(0.01)
    # then exactly the one image event moved the image counter
    assert watch.generation("image") == first + 1
    watch.stop()
    done.set()


def test_a_kept_result_expires_after_its_max_age_and_on_invalidate(monkeypatch):
    import jupyter_containers.server.cache as cache

    now = [100.0]
    monkeypatch.setattr(cache.time, "monotonic", lambda: now[0])
    snapshot: Snapshot[int] = Snapshot()
    counter = itertools.count()
    assert snapshot.get("k", lambda: next(counter), max_age=1.0) == 0
    now[0] += 0.9
    assert snapshot.get("k", lambda: next(counter), max_age=1.0) == 0
    now[0] += 0.2
    assert snapshot.get("k", lambda: next(counter), max_age=1.0) == 1
    snapshot.invalidate()
    assert snapshot.get("k", lambda: next(counter), max_age=1.0) == 2
    assert snapshot.get("k", lambda: next(counter)) == 2
