"""Warm container kernels for ``%%container``: one per (local kernel, environment, resources).

A session is a :class:`ContainerKernelManager` kernel that stays up between cells, so a cell costs one
message round trip instead of a container start. Its iopub messages are relayed into the local kernel as
they arrive (streams, displays, results, errors: :mod:`.remote`), a local interrupt becomes a remote one,
and variables travel as pickle files through the kernel's socket folder (:mod:`.transfer`).

The shell and iopub sockets are plain blocking ZMQ sockets polled in the caller's thread: the blocking
jupyter_client client goes through asyncio for every message, which would cost more than the round trip.
Messages are still decoded by the kernel manager's :class:`jupyter_client.session.Session`, which checks
their signatures and refuses replayed ones.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from hmac import compare_digest
from pathlib import Path
from typing import Any

import zmq

from ..errors import EngineUnavailableError, OutOfMemoryError, RunError, RunTimeoutError
from ..spec.model import Resources
from ..units import format_duration
from . import transfer
from .remote import DisplayHandler, RemoteResult, Writer, relay_display, remote_error, write_stderr, write_stdout

SESSION_ROLE = "session"
#: The label (under io.jupyter.containers.) of a session container started ahead of its cell by the pool.
POOL_LABEL = "pool"
#: Seconds an interrupted cell gets to report back before its session is given up.
INTERRUPT_GRACE = 5.0
#: Seconds without any message after which the container is checked for a dead kernel.
LIVENESS_INTERVAL = 1.0
STARTUP_TIMEOUT = 120.0
#: Run once in each session kernel (in a namespace of its own: the notebook's names stay untouched). ipykernel
#: flushes stdout and stderr twice per cell, and each flush waits for its I/O thread even when nothing was
#: written: about a millisecond of a warm cell's round trip. A flush with nothing pending now returns at
#: once; one with output pending flushes as before (that order still holds: the idle status travels the same
#: thread after it). Only ipykernel's own OutStream is touched, and only when it has the flags this relies on.
QUICK_FLUSH = """
import sys
def quick(stream):
    flush = stream.flush
    def quick_flush():
        if stream._flush_pending or stream._subprocess_flush_pending:
            flush()
    stream.flush = quick_flush
for stream in (sys.stdout, sys.stderr):
    if type(stream).__module__ == "ipykernel.iostream" and all(
        isinstance(getattr(stream, flag, None), bool) for flag in ("_flush_pending", "_subprocess_flush_pending")
    ):
        quick(stream)
"""
#: No SQLite history in session kernels: nobody reads it, and writing it costs a millisecond per cell. No
#: half-millisecond sleep before each reply (ipykernel's ``_execute_sleep``, a work-around for clients that read
#: the reply before the outputs: a session waits for the idle status, which comes after every output).
KERNEL_ARGUMENTS = [
    "--HistoryManager.enabled=False",
    "--Kernel._execute_sleep=0",
    f"--IPKernelApp.exec_lines={[f'exec({QUICK_FLUSH!r}, {{}})']!r}",
]
#: What :meth:`ContainerSession._recv` returns for a message that is not a valid one of this connection.
_INVALID: dict[str, Any] = {"msg_type": "", "parent_header": {}, "content": {}}


class ContainerSession:
    """One warm container kernel running cells for the local kernel."""

    def __init__(self, manager: Any, environment: str, resources: Resources, *, pooled: bool = False):
        # The manager of the environment's target (--target, else its own target =, else the configured engine).
        self.manager = manager = manager.for_environment(environment)
        self.environment = environment
        #: Started ahead of any cell as a spare of the pool (c.ContainerSessions.pool); labelled ``pool=1``.
        self.pooled = pooled
        #: Effective limits of the container (spec defaults merged with overrides; timeouts are per cell).
        self.resources = replace(resources, timeout=None)
        self.spec_file = Path(manager.spec_file())
        self.key = session_key(self.spec_file, environment, self.resources, manager.target)
        self.km: Any = None
        self.image: str | None = None
        self.image_id: str | None = None
        self.started_at: float | None = None
        self.spec_stamp: tuple[int, int] | None = None
        #: Seconds spent in each start-up phase: ``build`` (check), ``container`` (start), ``ready`` (kernel).
        self.timings: dict[str, float] = {}
        self._context: Any = None
        self._shell: Any = None
        self._iopub: Any = None
        self._poller: Any = None
        self._hb: Any = None
        self._engine_warned = False
        self._lock = threading.RLock()
        self._on_stop: list[Callable[[ContainerSession], None]] = []
        self._cancelled = threading.Event()
        self.stopped = False
        #: What the front end was last told about this session's environment (magics.py: ``_send_record``).
        self.recorded: Any = None

    # ------------------------------------------------------------------ properties
    @property
    def kernel(self) -> Any:
        """The :class:`ContainerKernel` (container + socket folder), once started."""
        provisioner = getattr(self.km, "provisioner", None)
        return getattr(provisioner, "kernel", None)

    @property
    def container_id(self) -> str | None:
        kernel = self.kernel
        return kernel.container_id if kernel is not None else None

    @property
    def socket_dir(self) -> Path:
        return self.kernel.socket_dir

    @property
    def uptime(self) -> float:
        return time.time() - self.started_at if self.started_at else 0.0

    def describe(self) -> str:
        return f"{self.environment} ({self.resources.describe()})"

    # ------------------------------------------------------------------ lifecycle
    def start(
        self,
        *,
        on_build_event: Callable[[Any], None] | None = None,
        cwd: str | os.PathLike | None = None,
        timeout: float = STARTUP_TIMEOUT,
    ) -> None:
        """Build the image if needed (events go to ``on_build_event``), start the container, wait for the kernel."""
        from .kernelspec import ContainerKernelManager

        t0 = time.perf_counter()
        try:
            self.spec_stamp = spec_stamp(self.spec_file)
            build = self.manager.build(self.environment, on_event=on_build_event)
            self.image, self.image_id = build.image, build.image_id
            self._raise_if_cancelled()
            t1 = time.perf_counter()
            self._context = fast_reconnect_context()
            self.km = ContainerKernelManager(
                environment=self.environment,
                spec_file=self.spec_file,
                resources=self.resources,
                role=SESSION_ROLE,
                # The notebook's own kernel: the sidebar finds the notebook a session belongs to by it.
                extra_labels={
                    **({"parent-kernel-id": parent} if (parent := parent_kernel_id()) else {}),
                    **({POOL_LABEL: "1"} if self.pooled else {}),
                }
                or None,
                target=self.manager.target,
                config=self.manager.config,
                context=self._context,
            )
            self._start_kernel(cwd)
            self._raise_if_cancelled()
            t2 = time.perf_counter()
            self._shell = self.km.connect_shell()
            self._iopub = self.km.connect_iopub()
            self._poller = zmq.Poller()
            self._poller.register(self._shell, zmq.POLLIN)
            self._poller.register(self._iopub, zmq.POLLIN)
            self._wait_ready(timeout)
        except BaseException:
            self.stop()  # the container and socket folder, once started, and the ZMQ context
            raise
        t3 = time.perf_counter()
        self.timings = {"build": t1 - t0, "container": t2 - t1, "ready": t3 - t2}
        self.started_at = time.time()

    def cancel(self) -> None:
        """Make a :meth:`start` under way (in another thread) give up at its next step: after the image check,
        once the container has started, or while waiting for the kernel. That thread then removes what it
        started, so a spare being started when the local kernel exits leaves nothing behind (and starts no
        container once the image check is done). A container start in flight is not cut short: its id is only
        known when it returns."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._cancelled.is_set()

    def _raise_if_cancelled(self) -> None:
        if self._cancelled.is_set():
            raise RunError(f"the start of a container kernel of {self.environment!r} was cancelled")

    def _start_kernel(self, cwd: Any) -> None:
        # In a thread of its own: a Ctrl-C in the notebook then cannot leave a container starting unseen.
        box: dict[str, BaseException] = {}

        def run() -> None:
            try:
                self.km.start_kernel(cwd=str(cwd or os.getcwd()), extra_arguments=KERNEL_ARGUMENTS)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                box["error"] = exc

        thread = threading.Thread(target=run, name="jupyter-containers-start", daemon=True)
        thread.start()
        interrupted = False
        while thread.is_alive():
            try:
                thread.join(0.5)
            except KeyboardInterrupt:
                interrupted = True
        if "error" in box:
            raise box["error"]
        if interrupted:
            raise KeyboardInterrupt

    def _wait_ready(self, timeout: float) -> None:
        # kernel_info until it answers and iopub has delivered a message (so no output is lost).
        deadline = time.monotonic() + timeout
        replied = subscribed = False
        sent_at = 0.0
        checked = time.monotonic()
        while not (replied and subscribed):
            self._raise_if_cancelled()
            now = time.monotonic()
            if now > deadline:
                raise RunError(
                    f"the container kernel of {self.environment!r} did not answer within {format_duration(timeout)}"
                    + self._logs_hint()
                )
            if now - sent_at > 0.5 or (replied and not subscribed and now - sent_at > 0.1):
                self.km.session.send(self._shell, self.km.session.msg("kernel_info_request"))
                sent_at = now
            events = dict(self._poller.poll(50))
            if self._iopub in events:
                while self._recv(self._iopub) is not None:
                    subscribed = True
            if self._shell in events:
                while (msg := self._recv(self._shell)) is not None:
                    replied = replied or msg["msg_type"] == "kernel_info_reply"
            if not events and now - checked > LIVENESS_INTERVAL:
                checked = now
                self._raise_if_dead(starting=True)

    def stop(self) -> None:
        """Remove the container and its socket folder (synchronous: safe at interpreter exit)."""
        with self._lock:
            if self.stopped:
                return
            self.stopped = True
            for sock in (self._shell, self._iopub):
                if sock is not None:
                    sock.close(linger=0)
            self._shell = self._iopub = self._poller = None
            if self._hb is not None:
                self._hb.close(linger=0)
                self._hb = None
            kernel = self.kernel
            try:
                if kernel is not None:
                    kernel.remove()
            except EngineUnavailableError as exc:
                # The socket folder and key are gone; the container is left to the engine (which, restarted
                # without live-restore, stops it) and to `jupyter-containers prune`.
                print(f"jupyter-containers: could not remove the container kernel's container: {exc}", file=sys.stderr)
            finally:
                if self.km is not None:
                    self.km.cleanup_connection_file()
                if self._context is not None:
                    self._context.destroy(linger=0)
                    self._context = None
                for callback in self._on_stop:
                    callback(self)

    def add_stop_callback(self, callback: Callable[[ContainerSession], None]) -> None:
        """Call ``callback(session)`` once the session has stopped (whoever stopped it)."""
        self._on_stop.append(callback)

    def is_alive(self) -> bool:
        kernel = self.kernel
        return not self.stopped and kernel is not None and kernel.poll() is None

    def logs(self, tail: int | str | None = None) -> str:
        """The container's output (the kernel's own log, not the cells' output), the last ``tail`` lines.

        Every line when ``tail`` is None (or ``"all"``).
        """
        kernel = self.kernel
        if kernel is None:
            return ""
        return kernel.logs(tail=None if tail in (None, "all") else int(tail))

    def _logs_hint(self) -> str:
        try:
            lines = [line for line in self.logs(tail=15).splitlines() if line.strip()]
        except Exception:  # noqa: BLE001 - the hint is best effort
            return ""
        return ("; its last log lines:\n" + "\n".join("  " + line for line in lines)) if lines else ""

    def _raise_if_dead(self, *, starting: bool = False) -> None:
        kernel = self.kernel
        if kernel is None:
            return
        if kernel.poll() is None:
            if kernel.engine_unreachable is not None:
                self._check_without_engine(kernel.engine_unreachable)
            elif self._engine_warned:
                self._engine_warned = False
                print("jupyter-containers: the Docker engine answers again", file=sys.stderr)
            return
        state = kernel.state()
        oom_killed = state is not None and state.oom_killed
        reason = kernel.death_reason() or "its container is gone"
        hint = "" if oom_killed else self._logs_hint()
        self.stop()
        if starting:
            message = f"the container kernel of {self.environment!r} stopped while starting: {reason}{hint}"
        else:
            message = (
                f"the container kernel of {self.environment!r} died: {reason}{hint}\n"
                "Its variables are lost; the next %%container cell starts a fresh one."
            )
        code = state.exit_code if state is not None else None
        if oom_killed:
            raise OutOfMemoryError(message, exit_code=code or 137)
        raise RunError(message, exit_code=code)

    def _check_without_engine(self, reason: str) -> None:
        """The engine does not answer: go on while the kernel answers its heartbeat; say so once."""
        if self._heartbeat():
            if not self._engine_warned:
                self._engine_warned = True
                print(
                    f"jupyter-containers: the Docker engine does not answer ({reason}); the cell goes on while "
                    "its container kernel answers",
                    file=sys.stderr,
                )
            return
        self.stop()
        raise RunError(
            f"the container kernel of {self.environment!r} stopped answering while the Docker engine does not "
            f"answer either ({reason}); its variables are lost. Once the engine is back, the next %%container "
            "cell starts a fresh one."
        )

    def _heartbeat(self, timeout: float = 2.0) -> bool:
        """Whether the kernel echoes a ping on its heartbeat channel within ``timeout`` seconds."""
        if self._hb is None:
            self._hb = self.km.connect_hb()
        self._hb.send(b"ping")
        if self._hb.poll(int(timeout * 1000)):
            self._hb.recv()
            return True
        self._hb.close(linger=0)  # a REQ socket that got no answer cannot send again
        self._hb = None
        return False

    # ------------------------------------------------------------------ messages
    def _recv(self, sock: Any) -> dict | None:
        # The next message on ``sock``, None when there is none. The manager's Session checks the signature
        # and refuses a replayed one; a message it refuses comes back as ``_INVALID`` (no parent, skipped).
        try:
            frames = sock.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return None
        try:
            return decode(self.km.session, frames)
        except (ValueError, TypeError, KeyError):  # unsigned, forged, replayed or not a Jupyter message
            return _INVALID

    def _request(self, content: dict[str, Any]) -> str:
        msg = self.km.session.msg("execute_request", content)
        self.km.session.send(self._shell, msg)
        return msg["header"]["msg_id"]

    def execute(
        self,
        code: str,
        *,
        stdout: Writer | None = None,
        stderr: Writer | None = None,
        display: DisplayHandler | None = None,
        timeout: float | None = None,
        execution_count: int | None = None,
    ) -> RemoteResult | None:
        """Run ``code`` in the container, relaying its output live; returns its last expression's value.

        ``execution_count`` is the local cell's number: a traceback then says ``Cell In[7]`` as the notebook
        shows it, not the container kernel's own count of the cells it ran.

        Raises:
            RemoteError: the code raised (with the container's traceback).
            KeyboardInterrupt: the local kernel was interrupted (the remote cell is interrupted too).
            RunTimeoutError: the cell ran longer than ``timeout`` seconds and was interrupted.
            OutOfMemoryError, RunError: the container kernel died; the session is stopped.
        """
        stdout = stdout or write_stdout
        stderr = stderr or write_stderr
        display = display or relay_display
        result: list[RemoteResult] = []

        def on_iopub(msg_type: str, content: dict) -> None:
            if msg_type == "stream":
                (stderr if content.get("name") == "stderr" else stdout)(content.get("text", ""))
            elif msg_type in ("display_data", "update_display_data", "clear_output"):
                display(msg_type, content)
            elif msg_type == "execute_result":
                result[:] = [
                    RemoteResult(
                        dict(content.get("data") or {}),
                        dict(content.get("metadata") or {}),
                        content.get("execution_count"),
                    )
                ]

        with self._lock:
            self._check_usable()
            msg_id = self._request(
                {
                    "code": code,
                    "silent": False,
                    "store_history": True,
                    "user_expressions": {},
                    "allow_stdin": False,
                    "stop_on_error": True,
                }
            )
            reply = self._wait(msg_id, on_iopub, timeout)
        if reply["status"] == "error":
            remote = reply.get("execution_count")
            if execution_count is not None and isinstance(remote, int) and remote != execution_count:
                reply = {
                    **reply,
                    "traceback": renumber_traceback(reply.get("traceback") or [], remote, execution_count),
                }
            raise remote_error(reply, self.environment)
        if reply["status"] != "ok":
            raise RunError(f"the container kernel did not run the cell (status {reply['status']!r})")
        return result[0] if result else None

    def _check_usable(self) -> None:
        if self.stopped:
            raise RunError(f"the session of {self.environment!r} was stopped; start a new one")

    def _wait(self, msg_id: str, on_iopub: Callable[[str, dict], None], timeout: float | None) -> dict:
        # Relay iopub messages of ``msg_id`` until its reply and idle status; handle interrupts and death.
        reply: dict | None = None
        idle = False
        started = time.monotonic()
        deadline = started + timeout if timeout else None
        interrupted_at: float | None = None
        reason = ""
        last_message = last_check = started
        while reply is None or not idle:
            try:
                now = time.monotonic()
                if interrupted_at is None and deadline is not None and now >= deadline:
                    reason, interrupted_at = "timeout", now
                    self.km.interrupt_kernel()
                if interrupted_at is not None and now - interrupted_at > INTERRUPT_GRACE:
                    self._give_up(reason, timeout)
                if reply is not None and now - last_message > 2.0:
                    break  # the idle status got lost; the reply is what matters
                wait = LIVENESS_INTERVAL
                if deadline is not None and interrupted_at is None:
                    wait = max(0.0, min(wait, deadline - now))
                events = dict(self._poller.poll(int(wait * 1000)))
                if not events:
                    now = time.monotonic()
                    if now - max(last_message, last_check) >= LIVENESS_INTERVAL:
                        last_check = now
                        self._raise_if_dead()
                    continue
                last_message = time.monotonic()
                if self._iopub in events:
                    while (msg := self._recv(self._iopub)) is not None:
                        if msg["parent_header"].get("msg_id") != msg_id:
                            continue
                        msg_type = msg["msg_type"]
                        if msg_type == "status":
                            idle = msg["content"].get("execution_state") == "idle"
                        elif interrupted_at is None or msg_type == "stream":
                            on_iopub(msg_type, msg["content"])
                if self._shell in events:
                    while (msg := self._recv(self._shell)) is not None:
                        if msg["parent_header"].get("msg_id") == msg_id:
                            reply = msg["content"]
            except KeyboardInterrupt:
                if interrupted_at is not None and reason == "keyboard":
                    # A second Ctrl-C: stop waiting for the container kernel altogether.
                    self._give_up(reason, timeout)
                reason, interrupted_at = "keyboard", time.monotonic()
                self.km.interrupt_kernel()
        assert reply is not None
        if reason == "keyboard":
            interrupt = KeyboardInterrupt()
            if reply.get("status") == "error" and reply.get("traceback"):
                trace = list(reply["traceback"])
                interrupt._render_traceback_ = lambda: trace  # type: ignore[attr-defined]
            raise interrupt
        if reason == "timeout" and reply.get("status") != "ok":
            raise RunTimeoutError(
                f"the cell exceeded its timeout of {format_duration(timeout or 0)} and was interrupted; "
                "raise --timeout if it needs longer",
                exit_code=124,
            )
        return reply

    def _give_up(self, reason: str, timeout: float | None) -> None:
        self.stop()
        lost = (
            f"the container kernel of {self.environment!r} did not stop when interrupted, so it was removed; "
            "its variables are lost and the next %%container cell starts a fresh one"
        )
        if reason == "timeout":
            raise RunTimeoutError(
                f"the cell exceeded its timeout of {format_duration(timeout or 0)}; {lost}", exit_code=124
            )
        print(f"jupyter-containers: {lost}", file=sys.stderr)
        raise KeyboardInterrupt

    def warm_up(self) -> None:
        """Run a silent cell (no output, no history, no count) so that the kernel's first real cell does not pay
        for what IPython sets up on its first run (tens of milliseconds): for spares started ahead of a cell."""
        with self._lock:
            self._check_usable()
            msg_id = self._request(
                {
                    "code": "pass",
                    "silent": True,
                    "store_history": False,
                    "user_expressions": {},
                    "allow_stdin": False,
                    "stop_on_error": False,
                }
            )
            self._wait(msg_id, lambda *_: None, None)
            self._heartbeat()  # connects the heartbeat socket that :meth:`answers` then finds ready

    def answers(self, timeout: float = 0.5) -> bool:
        """Whether the kernel is up: it echoes a heartbeat within ``timeout`` seconds (no engine call)."""
        with self._lock:
            return not self.stopped and self._shell is not None and self._heartbeat(timeout)

    # ------------------------------------------------------------------ variables
    def evaluate(self, expression: str) -> dict[str, Any]:
        """Evaluate ``expression`` silently in the container kernel (no output, no history, no count).

        Returns its ``user_expressions`` entry (``status`` and ``data``, or ``ename``/``evalue``), or the
        error reply when the request itself failed.

        Raises:
            RunError: the session was stopped, or its kernel died.
        """
        return self.evaluate_while(expression, lambda: None)

    def evaluate_while(self, expression: str, feed: Callable[[], None]) -> dict[str, Any]:
        """:meth:`evaluate`, running ``feed()`` here while the container kernel evaluates ``expression``
        (``--in`` writes the values into pipes that the expression reads). The reply is awaited even when
        ``feed`` fails, and then its error is raised.

        Raises:
            RunError: the session was stopped, or its kernel died.
        """
        with self._lock:
            self._check_usable()
            msg_id = self._request(
                {
                    "code": "",
                    "silent": True,
                    "store_history": False,
                    "user_expressions": {"value": expression},
                    "allow_stdin": False,
                    "stop_on_error": False,
                }
            )
            failure: BaseException | None = None
            try:
                feed()
            except BaseException as exc:  # noqa: BLE001 - raised once the kernel has answered
                failure = exc
            reply = self._wait(msg_id, lambda *_: None, None)
        if failure is not None:
            raise failure
        if reply.get("status") != "ok":
            return reply
        return (reply.get("user_expressions") or {}).get("value") or {}

    def push(self, values: Mapping[str, Any]) -> None:
        """Copy local values into the container kernel's namespace (pickle protocol 5, through pipes or tmpfs).

        Raises:
            RequestError: a name is not a variable name.
            SessionError: a value cannot travel (the message says why and what to change).
        """
        transfer.push(self, values)

    def pull(self, names: Iterable[str]) -> dict[str, Any]:
        """Copy variables of the container kernel back; returns ``{name: value}``.

        Raises:
            RequestError: a name is not a variable name.
            SessionError: a variable is missing in the container or cannot travel back.
        """
        return transfer.pull(self, names)


def decode(session: Any, frames: list[bytes]) -> dict[str, Any]:
    """One message of ``frames`` as :meth:`jupyter_client.session.Session.deserialize` gives it, with the same
    checks through the session's own key and replay history (unsigned, forged and replayed messages raise
    ``ValueError``), except that the dates of its headers stay ISO strings.

    Parsing those dates (dateutil, four messages a cell) was a quarter of the decoding's time (1.7 ms of a cell
    under the profiler, now 1.25 ms), and nothing here reads them.

    Raises:
        ValueError, TypeError, KeyError: not a valid message of this connection.
    """
    _, msg_list = session.feed_identities(frames)
    if len(msg_list) < 5:
        raise TypeError("malformed message, must have at least 5 elements")
    if session.auth is not None:
        signature = msg_list[0]
        if not signature:
            raise ValueError("Unsigned Message")
        if signature in session.digest_history:
            raise ValueError(f"Duplicate Signature: {signature!r}")
        session._add_digest(signature)
        if not compare_digest(signature, session.sign(msg_list[1:5])):
            raise ValueError(f"Invalid Signature: {signature!r}")
    unpack = session.unpack
    header = unpack(msg_list[1])
    message = {
        "header": header,
        "msg_id": header["msg_id"],
        "msg_type": header["msg_type"],
        "parent_header": unpack(msg_list[2]),
        "metadata": unpack(msg_list[3]),
        "content": unpack(msg_list[4]),
        "buffers": [memoryview(b) for b in msg_list[5:]],
    }
    if not str(header.get("version", "")).startswith("5."):
        from jupyter_client.adapter import adapt  # an older protocol (ipykernel in our images speaks 5.x)

        return adapt(message)
    return message


def parent_kernel_id() -> str | None:
    """The Jupyter kernel id of the local kernel this runs in (jupyter-server names its connection files
    ``kernel-ID.json``), or None outside a kernel or under another name."""
    try:
        from ipykernel.connect import get_connection_file

        name = Path(get_connection_file()).name
    except Exception:  # noqa: BLE001 - not in an ipykernel (a script, a test)
        return None
    match = re.fullmatch(r"kernel-([0-9a-fA-F-]{8,64})\.json", name)
    return match.group(1) if match else None


def renumber_traceback(lines: Iterable[str], remote: int, local: int) -> list[str]:
    """IPython's ``Cell In[N]`` (and ``Input In [N]``, ``<ipython-input-N-…>``) of the container kernel's cell
    ``remote`` as the local cell ``local`` (the number the notebook shows)."""
    ansi = r"(?:\x1b\[[0-9;]*m)*"  # IPython colours the "In[N]" of "Cell In[N]"
    pattern = re.compile(rf"((?:Cell|Input){ansi} {ansi}In ?\[|<ipython-input-){remote}(?=[\]-])")
    return [pattern.sub(lambda m: f"{m.group(1)}{local}", line) for line in lines]


def fast_reconnect_context(context_class: type = zmq.Context) -> Any:
    """A ZMQ context (of ``context_class``: ``zmq.asyncio.Context`` for an asyncio client) for the sockets of a
    container kernel's client: they retry their connection every 10 ms, not ZMQ's 100, and close without
    lingering. A kernel in a container binds its ipc sockets only once it is up, well after the client has
    connected: with the default interval the kernel_info reply and the first IOPub messages would wait for
    the next reconnect. Used by ``%%container`` sessions and by ``execute`` (:mod:`..jobs.runner`). No
    ``RECONNECT_IVL_MAX``: a back-off (the runner once had one, to 1 s) would delay the first connection.
    """
    context = context_class()
    context.setsockopt(zmq.RECONNECT_IVL, 10)
    context.setsockopt(zmq.LINGER, 0)
    return context


def session_key(spec_file: Path, environment: str, resources: Resources, target: str | None = None) -> tuple:
    return (str(spec_file), environment, replace(resources, timeout=None), target)


def spec_stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)
