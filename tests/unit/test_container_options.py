"""What a run asks of the engine (the engine itself is exercised in tests/integration)."""

import pytest

from jupyter_containers.backends.base import Mount, RunRequest
from jupyter_containers.backends.docker import DockerBackend
from jupyter_containers.errors import RequestError
from jupyter_containers.spec.parse import parse_resources


def options(**resources):
    backend = DockerBackend(user="1000:1000")
    return backend.container_options(RunRequest(image="img", command=["true"], resources=parse_resources(resources)))


def test_secure_defaults():
    o = options()
    assert o["user"] == "1000:1000"
    assert o["cap_drop"] == ["ALL"]
    assert o["security_opt"] == ["no-new-privileges"]
    assert o["privileged"] is False
    assert o["network_mode"] == "bridge"
    assert o["labels"]["io.jupyter.containers.managed"] == "true"


def test_limits_map_to_docker_fields():
    o = options(cpus="1.5", memory="512m", shm_size="1g", pids=100, network="none")
    assert o["nano_cpus"] == 1_500_000_000
    assert o["mem_limit"] == 512 * 2**20
    assert o["memswap_limit"] == 512 * 2**20  # no swap unless asked for
    assert o["shm_size"] == 2**30
    assert o["pids_limit"] == 100
    assert o["network_mode"] == "none"


def test_memory_swap_needs_memory():
    with pytest.raises(RequestError, match="--memory-swap needs --memory"):
        options(memory_swap="1g")


@pytest.mark.parametrize(
    ("gpus", "count", "ids"), [(2, 2, []), ("all", -1, []), ("0,2", 0, ["0", "2"]), (["GPU-abc"], 0, ["GPU-abc"])]
)
def test_gpus_become_device_requests_with_the_gpu_capability(gpus, count, ids):
    (request,) = options(gpus=gpus)["device_requests"]
    assert request["Count"] == count
    assert request["DeviceIDs"] == ids
    assert request["Capabilities"] == [["gpu"]]


def test_zero_gpus_requests_none():
    assert "device_requests" not in options(gpus=0)


def test_mounts_are_bind_mounts():
    backend = DockerBackend(user="1000:1000")
    o = backend.container_options(RunRequest(image="i", mounts=[Mount(source="/w", target="/workspace")]))
    assert o["mounts"][0]["Type"] == "bind" and o["mounts"][0]["Target"] == "/workspace"


def test_auto_user_is_never_root():
    assert DockerBackend().container_user() != "0:0"
