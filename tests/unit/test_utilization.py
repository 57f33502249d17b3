"""Utilization arithmetic (used / total per container, node and target), on figures as backends report them."""

from __future__ import annotations

import pytest

from jupyter_containers.backends.base import NodeInfo, Usage
from jupyter_containers.usage import GpuDevice
from jupyter_containers.utilization import container_utilization, target_utilization

MiB = 1 << 20
GiB = 1 << 30


def node(name: str = "n1", cpus: float = 8, memory: int = 16 * GiB, gpus: int = 0) -> NodeInfo:
    return NodeInfo(name=name, address=None, cpus=cpus, memory=memory, gpus=gpus, state="ready", labels={})


def test_cpu_is_measured_against_the_containers_limit():
    # given: 0.5 CPU busy (docker stats' 50 %) under a limit of 2 CPUs
    util = container_utilization(Usage(cpu_percent=50.0), {"cpus": 2}, node())

    # then: 25 %
    assert util.to_dict()["cpu_percent"] == 25.0


def test_cpu_without_a_limit_is_measured_against_the_nodes_cpus():
    util = container_utilization(Usage(cpu_percent=200.0), {}, node(cpus=8))
    assert util.cpu == pytest.approx(0.25)


def test_memory_against_its_limit_and_unlimited_against_the_node():
    limited = container_utilization(Usage(memory_used=128 * MiB, memory_limit=512 * MiB), {}, node())
    # v1 cgroups say "no limit" with a huge number: that is the node's memory
    unlimited = container_utilization(Usage(memory_used=4 * GiB, memory_limit=1 << 62), {}, node(memory=16 * GiB))
    assert limited.memory == pytest.approx(0.25)
    assert unlimited.memory == pytest.approx(0.25)


def test_gpu_is_the_mean_of_its_devices():
    gpus = (
        GpuDevice(index="0", uuid="GPU-a", name="A100", utilization_percent=80.0, memory_used=1, memory_total=2),
        GpuDevice(index="1", uuid="GPU-b", name="A100", utilization_percent=40.0, memory_used=1, memory_total=2),
    )
    assert container_utilization(Usage(gpus=gpus), {}, node()).gpu == pytest.approx(0.6)


def test_what_cannot_be_told_is_none_not_zero():
    # given: a first sample (no CPU % yet) and no node to take a total from
    util = container_utilization(Usage(cpu_percent=None, memory_used=10), {}, None)
    assert util.to_dict() == {"cpu_percent": None, "memory_percent": None, "gpu_percent": None}


def test_nodes_and_target_sum_their_containers():
    # given: two nodes; a shared GPU reported by both containers on n2
    gpu = {"index": 0, "uuid": "GPU-x", "utilization_percent": 50.0}
    rows = [
        {"id": "c1", "node": "n1", "resources": {"cpus": 1}, "usage": {"cpu_percent": 100.0, "memory_used": GiB}},
        {"id": "c2", "node": "n2", "resources": {}, "usage": {"cpu_percent": 200.0, "memory_used": GiB, "gpus": [gpu]}},
        {"id": "c3", "node": "n2", "resources": {}, "usage": {"cpu_percent": 0.0, "memory_used": 0, "gpus": [gpu]}},
    ]
    nodes = [node("n1", cpus=4, memory=4 * GiB), node("n2", cpus=4, memory=4 * GiB, gpus=2)]

    # when
    per_node, target, per_container = target_utilization(nodes, rows)

    # then
    assert per_container["c1"]["cpu_percent"] == 100.0  # 1 CPU of its 1
    assert per_container["c2"]["cpu_percent"] == 50.0  # 2 of n2's 4
    assert [n["utilization"]["cpu_percent"] for n in per_node] == [25.0, 50.0]
    assert per_node[1]["utilization"]["gpu_percent"] == 25.0  # one of two GPUs at 50 %, counted once
    assert per_node[0]["utilization"]["gpu_percent"] is None  # n1 has no GPUs
    assert target["utilization"] == {"cpu_percent": 37.5, "memory_percent": 25.0, "gpu_percent": 25.0}
    assert target["containers"] == 3 and target["cpus"] == 8


def test_a_single_engine_is_the_node_of_rows_that_name_none():
    per_node, target, per_container = target_utilization(
        [node(cpus=2)], [{"id": "c", "resources": {}, "usage": {"cpu_percent": 100.0}}]
    )
    assert per_node[0]["containers"] == 1
    assert target["utilization"]["cpu_percent"] == 50.0


def test_an_idle_target_is_zero_percent():
    _, target, _ = target_utilization([node()], [])
    assert target["utilization"]["cpu_percent"] == 0.0
