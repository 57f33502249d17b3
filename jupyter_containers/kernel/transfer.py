"""Variables in and out of a container kernel (``%%container --in/--out``).

Values travel as pickle files (protocol 5) through the kernel's socket folder, which is bind-mounted into
the container (on tmpfs when there is one), so a 100 MB array moves at memory speed without any network.
The remote half runs as one silent user expression that leaves no names behind in the kernel.

The large buffers of a value (a NumPy array's data, a DataFrame's blocks: what pickle protocol 5 hands out of
band) are written after the pickle, as they are in memory, and read into fresh memory that the kernel asks to
be backed by huge pages (an anonymous private mapping with ``MADV_HUGEPAGE``), then given to ``pickle.loads``
as its out-of-band buffers: no copy inside pickle on either side, and 2 MB pages instead of 4 KB ones to fault
in and charge to the container's memory cgroup. A 100 MB array loaded in 35 ms instead of 68 ms here
(docs/performance.md). Small buffers, non-contiguous ones and everything else stay in the pickle. Both sides
run the same code (:data:`_FORMAT_SOURCE`); a reader also takes a plain pickle file.

``--in`` to a kernel on this machine's own engine goes through named pipes in the socket folder rather than
files: the container reads while this side writes, so the copy overlaps the writing (:func:`_push_streamed`).
``--out`` keeps files: the reader here must not wait on a pipe that a failing container never opens.

A kernel on a remote engine has no shared folder: the same pickle files go into and out of its container
through the engine's API (``put_archive``/``get_archive``, over its TLS or ssh connection), into
/run/jupyter-containers (0700, the container user's) as 0600 files that are removed once read.
"""

from __future__ import annotations

import ast
import os
import pickle
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ..errors import ContainersError, RequestError, SessionError
from .container import CONTAINER_RUNTIME_DIR

if TYPE_CHECKING:
    from .session import ContainerSession

# The file format of a value, run on both sides (here through exec, in the container within _TRANSFER_SOURCE):
# b"JCV1", the pickle's length and the number of out-of-band buffers (little-endian u64), each buffer's length,
# the pickle, the buffers. The container's Python runs it too: Python 3.8's language and standard library.
_FORMAT_SOURCE = """
import mmap, pickle, struct

JC_MAGIC = b"JCV1"
JC_OUT_OF_BAND = 1 << 16  # smaller buffers stay in the pickle
JC_HUGE = 1 << 20  # from this size, read into memory backed by huge pages

def jc_dumps(value):
    # (the header and pickle, the out-of-band buffers as views of the value's memory: nothing copied)
    raws = []
    def take(buffer):
        try:
            raw = buffer.raw()
        except BufferError:  # not contiguous: in the pickle
            return True
        if raw.nbytes < JC_OUT_OF_BAND:
            return True
        raws.append(raw)
        return None
    data = pickle.dumps(value, protocol=5, buffer_callback=take)
    head = JC_MAGIC + struct.pack("<QQ", len(data), len(raws))
    return head + struct.pack("<%dQ" % len(raws), *(raw.nbytes for raw in raws)) + data, raws

def jc_send(dumped, fh):
    head, raws = dumped
    fh.write(head)
    for raw in raws:
        fh.write(raw)

def jc_write(value, fh):
    jc_send(jc_dumps(value), fh)

def jc_alloc(size):
    if size >= JC_HUGE and hasattr(mmap, "MADV_HUGEPAGE"):
        memory = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE)
        try:
            memory.madvise(mmap.MADV_HUGEPAGE)
        except OSError:
            pass
        return memory
    return bytearray(size)

def jc_read(fh):
    head = fh.read(4)
    if head != JC_MAGIC:
        return pickle.loads(head + fh.read())
    size, count = struct.unpack("<QQ", fh.read(16))
    sizes = struct.unpack("<%dQ" % count, fh.read(8 * count))
    data = fh.read(size)
    if len(data) != size:
        raise EOFError("the file ends inside its pickle")
    buffers = []
    for length in sizes:
        memory = jc_alloc(length)
        view, got = memoryview(memory), 0
        while got < length:
            n = fh.readinto(view[got:])
            if not n:
                raise EOFError("the file ends inside a buffer of %d bytes" % length)
            got += n
        del view
        buffers.append(memory)
    return pickle.loads(data, buffers=buffers)
"""

# The remote half of push/pull: run inside the container kernel's namespace, leaving no names behind.
_TRANSFER_SOURCE = (
    _FORMAT_SOURCE
    + """
def transfer(ns, load, save):
    import os
    errors = {}
    for name, path in load.items():
        try:
            with open(path, "rb") as fh:
                ns[name] = jc_read(fh)
        except BaseException as exc:
            errors[name] = "%s: %s" % (type(exc).__name__, exc)
    for name, path in save.items():
        if name not in ns:
            errors[name] = "missing"
            continue
        try:
            with open(path, "wb") as fh:
                jc_write(ns[name], fh)
        except BaseException as exc:
            errors[name] = "%s: %s" % (type(exc).__name__, exc)
            try:
                os.unlink(path)
            except OSError:
                pass
    return errors
"""
)

_FORMAT: dict[str, Any] = {}
exec(compile(_FORMAT_SOURCE, "<jupyter-containers transfer format>", "exec"), _FORMAT)
write_value: Callable[[Any, IO[bytes]], None] = _FORMAT["jc_write"]
read_value: Callable[[IO[bytes]], Any] = _FORMAT["jc_read"]
#: A value's pickle and out-of-band buffers, ready to send (pickling errors happen here, before anything is sent).
dump_value: Callable[[Any], tuple[bytes, list[memoryview]]] = _FORMAT["jc_dumps"]
send_value: Callable[[tuple[bytes, list[memoryview]], IO[bytes]], None] = _FORMAT["jc_send"]
#: How long a pipe of ``--in`` waits for the container kernel to open it (it does so at once, in order).
PIPE_OPEN_TIMEOUT = 60.0
#: Engines whose bind mounts are the host's own files (a pipe there is one pipe), by address.
_SAME_KERNEL: dict[str, bool] = {}


def push(session: ContainerSession, values: Mapping[str, Any]) -> None:
    """Copy local ``values`` into the namespace of ``session``'s container kernel.

    Raises:
        RequestError: a name is not a variable name.
        SessionError: a value cannot be pickled here or unpickled in the container (the message says why).
    """
    if not values:
        return
    if session.kernel.remote:
        return _push_remote(session, values)
    dumped = _dump_all(values)  # a value that cannot be pickled fails the push before anything is written
    problems = _push_streamed(session, dumped) if _streams(session) else _push_files(session, dumped)
    _raise_push_problems(session, problems)


Dumped = tuple[bytes, list[memoryview]]


def _dump_all(values: Mapping[str, Any]) -> dict[str, Dumped]:
    dumped: dict[str, Dumped] = {}
    for name, value in values.items():
        _check_name(name)
        try:
            dumped[name] = dump_value(value)
        except Exception as exc:  # noqa: BLE001 - any pickling failure is the user's to fix
            raise SessionError(f"variable {name!r} cannot be sent to the container: {_reason(exc)}") from None
    return dumped


def _push_files(session: ContainerSession, dumped: Mapping[str, Dumped]) -> dict[str, str]:
    """``push`` through one tmpfs file per value in the socket folder, written and then read there."""
    token = uuid.uuid4().hex[:12]
    written: list[Path] = []
    load: dict[str, str] = {}
    try:
        for name, value in dumped.items():
            path = session.socket_dir / f"in-{token}-{name}.pkl"
            written.append(path)
            try:
                with open(path, "wb") as fh:
                    send_value(value, fh)
            except OSError as exc:
                raise SessionError(
                    f"variable {name!r} cannot be sent to the container: {_reason(exc)}; free space where the "
                    f"session's socket folder is ({session.socket_dir}) and run the cell again"
                ) from None
            load[name] = f"{CONTAINER_RUNTIME_DIR}/{path.name}"
        return _transfer(session, load, {})
    finally:
        for path in written:
            path.unlink(missing_ok=True)


def _raise_push_problems(session: ContainerSession, problems: Mapping[str, str]) -> None:
    """The first variable the container kernel could not load, as the error the user reads."""
    for name, problem in problems.items():
        raise SessionError(
            f"variable {name!r} could not be loaded in the container ({session.environment!r}): {problem}"
            + _missing_package_hint(problem, session.environment)
        )


def _streams(session: ContainerSession) -> bool:
    """Whether ``--in`` may go through pipes in the socket folder: the engine runs on this machine's own kernel
    (Linux, a local socket, not Docker Desktop's virtual machine, whose bind mounts are shared files, not the
    same pipes). Asked once per engine."""
    backend = session.manager.backend
    if not sys.platform.startswith("linux") or not backend.is_local:
        return False
    address = backend.address
    if address not in _SAME_KERNEL:
        try:
            system = backend.engine_info().os or ""
        except ContainersError:
            return False
        _SAME_KERNEL[address] = "docker desktop" not in system.lower()
    return _SAME_KERNEL[address]


def _push_streamed(session: ContainerSession, dumped: Mapping[str, Dumped]) -> dict[str, str]:
    """``push`` through one named pipe per value, written here while the container kernel reads it: the
    copy into the container overlaps the writing instead of following it (a 100 MB array: 55 ms instead of
    75 ms here, file written and read), and no tmpfs pages are allocated for it. The pipes are created with
    the files' permissions in the socket folder and removed afterwards.

    If writing stops half way (the container stopped reading: its error comes in the reply; or an interrupt
    here), the remaining pipes are opened and closed so that the kernel reads an end of file and answers,
    instead of waiting for a writer.
    """
    token = uuid.uuid4().hex[:12]
    pipes = {name: session.socket_dir / f"in-{token}-{name}.pipe" for name in dumped}
    try:
        for path in pipes.values():
            os.mkfifo(path, 0o666)  # less the umask, as the files of the other paths

        def feed() -> None:
            fed = 0
            try:
                for name, path in pipes.items():
                    fed += 1
                    fh = os.fdopen(_open_pipe(path), "wb")  # buffered: it writes a large view whole
                    try:
                        send_value(dumped[name], fh)
                        fh.flush()
                    except BrokenPipeError:
                        break  # the kernel stopped reading (killed, out of memory?): the reply or its death says
                    finally:
                        try:
                            fh.close()
                        except OSError:
                            pass  # what was left to flush of a broken pipe
            finally:
                for path in list(pipes.values())[fed:]:
                    try:
                        os.close(_open_pipe(path, timeout=5.0))
                    except SessionError:
                        break  # the kernel is not reading (any more): its reply or death tells

        load = {name: f"{CONTAINER_RUNTIME_DIR}/{path.name}" for name, path in pipes.items()}
        return _problems(session, session.evaluate_while(_transfer_expression(load, {}), feed))
    finally:
        for path in pipes.values():
            path.unlink(missing_ok=True)


def _open_pipe(path: Path, timeout: float = PIPE_OPEN_TIMEOUT) -> int:
    """The write end of the pipe at ``path``, once the container kernel has opened it to read (a non-blocking
    open fails with ENXIO until then); blocking writes, with a 1 MiB pipe buffer where the system allows."""
    import errno
    import fcntl

    deadline = time.monotonic() + timeout
    pause = 0.0002
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                raise SessionError(
                    f"cannot write to the pipe {path.name} of the transfer: {exc}; run the cell again, or "
                    "'%container stop' and run it again in a fresh session"
                ) from None
            if time.monotonic() > deadline:
                raise SessionError(
                    f"the container kernel did not open {path.name} within {timeout:.0f} s; the variable was not "
                    "sent (is the kernel still alive? '%container status')"
                ) from None
            time.sleep(pause)
            pause = min(pause * 2, 0.01)
    os.set_blocking(fd, True)
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 1 << 20)
    except (OSError, AttributeError):
        pass  # the default 64 KiB buffer (or /proc/sys/fs/pipe-max-size is lower): slower, the same bytes
    return fd


def pull(session: ContainerSession, names: Iterable[str]) -> dict[str, Any]:
    """Copy variables of ``session``'s container kernel back; returns ``{name: value}``.

    Raises:
        RequestError: a name is not a variable name.
        SessionError: a variable is missing in the container, or cannot travel back (the message says why).
    """
    names = list(dict.fromkeys(names))
    if not names:
        return {}
    token = uuid.uuid4().hex[:12]
    for name in names:
        _check_name(name)
    if session.kernel.remote:
        return _pull_remote(session, names, token)
    paths = {name: session.socket_dir / f"out-{token}-{name}.pkl" for name in names}
    try:
        problems = _transfer(session, {}, {name: f"{CONTAINER_RUNTIME_DIR}/{p.name}" for name, p in paths.items()})
        _raise_pull_problems(session, problems)
        values: dict[str, Any] = {}
        for name, path in paths.items():
            try:
                with open(path, "rb") as fh:
                    values[name] = read_value(fh)
            except Exception as exc:  # noqa: BLE001
                raise SessionError(
                    f"variable {name!r} came back from the container but cannot be loaded in this notebook: "
                    f"{_reason(exc)}; install the package it needs in this notebook's kernel"
                ) from None
        return values
    finally:
        for path in paths.values():
            path.unlink(missing_ok=True)


def _push_remote(session: ContainerSession, values: Mapping[str, Any]) -> None:
    import io
    import tarfile
    import time

    token = uuid.uuid4().hex[:12]
    uid, _, gid = session.manager.backend.container_user().partition(":")
    buf = io.BytesIO()
    load: dict[str, str] = {}
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, value in values.items():
            _check_name(name)
            try:
                data = pickle.dumps(value, protocol=5)
            except Exception as exc:  # noqa: BLE001 - any pickling failure is the user's to fix
                raise SessionError(f"variable {name!r} cannot be sent to the container: {_reason(exc)}") from None
            info = tarfile.TarInfo(f"in-{token}-{name}.pkl")
            info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
            info.uid, info.gid = int(uid), int(gid or uid)
            tar.addfile(info, io.BytesIO(data))
            load[name] = f"{CONTAINER_RUNTIME_DIR}/{info.name}"
            del data
    buf.seek(0)
    session.kernel.container.put_archive(CONTAINER_RUNTIME_DIR, buf)  # streamed from the buffer, not copied
    del buf
    try:
        problems = _transfer(session, load, {})
    finally:
        _remove_remote(session, list(load.values()))
    _raise_push_problems(session, problems)


def _pull_remote(session: ContainerSession, names: list[str], token: str) -> dict[str, Any]:
    import io
    import tarfile

    paths = {name: f"{CONTAINER_RUNTIME_DIR}/out-{token}-{name}.pkl" for name in names}
    try:
        problems = _transfer(session, {}, paths)
        _raise_pull_problems(session, problems)
        values: dict[str, Any] = {}
        for name, path in paths.items():
            buf = io.BytesIO()
            for chunk in session.kernel.container.get_archive(path):
                buf.write(chunk)
            buf.seek(0)
            with tarfile.open(fileobj=buf) as tar:
                member = next(m for m in tar if m.isfile())
                extracted = tar.extractfile(member)
                try:
                    values[name] = read_value(extracted)  # type: ignore[arg-type]
                except Exception as exc:  # noqa: BLE001
                    raise SessionError(
                        f"variable {name!r} came back from the container but cannot be loaded in this notebook: "
                        f"{_reason(exc)}; install the package it needs in this notebook's kernel"
                    ) from None
        return values
    finally:
        _remove_remote(session, list(paths.values()))


def _remove_remote(session: ContainerSession, paths: list[str]) -> None:
    # The files of a transfer, removed in the container (silently; a missing one is fine).
    session.evaluate(f"[__import__('os').unlink(p) for p in {paths!r} if __import__('os').path.exists(p)] and None")


def _transfer_expression(load: Mapping[str, str], save: Mapping[str, str]) -> str:
    # The remote half of a transfer as one silent expression, leaving no names behind.
    return (
        f"(lambda d: (exec({_TRANSFER_SOURCE!r}, d), d['transfer'](globals(), {dict(load)!r}, {dict(save)!r}))[1])"
        "({})"
    )


def _transfer(session: ContainerSession, load: Mapping[str, str], save: Mapping[str, str]) -> dict[str, str]:
    # Run the remote half of a transfer; returns ``{name: problem}`` for names that did not travel.
    return _problems(session, session.evaluate(_transfer_expression(load, save)))


def _problems(session: ContainerSession, answer: dict[str, Any]) -> dict[str, str]:
    if answer.get("status") != "ok":
        raise SessionError(
            f"moving variables in the container kernel of {session.environment!r} failed: "
            f"{answer.get('ename')}: {answer.get('evalue')}"
        )
    return ast.literal_eval(answer["data"]["text/plain"])


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name.isidentifier():
        raise RequestError(f"{name!r} is not a variable name; --in and --out take Python identifiers")


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


def _raise_pull_problems(session: Any, problems: dict[str, str]) -> None:
    """The first variable the container kernel could not send back, as the error the user reads."""
    for name, problem in problems.items():
        if problem == "missing":
            raise SessionError(
                f"no variable named {name!r} in the container kernel of {session.environment!r}; "
                "assign it in the cell (or check its spelling)"
            )
        raise SessionError(f"variable {name!r} cannot be sent back from the container: {problem}")
