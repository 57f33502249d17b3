"""One ipykernel inside one environment container, reached from the host with jupyter_client.

The kernel's ZMQ sockets are ``ipc`` sockets in a host folder bind-mounted into the container: no port is
published and nothing listens on any network interface, so a kernel started with ``--network none``
is still reachable, and only processes that can open that folder can talk to it (the connection key is
always set as well). The same folder carries pickled variables for ``%%container --in/--out`` at file
speed.

A remote engine cannot share a folder (docs/remote.md): its kernels listen on TCP inside their container with
CurveZMQ encryption (a fresh server key pair per kernel) and the HMAC key, the connection file is copied into
the created container before it starts (never through a shared folder), and the five ports are published on
the engine's host -- on its 127.0.0.1 and reached through the ssh connection for ssh:// engines. A remote
kernel without a network (``--network none``) has no ports to publish: its channels listen on the container's
loopback and travel over a ``docker exec`` stream of the engine's own connection (kernel/relay.py).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any

from ..backends.base import Container, ContainerState, Mount, RunRequest, labels
from ..images.dockerfile import WORKSPACE
from ..spec.model import Resources
from ..units import format_duration, format_size

#: Where the socket folder appears inside the container.
CONTAINER_RUNTIME_DIR = "/run/jupyter-containers"
CONNECTION_FILE = f"{CONTAINER_RUNTIME_DIR}/kernel.json"
#: A file in a kernel's socket folder saying who stopped its container on purpose (ContainersManager.stop_container).
STOPPED_MARKER = "stopped-by"
DEFAULT_ARGV = ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"]
#: The kernel's ports inside its own container (remote engines; each container has its own network namespace).
REMOTE_PORTS = {"shell_port": 50001, "iopub_port": 50002, "stdin_port": 50003, "control_port": 50004, "hb_port": 50005}


def runtime_root() -> Path:
    """Host folder for kernel socket folders: tmpfs when there is one (fast variable transfer)."""
    for candidate in (os.environ.get("JUPYTER_CONTAINERS_RUNTIME_DIR"), "/dev/shm"):
        if candidate and os.path.isdir(candidate) and os.access(candidate, os.W_OK):
            root = Path(candidate) / f"jupyter-containers-{os.getuid()}"
            root.mkdir(mode=0o700, exist_ok=True)
            root.chmod(0o700)  # an older version made it 0711
            return root
    from jupyter_core.paths import jupyter_runtime_dir

    root = Path(jupyter_runtime_dir()) / "jupyter-containers"
    root.mkdir(parents=True, exist_ok=True)
    return root


def socket_folder(container: Any) -> Path | None:
    """A kernel's socket folder among a container's mounts (a ``ContainerInfo``): ours, under the runtime
    root, with a connection file; None for containers that are no local kernel."""
    root = runtime_root().resolve()
    for source in container.mounts:
        path = Path(source)
        if path.parent.resolve() == root and (path / "kernel.json").is_file():
            return path
    return None


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
        #: TCP + CurveZMQ through published ports (a remote engine), else ipc sockets in a socket folder.
        self.remote = not manager.backend.is_local
        self._inside: dict[str, Any] = {}
        #: Where this machine reaches the kernel's channels (remote kernels, once started): ip and ports.
        self.client_info: dict[str, Any] = {}
        self._reached: list[int] = []
        #: The channels' relay over the engine's connection (a remote kernel with --network none).
        self.relay: Any = None
        #: Brings back what the kernel writes to /workspace while it runs (remote ``sync`` targets).
        self.live_sync: Any = None
        if self.remote:
            # No folder on this machine at all: the key goes into the container through the engine's API.
            self.socket_dir = Path("/nonexistent/jupyter-containers-remote-kernel")
        else:
            # 0700 (mkdtemp's mode), owned by the container's user: only the owner (and root) can reach the
            # kernel's sockets and key; never world-readable or writable.
            self.socket_dir = Path(tempfile.mkdtemp(prefix="k-", dir=runtime_root()))
            self._give_to_container_user(self.socket_dir)
        self.container: Container | None = None
        #: Why the engine did not answer the last state check (None: it did).
        self.engine_unreachable: str | None = None
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
        """The kernel's copy of the connection info, with the socket path as seen inside the container.

        For a remote kernel it is kept until :meth:`start` copies it into the created container."""
        inside = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in info.items()}
        if self.remote:
            if not inside.get("key") or not inside.get("curve_secretkey"):
                raise ValueError("a remote kernel needs the HMAC key and a CurveZMQ key pair")
            # Without a network the relay reaches the kernel on the container's loopback (kernel/relay.py).
            ip = "127.0.0.1" if self.relayed or self.loopback_forwards else "0.0.0.0"
            self._inside = {**inside, "transport": "tcp", "ip": ip, **REMOTE_PORTS}
            return
        inside["transport"] = "ipc"
        inside["ip"] = f"{CONTAINER_RUNTIME_DIR}/k"
        path = self.socket_dir / "kernel.json"
        # Created 0600 before the key is written into it: the key never sits in a readable file.
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
            fh.write(json.dumps(inside))
        self._give_to_container_user(path)

    def _give_to_container_user(self, path: Path) -> None:
        """Let the container's user (the host user, or uid 1000 when the host user is root) own ``path``.

        A non-root host user's containers run as that user, who owns the folder already; root chowns it to
        the container's uid, since root reaches the folder anyway.
        """
        uid, _, gid = self.manager.backend.container_user().partition(":")
        if os.getuid() == 0 and uid.isdigit() and int(uid) != 0:
            os.chown(path, int(uid), int(gid) if gid.isdigit() else -1)

    def _sync_down(self) -> None:
        from ..errors import ContainersError

        try:
            self.manager.sync_down(self.image or "")
        except ContainersError as exc:
            import sys

            print(f"jupyter-containers: the workspace changes of the kernel did not come back: {exc}", file=sys.stderr)

    def container_cwd(self, cwd: str | os.PathLike | None) -> str:
        """The notebook's folder inside the container when it is in the workspace, else the workspace."""
        if cwd:
            workspace = self.manager.workspace_dir()
            path = Path(cwd).resolve()
            if path == workspace or workspace in path.parents:
                return str(Path(WORKSPACE) / path.relative_to(workspace))
        return WORKSPACE

    @property
    def relayed(self) -> bool:
        """A remote kernel without a network: no ports can be published, its channels go through the relay.
        Not on a backend whose port forwards reach the container's own loopback (Kubernetes' port-forward)."""
        return self.remote and self.resources.network is False and not self.loopback_forwards

    @property
    def loopback_forwards(self) -> bool:
        """Whether the backend reaches the kernel's ports on the container's loopback (Kubernetes'
        port-forward enters the Pod's network namespace): then the kernel listens on 127.0.0.1 only, and
        nothing else on the cluster's network can even connect to it."""
        return bool(getattr(self.manager.backend, "forwards_to_loopback", False))

    def start(self, argv: list[str], *, cwd: Any = None, env: dict[str, str] | None = None) -> str:
        if self.image is None:
            self.build()
        backend = self.manager.backend
        mounts = list(self.manager.mounts())
        if not self.remote:
            mounts.append(Mount(self.socket_dir, CONTAINER_RUNTIME_DIR))
        request = RunRequest(
            image=self.image or "",
            command=argv,
            resources=self.resources,
            mounts=mounts,
            publish=tuple(REMOTE_PORTS.values()) if self.remote and not self.relayed else (),
            publish_address=backend.publish_address() if self.remote else "127.0.0.1",
            environment={"PYDEVD_DISABLE_FILE_VALIDATION": "1", **(env or {})},
            labels=labels(
                env=self.environment,
                role=self.role,
                **self.manager.ownership(),
                resources=json.dumps(self.resources.to_dict(), sort_keys=True),
                **self.extra_labels,
            ),
            working_dir=self.container_cwd(cwd),
        )
        try:
            if self.remote:
                self.manager.sync_up(self.image or "")
            container = backend.create(request)
            self.container = container
            if self.remote:
                self._copy_connection_file(container)
            container.start()
            if self.relayed:
                self._start_relay(container, argv[0] if argv else "python")
            elif self.remote:
                self._reach(container)
            if self.remote:
                self.live_sync = self.manager.live_sync(container)
        except BaseException:
            # A refused start (no GPU driver, a bad mount) must leave neither the container nor the key behind.
            self.remove()
            raise
        return container.id

    def _copy_connection_file(self, container: Container) -> None:
        """The connection file into the created container: /run/jupyter-containers (0700) / kernel.json (0600),
        owned by the container's user."""
        import io
        import tarfile
        import time

        uid, _, gid = self.manager.backend.container_user().partition(":")
        data = json.dumps(self._inside).encode()
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            folder = tarfile.TarInfo(CONTAINER_RUNTIME_DIR.rsplit("/", 1)[1])
            folder.type, folder.mode = tarfile.DIRTYPE, 0o700
            info = tarfile.TarInfo(f"{folder.name}/kernel.json")
            info.size, info.mode = len(data), 0o600
            for member in (folder, info):
                member.uid, member.gid, member.mtime = int(uid), int(gid or uid), int(time.time())
            tar.addfile(folder)
            tar.addfile(info, io.BytesIO(data))
        container.put_archive(CONTAINER_RUNTIME_DIR.rsplit("/", 1)[0] or "/", buf.getvalue())

    def _reach(self, container: Container) -> None:
        published = container.published_ports()
        backend = self.manager.backend
        info: dict[str, Any] = {}
        for name, port in REMOTE_PORTS.items():
            if port not in published:
                raise RuntimeError(f"the engine did not publish the kernel's port {port}")
            host, reached = backend.reach(published[port])
            self._reached.append(published[port])
            info["ip"], info[name] = host, reached
        info["transport"] = "tcp"
        self.client_info = info

    def _start_relay(self, container: Container, python: str) -> None:
        """The channels of a kernel without a network: 127.0.0.1 ports here, carried by a relay process that
        ``docker exec`` starts in the container with the kernel's own Python (kernel/relay.py)."""
        from .relay import LocalRelay, remote_command

        self.relay = LocalRelay(lambda: container.exec_stream(remote_command(python)), REMOTE_PORTS)
        self.client_info = {"transport": "tcp", "ip": "127.0.0.1", **self.relay.start()}

    # ------------------------------------------------------------------ lifecycle
    @property
    def container_id(self) -> str | None:
        return self.container.id if self.container is not None else None

    def state(self) -> ContainerState | None:
        """The container's state; None before it was created."""
        return self.container.state() if self.container is not None else None

    def poll(self) -> int | None:
        """None while the kernel's container runs, else its exit code.

        None too while the engine does not answer (``engine_unreachable`` then says why): a kernel outlives
        a crash of its engine until the engine comes back (and, without live-restore, stops it), so it is
        not given up for dead while its own channels may still answer.
        """
        from ..errors import EngineUnavailableError

        try:
            state = self.state()
        except EngineUnavailableError as exc:
            self.engine_unreachable = str(exc)
            return None
        self.engine_unreachable = None
        if state is None or state.running:
            return None
        return state.exit_code if state.exit_code is not None else -1

    def wait(self, timeout: float | None = None) -> int | None:
        if self.container is None:
            return None
        code = self.container.wait(timeout)
        return self.poll() if code is None else code

    def signal(self, signum: int) -> None:
        """Deliver a signal to the kernel process (tini, PID 1, forwards it), e.g. SIGINT to interrupt."""
        if self.container is not None:
            self.container.kill(int(signum))

    def kill(self) -> None:
        self.signal(signal.SIGKILL)

    def logs(self, tail: int | None = None) -> str:
        """The container's own output (the kernel's log), the last ``tail`` lines when given."""
        return self.container.logs(tail=tail) if self.container is not None else ""

    def death_reason(self) -> str | None:
        """Why the kernel's container stopped, in the user's terms (None while it runs)."""
        state = self.state()
        if state is None or state.status == "running":
            return None
        if state.oom_killed:
            limit = self.resources.memory
            size = format_size(limit) if limit else "available"
            return (
                f"the kernel ran out of its {size} memory limit and was killed (exit code {state.exit_code}); "
                "raise --memory (or resources.memory in the spec) and restart it"
            )
        if state.timed_out:  # the engine's own deadline (a Kubernetes activeDeadlineSeconds)
            seconds = self.resources.timeout
            return (
                f"the kernel ran longer than its {format_duration(seconds) if seconds else ''} timeout and was stopped "
                "by the cluster; raise --timeout (or resources.timeout in the spec)"
            )
        stopped = self.stopped_by()
        if stopped:
            return stopped
        if state.reason:
            return state.reason
        return f"the kernel's container exited with code {state.exit_code}"

    def stopped_by(self) -> str | None:
        """Who stopped the kernel's container on purpose (the sidebar, `jupyter-containers stop`): the
        :data:`STOPPED_MARKER` they left in its socket folder, else None."""
        try:
            return (self.socket_dir / STOPPED_MARKER).read_text(encoding="utf-8").strip() or None
        except OSError:
            return None

    def remove(self, *, keep_socket_dir: bool = False) -> None:
        """Remove the container and the socket folder (with the key) -- the folder even when the engine fails
        to remove the container (its error is raised after). A remote kernel's workspace changes come back
        first (``sync`` targets)."""
        if self.live_sync is not None:
            self.live_sync.stop()  # waits for a check under way: the final sync below sees its manifest
            self.live_sync = None
        if self.relay is not None:
            self.relay.close()  # before the container goes: a relay that loses its exec would start another
            self.relay = None
        try:
            if self.container is not None:
                if self.remote and self.image:
                    self._sync_down()
                self.container.remove()
                self.container = None
        finally:
            if self.relay is not None:
                self.relay.close()
                self.relay = None
            if self.remote:
                for port in self._reached:
                    self.manager.backend.release(port)
                self._reached = []
            elif not keep_socket_dir:
                shutil.rmtree(self.socket_dir, ignore_errors=True)
            else:
                for path in self.socket_dir.glob("k-*"):
                    path.unlink(missing_ok=True)
