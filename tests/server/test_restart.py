"""A server killed in the middle of a job loses nothing: the running cell's output so far is in the output
notebook, and the next server re-attaches to the job's kernel (the default) or, configured to, marks the job
and its notebook interrupted and stops its container.

Real ``jupyter server`` subprocesses (the first is SIGKILLed, as a crash or an OOM kill of the server
would), the real engine, a real container kernel.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import nbformat
import pytest

from ..workspace import make_workspace
from .process import Server

pytestmark = pytest.mark.engine

SPEC = """
[environments.slow]
pip = ["six"]
"""


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


def workspace_with_notebook(tmp_path: Path, name: str, cells: list[str]) -> tuple[Path, Path]:
    """A server root (the workspace of SPEC) holding notebook ``name`` of ``cells``, and a state folder."""
    (tmp_path / "root").mkdir()
    root = make_workspace(tmp_path / "root", SPEC, config=None)
    state = tmp_path / "state"
    state.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    nbformat.write(nb, root / name)
    return root, state


def test_a_killed_server_keeps_the_running_cells_output_and_the_next_one_cleans_up(tmp_path):
    from jupyter_containers.backends.docker import DockerBackend

    backend = DockerBackend()
    # given a workspace with a notebook whose second cell prints, then runs for a long time
    root, state = workspace_with_notebook(
        tmp_path,
        "long.ipynb",
        ["print('first cell')", "import time\nprint('partial output', flush=True)\ntime.sleep(300)"],
    )
    first = Server(root, state, "first")
    second = None
    try:
        job = first.request("jobs", {"notebook": "long.ipynb", "environment": "slow"})
        output = root / job["output_path"]
        # when the second cell has printed (the output notebook shows it while the cell still runs)
        wait_for(lambda: "partial output" in printed(output), "the running cell's output reaching the notebook")
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
    root, state = workspace_with_notebook(
        tmp_path,
        "wait.ipynb",
        [
            "print('first cell')",
            "import os, time\nprint('partial output', flush=True)\n"
            "while not os.path.exists('/workspace/go'):\n    time.sleep(0.1)\nprint('after the restart')",
            "print('the next cell')",
        ],
    )
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
