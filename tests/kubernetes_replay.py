"""A loopback stand-in for a Kubernetes API server that replays a recorded exchange (tests only).

No Kubernetes cluster can run on these machines (no API server or kubelet is installable), so the Kubernetes
backend's calls are checked against exchanges written down in ``tests/data/kubernetes/*.json``. Those were
written by hand from the Kubernetes API reference (v1.30: Pod, Job, Secret, NetworkPolicy, Status, watch
events, the port-forward and exec websocket protocols), not recorded from a cluster: none was available.

The server (tornado, on 127.0.0.1 only, on a port the OS picks, in a thread of its own):

- answers each request from the exchange whose ``method`` and ``path`` (and ``watch`` query) match, in the
  recorded order per route; the last answer of a route repeats (a state read again stays that state), so
  how often the client polls does not matter, only what it is told;
- serves a watch (``?watch=true``) as the API server does: one JSON event per line, then ends the response;
- speaks the port-forward websocket protocol (``v4.channel.k8s.io``): the two initial frames naming the port
  on the data and error channels, then an echo of every data frame (upper-cased, so that a reply cannot be
  mistaken for the request);
- records every request (method, path, query, JSON body) for the test to check what the client sent;
- refuses with 599 and a message any request no exchange foresaw (the test then fails on it).

:func:`kubeconfig` writes a kubeconfig pointing a context at the server (a bearer token, checked on every
request: a client that loses its credentials fails the test).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

DATA = Path(__file__).parent / "data" / "kubernetes"
TOKEN = "replay-token-not-a-secret"


def load_exchange(name: str) -> dict[str, Any]:
    return json.loads((DATA / f"{name}.json").read_text())


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    body: Any


@dataclass
class ReplayServer:
    """The running server: ``url`` (http://127.0.0.1:PORT), ``requests`` as they arrived."""

    exchanges: list[dict[str, Any]]
    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    echoed: list[bytes] = field(default_factory=list)
    _queues: dict[tuple[str, str, bool], list[dict[str, Any]]] = field(default_factory=dict)
    _loop: Any = None
    _thread: threading.Thread | None = None
    _server: Any = None

    #: Optional stand-in for a node's kubelet (see :class:`LocalKubelet`): runs what a created Pod asks for.
    kubelet: Any = None
    #: Objects created so far, by name (answers with ``from_created`` are built from them).
    created: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: A folder standing for the container's filesystem, for the tar commands of exec (None: refused).
    files_root: Path | None = None
    #: Port-forward websockets open now.
    open_websockets: int = 0

    def __post_init__(self) -> None:
        queues: dict[tuple[str, str, bool], list[dict[str, Any]]] = defaultdict(list)
        for exchange in self.exchanges:
            watch = bool(exchange.get("watch"))
            queues[(exchange["method"], exchange["path"], watch)].append(exchange)
        self._queues = dict(queues)

    def answer(self, method: str, path: str, watch: bool) -> dict[str, Any] | None:
        """The next recorded answer for the request; a ``*`` segment of a recorded path matches any name."""
        for (m, pattern, w), queue in self._queues.items():
            regex = "^" + "/".join("[^/]+" if part == "*" else re.escape(part) for part in pattern.split("/")) + "$"
            if m == method and w == watch and re.match(regex, path) and queue:
                return queue.pop(0) if len(queue) > 1 else queue[0]
        return None

    def build(self, exchange: dict[str, Any], path: str, body: Any) -> Any:
        """The answer's body: as recorded, or (``from_created``) the object the client created, named by the
        path or the request, with the recorded ``merge`` on top (a status) and a uid as the API server adds."""
        if "from_created" not in exchange:
            return copy.deepcopy(exchange.get("body", {}))
        if isinstance(body, dict) and body.get("metadata", {}).get("name"):
            name = body["metadata"]["name"]
        else:
            name = path.rstrip("/").rsplit("/", 1)[-1]
        found = copy.deepcopy(self.created.get(name) or {"metadata": {"name": name}})
        found.setdefault("metadata", {}).setdefault("uid", f"00000000-0000-4000-8000-{abs(hash(name)) % 10**12:012d}")
        found["metadata"].setdefault("creationTimestamp", "2026-12-01T15:00:00Z")
        return _merge(found, copy.deepcopy(exchange.get("merge", {})))

    def sent(self, method: str, path_end: str = "") -> list[Recorded]:
        """The requests with ``method`` whose path ends with ``path_end``, in order."""
        return [r for r in self.requests if r.method == method and r.path.endswith(path_end)]

    def mutations(self) -> list[tuple[str, str]]:
        """(method, path) of every create, patch and delete, in the order the client sent them."""
        return [(r.method, r.path) for r in self.requests if r.method in ("POST", "PATCH", "PUT", "DELETE")]

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> ReplayServer:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            app = _application(self)
            from tornado.httpserver import HTTPServer
            from tornado.netutil import bind_sockets

            sockets = bind_sockets(0, "127.0.0.1")
            self._server = HTTPServer(app)
            self._server.add_sockets(sockets)
            self.url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="kubernetes-replay", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def close(self) -> None:
        if self._loop is None:
            return
        import time

        deadline = time.monotonic() + 5
        while self.open_websockets and time.monotonic() < deadline:
            time.sleep(0.05)  # let the client close its port-forwards first (no reset on its side)

        def stop() -> None:
            self._server.stop()
            self._loop.stop()

        self._loop.call_soon_threadsafe(stop)
        if self._thread is not None:
            self._thread.join(10)


def _application(replay: ReplayServer) -> Any:
    from tornado import web, websocket

    class Api(web.RequestHandler):
        def check_token(self) -> bool:
            if self.request.headers.get("Authorization") != f"Bearer {TOKEN}":
                replay.unexpected.append(f"{self.request.method} {self.request.path} without the bearer token")
                self.set_status(401)
                self.finish({"kind": "Status", "status": "Failure", "message": "Unauthorized", "code": 401})
                return False
            return True

        async def handle(self) -> None:
            if not self.check_token():
                return
            method, path = self.request.method or "", self.request.path
            query = dict(parse_qsl(urlsplit(self.request.uri or "").query))
            body: Any = None
            if self.request.body:
                try:
                    body = json.loads(self.request.body)
                except ValueError:
                    body = self.request.body.decode("utf-8", "replace")
            replay.requests.append(Recorded(method, path, query, body))
            watch = query.get("watch", "").lower() in ("true", "1")
            exchange = replay.answer(method, path, watch)
            if exchange is None:
                replay.unexpected.append(f"{method} {path} {query}")
                self.set_status(599)
                self.finish({"kind": "Status", "status": "Failure", "message": f"not in the exchange: {method} {path}"})
                return
            if method == "POST" and isinstance(body, dict) and body.get("metadata", {}).get("name"):
                replay.created[body["metadata"]["name"]] = body
                if replay.kubelet is not None and body.get("kind") == "Pod":
                    replay.kubelet.run_pod(body, replay.created)
            if method == "DELETE" and replay.kubelet is not None and "/pods/" in path:
                replay.kubelet.stop_pod(path.rsplit("/", 1)[-1])
            self.set_status(int(exchange.get("status", 200)))
            if "events" in exchange or "event_from_created" in exchange:
                self.set_header("Content-Type", "application/json")
                events = list(exchange.get("events", []))
                if "event_from_created" in exchange:
                    name = query.get("fieldSelector", "").partition("=")[2]
                    built = replay.build({"from_created": True, "merge": exchange["event_from_created"]}, name, None)
                    events.append({"type": "MODIFIED", "object": built})
                for event in events:
                    self.write(json.dumps(event) + "\n")
                    await self.flush()
                self.finish()
                return
            if "text" in exchange:
                self.set_header("Content-Type", "text/plain")
                self.finish(exchange["text"])
                return
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps(replay.build(exchange, path, body)))

        get = post = patch = delete = put = handle

    class PortForward(websocket.WebSocketHandler):
        """pods/portforward: channel 0 data, channel 1 errors of the one port asked for."""

        def select_subprotocol(self, subprotocols: list[str]) -> str | None:
            return "v4.channel.k8s.io" if "v4.channel.k8s.io" in subprotocols else None

        async def open(self, *args: Any) -> None:
            replay.requests.append(
                Recorded("GET", self.request.path, dict(parse_qsl(urlsplit(self.request.uri or "").query)), None)
            )
            if self.request.headers.get("Authorization") != f"Bearer {TOKEN}":
                replay.unexpected.append(f"port-forward {self.request.path} without the bearer token")
                self.close()
                return
            port = int(self.get_query_argument("ports"))
            little_endian = port.to_bytes(2, "little")
            await self.write_message(b"\x00" + little_endian, binary=True)
            await self.write_message(b"\x01" + little_endian, binary=True)
            self.stream = None
            replay.open_websockets += 1
            pod = self.request.path.rstrip("/").split("/")[-2]
            target = replay.kubelet.port(pod, port) if replay.kubelet is not None else None
            if target is not None:
                from tornado.tcpclient import TCPClient

                self.stream = await TCPClient().connect("127.0.0.1", target)
                asyncio.ensure_future(self._from_pod())

        async def _from_pod(self) -> None:
            from tornado.iostream import StreamClosedError

            try:
                while True:
                    data = await self.stream.read_bytes(1 << 16, partial=True)
                    await self.write_message(b"\x00" + data, binary=True)
            except (StreamClosedError, websocket.WebSocketClosedError):
                self.close()

        async def on_message(self, message: str | bytes) -> None:
            data = message if isinstance(message, bytes) else message.encode()
            if data[:1] == b"\x00" and len(data) > 1:
                replay.echoed.append(data[1:])
                if self.stream is not None:
                    from tornado.iostream import StreamClosedError

                    try:
                        await self.stream.write(data[1:])
                    except StreamClosedError:
                        self.close()
                else:
                    await self.write_message(b"\x00" + data[1:].upper(), binary=True)

        def on_close(self) -> None:
            if hasattr(self, "stream"):
                replay.open_websockets -= 1
            if getattr(self, "stream", None) is not None:
                self.stream.close()

    class Exec(websocket.WebSocketHandler):
        """pods/exec (``v4.channel.k8s.io``: stdin on channel 0, stdout 1, stderr 2, the exit Status on 3).

        Understood: ``kill -SIG 1`` (delivered to the kubelet's kernel process), and the two tar commands of the
        backend's file copies, run by the real ``tar`` of this machine in ``replay.files_root`` (a folder that
        stands for the container's filesystem): ``sh -c 'head -c "$0" | tar -x -f - -C "$1"' N DIR`` reads N
        bytes of stdin, ``tar -c -f - -C PARENT NAME`` sends the archive on stdout.
        """

        def select_subprotocol(self, subprotocols: list[str]) -> str | None:
            return "v4.channel.k8s.io" if "v4.channel.k8s.io" in subprotocols else None

        async def open(self, *args: Any) -> None:
            command = [v for k, v in parse_qsl(urlsplit(self.request.uri or "").query) if k == "command"]
            self.command = command
            self.stdin = b""
            replay.requests.append(Recorded("GET", self.request.path, {"command": " ".join(command)}, None))
            pod = self.request.path.rstrip("/").split("/")[-2]
            if self.request.headers.get("Authorization") != f"Bearer {TOKEN}":
                replay.unexpected.append(f"exec {self.request.path} without the bearer token")
                await self.finish_with(1)
            elif replay.kubelet is not None and command[:1] == ["kill"] and command[2:] == ["1"]:
                await self.finish_with(0 if replay.kubelet.signal(pod, int(command[1].lstrip("-"))) else 1)
            elif replay.files_root is not None and command[:1] == ["tar"] and "-c" in command:
                parent, name = command[command.index("-C") + 1], command[-1]
                folder = replay.files_root / parent.lstrip("/")
                done = subprocess.run(["tar", "-c", "-f", "-", "-C", str(folder), name], capture_output=True)
                for offset in range(0, len(done.stdout), 1 << 15):
                    await self.write_message(b"\x01" + done.stdout[offset : offset + (1 << 15)], binary=True)
                if done.stderr:
                    await self.write_message(b"\x02" + done.stderr, binary=True)
                await self.finish_with(done.returncode)
            elif replay.files_root is not None and command[:2] == ["sh", "-c"] and "tar -x" in command[2]:
                pass  # waits for its stdin (on_message)
            else:
                replay.unexpected.append(f"exec {command} in {pod}")
                await self.finish_with(1)

        async def on_message(self, message: str | bytes) -> None:
            data = message if isinstance(message, bytes) else message.encode()
            if data[:1] != b"\x00":
                return
            self.stdin += data[1:]
            size, directory = int(self.command[3]), self.command[4]
            if len(self.stdin) >= size:
                folder = replay.files_root / directory.lstrip("/")
                folder.mkdir(parents=True, exist_ok=True)
                done = subprocess.run(["tar", "-x", "-f", "-", "-C", str(folder)], input=self.stdin[:size])
                await self.finish_with(done.returncode)

        async def finish_with(self, code: int) -> None:
            status: dict[str, Any] = {"metadata": {}, "status": "Success"}
            if code:
                status = {
                    "metadata": {},
                    "status": "Failure",
                    "reason": "NonZeroExitCode",
                    "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
                }
            await self.write_message(b"\x03" + json.dumps(status).encode(), binary=True)
            self.close()

    return web.Application(
        [
            (r"/api/v1/namespaces/[^/]+/pods/[^/]+/portforward", PortForward),
            (r"/api/v1/namespaces/[^/]+/pods/[^/]+/exec", Exec),
            (r"/.*", Api),
        ]
    )


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


class LocalKubelet:
    """What a node would do with a kernel's Pod, done here: a real ipykernel process, run with the connection
    file the Pod would see, the one its Secret delivers at the path its args name.

    Only the kernel's process is local (no container: a kubelet cannot run here); everything between it and
    the client is the real path: the Secret's bytes as the backend sent them, the port-forward websocket of
    each channel (the replay server pipes it to the process's port), CurveZMQ and the HMAC key.
    """

    def __init__(self) -> None:
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, dict[int, int]] = {}
        self.signals: list[tuple[str, int]] = []
        self.folder = Path(tempfile.mkdtemp(prefix="jc-kubelet-"))

    def run_pod(self, pod: dict[str, Any], created: dict[str, dict[str, Any]]) -> None:
        name = pod["metadata"]["name"]
        main = pod["spec"]["containers"][0]
        argv = list(main.get("command", [])) + list(main.get("args", []))
        connection_path = argv[argv.index("-f") + 1]
        mount = next(m for m in main["volumeMounts"] if m["mountPath"] == connection_path)
        volume = next(v for v in pod["spec"]["volumes"] if v["name"] == mount["name"])
        secret = created[volume["secret"]["secretName"]]
        info = json.loads(base64.b64decode(secret["data"][mount["subPath"]]))
        mapping = {}
        for key in ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"):
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                mapping[int(info[key])] = probe.getsockname()[1]
            info[key] = mapping[int(info[key])]
        info["ip"] = "127.0.0.1"
        path = self.folder / f"{name}.json"
        path.write_text(json.dumps(info))
        path.chmod(0o600)
        argv[argv.index("-f") + 1] = str(path)
        argv[0] = sys.executable if argv[0].startswith("python") else argv[0]
        env = {k: v for k, v in os.environ.items() if not k.startswith("JPY_")}
        self.processes[name] = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.ports[name] = mapping

    def signal(self, pod: str, signum: int) -> bool:
        process = self.processes.get(pod)
        if process is None or process.poll() is not None:
            return False
        process.send_signal(signum)
        self.signals.append((pod, signum))
        return True

    def port(self, pod: str, port: int) -> int | None:
        return self.ports.get(pod, {}).get(port)

    def stop_pod(self, name: str) -> None:
        process = self.processes.pop(name, None)
        if process is not None:
            process.kill()
            process.wait(10)

    def close(self) -> None:
        for name in list(self.processes):
            self.stop_pod(name)
        for path in self.folder.glob("*"):
            path.unlink()
        self.folder.rmdir()


def kubeconfig(folder: Path, server: str, *, context: str = "replay", namespace: str = "ml") -> Path:
    """A kubeconfig in ``folder`` whose context ``context`` points at ``server`` with the replay's token."""
    path = folder / "kubeconfig"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "replay", "cluster": {"server": server}}],
        "users": [{"name": "replay", "user": {"token": TOKEN}}],
        "contexts": [{"name": context, "context": {"cluster": "replay", "user": "replay", "namespace": namespace}}],
        "current-context": context,
    }
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    return path
