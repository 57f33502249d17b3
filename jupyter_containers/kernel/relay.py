"""The kernel's five channels over the engine's own connection, for ``--network none`` kernels on remote engines.

A kernel without a network cannot have published ports, yet the engine's API still reaches its container.
So its channels travel through ``docker exec``: :func:`serve` runs **inside the container** (``python -c``
with this module's source: the image's Python and its standard library only, no package of ours) and
multiplexes TCP connections to the kernel's ports on the container's loopback over the exec's stdin/stdout;
:class:`LocalRelay` runs **here**, listens on 127.0.0.1 ports (the ones the client's connection file names)
and carries each connection a ZMQ client opens to one channel as one stream of the exec. The exec stream is
the engine's API connection: TLS with client certificates for ``tcp://`` engines, the ssh connection for
``ssh://`` ones (docs/remote.md has the threat model). The kernel still signs every message with the HMAC
key and speaks CurveZMQ (harmless here: nothing else can reach its loopback).

Frames, both ways: ``kind`` (1 byte), ``stream`` (4 bytes), ``length`` (4 bytes, big-endian), payload.
``OPEN`` (here → there) carries the channel's port inside the container (2 bytes); ``DATA`` bytes of one
stream; ``CLOSE`` ends one stream (either side). Everything at import is the standard library, and the
in-container side keeps to syntax of Python 3.8.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
import threading
import time
from typing import Any

OPEN, DATA, CLOSE = 1, 2, 3
HEADER = struct.Struct(">BII")
#: How long the side in the container retries connecting to a port the kernel has not bound yet.
CONNECT_PATIENCE = 60.0
CHUNK = 1 << 16


# ---------------------------------------------------------------------- inside the container
def serve(read_fd: int = 0, write_fd: int = 1) -> None:
    """Relay frames from ``read_fd`` to TCP connections on 127.0.0.1 and back to ``write_fd`` (until EOF)."""
    write_lock = threading.Lock()
    streams: dict = {}  # stream id -> _Inside
    reader = os.fdopen(read_fd, "rb", buffering=CHUNK)

    def send(kind, stream, payload=b""):
        with write_lock:
            data = HEADER.pack(kind, stream, len(payload)) + payload
            view = memoryview(data)
            while view:
                written = os.write(write_fd, view)
                view = view[written:]

    while True:
        header = reader.read(HEADER.size)
        if len(header) < HEADER.size:
            break
        kind, stream, length = HEADER.unpack(header)
        payload = reader.read(length) if length else b""
        if len(payload) < length:
            break
        if kind == OPEN:
            (port,) = struct.unpack(">H", payload)
            inside = _Inside(stream, port, send, streams)
            streams[stream] = inside
            threading.Thread(target=inside.run, daemon=True).start()
        elif kind == DATA:
            target = streams.get(stream)
            if target is not None:
                target.deliver(payload)
        elif kind == CLOSE:
            target = streams.pop(stream, None)
            if target is not None:
                target.close()
    for target in list(streams.values()):
        target.close()


class _Inside:
    """One stream in the container: a TCP connection to the kernel's port, opened once the kernel listens."""

    def __init__(self, stream, port, send, streams):
        self.stream, self.port, self.send, self.streams = stream, port, send, streams
        self.lock = threading.Lock()
        self.pending = []
        self.sock = None
        self.closed = False

    def deliver(self, data):
        with self.lock:
            if self.sock is None:
                self.pending.append(data)
                return
            sock = self.sock
        try:
            sock.sendall(data)
        except OSError:
            self.close()

    def close(self):
        with self.lock:
            self.closed = True
            sock, self.sock = self.sock, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def run(self):
        deadline = time.monotonic() + CONNECT_PATIENCE
        sock = None
        while sock is None and not self.closed:
            try:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            except OSError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.01)
        if sock is None:
            self.streams.pop(self.stream, None)
            self.send(CLOSE, self.stream)
            return
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            with self.lock:  # what arrived meanwhile goes first: deliver() waits for the lock until it is sent
                if self.closed:
                    sock.close()
                    return
                for data in self.pending:
                    sock.sendall(data)
                self.pending = []
                self.sock = sock
            while True:
                data = sock.recv(CHUNK)
                if not data:
                    break
                self.send(DATA, self.stream, data)
        except OSError:
            pass
        if self.streams.pop(self.stream, None) is not None:
            self.send(CLOSE, self.stream)
        self.close()


def main(argv=None) -> int:
    """``python -c SOURCE serve``: the in-container side on stdin/stdout."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] != ["serve"]:
        sys.stderr.write("usage: relay serve\n")
        return 2
    serve()
    return 0


# ---------------------------------------------------------------------- here
def remote_command(python: str = "python") -> list[str]:
    """The ``docker exec`` command of the side in the container: this module's source, run by its Python."""
    with open(__file__, encoding="utf-8") as fh:
        source = fh.read()
    return [python, "-c", source, "serve"]


class LocalRelay:
    """Listens on 127.0.0.1 ports, one per kernel channel, and carries their connections over one exec stream.

    ``open_stream()`` gives a connected socket of ``docker exec`` running :func:`remote_command` in the kernel's
    container (stdin raw, stdout in the engine's 8-byte-header frames); it is opened again if the exec ends
    while the relay is in use. One thread does all I/O (a TLS socket must not be read and written by two
    threads at once).
    """

    def __init__(self, open_stream: Any, ports: dict[str, int], *, log: Any = None):
        self._open_stream = open_stream
        self.container_ports = dict(ports)  # channel name -> port inside the container
        self.log = log
        self.local_ports: dict[str, int] = {}
        self._listeners: dict[socket.socket, int] = {}  # listening socket -> port inside
        self._conns: dict[int, socket.socket] = {}
        self._by_sock: dict[socket.socket, int] = {}
        self._next = 1
        self._stream: Any = None
        self._inbox = b""
        self._demuxed = b""
        self._closed = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> dict[str, int]:
        """Open the exec stream and the local ports; ``{channel: local port}`` (e.g. ``shell_port``)."""
        self._stream = self._open_stream()
        for name, inside in self.container_ports.items():
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", 0))
            listener.listen(16)
            listener.setblocking(False)
            self._listeners[listener] = inside
            self.local_ports[name] = listener.getsockname()[1]
        self._thread = threading.Thread(target=self._loop, name="jupyter-containers-relay", daemon=True)
        self._thread.start()
        return dict(self.local_ports)

    def close(self) -> None:
        """Stop relaying: the local ports close, and the exec ends (its stdin closes)."""
        self._closed = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)
        for sock in [*self._listeners, *self._conns.values(), self._wake_r, self._wake_w]:
            sock.close()
        self._listeners.clear()
        self._conns.clear()
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    # ---- the I/O thread
    def _loop(self) -> None:
        import selectors

        reopened = 0
        while not self._closed:
            self._selector = selector = selectors.DefaultSelector()
            selector.register(self._wake_r, selectors.EVENT_READ)
            selector.register(self._stream, selectors.EVENT_READ)
            for listener in self._listeners:
                selector.register(listener, selectors.EVENT_READ)
            for sock in self._conns.values():
                selector.register(sock, selectors.EVENT_READ)
            try:
                ended = self._serve()
            finally:
                selector.close()
            if not ended or self._closed:
                return
            # The exec ended (the engine restarted it, the relay died): its streams are gone; start another.
            for sock in self._conns.values():
                sock.close()
            self._conns.clear()
            self._by_sock.clear()
            self._inbox = self._demuxed = b""
            reopened += 1
            if reopened > 3:
                self._note("the kernel's channel relay ended three times; giving up")
                return
            try:
                self._stream.close()
                self._stream = self._open_stream()
            except Exception as exc:  # noqa: BLE001 - the engine refused: nothing left to relay
                self._note(f"the kernel's channel relay could not be opened again: {exc}")
                return

    def _serve(self) -> bool:
        """Relay until closed (False) or the exec stream ends (True)."""
        stream = self._stream
        while not self._closed:
            for key, _ in self._selector.select(1.0):
                sock = key.fileobj
                if sock is self._wake_r:
                    return False
                if sock is stream:
                    if not self._read_stream(stream):
                        return True
                    while getattr(stream, "pending", lambda: 0)():  # TLS: records decrypted but not yet read
                        if not self._read_stream(stream):
                            return True
                elif sock in self._listeners:
                    self._accept(sock)
                elif sock in self._by_sock:
                    self._read_local(sock)
        return False

    def _accept(self, listener: socket.socket) -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        conn.setblocking(True)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        stream_id, self._next = self._next, self._next + 1
        self._conns[stream_id] = conn
        self._by_sock[conn] = stream_id
        self._selector.register(conn, 1)  # EVENT_READ
        self._send(OPEN, stream_id, struct.pack(">H", self._listeners[listener]))

    def _read_local(self, conn: socket.socket) -> None:
        stream_id = self._by_sock.get(conn)
        try:
            data = conn.recv(CHUNK)
        except OSError:
            data = b""
        if stream_id is None:
            return
        if data:
            self._send(DATA, stream_id, data)
            return
        self._drop(stream_id)
        self._send(CLOSE, stream_id)

    def _drop(self, stream_id: int) -> None:
        conn = self._conns.pop(stream_id, None)
        if conn is None:
            return
        self._by_sock.pop(conn, None)
        try:
            self._selector.unregister(conn)
        except (KeyError, ValueError):
            pass
        conn.close()

    def _send(self, kind: int, stream_id: int, payload: bytes = b"") -> None:
        try:
            self._stream.sendall(HEADER.pack(kind, stream_id, len(payload)) + payload)
        except OSError as exc:
            self._note(f"the kernel's channel relay could not send: {exc}")

    def _read_stream(self, stream: Any) -> bool:
        try:
            data = stream.recv(CHUNK)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False
        if not data:
            return False
        self._inbox += data
        # The engine's framing of a non-tty exec: 1 byte stream (1 stdout, 2 stderr), 3 zero, 4 length.
        while len(self._inbox) >= 8:
            kind, length = struct.unpack(">BxxxI", self._inbox[:8])
            if len(self._inbox) < 8 + length:
                break
            chunk, self._inbox = self._inbox[8 : 8 + length], self._inbox[8 + length :]
            if kind == 2:
                self._note("the kernel's channel relay says: " + chunk.decode("utf-8", "replace").strip())
            else:
                self._demuxed += chunk
        self._dispatch()
        return True

    def _dispatch(self) -> None:
        while len(self._demuxed) >= HEADER.size:
            kind, stream_id, length = HEADER.unpack(self._demuxed[: HEADER.size])
            if len(self._demuxed) < HEADER.size + length:
                return
            payload = self._demuxed[HEADER.size : HEADER.size + length]
            self._demuxed = self._demuxed[HEADER.size + length :]
            conn = self._conns.get(stream_id)
            if conn is None:
                continue
            if kind == DATA:
                try:
                    conn.sendall(payload)
                except OSError:
                    kind = CLOSE
            if kind == CLOSE:
                # The kernel side closed it (or never could open it): the client reconnects on its own.
                self._drop(stream_id)

    def _note(self, message: str) -> None:
        if self.log is not None:
            self.log.warning("%s", message)
        else:
            sys.stderr.write(f"jupyter-containers: {message}\n")


if __name__ == "__main__":
    sys.exit(main())
