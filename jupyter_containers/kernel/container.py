"""One ipykernel inside one environment container, reached from the host with jupyter_client.

The kernel's ZMQ sockets are ``ipc`` sockets in a host folder bind-mounted into the container: no port is
published and nothing listens on any network interface, so a kernel started with ``--network none``
is still reachable, and only processes that can open that folder can talk to it (the connection key is
always set as well). The same folder carries pickled variables for ``%%container --in/--out`` at file
speed. Remote engines cannot share a folder; they need TCP with the key (not implemented yet).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any

from ..backends.base import Mount, RunRequest, labels, owner_labels
from ..build.dockerfile import WORKSPACE
from ..errors import BackendError
from ..spec.model import Resources
from ..units import format_size

#: Where the socket folder appears inside the container.
CONTAINER_RUNTIME_DIR = "/run/jupyter-containers"
CONNECTION_FILE = f"{CONTAINER_RUNTIME_DIR}/kernel.json"
DEFAULT_ARGV = ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"]


def runtime_root() -> Path:
    """Host folder for kernel socket folders: tmpfs when there is one (fast variable transfer)."""
    for candidate in (os.environ.get("JUPYTER_CONTAINERS_RUNTIME_DIR"), "/dev/shm"):
        if candidate and os.path.isdir(candidate) and os.access(candidate, os.W_OK):
            root = Path(candidate) / f"jupyter-containers-{os.getuid()}"
            root.mkdir(mode=0o711, exist_ok=True)
            return root
    from jupyter_core.paths import jupyter_runtime_dir

    root = Path(jupyter_runtime_dir()) / "jupyter-containers"
    root.mkdir(parents=True, exist_ok=True)
    return root


class ContainerKernel:
    """Socket folder + container for one kernel. Blocking calls; async callers use a thread."""

    def __init__(
        self,
        manager: Any,
        environment: str,
        resources: Resources,
        *,
        role: str = "kernel",
        extra_labels: dict[str, str] | None = None,
        locked: bool = False,
    ):
        self.manager = manager
        self.environment = environment
        self.resources = resources
        self.role = role
        self.extra_labels = dict(extra_labels or {})
        self.locked = locked
        self.socket_dir = Path(tempfile.mkdtemp(prefix="k-", dir=runtime_root()))
        # The container user (uid 1000 or the host user's uid) must create its sockets here.
        self.socket_dir.chmod(0o777)
        self.container: Any = None
        self.image: str | None = None
        self.image_id: str | None = None

    @property
    def host_ip(self) -> str:
        """The ``ip`` of an ``ipc`` connection file: a path prefix for the five socket files."""
        return str(self.socket_dir / "k")

    def build(self, on_event: Any = None) -> None:
        result = self.manager.build(self.environment, locked=self.locked, on_event=on_event)
        self.image, self.image_id = result.image, result.image_id

    def write_connection_file(self, info: dict[str, Any]) -> None:
        """The kernel's copy of the connection info, with the socket path as seen inside the container."""
        inside = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in info.items()}
        inside["transport"] = "ipc"
        inside["ip"] = f"{CONTAINER_RUNTIME_DIR}/k"
        path = self.socket_dir / "kernel.json"
        path.write_text(json.dumps(inside))
        path.chmod(0o644)

    def container_cwd(self, cwd: str | os.PathLike | None) -> str:
        """The notebook's folder inside the container when it is in the workspace, else the workspace."""
        if cwd:
            workspace = self.manager.workspace_dir()
            path = Path(cwd).resolve()
            if path == workspace or workspace in path.parents:
                return str(Path(WORKSPACE) / path.relative_to(workspace))
        return WORKSPACE

    def start(self, argv: list[str], *, cwd: Any = None, env: dict[str, str] | None = None) -> str:
        if self.image is None:
            self.build()
        backend = self.manager.backend
        request = RunRequest(
            image=self.image or "",
            command=argv,
            resources=self.resources,
            mounts=[*self.manager.mounts(), Mount(self.socket_dir, CONTAINER_RUNTIME_DIR)],
            environment={"PYDEVD_DISABLE_FILE_VALIDATION": "1", **(env or {})},
            labels=labels(
                env=self.environment,
                role=self.role,
                **owner_labels(),
                resources=json.dumps(self.resources.to_dict(), sort_keys=True),
                **self.extra_labels,
            ),
            working_dir=self.container_cwd(cwd),
        )
        container = backend.create(request)
        self.container = container
        backend.start(container, self.resources)
        return container.id

    # ------------------------------------------------------------------ lifecycle
    def state(self) -> dict[str, Any]:
        if self.container is None:
            return {}
        import docker

        try:
            return self.manager.backend.api.inspect_container(self.container.id)["State"]
        except docker.errors.NotFound:
            return {"Status": "removed", "ExitCode": -1}

    def poll(self) -> int | None:
        """None while the kernel's container runs, else its exit code."""
        state = self.state()
        if not state:
            return None
        if state.get("Status") in ("created", "running", "restarting", "paused"):
            return None
        return int(state.get("ExitCode", -1))

    def wait(self, timeout: float | None = None) -> int | None:
        if self.container is None:
            return None
        try:
            result = self.container.wait(timeout=timeout) if timeout else self.container.wait()
        except Exception:  # noqa: BLE001 - a timeout or a container already gone
            return self.poll()
        return int(result.get("StatusCode", -1))

    def signal(self, signum: int) -> None:
        """Deliver a signal to the kernel process (tini, PID 1, forwards it), e.g. SIGINT to interrupt."""
        if self.container is None:
            return
        import docker

        try:
            self.container.kill(signal=int(signum))
        except docker.errors.APIError as exc:
            if "is not running" not in str(exc) and "No such container" not in str(exc):
                raise BackendError(f"could not signal kernel container {self.container.short_id}: {exc}") from None

    def kill(self) -> None:
        self.signal(signal.SIGKILL)

    def death_reason(self) -> str | None:
        """Why the kernel's container stopped, in the user's terms (None while it runs)."""
        state = self.state()
        if not state or state.get("Status") == "running":
            return None
        code = state.get("ExitCode")
        if state.get("OOMKilled"):
            limit = self.resources.memory
            size = format_size(limit) if limit else "available"
            return (
                f"the kernel ran out of its {size} memory limit and was killed (exit code {code}); "
                "raise --memory (or resources.memory in the spec) and restart it"
            )
        return f"the kernel's container exited with code {code}"

    def remove(self, *, keep_socket_dir: bool = False) -> None:
        if self.container is not None:
            self.manager.backend.remove_container(self.container.id)
            self.container = None
        if not keep_socket_dir:
            shutil.rmtree(self.socket_dir, ignore_errors=True)
        else:
            for path in self.socket_dir.glob("k-*"):
                path.unlink(missing_ok=True)
