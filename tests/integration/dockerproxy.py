"""A recording pass-through proxy for the Docker socket.

Used where a test must see exactly what was sent to the (real) engine, e.g. the GPU DeviceRequest that a
GPU-less engine refuses. Requests are forwarded unchanged; only their request lines and bodies are kept.
"""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path


class RecordingDockerProxy:
    def __init__(self, socket_path: Path, upstream: str = "/var/run/docker.sock"):
        self.socket_path = socket_path
        self.upstream = upstream
        self.requests: list[tuple[str, bytes]] = []
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(socket_path))
        self._server.listen(16)
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def base_url(self) -> str:
        return f"unix://{self.socket_path}"

    def __enter__(self) -> RecordingDockerProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        self._server.close()
        self._thread.join(5)

    def json_bodies(self, method: str, path_part: str) -> list[dict]:
        out = []
        for line, body in self.requests:
            if line.startswith(method + " ") and path_part in line and body:
                out.append(json.loads(body))
        return out

    def _serve(self) -> None:
        while not self._stop:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        upstream.connect(self.upstream)
        threading.Thread(target=self._copy, args=(upstream, client), daemon=True).start()
        buffer = b""
        try:
            while True:
                data = client.recv(65536)
                if not data:
                    break
                upstream.sendall(data)
                buffer += data
                buffer = self._record(buffer)
        except OSError:
            pass
        finally:
            try:
                upstream.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def _record(self, buffer: bytes) -> bytes:
        while b"\r\n\r\n" in buffer:
            head, rest = buffer.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            length = 0
            for header in lines[1:]:
                name, _, value = header.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            if len(rest) < length:
                return buffer
            self.requests.append((lines[0], rest[:length]))
            buffer = rest[length:]
        return buffer

    @staticmethod
    def _copy(source: socket.socket, target: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                target.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, target):
                try:
                    s.close()
                except OSError:
                    pass
