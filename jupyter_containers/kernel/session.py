"""Warm container kernels for ``%%container``: one per (local kernel, environment, resources).

A session is a :class:`ContainerKernelManager` kernel that stays up between cells, so a cell costs one
message round trip instead of a container start. Its iopub messages are relayed into the local kernel as
they arrive (streams, displays, results, errors), a local interrupt becomes a remote one, and variables
travel as pickle files through the kernel's socket folder, which is bind-mounted into the container (on
tmpfs when there is one), so a 100 MB array moves at memory speed without any network.

The shell and iopub sockets are plain blocking ZMQ sockets polled in the caller's thread: the blocking
jupyter_client client goes through asyncio for every message, which would cost more than the round trip.
"""

from __future__ import annotations

import ast
import atexit
import builtins
import json
import os
import pickle
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from hmac import compare_digest
from pathlib import Path
from typing import Any

import zmq
from jupyter_client.session import DELIM

from ..errors import ContainersError, OutOfMemoryError, RunError, RunTimeoutError
from ..spec.model import Resources
from ..units import format_duration
from .container import CONTAINER_RUNTIME_DIR

SESSION_ROLE = "session"
#: Seconds an interrupted cell gets to report back before its session is given up.
INTERRUPT_GRACE = 5.0
#: Seconds without any message after which the container is checked for a dead kernel.
LIVENESS_INTERVAL = 1.0
STARTUP_TIMEOUT = 120.0
#: No SQLite history in session kernels: nobody reads it, and writing it costs a millisecond per cell.
KERNEL_ARGUMENTS = ["--HistoryManager.enabled=False"]

Writer = Callable[[str], None]
DisplayHandler = Callable[[str, dict], None]


# ---------------------------------------------------------------------- results and errors
class RemoteError(Exception):
    """An exception raised by the cell inside the container.

    IPython prints ``_render_traceback_()`` instead of a local traceback, so the user sees where their
    code failed in the container, not where the magic waited for it. Instances are of a subclass named
    after the remote exception (and deriving from the builtin of that name when there is one), so the
    notebook shows ``ZeroDivisionError`` and ``except ZeroDivisionError`` still works locally.
    """

    def __init__(self, ename: str, evalue: str, traceback: Iterable[str] = (), environment: str | None = None):
        Exception.__init__(self, evalue)
        self.ename = ename
        self.evalue = evalue
        self.traceback = list(traceback)
        self.environment = environment

    def __str__(self) -> str:
        return self.evalue

    def _render_traceback_(self) -> list[str]:
        return self.traceback or [f"{self.ename}: {self.evalue}"]


_error_classes: dict[str, type[RemoteError]] = {}


def remote_error(content: Mapping[str, Any], environment: str | None = None) -> RemoteError:
    """The :class:`RemoteError` for an ``error`` message or an error ``execute_reply``."""
    ename = str(content.get("ename") or "RemoteError")
    evalue = str(content.get("evalue") or "")
    traceback = content.get("traceback") or []
    cls = _error_classes.get(ename)
    if cls is None:
        cls = RemoteError
        if ename.isidentifier() and ename != "RemoteError":
            builtin = getattr(builtins, ename, None)
            bases: tuple[type, ...] = (RemoteError,)
            if isinstance(builtin, type) and issubclass(builtin, Exception):
                bases = (RemoteError, builtin)
            for candidate in (bases, (RemoteError,)):
                try:
                    cls = type(ename, candidate, {"__module__": "builtins"})
                    cls("x", "x")  # some builtins' layouts refuse a mixin; find out now
                    break
                except TypeError:
                    cls = RemoteError
        _error_classes[ename] = cls
    return cls(ename, evalue, traceback, environment)


@dataclass
class RemoteResult:
    """The value of a cell's last expression in the container, displayed locally as if it were local."""

    data: dict[str, Any]
    metadata: dict[str, Any]
    execution_count: int | None = None

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> tuple[dict, dict]:
        return self.data, self.metadata

    def __repr__(self) -> str:
        return str(self.data.get("text/plain", "RemoteResult"))


# ---------------------------------------------------------------------- default relays
def _write_stdout(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _write_stderr(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


def relay_display(msg_type: str, content: Mapping[str, Any]) -> None:
    """Show a remote ``display_data``/``update_display_data``/``clear_output`` in the local notebook."""
    from IPython.display import clear_output, publish_display_data

    if msg_type == "clear_output":
        clear_output(wait=bool(content.get("wait")))
        return
    publish_display_data(
        dict(content.get("data") or {}),
        dict(content.get("metadata") or {}),
        transient=dict(content.get("transient") or {}) or None,
        update=msg_type == "update_display_data",
    )


# The remote half of push/pull: run inside the container kernel's namespace, leaving no names behind.
_TRANSFER_SOURCE = """
def transfer(ns, load, save):
    import os, pickle
    errors = {}
    for name, path in load.items():
        try:
            with open(path, "rb") as fh:
                ns[name] = pickle.load(fh)
        except BaseException as exc:
            errors[name] = "%s: %s" % (type(exc).__name__, exc)
    for name, path in save.items():
        if name not in ns:
            errors[name] = "missing"
            continue
        try:
            with open(path, "wb") as fh:
                pickle.dump(ns[name], fh, protocol=5)
        except BaseException as exc:
            errors[name] = "%s: %s" % (type(exc).__name__, exc)
            try:
                os.unlink(path)
            except OSError:
                pass
    return errors
"""


# ---------------------------------------------------------------------- one session
class ContainerSession:
    """One warm container kernel running cells for the local kernel."""

    def __init__(self, manager: Any, environment: str, resources: Resources):
        self.manager = manager
        self.environment = environment
        #: Effective limits of the container (spec defaults merged with overrides; timeouts are per cell).
        self.resources = replace(resources, timeout=None)
        self.spec_file = Path(manager.spec_file())
        self.key = session_key(self.spec_file, environment, self.resources)
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
        self._auth: Any = None
        self._lock = threading.RLock()
        self._on_stop: list[Callable[[ContainerSession], None]] = []
        self.stopped = False

    # ------------------------------------------------------------------ properties
    @property
    def kernel(self) -> Any:
        """The :class:`ContainerKernel` (container + socket folder), once started."""
        provisioner = getattr(self.km, "provisioner", None)
        return getattr(provisioner, "kernel", None)

    @property
    def container_id(self) -> str | None:
        kernel = self.kernel
        return kernel.container.id if kernel is not None and kernel.container is not None else None

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
        self.spec_stamp = spec_stamp(self.spec_file)
        build = self.manager.build(self.environment, on_event=on_build_event)
        self.image, self.image_id = build.image, build.image_id
        t1 = time.perf_counter()
        self._context = zmq.Context()
        # ipc sockets appear only once the kernel binds them: retry the connection every 10 ms, not 100.
        self._context.setsockopt(zmq.RECONNECT_IVL, 10)
        self._context.setsockopt(zmq.LINGER, 0)
        self.km = ContainerKernelManager(
            environment=self.environment,
            spec_file=self.spec_file,
            resources=self.resources,
            role=SESSION_ROLE,
            config=self.manager.config,
            context=self._context,
        )
        try:
            self._start_kernel(cwd)
            t2 = time.perf_counter()
            self._auth = self.km.session.auth
            self._shell = self.km.connect_shell()
            self._iopub = self.km.connect_iopub()
            self._poller = zmq.Poller()
            self._poller.register(self._shell, zmq.POLLIN)
            self._poller.register(self._iopub, zmq.POLLIN)
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        t3 = time.perf_counter()
        self.timings = {"build": t1 - t0, "container": t2 - t1, "ready": t3 - t2}
        self.started_at = time.time()

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
            kernel = self.kernel
            try:
                if kernel is not None:
                    kernel.remove()
            finally:
                if self.km is not None:
                    self.km.cleanup_connection_file()
                if self._context is not None:
                    self._context.destroy(linger=0)
                    self._context = None
                for callback in self._on_stop:
                    callback(self)

    def is_alive(self) -> bool:
        kernel = self.kernel
        return not self.stopped and kernel is not None and kernel.poll() is None

    def logs(self, tail: int | str = "all") -> str:
        """The container's output (the kernel's own log, not the cells' output)."""
        kernel = self.kernel
        if kernel is None or kernel.container is None:
            return ""
        return kernel.container.logs(stdout=True, stderr=True, tail=tail).decode(errors="replace")

    def _logs_hint(self) -> str:
        try:
            lines = [line for line in self.logs(tail=15).splitlines() if line.strip()]
        except Exception:  # noqa: BLE001 - the hint is best effort
            return ""
        return ("; its last log lines:\n" + "\n".join("  " + line for line in lines)) if lines else ""

    def _raise_if_dead(self, *, starting: bool = False) -> None:
        kernel = self.kernel
        if kernel is None or kernel.poll() is None:
            return
        state = kernel.state()
        reason = kernel.death_reason() or "its container is gone"
        hint = "" if state.get("OOMKilled") else self._logs_hint()
        self.stop()
        if starting:
            message = f"the container kernel of {self.environment!r} stopped while starting: {reason}{hint}"
        else:
            message = (
                f"the container kernel of {self.environment!r} died: {reason}{hint}\n"
                "Its variables are lost; the next %%container cell starts a fresh one."
            )
        code = state.get("ExitCode")
        if state.get("OOMKilled"):
            raise OutOfMemoryError(message, exit_code=code or 137)
        raise RunError(message, exit_code=code)

    # ------------------------------------------------------------------ messages
    def _recv(self, sock: Any, msg_id: str | None = None) -> dict | None:
        # The next message on ``sock`` or None; one answering another request comes back without content.
        # Session.recv parses every header date with dateutil; on the hot path only the parent header is
        # needed to skip the messages that are not ours (signatures are checked for all of them).
        try:
            frames = sock.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return None
        try:
            index = frames.index(DELIM)
            signature, header, parent, metadata, content = frames[index + 1 : index + 6]
        except ValueError:
            return {"msg_type": "", "parent_header": {}, "content": {}}  # not a Jupyter message
        if self._auth is not None:
            check = self._auth.copy()
            for frame in (header, parent, metadata, content):
                check.update(frame)
            if not compare_digest(signature, check.hexdigest().encode()):
                return {"msg_type": "", "parent_header": {}, "content": {}}
        parent_header = json.loads(parent)
        if msg_id is not None and parent_header.get("msg_id") != msg_id:
            return {"msg_type": "", "parent_header": parent_header, "content": {}}
        return {
            "msg_type": json.loads(header)["msg_type"],
            "parent_header": parent_header,
            "content": json.loads(content),
        }

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
    ) -> RemoteResult | None:
        """Run ``code`` in the container, relaying its output live; returns its last expression's value.

        Raises:
            RemoteError: the code raised (with the container's traceback).
            KeyboardInterrupt: the local kernel was interrupted (the remote cell is interrupted too).
            RunTimeoutError: the cell ran longer than ``timeout`` seconds and was interrupted.
            OutOfMemoryError, RunError: the container kernel died; the session is stopped.
        """
        stdout = stdout or _write_stdout
        stderr = stderr or _write_stderr
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
                    while (msg := self._recv(self._iopub, msg_id)) is not None:
                        if msg["parent_header"].get("msg_id") != msg_id:
                            continue
                        msg_type = msg["msg_type"]
                        if msg_type == "status":
                            idle = msg["content"].get("execution_state") == "idle"
                        elif interrupted_at is None or msg_type == "stream":
                            on_iopub(msg_type, msg["content"])
                if self._shell in events:
                    while (msg := self._recv(self._shell, msg_id)) is not None:
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

    # ------------------------------------------------------------------ variables
    def _transfer(self, load: Mapping[str, str], save: Mapping[str, str]) -> dict[str, str]:
        # Run the remote half of a transfer; returns ``{name: problem}`` for names that did not travel.
        expression = (
            f"(lambda d: (exec({_TRANSFER_SOURCE!r}, d), d['transfer'](globals(), {dict(load)!r}, {dict(save)!r}))[1])"
            "({})"
        )
        with self._lock:
            self._check_usable()
            msg_id = self._request(
                {
                    "code": "",
                    "silent": True,
                    "store_history": False,
                    "user_expressions": {"transfer": expression},
                    "allow_stdin": False,
                    "stop_on_error": False,
                }
            )
            reply = self._wait(msg_id, lambda *_: None, None)
        answer = (reply.get("user_expressions") or {}).get("transfer") or {}
        if reply.get("status") != "ok" or answer.get("status") != "ok":
            failed = answer if answer.get("status") == "error" else reply
            raise ContainersError(
                f"moving variables in the container kernel of {self.environment!r} failed: "
                f"{failed.get('ename')}: {failed.get('evalue')}"
            )
        return ast.literal_eval(answer["data"]["text/plain"])

    def push(self, values: Mapping[str, Any]) -> None:
        """Copy local values into the container kernel's namespace (pickle protocol 5 through tmpfs)."""
        if not values:
            return
        token = uuid.uuid4().hex[:12]
        written: list[Path] = []
        load: dict[str, str] = {}
        try:
            for name, value in values.items():
                _check_name(name)
                path = self.socket_dir / f"in-{token}-{name}.pkl"
                written.append(path)
                try:
                    with open(path, "wb") as fh:
                        pickle.dump(value, fh, protocol=5)
                except Exception as exc:  # noqa: BLE001 - any pickling failure is the user's to fix
                    raise ContainersError(
                        f"variable {name!r} cannot be sent to the container: {_reason(exc)}"
                    ) from None
                load[name] = f"{CONTAINER_RUNTIME_DIR}/{path.name}"
            problems = self._transfer(load, {})
        finally:
            for path in written:
                path.unlink(missing_ok=True)
        for name, problem in problems.items():
            raise ContainersError(
                f"variable {name!r} could not be loaded in the container ({self.environment!r}): {problem}"
                + _missing_package_hint(problem, self.environment)
            )

    def pull(self, names: Iterable[str]) -> dict[str, Any]:
        """Copy variables of the container kernel back; returns ``{name: value}``."""
        names = list(dict.fromkeys(names))
        if not names:
            return {}
        token = uuid.uuid4().hex[:12]
        for name in names:
            _check_name(name)
        paths = {name: self.socket_dir / f"out-{token}-{name}.pkl" for name in names}
        try:
            problems = self._transfer({}, {name: f"{CONTAINER_RUNTIME_DIR}/{p.name}" for name, p in paths.items()})
            for name, problem in problems.items():
                if problem == "missing":
                    raise ContainersError(
                        f"no variable named {name!r} in the container kernel of {self.environment!r}; "
                        "assign it in the cell (or check its spelling)"
                    )
                raise ContainersError(f"variable {name!r} cannot be sent back from the container: {problem}")
            values: dict[str, Any] = {}
            for name, path in paths.items():
                try:
                    with open(path, "rb") as fh:
                        values[name] = pickle.load(fh)
                except Exception as exc:  # noqa: BLE001
                    raise ContainersError(
                        f"variable {name!r} came back from the container but cannot be loaded in this notebook: "
                        f"{_reason(exc)}; install the package it needs in this notebook's kernel"
                    ) from None
            return values
        finally:
            for path in paths.values():
                path.unlink(missing_ok=True)


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name.isidentifier():
        raise ContainersError(f"{name!r} is not a variable name")


def _reason(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _missing_package_hint(problem: str, environment: str) -> str:
    if problem.startswith(("ModuleNotFoundError", "ImportError")):
        return (
            f"; the environment lacks a package this value needs: add it to the pip list of {environment!r} "
            "in the spec file (the next %%container cell rebuilds the image)"
        )
    if "Can't get attribute" in problem and "__main__" in problem:
        return "; it refers to a class or function defined in this notebook: define it in a %%container cell too"
    return ""


def session_key(spec_file: Path, environment: str, resources: Resources) -> tuple:
    return (str(spec_file), environment, replace(resources, timeout=None))


def spec_stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


# ---------------------------------------------------------------------- the registry
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
        with self._lock:
            return self._sessions.get(session_key(Path(manager.spec_file()), environment, effective))

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
            from ..config import load_config
            from ..manager import ContainersManager

            manager = ContainersManager(config=load_config())
        effective = self.effective_resources(manager, environment, resources)
        key = session_key(Path(manager.spec_file()), environment, effective)
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
                    (log or _write_stderr)(
                        f"jupyter-containers: {environment!r} changed; starting a fresh container kernel "
                        "(variables of the old one are lost)\n"
                    )
                    session.stop()
                    session = None
            if session is None:
                session = ContainerSession(manager, environment, effective)
                session._on_stop.append(self._forget)
                session.start(on_build_event=on_build_event, cwd=cwd)
                self._sessions[key] = session
            return session

    def _forget(self, session: ContainerSession) -> None:
        with self._lock:
            if self._sessions.get(session.key) is session:
                del self._sessions[session.key]

    def list(self) -> list[ContainerSession]:
        with self._lock:
            return list(self._sessions.values())

    def stop(self, environment: str | None = None) -> list[ContainerSession]:
        """Stop the sessions of ``environment`` (every session when None); returns those stopped."""
        with self._lock:
            chosen = [s for s in self._sessions.values() if environment is None or s.environment == environment]
        for session in chosen:
            session.stop()
        return chosen

    def stop_all(self) -> list[ContainerSession]:
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
