"""The project of the remote-target tests: one environment (numpy) on the session's second engine, reached as
two targets, ``tls`` (tcp+TLS) and ``ssh`` (ssh://, the ssh binary with the engine's ssh config).

The workspace lives under /var/tmp, not /tmp: the second engine's container mounts the host's /tmp at the same
path, so a workspace there would be visible to it by accident and a bind mount would "work". Kernels use no
socket folder either (remote kernels have none), so nothing reaches the engine but its API and ssh.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
from pathlib import Path

SPEC = """
[targets.tls]
engine = "{tls_url}"
tls = {{ ca = "{ca}", cert = "{cert}", key = "{key}" }}
kernel_address = "{kernel_address}"

[targets.ssh]
engine = "ssh://second-engine"

[environments.remote]
description = "the remote-target test environment"
pip = ["numpy"]
target = "tls"
env = {{ PYTHONHASHSEED = "0" }}

[environments.remote.resources]
cpus = 1
memory = "1g"
"""


def make_remote_project(second_engine) -> Path:
    """A workspace outside /tmp (see the module docstring) with the spec above; remove it with shutil.rmtree."""
    root = Path(tempfile.mkdtemp(prefix="jc-remote-", dir="/var/tmp"))
    root.chmod(0o755)
    inspected = second_engine.main_api.inspect_container(second_engine.container_id)
    address = (
        inspected["NetworkSettings"]["IPAddress"]
        or next(iter(inspected["NetworkSettings"]["Networks"].values()))["IPAddress"]
    )
    (root / "containers.toml").write_text(
        SPEC.format(
            tls_url=second_engine.tls_url,
            ca=second_engine.tls.ca,
            cert=second_engine.tls.cert,
            key=second_engine.tls.key,
            kernel_address=address,
        )
    )
    (root / "data.txt").write_text("hello from a remote workspace\n")
    # For the command line (it reads the project's config): the test image repository, the engine's ssh config.
    (root / "jupyter_containers_config.py").write_text(
        "c.Builder.image_repository = 'jupyter-containers-test/{env}'\n"
        f"c.DockerBackend.ssh_command = {['ssh', *second_engine.ssh_options()]!r}\n"
    )
    return root


def remote_config(engine_config, second_engine):
    """The session's config plus the ssh client that reads the second engine's ssh config (~/.ssh untouched)."""
    config = copy.deepcopy(engine_config)
    config.DockerBackend.ssh_command = ["ssh", *second_engine.ssh_options()]
    return config


def remove_project(root: Path, managers) -> None:
    """The workspace folder, and its volumes on the engine."""
    for manager in managers:
        try:
            manager.workspace_sync().remove()
            manager.backend.close()
        except Exception:  # noqa: BLE001 - cleanup goes on
            pass
    shutil.rmtree(root, ignore_errors=True)
