"""One OpenSSH connection to an ``ssh://`` engine's host: the engine's socket and kernel ports through it.

The ``ssh`` binary, not paramiko: it honours the user's ``~/.ssh/config`` as the docker CLI does (``Include``,
``Port``, ``ProxyJump``, an agent, known hosts), and the docker SDK's own ssh transport needs paramiko even
with ``use_ssh_client=True``. One master connection (``-M -S``) forwards a private local unix socket to the
engine's socket; kernel ports are added to the same connection later (``-O forward``), so a kernel start
costs no new ssh handshake. Nothing listens on a network interface here: the engine socket is a 0600 unix
socket in a 0700 folder, kernel forwards bind 127.0.0.1.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from .errors import EngineUnavailableError, RequestError

#: Seconds a first connection may take (ssh's ConnectTimeout, plus authentication) before it is given up.
CONNECT_TIMEOUT = 15


def split_ssh_url(address: str) -> tuple[str, str | None, int | None]:
    """``ssh://me@gpu-box:2222`` → ``("gpu-box", "me", 2222)``.

    Raises:
        RequestError: not an ``ssh://`` address with a host.
    """
    parts = urlsplit(address)
    if parts.scheme != "ssh" or not parts.hostname:
        raise RequestError(f"{address!r} is not an ssh:// engine address; write ssh://[USER@]HOST[:PORT]")
    try:
        port = parts.port
    except ValueError:
        raise RequestError(f"{address!r} has a bad port; write ssh://[USER@]HOST[:PORT]") from None
    return parts.hostname, parts.username, port


class SshTunnel:
    """A master ssh connection to ``address``'s host forwarding a local socket to ``remote_socket``.

    Blocking; thread-safe. :meth:`close` (also run at garbage collection and interpreter exit) ends it.
    """

    def __init__(
        self,
        address: str,
        *,
        remote_socket: str = "/var/run/docker.sock",
        ssh: Sequence[str] = ("ssh",),
        connect_timeout: float = CONNECT_TIMEOUT,
    ):
        self.address = address
        self.host, self.user, self.port = split_ssh_url(address)
        self.remote_socket = remote_socket
        self.ssh = list(ssh)
        self.connect_timeout = connect_timeout
        self._folder = Path(tempfile.mkdtemp(prefix="jc-ssh-"))  # 0700
        self.control = self._folder / "ctl"
        self.socket = self._folder / "docker.sock"
        self._process: subprocess.Popen | None = None
        self._forwards: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()
        self._finalizer = weakref.finalize(self, _close, None, self._folder)

    # ------------------------------------------------------------------ connection
    def _destination(self) -> list[str]:
        out = ["-p", str(self.port)] if self.port else []
        if self.user:
            out += ["-l", self.user]
        return [*out, "--", self.host]

    def _base(self) -> list[str]:
        return [*self.ssh, "-S", str(self.control), "-o", "BatchMode=yes"]

    @property
    def url(self) -> str:
        """``unix://…`` of the local end of the engine's socket (connects first)."""
        self.connect()
        return f"unix://{self.socket}"

    def connect(self) -> None:
        """Open the master connection unless it is open.

        Raises:
            EngineUnavailableError: ssh failed or did not connect within the connect timeout (its own
                message, e.g. "Permission denied (publickey)" or "Could not resolve hostname", is quoted).
        """
        with self._lock:
            if self._process is not None and self._process.poll() is None and self.socket.exists():
                return
            self._stop_process()
            self.socket.unlink(missing_ok=True)
            self.control.unlink(missing_ok=True)
            command = [
                *self._base(),
                "-M",
                # A tty session (not -N) makes both ends set TCP_NODELAY on the connection: without it every
                # small kernel message waits for a delayed ACK (~40 ms per round trip instead of ~2 ms).
                "-tt",
                "-o",
                "ControlPersist=no",
                "-o",
                "ExitOnForwardFailure=yes",
                "-o",
                f"ConnectTimeout={max(1, int(self.connect_timeout))}",
                "-o",
                "ServerAliveInterval=15",
                "-o",
                "StreamLocalBindUnlink=yes",
                "-L",
                f"{self.socket}:{self.remote_socket}",
                *self._destination(),
                "exec sleep 2147483647",
            ]
            err = tempfile.TemporaryFile()
            try:
                process = subprocess.Popen(
                    command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True
                )
            except OSError as exc:
                raise EngineUnavailableError(
                    f"cannot run ssh for {self.address} ({exc}); install the OpenSSH client (the 'ssh' command)"
                ) from None
            self._process = process
            self._finalizer.detach()
            self._finalizer = weakref.finalize(self, _close, process, self._folder)
            deadline = time.monotonic() + self.connect_timeout + 5
            while not (self.socket.exists() and self.control.exists()):
                if process.poll() is not None or time.monotonic() > deadline:
                    self._stop_process()
                    err.seek(0)
                    said = " ".join(err.read().decode("utf-8", "replace").split())[-400:]
                    raise EngineUnavailableError(
                        f"cannot reach the engine at {self.address} over ssh: "
                        + (said or f"no connection within {self.connect_timeout:.0f}s")
                        + f" (ran: {shlex.join(command[:1])} … {self.host}); check that 'ssh "
                        f"{self.user + '@' if self.user else ''}{self.host} docker info' works without a password "
                        "prompt (keys or an agent; the host in known_hosts)"
                    )
                time.sleep(0.02)
            err.close()

    def forward(self, remote_port: int, remote_host: str = "127.0.0.1") -> int:
        """A local port on 127.0.0.1 forwarded to ``remote_host:remote_port`` as the engine's host sees it.

        Raises:
            EngineUnavailableError: the forward could not be set up.
        """
        self.connect()
        key = (remote_host, int(remote_port))
        with self._lock:
            if key in self._forwards:
                return self._forwards[key]
            for _ in range(5):
                local = _free_port()
                done = subprocess.run(
                    [*self._base(), "-O", "forward", "-L", f"127.0.0.1:{local}:{remote_host}:{remote_port}",
                     *self._destination()],
                    capture_output=True,
                    text=True,
                    timeout=30,
                )  # fmt: skip
                if done.returncode == 0:
                    self._forwards[key] = local
                    return local
            raise EngineUnavailableError(
                f"cannot forward a port to {remote_host}:{remote_port} on {self.address} over ssh: "
                f"{' '.join(done.stderr.split())[:300]}; the ssh server must allow TCP forwarding "
                "(AllowTcpForwarding yes)"
            )

    def cancel(self, local_port: int) -> None:
        """Remove a forward made by :meth:`forward` (nothing happens when it is gone)."""
        with self._lock:
            for key, port in list(self._forwards.items()):
                if port != local_port:
                    continue
                del self._forwards[key]
                if self._process is not None and self._process.poll() is None:
                    subprocess.run(
                        [*self._base(), "-O", "cancel", "-L", f"127.0.0.1:{port}:{key[0]}:{key[1]}",
                         *self._destination()],
                        capture_output=True,
                        timeout=30,
                    )  # fmt: skip

    def _stop_process(self) -> None:
        if self._process is not None:
            _stop(self._process)
            self._process = None
        self._forwards.clear()

    def close(self) -> None:
        """End the connection and remove its sockets."""
        with self._lock:
            self._stop_process()
        self._finalizer()


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _close(process: subprocess.Popen | None, folder: Path) -> None:
    if process is not None and os.getpid() == _PID:
        _stop(process)
    shutil.rmtree(folder, ignore_errors=True)


_PID = os.getpid()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
