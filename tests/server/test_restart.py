"""A server killed in the middle of a job loses nothing: the running cell's output so far is in the output
notebook, and the next server re-attaches to the job's kernel (the default) or, configured to, marks the job
and its notebook interrupted and stops its container.

Real ``jupyter server`` subprocesses (the first is SIGKILLed, as a crash or an OOM kill of the server
would), the real engine, a real container kernel.
"""

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

import nbformat
import pytest

from ..workspace import make_workspace

pytestmark = pytest.mark.engine

API = "jupyter-containers/api"
SPEC = """
[environments.slow]
pip = ["six"]
"""


class Server:
    """``jupyter server`` on 127.0.0.1 with a random port and token, with the extension."""

    def __init__(self, root: Path, state: Path, name: str, *options: str):
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
            "--Builder.image_repository=jupyter-containers-test/{env}",
            f"--JobManager.db={state / 'jobs.sqlite'}",
            "--ContainersService.install_kernelspecs=False",
            *options,
        ]
        if os.geteuid() == 0:
            command.append("--allow-root")
        env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(state / f"runtime-{name}")}
        self.log = open(state / f"{name}.log", "w")
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
        request = urllib.request.Request(
            f"{self.url}{API}/{path}",
            data=json.dumps(body).encode() if body is not None else None,
            method="POST" if body is not None else "GET",
            headers={"Authorization": f"token {self.token}"},
        )
        with self.opener.open(request, timeout=60) as response:
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


def printed(output: Path) -> str:
    """Everything the notebook's cells printed (not their source, which holds the same words)."""
    try:
        nb = nbformat.read(output, as_version=4)
    except (OSError, ValueError):
        return ""
    return "".join(o.get("text", "") for cell in nb.cells for o in cell.get("outputs", []))


def job_containers(backend, job_id: str) -> list:
    return backend.list_containers(all=True, labels={"io.jupyter.containers.job": job_id})


def wait_for(predicate, what: str, seconds: float = 600) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"{what} did not happen within {seconds:.0f} s"
        time.sleep(0.25)


def test_a_killed_server_keeps_the_running_cells_output_and_the_next_one_cleans_up(tmp_path):
    from jupyter_containers.backends.docker import DockerBackend

    backend = DockerBackend()
    # given a workspace with a notebook whose second cell prints, then runs for a long time
    (tmp_path / "root").mkdir()
    root = make_workspace(tmp_path / "root", SPEC, config=None)
    state = tmp_path / "state"
    state.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("print('first cell')"),
        nbformat.v4.new_code_cell("import time\nprint('partial output', flush=True)\ntime.sleep(300)"),
    ]
    nbformat.write(nb, root / "long.ipynb")
    first = Server(root, state, "first")
    second = None
    try:
        job = first.request("jobs", {"notebook": "long.ipynb", "environment": "slow"})
        output = root / job["output_path"]
        # when the second cell has printed (the output notebook shows it while the cell still runs)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if "partial output" in printed(output):
                break
            time.sleep(0.25)
        assert "partial output" in printed(output), "the running cell's output never reached the notebook"
        assert job_containers(backend, job["id"]), "the job's container is not labelled with its job"
        # and the server is killed outright
        first.stop(signal.SIGKILL)
        # then its output so far is kept
        assert "partial output" in printed(output)
        # and the next server marks the job and its notebook interrupted, and stops its container
        second = Server(root, state, "second", "--JobManager.on_restart=stop")
        assert second.request(f"jobs/{job['id']}")["status"] == "interrupted"
        record = nbformat.read(output, as_version=4).metadata["jupyter_containers"]
        assert record["status"] == "interrupted"
        assert "partial output" in printed(output)
        assert job_containers(backend, job["id"]) == []
    finally:
        first.stop(signal.SIGKILL)
        if second is not None:
            second.stop()
        for container in backend.list_containers(all=True, labels={"io.jupyter.containers.env": "slow"}):
            backend.remove_container(container.id)


def test_the_next_server_reattaches_to_a_live_kernel_and_runs_the_remaining_cells(tmp_path):
    """The default: the job's kernel outlived the killed server, so the next one re-attaches to it; the
    running cell's output goes on in the same cell (after a note about the gap) and the later cells run."""
    from jupyter_containers.backends.docker import DockerBackend
    from jupyter_containers.jobs.reattach import GAP_NOTE

    backend = DockerBackend()
    # given a job whose second cell prints, then waits for a file that the test writes after the restart
    (tmp_path / "root").mkdir()
    root = make_workspace(tmp_path / "root", SPEC, config=None)
    state = tmp_path / "state"
    state.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("print('first cell')"),
        nbformat.v4.new_code_cell(
            "import os, time\nprint('partial output', flush=True)\n"
            "while not os.path.exists('/workspace/go'):\n    time.sleep(0.1)\nprint('after the restart')"
        ),
        nbformat.v4.new_code_cell("print('the next cell')"),
    ]
    nbformat.write(nb, root / "wait.ipynb")
    first = Server(root, state, "first")
    second = None
    try:
        job = first.request("jobs", {"notebook": "wait.ipynb", "environment": "slow"})
        output = root / job["output_path"]
        wait_for(lambda: "partial output" in printed(output), "the running cell's output reaching the notebook")
        [container] = job_containers(backend, job["id"])
        # when the server is killed outright and a new one starts
        first.stop(signal.SIGKILL)
        second = Server(root, state, "second")
        assert second.request(f"jobs/{job['id']}")["status"] == "running"
        # and the cell then goes on
        (root / "go").write_text("")
        wait_for(lambda: second.request(f"jobs/{job['id']}")["status"] != "running", "the job's end")
        # then the job completed in the same kernel, with the cell's output before and after the restart
        result = second.request(f"jobs/{job['id']}")
        assert result["status"] == "completed", result
        nb = nbformat.read(output, as_version=4)
        assert nb.metadata["jupyter_containers"]["status"] == "completed"
        assert "cell" not in nb.metadata["jupyter_containers"]
        texts = ["".join(o.get("text", "") for o in cell.outputs) for cell in nb.cells]
        assert texts[1].index("partial output") < texts[1].index(GAP_NOTE) < texts[1].index("after the restart")
        assert texts[2] == "the next cell\n"
        # and its container and socket folder are gone
        assert job_containers(backend, job["id"]) == []
        assert not [m for m in container.mounts if Path(m).exists() and (Path(m) / "kernel.json").exists()]
    finally:
        first.stop(signal.SIGKILL)
        if second is not None:
            second.stop()
        for leftover in backend.list_containers(all=True, labels={"io.jupyter.containers.env": "slow"}):
            backend.remove_container(leftover.id)
