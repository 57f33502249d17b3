"""The container-engine interface the core talks to.

Front ends, the builder, kernels and jobs depend on this interface only: a backend hands out typed
results and :class:`Container` handles and never lets the engine library's types or exceptions through.
Another engine (a Swarm, Kubernetes) is one module with a :class:`ContainerBackend` subclass plus one
entry point in the ``jupyter_containers.backends`` group.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from traitlets.config import LoggingConfigurable

from ..spec.model import Resources

if TYPE_CHECKING:  # an annotation only: the usage module is not needed to build or run
    from ..usage import GpuDevice

#: The entry point group backends register in (``docker`` is ours; Swarm and Kubernetes come the same way).
BACKENDS_GROUP = "jupyter_containers.backends"
LABEL_PREFIX = "io.jupyter.containers"
MANAGED_LABEL = f"{LABEL_PREFIX}.managed"


def labels(**values: str) -> dict[str, str]:
    """Our labels, so that listing and pruning only ever touch what we created.

    ``labels(env="x")`` → ``{"io.jupyter.containers.managed": "true", "io.jupyter.containers.env": "x"}``.
    """
    out = {MANAGED_LABEL: "true"}
    out.update({f"{LABEL_PREFIX}.{k.replace('_', '-')}": v for k, v in values.items()})
    return out


def owner_labels() -> dict[str, str]:
    """Which user's process on which host created a container: listings are scoped to the user, and prune
    removes the container once that process is gone."""
    import os

    return {"owner_pid": str(os.getpid()), "owner_host": os.uname().nodename, "owner_uid": str(os.getuid())}


@dataclass(frozen=True)
class BuildEvent:
    """One thing that happened during a build, in the order it happened.

    ``kind`` is ``"step"`` (a Dockerfile step started; ``text`` is its name), ``"done"`` (a step
    finished; ``cached`` tells whether it was a cache hit) or ``"log"`` (a line the step printed).
    ``index``/``total`` place the step among the Dockerfile's steps when known.
    """

    kind: str
    step: str
    text: str = ""
    index: int | None = None
    total: int | None = None
    cached: bool = False
    stream: str = "stdout"

    @property
    def title(self) -> str:
        """The step as a person reads it: ``[4/7] RUN uv pip install …`` without mount flags and build env."""
        return step_title(self.text or self.step)


_MOUNT_RE = re.compile(r"\s--mount=\S+")
_ENV_PREFIX_RE = re.compile(r"\benv (?:[A-Z_]+=\S+ )+")
_STAGE_RE = re.compile(r"^\[stage-\d+ ")


def step_title(name: str) -> str:
    name = _STAGE_RE.sub("[", name)
    name = _MOUNT_RE.sub("", name)
    name = _ENV_PREFIX_RE.sub("", name)
    return name.replace("/tmp/jupyter-containers/bin/uv", "uv").replace("/tmp/jupyter-containers/", "")


@dataclass(frozen=True)
class Mount:
    """A host folder (``type="bind"``) or a named engine volume (``type="volume"``, ``source`` its name)."""

    source: Path | str
    target: str
    read_only: bool = False
    type: str = "bind"


@dataclass(frozen=True)
class RunRequest:
    """What to run and under which limits; every field here has already been validated."""

    image: str
    command: Sequence[str] = ()
    resources: Resources = field(default_factory=Resources)
    mounts: Sequence[Mount] = ()
    environment: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    working_dir: str | None = None
    name: str | None = None
    entrypoint: Sequence[str] | None = None
    #: Container TCP ports published on the engine's host (at ``publish_address``, on ports it picks).
    publish: Sequence[int] = ()
    publish_address: str = "127.0.0.1"


@dataclass(frozen=True)
class RunResult:
    """How a command run to completion ended: its exit code, how long it took, the container it ran in."""

    exit_code: int
    seconds: float
    container_id: str


OutputCallback = Callable[[bytes], None]
ProgressCallback = Callable[[str], None]


# ---------------------------------------------------------------------- typed results
@dataclass(frozen=True)
class ImageInfo:
    """One of our images as the engine lists it."""

    id: str
    tags: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    size: int | None = None
    created: float | None = None

    def label(self, name: str, default: str | None = None) -> str | None:
        """``label("env")`` reads ``io.jupyter.containers.env``."""
        return self.labels.get(f"{LABEL_PREFIX}.{name}", default)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tags": list(self.tags),
            "labels": dict(self.labels),
            "size": self.size,
            "created": self.created,
        }


@dataclass(frozen=True)
class ContainerInfo:
    """One of our containers as the engine lists it (``state``: created, running, exited, dead, …)."""

    id: str
    name: str
    image: str
    state: str
    status: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    created: float | None = None
    mounts: tuple[str, ...] = ()
    #: The :attr:`NodeInfo.name` of the node it runs on; None: the backend's only node (a single engine).
    node: str | None = None

    def label(self, name: str, default: str | None = None) -> str | None:
        return self.labels.get(f"{LABEL_PREFIX}.{name}", default)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "image": self.image,
            "state": self.state,
            "status": self.status,
            "labels": dict(self.labels),
            "created": self.created,
            "mounts": list(self.mounts),
            "node": self.node,
        }


@dataclass(frozen=True)
class SecretInfo:
    """One of our engine secrets (a Swarm kernel's connection file travels in one); ``created``: epoch seconds."""

    id: str
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    created: float | None = None

    def label(self, name: str, default: str | None = None) -> str | None:
        return self.labels.get(f"{LABEL_PREFIX}.{name}", default)


@dataclass(frozen=True)
class ContainerState:
    """What a container is doing now; ``status`` is ``"removed"`` once the engine no longer has it."""

    status: str
    exit_code: int | None = None
    oom_killed: bool = False
    #: Why it stopped when the engine knows better than an exit code (a Swarm node that went down), else "".
    reason: str = ""
    #: Stopped for running past its time limit by the engine itself (a Kubernetes activeDeadlineSeconds).
    timed_out: bool = False

    @property
    def running(self) -> bool:
        return self.status in ("created", "running", "restarting", "paused")


@dataclass(frozen=True)
class Usage:
    """Live usage of one container; ``None`` fields could not be read.

    ``gpus``: the engine host's figures for each GPU the container was given (utilization %, memory used of
    total, per device; a GPU shared by two containers shows the same device figures in both), empty when it
    has none or the host's GPUs cannot be read.
    """

    cpu_percent: float | None = None
    memory_used: int | None = None
    memory_limit: int | None = None
    pids: int | None = None
    gpus: tuple[GpuDevice, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "cpu_percent": self.cpu_percent,
            "memory_used": self.memory_used,
            "memory_limit": self.memory_limit,
            "pids": self.pids,
            "gpus": [asdict(g) for g in self.gpus],
        }


@dataclass(frozen=True)
class EngineInfo:
    """The engine's identity and capacity, as ``jupyter-containers engine`` and ``GET /engine`` show it."""

    kind: str
    version: str | None
    api_version: str | None
    address: str
    os: str | None = None
    architecture: str | None = None
    storage_driver: str | None = None
    cgroup_version: str | None = None
    cpus: int | None = None
    memory: int | None = None
    runtimes: tuple[str, ...] = ()
    gpu_runtimes: tuple[str, ...] = ()
    cdi_devices: tuple[str, ...] = ()
    #: Whether the engine grants GPU requests (``--gpus``): True, False, or None when it could not be told.
    gpu: bool | None = None
    #: How it grants them, e.g. ``("nvidia device driver",)``, ``("nvidia runtime", "CDI")``.
    gpu_support: tuple[str, ...] = ()
    #: Why not, or what the check saw, for people (empty when there is nothing to add).
    gpu_note: str = ""

    @property
    def gpu_summary(self) -> str:
        """The one line every front end shows (CLI ``engine``, ``GET /engine``, sidebar, widgets)."""
        if self.gpu:
            return "yes (" + ", ".join(self.gpu_support) + ")" if self.gpu_support else "yes"
        if self.gpu is None:
            return f"unknown ({self.gpu_note})" if self.gpu_note else "unknown"
        return "none (install the NVIDIA Container Toolkit on the engine's host for --gpus" + (
            f"; {self.gpu_note})" if self.gpu_note else ")"
        )

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        for key in ("runtimes", "gpu_runtimes", "cdi_devices", "gpu_support"):
            out[key] = list(out[key])
        out["gpu_summary"] = self.gpu_summary
        return out


@dataclass(frozen=True)
class NodeInfo:
    """One machine a backend places containers on: a single engine is one node, a swarm or a cluster many.

    Sweeps bound how many jobs run at once by what the nodes can hold, and utilization is summed per node,
    so both work the same on every target. ``cpus`` in CPUs, ``memory`` in bytes (0 when unknown), ``gpus``
    the GPUs the node offers to containers, ``state`` as the engine says (``ready``, ``down``, …).
    """

    name: str
    address: str | None
    cpus: float
    memory: int
    gpus: int
    state: str
    labels: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "address": self.address,
            "cpus": self.cpus,
            "memory": self.memory,
            "gpus": self.gpus,
            "state": self.state,
            "labels": dict(self.labels),
        }


@dataclass(frozen=True)
class EngineEvent:
    """Something changed in the engine: ``type`` ``image`` or ``container``, ``action`` as the engine says."""

    type: str
    action: str
    id: str = ""


# ---------------------------------------------------------------------- the container handle
class Container(ABC):
    """A handle on one container of the engine: all the core ever holds of a container.

    Engine-neutral on purpose (repo2docker's ``engine.Container``): kernels, sessions and jobs use only
    these methods, so another backend is a new subclass and nothing else. Methods never raise the
    engine library's own exceptions: the backend maps them to ours.
    """

    id: str

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @abstractmethod
    def start(self) -> None:
        """Start the created container.

        Raises:
            GpuUnavailableError, EngineRefusedError, NotFoundError.
        """

    @abstractmethod
    def wait(self, timeout: float | None = None) -> int | None:
        """Block until the container exits and return its exit code; None when ``timeout`` passed first."""

    @abstractmethod
    def kill(self, signum: int = 9) -> None:
        """Send ``signum`` to the container's main process; nothing happens when it no longer runs."""

    @abstractmethod
    def state(self) -> ContainerState:
        """Status, exit code and whether the kernel killed it for memory (``status="removed"`` when gone)."""

    @abstractmethod
    def logs(self, *, tail: int | None = None) -> str:
        """The container's output (stdout and stderr together), the last ``tail`` lines when given."""

    @abstractmethod
    def remove(self) -> None:
        """Stop and remove the container; nothing happens when it is already gone."""

    @abstractmethod
    def put_files(self, directory: str, files: Mapping[str, bytes]) -> None:
        """Write ``{relative name: content}`` into ``directory`` inside the container."""

    @abstractmethod
    def get_file(self, path: str) -> bytes:
        """The content of the file ``path`` inside the container.

        Raises:
            NotFoundError: there is no such file.
        """

    def put_archive(self, directory: str, data: bytes | IO[bytes]) -> None:
        """Unpack the tar ``data`` (bytes, or a file read from its position) into ``directory`` inside the
        container (owners and modes as in the tar)."""
        raise NotImplementedError

    def get_archive(self, path: str) -> Iterator[bytes]:
        """A tar of ``path`` (a file or a folder) inside the container, in chunks.

        Raises:
            NotFoundError: there is no such path.
        """
        raise NotImplementedError

    def published_ports(self) -> dict[int, int]:
        """``{container port: engine-host port}`` of the ports the request published (started container)."""
        raise NotImplementedError

    def exec_stream(self, command: Sequence[str]) -> Any:
        """A connected socket of ``command`` run in the started container over the engine's own connection:
        what is sent is its stdin; what arrives is its stdout and stderr in the engine's 8-byte-header frames
        (``1``/``2``, 3 zero bytes, a big-endian length). The kernel relay of ``--network none`` kernels on
        remote engines uses it (kernel/relay.py)."""
        raise NotImplementedError


# ---------------------------------------------------------------------- the backend
class ContainerBackend(LoggingConfigurable):
    """A container engine: builds images and runs containers with resource limits.

    The only way the core reaches an engine. Backends are found by name in the ``jupyter_containers.backends``
    entry point group (see :func:`backend_class`) and built with ``parent=`` so they read the same config.
    Every engine failure leaves a backend as one of our errors (``NotFoundError``, ``ConflictError``,
    ``EngineUnavailableError``, ``EngineRefusedError``, ``GpuUnavailableError``, ``BuildError``,
    ``RunError``): front ends map those once, never the engine library's exceptions.
    """

    #: The entry point name this backend is registered under.
    kind = "abstract"

    @property
    def address(self) -> str:
        """Where the engine is (``unix:///var/run/docker.sock``, ``ssh://gpu-box``); identifies it in locks."""
        raise NotImplementedError

    @property
    def is_local(self) -> bool:
        """Whether the engine runs on this host (host paths can be bind-mounted, cgroups read)."""
        raise NotImplementedError

    def container_user(self) -> str:
        """``uid:gid`` that containers run as (never root); files shared with containers are made theirs."""
        raise NotImplementedError

    def run_defaults(self, resources: Resources) -> Resources:
        """``resources`` with what this backend gives a run by default filled in (e.g. /dev/shm for GPUs)."""
        return resources

    # ------------------------------------------------------------------ engine
    def engine_info(self) -> EngineInfo:
        """Version, storage driver, GPU runtimes… Raises EngineUnavailableError when unreachable."""
        raise NotImplementedError

    def nodes(self) -> list[NodeInfo]:
        """The machines this backend places containers on (a multi-node backend lists each of its nodes).

        By default the engine itself is the one node, its capacity from :meth:`engine_info`; ``gpus`` is 0
        here because the engine does not count its GPUs (a backend that can count them overrides this).
        Raises EngineUnavailableError when unreachable.
        """
        info = self.engine_info()
        return [
            NodeInfo(
                name=_node_name(info.address),
                address=info.address,
                cpus=float(info.cpus or 0),
                memory=int(info.memory or 0),
                gpus=0,
                state="ready",
                labels={},
            )
        ]

    # ------------------------------------------------------------------ images
    def image_id(self, reference: str) -> str | None:
        """The id of a local image, or None when the engine has no such image."""
        raise NotImplementedError

    def image_labels(self, reference: str) -> dict[str, str]:
        """The labels of an image. Raises NotFoundError when the engine has no such image."""
        raise NotImplementedError

    def list_images(self) -> list[ImageInfo]:
        """Our images (those labelled ``io.jupyter.containers.managed``)."""
        raise NotImplementedError

    def remove_image(self, reference: str) -> None:
        """Remove an image; nothing happens when it is gone. Raises ConflictError while it is in use."""
        raise NotImplementedError

    def tag_image(self, image: str, reference: str) -> None:
        """Point ``reference`` (``repo:tag``) at ``image`` in one step."""
        raise NotImplementedError

    def pull(self, reference: str, *, on_progress: ProgressCallback | None = None) -> str:
        """Pull ``reference`` and return its image id.

        Raises:
            NotFoundError: the registry has no such image; EngineRefusedError: any other registry failure.
        """
        raise NotImplementedError

    def push(self, reference: str, *, on_progress: ProgressCallback | None = None) -> str:
        """Push ``reference`` to its registry and return the digest the registry gave it."""
        raise NotImplementedError

    def import_image(self, stream: IO[bytes], *, changes: Sequence[str] = ()) -> str:
        """Create an untagged image from a root filesystem tar read from ``stream``; returns its id."""
        raise NotImplementedError

    def save_images(self, references: Sequence[str], out: IO[bytes]) -> int:
        """Write ``references`` (tags, with their layers, shared layers once) as one ``docker save`` archive to
        ``out``; returns the bytes written. Loading it elsewhere gives the same image ids.

        Raises:
            NotFoundError: the engine has no image of one of those names.
        """
        raise NotImplementedError

    def load_images(self, stream: IO[bytes]) -> list[str]:
        """Load a ``docker save`` archive read from ``stream``; returns the ids of the images it held."""
        raise NotImplementedError

    def repo_digests(self, reference: str) -> list[str]:
        """``REPO@sha256:…`` digests a registry gave the image (empty when never pushed or pulled).

        Raises:
            NotFoundError: the engine has no such image.
        """
        raise NotImplementedError

    def image_created(self, reference: str) -> str | None:
        """When the image was built (ISO 8601, as the engine says), or None when it has no such image."""
        raise NotImplementedError

    def reload_credentials(self) -> None:
        """Read the registry credentials (Docker's config.json and its credential helpers) again, so that a
        ``docker login`` done since the backend was created is used by the next push or pull."""

    def build(
        self,
        context: bytes,
        *,
        tag: str,
        labels: Mapping[str, str],
        buildargs: Mapping[str, str],
        no_cache: bool = False,
    ) -> Iterator[BuildEvent]:
        """Build ``context`` (a tar with a Dockerfile) and tag it only on success.

        ``no_cache`` ignores cached layers (cache mounts such as uv's are kept).

        Raises:
            BuildError: naming the failing step and the last lines of its log.
        """
        raise NotImplementedError

    # ------------------------------------------------------------------ containers
    def create(self, request: RunRequest) -> Container:
        """Create (not start) a container for ``request``; the caller owns its removal."""
        raise NotImplementedError

    def container(self, container_id: str) -> Container:
        """A handle on an existing container. Raises NotFoundError when the engine has no such container."""
        raise NotImplementedError

    def run(
        self,
        request: RunRequest,
        *,
        stdout: OutputCallback | None = None,
        stderr: OutputCallback | None = None,
    ) -> RunResult:
        """Run to completion, streaming output, and remove the container.

        Raises:
            OutOfMemoryError, RunTimeoutError, GpuUnavailableError.
        """
        raise NotImplementedError

    def list_containers(self, *, all: bool = False, labels: Mapping[str, str] | None = None) -> list[ContainerInfo]:
        """Our containers (stopped ones too with ``all``), only those carrying every label in ``labels``."""
        raise NotImplementedError

    def remove_container(self, container_id: str) -> None:
        """Stop and remove a container; nothing happens when it is already gone."""
        raise NotImplementedError

    def usage(self, container_ids: Sequence[str]) -> dict[str, Usage]:
        """Live usage of running containers (those that cannot be read are left out)."""
        raise NotImplementedError

    def reach(self, host_port: int) -> tuple[str, int]:
        """Where this machine connects to a port the engine published on its host: ``(address, port)``
        (through an ssh tunnel for ssh:// engines)."""
        raise NotImplementedError

    def publish_address(self) -> str:
        """The engine-host address ports are published on: 127.0.0.1 when this machine reaches them through
        a tunnel (or is the engine's host), else every interface (kernel channels are CurveZMQ-encrypted)."""
        return "127.0.0.1"

    def release(self, host_port: int) -> None:
        """Forget what :meth:`reach` set up for ``host_port`` (an ssh forward); nothing happens otherwise."""

    def create_volume(self, name: str, *, labels: Mapping[str, str]) -> None:
        """Create a named volume with ``labels`` (a volume of that name may exist already)."""
        raise NotImplementedError

    def remove_volume(self, name: str) -> None:
        """Remove a named volume; nothing happens when it is gone."""
        raise NotImplementedError

    def list_volumes(self, labels: Mapping[str, str] | None = None, *, unused: bool = False) -> list[str]:
        """Names of our volumes carrying every label in ``labels`` (with ``unused``: only those that no
        container, running or stopped, has)."""
        raise NotImplementedError

    #: Whether a run or job whose node went down is run once more on another node (only a Swarm's nodes can go
    #: down under a task; see :meth:`lost_node`).
    reschedule_on_node_failure: bool = False

    def lost_node(self, labels: Mapping[str, str]) -> str | None:
        """The host name of the node that went down under the task carrying ``labels``, as this backend saw it;
        None when none did (a single engine has no other node to lose)."""
        return None

    def list_secrets(self, labels: Mapping[str, str] | None = None, *, unused: bool = False) -> list[SecretInfo]:
        """Our secrets carrying every label in ``labels`` (with ``unused``: only those that no service holds).

        Only a backend that creates secrets has any (a Swarm's per-kernel connection files): none by default, so
        that ``prune`` can ask every backend."""
        return []

    def remove_secret(self, secret_id: str) -> None:
        """Remove one of our secrets; nothing happens when it is gone."""
        raise NotImplementedError

    def close(self) -> None:
        """Let go of connections (an ssh tunnel); the backend reconnects on its next call."""

    def events(self, *, types: Sequence[str] = ("image", "container")) -> Iterator[EngineEvent]:
        """The engine's events as they happen (blocking; ends when the connection does).

        Lets a long-running front end (the server) keep answers cached until something changed.
        """
        raise NotImplementedError


def _node_name(address: str) -> str:
    """The host part of an engine address (``ssh://me@gpu-box:22`` → ``gpu-box``); this host's name for a
    local socket, so that metrics and the sidebar name the machine rather than a socket path."""
    import os
    from urllib.parse import urlsplit

    parts = urlsplit(address)
    if parts.scheme in ("unix", "npipe", "") or not parts.hostname:
        return os.uname().nodename
    return parts.hostname


def backend_class(name: str) -> type[ContainerBackend]:
    """The backend registered as ``name`` in the ``jupyter_containers.backends`` entry point group.

    Raises:
        SpecError: no backend of that name is installed (the message lists those that are).
    """
    if name == "docker":
        # Built in, and our own distribution's entry point (which wins over any other package's) names this very
        # class: reading the installed distributions' metadata cost a command 0.05-0.1 s of its start-up.
        from .docker import DockerBackend

        return DockerBackend
    from importlib.metadata import PackageNotFoundError, distribution, entry_points

    from ..errors import SpecError

    # Our own distribution's entry points first: scanning every installed distribution costs ~20 ms, a tenth
    # of an unchanged `jupyter-containers build`; other packages' backends are found by the full scan.
    try:
        own = {ep.name: ep for ep in distribution("jupyter-containers").entry_points if ep.group == BACKENDS_GROUP}
    except PackageNotFoundError:
        own = {}
    found = own if name in own else {ep.name: ep for ep in entry_points(group=BACKENDS_GROUP)}
    if name not in found:
        known = ", ".join(sorted(found)) or "none"
        raise SpecError(
            f"no container backend named {name!r} is installed (installed: {known}); set "
            "c.ContainersManager.backend_name to one of them, or install the package that provides it"
        )
    cls = found[name].load()
    if not (isinstance(cls, type) and issubclass(cls, ContainerBackend)):
        raise SpecError(f"the backend entry point {name!r} ({found[name].value}) is not a ContainerBackend")
    return cls
