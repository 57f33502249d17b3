"""Utilization = used / total, per container, per node and per target, from the backend's own figures.

One arithmetic for every front end (the REST API, the sidebar, Prometheus) and for the sweep's autoscaling
rule, so they can never disagree. It needs only what every backend hands out -- :class:`Usage` of each
container, the ``resources`` label of our containers and :class:`NodeInfo` of each node -- so a single
engine, a swarm and a cluster are measured the same way.

What "total" is:

- a container's CPU: its CPU limit (``resources.cpus``), or its node's CPUs when it has none;
- a container's memory: its memory limit (the engine's figure, else ``resources.memory``), or its node's
  memory when unlimited;
- a container's GPU: the mean utilization of the GPUs it was given, as the driver reports it (whole devices);
- a node: the sum of its containers' use over the node's CPUs and memory; its GPUs: the mean over the
  distinct devices its containers were given, weighted by the node's GPU count (idle GPUs count as 0 %);
- a target: the same sums over all its nodes.

Fractions here (1.0 is 100 %); :meth:`Utilization.to_dict` gives percentages.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .backends.base import NodeInfo, Usage


@dataclass(frozen=True)
class Utilization:
    """Used / total as fractions (``None``: cannot be told: no figure, or no known total)."""

    cpu: float | None = None
    memory: float | None = None
    gpu: float | None = None

    def to_dict(self) -> dict[str, float | None]:
        """Percentages, one decimal: ``{"cpu_percent": 42.5, "memory_percent": 10.0, "gpu_percent": None}``."""
        return {
            "cpu_percent": _percent(self.cpu),
            "memory_percent": _percent(self.memory),
            "gpu_percent": _percent(self.gpu),
        }


def _percent(fraction: float | None) -> float | None:
    return None if fraction is None else round(fraction * 100, 1)


def _ratio(used: float | None, total: float | None) -> float | None:
    if used is None or not total or total <= 0:
        return None
    return max(0.0, used / total)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) and value > 0 else None


def _usage_fields(usage: Usage | Mapping[str, Any] | None) -> dict[str, Any]:
    if usage is None:
        return {}
    return usage.to_dict() if isinstance(usage, Usage) else dict(usage)


def cpu_limit(resources: Mapping[str, Any] | None, node: NodeInfo | None) -> float | None:
    """The CPUs a container may use: its limit, else its node's CPUs (None when neither is known)."""
    limit = _number((resources or {}).get("cpus"))
    if limit is not None:
        return limit
    return _number(node.cpus) if node is not None else None


def container_utilization(
    usage: Usage | Mapping[str, Any] | None,
    resources: Mapping[str, Any] | None = None,
    node: NodeInfo | None = None,
) -> Utilization:
    """One container's utilization.

    Args:
        usage: its :class:`Usage` (or ``Usage.to_dict()``); ``cpu_percent`` is in % of one CPU, as ``docker
            stats`` gives it (200 = two CPUs busy).
        resources: its limits as our ``resources`` label holds them (``{"cpus": 0.5, "memory": 268435456}``).
        node: the node it runs on, for the totals of what it has no limit for.
    """
    figures = _usage_fields(usage)
    cpu_percent = figures.get("cpu_percent")
    cpu = _ratio(cpu_percent / 100 if cpu_percent is not None else None, cpu_limit(resources, node))
    memory_total = (
        _number(figures.get("memory_limit"))
        or _number((resources or {}).get("memory"))
        or (_number(node.memory) if node is not None else None)
    )
    if node is not None and node.memory and memory_total is not None:
        memory_total = min(memory_total, float(node.memory))  # "no limit" is the node's memory, not 8 EiB
    memory = _ratio(figures.get("memory_used"), memory_total)
    gpus = [g.get("utilization_percent") for g in figures.get("gpus") or [] if isinstance(g, Mapping)]
    known = [float(g) for g in gpus if isinstance(g, int | float)]
    gpu = sum(known) / len(known) / 100 if known else None
    return Utilization(cpu=cpu, memory=memory, gpu=gpu)


@dataclass(frozen=True)
class Totals:
    """What a node (or a whole target) holds and what its containers use of it, in CPUs, bytes and GPUs."""

    cpus: float = 0.0
    memory: int = 0
    gpus: int = 0
    cpus_used: float = 0.0
    memory_used: int = 0
    #: Sum of the utilization (fractions) of the distinct GPUs in use; idle GPUs add nothing.
    gpu_busy: float = 0.0
    containers: int = 0
    measured: bool = False

    @property
    def utilization(self) -> Utilization:
        if not self.measured:
            return Utilization()
        return Utilization(
            cpu=_ratio(self.cpus_used, self.cpus),
            memory=_ratio(self.memory_used, self.memory),
            gpu=_ratio(self.gpu_busy, self.gpus),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "cpus": self.cpus,
            "memory": self.memory,
            "gpus": self.gpus,
            "cpus_used": round(self.cpus_used, 3),
            "memory_used": self.memory_used,
            "containers": self.containers,
            "utilization": self.utilization.to_dict(),
        }


def node_totals(node: NodeInfo, containers: Iterable[Mapping[str, Any]]) -> Totals:
    """A node's totals from the containers on it (rows of ``ContainersManager.containers()``: ``usage`` as
    ``Usage.to_dict()``, ``resources`` as the label holds them)."""
    cpus_used = 0.0
    memory_used = 0
    devices: dict[str, float] = {}
    count = 0
    measured = False
    for row in containers:
        count += 1
        usage = row.get("usage") or {}
        if usage.get("cpu_percent") is not None:
            cpus_used += float(usage["cpu_percent"]) / 100
            measured = True
        if usage.get("memory_used") is not None:
            memory_used += int(usage["memory_used"])
            measured = True
        for gpu in usage.get("gpus") or []:
            value = gpu.get("utilization_percent")
            if isinstance(value, int | float):
                # A GPU shared by two containers reports the same device figures in both: count it once.
                devices[str(gpu.get("uuid") or gpu.get("index"))] = float(value) / 100
    gpus = max(int(node.gpus or 0), len(devices))
    return Totals(
        cpus=float(node.cpus or 0),
        memory=int(node.memory or 0),
        gpus=gpus,
        cpus_used=cpus_used,
        memory_used=memory_used,
        gpu_busy=sum(devices.values()),
        containers=count,
        measured=measured or count == 0,
    )


def sum_totals(parts: Sequence[Totals]) -> Totals:
    """A target's totals: the sum of its nodes'."""
    return Totals(
        cpus=sum(t.cpus for t in parts),
        memory=sum(t.memory for t in parts),
        gpus=sum(t.gpus for t in parts),
        cpus_used=sum(t.cpus_used for t in parts),
        memory_used=sum(t.memory_used for t in parts),
        gpu_busy=sum(t.gpu_busy for t in parts),
        containers=sum(t.containers for t in parts),
        measured=any(t.measured for t in parts) or not parts,
    )


def node_of(row: Mapping[str, Any], nodes: Sequence[NodeInfo]) -> NodeInfo | None:
    """The node a container row runs on: the one its ``node`` names, else the only node there is."""
    name = row.get("node")
    if name:
        for node in nodes:
            if node.name == name:
                return node
        return None
    return nodes[0] if len(nodes) == 1 else None


def target_utilization(
    nodes: Sequence[NodeInfo], containers: Sequence[Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, dict[str, float | None]]]:
    """Per-node and whole-target figures, and each container's utilization (by container id).

    Returns:
        ``(nodes, target, containers)``: ``nodes`` one dict per node (``name``, ``state``, ``address`` and the
        :class:`Totals` fields), ``target`` the sums, ``containers`` ``{id: Utilization.to_dict()}``.
    """
    by_node: dict[str, list[Mapping[str, Any]]] = {n.name: [] for n in nodes}
    per_container: dict[str, dict[str, float | None]] = {}
    for row in containers:
        node = node_of(row, nodes)
        if node is not None:
            by_node[node.name].append(row)
        per_container[str(row.get("id"))] = container_utilization(
            row.get("usage"), row.get("resources") if isinstance(row.get("resources"), Mapping) else None, node
        ).to_dict()
    totals = [node_totals(n, by_node[n.name]) for n in nodes]
    rows = [
        {"name": n.name, "address": n.address, "state": n.state, **t.to_dict()}
        for n, t in zip(nodes, totals, strict=True)
    ]
    return rows, sum_totals(totals).to_dict(), per_container
