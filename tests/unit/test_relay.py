"""The channel relay of ``--network none`` kernels (kernel/relay.py) without an engine: both sides in this process.

The in-container side (:func:`serve`, run in a subprocess of this Python with only ``-c`` and the module's source,
as ``docker exec`` runs it) reads and writes pipes; a thread stands in for the engine, framing its stdout with the
8-byte headers a non-tty exec stream has. Real sockets on 127.0.0.1, real threads; nothing is mocked but the
engine's stream (which cannot exist without one: the integration tests drive it, tests/integration/
test_remote_kernels.py).
"""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

from jupyter_containers.kernel.relay import LocalRelay, remote_command


class FakeExec:
    """``docker exec -i python -c <relay> serve``: a subprocess, its stdout framed as the engine frames it."""

    def __init__(self) -> None:
        command = remote_command(sys.executable)
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        self.here, self.engine = socket.socketpair()
        threading.Thread(target=self._to_process, daemon=True).start()
        threading.Thread(target=self._from_process, daemon=True).start()

    def _to_process(self) -> None:
        assert self.process.stdin is not None
        try:
            while data := self.engine.recv(1 << 16):
                self.process.stdin.write(data)
        except OSError:
            pass  # the relay closed its end
        self.process.stdin.close()

    def _from_process(self) -> None:
        assert self.process.stdout is not None
        try:
            while data := self.process.stdout.read(1 << 16):  # unbuffered (bufsize=0): what is there, up to that
                self.engine.sendall(struct.pack(">BxxxI", 1, len(data)) + data)
        except OSError:
            pass  # the relay closed its end
        self.engine.close()

    def close(self) -> None:
        self.here.close()
        self.process.wait(10)


def echo_server() -> tuple[socket.socket, int]:
    """A TCP echo service on 127.0.0.1 (the kernel's port inside the container)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return

            def echo(c: socket.socket = conn) -> None:
                while data := c.recv(1 << 16):
                    c.sendall(data)
                c.close()

            threading.Thread(target=echo, daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return server, server.getsockname()[1]


@pytest.fixture
def relay():
    server, port = echo_server()
    execs: list[FakeExec] = []

    def open_stream() -> socket.socket:
        execs.append(FakeExec())
        return execs[-1].here

    local = LocalRelay(open_stream, {"shell_port": port, "iopub_port": port})
    local.start()
    yield local
    local.close()
    server.close()
    for one in execs:
        one.close()


def receive(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(1 << 20)
        assert chunk, "the relay closed the connection"
        data += chunk
    return data


def test_connections_of_two_channels_go_through_one_stream_both_ways(relay):
    # given two clients on two channels' local ports, at once
    first = socket.create_connection(("127.0.0.1", relay.local_ports["shell_port"]), timeout=10)
    second = socket.create_connection(("127.0.0.1", relay.local_ports["iopub_port"]), timeout=10)
    big = bytes(range(256)) * 8192  # 2 MiB: many frames
    # when both send
    second.sendall(b"small")
    first.sendall(big)
    # then each gets its own bytes back, whole and in order
    assert receive(second, 5) == b"small"
    assert receive(first, len(big)) == big
    first.close()
    second.close()


def test_the_local_ports_are_on_loopback_only(relay):
    assert {listener.getsockname()[0] for listener in relay._listeners} == {"127.0.0.1"}


def test_a_port_nobody_listens_on_yet_is_connected_once_it_listens():
    # given a relay to a port where the "kernel" starts listening only later
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    execs: list[FakeExec] = []

    def open_stream() -> socket.socket:
        execs.append(FakeExec())
        return execs[-1].here

    local = LocalRelay(open_stream, {"hb_port": port})
    local.start()
    try:
        client = socket.create_connection(("127.0.0.1", local.local_ports["hb_port"]), timeout=10)
        client.sendall(b"ping")  # buffered there until the port listens
        time.sleep(0.3)
        late = socket.socket()
        late.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        late.bind(("127.0.0.1", port))
        late.listen()
        conn, _ = late.accept()
        # then what the client sent before arrives, and the answer comes back
        assert receive(conn, 4) == b"ping"
        conn.sendall(b"pong")
        assert receive(client, 4) == b"pong"
        client.close()
        conn.close()
        late.close()
    finally:
        local.close()
        for one in execs:
            one.close()
