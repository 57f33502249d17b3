"""Answers the server computes once for every client that asks at the same time, and keeps while nothing
they depend on changed.

A sidebar polls every couple of seconds, and a GPU host may have twenty of them open: recomputing the
environments' status (a Dockerfile render and hash per environment, several engine calls) or the container
listing for each request made every client wait for all the others. :class:`Snapshot` shares one
computation among concurrent callers (single flight) and reuses its result while its *key* is unchanged;
the key is built from what the answer depends on (file stamps, the engine's event counters), so an answer
is never older than the last change it could show.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from pathlib import Path
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Snapshot(Generic[T]):
    """The last result of one computation, keyed; concurrent callers with the same key share one run."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._key: Hashable = None
        self._value: Any = None
        self._valid = False
        self._computing: Hashable = None
        self._busy = False
        self._computed_at = 0.0

    def get(self, key: Hashable, compute: Callable[[], T], *, reuse: bool = True, max_age: float | None = None) -> T:
        """``compute()``'s result for ``key``: the kept one (``reuse``, and not older than ``max_age`` seconds
        when given), else one run shared by every caller that asks meanwhile. A failure is raised to the
        callers who waited for that run and is not kept."""
        with self._changed:
            while True:
                fresh = max_age is None or time.monotonic() - self._computed_at <= max_age
                if reuse and self._valid and self._key == key and fresh:
                    return self._value
                if not self._busy:
                    self._busy, self._computing = True, key
                    break
                if self._computing == key:
                    # Someone computes exactly this: wait for it and take its result.
                    self._changed.wait()
                    if self._valid and self._key == key:
                        return self._value
                    continue
                self._changed.wait()
        started = time.monotonic()
        try:
            value = compute()
        except BaseException:
            with self._changed:
                self._busy = False
                self._changed.notify_all()
            raise
        with self._changed:
            self._key, self._value, self._valid, self._busy = key, value, True, False
            self._computed_at = started

            self._changed.notify_all()
        return value

    def invalidate(self) -> None:
        """Forget the kept result (a change this process made, whose engine event may not have come yet)."""
        with self._changed:
            self._valid = False


def stamps(paths: Iterable[Path]) -> tuple[tuple[str, int, int] | tuple[str], ...]:
    """``(path, mtime_ns, size)`` per file (``(path,)`` when missing): what a cached answer read."""
    out: list[tuple[str, int, int] | tuple[str]] = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            out.append((str(path),))
            continue
        out.append((str(path), st.st_mtime_ns, st.st_size))
    return tuple(out)


class EngineWatch:
    """Counts the engine's image and container events in a background thread.

    ``generation("image")`` changes whenever an image is built, tagged, pulled or removed; answers keyed on
    it are exact. While the event stream is not connected, :meth:`generation` returns None: callers must
    not reuse anything then.
    """

    def __init__(self, events: Callable[[], Iterable[Any]], log: Any = None):
        self._events = events
        self._log = log
        self._counts = {"image": 0, "container": 0}
        self._connected = False
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._follow, name="jupyter-containers-events", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def generation(self, kind: str) -> int | None:
        with self._lock:
            return self._counts[kind] if self._connected else None

    def _follow(self) -> None:
        while not self._stopped.is_set():
            try:
                stream = iter(self._events())
                with self._lock:
                    # Whatever happened before we listened is unknown: everything cached so far is void.
                    self._counts = {k: v + 1 for k, v in self._counts.items()}
                    self._connected = True
                for event in stream:
                    kind = getattr(event, "type", "")
                    if str(getattr(event, "action", "")).startswith("exec_"):
                        continue  # a process started in a container (the live sync, a relay): no listing changes
                    if kind in self._counts:
                        with self._lock:
                            self._counts[kind] += 1
                    if self._stopped.is_set():
                        return
            except Exception as exc:  # noqa: BLE001 - no engine (yet): answers are computed every time
                if self._log is not None:
                    self._log.debug("jupyter-containers: engine events unavailable: %s", exc)
            with self._lock:
                self._connected = False
            self._stopped.wait(5.0)  # retry: the engine may come (back)
