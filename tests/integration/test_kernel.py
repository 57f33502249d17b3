"""Container kernels through jupyter_client (the provisioner), on the real engine."""

from __future__ import annotations

import json
import threading
import time

import pytest

from jupyter_containers.kernel.kernelspec import ContainerKernelManager

pytestmark = pytest.mark.engine


def execute(kc, code: str, timeout: float = 60) -> tuple[str, str, list[dict]]:
    out: list[str] = []
    errors: list[dict] = []

    def hook(msg: dict) -> None:
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            errors.append(msg["content"])

    reply = kc.execute_interactive(code, output_hook=hook, timeout=timeout)
    return reply["content"]["status"], "".join(out), errors


@pytest.fixture
def kernel(manager, small_image):
    """A container kernel for the shared environment, with no network and 192 MiB."""
    km = ContainerKernelManager(
        environment="small",
        spec_file=manager.spec_file(),
        resources={"memory": "192m", "network": False},
        config=manager.config,
    )
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=120)
    yield km, kc
    kc.stop_channels()
    if km.has_kernel:
        km.shutdown_kernel(now=True)


def test_kernel_runs_in_the_container_under_its_limits(kernel):
    km, kc = kernel
    # when code asks where it runs
    status, out, _ = execute(
        kc,
        "import os; print(os.getuid()); print(sorted(os.listdir('/sys/class/net')));"
        "print(open('/sys/fs/cgroup/memory/memory.limit_in_bytes').read().strip()); print(os.getcwd())",
    )
    # then it is the non-root user, without network, under the memory limit, in the workspace
    assert status == "ok"
    assert out.split("\n")[:4] == ["1000", "['lo']", str(192 * 2**20), "/workspace"]


def test_kernel_is_reached_through_ipc_sockets_with_a_key(kernel, manager):
    km, _ = kernel
    info = km.get_connection_info()
    assert info["transport"] == "ipc"
    assert info["key"]  # messages are signed
    inspected = manager.backend.api.inspect_container(km.provisioner.kernel.container_id)
    # nothing is published on any host interface
    assert inspected["HostConfig"]["PortBindings"] in ({}, None)
    assert inspected["HostConfig"]["NetworkMode"] == "none"


def test_only_the_owner_can_reach_the_sockets_and_the_key(kernel, manager):
    km, _ = kernel
    kernel = km.provisioner.kernel
    uid = int(manager.backend.container_user().split(":")[0])
    folder = kernel.socket_dir.stat()
    key_file = (kernel.socket_dir / "kernel.json").stat()
    # the socket folder and the connection file (with the key) belong to the container's user, and to no one else
    assert folder.st_mode & 0o777 == 0o700 and folder.st_uid == uid
    assert key_file.st_mode & 0o777 == 0o600 and key_file.st_uid == uid
    assert kernel.socket_dir.parent.stat().st_mode & 0o077 == 0


def test_a_refused_start_leaves_no_socket_folder_or_key(manager, small_image):
    from jupyter_containers.errors import GpuUnavailableError
    from jupyter_containers.kernel.container import runtime_root

    before = set(runtime_root().glob("k-*"))
    # when a kernel asks the (GPU-less) main engine for a GPU
    km = ContainerKernelManager(
        environment="small", spec_file=manager.spec_file(), resources={"gpus": 1}, config=manager.config
    )
    with pytest.raises(GpuUnavailableError):
        km.start_kernel()
    # then neither its container nor its socket folder (with the key) is left
    assert set(runtime_root().glob("k-*")) <= before
    assert not [c for c in manager.backend.list_containers(all=True) if c.label("resources") == '{"gpus": 1}']


def test_state_persists_between_executions(kernel):
    _, kc = kernel
    execute(kc, "x = 41")
    assert execute(kc, "print(x + 1)")[1] == "42\n"


def test_interrupt_reaches_the_code_in_the_container(kernel):
    km, kc = kernel
    threading.Timer(2.0, km.interrupt_kernel).start()
    started = time.monotonic()
    status, _, errors = execute(kc, "import time; time.sleep(60)")
    assert status == "error"
    assert errors[0]["ename"] == "KeyboardInterrupt"
    assert time.monotonic() - started < 20


def test_restart_starts_a_fresh_container_and_shutdown_removes_it(kernel, manager):
    km, kc = kernel
    first = km.provisioner.kernel.container_id
    execute(kc, "x = 1")
    # when the kernel restarts
    km.restart_kernel(now=True)
    kc.wait_for_ready(timeout=120)
    second = km.provisioner.kernel.container_id
    # then it is a new container with fresh state, and the old one is gone
    assert second != first
    assert execute(kc, "print('x' in globals())")[1] == "False\n"
    ids = {c.id for c in manager.backend.list_containers(all=True)}
    assert first not in ids and second in ids
    # and shutdown removes it
    km.shutdown_kernel(now=False)
    assert second not in {c.id for c in manager.backend.list_containers(all=True)}


def test_out_of_memory_death_names_the_limit(kernel):
    km, kc = kernel
    # when the kernel allocates beyond its limit
    try:
        execute(kc, "x = bytearray(600 * 2**20); x[::4096] = b'1' * len(x[::4096])", timeout=30)
    except Exception:  # noqa: BLE001 - the reply may never come: the kernel is gone
        pass
    deadline = time.monotonic() + 30
    while km.is_alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    # then the container is dead and the reason names the memory limit
    assert not km.is_alive()
    assert "ran out of its 192 MiB memory limit" in km.provisioner.kernel.death_reason()


def test_container_labels_say_what_it_is(kernel, manager):
    km, _ = kernel
    labels = manager.find_container(km.provisioner.kernel.container_id).labels
    assert labels["io.jupyter.containers.role"] == "kernel"
    assert labels["io.jupyter.containers.env"] == "small"
    assert json.loads(labels["io.jupyter.containers.resources"])["memory"] == 192 * 2**20
