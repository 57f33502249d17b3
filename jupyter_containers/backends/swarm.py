"""The Docker Swarm backend: runs, kernels, ``%%container`` sessions and notebook jobs as Swarm services.

Builds happen on the manager's engine (everything image-related is :class:`DockerBackend`'s); the
content-addressed tag is then pushed to the target's registry (``registry = "HOST:PORT/REPO"``) once, and every
node pulls it from there. Each container we start is a ``replicated-job`` service of one task that is never
restarted: Swarm places it by its reservations (CPUs, memory, GPUs as the nodes' generic resources) and
placement constraints, and the engine of the node it lands on enforces its limits.

Why services and not ``docker run`` on a chosen node: placement, GPU bookkeeping and node failure detection
are Swarm's; we never schedule anything ourselves. What Swarm does not do is give up: a task no node can
take stays ``pending`` forever, so requests are checked against the nodes' resources before the service is
created, and a task still unplaced after ``placement_timeout`` is removed with the same explanation.

Files put before a task starts (a kernel's connection file) go with its service, in a Swarm secret of its own
that the entrypoint shim unpacks, so the command starts with the task. Files into and out of a *running* task
(``%%container --in/--out``) and signals
(interrupts) need the engine of the task's node (Swarm has no ``exec``/``cp``): ``c.SwarmBackend.node_engines``
(the target's ``nodes`` table) maps node host names to engine addresses, reached with the target's TLS files
or ssh as any remote engine. ``run`` needs none of that (its output comes through the manager's service logs).

/workspace on a swarm whose target has a ``nodes`` table (and no shared ``workspace`` folder) is a named volume on
each node, synced as a remote engine's is (``workspace_sync.py``). Only the task's node is known, and only once
Swarm placed it, so the task waits (``JC_WAIT_FOR``) while :attr:`SwarmBackend.workspace_hook` (set by the
manager; this module never imports it) sends the workspace's changes into that node's volume through that node's
engine; then the go-ahead is put in. When the service is removed (a run or job ended, a kernel stopped), the hook
brings back what the task wrote, from the same node. The service mounts the volume by name with our labels in
``VolumeOptions`` (the node's engine creates it on first use, labelled so that prune finds it, and with the
service's name as :data:`VOLUME_CREATED_BY`: a volume just created is empty whatever this machine's record of it
says). Tasks are kept off nodes missing from the table (``node.hostname!=NAME`` constraints,
:func:`sync_constraints`): nothing could sync their volume, and a run failing only when Swarm happens to pick
such a node would be worse than one that never goes there.
"""

from __future__ import annotations

import io
import re
import secrets
import struct
import tarfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import IO, Any

from traitlets import Bool, Dict, Float, Int, List, Unicode

from ..errors import (
    ContainersError,
    EngineRefusedError,
    EngineUnavailableError,
    NotFoundError,
    OutOfMemoryError,
    RequestError,
    RunTimeoutError,
)
from ..spec.model import Resources
from ..units import format_duration, format_size
from .base import (
    LABEL_PREFIX,
    MANAGED_LABEL,
    Container,
    ContainerInfo,
    ContainerState,
    EngineInfo,
    NodeInfo,
    OutputCallback,
    RunRequest,
    RunResult,
    SecretInfo,
    Usage,
)
from .docker import DockerBackend, DockerContainer

#: Task states before the task's container runs (Swarm's own names).
PENDING_STATES = ("new", "pending", "assigned", "accepted", "preparing", "ready", "starting")
#: Task states after it ran (or never will).
DONE_STATES = ("complete", "failed", "shutdown", "rejected", "orphaned", "remove")

#: Runs before the task's command (as ``python -c``): the GPUs Swarm assigned (``DOCKER_RESOURCE_<KIND>``, a name
#: with a ``-`` that dash, the image's entrypoint shell, drops from the environment: read from PID 1's) become
#: CUDA_VISIBLE_DEVICES/NVIDIA_VISIBLE_DEVICES; the files put before the start (a kernel's connection file) are
#: unpacked from the task's Swarm secret (``JC_FILES``), or, too big for a secret, waited for (``JC_WAIT_FOR``).
ENTRYPOINT_SHIM = """\
import os, sys, time
kind = os.environ.pop("JC_GPU_RESOURCE", "")
value = None
if kind:
    try:  # PID 1 (docker-init) has the task's whole environment: sh dropped a name with a "-" on its way here
        with open("/proc/1/environ", "rb") as fh:
            first = dict(i.decode().split("=", 1) for i in fh.read().split(bytes(1)) if b"=" in i)
    except (OSError, ValueError):
        first = {}
    value = first.get("DOCKER_RESOURCE_" + kind.upper(), os.environ.get("DOCKER_RESOURCE_" + kind.upper()))
if value is not None:
    os.environ["CUDA_VISIBLE_DEVICES"] = os.environ["NVIDIA_VISIBLE_DEVICES"] = value
unpack = os.environ.pop("JC_FILES", "")
if unpack:  # the files put before the start, as a tar in the task's Swarm secret: each one where it belongs
    import tarfile
    with tarfile.open(unpack) as tar:
        for member in tar.getmembers():
            path = "/" + member.name.lstrip("/")
            if member.isdir():
                os.makedirs(path, exist_ok=True)
            elif member.isfile():
                os.makedirs(os.path.dirname(path), exist_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, member.mode & 0o777 or 0o600)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(tar.extractfile(member).read())
marker = os.environ.pop("JC_WAIT_FOR", "")
if marker:
    deadline = time.monotonic() + float(os.environ.pop("JC_WAIT_SECONDS", "120"))
    while not os.path.exists(marker):
        if time.monotonic() > deadline:
            sys.exit("jupyter-containers: the files of this task did not arrive in time")
        time.sleep(0.02)
os.execvp(sys.argv[1], sys.argv[1:])
"""
#: Runs the shim with the image's Python (``python3``, else ``python``: conda images have only that one).
SHIM_LAUNCHER = (
    'if command -v python3 >/dev/null 2>&1; then exec python3 -c "$0" "$@"; else exec python -c "$0" "$@"; fi'
)
#: Where the shim waits for the go-ahead once the files sent before the start are in place.
GO_MARKER = "/tmp/.jupyter-containers-go"
#: The most bytes of files put before the start that travel in a Swarm secret (Swarm's limit: 500 KiB); more are
#: sent through the node's engine once the task runs.
SECRET_LIMIT = 400 * 1024
#: Where the task's secret of files appears (under Swarm's /run/secrets).
FILES_SECRET_TARGET = "jupyter-containers-files.tar"
#: The label naming the service a secret of files was made for (``prune`` says whose leftover it is).
SERVICE_LABEL = f"{LABEL_PREFIX}.service"
#: The engine API version whose service ContainerSpec takes ``Privileges.NoNewPrivileges`` (Docker 27): older
#: engines (20.10 speaks 1.41) have no way to set it on a service.
NO_NEW_PRIVILEGES_API = (1, 46)
#: The label a named volume gets from the service that made its node's engine create it (the service's name):
#: that volume is new (empty), whatever an earlier sync recorded for a volume of that name on that node.
VOLUME_CREATED_BY = f"{LABEL_PREFIX}.volume-created-by"
#: The request labels a named volume created for a service keeps (who owns it: what prune filters on).
VOLUME_LABELS = (f"{LABEL_PREFIX}.owner-uid", f"{LABEL_PREFIX}.workspace")


class NodePort(int):
    """A port published on one node (``mode=host``): the int is the port, ``.address`` the node's address.

    :meth:`SwarmBackend.reach` connects to that node, so the kernel code reaching published ports stays the same
    as for a single remote engine.
    """

    address: str

    def __new__(cls, port: int, address: str) -> NodePort:
        out = super().__new__(cls, port)
        out.address = address
        return out


# ---------------------------------------------------------------------- pure logic (unit-tested)
def registry_reference(image: str, registry: str) -> str:
    """Where ``image`` (``jupyter-containers/demo:0123abcd``) goes in ``registry`` (``HOST:PORT/REPO``):
    ``HOST:PORT/REPO/demo:0123abcd``, the same content-addressed tag."""
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:
        name, tag = image, "latest"
    return f"{registry.rstrip('/')}/{name.rsplit('/', 1)[-1]}:{tag}"


_CONSTRAINT_RE = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(==|!=)\s*(.+?)\s*$")


def check_constraint(text: str) -> tuple[str, str, str]:
    """``node.labels.gpu==a100`` → ``("node.labels.gpu", "==", "a100")``.

    Raises:
        RequestError: not ``KEY==VALUE`` or ``KEY!=VALUE`` with a Swarm key.
    """
    found = _CONSTRAINT_RE.match(text or "")
    if not found or not found.group(1).startswith(("node.", "engine.labels.")):
        raise RequestError(
            f"placement constraint {text!r} is not KEY==VALUE or KEY!=VALUE with a Swarm key (node.labels.NAME, "
            "node.role, node.hostname, node.id, node.platform.os, node.platform.arch, engine.labels.NAME), e.g. "
            "--constraint node.labels.gpu==a100"
        )
    return found.group(1), found.group(2), found.group(3)


def _node_value(node: NodeInfo, key: str, raw: Mapping[str, Any]) -> str | None:
    if key.startswith("node.labels."):
        return node.labels.get(key.removeprefix("node.labels."))
    if key.startswith("engine.labels."):
        return (
            ((raw.get("Description") or {}).get("Engine") or {})
            .get("Labels", {})
            .get(key.removeprefix("engine.labels."))
        )
    simple = {
        "node.hostname": node.name,
        "node.role": (raw.get("Spec") or {}).get("Role"),
        "node.id": raw.get("ID"),
        "node.platform.os": ((raw.get("Description") or {}).get("Platform") or {}).get("OS"),
        "node.platform.arch": ((raw.get("Description") or {}).get("Platform") or {}).get("Architecture"),
    }
    return simple.get(key)


def matches(node: NodeInfo, constraints: Sequence[str], raw: Mapping[str, Any] | None = None) -> bool:
    """Whether ``node`` satisfies every placement constraint (as Swarm evaluates them: exact, case-sensitive
    values; a missing label is unequal to everything)."""
    for text in constraints:
        key, op, value = check_constraint(text)
        have = _node_value(node, key, raw or {})
        if (have == value) != (op == "=="):
            return False
    return True


def sync_constraints(nodes: Sequence[NodeInfo], node_engines: Mapping[str, str]) -> list[str]:
    """``node.hostname!=NAME`` for every node of the swarm missing from the target's ``nodes`` table: a task whose
    /workspace is synced must land where this machine reaches the engine (its volume is that engine's)."""
    return [f"node.hostname!={n.name}" for n in sorted(nodes, key=lambda n: n.name) if n.name not in node_engines]


def describe_node(node: NodeInfo) -> str:
    labels = ",".join(f"{k}={v}" for k, v in sorted(node.labels.items()))
    return (
        f"{node.name} ({node.state}: {node.cpus:g} CPUs, {format_size(node.memory)}, {node.gpus} GPUs"
        + (f", labels {labels}" if labels else "")
        + ")"
    )


def placement_problem(
    resources: Resources,
    constraints: Sequence[str],
    nodes: Sequence[NodeInfo],
    raw: Mapping[str, Mapping[str, Any]] | None = None,
) -> str | None:
    """Why no node can ever take a task with these reservations, or None when one can (by capacity: what
    other tasks reserve now only delays the task, it does not make it impossible).

    The message says what was asked, which constraint or resource no node has, and what each node has.
    """
    raw = raw or {}
    ready = [n for n in nodes if n.state == "ready"]
    wanted = []
    if resources.cpus:
        wanted.append(f"{resources.cpus:g} CPUs")
    if resources.memory:
        wanted.append(format_size(resources.memory))
    gpus = resources.gpus if isinstance(resources.gpus, int) else 0
    if gpus:
        wanted.append(f"{gpus} GPU" + ("s" if gpus != 1 else ""))
    asked = ", ".join(wanted) or "no reservations"
    if constraints:
        asked += " on a node with " + " and ".join(constraints)
    have = "; ".join(describe_node(n) for n in nodes) or "no nodes"
    if not ready:
        return f"no node of the swarm is ready to run a task asking for {asked}; the nodes: {have}"
    placeable = [n for n in ready if matches(n, constraints, raw.get(n.name))]
    if not placeable:
        return f"no ready node matches the placement constraints ({asked}); the nodes: {have}"
    short = []
    if resources.cpus and all(n.cpus < resources.cpus for n in placeable):
        short.append(f"{resources.cpus:g} CPUs (most: {max(n.cpus for n in placeable):g})")
    if resources.memory and all(n.memory < resources.memory for n in placeable):
        most = format_size(max(n.memory for n in placeable))
        short.append(f"{format_size(resources.memory)} of memory (most: {most})")
    if gpus and all(n.gpus < gpus for n in placeable):
        short.append(f"{gpus} GPUs (most: {max(n.gpus for n in placeable)})")
    if not short:
        fits = [
            n
            for n in placeable
            if n.cpus >= (resources.cpus or 0) and n.memory >= (resources.memory or 0) and n.gpus >= gpus
        ]
        if fits:
            return None
        short.append("all of it at once")
    return f"no node has {' and '.join(short)} (asked for {asked}); the nodes: {have}"


def service_spec(
    request: RunRequest,
    *,
    image: str,
    user: str,
    constraints: Sequence[str],
    gpu_resource: str,
    wait_for_files: bool = False,
    restart_attempts: int = 0,
    files_secret: tuple[str, str] | None = None,
    folders: Sequence[tuple[str, int]] = (),
    no_new_privileges: bool = False,
    target: str = "",
    wait_seconds: float | None = None,
) -> dict[str, Any]:
    """The ``POST /services/create`` body for ``request``: one task, never restarted, limits and equal
    reservations, GPUs as generic resources, our labels on the service and its container.

    ``files_secret`` ``(ID, name)``: the Swarm secret holding a tar of the files put before the start, unpacked
    by the shim before the command starts (no wait for the task to be reported running). ``folders``
    ``(path, mode)``: the folders those files create, as in-memory folders owned by the container's user
    (a kernel writes ``--out`` values next to its connection file; ``/run`` is root's).

    ``wait_for_files``: the shim waits for :data:`GO_MARKER` (at most ``wait_seconds``, its default 120 s) before
    the command starts. A named volume (``Mount(NAME, …, type="volume")``: the synced /workspace) is created by the
    node's engine on first use with our labels, the owner's from the request and :data:`VOLUME_CREATED_BY` = the
    service's name (prune finds it; a sync tells a new volume from one it filled before).

    Privileges as on a single engine as far as the manager's API lets a service say it: every capability dropped
    (``CapabilityDrop``, API 1.41), and ``no_new_privileges`` (``Privileges.NoNewPrivileges``) only when the
    engine speaks API 1.46 or later (:data:`NO_NEW_PRIVILEGES_API`): an older one has no such field.

    ``network = false`` is refused (naming ``target``, the ``[targets.NAME]`` of the swarm): a service's task
    cannot be without a network. The engine refuses the local ``none`` network in ``TaskTemplate.Networks``
    (``bridge`` and ``host`` are the only predefined ones for services), and a task given none gets the node's bridge
    network (both seen on Docker 20.10, tests/integration/test_swarm.py): sending the request anyway would run
    the command with the network it asked not to have.

    Kept pure so that the exact request sent to the manager is unit-tested.
    """
    r = request.resources
    if r.network is False:
        where = f"target {target!r}" if target else "this target"
        raise RequestError(
            f"resources.network = false (--network none) cannot run on {where}: it is a Docker Swarm (kind = "
            '"swarm"), and a Swarm service always has a network (the engine refuses the "none" network for '
            "services: TaskTemplate.Networks takes swarm networks, bridge or host; a task without one gets the "
            "node's bridge network); leave the network on for this target, or run it on a Docker engine target "
            "(a node's engine works as one: [targets.NAME] engine = its address)"
        )
    gpus = r.gpus
    if gpus == "all" or isinstance(gpus, tuple):
        raise RequestError(
            f"--gpus {gpus if gpus == 'all' else ','.join(gpus)}: on a swarm, ask for a number of GPUs (--gpus 2); "
            "Swarm picks which of a node's GPUs the task gets"
        )
    if r.memory_swap is not None and r.memory_swap != r.memory:
        raise RequestError("--memory-swap: a swarm service has no swap setting (its tasks get none beyond --memory)")
    all_constraints = [*constraints, *(getattr(r, "constraints", None) or ())]
    for text in all_constraints:
        check_constraint(text)
    labels = {**request.labels, MANAGED_LABEL: "true"}
    environment = {
        "HOME": "/tmp/home" if user != "1000:1000" else "/home/jovyan",
        # Swarm fills in the template: the task knows which node it runs on (logs, results, tests).
        "JUPYTER_CONTAINERS_NODE": "{{.Node.Hostname}}",
        **request.environment,
    }
    if gpus:
        environment["JC_GPU_RESOURCE"] = gpu_resource
        environment.setdefault("NVIDIA_DRIVER_CAPABILITIES", "compute,utility")
    if wait_for_files:
        environment["JC_WAIT_FOR"] = GO_MARKER
        if wait_seconds is not None:
            environment["JC_WAIT_SECONDS"] = f"{wait_seconds:g}"
    if files_secret is not None:
        environment["JC_FILES"] = f"/run/secrets/{FILES_SECRET_TARGET}"
    command = list(request.command) or ["python"]
    container: dict[str, Any] = {
        "Image": image,
        "Args": ["sh", "-c", SHIM_LAUNCHER, ENTRYPOINT_SHIM, *command],
        "Env": [f"{k}={v}" for k, v in environment.items()],
        "Labels": labels,
        "User": user,
        "Init": True,
        "CapabilityDrop": ["ALL"],
        "Mounts": [],
    }
    if no_new_privileges:
        container["Privileges"] = {"NoNewPrivileges": True}
    if request.entrypoint is not None:
        container["Command"] = list(request.entrypoint)
    if request.working_dir:
        container["Dir"] = request.working_dir
    name = request.name or f"jc-{secrets.token_hex(6)}"
    for m in request.mounts:
        mount: dict[str, Any] = {
            "Type": m.type,
            "Source": str(m.source),
            "Target": m.target,
            "ReadOnly": bool(m.read_only),
        }
        if m.type == "volume" and m.source:
            volume_labels = {k: v for k, v in request.labels.items() if k in VOLUME_LABELS}
            mount["VolumeOptions"] = {
                "Labels": {
                    **volume_labels,
                    MANAGED_LABEL: "true",
                    f"{LABEL_PREFIX}.role": "workspace",
                    VOLUME_CREATED_BY: name,
                }
            }
        container["Mounts"].append(mount)
    uid, _, gid = user.partition(":")
    if files_secret is not None:
        container["Secrets"] = [
            {
                "SecretID": files_secret[0],
                "SecretName": files_secret[1],
                "File": {"Name": FILES_SECRET_TARGET, "UID": uid, "GID": gid or uid, "Mode": 0o400},
            }
        ]
    for path, mode in folders:
        # An anonymous tmpfs volume of the node's engine (removed with the task's container): unlike a tmpfs
        # mount, its owner can be set, and the node's engine can still put files into it (%%container --in).
        options = f"uid={uid},gid={gid or uid},mode={mode & 0o7777:o}"
        driver = {"Name": "local", "Options": {"type": "tmpfs", "device": "tmpfs", "o": options}}
        container["Mounts"].append({"Type": "volume", "Target": path, "VolumeOptions": {"DriverConfig": driver}})
    if r.shm_size is not None:
        # Services have no --shm-size: /dev/shm as a tmpfs of that size is what `docker run --shm-size` makes.
        container["Mounts"].append({"Type": "tmpfs", "Target": "/dev/shm", "TmpfsOptions": {"SizeBytes": r.shm_size}})
    limits: dict[str, Any] = {}
    reservations: dict[str, Any] = {}
    if r.cpus is not None:
        limits["NanoCPUs"] = reservations["NanoCPUs"] = int(r.cpus * 1e9)
    if r.memory is not None:
        limits["MemoryBytes"] = reservations["MemoryBytes"] = int(r.memory)
    if r.pids is not None:
        limits["Pids"] = int(r.pids)
    if gpus:
        reservations["GenericResources"] = [{"DiscreteResourceSpec": {"Kind": gpu_resource, "Value": int(gpus)}}]
    task: dict[str, Any] = {
        "ContainerSpec": container,
        "Resources": {"Limits": limits, "Reservations": reservations},
        "RestartPolicy": (
            {"Condition": "on-failure", "MaxAttempts": restart_attempts}
            if restart_attempts
            else {"Condition": "none", "MaxAttempts": 0}
        ),
        "Placement": {"Constraints": all_constraints},
    }
    spec: dict[str, Any] = {
        "Name": name,
        "Labels": labels,
        "TaskTemplate": task,
        "Mode": {"ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": 1}},
    }
    if request.publish:
        # Published on the node the task runs on only (not the routing mesh, which needs IPVS and listens on
        # every node): the kernel's channels are CurveZMQ-encrypted and authenticated (docs/remote.md).
        spec["EndpointSpec"] = {
            "Ports": [{"Protocol": "tcp", "TargetPort": int(p), "PublishMode": "host"} for p in request.publish]
        }
    return spec


# ---------------------------------------------------------------------- the service handle
class SwarmContainer(Container):
    """One service of one task, behind the engine-neutral :class:`Container` interface.

    Created lazily: :meth:`SwarmBackend.create` only prepares the spec; files put before :meth:`start` are kept
    and go with the service in a Swarm secret (the shim unpacks them before the command starts); more than a
    secret holds are sent into the task's container once it runs (its shim waits), through its node's engine.
    """

    def __init__(self, backend: SwarmBackend, service_id: str, request: RunRequest | None = None):
        self.backend = backend
        self.id = service_id
        self.request = request
        self._pending: list[tuple[str, bytes]] = []
        self._started = request is None
        self._task: dict[str, Any] | None = None
        #: ``(node, image)`` once the workspace was synced into that node's volume (what comes back from there).
        self.synced: tuple[str, str] | None = None
        #: ``(node, container id)`` of a synced task: removed with the service (see :meth:`remove`).
        self.node_task: tuple[str, str] | None = None

    # ---- the task
    def task(self, *, refresh: bool = True) -> dict[str, Any] | None:
        """The service's newest task (Swarm's dict), None before it has one."""
        if self._task is not None and not refresh:
            return self._task
        tasks = self.backend._call(
            f"listing the tasks of service {self.short_id}", self.backend.api.tasks, filters={"service": self.id}
        )
        if tasks:
            self._task = max(tasks, key=lambda t: (t.get("Version") or {}).get("Index", 0))
        return self._task

    def node_container(self) -> DockerContainer:
        """The task's container, through the engine of its node (``node_engines``)."""
        task = self.task(refresh=self._task is None or not _container_id(self._task))
        if task is None or not _container_id(task):
            raise EngineRefusedError(f"service {self.short_id} has no running container yet")
        node = self.backend.node_name(str(task.get("NodeID") or ""))
        return DockerContainer(self.backend.node_backend(node), _container_id(task) or "")

    def node_name(self) -> str:
        """The host name of the node the task was placed on."""
        task = self.task(refresh=self._task is None or not self._task.get("NodeID"))
        if task is None or not task.get("NodeID"):
            raise EngineRefusedError(f"service {self.short_id} has no task placed on a node yet")
        return self.backend.node_name(str(task["NodeID"]))

    # ---- Container
    def start(self) -> None:
        if self._started:
            return
        assert self.request is not None
        backend = self.backend
        sync = backend.syncs_workspace(self.request)
        # Unchanged since every node it may land on last got it: no wait, wherever Swarm puts the task.
        current = sync and backend._workspace_current(self.request)
        if sync:
            self.request = _named(self.request)
        files = _combined(self._pending) if self._pending else b""
        if files and len(files) <= SECRET_LIMIT:
            # In the task's secret: the command starts as soon as the task does, without waiting for the
            # manager to report it running and a second connection to its node's engine (unless /workspace is
            # to be synced: that needs the node, and so the wait).
            self.id = backend._create_service(
                self.request, files=files, folders=_folders(self._pending), sync=sync, synced=current
            )
            self._pending = []
        else:
            self.id = backend._create_service(
                self.request, wait_for_files=bool(self._pending), sync=sync, synced=current
            )
        self._started = True
        try:
            task = backend._wait_placed(self, self.request.resources)
            self._task = task
            backend._placed(self, task, sync=sync, current=current, pending=self._pending)
            self._pending = []
        except BaseException:
            self.remove()
            raise

    def wait(self, timeout: float | None = None) -> int | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        interval = self.backend.poll_interval
        while True:
            state = self.state()
            if not state.running:
                return state.exit_code if state.exit_code is not None else -1
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return None
            time.sleep(interval if deadline is None else max(0.0, min(interval, deadline - now)))
            interval = min(1.0, interval * 1.5)  # short runs end soon after they do; long ones cost few calls

    def kill(self, signum: int = 9) -> None:
        """A signal through the engine of the task's node; SIGKILL/SIGTERM without one (or with its node gone)
        removes the service instead. Nothing happens when the task no longer runs (its node went down)."""
        if not self.state().running:
            return
        ending = int(signum) in (9, 15)
        if ending and not self.backend.node_engines:
            self.remove()
            return
        try:
            self.node_container().kill(signum)
        except (EngineRefusedError, EngineUnavailableError):
            if ending:
                self.remove()
                return
            raise

    def state(self) -> ContainerState:
        if not self._started:
            return ContainerState("created")
        try:
            self.backend._call(f"inspecting service {self.short_id}", self.backend.api.inspect_service, self.id)
        except NotFoundError:
            return ContainerState("removed", exit_code=-1)
        task = self.task()
        if task is None:
            return ContainerState("created")
        return self.backend._task_state(task)

    def logs(self, *, tail: int | None = None) -> str:
        return self.backend._service_logs(self.id, tail=tail)

    def remove(self) -> None:
        """The service; then, for a synced /workspace, its task's container on its node (Swarm leaves an ended
        task's container there, holding the volume, so that prune could never remove it: seen on Docker 20.10)
        and what the task wrote comes back from the node's volume (which outlives both). A failure of those two is
        logged: the service is gone anyway."""
        if self._started:
            if self.synced is not None and self.node_task is None:
                # Placed without waiting (its volume was current): the container id came only once it ran.
                found = _container_id(self.task()) if self._task is not None else None
                if found:
                    self.node_task = (self.synced[0], found)
            try:
                self.backend.remove_container(self.id)
            finally:
                self.backend._remove_node_task(self)
                self.backend._bring_back(self, quiet=True)

    def put_files(self, directory: str, files: Mapping[str, bytes]) -> None:
        uid, _, gid = self.backend.container_user().partition(":")
        self.put_archive(directory, _tar(dict(files), uid, gid))

    def put_archive(self, directory: str, data: bytes | IO[bytes]) -> None:
        if not self._started:
            self._pending.append((directory, data if isinstance(data, bytes) else data.read()))
            return
        self.node_container().put_archive(directory, data)

    def get_archive(self, path: str) -> Iterator[bytes]:
        return self.node_container().get_archive(path)

    def get_file(self, path: str) -> bytes:
        return self.node_container().get_file(path)

    def published_ports(self) -> dict[int, int]:
        task = self.task()
        if task is None:
            return {}
        address = self.backend.node_address(str(task.get("NodeID") or ""))
        out: dict[int, int] = {}
        for port in ((task.get("Status") or {}).get("PortStatus") or {}).get("Ports") or []:
            if port.get("PublishedPort"):
                out[int(port["TargetPort"])] = NodePort(int(port["PublishedPort"]), address)
        return out


#: The stream ids of the engine's multiplexed log frames (``stdcopy``): 1 stdout, 2 stderr, 3 the engine's own
#: errors (``Error grabbing logs: … node … is not available`` when a task's node went down): never the program's.
STDOUT, STDERR, SYSERR = 1, 2, 3


def log_frames(raw: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    """``(stream id, bytes)`` of each frame of a multiplexed (non-TTY) log: an 8-byte header (the stream id, 3
    zero bytes, the big-endian length), then that many bytes. docker-py's ``service_logs`` drops the stream id;
    the engine keeps it for a service's tasks as for a container (``docker service logs`` separates them)."""
    while True:
        header = _read_exactly(raw, 8)
        if len(header) < 8:
            return
        stream, length = struct.unpack(">BxxxL", header)
        data = _read_exactly(raw, length)
        if data:
            yield (stream if stream in (STDERR, SYSERR) else STDOUT), data
        if len(data) < length:
            return


def _read_exactly(raw: IO[bytes], size: int) -> bytes:
    out = b""
    while len(out) < size:
        chunk = raw.read(size - len(out))
        if not chunk:
            break
        out += chunk
    return out


class _LogFollower:
    """A service's output as it comes (``docker service logs -f``), then the rest once the task is done: stdout
    to ``out``, stderr to ``err`` (the engine's frames say which is which), as a run on a single engine.

    The follow stream of a service stays open until the service is removed, so it cannot tell that the output
    is complete: :meth:`finish` reads the whole log once (not following) and passes on what the stream had not
    yet delivered, stream by stream.
    """

    def __init__(
        self, backend: SwarmBackend, service_id: str, out: OutputCallback | None, err: OutputCallback | None = None
    ):
        self.backend, self.service_id = backend, service_id
        self.callbacks = {STDOUT: out, STDERR: err}
        self.sent = {STDOUT: 0, STDERR: 0}
        self.lock = threading.Lock()
        self.done = False
        self.thread = threading.Thread(target=self._follow, name=f"logs-{service_id[:12]}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _emit(self, stream: int, data: bytes, *, whole: bool = False) -> None:
        if stream == SYSERR:
            if not whole:
                self.backend.log.warning(
                    "the log of service %s: %s", self.service_id[:12], data.decode("utf-8", "replace")
                )
            return
        with self.lock:
            if self.done and not whole:
                return
            if whole:
                data = data[self.sent[stream] :]
            self.sent[stream] += len(data)
            callback = self.callbacks[stream]
            if data and callback is not None:
                callback(data)

    def _follow(self) -> None:
        try:
            for stream, data in self.backend._service_log_frames(self.service_id, follow=True):
                if self.done:
                    return
                self._emit(stream, data)
        except Exception:  # the service was removed: the stream just ends
            self.backend.log.debug("log stream of service %s ended", self.service_id, exc_info=True)

    def finish(self) -> None:
        """The task ended: what the stream has not delivered yet, from one full read of the log."""
        self.thread.join(0.2)
        with self.lock:
            self.done = True
        whole = {STDOUT: b"", STDERR: b"", SYSERR: b""}
        try:
            for stream, data in self.backend._service_log_frames(self.service_id):
                whole[stream] += data
        except ContainersError:
            return
        for stream, data in whole.items():
            self._emit(stream, data, whole=True)

    def stop(self) -> None:
        with self.lock:
            self.done = True


#: Containers of the build itself (probing the image's Python, capturing its lock, checking a bootstrapped
#: base): they run on the manager's engine where the image was built, not as services.
BUILD_ROLES = ("python-probe", "lock-probe")


def _named(request: RunRequest) -> RunRequest:
    """``request`` with the name its service will have (what its volumes are labelled with)."""
    from dataclasses import replace

    return request if request.name else replace(request, name=f"jc-{secrets.token_hex(6)}")


def _on_manager(request: RunRequest) -> bool:
    found = request.labels.get
    return found("io.jupyter.containers.role") in BUILD_ROLES or found("io.jupyter.containers.kind") == (
        "bootstrap-check"
    )


def _container_id(task: Mapping[str, Any] | None) -> str | None:
    return (((task or {}).get("Status") or {}).get("ContainerStatus") or {}).get("ContainerID") or None


def _folders(archives: Sequence[tuple[str, bytes]]) -> list[tuple[str, int]]:
    """The folders (absolute path, mode) that the ``(directory, tar)`` archives create."""
    out = []
    for directory, data in archives:
        with tarfile.open(fileobj=io.BytesIO(data)) as source:
            for member in source.getmembers():
                if member.isdir():
                    out.append(("/" + f"{directory.strip('/')}/{member.name}".strip("/"), member.mode))
    return out


def _combined(archives: Sequence[tuple[str, bytes]], marker: str | None = None, uid: str = "", gid: str = "") -> bytes:
    """Tars meant for ``(directory, tar)`` put_archive calls as one tar to unpack at ``/``, ``marker`` last."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as out:
        for directory, data in archives:
            with tarfile.open(fileobj=io.BytesIO(data)) as source:
                for member in source.getmembers():
                    content = source.extractfile(member) if member.isfile() else None
                    member.name = f"{directory.strip('/')}/{member.name}".lstrip("/")
                    out.addfile(member, content)
        if marker is not None:
            info = tarfile.TarInfo(marker.lstrip("/"))
            info.mode, info.mtime = 0o600, int(time.time())
            info.uid, info.gid = int(uid or 0), int(gid or uid or 0)
            out.addfile(info, io.BytesIO(b""))
    return buf.getvalue()


def _tar(files: Mapping[str, bytes], uid: str, gid: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
            info.uid, info.gid = int(uid or 0), int(gid or uid or 0)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# ---------------------------------------------------------------------- the backend
class SwarmBackend(DockerBackend):
    """A Docker Swarm, through its manager's engine (``base_url``: ssh://, tcp:// with TLS, unix://)."""

    kind = "swarm"

    registry = Unicode(
        None,
        allow_none=True,
        config=True,
        help="HOST:PORT/REPO every node pulls images from (the target's registry); built images are pushed "
        "there once (the content-addressed tag makes a second push a no-op). Unset: a one-node swarm that "
        "runs the manager's own images.",
    )
    constraints = List(
        Unicode(),
        config=True,
        help="Placement constraints of every service (the target's constraints), e.g. ['node.labels.gpu==a100'].",
    )
    node_engines = Dict(
        Unicode(),
        config=True,
        help="Node host name → its engine's address (the target's nodes table): what kernels and %%container "
        "sessions need to send files into their task, read results back and interrupt it.",
    )
    gpu_resource = Unicode(
        "NVIDIA-GPU",
        config=True,
        help="The generic resource kind the nodes advertise their GPUs as (dockerd --node-generic-resource "
        "NVIDIA-GPU=GPU-uuid, or node-generic-resources in daemon.json).",
    )
    placement_timeout = Float(
        60.0,
        config=True,
        help="Seconds a task may stay unplaced (pending) before it is removed with what the nodes have.",
    )
    start_timeout = Float(600.0, config=True, help="Seconds a placed task may take to start (pull included).")
    poll_interval = Float(
        0.05, config=True, help="Seconds between two looks at a task's state (one small API call to the manager)."
    )
    reschedule = Int(
        0,
        config=True,
        help="Times a task that failed (a node that died) is started again elsewhere; 0: reported as failed.",
    )

    target_name = Unicode(
        "",
        help="The [targets.NAME] this backend runs (set from the target; named in its errors); empty: configured "
        "without a target (c.SwarmBackend.base_url).",
    )

    reschedule_on_node_failure = Bool(
        False,
        config=True,
        help="A notebook job whose node goes down while it runs is run again from the start on another node, "
        "once, saying so in its log (the target's reschedule_on_node_failure); False: it is reported failed.",
    )

    _nodes_cache: tuple[float, list[dict[str, Any]]] | None = None
    #: Services whose task's node went down while it ran, with that node's host name (see :meth:`lost_node`).
    _lost: dict[str, tuple[str, dict[str, str]]] | None = None
    _node_backends: dict[str, DockerBackend] | None = None
    _pushed: dict[tuple[str, str], str] | None = None
    #: Syncs a workspace volume on a node (set by the manager of a ``sync`` target; None: nothing is synced). Any
    #: object with ``volume`` (the volume's name), ``up(node, engine, image, fresh=)`` and ``down(node, engine,
    #: image)``: ``engine`` is that node's :class:`DockerBackend`, ``image`` the exact reference the task ran, and
    #: ``fresh`` says that the node's engine has just created the volume (empty). A hook rather than an import:
    #: backends know nothing of workspaces.
    workspace_hook: Any = None

    # ------------------------------------------------------------------ the synced workspace
    def syncs_workspace(self, request: RunRequest) -> bool:
        """Whether ``request``'s task needs its node's workspace volume synced before it starts (it mounts the
        volume of :attr:`workspace_hook`)."""
        hook = self.workspace_hook
        if hook is None or _on_manager(request):
            return False
        return any(m.type == "volume" and str(m.source) == hook.volume for m in request.mounts)

    def _workspace_current(self, request: RunRequest) -> bool:
        """Whether the volume of every node ``request``'s task may land on (ready, in the ``nodes`` table, matching
        the target's and the request's constraints) already holds the workspace as it is here: the hook's
        ``current_on`` (one walk of the workspace, one volume listing per node). Then the task starts without
        waiting for its node's sync; anything else (a file changed, a node never synced or its volume removed by
        hand, a node that does not answer) means the wait."""
        check = getattr(self.workspace_hook, "current_on", None)
        if check is None:
            return False
        constraints = [*self.constraints, *(request.resources.constraints or ())]
        try:
            names = [
                node.name
                for raw in self._raw_nodes()
                if (node := self._node_info(raw)).state == "ready" and matches(node, constraints, raw)
            ]
            engines = {name: self.node_backend(name) for name in names if name in self.node_engines}
            return bool(engines) and bool(check(engines))
        except (ContainersError, OSError) as exc:
            self.log.debug("the workspace's volumes could not be checked (%s): the task waits for its sync", exc)
            return False

    def _placed(
        self,
        container: SwarmContainer,
        task: Mapping[str, Any],
        *,
        sync: bool,
        current: bool,
        pending: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        """What a placed task waits for, if anything (:meth:`SwarmContainer.start` and :meth:`run`): its node's
        workspace sync (``sync``, unless ``current``), then, in one archive at "/" (one call to the node's
        engine), the files put before the start that did not fit in its secret (``pending``) and the go-ahead
        the shim waits for, last, so that everything before it is in place."""
        if sync:
            self._sync_up(container, task, current=current)
        if pending or (sync and not current):
            uid, _, gid = self.container_user().partition(":")
            container.node_container().put_archive("/", _combined(pending, GO_MARKER, uid, gid))

    def _sync_up(self, container: SwarmContainer, task: Mapping[str, Any], *, current: bool = False) -> None:
        """The workspace into the volume on the task's node, while the task waits for its go-ahead (``current``:
        it already holds it, see :meth:`_workspace_current`: only what comes back later is noted)."""
        node = self.node_name(str(task.get("NodeID") or ""))
        if node not in self.node_engines:
            known = ", ".join(sorted(self.node_engines)) or "none"
            where = f"[targets.{self.target_name}.nodes]" if self.target_name else "c.SwarmBackend.node_engines"
            raise EngineRefusedError(
                f"the task of service {container.short_id} was placed on node {node!r}, which is not in the target's "
                f"nodes table ({where}: {known}): its /workspace volume is synced through the node's engine; add "
                f'{node} = "tcp://…" (or ssh://…) there (it joined the swarm after the service was created)'
            )
        engine = self.node_backend(node)
        image = str(((task.get("Spec") or {}).get("ContainerSpec") or {}).get("Image") or "")
        task_container = _container_id(task)
        if task_container:
            container.node_task = (node, task_container)
        if not current:
            name = container.request.name if container.request is not None else ""
            fresh = bool(name) and bool(engine.list_volumes({VOLUME_CREATED_BY: str(name)}))
            self.workspace_hook.up(node, engine, image, fresh=fresh)
        container.synced = (node, image)

    def _remove_node_task(self, container: SwarmContainer) -> None:
        """The container of a synced task on its node, once its service is gone (see :meth:`SwarmContainer.remove`)."""
        found, container.node_task = container.node_task, None
        if found is None:
            return
        node, container_id = found
        try:
            self.node_backend(node).remove_container(container_id)
        except ContainersError as exc:
            self.log.debug("the task container %s on node %s stays: %s", container_id[:12], node, exc)

    def _bring_back(self, container: SwarmContainer, *, quiet: bool) -> None:
        """What the task wrote to /workspace, from its node's volume (once per service; nothing when its workspace
        was never synced). ``quiet``: a failure is logged, not raised (a removal goes on)."""
        synced, container.synced = container.synced, None
        if synced is None or self.workspace_hook is None:
            return
        node, image = synced
        try:
            self.workspace_hook.down(node, self.node_backend(node), image)
        except (ContainersError, OSError) as exc:
            if not quiet:
                raise
            self.log.warning(
                "jupyter-containers: the workspace changes of service %s did not come back from node %s: %s",
                container.short_id,
                node,
                exc,
            )

    # ------------------------------------------------------------------ engine and nodes
    @property
    def is_local(self) -> bool:
        return False  # tasks run on any node: nothing of this host can be mounted or read there

    def publish_address(self) -> str:
        return "0.0.0.0"

    def reach(self, host_port: int) -> tuple[str, int]:
        address = getattr(host_port, "address", None)
        if address:
            return str(address), int(host_port)
        return super().reach(int(host_port))

    def release(self, host_port: int) -> None:
        return None

    def _raw_nodes(self, max_age: float = 2.0) -> list[dict[str, Any]]:
        cached = self._nodes_cache
        if cached is not None and time.monotonic() - cached[0] < max_age:
            return cached[1]
        try:
            found = self._call("listing the swarm's nodes", self.api.nodes)
        except EngineRefusedError as exc:
            if "not a swarm manager" in str(exc) or "swarm" in str(exc).lower():
                raise EngineRefusedError(
                    f"the engine at {self.address} is not a swarm manager ({exc}); point the target's engine at "
                    "a manager node ('docker swarm init' makes one)"
                ) from None
            raise
        self._nodes_cache = (time.monotonic(), found)
        return found

    def _node_info(self, raw: Mapping[str, Any]) -> NodeInfo:
        description = raw.get("Description") or {}
        resources = description.get("Resources") or {}
        gpus = 0
        for item in resources.get("GenericResources") or []:
            named, discrete = item.get("NamedResourceSpec"), item.get("DiscreteResourceSpec")
            if named and named.get("Kind") == self.gpu_resource:
                gpus += 1
            elif discrete and discrete.get("Kind") == self.gpu_resource:
                gpus += int(discrete.get("Value") or 0)
        status = raw.get("Status") or {}
        spec = raw.get("Spec") or {}
        state = str(status.get("State") or "unknown")
        if state == "ready" and spec.get("Availability", "active") != "active":
            state = str(spec.get("Availability"))  # drained or paused: no new tasks go there
        return NodeInfo(
            name=str(description.get("Hostname") or raw.get("ID")),
            address=status.get("Addr"),
            cpus=(resources.get("NanoCPUs") or 0) / 1e9,
            memory=int(resources.get("MemoryBytes") or 0),
            gpus=gpus,
            state=state,
            labels=dict(spec.get("Labels") or {}),
        )

    def nodes(self) -> list[NodeInfo]:
        return [self._node_info(n) for n in self._raw_nodes(max_age=0)]

    def node_name(self, node_id: str) -> str:
        for raw in self._raw_nodes():
            if raw.get("ID") == node_id:
                return str((raw.get("Description") or {}).get("Hostname") or node_id)
        return node_id

    def node_address(self, node_id: str) -> str:
        for raw in self._raw_nodes():
            if raw.get("ID") == node_id:
                return str((raw.get("Status") or {}).get("Addr") or "")
        raise NotFoundError(f"the swarm has no node {node_id}")

    def node_backend(self, node: str) -> DockerBackend:
        """A :class:`DockerBackend` on the engine of node ``node`` (host name), from ``node_engines``."""
        if self._node_backends is None:
            self._node_backends = {}
        if node not in self._node_backends:
            address = self.node_engines.get(node)
            if not address:
                known = ", ".join(sorted(self.node_engines)) or "none"
                raise EngineRefusedError(
                    f"sending files to (or interrupting) a task on node {node!r} needs that node's engine: add "
                    f'{node} = "ssh://…" (or tcp://…) to the target\'s nodes table (configured: {known})'
                )
            tls = {}
            if address.startswith("tcp://"):
                tls = {"tls_ca": self.tls_ca, "tls_cert": self.tls_cert, "tls_key": self.tls_key}
            self._node_backends[node] = DockerBackend(
                parent=self, base_url=address, tls_verify=self.tls_verify, ssh_command=self.ssh_command, **tls
            )
        return self._node_backends[node]

    def engine_info(self) -> EngineInfo:
        from dataclasses import replace

        info = super().engine_info()
        nodes = self.nodes()
        ready = [n for n in nodes if n.state == "ready"]
        gpus = sum(n.gpus for n in ready)
        return replace(
            info,
            kind=self.kind,
            cpus=int(sum(n.cpus for n in ready)),
            memory=sum(n.memory for n in ready),
            gpu=gpus > 0,
            gpu_support=(f"{gpus} {self.gpu_resource} generic resources on {len(ready)} ready nodes",) if gpus else (),
            gpu_note="" if gpus else f"no node advertises {self.gpu_resource} generic resources",
        )

    def _gpu_support(self, info: Mapping[str, Any], runtimes: Sequence[str], cdi_devices: Sequence[str]) -> Any:
        return None, (), ""  # the nodes' generic resources say it (engine_info), not the manager's own engine

    def close(self) -> None:
        for backend in (self._node_backends or {}).values():
            backend.close()
        self._node_backends = None
        super().close()

    # ------------------------------------------------------------------ images
    def distribute(self, image: str) -> str:
        """The reference every node pulls ``image`` by, ``REGISTRY/ENV:TAG@sha256:…``: pushed to ``registry``
        once (a tag the registry already has is not pushed again: the tag is content-addressed); the local tag
        itself without a registry.

        Pinned to the registry's digest: a node that has that image starts the task without asking the registry
        again (with a tag alone, every task start is a registry round trip on its node)."""
        if not self.registry:
            return image
        reference = registry_reference(image, self.registry)
        image_id = self.image_id(image) or image
        if self._pushed is None:
            self._pushed = {}
        if (reference, image_id) in self._pushed:
            return self._pushed[(reference, image_id)]
        self.tag_image(image, reference)
        try:
            found = self._call(f"asking the registry for {reference}", self.api.inspect_distribution, reference)
            digest = str(((found or {}).get("Descriptor") or {}).get("digest") or "")
        except ContainersError:
            digest = self.push(reference)
        pinned = f"{reference}@{digest}" if digest.startswith("sha256:") else reference
        self._pushed[(reference, image_id)] = pinned
        return pinned

    def registry_check(self) -> str:
        """That the manager's engine can log in to and list ``registry`` (``setup --target``); what it said."""
        if not self.registry:
            return "no registry set: only the manager's own images can run (a one-node swarm)"
        host = self.registry.split("/", 1)[0]
        probe = f"{self.registry.rstrip('/')}/jupyter-containers-probe:none"
        try:
            # The engine asks the registry for a manifest that does not exist, with this machine's credentials
            # for it (as a service's nodes will): "not found" means it answered and let us in.
            self._call(f"asking the registry {host}", self.api.inspect_distribution, probe)
        except NotFoundError:
            return f"registry {host} answers"
        except EngineRefusedError as exc:
            text = str(exc)
            if "manifest unknown" in text or "not found" in text.lower():
                return f"registry {host} answers"
            raise EngineRefusedError(
                f"the manager's engine cannot use the registry {host} ({text[:300]}); check 'docker login {host}' "
                "here and that the engine trusts its certificate (/etc/docker/certs.d/HOST:PORT/ca.crt)"
            ) from None
        return f"registry {host} answers"

    # ------------------------------------------------------------------ services
    def _create_service(
        self,
        request: RunRequest,
        *,
        wait_for_files: bool = False,
        files: bytes = b"",
        folders: Sequence[tuple[str, int]] = (),
        sync: bool = False,
        synced: bool = False,
    ) -> str:
        """The service of ``request``; ``files`` (a tar to unpack at ``/`` before the command starts) travel in a
        Swarm secret of its own, removed with the service (:meth:`remove_container`). ``sync``: its /workspace
        volume is synced once it is placed, so its task waits for the go-ahead and lands only on nodes of the
        target's nodes table (:func:`sync_constraints`); ``synced``: every such node's volume holds the workspace
        already (:meth:`_workspace_current`), so the task lands there too but need not wait."""
        request = _named(request)
        user = self.container_user()
        no_new_privileges = self.api_at_least(NO_NEW_PRIVILEGES_API)
        constraints = list(self.constraints)
        if sync:
            wait_for_files = wait_for_files or not synced
            constraints += sync_constraints([self._node_info(n) for n in self._raw_nodes()], self.node_engines)
        # The spec's settings but the secret, which is only made once the request is known to fit.
        settings: dict[str, Any] = dict(
            user=user,
            constraints=constraints,
            gpu_resource=self.gpu_resource,
            target=self.target_name,
            wait_for_files=wait_for_files,
            restart_attempts=int(self.reschedule),
            no_new_privileges=no_new_privileges,
            wait_seconds=self.start_timeout if sync and not synced else None,
        )
        spec = service_spec(request, image=self.distribute(request.image), **settings)
        problem = self._placement_problem(request.resources, spec["TaskTemplate"]["Placement"]["Constraints"])
        if problem is not None:
            if sync and len(constraints) > len(self.constraints):
                problem += self._synced_nodes_note()
            raise EngineRefusedError(f"the swarm at {self.address} cannot run this: {problem}")
        api = self.api
        secret: tuple[str, str] | None = None
        if files:
            # Secrets are encrypted in the swarm's raft log, sent only to the node that runs the task, kept in
            # its memory, and not part of `docker service inspect` (an environment variable would be).
            name = f"{request.name}-files-{secrets.token_hex(3)}"  # a leftover of a crashed process never clashes
            # The request's labels (owner, workspace, role) and its service's name: prune tells a leftover (its
            # service gone behind our back, or never created by a process that died) from a live one by them.
            secret_labels = {**request.labels, MANAGED_LABEL: "true", SERVICE_LABEL: request.name}
            found = self._call("creating the task's secret", api.create_secret, name, files, labels=secret_labels)
            secret = (str(found["ID"]), name)
            image = spec["TaskTemplate"]["ContainerSpec"]["Image"]
            spec = service_spec(request, image=image, files_secret=secret, folders=folders, **settings)

        def create() -> Any:
            # docker-py sends the registry credentials of the image's registry (X-Registry-Auth) along:
            # `--with-registry-auth`, so that every node can pull it.
            return api.create_service(
                spec["TaskTemplate"],
                name=spec["Name"],
                labels=spec["Labels"],
                mode=spec["Mode"],
                endpoint_spec=spec.get("EndpointSpec"),
            )

        try:
            created = self._call(f"creating a service from {request.image}", create, resources=request.resources)
        except BaseException:
            if secret is not None:
                self._remove_secrets([secret[0]])
            raise
        return str(created["ID"])

    def api_at_least(self, version: tuple[int, int]) -> bool:
        """Whether the manager's engine speaks API ``version`` (``(1, 46)``) or later: what the service spec may
        hold (the client negotiates the engine's own version). Parsed here: only backends/docker.py imports
        docker-py (tests/unit/test_boundaries.py)."""
        found = str(getattr(self.api, "api_version", "") or "")
        try:
            have = tuple(int(part) for part in found.split(".")[:2])
        except ValueError:
            return False
        return have >= version

    def list_secrets(self, labels: Mapping[str, str] | None = None, *, unused: bool = False) -> list[SecretInfo]:
        """Our secrets with every label in ``labels``; ``unused``: those no service of the swarm holds (whoever's
        the service: a secret still held cannot be removed anyway)."""
        from datetime import datetime

        wanted = [MANAGED_LABEL, *(f"{k}={v}" for k, v in (labels or {}).items())]
        found = self._call("listing the swarm's secrets", self.api.secrets, filters={"label": wanted})
        held: set[str] = set()
        if unused:
            for service in self._call("listing services", self.api.services):
                container = ((service.get("Spec") or {}).get("TaskTemplate") or {}).get("ContainerSpec") or {}
                held.update(str(s.get("SecretID")) for s in container.get("Secrets") or ())
        out = []
        for secret in found or ():
            if str(secret["ID"]) in held:
                continue
            created = None
            stamp = str(secret.get("CreatedAt") or "")
            if stamp:
                try:  # Go's RFC 3339 with nanoseconds: Python takes microseconds
                    head, _, tail = stamp.rstrip("Z").partition(".")
                    created = datetime.fromisoformat(f"{head}.{(tail + '000000')[:6]}+00:00").timestamp()
                except ValueError:
                    created = None
            spec = secret.get("Spec") or {}
            out.append(
                SecretInfo(
                    id=str(secret["ID"]),
                    name=str(spec.get("Name") or ""),
                    labels=dict(spec.get("Labels") or {}),
                    created=created,
                )
            )
        return out

    def remove_secret(self, secret_id: str) -> None:
        """One of our secrets; one still held by a service just removed (Swarm lets go of it shortly after) is
        retried for about 2 s, then the engine's refusal is raised."""
        for attempt in range(20):
            try:
                self._call(f"removing the swarm secret {secret_id[:12]}", self.api.remove_secret, secret_id)
                return
            except NotFoundError:
                return
            except ContainersError as exc:
                if "in use" not in str(exc) or attempt == 19:
                    raise
                time.sleep(0.1)

    def _remove_secrets(self, secret_ids: Sequence[str]) -> None:
        """Our secrets among ``secret_ids`` (a service's, once it is removed), through :meth:`remove_secret`
        (which retries one still held); one that cannot go is left with a warning."""
        for secret_id in secret_ids:
            try:
                found = self._call(f"inspecting the swarm secret {secret_id[:12]}", self.api.inspect_secret, secret_id)
                if MANAGED_LABEL in ((found.get("Spec") or {}).get("Labels") or {}):
                    self.remove_secret(secret_id)
            except NotFoundError:
                pass
            except ContainersError as exc:
                self.log.warning("could not remove the swarm secret %s: %s", secret_id, exc)

    def _placement_problem(self, resources: Resources, constraints: Sequence[str]) -> str | None:
        raw = self._raw_nodes(max_age=0)
        return placement_problem(
            resources, constraints, [self._node_info(n) for n in raw], {self._node_info(n).name: n for n in raw}
        )

    def _synced_nodes_note(self) -> str:
        known = ", ".join(sorted(self.node_engines))
        return (
            f" (/workspace is synced through each node's engine: only the nodes of the target's nodes table, "
            f"{known}, can take the task; add the others to that table)"
        )

    def _service_constraints(self, service_id: str, default: Sequence[str]) -> list[str]:
        """The placement constraints the service was created with (the target's, the request's and those the
        workspace sync adds), or ``default`` when the service cannot be read."""
        try:
            spec = self._call("inspecting a service", self.api.inspect_service, service_id).get("Spec") or {}
        except ContainersError:
            return list(default)
        found = ((spec.get("TaskTemplate") or {}).get("Placement") or {}).get("Constraints")
        return list(found) if isinstance(found, list) else list(default)

    def _wait_placed(self, container: SwarmContainer, resources: Resources) -> dict[str, Any]:
        """Until the service's task runs (or ran): an unplaced task past ``placement_timeout`` or a task that
        failed to start is an error saying why (the service is then removed by the caller)."""
        interval = self.poll_interval
        placed_by = time.monotonic() + self.placement_timeout
        started_by = time.monotonic() + self.start_timeout
        while True:
            task = container.task()
            status = (task or {}).get("Status") or {}
            state = str(status.get("State") or "new")
            if state == "running" or state in ("complete",):
                return task or {}
            if state in DONE_STATES:
                error = status.get("Err") or status.get("Message") or state
                if _container_id(task) is None:
                    raise EngineRefusedError(
                        f"the swarm could not start the task of service {container.short_id}: {error}"
                    )
                return task or {}
            now = time.monotonic()
            if state in ("new", "pending") and now > placed_by:
                asked = [*self.constraints, *(resources.constraints or ())]
                constraints = self._service_constraints(container.id, asked)
                problem = self._placement_problem(resources, constraints) or (
                    "the nodes have the capacity, but other tasks hold it"
                )
                if len(constraints) > len(asked):  # the sync's own: the nodes of the nodes table only
                    problem += self._synced_nodes_note()
                raise EngineRefusedError(
                    f"no node of the swarm took the task within {format_duration(self.placement_timeout)} "
                    f"({status.get('Err') or state}): {problem}"
                )
            if now > started_by:
                raise EngineRefusedError(
                    f"the task of service {container.short_id} did not start within "
                    f"{format_duration(self.start_timeout)} ({state}: {status.get('Err') or status.get('Message')})"
                )
            time.sleep(interval)
            interval = min(0.5, interval * 1.2)

    def _task_state(self, task: Mapping[str, Any]) -> ContainerState:
        status = task.get("Status") or {}
        state = str(status.get("State") or "new")
        code = (status.get("ContainerStatus") or {}).get("ExitCode")
        node_id = str(task.get("NodeID") or "")
        if state in PENDING_STATES:
            return ContainerState("created")
        # A task that ran and was then rejected (Swarm's constraint enforcer, as its node went down: "assigned node
        # no longer meets constraints") or orphaned lost its node as much as one Swarm still says runs there. Its
        # ContainerStatus keeps the ExitCode 0 it had while running (seen on the real swarm): the container never
        # reported an exit, so that 0 is no exit code.
        ended_with_node = state in ("rejected", "orphaned") and _container_id(task) is not None
        if state in ("rejected", "orphaned"):
            code = None

        if state == "running" or ended_with_node:
            node_state = self._node_state(node_id, max_age=0 if ended_with_node else 2.0)
            if node_state != "ready":
                name = self.node_name(node_id)
                if self._lost is None:
                    self._lost = {}
                container_labels = ((task.get("Spec") or {}).get("ContainerSpec") or {}).get("Labels") or {}
                self._lost[str(task.get("ServiceID") or "")] = (name, dict(container_labels))
                return ContainerState(
                    "dead",
                    exit_code=-1,
                    reason=f"the swarm node {name} it ran on is {node_state} (its engine or machine stopped)",
                )
            if state == "running":
                return ContainerState("running")
        oom = False
        if code == 137 and self.node_engines and _container_id(task):
            try:
                found = DockerContainer(self.node_backend(self.node_name(node_id)), _container_id(task) or "").state()
                oom = found.oom_killed
            except ContainersError:
                oom = False
        reason = ""
        if state in ("rejected", "orphaned") or (state == "failed" and code is None):
            reason = f"the swarm reports its task {state}: {status.get('Err') or status.get('Message') or ''}".strip()
        return ContainerState("exited", exit_code=int(code) if code is not None else -1, oom_killed=oom, reason=reason)

    def _node_state(self, node_id: str, *, max_age: float = 2.0) -> str:
        node = next((n for n in self._raw_nodes(max_age=max_age) if n.get("ID") == node_id), None)
        return str(((node or {}).get("Status") or {}).get("State") or "ready")

    def lost_node(self, labels: Mapping[str, str]) -> str | None:
        """The host name of the node that went down under the running task of a service with ``labels``, as
        this backend saw it (the reason that task was dead); None when none did. What rescheduling a notebook
        job asks (:meth:`ContainersManager.execute`): the job's kernel is a service labelled by its attempt."""
        for name, found in (self._lost or {}).values():
            if all(found.get(k) == v for k, v in labels.items()):
                return name
        return None

    def _service_logs(self, service_id: str, *, tail: int | None = None) -> str:
        return self._service_log_bytes(service_id, tail=tail).decode("utf-8", "replace")

    def _service_log_bytes(self, service_id: str, *, tail: int | None = None) -> bytes:
        return b"".join(data for stream, data in self._service_log_frames(service_id, tail=tail) if stream != SYSERR)

    def _service_log_frames(
        self, service_id: str, *, follow: bool = False, tail: int | None = None
    ) -> Iterator[tuple[int, bytes]]:
        """The service's log as ``(STDOUT or STDERR, bytes)`` frames (:func:`log_frames`); ``follow``: as they
        come, until the service is removed. The same request as docker-py's ``service_logs``, read raw so that
        each frame's stream id is kept."""
        api = self.api
        params = {
            "details": False,
            "follow": follow,
            "stdout": True,
            "stderr": True,
            "since": 0,
            "timestamps": False,
            "tail": "all" if tail is None else int(tail),
        }

        def get() -> Any:
            response = api._get(api._url("/services/{0}/logs", service_id), params=params, stream=True)
            api._raise_for_status(response)
            return response

        response = self._call(f"reading the log of service {service_id[:12]}", get)
        if follow:
            api._disable_socket_timeout(api._get_raw_response_socket(response))
        try:
            yield from log_frames(response.raw)
        finally:
            response.close()

    # ------------------------------------------------------------------ ContainerBackend
    def create(self, request: RunRequest) -> SwarmContainer | DockerContainer:  # type: ignore[override]
        if _on_manager(request):
            return super().create(request)
        return SwarmContainer(self, request.name or "(not created yet)", self._checked(request))

    def _checked(self, request: RunRequest) -> RunRequest:
        """``request`` once its spec is known to be valid: bad requests fail before anything is created."""
        service_spec(
            request,
            image=request.image,
            user=self.container_user(),
            constraints=list(self.constraints),
            gpu_resource=self.gpu_resource,
            target=self.target_name,
        )
        return request

    def container(self, container_id: str) -> SwarmContainer:  # type: ignore[override]
        found = self._call(f"looking up service {container_id[:12]}", self.api.inspect_service, container_id)
        return SwarmContainer(self, str(found["ID"]))

    def run(
        self,
        request: RunRequest,
        *,
        stdout: OutputCallback | None = None,
        stderr: OutputCallback | None = None,
    ) -> RunResult:
        if _on_manager(request):
            return super().run(request, stdout=stdout, stderr=stderr)
        started = time.monotonic()
        sync = self.syncs_workspace(request)
        request = _named(self._checked(request))
        # Unchanged since every node it may land on last got it: the command starts with its task (as in start()).
        current = sync and self._workspace_current(request)
        container = SwarmContainer(self, self._create_service(request, sync=sync, synced=current))
        container.request = request
        # The output is followed from the service's creation on, while the task is still being placed.
        follower = _LogFollower(self, container.id, stdout, stderr)
        try:
            follower.start()
            task = self._wait_placed(container, request.resources)
            self._placed(container, task, sync=sync, current=current)
            exit_code = container.wait(request.resources.timeout)
            if exit_code is None:
                raise RunTimeoutError(
                    f"the command ran longer than its {format_duration(request.resources.timeout or 0)} timeout and "
                    "was killed; raise --timeout (or resources.timeout in the spec) if it needs longer",
                    exit_code=124,
                )
            follower.finish()
            state = container.state()
            if state.reason:
                raise EngineRefusedError(f"the run on the swarm failed: {state.reason}")
            # The task ended: its /workspace changes come back now (an out-of-memory kill's too); a failure to
            # bring them back fails the run, as on a remote engine.
            self._bring_back(container, quiet=False)
            limit = request.resources.memory
            if exit_code == 137 and limit and (state.oom_killed or not self.node_engines):
                likely = "" if state.oom_killed else " (exit code 137 under a memory limit: almost surely)"
                raise OutOfMemoryError(
                    f"the container ran out of its {format_size(limit)} memory limit and was killed{likely} "
                    f"(exit code {exit_code}); raise --memory (or resources.memory in the spec)",
                    exit_code=exit_code,
                )
            return RunResult(exit_code=exit_code, seconds=time.monotonic() - started, container_id=container.id)
        finally:
            follower.stop()
            container.remove()

    def list_containers(self, *, all: bool = False, labels: Mapping[str, str] | None = None) -> list[ContainerInfo]:
        wanted = [MANAGED_LABEL, *(f"{k}={v}" for k, v in (labels or {}).items())]
        services = self._call("listing services", self.api.services, filters={"label": wanted})
        out = []
        for service in services:
            spec = service.get("Spec") or {}
            handle = SwarmContainer(self, str(service["ID"]))
            task = handle.task()
            state = self._task_state(task) if task else ContainerState("created")
            if not all and not state.running:
                continue
            image = ((spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}).get("Image") or ""
            out.append(
                ContainerInfo(
                    id=str(service["ID"]),
                    name=str(spec.get("Name") or ""),
                    image=image.split("@", 1)[0],
                    state=state.status,
                    status=str(((task or {}).get("Status") or {}).get("State") or ""),
                    labels=spec.get("Labels") or {},
                    created=None,
                    node=self.node_name(str((task or {}).get("NodeID") or "")) if task else None,
                )
            )
        return out

    def remove_container(self, container_id: str) -> None:
        """The service, then its secrets (the files put before its start)."""
        try:
            found = self._call(f"looking up service {container_id[:12]}", self.api.inspect_service, container_id)
            held = ((found.get("Spec") or {}).get("TaskTemplate") or {}).get("ContainerSpec", {}).get("Secrets")
            self._call(f"removing service {container_id[:12]}", self.api.remove_service, container_id)
        except NotFoundError:
            super().remove_container(container_id)  # a build's probe container on the manager's engine
            return
        self._remove_secrets([str(s["SecretID"]) for s in held or () if s.get("SecretID")])

    def usage(self, container_ids: Sequence[str]) -> dict[str, Usage]:
        """Through the engine of each task's node when it is configured (``node_engines``), else nothing."""
        out: dict[str, Usage] = {}
        for service_id in container_ids:
            handle = SwarmContainer(self, service_id)
            try:
                target = handle.node_container()
                figures = target.backend.usage([target.id])
            except ContainersError:
                continue
            if target.id in figures:
                out[service_id] = figures[target.id]
        return out
