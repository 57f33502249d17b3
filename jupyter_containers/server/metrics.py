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
        counts: dict[str, int] = {}
        for build in self.service.builds.all():
            counts[build.status] = counts.get(build.status, 0) + 1
        for status, count in counts.items():
            builds.add_metric([status], count)
        yield from (running, cpu, memory, limit, builds)


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
