"""Container and build figures on the server's existing ``/metrics`` (Prometheus).

A collector reads the current state when scraped, so the figures are never stale and nothing polls the
engine between scrapes.
"""

from __future__ import annotations

from typing import Any

_REGISTERED: list[Any] = []


class ContainersCollector:
    def __init__(self, service: Any):
        self.service = service

    def describe(self) -> list:
        return []

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        labels = ["container", "environment", "role"]
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
        builds = CounterMetricFamily("jupyter_containers_builds", "Builds started by this server", labels=["status"])
        try:
            containers = self.service.containers()
        except Exception:  # noqa: BLE001 - an unreachable engine must not break /metrics
            containers = []
        running.add_metric([], len(containers))
        for c in containers:
            values = [c["name"], c["environment"] or "", c["role"] or ""]
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
        counts: dict[str, int] = {}
        for build in self.service.builds.all():
            counts[build.status] = counts.get(build.status, 0) + 1
        for status, count in counts.items():
            builds.add_metric([status], count)
        yield from (running, cpu, memory, limit, gpu_util, gpu_memory, gpu_total, builds)


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
