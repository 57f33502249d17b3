"""The warm ``%%container`` sessions of this process: one per (spec file, environment, resources).

The pool starts a session on a cell's first use, hands the same one to every later cell, replaces it when
the spec file changes into a new image, and removes every container it started at interpreter exit.

Opted into with ``c.ContainerSessions.pool`` (README, "In notebooks"), it also keeps *spares*: kernels started
ahead of any cell (when ``%load_ext jupyter_containers`` runs), so that the first cell of an (environment,
resources) takes a warm kernel instead of waiting for a container to start. A spare that a cell takes is
replaced in the background; the pool never holds more spares of a kind than configured, each with exactly
the configured limits, and they are removed with the sessions.
"""

from __future__ import annotations

import atexit
import builtins
import concurrent.futures.thread  # noqa: F401 - its exit hook first: see SessionPool.__init__
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from traitlets import Dict
from traitlets.config import LoggingConfigurable

from ..errors import ContainersError, SpecError
from ..spec.model import Resources
from .remote import Writer, write_stderr
from .session import ContainerSession, session_key, spec_stamp

#: The most spares one (environment, resources) may ask for: each is a running container.
MAX_POOL_SIZE = 8
#: Seconds a spare being started gets at interpreter exit to give up (and remove what it started).
EXIT_WAIT = 2.0


class ContainerSessions(LoggingConfigurable):
    """Settings of the ``%%container`` sessions of a notebook's kernel."""

    pool = Dict(
        config=True,
        help="Kernels to start ahead of the first %%container cell, per environment: {'analysis': 1} keeps one "
        "spare kernel of 'analysis' with the spec's limits ready; {'vision': {'size': 1, 'memory': '4g'}} one "
        "with those limits (the keys of a spec's [resources] table). Started when the notebook runs "
        "'%load_ext jupyter_containers'; a cell asking for the same environment and limits takes one at once, "
        f"and it is replaced in the background. At most {MAX_POOL_SIZE} per environment and limits; stopped "
        "with the notebook's kernel. Empty (the default): no spares.",
    )

    def entries(self) -> list[tuple[str, Resources | None, int]]:
        """``(environment, resource overrides, size)`` for each entry of :attr:`pool` that asks for any.

        Raises:
            SpecError: an entry is not a size or a table of a size and limits (naming the entry).
        """
        from ..spec.parse import parse_resources

        out = []
        for name, value in self.pool.items():
            where = f"c.ContainerSessions.pool[{name!r}]"
            raw = dict(value) if isinstance(value, dict) else {"size": value}
            size = raw.pop("size", 1)
            if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_POOL_SIZE:
                raise SpecError(f"{where}: size {size!r} is not a number of kernels; use 0 to {MAX_POOL_SIZE}")
            if not isinstance(name, str) or not name:
                raise SpecError(f"c.ContainerSessions.pool: {name!r} is not an environment name")
            known = {f.name for f in Resources.__dataclass_fields__.values()} - {"timeout"}
            unknown = sorted(set(raw) - known)
            if unknown:
                raise SpecError(f"{where}: {unknown[0]!r} is not a limit; use size and {', '.join(sorted(known))}")
            try:
                resources = parse_resources(raw, key=where) if raw else None
            except SpecError as exc:
                raise SpecError(f"{where}: {exc}") from None
            if size:
                out.append((name, resources, size))
        return out


class SessionPool:
    """Every session of this process (the local kernel), removed at interpreter exit."""

    def __init__(self) -> None:
        self._sessions: dict[tuple, ContainerSession] = {}
        self._effective: dict[tuple, Any] = {}
        self._lock = threading.RLock()
        self._pid = os.getpid()
        #: Spare kernels by session key, how many each key keeps, and the threads starting them.
        self._spares: dict[tuple, builtins.list[ContainerSession]] = {}
        self._wanted: dict[tuple, tuple[Any, str, Resources, int]] = {}
        self._filling: dict[tuple, threading.Thread] = {}
        #: The spare each filling thread is starting (cancelled when the pool closes or stops keeping spares).
        self._starting: dict[tuple, ContainerSession] = {}
        self._closed = False
        self._preparing: threading.Thread | None = None
        atexit.register(self._at_exit)
        # A spare being started must give up before the interpreter stops its thread pools: jupyter_client starts
        # a kernel through asyncio.to_thread, which fails from then on ("cannot schedule new futures after
        # interpreter shutdown", logged by the notebook's kernel). Those hooks run before atexit's, the last one
        # registered first: concurrent.futures registers its own when first imported (which a kernel start
        # would do only later), hence the import above. Private, hence guarded; atexit still stops all.
        register = getattr(threading, "_register_atexit", None)
        if register is not None:
            try:
                register(self._finish_starting)
            except RuntimeError:  # already shutting down
                pass

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

    def target(self, manager: Any, environment: str) -> str | None:
        """The target ``environment`` runs on through ``manager`` (its ``--target``, else the environment's own
        ``target =``), cached until the spec file changes like :meth:`effective_resources`."""
        if manager.target:
            return manager.target
        spec = Path(manager.spec_file())
        key = ("target", spec, spec_stamp(spec), environment)
        if key not in self._effective:
            if len(self._effective) > 256:
                self._effective.clear()
            self._effective[key] = manager.for_environment(environment).target
        return self._effective[key]

    def get(self, manager: Any, environment: str, resources: Resources | None = None) -> ContainerSession | None:
        """The running session for these effective resources, if any."""
        effective = self.effective_resources(manager, environment, resources)
        target = self.target(manager, environment)
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
        if self._preparing is not None:
            self._preparing.join()  # the pool's settings are being read: its spares may be this cell's kernel
            self._preparing = None
        if manager is None:
            from ..manager import ContainersManager

            manager = ContainersManager.discover()
        effective = self.effective_resources(manager, environment, resources)
        key = session_key(Path(manager.spec_file()), environment, effective, self.target(manager, environment))
        spare = None
        if key in self._wanted and self._sessions.get(key) is None:
            spare = self._take_spare(key)  # outside the lock: it may wait for the spare being started
        with self._lock:
            session = self._sessions.get(key)
            if session is not None and session.stopped:
                self._sessions.pop(key, None)
                session = None
            if session is None and spare is not None:
                session, spare = spare, None
                self._sessions[key] = session
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
        if spare is not None:  # another thread's cell got a session first
            spare.stop()
        return session

    def _forget(self, session: ContainerSession) -> None:
        with self._lock:
            if self._sessions.get(session.key) is session:
                del self._sessions[session.key]
            spares = self._spares.get(session.key)
            if spares and session in spares:
                spares.remove(session)

    # ------------------------------------------------------------------ spares (c.ContainerSessions.pool)
    def keep_spares(self, manager: Any, environment: str, resources: Resources | None, size: int) -> tuple:
        """Keep ``size`` spare kernels of ``environment`` with ``resources`` (over the spec's defaults) started,
        in the background; returns their session key. ``size`` 0 stops keeping (and removes) them.

        Raises:
            ContainersError: an unknown environment or invalid limits (checked here, before any start).
        """
        effective = self.effective_resources(manager, environment, resources)
        key = session_key(Path(manager.spec_file()), environment, effective, self.target(manager, environment))
        with self._lock:
            if size <= 0:
                self._wanted.pop(key, None)
                surplus = self._spares.pop(key, [])
            else:
                self._wanted[key] = (manager, environment, effective, min(size, MAX_POOL_SIZE))
                spares = self._spares.setdefault(key, [])
                surplus = spares[size:]
                del spares[size:]
                self._fill(key)
        for session in surplus:
            session.stop()
        return key

    def prepare(self, setup: Callable[[], Any]) -> None:
        """Run ``setup`` (which calls :meth:`keep_spares`) in the background: reading the spec and config and
        reaching the engine take most of a second, which ``%load_ext`` should not wait for. A cell that comes
        sooner waits for it, then takes a spare of its kind if there is one."""

        def run() -> None:
            try:
                setup()
            except ContainersError as exc:  # a bad pool setting or spec: said once; cells start kernels as before
                write_stderr(f"jupyter-containers: no spare kernels: {exc}\n")

        self._preparing = threading.Thread(target=run, name="jupyter-containers-pool-setup", daemon=True)
        self._preparing.start()

    @property
    def closed(self) -> bool:
        """Whether the interpreter is exiting: the pool starts no spare any more."""
        return self._closed

    def spares(self) -> builtins.list[ContainerSession]:
        """The spare kernels started and not yet taken by a cell."""
        with self._lock:
            return [s for spares in self._spares.values() for s in spares]

    def _fill(self, key: tuple) -> None:
        # Start the missing spares of ``key`` one after the other in a thread (called with the lock held).
        thread = self._filling.get(key)
        if self._closed or (thread is not None and thread.is_alive()):
            return
        thread = threading.Thread(target=self._filler, args=(key,), name="jupyter-containers-pool", daemon=True)
        self._filling[key] = thread
        thread.start()

    def _filler(self, key: tuple) -> None:
        while True:
            with self._lock:
                wanted = self._wanted.get(key)
                if self._closed or wanted is None or len(self._spares.get(key, [])) >= wanted[3]:
                    self._filling.pop(key, None)
                    return
                manager, environment, effective, _ = wanted
            session = ContainerSession(manager, environment, effective, pooled=True)
            session.add_stop_callback(self._forget)
            with self._lock:
                if self._closed:  # closed meanwhile: this spare is not started at all
                    self._filling.pop(key, None)
                    return
                self._starting[key] = session  # from now on the pool's closing cancels it
            try:
                session.start()  # removes what it started when it fails or is cancelled
                if not session.cancelled:
                    session.warm_up()
            except Exception as exc:  # noqa: BLE001 - a thread of its own: said once, cells start kernels as before
                if not (self._closed or session.cancelled):
                    write_stderr(f"jupyter-containers: the pool could not start a kernel of {environment!r}: {exc}\n")
                session.stop()
                with self._lock:
                    self._starting.pop(key, None)
                    self._filling.pop(key, None)
                return
            with self._lock:
                self._starting.pop(key, None)
                keep = not (self._closed or session.cancelled) and key in self._wanted
                if keep:
                    self._spares.setdefault(key, []).append(session)
            if not keep:
                session.stop()

    def _take_spare(self, key: tuple) -> ContainerSession | None:
        # A living spare of ``key`` (waiting for one being started rather than starting another), then refill.
        while True:
            with self._lock:
                spares = self._spares.get(key, [])
                while spares:
                    spare = spares.pop(0)
                    if spare.answers():  # its heartbeat: an engine call would cost more than the rest of the cell
                        self._fill(key)
                        return spare
                    spare.stop()
                thread = self._filling.get(key)
                if thread is None or not thread.is_alive():
                    self._fill(key)
                    return None
            thread.join(0.2)  # a spare is starting: it is ready sooner than a new one (Ctrl-C still works)

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

    def stop_spares(self) -> builtins.list[ContainerSession]:
        """Stop keeping spares and remove those started; returns them."""
        with self._lock:
            self._wanted.clear()
            spares = [s for spares in self._spares.values() for s in spares]
            self._spares.clear()
            for starting in self._starting.values():
                starting.cancel()  # its thread removes it
        for session in spares:
            session.stop()
        return spares

    def _finish_starting(self) -> None:
        """No more spares: cancel those being started, remove every session and spare started, then give a
        spare being started :data:`EXIT_WAIT` seconds to give up (its thread removes what it started).

        In that order because a notebook's kernel has a few seconds to exit before jupyter_client kills it
        (then nothing is removed): a spare still starting when it ends is left to ``jupyter-containers prune``,
        which removes containers whose owner process is gone.
        """
        if os.getpid() != self._pid:
            return
        with self._lock:
            self._closed = True
            for session in self._starting.values():
                session.cancel()
            starting = list(self._filling.values())
        self._stop_everything()
        deadline = time.monotonic() + EXIT_WAIT
        for thread in starting:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _stop_everything(self) -> None:
        for session in [*self.list(), *self.spares()]:
            try:
                session.stop()
            except Exception:  # noqa: BLE001 - exiting anyway; prune removes what is left
                pass

    def _at_exit(self) -> None:
        if os.getpid() != self._pid:  # a forked child inherited the hook: the sessions are not its own
            return
        self._finish_starting()
        self._stop_everything()  # a spare that finished starting meanwhile


_pool: SessionPool | None = None
_pool_lock = threading.Lock()


def get_pool() -> SessionPool:
    """The process-wide :class:`SessionPool` (created on first use)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = SessionPool()
        return _pool
