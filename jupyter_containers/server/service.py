"""What the REST handlers call: environments, builds, containers with usage, engine, validated requests.

No tornado here: the handlers run these blocking calls in worker threads, and this module holds the
policy for what a request may ask of the engine (the Docker socket is root-equivalent).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from traitlets import Bool, Float, Instance, Int, Unicode, default
from traitlets.config import LoggingConfigurable

from ..backends.base import LABEL_PREFIX
from ..build.lock import read_lock
from ..build.tracker import BuildTracker
from ..errors import NotFoundError, SpecError
from ..manager import ContainersManager
from ..spec.model import Resources
from ..spec.parse import find_spec_file, parse_resources
from ..units import format_size, parse_size
from ..usage import UsageReader, stats_usage

RESOURCE_FIELDS = ("cpus", "memory", "memory_swap", "gpus", "shm_size", "pids", "timeout", "network")


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
    jobs_db = Unicode(
        "",
        config=True,
        help="SQLite file of notebook jobs. Empty: one per server root in Jupyter's data folder.",
    )
    jobs_dir = Unicode("jobs", config=True, help="Folder (relative to the server root) for job output notebooks.")
    max_running_jobs = Int(2, config=True, help="Notebook jobs run at once; later ones wait, queued.")
    install_kernelspecs = Bool(
        True,
        config=True,
        help="At start, install a kernelspec per environment of the workspace (into this Python's prefix), so "
        "container kernels appear in the launcher with their resources in the name.",
    )

    manager = Instance(ContainersManager, allow_none=True)

    @default("max_cpus")
    def _default_max_cpus(self) -> float:
        return float(os.cpu_count() or 1)

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.builds = BuildTracker(self._run_build)
        self.usage_reader = UsageReader()
        self._jobs: Any = None

    @property
    def jobs(self) -> Any:
        """The job manager, created on first use (it marks jobs a previous server left running)."""
        if self._jobs is None:
            import hashlib

            from jupyter_core.paths import jupyter_data_dir

            from ..jobs.manager import JobManager
            from ..jobs.store import JobStore

            path = self.jobs_db or str(
                Path(jupyter_data_dir())
                / "jupyter_containers"
                / f"jobs-{hashlib.sha256(str(Path(self.root_dir).resolve()).encode()).hexdigest()[:12]}.sqlite"
            )
            self._jobs = JobManager(
                self, JobStore(Path(path)), outputs_dir=self.jobs_dir, max_running=self.max_running_jobs
            )
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
            self.manager = ContainersManager(spec_path=path, parent=self)
        return self.manager

    def environments(self) -> list[dict[str, Any]]:
        manager = self.get_manager()
        spec = manager.spec()
        return [self._environment(manager, env) for env in spec.environments.values()]

    def environment(self, name: str) -> dict[str, Any]:
        manager = self.get_manager()
        env = manager.environment(name)
        detail = self._environment(manager, env)
        detail["spec"] = env.to_dict()
        lock = read_lock(env.spec_dir / "containers.lock").get(name)
        detail["lock"] = lock.to_toml() if lock else None
        return detail

    def _environment(self, manager: ContainersManager, env: Any) -> dict[str, Any]:
        spec_file = str(manager.spec_file())
        running = self.builds.running(spec_file, env.name)
        latest = self.builds.latest(spec_file, env.name)
        status = manager.builder.status(env)
        if running is not None:
            status["status"] = "building"
        elif latest is not None and latest.status == "failed" and status["status"] != "built":
            status["status"] = "failed"
        return {
            "name": env.name,
            "description": env.description,
            "spec_file": spec_file,
            **status,
            "build": (running or latest).to_dict() if (running or latest) else None,
            "resources": env.resources.to_dict(),
            "resources_text": env.resources.describe(),
        }

    def sync_kernelspecs(self) -> list[str]:
        """Install a kernelspec per environment; remove ours whose environment left the spec file."""
        from jupyter_client.kernelspec import KernelSpecManager
        from jupyter_core.paths import ENV_JUPYTER_PATH

        from ..kernel.kernelspec import install_kernel_spec

        # The environment's own kernel folder (<sys.prefix>/share/jupyter), where `ipykernel install
        # --sys-prefix` puts kernels: per virtualenv, no root needed.
        prefix = Path(ENV_JUPYTER_PATH[0]).parent.parent
        manager = self.get_manager()
        spec_file = str(manager.spec_file())
        installed = []
        for name, env in manager.spec().environments.items():
            folder = install_kernel_spec(
                name,
                manager.spec_file(),
                {},
                name=f"containers-{name}",
                display_name=f"{name} (container, {env.resources.describe()})",
                prefix=str(prefix),
            )
            installed.append(Path(folder).name)
        ksm = KernelSpecManager()
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

    # ------------------------------------------------------------------ builds
    def start_build(self, name: str) -> tuple[dict[str, Any], bool]:
        manager = self.get_manager()
        manager.environment(name)  # 404 before any thread starts
        build, new = self.builds.start(str(manager.spec_file()), name)
        return build.to_dict(), new

    def _run_build(self, spec_file: str, name: str, on_event: Any) -> Any:
        manager = ContainersManager(spec_path=spec_file, parent=self)
        return manager.build(name, on_event=on_event)

    def build(self, build_id: str) -> Any:
        build = self.builds.get(build_id)
        if build is None:
            raise NotFoundError(f"no build {build_id!r} (builds are kept while the server runs)")
        return build

    # ------------------------------------------------------------------ containers
    def containers(self) -> list[dict[str, Any]]:
        backend = self.get_manager().backend
        listed = backend.list_containers(all=False)
        out = []
        for container in listed:
            labels = container["labels"]
            usage = self.usage_reader.usage(container["id"])
            if usage is None:
                try:
                    usage = stats_usage(backend.client.containers.get(container["id"]))
                except Exception:  # noqa: BLE001 - a container that just went away has no usage
                    usage = None
            try:
                resources = json.loads(labels.get(f"{LABEL_PREFIX}.resources", "{}"))
            except ValueError:
                resources = {}
            out.append(
                {
                    "id": container["id"],
                    "name": container["name"],
                    "environment": labels.get(f"{LABEL_PREFIX}.env"),
                    "role": labels.get(f"{LABEL_PREFIX}.role"),
                    "image": container["image"],
                    "state": container["state"],
                    "status": container["status"],
                    "created": container["created"],
                    "resources": resources,
                    "gpus": resources.get("gpus"),
                    "usage": usage,
                }
            )
        self.usage_reader.forget({c["id"] for c in listed})
        return out

    def _ours(self, container_id: str) -> dict[str, Any]:
        for container in self.get_manager().backend.list_containers(all=True):
            if container["id"] == container_id or container["id"].startswith(container_id) and len(container_id) >= 12:
                return container
        raise NotFoundError(f"no container {container_id!r} created by jupyter-containers")

    def stop_container(self, container_id: str) -> None:
        container = self._ours(container_id)
        self.get_manager().backend.remove_container(container["id"])

    def container_logs(self, container_id: str, tail: int = 500) -> str:
        container = self._ours(container_id)
        api = self.get_manager().backend.api
        return api.logs(container["id"], tail=tail).decode("utf-8", "replace")

    # ------------------------------------------------------------------ engine
    def engine(self) -> dict[str, Any]:
        from ..errors import EngineUnavailableError

        try:
            info = self.get_manager().engine()
        except EngineUnavailableError as exc:
            return {"reachable": False, "error": str(exc)}
        except SpecError:
            from ..backends.docker import DockerBackend

            try:
                info = DockerBackend(parent=self).engine_info()
            except EngineUnavailableError as exc:
                return {"reachable": False, "error": str(exc)}
        return {"reachable": True, "gpu": bool(info["gpu_runtimes"]), **info}

    # ------------------------------------------------------------------ request validation
    def validate_resources(self, raw: Any, *, key: str = "resources") -> Resources:
        """Resources from a request body, within the configured maxima; anything else is refused."""
        if raw is None:
            return Resources()
        if not isinstance(raw, dict):
            raise SpecError(f"{key}: expected an object with some of {', '.join(RESOURCE_FIELDS)}")
        unknown = sorted(set(raw) - set(RESOURCE_FIELDS))
        if unknown:
            raise SpecError(f"{key}.{unknown[0]}: unknown resource; allowed: {', '.join(RESOURCE_FIELDS)}")
        resources = parse_resources(raw, key=key)
        limit_memory = parse_size(self.max_memory) if self.max_memory else _host_memory()
        checks = [
            ("cpus", resources.cpus, self.max_cpus, str),
            ("memory", resources.memory, limit_memory, format_size),
            ("shm_size", resources.shm_size, limit_memory, format_size),
            ("pids", resources.pids, self.max_pids, str),
            ("timeout", resources.timeout, self.max_timeout, lambda s: f"{s:g}s"),
        ]
        for name, value, maximum, show in checks:
            if value is not None and maximum and value > maximum:
                raise SpecError(f"{key}.{name}: {show(value)} is over this server's maximum of {show(maximum)}")
        gpus = resources.gpus
        count = self.max_gpus if gpus == "all" else (len(gpus) if isinstance(gpus, tuple) else (gpus or 0))
        if count and count > self.max_gpus or (gpus and not self.max_gpus):
            raise SpecError(f"{key}.gpus: {gpus!r} is over this server's maximum of {self.max_gpus} GPUs")
        if resources.network and not self.allow_network:
            raise SpecError(f"{key}.network: this server allows no network access (c.ContainersService.allow_network)")
        return resources


def _host_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 62
