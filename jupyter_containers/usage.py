"""Live CPU, memory and GPU usage of our containers, read on the engine host.

``docker stats`` costs 1-2 s per call (it waits for a second sample); the same figures in the cgroup files
of a local engine take well under a millisecond, so a sidebar can list a hundred containers quickly. CPU %
needs two samples: the reader keeps the previous one per container. The Docker backend uses it for local
engines and falls back to one ``docker stats`` call per container for remote ones.

GPU figures come from the engine host's driver: NVML (``pynvml``) or ``nvidia-smi --query-gpu`` on this host
for a local engine, or a configured command that runs ``nvidia-smi`` on a remote engine's host (``ssh host
nvidia-smi``). The backend maps them to containers by the devices each was given (see docs/gpus.md).
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
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


# ---------------------------------------------------------------------- GPUs
#: The fields asked of ``nvidia-smi --query-gpu`` (and read from NVML), in this order.
GPU_QUERY_FIELDS = ("index", "uuid", "name", "utilization.gpu", "memory.used", "memory.total")
GPU_QUERY_ARGS = (f"--query-gpu={','.join(GPU_QUERY_FIELDS)}", "--format=csv,noheader,nounits")
_MIB = 1 << 20


@dataclass(frozen=True)
class GpuDevice:
    """One GPU of the engine host as NVML / ``nvidia-smi`` report it (memory in bytes)."""

    index: str
    uuid: str
    name: str = ""
    utilization_percent: float | None = None
    memory_used: int | None = None
    memory_total: int | None = None


def parse_nvidia_smi(text: str) -> list[GpuDevice]:
    """``nvidia-smi --query-gpu=index,uuid,name,utilization.gpu,memory.used,memory.total
    --format=csv,noheader,nounits`` output → devices ("[N/A]" values, e.g. utilization of a MIG-mode GPU,
    become None)."""

    def number(value: str) -> float | None:
        try:
            return float(value)
        except ValueError:
            return None

    devices = []
    for row in csv.reader(io.StringIO(text), skipinitialspace=True):
        if len(row) != len(GPU_QUERY_FIELDS):
            continue
        index, uuid, name, utilization, used, total = (v.strip() for v in row)
        used_mib, total_mib = number(used), number(total)
        devices.append(
            GpuDevice(
                index=index,
                uuid=uuid,
                name=name,
                utilization_percent=number(utilization),
                memory_used=int(used_mib * _MIB) if used_mib is not None else None,
                memory_total=int(total_mib * _MIB) if total_mib is not None else None,
            )
        )
    return devices


def read_nvml() -> list[GpuDevice] | None:
    """The GPUs through NVML (``pynvml``, the library nvidia-smi uses), or None when it is not installed or
    no driver answers."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - NVMLError of any kind: no driver here, use nvidia-smi instead
        return None
    try:
        devices = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            uuid = pynvml.nvmlDeviceGetUUID(handle)
            name = pynvml.nvmlDeviceGetName(handle)
            try:
                utilization: float | None = float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
            except Exception:  # noqa: BLE001 - not supported (a MIG-mode GPU): no figure
                utilization = None
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            devices.append(
                GpuDevice(
                    index=str(i),
                    uuid=uuid.decode() if isinstance(uuid, bytes) else str(uuid),
                    name=name.decode() if isinstance(name, bytes) else str(name),
                    utilization_percent=utilization,
                    memory_used=int(memory.used),
                    memory_total=int(memory.total),
                )
            )
        return devices
    except Exception:  # noqa: BLE001 - a driver error halfway: no figures rather than a broken listing
        return None
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:  # noqa: BLE001 - nothing to do about a failed shutdown
            pass


def read_nvidia_smi(command: Sequence[str] = ("nvidia-smi",), *, timeout: float = 10) -> list[GpuDevice] | None:
    """The GPUs from ``command`` + the CSV query arguments (``nvidia-smi`` here, or e.g. ``ssh gpu-box
    nvidia-smi`` for a remote engine's host); None when it cannot run or fails."""
    try:
        done = subprocess.run([*command, *GPU_QUERY_ARGS], capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return parse_nvidia_smi(done.stdout)


def visible_devices(value: str | None, devices: Sequence[GpuDevice]) -> list[GpuDevice]:
    """The devices that an ``NVIDIA_VISIBLE_DEVICES`` value names: ``all``, indexes, GPU UUIDs; MIG ids and
    ``none``/``void`` name no whole GPU (a MIG slice has no figures of its own in ``--query-gpu``)."""
    if not value or value.strip() in ("none", "void", ""):
        return []
    if value.strip() == "all":
        return list(devices)
    by_key = {d.index: d for d in devices} | {d.uuid: d for d in devices}
    out = []
    for part in value.split(","):
        device = by_key.get(part.strip())
        if device is not None and device not in out:
            out.append(device)
    return out


class GpuReader:
    """The engine host's GPUs, read at most once per ``max_age`` seconds (a sidebar polls every 2 s).

    ``command``: run it (plus the CSV query arguments) on this host. None: NVML when ``pynvml`` is installed,
    else ``nvidia-smi`` from ``PATH`` -- only right when the engine runs on this host.
    """

    def __init__(self, command: Sequence[str] | None = None, *, max_age: float = 2.0):
        self.command = tuple(command) if command else None
        self.max_age = max_age
        self._read_at = -1e9
        self._devices: list[GpuDevice] | None = None

    def devices(self) -> list[GpuDevice] | None:
        now = time.monotonic()
        if now - self._read_at >= self.max_age:
            self._devices = self._read()
            self._read_at = now
        return self._devices

    def _read(self) -> list[GpuDevice] | None:
        if self.command is not None:
            return read_nvidia_smi(self.command)
        found = read_nvml()
        if found is not None:
            return found
        return read_nvidia_smi(("nvidia-smi",)) if shutil.which("nvidia-smi") else None
