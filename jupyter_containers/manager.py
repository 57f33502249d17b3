"""ContainersManager: the single entry point every front end (CLI, magics, server, provisioner) uses.

It ties a spec file to a backend and a builder, and owns the policy that must be identical everywhere:
how resources combine (spec defaults, then per-run overrides) and which host folders may be mounted.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from traitlets import Bool, Instance, List, Type, Unicode, default
from traitlets.config import LoggingConfigurable

from .backends.base import ContainerBackend, Mount, RunRequest, RunResult, labels, owner_labels
from .backends.docker import DockerBackend
from .build.builder import Builder, BuildResult, EventCallback
from .build.dockerfile import CA_TARGET, WORKSPACE
from .errors import SpecError
from .spec.model import Environment, Resources, SpecFile
from .spec.parse import find_spec_file, load_environment, load_spec


class ContainersManager(LoggingConfigurable):
    """Environments of one spec file, built and run on one backend."""

    backend_class = Type(
        DockerBackend,
        klass=ContainerBackend,
        config=True,
        help="The container backend class (another engine can be plugged in here).",
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

    backend = Instance(ContainerBackend)
    builder = Instance(Builder)

    def __init__(self, spec_path: str | os.PathLike | None = None, **kwargs: Any):
        if spec_path is not None:
            kwargs["spec_path"] = str(spec_path)
        super().__init__(**kwargs)

    @default("backend")
    def _default_backend(self) -> ContainerBackend:
        return self.backend_class(parent=self)

    @default("builder")
    def _default_builder(self) -> Builder:
        return Builder(parent=self, backend=self.backend)

    # ------------------------------------------------------------------ specs
    def spec_file(self) -> Path:
        return Path(self.spec_path).resolve() if self.spec_path else find_spec_file().resolve()

    def spec(self) -> SpecFile:
        """Re-read on every call: specs are edited while servers and kernels keep running."""
        return load_spec(self.spec_file())

    def environment(self, name: str) -> Environment:
        return load_environment(name, self.spec_file())

    def workspace_dir(self) -> Path:
        return Path(self.workspace).resolve() if self.workspace else self.spec_file().parent

    # ------------------------------------------------------------------ build
    def build(self, name: str, *, locked: bool = False, on_event: EventCallback | None = None) -> BuildResult:
        return self.builder.build(self.environment(name), locked=locked, on_event=on_event)

    def lock(self, name: str, *, on_event: EventCallback | None = None):
        """Build if needed, then record the lock from the image even when it is up to date."""
        return self.builder.build(self.environment(name), on_event=on_event, relock=True).lock

    # ------------------------------------------------------------------ run
    def resources(self, name: str, override: Resources | None = None) -> Resources:
        return self.environment(name).resources.merged(override)

    def mounts(self, extra: Sequence[tuple[str, str, bool]] = ()) -> list[Mount]:
        """The workspace mount plus validated extra mounts ``(host path, container path, read_only)``."""
        workspace = self.workspace_dir()
        mounts = [Mount(workspace, WORKSPACE)]
        roots = [workspace, *(Path(r).resolve() for r in self.allowed_mount_roots)]
        for host, target, read_only in extra:
            source = Path(host).expanduser()
            source = (workspace / source if not source.is_absolute() else source).resolve()
            if not any(source == root or root in source.parents for root in roots):
                raise SpecError(
                    f"mount source {host!r} ({source}) is outside the workspace {workspace}; mount a folder inside "
                    "it, or allow its parent with c.ContainersManager.allowed_mount_roots"
                )
            if not source.exists():
                raise SpecError(f"mount source {host!r} ({source}) does not exist")
            if not target.startswith("/") or ":" in target:
                raise SpecError(f"mount target {target!r} must be an absolute path inside the container")
            mounts.append(Mount(source, target, read_only))
        if self.mount_host_ca_bundle:
            from .build.hostconfig import find_ca_bundle

            ca = find_ca_bundle()
            if ca is not None:
                mounts.append(Mount(ca.resolve(), CA_TARGET, read_only=True))
        return mounts

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
        """Build (if needed) and run ``command`` with the spec's resources overridden by ``resources``."""
        build = self.build(name, locked=locked, on_event=on_event)
        effective = self.resources(name, resources)
        request = RunRequest(
            image=build.image,
            command=list(command),
            resources=effective,
            mounts=self.mounts(mounts),
            environment=dict(environment or {}),
            labels=labels(env=name, role="run", **owner_labels()),
            working_dir=WORKSPACE,
        )
        return build, effective, self.backend.run(request, stdout=stdout, stderr=stderr)

    # ------------------------------------------------------------------ housekeeping
    def images(self) -> list[dict]:
        return sorted(self.backend.list_images(), key=lambda i: i.get("created") or 0, reverse=True)

    def prune(self, *, all: bool = False, dry_run: bool = False) -> dict[str, list[str]]:
        """Remove our stopped containers and superseded images (every image of ours with ``all``).

        Kernels, sessions and runs whose owning process on this host is gone (a crashed or killed notebook
        kernel) are removed too, and so are kernel socket folders no container uses. An environment image is
        superseded when the ``containers.lock`` of its spec file names another image; images of projects
        whose spec file is gone are kept (unless ``all``), and base images are always kept.
        """
        removed: dict[str, list[str]] = {"containers": [], "images": [], "folders": []}
        kept_mounts: set[str] = set()
        for container in self.backend.list_containers(all=True):
            if (
                container["state"] in ("created", "exited", "dead")
                or (all and container["labels"].get("io.jupyter.containers.role") in ("run", "lock-probe"))
                or _orphaned(container["labels"])
            ):
                removed["containers"].append(container["name"] or container["id"][:12])
                if not dry_run:
                    self.backend.remove_container(container["id"])
            else:
                kept_mounts.update(container.get("mounts", ()))
        removed["folders"] = self._prune_socket_folders(kept_mounts, dry_run)
        current, known = self._current_images()
        for image in self.images():
            image_labels = image["labels"]
            env = image_labels.get("io.jupyter.containers.env")
            if not env:
                continue  # a base image (environment images inherit "kind=base" from the offline base)
            refs = image["tags"] or [image["id"]]
            superseded = image_labels.get("io.jupyter.containers.spec-file") in known and not any(
                ref in current for ref in refs
            )
            if not (all or superseded):
                continue
            removed["images"].extend(refs)
            if not dry_run:
                for ref in refs:
                    self.backend.remove_image(ref)
        return removed

    def _current_images(self) -> tuple[set[str], set[str]]:
        """Tags that a readable ``containers.lock`` names as an environment's current image, and the spec
        files whose locks were read. Creation times cannot tell: a build that BuildKit serves from its cache
        keeps the creation time of the first build."""
        from .build.lock import read_lock

        spec_files = {
            image["labels"].get("io.jupyter.containers.spec-file") for image in self.backend.list_images()
        } - {None, ""}
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

    def engine(self) -> dict:
        return self.backend.engine_info()


def _orphaned(container_labels: Mapping[str, str]) -> bool:
    # A kernel or session container whose owner process, on this very host, no longer exists.
    if container_labels.get("io.jupyter.containers.role") not in ("kernel", "session", "run", "lock-probe"):
        return False
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
