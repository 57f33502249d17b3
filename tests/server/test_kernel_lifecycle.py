"""Every way a container kernel ends removes its container: shut down one by one (JupyterLab's "Shut Down
All" sends one DELETE per kernel), restart, culling of idle kernels, and the server stopping.

Real ``jupyter server`` subprocesses with the extension's kernel spec manager, the real engine, real
container kernels started through ``/api/kernels`` as JupyterLab starts them.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from ..workspace import make_workspace
from .process import Server

pytestmark = pytest.mark.engine

SPEC = """
[environments.lifecycle]
pip = ["six"]
"""
KERNEL = "containers-lifecycle"
KSM = "--ServerApp.kernel_spec_manager_class=jupyter_containers.kernel.kernelspec.ContainersKernelSpecManager"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, engine_config) -> Path:
    """The workspace, with its environment built once (a kernel start then only starts a container)."""
    from jupyter_containers.manager import ContainersManager

    folder = tmp_path_factory.mktemp("lifecycle")
    make_workspace(folder, SPEC, config=None)
    ContainersManager(spec_path=folder / "containers.toml", config=engine_config).build("lifecycle")
    return folder


def kernel_containers() -> list:
    from jupyter_containers.backends.docker import DockerBackend

    return DockerBackend().list_containers(all=True, labels={"io.jupyter.containers.env": "lifecycle"})


def until_count(count: int, seconds: float = 60) -> int:
    deadline = time.monotonic() + seconds
    while (found := len(kernel_containers())) != count and time.monotonic() < deadline:
        time.sleep(0.25)
    return found


def start_kernels(server: Server, n: int) -> list[str]:
    return [server.call("POST", "api/kernels", {"name": KERNEL})["id"] for _ in range(n)]


def test_shutdown_one_by_one_and_restart_remove_every_container(root, tmp_path):
    server = Server(root, tmp_path, "server", KSM)
    try:
        # given three container kernels started as the launcher starts them
        ids = start_kernels(server, 3)
        assert until_count(3) == 3
        # when one is restarted: its old container goes, a new one comes
        before = {c.id for c in kernel_containers()}
        server.call("POST", f"api/kernels/{ids[0]}/restart", {})
        assert until_count(3) == 3
        assert len({c.id for c in kernel_containers()} - before) == 1
        # when all are shut down, one DELETE each (Kernel > Shut Down All)
        for kernel_id in ids:
            server.call("DELETE", f"api/kernels/{kernel_id}")
        # then no container of theirs is left
        assert until_count(0) == 0
    finally:
        server.stop()
        for leftover in kernel_containers():
            from jupyter_containers.backends.docker import DockerBackend

            DockerBackend().remove_container(leftover.id)


def test_culled_kernels_and_a_stopped_server_remove_their_containers(root, tmp_path):
    # given a server that culls kernels idle for 3 s
    culling = Server(
        root,
        tmp_path,
        "culling",
        KSM,
        "--MappingKernelManager.cull_idle_timeout=3",
        "--MappingKernelManager.cull_interval=1",
    )
    try:
        start_kernels(culling, 2)
        assert until_count(2) == 2
        # then its idle kernels are culled, containers and all
        assert until_count(0, seconds=90) == 0
    finally:
        culling.stop()
    # given a server with two running kernels, when it is stopped (SIGTERM, as systemd or JupyterHub stop it)
    server = Server(root, tmp_path, "stopping", KSM)
    try:
        start_kernels(server, 2)
        assert until_count(2) == 2
    finally:
        server.stop(signal.SIGTERM)
    # then their containers are gone with it
    assert server.process.returncode is not None
    assert until_count(0, seconds=30) == 0
