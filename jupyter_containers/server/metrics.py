"""Container and build figures on the server's existing ``/metrics`` (Prometheus).

A collector reads the current state when scraped, so the figures are never stale and nothing polls the
engine between scrapes.
"""

from __future__ import annotations

from typing import Any

_REGISTERED: list[Any] = []
#: The ``target`` label of the configured engine's figures (other targets carry their ``[targets.NAME]``).
DEFAULT_TARGET = "default"


class ContainersCollector:
    def __init__(self, service: Any):
        self.service = service

    def describe(self) -> list:
        return []

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        labels = ["container", "environment", "role", "target", "node"]
        running = GaugeMetricFamily("jupyter_containers_running", "Containers created by jupyter-containers")
        cpu = GaugeMetricFamily("jupyter_containers_cpu_percent", "CPU use of a container, % of one CPU", labels=labels)
        memory = GaugeMetricFamily("jupyter_containers_memory_bytes", "Memory used by a container", labels=labels)
        limit = GaugeMetricFamily("jupyter_containers_memory_limit_bytes", "Memory limit of a container", labels=labels)
        gpu_labels = [*labels, "gpu", "uuid"]
        gpu_util = GaugeMetricFamily(
            "jupyter_containers_gpu_utilization_percent",
            "Utilization of a GPU a container was given, % (the whole device's, as NVML reports it)",
            labels=gpu_labels,
        )
        gpu_memory = GaugeMetricFamily(
            "jupyter_containers_gpu_memory_bytes", "Memory used on a GPU a container was given", labels=gpu_labels
        )
        gpu_total = GaugeMetricFamily(
            "jupyter_containers_gpu_memory_total_bytes", "Memory of a GPU a container was given", labels=gpu_labels
        )
        # Utilization = used / total x 100 (jupyter_containers/utilization.py): per container, node, target.
        container_util = GaugeMetricFamily(
            "jupyter_containers_container_utilization_percent",
            "Used / total x 100 of a container: resource=cpu (of its CPU limit, else its node's CPUs), memory (of "
            "its memory limit, else its node's memory), gpu (mean of its GPUs)",
            labels=[*labels, "resource"],
        )
        node_labels = ["target", "node"]
        node_util = GaugeMetricFamily(
            "jupyter_containers_node_utilization_percent",
            "Used / total x 100 of a node by our containers: resource=cpu, memory, gpu",
            labels=[*node_labels, "resource"],
        )
        node_cpus = GaugeMetricFamily("jupyter_containers_node_cpus", "CPUs of a node", labels=node_labels)
        node_memory = GaugeMetricFamily("jupyter_containers_node_memory_bytes", "Memory of a node", labels=node_labels)
        node_gpus = GaugeMetricFamily("jupyter_containers_node_gpus", "GPUs of a node", labels=node_labels)
        node_cpus_used = GaugeMetricFamily(
            "jupyter_containers_node_cpus_used", "CPUs our containers use on a node", labels=node_labels
        )
        node_memory_used = GaugeMetricFamily(
            "jupyter_containers_node_memory_used_bytes", "Memory our containers use on a node", labels=node_labels
        )
        node_containers = GaugeMetricFamily(
            "jupyter_containers_node_containers", "Our running containers on a node", labels=node_labels
        )
        target_util = GaugeMetricFamily(
            "jupyter_containers_target_utilization_percent",
            "Used / total x 100 of a target (all its nodes) by our containers: resource=cpu, memory, gpu",
            labels=["target", "resource"],
        )
        target_up = GaugeMetricFamily(
            "jupyter_containers_target_reachable",
            "Whether the target's engine answered (1) or not (0)",
            labels=["target"],
        )
        builds = CounterMetricFamily("jupyter_containers_builds", "Builds started by this server", labels=["status"])
        count = 0
        for target, summary, containers in self._targets():
            target_up.add_metric([target], 1.0 if summary.get("reachable") else 0.0)
            if not summary.get("reachable"):
                continue
            count += len(containers)
            default_node = summary["nodes"][0]["name"] if len(summary["nodes"]) == 1 else ""
            for c in containers:
                values = [c["name"], c["environment"] or "", c["role"] or "", target, c.get("node") or default_node]
                usage = c["usage"] or {}
                if usage.get("cpu_percent") is not None:
                    cpu.add_metric(values, usage["cpu_percent"])
                if usage.get("memory_used") is not None:
                    memory.add_metric(values, usage["memory_used"])
                if usage.get("memory_limit") is not None:
                    limit.add_metric(values, usage["memory_limit"])
                for gpu in usage.get("gpus") or []:
                    device = [*values, str(gpu.get("index", "")), str(gpu.get("uuid", ""))]
                    for family, key in (
                        (gpu_util, "utilization_percent"),
                        (gpu_memory, "memory_used"),
                        (gpu_total, "memory_total"),
                    ):
                        if gpu.get(key) is not None:
                            family.add_metric(device, gpu[key])
                _add_utilization(container_util, values, c.get("utilization"))
            for node in summary["nodes"]:
                where = [target, node["name"]]
                _add_utilization(node_util, where, node["utilization"])
                node_cpus.add_metric(where, node["cpus"])
                node_memory.add_metric(where, node["memory"])
                node_gpus.add_metric(where, node["gpus"])
                node_cpus_used.add_metric(where, node["cpus_used"])
                node_memory_used.add_metric(where, node["memory_used"])
                node_containers.add_metric(where, node["containers"])
            _add_utilization(target_util, [target], summary["utilization"])
        running.add_metric([], count)
        counts: dict[str, int] = {}
        for build in self.service.builds.all():
            counts[build.status] = counts.get(build.status, 0) + 1
        for status, number in counts.items():
            builds.add_metric([status], number)
        yield from (running, cpu, memory, limit, gpu_util, gpu_memory, gpu_total, container_util, node_util)
        yield from (node_cpus, node_memory, node_gpus, node_cpus_used, node_memory_used, node_containers)
        yield from (target_util, target_up, builds)

    def _targets(self) -> list[tuple[str, dict[str, Any], list[dict[str, Any]]]]:
        """``(target label, summary, container rows)`` for the configured engine (``target="default"``) and
        each ``[targets.NAME]``; an unreachable engine must not break ``/metrics``."""
        try:
            names: list[str | None] = [None, *sorted(self.service.get_manager().spec().targets)]
        except Exception:  # noqa: BLE001 - no spec file: the configured engine only
            names = [None]
        out = []
        for name in names:
            try:
                summary, rows = self.service.target_utilization(name)
            except Exception as exc:  # noqa: BLE001 - as above
                summary, rows = {"reachable": False, "error": str(exc), "nodes": []}, []
            out.append((name or DEFAULT_TARGET, summary, rows))
        return out


def _add_utilization(family: Any, values: list[str], figures: dict[str, Any] | None) -> None:
    for resource in ("cpu", "memory", "gpu"):
        value = (figures or {}).get(f"{resource}_percent")
        if value is not None:
            family.add_metric([*values, resource], value)


def register_metrics(service: Any) -> None:
    try:
        from prometheus_client import REGISTRY
    except ImportError:  # pragma: no cover - jupyter_server depends on prometheus_client
        return
    for collector in _REGISTERED:
        REGISTRY.unregister(collector)
    _REGISTERED.clear()
    collector = ContainersCollector(service)
    REGISTRY.register(collector)
    _REGISTERED.append(collector)
