"""The warm ``%%container`` sessions of this process: one per (spec file, environment, resources).

The pool starts a session on a cell's first use, hands the same one to every later cell, replaces it when
the spec file changes into a new image, and removes every container it started at interpreter exit.
"""

from __future__ import annotations

import atexit
import builtins
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..spec.model import Resources
from .remote import Writer, write_stderr
from .session import ContainerSession, session_key, spec_stamp


class SessionPool:
    """Every session of this process (the local kernel), removed at interpreter exit."""

    def __init__(self) -> None:
        self._sessions: dict[tuple, ContainerSession] = {}
        self._effective: dict[tuple, Resources] = {}
        self._lock = threading.RLock()
        self._pid = os.getpid()
        atexit.register(self._at_exit)

    def effective_resources(self, manager: Any, environment: str, resources: Resources | None = None) -> Resources:
        """The spec's defaults for ``environment`` merged with ``resources``.

        Cached until the spec file changes: re-parsing it for every cell would cost a fair share of the
        warm round trip.
        """
        spec = Path(manager.spec_file())
        key = (spec, spec_stamp(spec), environment, resources)
        effective = self._effective.get(key)
        if effective is None:
            effective = manager.resources(environment, resources)
            if len(self._effective) > 256:
                self._effective.clear()
            self._effective[key] = effective
        return effective

    def get(self, manager: Any, environment: str, resources: Resources | None = None) -> ContainerSession | None:
        """The running session for these effective resources, if any."""
        effective = self.effective_resources(manager, environment, resources)
        target = manager.for_environment(environment).target
        with self._lock:
            return self._sessions.get(session_key(Path(manager.spec_file()), environment, effective, target))

    def get_or_start(
        self,
        environment: str,
        resources: Resources | None = None,
        *,
        manager: Any = None,
        on_build_event: Callable[[Any], None] | None = None,
        log: Writer | None = None,
        cwd: str | os.PathLike | None = None,
    ) -> ContainerSession:
        """The warm session for ``environment`` with ``resources`` overriding the spec's defaults.

        A session whose spec file changed since it started is replaced when the change gives a new image.
        """
        if manager is None:
            from ..manager import ContainersManager

            manager = ContainersManager.discover()
        effective = self.effective_resources(manager, environment, resources)
        key = session_key(
            Path(manager.spec_file()), environment, effective, manager.for_environment(environment).target
        )
        with self._lock:
            session = self._sessions.get(key)
            if session is not None and session.stopped:
                self._sessions.pop(key, None)
                session = None
            if session is not None and spec_stamp(session.spec_file) != session.spec_stamp:
                build = manager.build(environment, on_event=on_build_event)
                if build.image_id == session.image_id:
                    session.spec_stamp = spec_stamp(session.spec_file)
                else:
                    (log or write_stderr)(
                        f"jupyter-containers: {environment!r} changed; starting a fresh container kernel "
                        "(variables of the old one are lost)\n"
                    )
                    session.stop()
                    session = None
            if session is None:
                session = ContainerSession(manager, environment, effective)
                session.add_stop_callback(self._forget)
                session.start(on_build_event=on_build_event, cwd=cwd)
                self._sessions[key] = session
            return session

    def _forget(self, session: ContainerSession) -> None:
        with self._lock:
            if self._sessions.get(session.key) is session:
                del self._sessions[session.key]

    def list(self) -> builtins.list[ContainerSession]:
        with self._lock:
            return list(self._sessions.values())

    def stop(self, environment: str | None = None) -> builtins.list[ContainerSession]:
        """Stop the sessions of ``environment`` (every session when None); returns those stopped."""
        with self._lock:
            chosen = [s for s in self._sessions.values() if environment is None or s.environment == environment]
        for session in chosen:
            session.stop()
        return chosen

    def stop_all(self) -> builtins.list[ContainerSession]:
        return self.stop(None)

    def _at_exit(self) -> None:
        if os.getpid() != self._pid:  # a forked child inherited the hook: the sessions are not its own
            return
        for session in self.list():
            try:
                session.stop()
            except Exception:  # noqa: BLE001 - exiting anyway; prune removes what is left
                pass


_pool: SessionPool | None = None
_pool_lock = threading.Lock()


def get_pool() -> SessionPool:
    """The process-wide :class:`SessionPool` (created on first use)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = SessionPool()
        return _pool
