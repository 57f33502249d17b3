"""ContainersManager: the single entry point every front end (CLI, magics, server, provisioner) uses.

It ties a spec file to a backend and a builder, and owns the policy that must be identical everywhere:
how resources combine (spec defaults, then per-run overrides) and which host folders may be mounted.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from traitlets import Bool, Instance, List, Unicode, default
from traitlets.config import Config, LoggingConfigurable

from .backends.base import (
    ContainerBackend,
    ContainerInfo,
    EngineInfo,
    ImageInfo,
    Mount,
    RunRequest,
    RunResult,
    backend_class,
    labels,
    owner_labels,
)
from .errors import ContainersError, NotFoundError, RequestError, RunError, SpecError
from .images.builder import Builder, BuildResult, EventCallback
from .images.dockerfile import CA_TARGET, WORKSPACE
from .spec.model import Environment, Resources, SpecFile
from .spec.parse import find_spec_file, load_environment, load_spec


class ContainersManager(LoggingConfigurable):
    """Environments of one spec file, built and run on one backend."""

    backend_name = Unicode(
        "docker",
        config=True,
        help="The container backend, by its name in the 'jupyter_containers.backends' entry point group "
        "('docker': a Docker engine, local or remote). Per project in its jupyter_containers_config.py, "
        "per run with --backend.",
    )
    workspace = Unicode(
        None,
        allow_none=True,
        config=True,
        help="Host folder mounted read-write at /workspace. Unset: the folder of the spec file.",
    )
    allowed_mount_roots = List(
        Unicode(),
        config=True,
        help="Host folders outside the workspace that extra mounts may come from (none by default).",
    )
    mount_host_ca_bundle = Bool(
        True,
        config=True,
        help="Mount the host's CA bundle read-only into containers, so pip/requests work behind a TLS proxy.",
    )
    spec_path = Unicode(None, allow_none=True, help="The spec file; unset: found in the current directory.")
    target = Unicode(
        None,
        allow_none=True,
        config=True,
        help="The [targets.NAME] of the spec file to run on (--target). Unset: each environment's own target, "
        "else the configured engine (c.DockerBackend.base_url, DOCKER_HOST, the local socket).",
    )

    registry = Unicode(
        None,
        allow_none=True,
        config=True,
        help="The team registry (HOST[:PORT]/REPO) builds pull environment images from instead of building, and "
        "push/pull use (--registry). Unset: the target's registry =, else the spec file's registry =.",
    )

    backend = Instance(ContainerBackend)
    builder = Instance(Builder)

    def __init__(self, spec_path: str | os.PathLike | None = None, **kwargs: Any):
        if spec_path is not None:
            kwargs["spec_path"] = str(spec_path)
        super().__init__(**kwargs)

    @classmethod
    def discover(
        cls,
        spec_path: str | os.PathLike | None = None,
        *,
        search_from: Sequence[str | os.PathLike] = (),
        parent: Any = None,
        config: Config | None = None,
        **kwargs: Any,
    ) -> ContainersManager:
        """The one factory every front end (CLI, magics, kernels, jobs, widgets, server) gets a manager from.

        The spec file is ``spec_path``, else the first ``containers.toml`` / ``pyproject.toml`` found in
        ``search_from`` and then the current folder. Configuration is found once, in one order
        (:func:`~jupyter_containers.config.discover_config`): the host application's (``config``, else
        ``parent``'s) or else Jupyter's config path and the current folder, then the project's own file.

        Raises:
            SpecNotFoundError: no spec file was given and none was found (the message names the folders).
        """
        from .config import discover_config
        from .errors import SpecNotFoundError

        if spec_path is not None:
            path = Path(spec_path).expanduser().resolve()
            if not path.is_file():
                raise SpecNotFoundError(f"spec file {path} does not exist")
        else:
            folders = [*(Path(f) for f in search_from), Path.cwd()]
            found: Path | None = None
            for folder in dict.fromkeys(folders):
                try:
                    found = find_spec_file(folder).resolve()
                    break
                except SpecNotFoundError:
                    continue
            if found is None:
                shown = ", ".join(str(f) for f in dict.fromkeys(folders))
                raise SpecNotFoundError(
                    f"no containers.toml (or pyproject.toml with a [tool.jupyter-containers] table) in {shown}; "
                    "create one ('jupyter-containers import requirements.txt') or pass -f/--file PATH"
                )
            path = found
        base = config if config is not None else (parent.config if parent is not None else None)
        merged = discover_config(path.parent, base=base)
        return cls(spec_path=path, parent=parent, config=merged, **kwargs)

    @default("backend")
    def _default_backend(self) -> ContainerBackend:
        target = self.target_spec()
        if target is None:
            return backend_class(self.backend_name)(parent=self)
        from .targets import backend_settings

        return backend_class(target.kind)(parent=self, **backend_settings(target, self.spec().targets))

    # ------------------------------------------------------------------ targets
    def target_spec(self) -> Any:
        """The :class:`~jupyter_containers.spec.model.Target` this manager runs on (None: the configured engine).

        Raises:
            SpecError: ``target`` names no ``[targets.NAME]`` table of the spec file.
        """
        if not self.target:
            return None
        from .spec.parse import _did_you_mean

        spec = self.spec()
        found = spec.targets.get(self.target)
        if found is None:
            known = ", ".join(sorted(spec.targets)) or "none"
            raise SpecError(
                f"no target named {self.target!r}{_did_you_mean(self.target, spec.targets)} in {spec.path} "
                f"(defined: {known}); add a [targets.{self.target}] table with an engine, or pick another --target"
            )
        return found

    def for_target(self, name: str | None) -> ContainersManager:
        """A manager for the same spec file and workspace on the target ``name`` (this one when it is ours)."""
        if name is None or name == self.target:
            return self
        cache = self.__dict__.setdefault("_target_managers", {})
        if name not in cache:
            manager = ContainersManager(
                spec_path=self.spec_path,
                parent=self.parent,
                config=self.config,
                target=name,
                workspace=self.workspace,
                backend_name=self.backend_name,
                registry=self.registry,
            )
            manager.target_spec()  # an unknown name fails here, naming it
            cache[name] = manager
        return cache[name]

    def for_environment(self, name: str) -> ContainersManager:
        """The manager that runs ``name``: this one when a target was chosen (--target), else the one of the
        environment's own ``target =`` (if any)."""
        if self.target:
            return self
        env_target = self.environment(name).target
        return self.for_target(env_target) if env_target else self

    def workspace_mode(self) -> str:
        """``mount`` (bind-mount the folder), ``sync`` (a volume synced by manifest) or a path on the engine's
        host (a shared folder): how /workspace reaches this manager's containers."""
        from .targets import workspace_mode

        return workspace_mode(self.target_spec(), self.backend.address)

    def workspace_sync(self) -> Any:
        """The :class:`~jupyter_containers.workspace_sync.WorkspaceSync` of this workspace (``sync`` mode)."""
        if "_workspace_sync" not in self.__dict__:
            from .workspace_sync import WorkspaceSync

            self.__dict__["_workspace_sync"] = WorkspaceSync(self)
        return self.__dict__["_workspace_sync"]

    @default("builder")
    def _default_builder(self) -> Builder:
        return Builder(parent=self, backend=self.backend)

    # ------------------------------------------------------------------ specs
    def spec_file(self) -> Path:
        return Path(self.spec_path).resolve() if self.spec_path else find_spec_file().resolve()

    def spec(self) -> SpecFile:
        """Re-read on every call: specs are edited while servers and kernels keep running."""
        return load_spec(self.spec_file(), allowed_roots=self._reference_roots())

    def environment(self, name: str) -> Environment:
        return load_environment(name, self.spec_file(), allowed_roots=self._reference_roots())

    def _reference_roots(self) -> list[str]:
        """c.Builder.allowed_reference_roots, without creating the builder (and its backend) only to read it."""
        builder = self.builder if self.trait_has_value("builder") else Builder(parent=self)
        return list(builder.allowed_reference_roots)

    def workspace_dir(self) -> Path:
        return Path(self.workspace).resolve() if self.workspace else self.spec_file().parent

    # ------------------------------------------------------------------ build
    def build(
        self,
        name: str,
        *,
        locked: bool = False,
        on_event: EventCallback | None = None,
        registry: str | None = None,
        use_registry: bool = True,
    ) -> BuildResult:
        """Build ``name`` unless the engine has its image; with a registry (``registry``, else the spec file's
        ``registry =``) the image is pulled from it first when it is there (a team builds it once)."""
        # One read of the spec file for the routing (as for_environment), the environment and the registry check:
        # each read costs a parse and a validation, and share.registry's import is only for builds that have one.
        spec = self.spec()
        env = spec.environments[name] if name in spec.environments else self.environment(name)  # (its error)
        if not self.target and env.target:
            return self.for_target(env.target).build(
                name, locked=locked, on_event=on_event, registry=registry, use_registry=use_registry
            )
        pulled = None
        if use_registry and (registry or self.registry or self.target or spec.registry):  # see registry_of
            from .share.registry import pull_for_build

            pulled = pull_for_build(self, env, registry, locked=locked, on_event=on_event)
        result = self.builder.build(env, locked=locked, on_event=on_event)
        if pulled is not None:
            from dataclasses import replace

            result = replace(result, pulled=pulled.reference)
        return result

    def lock(self, name: str, *, on_event: EventCallback | None = None):
        """Build if needed, then record the lock from the image even when it is up to date."""
        return self.builder.build(self.environment(name), on_event=on_event, relock=True).lock

    # ------------------------------------------------------------------ run
    def resources(self, name: str, override: Resources | None = None) -> Resources:
        """The spec's defaults, then ``override``, then the backend's defaults for runs with GPUs (a roomy
        /dev/shm): what the container gets, so every front end's summary shows it."""
        routed = self.for_environment(name)
        if routed is not self:
            return routed.resources(name, override)
        return self.backend.run_defaults(self.environment(name).resources.merged(override))

    def mounts(self, extra: Sequence[tuple[str, str, bool]] = ()) -> list[Mount]:
        """The workspace mount plus validated extra mounts ``(host path, container path, read_only)``."""
        workspace = self.workspace_dir()
        mode = self.workspace_mode()
        if mode != "mount":
            return self._remote_mounts(mode, extra)
        mounts = [Mount(workspace, WORKSPACE)]
        roots = [workspace, *(Path(r).resolve() for r in self.allowed_mount_roots)]
        for host, target, read_only in extra:
            source = Path(host).expanduser()
            source = (workspace / source if not source.is_absolute() else source).resolve()
            if not any(source == root or root in source.parents for root in roots):
                raise RequestError(
                    f"mount source {host!r} ({source}) is outside the workspace {workspace}; mount a folder inside "
                    "it, or allow its parent with c.ContainersManager.allowed_mount_roots"
                )
            if not source.exists():
                raise RequestError(f"mount source {host!r} ({source}) does not exist")
            if not target.startswith("/") or ":" in target:
                raise RequestError(f"mount target {target!r} must be an absolute path inside the container")
            mounts.append(Mount(source, target, read_only))
        if self.mount_host_ca_bundle:
            from .images.hostconfig import find_ca_bundle

            ca = find_ca_bundle()
            if ca is not None:
                mounts.append(Mount(ca.resolve(), CA_TARGET, read_only=True))
        return mounts

    def _remote_mounts(self, mode: str, extra: Sequence[tuple[str, str, bool]]) -> list[Mount]:
        """The workspace of an engine that cannot see this machine's folders: its volume (``sync``) or the
        shared folder on the engine's host. Extra host mounts and the host's CA bundle cannot reach it."""
        if extra:
            where = self.target or self.backend.address
            raise RequestError(
                f"extra mounts (-v/--volume) need a local engine; the target {where!r} cannot see this machine's "
                "folders: put the files in the workspace (it is synced to /workspace) instead"
            )
        if mode == "sync":
            if self._syncs_per_node():
                # The swarm backend syncs the volume of the node each task lands on, once it is placed.
                from .workspace_sync import SwarmWorkspaces

                swarm: Any = self.backend
                hook = swarm.workspace_hook
                if not isinstance(hook, SwarmWorkspaces) or hook.manager is not self:
                    swarm.workspace_hook = SwarmWorkspaces(self)
            return [self.workspace_sync().mount()]
        if mode == "claim":  # a Kubernetes target's PersistentVolumeClaim (docs/scale-out.md)
            return [Mount(self.target_spec().workspace_claim, WORKSPACE, type="volume")]
        if mode == "none":  # a Kubernetes target without one: an empty folder that goes with the Pod
            return []
        return [Mount(Path(mode), WORKSPACE)]

    def _syncs_per_node(self) -> bool:
        """A swarm target in ``sync`` mode: each node has its volume, synced by the backend once a task is placed
        (:class:`~jupyter_containers.workspace_sync.SwarmWorkspaces`), not by :meth:`sync_up`/:meth:`sync_down`."""
        return getattr(self.backend, "kind", "") == "swarm"

    def sync_up(self, image: str) -> dict[str, Any] | None:
        """Send the workspace's changes to the engine's volume first (``sync`` mode; None otherwise, and on a
        swarm, where the backend does it on the task's node once Swarm placed it)."""
        if self.workspace_mode() != "sync" or self._syncs_per_node():
            return None
        return self.workspace_sync().up(image)

    def sync_down(self, image: str, *, warn: Callable[[str], None] | None = None) -> dict[str, Any] | None:
        """Bring back what the container wrote to /workspace (``sync`` mode; None otherwise, and on a swarm, where
        it comes back from the task's node when its service is removed)."""
        if self.workspace_mode() != "sync" or self._syncs_per_node():
            return None
        return self.workspace_sync().down(image, warn=warn)

    def live_sync(self, container: Any) -> Any:
        """A started :class:`~jupyter_containers.workspace_sync.LiveSync` bringing back what a running kernel or
        session in ``container`` writes (``sync`` mode; None otherwise): on a swarm, through the task's own
        container on its node, with that node's volume record."""
        from .workspace_sync import LiveSync

        if self.workspace_mode() != "sync":
            return None
        if not self._syncs_per_node():
            return LiveSync(self.workspace_sync(), container).start()
        if getattr(container, "synced", None) is None:
            return None  # not synced (a task that never got its workspace): nothing of it to bring back
        target = container.node_container()
        swarm: Any = self.backend
        return LiveSync(swarm.workspace_hook.for_node(container.node_name(), target.backend), target).start()

    def run(
        self,
        name: str,
        command: Sequence[str],
        *,
        resources: Resources | None = None,
        mounts: Sequence[tuple[str, str, bool]] = (),
        environment: Mapping[str, str] | None = None,
        locked: bool = False,
        on_event: EventCallback | None = None,
        stdout: Callable[[bytes], None] | None = None,
        stderr: Callable[[bytes], None] | None = None,
    ) -> tuple[BuildResult, Resources, RunResult]:
        """Build (if needed) and run ``command`` with the spec's resources overridden by ``resources``.

        On a ``sync`` target the workspace's changes go to the engine first and the files the command wrote
        come back after it, whatever its exit code. On a swarm target with ``reschedule_on_node_failure`` (or
        ``--reschedule``), a command whose node went down while it ran is run once more from the start on
        another node (its output so far stays written; ``on_event`` gets an ``info`` event saying so)."""
        routed = self.for_environment(name)
        if routed is not self:
            return routed.run(
                name,
                command,
                resources=resources,
                mounts=mounts,
                environment=environment,
                locked=locked,
                on_event=on_event,
                stdout=stdout,
                stderr=stderr,
            )
        build = self.build(name, locked=locked, on_event=on_event)
        effective = self.resources(name, resources)
        request = RunRequest(
            image=build.image,
            command=list(command),
            resources=effective,
            mounts=self.mounts(mounts),
            environment=dict(environment or {}),
            labels=labels(env=name, role="run", **self.ownership()),
            working_dir=WORKSPACE,
        )
        self.sync_up(build.image)
        try:
            result = self._run_on_backend(request, stdout=stdout, stderr=stderr, on_event=on_event)
        except RunError:  # out of memory, timed out: what it wrote until then still comes back
            self.sync_down(build.image)
            raise
        self.sync_down(build.image)
        return build, effective, result

    # ------------------------------------------------------------------ containers
    def scope(self) -> dict[str, str]:
        """The labels that say whose a container is: this user (uid) in this workspace.

        Every container the manager creates carries them, and every listing, log and stop filters on them,
        so on a shared engine one user's server or CLI never sees or touches another's containers (or
        another workspace's). They are set by us at creation; no request can choose them.
        """
        return {"owner_uid": str(os.getuid()), "workspace": str(self.workspace_dir())}

    def ownership(self) -> dict[str, str]:
        """The labels every container created through this manager carries: its scope, plus the creating
        process (so that prune can tell a crashed kernel's container from a live one)."""
        return {**owner_labels(), **self.scope()}

    def scope_filter(self) -> dict[str, str]:
        """:meth:`scope` as engine label filters (``io.jupyter.containers.workspace`` …)."""
        return {f"io.jupyter.containers.{k.replace('_', '-')}": v for k, v in self.scope().items()}

    def containers(self, *, usage: bool = True) -> list[dict[str, Any]]:
        """Our running containers in this workspace as every front end shows them: environment, role,
        limits, live usage.

        One listing for the REST API, the widgets and the magics, so they can never disagree.
        """
        listed = self.backend.list_containers(all=False, labels=self.scope_filter())
        figures = self.backend.usage([c.id for c in listed]) if usage else {}
        out = []
        for container in listed:
            try:
                resources = json.loads(container.label("resources") or "{}")
            except ValueError:
                resources = {}
            measured = figures.get(container.id)
            out.append(
                {
                    "id": container.id,
                    "name": container.name,
                    "environment": container.label("env"),
                    "role": container.label("role"),
                    "image": container.image,
                    "state": container.state,
                    "status": container.status,
                    "created": container.created,
                    "resources": resources,
                    "gpus": resources.get("gpus") if isinstance(resources, dict) else None,
                    # The Jupyter kernel a kernel container serves (the sidebar finds its notebook by it). A
                    # session's container labels its own, private kernel id: not a Jupyter kernel, so not shown.
                    "kernel_id": container.label("kernel-id") if container.label("role") == "kernel" else None,
                    # A %%container session's: the kernel of the notebook it runs cells for.
                    "parent_kernel_id": container.label("parent-kernel-id"),
                    # A session kernel started ahead of its cell by the notebook's pool (c.ContainerSessions.pool).
                    "pool": container.label("pool") == "1",
                    # The server's notebook job it runs, if any.
                    "job": container.label("job"),
                    # The node it runs on (None: the backend's only node); utilization is summed per node.
                    "node": container.node,
                    "usage": measured.to_dict() if measured is not None else None,
                }
            )
        return out

    def find_container(self, container_id: str) -> ContainerInfo:
        """One of this workspace's containers by id, or by an unambiguous prefix of at least 12 characters.

        Raises:
            NotFoundError: no container of this user in this workspace has that id (another user's or
                another workspace's container is not found either: it is not theirs to see).
        """
        for container in self.backend.list_containers(all=True, labels=self.scope_filter()):
            if container.id == container_id or (len(container_id) >= 12 and container.id.startswith(container_id)):
                return container
        raise NotFoundError(f"no container {container_id!r} created by jupyter-containers")

    def container_logs(self, container_id: str, *, tail: int | None = 500) -> str:
        return self.backend.container(self.find_container(container_id).id).logs(tail=tail)

    def stop_container(self, container_id: str, *, by: str = "jupyter-containers stop") -> None:
        """Stop and remove one of this workspace's containers. A kernel's owner (the notebook) is told why:
        a marker in the kernel's socket folder makes its death read "stopped by its user from ``by``", not
        "exited with code -1"."""
        from .kernel.container import STOPPED_MARKER, socket_folder

        container = self.find_container(container_id)
        folder = socket_folder(container)
        if folder is not None:
            try:
                message = f"its container was stopped by its user, from {by}"
                (folder / STOPPED_MARKER).write_text(message, encoding="utf-8")
            except OSError:
                pass  # the message is a courtesy; the stop goes on
        self.backend.remove_container(container.id)

    # ------------------------------------------------------------------ kernels, sessions, notebooks
    def _run_on_backend(
        self,
        request: RunRequest,
        *,
        stdout: Callable[[bytes], None] | None,
        stderr: Callable[[bytes], None] | None,
        on_event: EventCallback | None,
    ) -> RunResult:
        """``backend.run``, once more elsewhere when the swarm node it ran on went down and the backend was asked to
        reschedule then (as :meth:`execute` does for a notebook job): only a node's loss, never an exit code."""
        if not self.backend.reschedule_on_node_failure:
            return self.backend.run(request, stdout=stdout, stderr=stderr)
        import secrets
        from dataclasses import replace

        from .backends.base import BuildEvent
        from .errors import EngineRefusedError

        attempt = labels(attempt=secrets.token_hex(6))
        try:
            return self.backend.run(
                replace(request, labels={**request.labels, **attempt}), stdout=stdout, stderr=stderr
            )
        except EngineRefusedError:
            lost = self.backend.lost_node(attempt)
            if lost is None:
                raise
        if on_event is not None:
            text = (
                f"the swarm node {lost} went down while the command ran: running it again from the start on another "
                "node (reschedule_on_node_failure; once)"
            )
            on_event(BuildEvent(kind="info", step="reschedule", text=text))
        again = replace(request, resources=_avoiding(request.resources, lost))
        return self.backend.run(again, stdout=stdout, stderr=stderr)

    def session(
        self,
        environment: str,
        resources: Resources | None = None,
        *,
        on_build_event: EventCallback | None = None,
        cwd: str | os.PathLike | None = None,
    ) -> Any:
        """The warm ``%%container`` session of this process for ``environment`` with ``resources``."""
        from .kernel.pool import get_pool

        return get_pool().get_or_start(environment, resources, manager=self, on_build_event=on_build_event, cwd=cwd)

    def execute(
        self,
        request: Any,
        *,
        log: Callable[[str], None] = print,
        on_build_event: EventCallback | None = None,
        cancel: Any = None,
    ) -> Any:
        """Run a whole notebook (an :class:`~jupyter_containers.jobs.runner.ExecuteRequest`) in its environment.

        On a swarm target with ``reschedule_on_node_failure``, a job whose node went down while it ran is run once
        more from the start, on another node, and its log says so (a kernel's state cannot move with it)."""
        from .jobs.runner import execute_notebook

        # The backend of the environment's own target when no --target was chosen (what runs the job's kernel).
        try:
            routed = self.for_environment(request.environment)
        except SpecError:
            routed = self  # an unknown environment: execute_notebook says so, as it always did
        if not routed.backend.reschedule_on_node_failure:
            return execute_notebook(request, manager=self, log=log, on_build_event=on_build_event, cancel=cancel)
        import secrets
        from dataclasses import replace

        attempt = {"attempt": secrets.token_hex(6)}
        first = replace(request, labels={**request.labels, **attempt})
        result = execute_notebook(first, manager=self, log=log, on_build_event=on_build_event, cancel=cancel)
        lost = routed.backend.lost_node(labels(**attempt)) if result.status == "failed" else None
        if lost is None:
            return result
        log(
            f"the swarm node {lost} went down while the job ran: running it again from the start on another node "
            "(reschedule_on_node_failure; once)"
        )
        again = replace(request, resources=_avoiding(request.resources or Resources(), lost))
        return execute_notebook(again, manager=self, log=log, on_build_event=on_build_event, cancel=cancel)

    def kernel_spec_manager(self) -> Any:
        from jupyter_client.kernelspec import KernelSpecManager

        return KernelSpecManager(parent=self)

    def install_kernel_spec(
        self,
        environment: str,
        resources: Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        display_name: str | None = None,
        user: bool = False,
        prefix: str | None = None,
    ) -> str:
        """Install a kernelspec whose kernels run in ``environment`` (resources in spec units); returns its folder."""
        from .kernel.kernelspec import install_kernel_spec

        self.environment(environment)  # the environment must exist
        return install_kernel_spec(
            environment,
            self.spec_file(),
            dict(resources or {}),
            name=name,
            display_name=display_name,
            user=user,
            prefix=prefix,
            kernel_spec_manager=self.kernel_spec_manager(),
            target=self.target,
        )

    def sync_kernel_specs(self, prefix: str) -> list[str]:
        """A kernelspec per environment under ``prefix``; ours whose environment left the spec file are removed."""
        installed = []
        spec_file = str(self.spec_file())
        for name, env in self.spec().environments.items():
            folder = self.install_kernel_spec(
                name,
                {},
                name=f"containers-{name}",
                display_name=f"{name} (container, {env.resources.describe()})",
                prefix=prefix,
            )
            installed.append(Path(folder).name)
        ksm = self.kernel_spec_manager()
        for kernel, folder in ksm.find_kernel_specs().items():
            if not kernel.startswith("containers-") or kernel in installed:
                continue
            try:
                config = json.loads((Path(folder) / "kernel.json").read_text())["metadata"]["kernel_provisioner"]
            except (OSError, ValueError, KeyError):
                continue
            if config.get("config", {}).get("spec_file") == spec_file and Path(folder).is_relative_to(prefix):
                ksm.remove_kernel_spec(kernel)
        return installed

    # ------------------------------------------------------------------ housekeeping
    def images(self) -> list[ImageInfo]:
        return sorted(self.backend.list_images(), key=lambda i: i.created or 0, reverse=True)

    def prune(self, *, all: bool = False, dry_run: bool = False) -> dict[str, list[str]]:
        """Remove our stopped containers and superseded images (every image of ours with ``all``).

        Kernels, sessions and runs whose owning process on this host is gone (a crashed or killed notebook
        kernel) are removed too, and so are kernel socket folders no container uses, and the ``/workspace``
        volumes of remote targets (``workspace = "sync"``) that no container has (the next run sends the
        workspace again, whole), and a swarm's per-kernel secrets (connection files) that no service holds any
        more: once their owning process is gone, or a minute after their creation (a live process creates the
        secret and then, at once, its service; the service may also have been removed behind our back).
        An environment image is
        superseded when the ``containers.lock`` of its spec file names another image; images of projects
        whose spec file is gone are kept (unless ``all``), and base images and the current uv's image are always
        kept. The image of a find_links folder goes once no environment image on the engine was built from it, and
        the images of other uv versions go.
        """
        removed: dict[str, list[str]] = {"containers": [], "images": [], "folders": [], "volumes": [], "secrets": []}
        kept_mounts: set[str] = set()
        # This user's containers only (in every workspace): another user's crashed kernel is not ours to remove.
        mine = {"io.jupyter.containers.owner-uid": str(os.getuid())}
        for container in self.backend.list_containers(all=True, labels=mine):
            if (
                container.state in ("created", "exited", "dead")
                or (all and container.label("role") in ("run", "lock-probe"))
                or _orphaned(container.labels)
            ):
                removed["containers"].append(container.name or container.id[:12])
                if not dry_run:
                    self.backend.remove_container(container.id)
            else:
                kept_mounts.update(container.mounts)
        removed["secrets"] = self._prune_secrets(mine, dry_run)
        removed["folders"] = self._prune_socket_folders(kept_mounts, dry_run)
        removed["volumes"] = self._prune_workspace_volumes(dry_run)
        images = self.images()
        current, known = self._current_images(images)
        for image in images:
            if not image.label("env"):
                continue  # a base image
            if image.label("owner-uid", str(os.getuid())) != str(os.getuid()):
                continue  # another user's build
            refs = list(image.tags) or [image.id]
            superseded = image.label("spec-file") in known and not any(ref in current for ref in refs)
            if not (all or superseded):
                continue
            removed["images"].extend(refs)
            if not dry_run:
                for ref in refs:
                    self.backend.remove_image(ref)
        removed["images"] += self._prune_tool_images(images, set(removed["images"]), dry_run)
        return removed

    def _prune_tool_images(self, images: Sequence[ImageInfo], removed: set[str], dry_run: bool) -> list[str]:
        """The find_links folders' images that no environment image left on the engine was built from, and the
        images of other uv versions than this one (images/mounted.py)."""
        from .images.builder import _uv_version
        from .images.mounted import stale_uv_images, unused_wheel_images

        gone = unused_wheel_images(images, removed) + stale_uv_images(images, _uv_version())
        if not dry_run:
            for ref in gone:
                self.backend.remove_image(ref)
        return gone

    def _current_images(self, images: Sequence[ImageInfo]) -> tuple[set[str], set[str]]:
        """Tags that a readable ``containers.lock`` names as an environment's current image, and the spec
        files whose locks were read. Creation times cannot tell: a build that BuildKit serves from its cache
        keeps the creation time of the first build."""
        from .images.lock import read_lock

        spec_files = {name for image in images if (name := image.label("spec-file"))}
        try:
            spec_files.add(str(self.spec_file()))
        except SpecError:
            pass
        current: set[str] = set()
        known: set[str] = set()
        for spec_file in spec_files:
            path = Path(spec_file)
            if not path.is_file():
                continue
            try:
                entries = read_lock(path.parent / "containers.lock")
            except SpecError:
                continue
            known.add(spec_file)
            current.update(entry.image for entry in entries.values())
        return current, known

    def _prune_workspace_volumes(self, dry_run: bool) -> list[str]:
        """This user's synced /workspace volumes that no container has (after the stopped ones went above).

        Each is removed under its sync's lock (a sync under way keeps it), and its manifest here goes with it. On a
        swarm whose workspace is synced per node, each node's engine of the target's ``nodes`` table is asked too
        (its volumes are named ``NODE:VOLUME``); a node that does not answer is skipped with a warning.
        """
        swarm: Any = self.backend
        engines: list[tuple[str, Any]] = [("", swarm)]
        if self._syncs_per_node() and self.workspace_mode() == "sync":
            engines += [(node, None) for node in sorted(swarm.node_engines)]
        removed: list[str] = []
        for node, engine in engines:
            try:
                engine = engine if engine is not None else swarm.node_backend(node)
                removed += [f"{node}:{n}" if node else n for n in self._prune_volumes_of(engine, dry_run)]
            except ContainersError as exc:
                if not node:
                    raise
                self.log.warning("could not prune the workspace volume on swarm node %s: %s", node, exc)
        return removed

    def _prune_volumes_of(self, engine: Any, dry_run: bool) -> list[str]:
        from .errors import ConflictError
        from .paths import file_lock
        from .workspace_sync import state_file

        wanted = {"io.jupyter.containers.role": "workspace", "io.jupyter.containers.owner-uid": str(os.getuid())}
        removed: list[str] = []
        try:
            unused = engine.list_volumes(wanted, unused=True)
        except NotImplementedError:
            return removed  # a backend without volumes of ours (Kubernetes: claims are the cluster's)
        for name in unused:
            if dry_run:
                removed.append(name)
                continue
            with file_lock(f"sync:{engine.address}:{name}"):
                if name not in engine.list_volumes(wanted, unused=True):
                    continue  # a sync took it meanwhile
                try:
                    engine.remove_volume(name)
                except ConflictError:
                    continue  # a container started with it after all
                state_file(engine.address, name).unlink(missing_ok=True)
            removed.append(name)
        return removed

    def _prune_secrets(self, mine: Mapping[str, str], dry_run: bool) -> list[str]:
        """This user's secrets that no service holds (after the services of stopped or orphaned kernels went above,
        taking theirs): the owner's process is gone, or the secret is older than :data:`SECRET_GRACE` seconds."""
        import time

        removed = []
        for secret in self.backend.list_secrets(mine, unused=True):
            young = secret.created is not None and time.time() - secret.created < SECRET_GRACE
            if young and not owner_process_gone(secret.labels):
                continue  # its process is about to create the service that holds it
            if not dry_run:
                try:
                    self.backend.remove_secret(secret.id)
                except ContainersError as exc:  # a service took it meanwhile: not a leftover after all
                    self.log.warning("prune kept the secret %s: %s", secret.name or secret.id, exc)
                    continue
            removed.append(secret.name or secret.id)
        return removed

    def _prune_socket_folders(self, in_use: set[str], dry_run: bool) -> list[str]:
        """Kernel socket folders that a crashed kernel left behind (unused by any container, >10 min old)."""
        import shutil
        import time

        from .kernel.container import runtime_root

        removed = []
        for folder in runtime_root().glob("k-*"):
            try:
                old = time.time() - folder.stat().st_mtime > 600
            except OSError:
                continue
            if old and str(folder) not in in_use:
                removed.append(str(folder))
                if not dry_run:
                    shutil.rmtree(folder, ignore_errors=True)
        return removed

    def engine(self) -> EngineInfo:
        return self.backend.engine_info()


#: Seconds an unheld secret of a live owner is kept by prune: the owner creates it, then at once the service
#: holding it (a secret older than that whose service is gone was left behind).
SECRET_GRACE = 60.0


def _orphaned(container_labels: Mapping[str, str]) -> bool:
    # A kernel, session or run container whose owner process, on this very host, no longer exists.
    if container_labels.get("io.jupyter.containers.role") not in ("kernel", "session", "run", "lock-probe"):
        return False
    return owner_process_gone(container_labels)


def owner_process_gone(container_labels: Mapping[str, str]) -> bool:
    """Whether the process that the owner labels (``owner_labels()``) name has ended, on this very host."""
    if container_labels.get("io.jupyter.containers.owner-host") != os.uname().nodename:
        return False  # owned by a process on another machine: its pid means nothing here
    try:
        pid = int(container_labels.get("io.jupyter.containers.owner-pid", ""))
    except ValueError:
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, owned by another user
    return False


def _avoiding(resources: Resources, node: str) -> Resources:
    """``resources`` with a placement constraint that keeps the task off ``node`` (a rescheduled attempt)."""
    from dataclasses import replace

    return replace(resources, constraints=(*(resources.constraints or ()), f"node.hostname!={node}"))
