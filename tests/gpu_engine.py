"""What the GPU tests share (tests/integration/test_gpus.py, tests/ui/test_gpus.py): one small environment on the
second engine, whose NVIDIA hook and nvidia-smi are stand-ins (tests/engines.py), and the config that points every
front end at it."""

from __future__ import annotations

from typing import Any

GPU0 = "GPU-00000000-0000-0000-0000-000000000000"
GPU1 = "GPU-00000000-0000-0000-0000-000000000001"
MIB = 1 << 20
SPEC = """
[environments.gpu]
description = "GPU tests on the second engine (stand-in NVIDIA hook)"

[environments.gpu.resources]
gpus = ["1"]
memory = "512m"
"""
#: The DinD engine runs without CAP_SYS_RESOURCE, like a rootless engine: it may not raise memlock above its own
#: hard limit (8 MiB), so the front-end runs use that; the default (-1) is checked on the HostConfig and in the
#: engine's refusal (tests/integration/test_gpus.py).
DIND_ULIMITS = {"memlock": 8 * MIB, "stack": 64 * MIB}


def config_text(engine: Any) -> str:
    """A project's jupyter_containers_config.py: every front end (CLI subprocess, magics, kernels, server, Lab)
    reads it, so they all use the second engine, and nvidia-smi on its host (the DinD container, by docker exec)."""
    tls = engine.tls
    # Kernels of a tcp:// engine listen on ports published by that engine: here on the DinD container's address.
    inspected = engine.main_api.inspect_container(engine.container_id)
    address = (
        inspected["NetworkSettings"]["IPAddress"]
        or next(iter(inspected["NetworkSettings"]["Networks"].values()))["IPAddress"]
    )
    return (
        "c.Builder.image_repository = 'jupyter-containers-test/{env}'\n"
        f"c.DockerBackend.base_url = {engine.tls_url!r}\n"
        f"c.DockerBackend.tls_ca = {str(tls.ca)!r}\n"
        f"c.DockerBackend.tls_cert = {str(tls.cert)!r}\n"
        f"c.DockerBackend.tls_key = {str(tls.key)!r}\n"
        f"c.DockerBackend.kernel_address = {address!r}\n"
        f"c.DockerBackend.gpu_ulimits = {DIND_ULIMITS!r}\n"
        f"c.DockerBackend.gpu_usage_command = ['docker', 'exec', {engine.name!r}, 'nvidia-smi']\n"
    )
