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

from ..errors import ContainersError, NotFoundError, RequestError, SpecError
from ..frontend import RESOURCE_FIELDS
from ..images.lock import read_lock
from ..manager import ContainersManager
from ..redact import redact_data
from ..spec.model import Resources
from ..spec.parse import find_spec_file, parse_resources
from ..units import format_size, parse_size
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

    manager = Instance(ContainersManager, allow_none=True)

    @default("max_cpus")
    def _default_max_cpus(self) -> float:
        return float(os.cpu_count() or 1)

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.builds = BuildTracker(self._run_build)
        self._watch: EngineWatch | None = None
        self._watch_lock = threading.Lock()
        self._statuses: dict[tuple[str, str], Snapshot] = {}
        self._listing: Snapshot[list[dict[str, Any]]] = Snapshot()
        self._usage: Snapshot[dict[str, Any]] = Snapshot()
        self._merged: Snapshot[tuple[list[dict[str, Any]], str]] = Snapshot()
        self._jobs: Any = None

    @property
    def jobs(self) -> Any:
        """The job manager (configured as ``c.JobManager``), created on first use (it marks jobs a previous
        server left running)."""
        if self._jobs is None:
            from ..jobs.manager import JobManager

            self._jobs = JobManager(parent=self)
        return self._jobs

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

    def environments(self) -> list[dict[str, Any]]:
        manager = self.get_manager()
        spec = manager.spec()
        return [self._environment(manager, env) for env in spec.environments.values()]

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

    def _status(self, manager: ContainersManager, env: Any, build: Any) -> dict[str, Any]:
        """``builder.status(env)``, computed once per change: keyed on the environment as written, the
        files it reads (its requirement files, the lock), this server's last build of it (whose end must
        show at once, before the engine's event arrives) and the engine's image events."""
        generation = self.engine_watch.generation("image")
        files = [env.spec_dir / "containers.lock", *(env.spec_dir / r for r in env.requirements)]
        key = (
            str(env.source),
            json.dumps(env.to_dict(), sort_keys=True, default=str),
            stamps(files),
            (build.id, build.status) if build is not None else None,
            generation,
        )
        snapshot = self._statuses.setdefault((str(env.source), env.name), Snapshot())
        return dict(snapshot.get(key, lambda: manager.builder.status(env), reuse=generation is not None))

    def environment(self, name: str) -> dict[str, Any]:
        manager = self.get_manager()
        env = manager.environment(name)
        detail = self._environment(manager, env)
        detail["spec"] = redact_data(env.to_dict())
        lock = read_lock(env.spec_dir / "containers.lock").get(name)
        detail["lock"] = redact_data(lock.to_toml()) if lock else None
        return detail

    def _environment(self, manager: ContainersManager, env: Any) -> dict[str, Any]:
        spec_file = str(manager.spec_file())
        running = self.builds.running(spec_file, env.name)
        latest = self.builds.latest(spec_file, env.name)
        status = self._status(manager, env, latest)
        if running is not None:
            status["status"] = "building"
        elif latest is not None and latest.status == "failed" and status["status"] != "built":
            status["status"] = "failed"
        return {
            "name": env.name,
            "description": env.description,
            "spec_file": spec_file,
            **status,
            "build": shown.to_dict() if (shown := running or latest) is not None else None,
            "resources": env.resources.to_dict(),
            "resources_text": env.resources.describe(),
        }

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
    def start_build(self, name: str) -> tuple[dict[str, Any], bool]:
        manager = self.get_manager()
        manager.environment(name)  # 404 before any thread starts
        build, new = self.builds.start(str(manager.spec_file()), name)
        return build.to_dict(), new

    def _run_build(self, spec_file: str, name: str, on_event: Any) -> dict[str, Any]:
        """One build for the tracker: the build's result, with the image's size (the sidebar's summary)."""
        manager = ContainersManager.discover(spec_file, parent=self)
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
    def containers(self) -> list[dict[str, Any]]:
        """Our containers with live usage, computed once for all the requests that arrive together, and kept
        while no container event happened for at most ``LIVE_MAX_AGE`` seconds: every start, stop, death or
        removal shows at once; only what changes without an event (usage figures, the "Up 3 minutes" text)
        may be that much behind. Without the event stream, computed for every request."""
        return self._containers()[0]

    def containers_json(self) -> str:
        """``GET containers``' answer, serialized once per listing (twenty sidebars get the same text)."""
        return self._containers()[1]

    def _containers(self) -> tuple[list[dict[str, Any]], str]:
        manager = self.get_manager()
        generation = self.engine_watch.generation("container")
        reuse = generation is not None
        key = (str(manager.spec_file()), generation)
        listed = self._listing.get(key, lambda: manager.containers(usage=False), reuse=reuse, max_age=LIVE_MAX_AGE)
        ids = tuple(c["id"] for c in listed)
        figures = self._usage.get(
            (key, ids), lambda: manager.backend.usage(list(ids)), reuse=reuse, max_age=LIVE_MAX_AGE
        )

        current = self._current_images(manager)

        def merge() -> tuple[list[dict[str, Any]], str]:
            rows = [
                {
                    **c,
                    "usage": figures[c["id"]].to_dict() if c["id"] in figures else None,
                    # Runs an older image than the environment's current build (restart it on the new one).
                    "outdated": bool(current.get(c["environment"])) and c["image"] != current.get(c["environment"]),
                }
                for c in listed
            ]
            return rows, json.dumps({"containers": rows})

        # Keyed on the results themselves (compared by value; the same objects compare at once).
        return self._merged.get((listed, figures, current), merge)

    def _current_images(self, manager: ContainersManager) -> dict[str, str]:
        """Environment → the image its spec builds now, when that image exists (the environments' cached
        status: computed once per change of the spec, its files or the engine's images)."""
        try:
            return {
                env["name"]: env["image"]
                for env in self.environments()
                if env.get("status") == "built" and env.get("image")
            }
        except ContainersError:
            return {}

    def stop_container(self, container_id: str) -> None:
        self.get_manager().stop_container(container_id, by="the JupyterLab sidebar")
        # The engine's event follows within milliseconds; the client that stopped it may ask before that.
        self._listing.invalidate()

    def container_logs(self, container_id: str, tail: int = 500) -> str:
        return self.get_manager().container_logs(container_id, tail=tail)

    # ------------------------------------------------------------------ engine
    def engine(self) -> dict[str, Any]:
        """The engine's state; a workspace without a spec file still has an engine to show."""
        from ..errors import EngineUnavailableError

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


def _host_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 62
