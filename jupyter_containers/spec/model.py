"""The normalized spec: frozen dataclasses every front end and the builder share.

Values are already validated and converted (sizes in bytes, durations in seconds), so code past the
parser never re-checks user input.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..units import format_duration, format_size

#: ``gpus``: a count, every GPU ("all"), or explicit device ids (indexes, ``GPU-…`` UUIDs, ``MIG-…`` ids).
Gpus = int | str | tuple[str, ...]


@dataclass(frozen=True)
class Resources:
    """Run-time limits. ``None`` means "not set here", so layers (spec defaults, then per-run
    overrides) combine with :meth:`merged`."""

    # ``flags``/``help`` describe the field to front ends: the CLI, the magics and the widgets derive their
    # limit options from these (jupyter_containers.frontend), so a new limit is added here once.
    cpus: float | None = field(default=None, metadata={"flags": ("--cpus",), "help": "number of CPUs, e.g. 1.5"})
    memory: int | None = field(
        default=None, metadata={"flags": ("-m", "--memory"), "help": "memory limit, e.g. 512m or 4GiB"}
    )
    memory_swap: int | None = field(
        default=None,
        metadata={
            "flags": ("--memory-swap",),
            "help": "memory + swap limit (default: same as --memory, i.e. no swap); -1: unlimited",
        },
    )
    gpus: Gpus | None = field(
        default=None,
        metadata={
            "flags": ("--gpus",),
            "help": "GPUs: a count, 'all', or device ids: indexes such as '0,2', GPU UUIDs (GPU-…), MIG ids (MIG-…)",
        },
    )
    shm_size: int | None = field(default=None, metadata={"flags": ("--shm-size",), "help": "size of /dev/shm, e.g. 1g"})
    pids: int | None = field(default=None, metadata={"flags": ("--pids-limit",), "help": "maximum number of processes"})
    timeout: float | None = field(
        default=None,
        metadata={"flags": ("--timeout",), "help": "wall-clock limit, e.g. 90s, 30m; the container is killed after it"},
    )
    network: bool | None = field(
        default=None,
        metadata={"flags": ("--network",), "choices": ("bridge", "none"), "help": "bridge (default) or none"},
    )
    constraints: tuple[str, ...] | None = field(
        default=None,
        metadata={
            "flags": ("--constraint",),
            "action": "append",
            "help": "swarm targets: a placement constraint such as node.labels.gpu==a100 (repeatable); "
            "ignored on a single engine",
        },
    )

    def merged(self, override: Resources | None) -> Resources:
        """These defaults with every field that ``override`` sets taking precedence."""
        if override is None:
            return self
        changes = {f.name: getattr(override, f.name) for f in fields(self) if getattr(override, f.name) is not None}
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (bytes and seconds), omitting unset fields."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def describe(self) -> str:
        """One line for logs and kernel names: ``2 CPUs, 4 GiB, 1 GPU, no network``."""
        parts = []
        if self.cpus is not None:
            parts.append(f"{self.cpus:g} CPU" + ("" if self.cpus == 1 else "s"))
        if self.memory is not None:
            parts.append(format_size(self.memory))
        if self.gpus is not None and self.gpus != 0:
            if self.gpus == "all":
                parts.append("all GPUs")
            elif isinstance(self.gpus, tuple):
                parts.append("GPU " + ",".join(self.gpus))
            else:
                parts.append(f"{self.gpus} GPU" + ("" if self.gpus == 1 else "s"))
        if self.shm_size is not None:
            parts.append(f"shm {format_size(self.shm_size)}")
        if self.pids is not None:
            parts.append(f"{self.pids} pids")
        if self.timeout is not None:
            parts.append(f"timeout {format_duration(self.timeout)}")
        if self.network is False:
            parts.append("no network")
        return ", ".join(parts) if parts else "no limits"


def _frozen_env(value: Mapping[str, str] | None) -> Mapping[str, str]:
    return MappingProxyType(dict(sorted((value or {}).items())))


@dataclass(frozen=True)
class Environment:
    """One named environment of a spec file.

    ``requirements`` and ``find_links`` are paths relative to ``spec_dir``; ``source`` is the spec file it
    came from, kept so errors and locks can point back at it.
    """

    name: str
    base: str | None = None
    python: str | None = None
    pip: tuple[str, ...] = ()
    apt: tuple[str, ...] = ()
    requirements: tuple[str, ...] = ()
    #: Folders whose ``*.whl`` files uv may install from besides the index (private or prebuilt wheels).
    find_links: tuple[str, ...] = ()
    post_build: tuple[str, ...] = ()
    #: Build steps run as root (before ``post_build``, which runs as the environment's user).
    post_build_root: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=lambda: _frozen_env(None))
    resources: Resources = field(default_factory=Resources)
    description: str | None = None
    source: Path | None = None
    #: The ``[targets.NAME]`` it runs on unless a run names another (None: the configured engine).
    target: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.env, MappingProxyType):
            object.__setattr__(self, "env", _frozen_env(self.env))

    @property
    def spec_dir(self) -> Path:
        return self.source.parent if self.source else Path.cwd()

    def to_dict(self) -> dict[str, Any]:
        """The TOML/JSON shape of this environment (as written in ``containers.toml``)."""
        out: dict[str, Any] = {}
        if self.description:
            out["description"] = self.description
        if self.base:
            out["base"] = self.base
        if self.python:
            out["python"] = self.python
        for key in ("pip", "apt", "requirements", "find_links", "post_build", "post_build_root"):
            value = getattr(self, key)
            if value:
                out[key] = list(value)
        if self.env:
            out["env"] = dict(self.env)
        resources = self.resources.to_dict()
        if resources:
            out["resources"] = resources
        if self.target:
            out["target"] = self.target
        return out


@dataclass(frozen=True)
class Target:
    """One ``[targets.NAME]`` table: a Docker engine to run on (see docs/remote.md).

    ``engine`` is an address (``ssh://``, ``tcp://``, ``unix://``) or None with ``context`` (a Docker CLI
    context); TLS paths are absolute (resolved against the spec's folder); ``workspace`` is ``"sync"``,
    ``"mount"``, an absolute path on the engine's host, or None (``mount`` for local engines, else ``sync``).
    """

    name: str
    engine: str | None = None
    context: str | None = None
    kind: str = "docker"
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_verify: bool = True
    workspace: str | None = None
    kernel_address: str | None = None
    description: str | None = None
    # kind = "kubernetes" (docs/scale-out.md): ``context`` is then a kubeconfig context.
    #: The namespace Pods and Jobs are created in (None: "default").
    namespace: str | None = None
    #: ``HOST[:PORT]/REPO`` the target's nodes pull images from (images are pushed there first).
    registry: str | None = None
    #: The ``[targets.NAME]`` (a Docker engine) images are built on; None: the configured engine.
    builder: str | None = None
    #: nodeSelector / tolerations / affinity / imagePullSecrets of every Pod, as the Kubernetes API writes them.
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    affinity: Mapping[str, Any] = field(default_factory=dict)
    image_pull_secrets: tuple[str, ...] = ()
    #: The extended resource GPUs are requested as (None: ``nvidia.com/gpu``).
    gpu_resource: str | None = None
    #: A PersistentVolumeClaim mounted at /workspace (None: an emptyDir that goes with the Pod).
    workspace_claim: str | None = None
    # kind = "swarm" (docs/scale-out.md): ``engine``/``context`` is a manager's; ``registry`` as above.
    #: Placement constraints of every service, such as ``node.labels.gpu==a100``.
    constraints: tuple[str, ...] = ()
    #: Node host name → that node's engine address (files into and out of running tasks, interrupts).
    nodes: Mapping[str, str] = field(default_factory=dict)
    #: The generic resource kind the swarm's nodes advertise GPUs as (None: ``NVIDIA-GPU``).
    generic_resource: str | None = None
    #: A notebook job whose node goes down is run again from the start on another node (once).
    reschedule_on_node_failure: bool = False


@dataclass(frozen=True)
class SpecFile:
    """A parsed ``containers.toml`` (or the ``[tool.jupyter-containers]`` table of ``pyproject.toml``)."""

    path: Path
    environments: Mapping[str, Environment]
    #: ``registry = "HOST/REPO"`` at the top of the file: where the team's environment images are shared.
    registry: str | None = None
    #: ``[targets.NAME]`` tables: where environments may run.
    targets: Mapping[str, Target] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "environments", MappingProxyType(dict(self.environments)))
        object.__setattr__(self, "targets", MappingProxyType(dict(self.targets)))

    @property
    def lock_path(self) -> Path:
        return self.path.parent / "containers.lock"
