"""A real ``jupyter server`` subprocess with the extension, for tests that kill, restart or stop servers."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

API = "jupyter-containers/api"


class Server:
    """``jupyter server`` on 127.0.0.1 with a random port and token, with the extension; stopped by its PID.

    Also the server of ``benchmarks/server.py`` (with its own ``image_repository``).
    """

    def __init__(
        self,
        root: Path,
        state: Path,
        name: str,
        *options: str,
        image_repository: str = "jupyter-containers-test/{env}",
    ):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.url, self.token = f"http://127.0.0.1:{port}/", uuid.uuid4().hex
        bin_dir = Path(sys.executable).parent
        command = [
            str(bin_dir / "jupyter"),
            "server",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={port}",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={root}",
            "--ServerApp.jpserver_extensions=jupyter_containers=True",
            f"--Builder.image_repository={image_repository}",
            f"--JobManager.db={state / 'jobs.sqlite'}",
            "--ContainersService.install_kernelspecs=False",
            *options,
        ]
        if os.geteuid() == 0:
            command.append("--allow-root")
        env = {
            **os.environ,
            "JUPYTER_RUNTIME_DIR": str(state / f"runtime-{name}"),
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        self.log_path = state / f"{name}.log"
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(command, cwd=root, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + 90
        while True:
            assert self.process.poll() is None, f"the server exited; see {state / name}.log"
            try:
                self.request("engine")
                return
            except OSError:
                assert time.monotonic() < deadline, f"the server did not answer; see {state / name}.log"
                time.sleep(0.25)

    def request(self, path: str, body: dict | None = None) -> dict:
        """Our REST API: GET, or POST with ``body``."""
        return self.call("POST" if body is not None else "GET", f"{API}/{path}", body)

    def open(self, path: str, *, method: str = "GET", headers: dict | None = None, timeout: float = 60) -> Any:
        """Our REST API's raw response (to read a stream such as a build log's server-sent events)."""
        request = urllib.request.Request(
            f"{self.url}{API}/{path}",
            method=method,
            data=b"{}" if method == "POST" else None,
            headers={"Authorization": f"token {self.token}", **(headers or {})},
        )
        return self.opener.open(request, timeout=timeout)

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        """Any of the server's endpoints (``api/kernels`` …), authenticated with the server's token."""
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"Authorization": f"token {self.token}"},
        )
        with self.opener.open(request, timeout=120) as response:
            return json.loads(response.read() or b"null")

    def stop(self, signum: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signum)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.log.close()
