"""Running commands in environment containers with limits, on the real engine."""

from __future__ import annotations

import copy

import pytest

from jupyter_containers.errors import GpuUnavailableError, OutOfMemoryError, RequestError, RunTimeoutError
from jupyter_containers.spec.parse import parse_resources

from .dockerproxy import RecordingDockerProxy

pytestmark = pytest.mark.engine


def run(manager, command, **resources):
    out, err = bytearray(), bytearray()
    _, effective, result = manager.run(
        "small", ["sh", "-c", command], resources=parse_resources(resources), stdout=out.extend, stderr=err.extend
    )
    return result.exit_code, out.decode(), err.decode()


def test_limits_are_visible_inside_the_container(manager, small_image):
    # when a command runs with explicit limits
    code, out, _ = run(
        manager,
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"
        " /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us /sys/fs/cgroup/pids/pids.max;"
        " df -k /dev/shm | tail -1 | awk '{print $2}'",
        cpus=0.5,
        memory="96m",
        pids=64,
        shm_size="32m",
    )
    # then the cgroup holds exactly those limits (and no swap beyond memory)
    memory, memsw, quota, period, pids, shm_kib = out.split()
    assert code == 0
    assert int(memory) == 96 * 2**20
    assert int(memsw) == 96 * 2**20
    assert int(quota) / int(period) == 0.5
    assert pids == "64"
    assert int(shm_kib) == 32 * 1024


def test_spec_resources_are_the_defaults(manager, small_image):
    # given the spec's resources (1 CPU, 256m) and no override
    code, out, _ = run(manager, "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us")
    memory, quota = out.split()
    assert int(memory) == 256 * 2**20
    assert int(quota) == 100000


def test_container_is_unprivileged_and_non_root(manager, small_image):
    code, out, _ = run(manager, "id -u; id -g; grep -E '^(CapEff|CapPrm|NoNewPrivs)' /proc/self/status")
    lines = out.split("\n")
    assert lines[0] == "1000" and lines[1] == "1000"
    status = dict(line.split(":\t") for line in lines[2:] if line)
    assert status["CapEff"].strip("0") == ""
    assert status["CapPrm"].strip("0") == ""
    assert status["NoNewPrivs"] == "1"


def test_network_none_leaves_only_loopback(manager, small_image):
    code, out, _ = run(manager, "ls /sys/class/net", network="none")
    assert out.split() == ["lo"]


def test_workspace_is_mounted(manager, small_image, project):
    code, out, _ = run(manager, "pwd; cat data.txt")
    assert out.splitlines() == ["/workspace", "hello from the workspace"]


def test_mounts_outside_the_workspace_are_refused(manager, small_image):
    with pytest.raises(RequestError, match="outside the workspace"):
        manager.run("small", ["true"], mounts=[("/etc", "/mnt/etc", True)])


def test_exit_code_and_stderr_come_back(manager, small_image):
    code, out, err = run(manager, "echo out; echo err >&2; exit 7")
    assert (code, out, err) == (7, "out\n", "err\n")


def test_out_of_memory_names_the_limit(manager, small_image):
    # when the process allocates more than its limit
    with pytest.raises(OutOfMemoryError) as info:
        run(manager, "python -c 'x = bytearray(512 * 2**20)'", memory="64m")
    # then the error says which limit it ran out of
    assert "ran out of its 64 MiB memory limit" in str(info.value)
    assert info.value.exit_code == 137


def test_timeout_kills_and_reports(manager, small_image):
    with pytest.raises(RunTimeoutError, match="ran longer than its 1s timeout"):
        run(manager, "sleep 60", timeout="1s")
    # and the container was removed
    containers = manager.backend.list_containers(all=True)
    assert not [c for c in containers if c.label("role") == "run"]


def test_gpu_request_reaches_the_engine_and_its_refusal_is_explained(manager, small_image, tmp_path, engine_config):
    """No GPU exists on this machine: the test checks the DeviceRequest the real engine received and the
    error its refusal becomes. On a GPU host with the NVIDIA runtime the same request would succeed."""
    from jupyter_containers.manager import ContainersManager

    with RecordingDockerProxy(tmp_path / "docker.sock") as proxy:
        config = copy.deepcopy(engine_config)
        config.DockerBackend.base_url = proxy.base_url
        gpu_manager = ContainersManager(spec_path=manager.spec_file(), config=config)
        with pytest.raises(GpuUnavailableError) as info:
            gpu_manager.run("small", ["nvidia-smi"], resources=parse_resources({"gpus": 2}))
    # then the engine was asked for two devices with the gpu capability
    created = proxy.json_bodies("POST", "/containers/create")
    requests = created[-1]["HostConfig"]["DeviceRequests"]
    assert requests == [{"Driver": "", "Count": 2, "DeviceIDs": [], "Capabilities": [["gpu"]], "Options": {}}]
    # and its refusal became an error that names the fix
    assert "NVIDIA Container Toolkit" in str(info.value)
    assert "--gpus 2" in str(info.value)
    # and the container the engine created before refusing was removed
    assert not [c for c in manager.backend.list_containers(all=True) if c.state == "created"]
