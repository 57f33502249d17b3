"""Live CPU and memory usage of our containers, read from the engine host's cgroup files.

``docker stats`` costs 1-2 s per call (it waits for a second sample); the same figures in the cgroup files
of a local engine take well under a millisecond, so a sidebar can list a hundred containers quickly. CPU %
needs two samples: the reader keeps the previous one per container. The Docker backend uses it for local
engines and falls back to one ``docker stats`` call per container for remote ones.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text == "max":
        return None
    try:
        return int(text.split()[0])
    except (ValueError, IndexError):
        return None


class UsageReader:
    def __init__(self, root: Path = CGROUP_ROOT):
        self.root = root
        self._previous: dict[str, tuple[float, int]] = {}
        self.v2 = (root / "cgroup.controllers").exists()

    def _dirs(self, container_id: str) -> dict[str, Path] | None:
        if self.v2:
            for candidate in (f"system.slice/docker-{container_id}.scope", f"docker/{container_id}"):
                path = self.root / candidate
                if path.is_dir():
                    return {"memory": path, "cpu": path, "pids": path}
            return None
        out = {}
        for controller, subsystem in (("memory", "memory"), ("cpu", "cpuacct"), ("pids", "pids")):
            for candidate in (
                f"{subsystem}/docker/{container_id}",
                f"{subsystem}/system.slice/docker-{container_id}.scope",
            ):
                path = self.root / candidate
                if path.is_dir():
                    out[controller] = path
                    break
            else:
                return None
        return out

    def usage(self, container_id: str) -> dict[str, Any] | None:
        """``{"cpu_percent", "memory_used", "memory_limit", "pids"}`` or None when not readable here."""
        dirs = self._dirs(container_id)
        if dirs is None:
            return None
        now = time.monotonic()
        if self.v2:
            stat = dict(line.split() for line in (dirs["cpu"] / "cpu.stat").read_text().splitlines() if " " in line)
            cpu_ns = int(stat.get("usage_usec", 0)) * 1000
            memory = _read_int(dirs["memory"] / "memory.current")
            limit = _read_int(dirs["memory"] / "memory.max")
            pids = _read_int(dirs["pids"] / "pids.current")
        else:
            cpu_ns = _read_int(dirs["cpu"] / "cpuacct.usage") or 0
            memory = _read_int(dirs["memory"] / "memory.usage_in_bytes")
            limit = _read_int(dirs["memory"] / "memory.limit_in_bytes")
            if limit is not None and limit >= 1 << 60:  # "no limit" is a huge number in v1
                limit = None
            pids = _read_int(dirs["pids"] / "pids.current")
        previous = self._previous.get(container_id)
        self._previous[container_id] = (now, cpu_ns)
        cpu_percent = None
        if previous is not None and now > previous[0]:
            cpu_percent = max(0.0, (cpu_ns - previous[1]) / ((now - previous[0]) * 1e9) * 100)
        return {"cpu_percent": cpu_percent, "memory_used": memory, "memory_limit": limit, "pids": pids}

    def forget(self, keep: set[str]) -> None:
        for container_id in list(self._previous):
            if container_id not in keep:
                del self._previous[container_id]
