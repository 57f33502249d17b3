"""Runs inside the `demo` environment: shows where it runs and under which limits, then computes."""

import os
import platform
import time
from pathlib import Path

import numpy as np


def cgroup(path: str) -> str:
    try:
        return Path("/sys/fs/cgroup", path).read_text().strip()
    except OSError:
        return "n/a"


memory = cgroup("memory/memory.limit_in_bytes")
if memory == "n/a":  # cgroup v2
    memory = cgroup("memory.max")
quota, period = cgroup("cpu/cpu.cfs_quota_us"), cgroup("cpu/cpu.cfs_period_us")
cpus = f"{int(quota) / int(period):g}" if quota.lstrip("-").isdigit() and int(quota) > 0 else cgroup("cpu.max")

print(f"python {platform.python_version()} numpy {np.__version__} in {os.uname().nodename} as uid {os.getuid()}")
print(
    f"limits: memory {int(memory) // 2**20 if memory.isdigit() else memory} MiB, cpus {cpus}, "
    f"pids {cgroup('pids/pids.max')}, network interfaces {sorted(os.listdir('/sys/class/net'))}"
)
start = time.perf_counter()
a = np.random.default_rng(0).standard_normal((1000, 1000))
eigenvalues = np.linalg.eigvalsh(a @ a.T)
print(f"largest eigenvalue of a 1000x1000 Gram matrix: {eigenvalues[-1]:.1f} ({time.perf_counter() - start:.2f}s)")
