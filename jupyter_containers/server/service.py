"""What the REST handlers call: environments, builds, containers with usage, engine, validated requests.

No tornado here: the handlers run these blocking calls in worker threads, and this module holds the
policy for what a request may ask of the engine (the Docker socket is root-equivalent).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from traitlets import Bool, Float, Instance, Int, Unicode, default
from traitlets.config import LoggingConfigurable

from ..backends.base import NodeInfo
from ..errors import ContainersError, NotFoundError, RequestError, SpecError
from ..frontend import RESOURCE_FIELDS
from ..images.lock import read_lock
from ..manager import ContainersManager
from ..redact import redact_data
from ..spec.model import Resources
from ..spec.parse import find_spec_file, parse_resources
from ..units import format_size, parse_size
from ..utilization import target_utilization
from .cache import EngineWatch, Snapshot, stamps
from .tracker import BuildTracker

#: The engine's own minima (Docker refuses less memory than 6 MiB and finer CPU shares than 0.01).
MIN_CPUS = 0.01
MIN_MEMORY = 6 << 20
MIN_PIDS = 16  # fewer processes than this cannot even start a kernel
#: Seconds a container listing and its usage figures are kept while no container event happens (what changes
#: without an event -- usage, the "Up 3 minutes" text -- is at most this much behind; docker stats samples
#: once a second too).
LIVE_MAX_AGE = 1.0
#: Seconds the nodes of a target (what each holds) are kept: they change when a node joins or leaves.
NODES_MAX_AGE = 30.0


class ContainersService(LoggingConfigurable):
    """One workspace (the server's root folder) and the engine, as the REST API sees them."""

    root_dir = Unicode(help="The server's root folder: specs are found and jobs run relative to it.")
    spec_file = Unicode(
        "",
        config=True,
        help="Spec file relative to the server root. Empty: containers.toml, else pyproject.toml, at the root.",
    )
    max_cpus = Float(config=True, help="Most CPUs one request may ask for (default: the host's CPUs).")
    max_memory = Unicode("", config=True, help="Most memory one request may ask for, e.g. '16g' (default: host RAM).")
    max_gpus = Int(8, config=True, help="Most GPUs one request may ask for ('all' counts as this many).")
    max_timeout = Float(24 * 3600, config=True, help="Longest timeout (seconds) one request may ask for.")
    max_pids = Int(65536, config=True, help="Highest process limit one request may ask for.")
    allow_network = Bool(True, config=True, help="Whether requests may run containers with network access.")
    install_kernelspecs = Bool(
        False,
        config=True,
        help="At start, also install a kernelspec file per environment of the workspace (into this Python's "
        "prefix). Not needed with the extension's kernel spec manager (c.ServerApp.kernel_spec_manager_class = "
        "jupyter_containers.kernel.kernelspec.ContainersKernelSpecManager, set by the extension's config), "
        "which offers this server's environments without writing files; files in a shared prefix show every "
        "workspace's kernels in every launcher.",
    )

    package_index = Unicode(
        "https://pypi.org/pypi",
        config=True,
        help="The package index whose JSON API (INDEX/NAME/json, as PyPI's) checks a package and version that "
        "'Add package…' in the sidebar adds to an environment, before the spec file is changed. Empty: no check.",
    )

    manager = Instance(ContainersManager, allow_none=True)

    @default("max_cpus")
    def _default_max_cpus(self) -> float:
        return float(os.cpu_count() or 1)

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.builds = BuildTracker(self._run_build)
        self._watch: EngineWatch | None = None
        self._watch_lock = threading.Lock()
        self._statuses: dict[tuple[str, str, str | None], Snapshot] = {}
        self._listing: Snapshot[list[dict[str, Any]]] = Snapshot()
        self._usage: Snapshot[dict[str, Any]] = Snapshot()
        self._merged: Snapshot[tuple[list[dict[str, Any]], str]] = Snapshot()
        #: target name -> (listing, usage, merged) snapshots of that engine's containers (no event stream
        #: is followed for targets: their answers are kept for LIVE_MAX_AGE seconds).
        self._target_snapshots: dict[str, tuple[Snapshot, Snapshot, Snapshot]] = {}
        self._jobs: Any = None
        self._spec_lock = threading.Lock()
        self._spec_files: list[Path] = []
        self._spec_key: Any = None
        self._spec_error: str | None = None

    @property
    def jobs(self) -> Any:
        """The job manager (configured as ``c.JobManager``), created on first use (it marks jobs a previous
        server left running)."""
        if self._jobs is None:
            from ..jobs.manager import JobManager

            self._jobs = JobManager(parent=self)
        return self._jobs

    @property
    def share(self) -> Any:
        """The sharing operations (export, import, push, pull, binder, reproduce; server/share_ops.py)."""
        if "_share" not in self.__dict__:
            from .share_ops import Operations

            self.__dict__["_share"] = Operations(self)
        return self.__dict__["_share"]

    # ------------------------------------------------------------------ specs
    def spec_path(self) -> Path:
        root = Path(self.root_dir).resolve()
        if self.spec_file:
            path = (root / self.spec_file).resolve()
            if root not in path.parents:
                raise SpecError(f"c.ContainersService.spec_file {self.spec_file!r} is outside the server root {root}")
            return path
        return find_spec_file(root).resolve()

    def get_manager(self) -> ContainersManager:
        path = self.spec_path()
        if self.manager is None or Path(self.manager.spec_file()) != path:
            self.manager = ContainersManager.discover(path, parent=self)
        return self.manager

    def routed(self, target: str | None = None) -> ContainersManager:
        """The manager of the engine a request names (``target``: a ``[targets.NAME]`` of the spec file;
        None: the configured engine).

        Raises:
            RequestError: ``target`` is not a non-empty string.
            SpecError: no such target (400; the message names it and lists the defined ones).
        """
        if target is not None and (not isinstance(target, str) or not target):
            raise RequestError(f"target: give the name of a [targets.NAME] of the spec file, not {target!r}")
        return self.get_manager().for_target(target)

    def environments(self, target: str | None = None) -> list[dict[str, Any]]:
        manager = self.routed(target)
        spec = manager.spec()
        return [self._environment(manager, env, target) for env in spec.environments.values()]

    # ------------------------------------------------------------------ cached answers
    @property
    def engine_watch(self) -> EngineWatch:
        """The engine's image/container event counters (started on first use; see server/cache.py)."""
        with self._watch_lock:
            if self._watch is None:
                backend = self.get_manager().backend
                self._watch = EngineWatch(backend.events, log=self.log)
                self._watch.start()
            return self._watch

    def close(self) -> None:
        """Stop following the engine's events (the server is stopping)."""
        if self._watch is not None:
            self._watch.stop()

    def _status(self, manager: ContainersManager, env: Any, build: Any, target: str | None = None) -> dict[str, Any]:
        """``builder.status(env)``, computed once per change: keyed on the environment as written, the
        files it reads (its requirement files, the lock), this server's last build of it (whose end must
        show at once, before the engine's event arrives) and the engine's image events."""
        # A target's engine is not followed: its answer is kept for a few seconds instead.
        generation = self.engine_watch.generation("image") if target is None else None
        files = [env.spec_dir / "containers.lock", *(env.spec_dir / r for r in env.requirements)]
        key = (
            str(env.source),
            json.dumps(env.to_dict(), sort_keys=True, default=str),
            stamps(files),
            (build.id, build.status) if build is not None else None,
            generation,
        )
        snapshot = self._statuses.setdefault((str(env.source), env.name, target), Snapshot())
        if target is not None:
            return dict(snapshot.get(key, lambda: manager.builder.status(env), max_age=LIVE_MAX_AGE * 5))
        return dict(snapshot.get(key, lambda: manager.builder.status(env), reuse=generation is not None))

    def environment(self, name: str) -> dict[str, Any]:
        manager = self.get_manager()
        env = manager.environment(name)
        detail = self._environment(manager, env)
        detail["spec"] = redact_data(env.to_dict())
        lock = read_lock(env.spec_dir / "containers.lock").get(name)
        detail["lock"] = redact_data(lock.to_toml()) if lock else None
        return detail

    def _environment(self, manager: ContainersManager, env: Any, target: str | None = None) -> dict[str, Any]:
        spec_file = str(manager.spec_file())
        running = self.builds.running(spec_file, env.name, target)
        latest = self.builds.latest(spec_file, env.name, target)
        status = self._status(manager, env, latest, target)
        if running is not None:
            status["status"] = "building"
        elif latest is not None and latest.status == "failed" and status["status"] != "built":
            status["status"] = "failed"
        return {
            "name": env.name,
            "description": env.description,
            "spec_file": spec_file,
            # The same relative to the server root (what Lab opens: "Open spec"), None when outside it.
            "spec_path": _root_relative(self.root_dir, spec_file),
            "target": target,
            **status,
            "build": shown.to_dict() if (shown := running or latest) is not None else None,
            "resources": env.resources.to_dict(),
            "resources_text": env.resources.describe(),
        }

    # ------------------------------------------------------------------ spec changes (the sidebar's watch)
    def spec_state(self) -> dict[str, Any]:
        """``{version, error}``: a version that changes whenever the spec file or a file it references (its
        requirement files, the lock) changes, and the spec's error (None when it parses). Cheap (a few stats)
        while nothing changed: the spec is parsed again only when its files' stamps differ, so a client can
        ask every quarter second (``GET spec/changes`` long-polls on it)."""
        import hashlib

        try:
            path = self.spec_path()
        except SpecError as exc:
            return {"version": "none", "error": str(exc)}
        with self._spec_lock:
            key = stamps([path, *self._spec_files])
            if key != self._spec_key:
                files: list[Path] = []
                error = None
                try:
                    for env in self.get_manager().spec().environments.values():
                        files += [env.spec_dir / "containers.lock", *(env.spec_dir / r for r in env.requirements)]
                except ContainersError as exc:
                    error = str(exc)
                self._spec_files = list(dict.fromkeys(files))
                self._spec_key = stamps([path, *self._spec_files])
                self._spec_error = error
            version = hashlib.sha256(repr(self._spec_key).encode()).hexdigest()[:16]
            return {"version": version, "error": self._spec_error}

    # ------------------------------------------------------------------ "Add package…" (server/packages.py)
    def add_package(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Check ``body["package"]`` (and ``body["version"]``) on the index, add it to environment ``name``'s
        ``pip`` list in its spec file (comments and layout kept), and start a build of it."""
        from ..spec.parse import PYPROJECT_TABLE
        from . import packages

        package, spec, _ = packages.requirement(body.get("package"), body.get("version"))
        manager = self.get_manager()
        env = manager.environment(name)  # 404 before the index is asked
        spelled = packages.check_on_index(self.package_index, package, spec)
        text = f"{spelled}{spec}" if spec is not None else spelled
        spec_file = Path(env.source or manager.spec_file())
        table = tuple(PYPROJECT_TABLE.split(".")) if spec_file.name == "pyproject.toml" else ()
        with self._spec_lock:
            old = packages.add_to_spec(spec_file, table, name, spelled, text)
            try:
                manager.environment(name)
            except ContainersError as exc:
                spec_file.write_text(old)  # never leave a spec that no longer parses
                raise RequestError(f"{spec_file}: adding {text!r} would make the spec invalid: {exc}") from None
        build, _ = self.start_build(name, body.get("target"))
        return {"environment": name, "requirement": text, "spec_file": str(spec_file), "build": build}

    def kernel_specs(self) -> dict[str, dict[str, Any]]:
        """``containers-ENV`` → kernel.json contents, for every environment of this server's spec file (the
        launcher's container kernels; see ContainersKernelSpecManager)."""
        from ..kernel.kernelspec import kernel_spec_dict

        manager = self.get_manager()
        spec_file = manager.spec_file()
        return {
            f"containers-{name}": kernel_spec_dict(
                name, spec_file, {}, display_name=f"{name} (container, {env.resources.describe()})"
            )
            for name, env in manager.spec().environments.items()
        }

    def sync_kernelspecs(self) -> list[str]:
        """Install a kernelspec per environment; remove ours whose environment left the spec file."""
        from jupyter_core.paths import ENV_JUPYTER_PATH

        # The environment's own kernel folder (<sys.prefix>/share/jupyter), where `ipykernel install
        # --sys-prefix` puts kernels: per virtualenv, no root needed.
        prefix = Path(ENV_JUPYTER_PATH[0]).parent.parent
        return self.get_manager().sync_kernel_specs(str(prefix))

    # ------------------------------------------------------------------ builds
    def start_build(self, name: str, target: str | None = None) -> tuple[dict[str, Any], bool]:
        """Build ``name`` on ``target`` (None: the environment's own ``target =``, else the configured engine)."""
        manager = self.routed(target)  # an unknown target: 400 before any thread starts
        manager.environment(name)  # 404 before any thread starts
        if target is None:
            target = manager.for_environment(name).target
        build, new = self.builds.start(str(manager.spec_file()), name, target)
        return build.to_dict(), new

    def _run_build(self, spec_file: str, name: str, on_event: Any, target: str | None = None) -> dict[str, Any]:
        """One build for the tracker: the build's result, with the image's size (the sidebar's summary)."""
        manager = ContainersManager.discover(spec_file, parent=self, target=target)
        result = manager.build(name, on_event=on_event).to_dict()
        try:
            result["image_size"] = {i.id: i.size for i in manager.backend.list_images()}.get(result["image_id"])
        except ContainersError:
            result["image_size"] = None
        return result

    def build(self, build_id: str) -> Any:
        build = self.builds.get(build_id)
        if build is None:
            raise NotFoundError(f"no build {build_id!r} (builds are kept while the server runs)")
        return build

    # ------------------------------------------------------------------ containers
    def containers(self, target: str | None = None) -> list[dict[str, Any]]:
        """Our containers with live usage, computed once for all the requests that arrive together, and kept
        while no container event happened for at most ``LIVE_MAX_AGE`` seconds: every start, stop, death or
        removal shows at once; only what changes without an event (usage figures, the "Up 3 minutes" text)
        may be that much behind. Without the event stream, computed for every request. On a ``target``
        (a ``[targets.NAME]``), that engine's containers, kept for ``LIVE_MAX_AGE`` seconds."""
        return self._containers(target)[0]

    def containers_json(self, target: str | None = None) -> str:
        """``GET containers``' answer, serialized once per listing (twenty sidebars get the same text)."""
        return self._containers(target)[1]

    def _containers(self, target: str | None = None) -> tuple[list[dict[str, Any]], str]:
        manager = self.routed(target)
        if target is None:
            generation = self.engine_watch.generation("container")
            reuse = generation is not None
            listing, usage, merged = self._listing, self._usage, self._merged
        else:
            generation, reuse = None, True
            listing, usage, merged = self._target_snapshots.setdefault(target, (Snapshot(), Snapshot(), Snapshot()))
        key = (str(manager.spec_file()), generation)
        listed = listing.get(key, lambda: manager.containers(usage=False), reuse=reuse, max_age=LIVE_MAX_AGE)
        ids = tuple(c["id"] for c in listed)
        figures = usage.get((key, ids), lambda: manager.backend.usage(list(ids)), reuse=reuse, max_age=LIVE_MAX_AGE)

        current = self._current_images(target)
        nodes = self.nodes(target)

        def merge() -> tuple[list[dict[str, Any]], str]:
            rows = [
                {
                    **c,
                    "target": target,
                    "usage": figures[c["id"]].to_dict() if c["id"] in figures else None,
                    # Runs an older image than the environment's current build (restart it on the new one).
                    "outdated": bool(current.get(c["environment"])) and c["image"] != current.get(c["environment"]),
                }
                for c in listed
            ]
            # used / total (its limit, else its node's) per container: see jupyter_containers/utilization.py
            per_container = target_utilization(nodes, rows)[2]
            for row in rows:
                row["utilization"] = per_container.get(row["id"])
            return rows, json.dumps({"containers": rows})

        # Keyed on the results themselves (compared by value; the same objects compare at once).
        return merged.get((listed, figures, current, tuple(nodes)), merge)

    def _current_images(self, target: str | None = None) -> dict[str, str]:
        """Environment → the image its spec builds now, when that image exists (the environments' cached
        status: computed once per change of the spec, its files or the engine's images)."""
        try:
            return {
                env["name"]: env["image"]
                for env in self.environments(target)
                if env.get("status") == "built" and env.get("image")
            }
        except ContainersError:
            return {}

    def stop_container(self, container_id: str, target: str | None = None) -> None:
        self.routed(target).stop_container(container_id, by="the JupyterLab sidebar")
        # The engine's event follows within milliseconds; the client that stopped it may ask before that. Every
        # listing forgets it (two targets may name one engine, e.g. over ssh and over TLS).
        for listing in [self._listing, *(snapshots[0] for snapshots in self._target_snapshots.values())]:
            listing.invalidate()

    def container_logs(self, container_id: str, tail: int = 500, target: str | None = None) -> str:
        return self.routed(target).container_logs(container_id, tail=tail)

    # ------------------------------------------------------------------ nodes and utilization
    def nodes(self, target: str | None = None) -> list[NodeInfo]:
        """The nodes of ``target``'s backend (one for a single engine), kept ``NODES_MAX_AGE`` seconds: what a
        node holds changes rarely. Empty when the engine cannot say (utilization then has no node totals)."""
        snapshots = self.__dict__.setdefault("_node_snapshots", {})
        snapshot = snapshots.setdefault(target, Snapshot())
        try:
            return list(snapshot.get(target, lambda: self.routed(target).backend.nodes(), max_age=NODES_MAX_AGE))
        except (ContainersError, NotImplementedError):
            return []

    def utilization(self, target: str | None = None) -> dict[str, Any]:
        """``GET utilization``: used / total per node and per target, for the configured engine and each
        ``[targets.NAME]`` (only ``target`` when given); an unreachable target says why in ``error``."""
        from concurrent.futures import ThreadPoolExecutor

        if target is not None:
            self.routed(target)  # 400 for an unknown target
            return {"targets": [self.target_utilization(target)[0]]}
        try:
            names: list[str | None] = [None, *sorted(self.get_manager().spec().targets)]
        except ContainersError:
            names = [None]
        with ThreadPoolExecutor(len(names), thread_name_prefix="jupyter-containers-utilization") as pool:
            return {"targets": [summary for summary, _ in pool.map(self.target_utilization, names)]}

    def target_utilization(self, target: str | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """One target's figures and its container rows (with ``utilization``); never raises for an engine
        failure (``reachable: false`` and ``error``), so one unreachable target leaves the others shown."""
        name = target or "(default)"
        try:
            rows = self.containers(target)
            nodes = self.nodes(target)
        except ContainersError as exc:
            return {"name": name, "target": target, "reachable": False, "error": str(exc), "nodes": []}, []
        per_node, total, _ = target_utilization(nodes, rows)
        return {"name": name, "target": target, "reachable": True, **total, "nodes": per_node}, rows

    # ------------------------------------------------------------------ engine
    def engine(self, target: str | None = None) -> dict[str, Any]:
        """The engine's state (of ``target``, a ``[targets.NAME]``, when given); a workspace without a spec
        file still has an engine to show."""
        from ..errors import EngineUnavailableError

        if target is not None:
            manager = self.routed(target)  # targets live in the spec file: its errors are the answer
        else:
            try:
                manager = self.get_manager()
            except SpecError:
                manager = ContainersManager(parent=self)  # no spec needed: the backend is all this asks of it
        try:
            info = manager.engine()
        except EngineUnavailableError as exc:
            return {"reachable": False, "error": str(exc)}
        return {"reachable": True, **info.to_dict()}  # "gpu": True, False or None (could not be told)

    def targets(self) -> list[dict[str, Any]]:
        """The configured engine and each ``[targets.NAME]`` of the spec file, with reachability, engine
        version, CPUs, memory and GPUs (as ``jupyter-containers targets``); an unreachable one says why."""
        from ..targets import describe

        manager = self.get_manager()
        names = [None, *sorted(manager.spec().targets)]
        return [redact_data(describe(manager, name)) for name in names]

    # ------------------------------------------------------------------ notebooks (share/metadata.py)
    def notebook_path(self, raw: Any, *, key: str = "path") -> Path:
        """A notebook path of a request, relative to the server root and inside it (links resolved)."""
        if not isinstance(raw, str) or not raw.strip() or "\0" in raw:
            raise RequestError(f"{key}: give the notebook's path relative to the server root, such as 'demo.ipynb'")
        root = Path(self.root_dir).resolve()
        path = (root / raw.lstrip("/")).resolve() if not Path(raw).is_absolute() else Path(raw).resolve()
        if root not in path.parents:
            raise RequestError(f"{key}: {raw!r} is outside the server root")
        if path.suffix != ".ipynb":
            raise RequestError(f"{key}: {raw!r} is not a notebook (.ipynb)")
        return path

    def _workspace_spec(self) -> Path | None:
        from ..errors import SpecNotFoundError

        try:
            return self.spec_path()
        except SpecNotFoundError:
            return None

    def check_notebook(self, raw_path: Any) -> dict[str, Any]:
        """``GET notebooks/check``: each environment the notebook records against the workspace's spec."""
        from ..share.metadata import check_notebook

        path = self.notebook_path(raw_path)
        checks = check_notebook(path, self._workspace_spec())
        root = Path(self.root_dir).resolve()
        return {"path": str(path.relative_to(root)), "environments": [c.to_dict() for c in checks]}

    def restore_notebook(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST notebooks/restore``: the recorded spec and lock of one environment into the workspace."""
        from ..share.metadata import restore_environment

        path = self.notebook_path(body.get("path"))
        name = body.get("environment")
        if not isinstance(name, str) or not name:
            raise RequestError("environment: give the name of a recorded environment")
        overwrite = body.get("overwrite", False)
        if not isinstance(overwrite, bool):
            raise RequestError("overwrite: true or false")
        root = Path(self.root_dir).resolve()
        spec_file = self._workspace_spec() or root / "containers.toml"
        result = restore_environment(path, spec_file, name, overwrite=overwrite)
        self.manager = None  # the spec file may be new
        return {
            "environment": result.environment,
            "spec_file": str(Path(result.spec_file).relative_to(root)),
            "lock_file": str(Path(result.lock_file).relative_to(root)),
            "notes": list(result.notes),
        }

    def kernel_record(self, kernel_id: str) -> dict[str, Any]:
        """``GET kernels/ID/record``: the environment record of a container kernel (the image its container
        runs, its limits), for JupyterLab to write into the kernel's notebook; 404 for other kernels."""
        manager = self.get_manager()
        for row in manager.containers(usage=False):
            if row.get("kernel_id") == kernel_id and row.get("environment"):
                from ..share.metadata import environment_record

                image = row.get("image")
                image_id = manager.backend.image_id(image) if image else None
                resources = row.get("resources") if isinstance(row.get("resources"), dict) else None
                return environment_record(
                    manager, row["environment"], image=image, image_id=image_id, resources=resources
                )
        raise NotFoundError(f"no container kernel {kernel_id!r} of this workspace")

    # ------------------------------------------------------------------ request validation
    def validate_resources(self, raw: Any, *, key: str = "resources", environment: str | None = None) -> Resources:
        """Resources from a request body, checked against this server's bounds; anything else is refused.

        With ``environment``, the spec's defaults are merged in and the *effective* limits are checked (and
        returned): a request cannot escape the bounds by leaving a field to a permissive spec. Zero or
        negative values never mean "unlimited" here, and every value is compared after unit conversion.
        """
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise RequestError(f"{key}: expected an object with some of {', '.join(RESOURCE_FIELDS)}")
        unknown = sorted(set(raw) - set(RESOURCE_FIELDS))
        if unknown:
            raise RequestError(f"{key}.{unknown[0]}: unknown resource; allowed: {', '.join(RESOURCE_FIELDS)}")
        try:
            resources = parse_resources(raw, key=key)
        except SpecError as exc:
            raise RequestError(str(exc)) from None
        self._check_bounds(resources, key)
        if environment is None:
            return resources
        effective = self.get_manager().resources(environment, resources)
        if effective.memory is None and self.max_memory:
            # An administrator's memory ceiling applies even when neither the spec nor the request sets one.
            effective = replace(effective, memory=parse_size(self.max_memory))
        self._check_bounds(effective, f"{key} (with the spec's defaults for {environment!r})")
        return effective

    def _check_bounds(self, resources: Resources, key: str) -> None:
        limit_memory = parse_size(self.max_memory) if self.max_memory else _host_memory()

        def seconds(value: float) -> str:
            return f"{value:g}s"

        def number(value: float) -> str:
            return f"{value:g}"

        # (field, value, smallest allowed, largest allowed, formatter); the minima are the engine's own.
        checks: list[tuple[str, float | None, float, float, Callable[[Any], str]]] = [
            ("cpus", resources.cpus, MIN_CPUS, self.max_cpus, number),
            ("memory", resources.memory, MIN_MEMORY, limit_memory, format_size),
            ("memory_swap", resources.memory_swap, MIN_MEMORY, limit_memory, format_size),
            ("shm_size", resources.shm_size, 1 << 20, limit_memory, format_size),
            ("pids", resources.pids, MIN_PIDS, self.max_pids, str),
            ("timeout", resources.timeout, 1.0, self.max_timeout, seconds),
        ]
        for name, value, minimum, maximum, show in checks:
            if value is None:
                continue
            if name == "memory_swap" and value == -1:
                raise RequestError(f"{key}.memory_swap: unlimited swap (-1) is not allowed through this server")
            if value < minimum:
                raise RequestError(
                    f"{key}.{name}: {show(value)} is below the smallest allowed, {show(minimum)}; "
                    "leave it out for the spec's default"
                )
            if maximum and value > maximum:
                raise RequestError(f"{key}.{name}: {show(value)} is over this server's maximum of {show(maximum)}")
        if resources.memory_swap is not None:
            if resources.memory is None:
                raise RequestError(f"{key}.memory_swap: needs memory too (swap is limited together with memory)")
            if resources.memory_swap < resources.memory:
                raise RequestError(
                    f"{key}.memory_swap: {format_size(resources.memory_swap)} is less than memory "
                    f"({format_size(resources.memory)}); it is memory plus swap"
                )
        gpus = resources.gpus
        count = self.max_gpus if gpus == "all" else (len(gpus) if isinstance(gpus, tuple) else int(gpus or 0))
        if isinstance(gpus, int) and gpus < 0:
            raise RequestError(f"{key}.gpus: {gpus} is not a number of GPUs; use 0 or more, 'all', or device ids")
        if count and count > self.max_gpus or (gpus and not self.max_gpus):
            shown = f"'{','.join(gpus)}' ({count} GPUs)" if isinstance(gpus, tuple) else repr(gpus)
            raise RequestError(f"{key}.gpus: {shown} is over this server's maximum of {self.max_gpus} GPUs")
        if resources.network and not self.allow_network:
            raise RequestError(
                f"{key}.network: this server allows no network access (c.ContainersService.allow_network)"
            )


def _root_relative(root: str, path: str) -> str | None:
    """``path`` relative to the server root, with ``/`` separators; None when it is outside the root."""
    base, target = Path(root).resolve(), Path(path).resolve()
    return target.relative_to(base).as_posix() if base == target or base in target.parents else None


def _host_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 62
