"""The Docker Engine backend (local socket, ``DOCKER_HOST``, ssh:// or tcp+TLS), through the docker SDK.

Builds go through the engine's own BuildKit (``POST /build?version=2``): it is the only builder on a
stock engine that supports cache mounts, which keep the uv cache warm across builds so that adding one
package costs seconds instead of a full reinstall.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from typing import Any

from traitlets import Float, Unicode

from ..errors import (
    BackendError,
    BuildError,
    EngineUnavailableError,
    GpuUnavailableError,
    NotFoundError,
    OutOfMemoryError,
    RunTimeoutError,
)
from ..spec.model import Resources
from ..units import format_duration, format_size
from . import buildkit
from .base import MANAGED_LABEL, BuildEvent, ContainerBackend, OutputCallback, RunRequest, RunResult

LOG_TAIL_LINES = 25
_GPU_REFUSALS = ("could not select device driver", "nvidia-container-cli", "unknown or invalid runtime name: nvidia")


class DockerBackend(ContainerBackend):
    """Talks to one Docker engine. Nothing touches the engine until the first call."""

    base_url = Unicode(
        None,
        allow_none=True,
        config=True,
        help="Docker engine address (unix://, tcp://, ssh://). Unset: DOCKER_HOST, else the local socket.",
    )
    api_timeout = Float(120.0, config=True, help="Seconds to wait for an answer to one engine API call.")
    user = Unicode(
        "auto",
        config=True,
        help="uid:gid that containers run as. 'auto': the host user's ids, so files written to the mounted "
        "workspace belong to them, or 1000:1000 (the image's user) when the host user is root. "
        "Never root by default.",
    )

    _client: Any = None

    @property
    def client(self) -> Any:
        """The docker SDK client, created on first use (no engine access at import or construction)."""
        if self._client is None:
            import docker

            try:
                if self.base_url:
                    self._client = docker.DockerClient(base_url=self.base_url, version="auto", timeout=self.api_timeout)
                else:
                    self._client = docker.from_env(timeout=self.api_timeout)
            except docker.errors.DockerException as exc:
                raise EngineUnavailableError(_unreachable(self.base_url, exc)) from None
        return self._client

    @property
    def api(self) -> Any:
        return self.client.api

    # ------------------------------------------------------------------ engine and images
    def engine_info(self) -> dict:
        info = self._call(self.client.info)
        version = self._call(self.client.version)
        runtimes = sorted((info.get("Runtimes") or {}).keys())
        return {
            "version": version.get("Version"),
            "api_version": version.get("ApiVersion"),
            "os": info.get("OperatingSystem"),
            "architecture": info.get("Architecture"),
            "storage_driver": info.get("Driver"),
            "cgroup_version": info.get("CgroupVersion"),
            "cpus": info.get("NCPU"),
            "memory": info.get("MemTotal"),
            "runtimes": runtimes,
            "gpu_runtimes": [r for r in runtimes if "nvidia" in r],
            "cdi_devices": [d.get("ID") for d in info.get("CDISpecDirs", []) or [] if isinstance(d, dict)],
            "address": self.api.base_url,
        }

    def image_id(self, reference: str) -> str | None:
        import docker

        try:
            return self._call(self.api.inspect_image, reference)["Id"]
        except docker.errors.ImageNotFound:
            return None

    def image_labels(self, reference: str) -> dict[str, str]:
        import docker

        try:
            return self._call(self.api.inspect_image, reference)["Config"].get("Labels") or {}
        except docker.errors.ImageNotFound:
            raise NotFoundError(f"no image {reference!r} on the engine") from None

    def list_images(self) -> list[dict]:
        images = self._call(self.api.images, filters={"label": MANAGED_LABEL})
        return [
            {
                "id": image["Id"],
                "tags": image.get("RepoTags") or [],
                "labels": image.get("Labels") or {},
                "size": image.get("Size"),
                "created": image.get("Created"),
            }
            for image in images
        ]

    def remove_image(self, reference: str) -> None:
        import docker

        try:
            self._call(self.api.remove_image, reference, force=False, noprune=False)
        except docker.errors.ImageNotFound:
            pass

    # ------------------------------------------------------------------ build
    def build(
        self,
        context: bytes,
        *,
        tag: str,
        labels: Mapping[str, str],
        buildargs: Mapping[str, str],
        no_cache: bool = False,
    ) -> Iterator[BuildEvent]:
        api = self.api
        params = {
            "t": tag,
            "version": "2",
            "rm": "1",
            "forcerm": "1",
            "pull": "0",
            "labels": json.dumps(dict(labels)),
            "buildargs": json.dumps(dict(buildargs)),
        }
        if no_cache:
            params["nocache"] = "1"
        try:
            response = api.post(
                api._url("/build"),
                params=params,
                data=context,
                headers={"Content-Type": "application/x-tar"},
                stream=True,
                timeout=None,
            )
            api._raise_for_status(response)
        except Exception as exc:  # noqa: BLE001 - mapped to our errors below
            raise self._map_error(exc, f"starting the build of {tag}") from None
        yield from _BuildStream(tag).events(api._stream_helper(response, decode=True))

    # ------------------------------------------------------------------ run
    def container_options(self, request: RunRequest) -> dict[str, Any]:
        """The ``containers.create`` arguments for a request: limits, non-root user, no privileges.

        Kept separate from :meth:`run` so the exact request sent to the engine is inspectable.
        """
        import docker

        r = request.resources
        options: dict[str, Any] = {
            "image": request.image,
            "command": list(request.command) or None,
            "user": self.container_user(),
            "labels": {**request.labels, MANAGED_LABEL: "true"},
            # HOME must be writable for whichever uid runs (pip caches, matplotlib, IPython history).
            "environment": {
                "HOME": "/tmp/home" if self.container_user() != "1000:1000" else "/home/jovyan",
                **request.environment,
            },
            "working_dir": request.working_dir,
            "name": request.name,
            "detach": True,
            "init": True,
            "security_opt": ["no-new-privileges"],
            "cap_drop": ["ALL"],
            "privileged": False,
            "network_mode": "none" if r.network is False else "bridge",
            "mounts": [
                docker.types.Mount(target=m.target, source=str(m.source), type="bind", read_only=m.read_only)
                for m in request.mounts
            ],
        }
        if request.entrypoint is not None:
            options["entrypoint"] = list(request.entrypoint)
        if r.cpus is not None:
            options["nano_cpus"] = int(r.cpus * 1e9)
        if r.memory is not None:
            options["mem_limit"] = r.memory
            # Without an explicit swap limit Docker allows as much swap again, which hides OOMs.
            options["memswap_limit"] = r.memory_swap if r.memory_swap is not None else r.memory
        elif r.memory_swap is not None:
            raise BackendError("--memory-swap needs --memory: swap is limited together with memory")
        if r.shm_size is not None:
            options["shm_size"] = r.shm_size
        if r.pids is not None:
            options["pids_limit"] = r.pids
        device_requests = gpu_device_requests(r)
        if device_requests:
            options["device_requests"] = device_requests
        return options

    def container_user(self) -> str:
        if self.user != "auto":
            return self.user
        import os

        uid, gid = os.getuid(), os.getgid()
        local = not self.base_url or self.base_url.startswith("unix://")
        return f"{uid}:{gid}" if uid != 0 and local else "1000:1000"

    def create(self, request: RunRequest) -> Any:
        """Create (not start) a container; the caller owns its removal."""
        try:
            return self._call(self.client.containers.create, **self.container_options(request))
        except Exception as exc:  # noqa: BLE001
            raise self._map_error(exc, f"creating a container from {request.image}", request.resources) from None

    def start(self, container: Any, resources: Resources) -> None:
        try:
            self._call(container.start)
        except Exception as exc:  # noqa: BLE001
            raise self._map_error(exc, f"starting container {container.short_id}", resources) from None

    def run(
        self,
        request: RunRequest,
        *,
        stdout: OutputCallback | None = None,
        stderr: OutputCallback | None = None,
    ) -> RunResult:
        started = time.monotonic()
        container = self.create(request)
        try:
            # Attach before start: attaching later either misses early output or (with logs=True) repeats it.
            stream = self._call(
                self.api.attach, container.id, stdout=True, stderr=True, stream=True, logs=False, demux=True
            )
            pump = threading.Thread(target=self._pump, args=(container, stream, stdout, stderr), daemon=True)
            self.start(container, request.resources)
            pump.start()
            timeout = request.resources.timeout
            exit_code = self._wait(container, timeout)
            if exit_code is None:
                self._kill(container)
                pump.join(5)
                raise RunTimeoutError(
                    f"the command ran longer than its {format_duration(timeout or 0)} timeout and was killed; "
                    "raise --timeout (or resources.timeout in the spec) if it needs longer",
                    exit_code=124,
                )
            pump.join(10)
            state = self._call(self.api.inspect_container, container.id)["State"]
            if state.get("OOMKilled") and exit_code != 0:
                limit = request.resources.memory
                raise OutOfMemoryError(
                    f"the container ran out of its {format_size(limit) if limit else 'memory'} memory limit and "
                    f"was killed (exit code {exit_code}); raise --memory (or resources.memory in the spec)",
                    exit_code=exit_code,
                )
            return RunResult(exit_code=exit_code, seconds=time.monotonic() - started, container_id=container.id)
        finally:
            self.remove_container(container.id)

    def _pump(self, container: Any, stream: Any, stdout: OutputCallback | None, stderr: OutputCallback | None) -> None:
        try:
            for out, err in stream:
                if out and stdout:
                    stdout(out)
                if err and stderr:
                    stderr(err)
        except Exception:  # noqa: BLE001 - the container went away while streaming; nothing to report
            self.log.debug("output stream of %s ended", container.id, exc_info=True)

    def _wait(self, container: Any, timeout: float | None) -> int | None:
        import requests

        try:
            result = container.wait(timeout=timeout) if timeout else container.wait()
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            if timeout is None:
                raise
            return None
        return int(result.get("StatusCode", -1))

    def _kill(self, container: Any) -> None:
        import docker

        try:
            container.kill()
        except docker.errors.APIError:
            pass

    def list_containers(self, *, all: bool = False) -> list[dict]:
        containers = self._call(self.api.containers, all=all, filters={"label": MANAGED_LABEL})
        return [
            {
                "id": c["Id"],
                "name": (c.get("Names") or ["/"])[0].lstrip("/"),
                "image": c.get("Image"),
                "state": c.get("State"),
                "status": c.get("Status"),
                "labels": c.get("Labels") or {},
                "created": c.get("Created"),
                "mounts": [m.get("Source") for m in c.get("Mounts") or [] if m.get("Source")],
            }
            for c in containers
        ]

    def remove_container(self, container_id: str) -> None:
        import docker

        try:
            self._call(self.api.remove_container, container_id, force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if "already in progress" not in str(exc):
                raise

    # ------------------------------------------------------------------ errors
    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        import docker
        import requests

        try:
            return fn(*args, **kwargs)
        except (requests.exceptions.ConnectionError, docker.errors.DockerException) as exc:
            if isinstance(exc, docker.errors.APIError | docker.errors.NotFound | docker.errors.ImageNotFound):
                raise
            if isinstance(exc, requests.exceptions.ReadTimeout):
                raise
            raise EngineUnavailableError(_unreachable(self.base_url, exc)) from None

    def _map_error(self, exc: Exception, doing: str, resources: Resources | None = None) -> Exception:
        import docker

        if isinstance(exc, BackendError):
            return exc
        text = str(getattr(exc, "explanation", None) or exc)
        if resources is not None and resources.gpus and any(s in text for s in _GPU_REFUSALS):
            return GpuUnavailableError(
                f"GPUs were requested ({_describe_gpus(resources)}) but the Docker engine cannot provide them: "
                f"{text}. Install the NVIDIA Container Toolkit on the engine's host, run "
                "'nvidia-ctk runtime configure --runtime=docker' and restart dockerd; or run without --gpus"
            )
        if isinstance(exc, docker.errors.ImageNotFound):
            return NotFoundError(f"{doing}: {text}; build the environment first ('jupyter-containers build ENV')")
        if isinstance(exc, docker.errors.APIError):
            return BackendError(f"{doing}: the Docker engine refused: {text}")
        return EngineUnavailableError(_unreachable(self.base_url, exc))


def gpu_device_requests(resources: Resources) -> list[Any]:
    """Docker ``DeviceRequest``s for ``gpus`` (count, "all" or ids), with the ``gpu`` capability."""
    import docker

    gpus = resources.gpus
    if gpus is None or gpus == 0:
        return []
    if gpus == "all":
        return [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
    if isinstance(gpus, tuple):
        return [docker.types.DeviceRequest(device_ids=list(gpus), capabilities=[["gpu"]])]
    return [docker.types.DeviceRequest(count=int(gpus), capabilities=[["gpu"]])]


def _describe_gpus(resources: Resources) -> str:
    gpus = resources.gpus
    return f"--gpus {','.join(gpus) if isinstance(gpus, tuple) else gpus}"


def _unreachable(base_url: str | None, exc: Exception) -> str:
    import os

    where = base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    return (
        f"no Docker engine answers at {where} ({exc.__class__.__name__}: {str(exc)[:200]}); "
        "start one (run 'bash scripts/setup.sh', or 'sudo systemctl start docker'), "
        "or point DOCKER_HOST / c.DockerBackend.base_url at a running engine"
    )


class _BuildStream:
    """Turns the engine's BuildKit (or classic) build stream into BuildEvents and a precise BuildError."""

    def __init__(self, tag: str):
        self.tag = tag
        self.vertices: dict[str, dict[str, Any]] = {}
        self.partial: dict[str, bytes] = {}
        self.tails: dict[str, deque[str]] = {}

    def events(self, messages: Iterator[dict]) -> Iterator[BuildEvent]:
        error = None
        for message in messages:
            if message.get("id") == "moby.buildkit.trace" and "aux" in message:
                vertexes, logs = buildkit.decode_trace(message["aux"])
                for vertex in vertexes:
                    yield from self._vertex(vertex)
                for log in logs:
                    yield from self._log(log)
            elif "error" in message:
                error = message.get("errorDetail", {}).get("message") or message["error"]
            elif "stream" in message:  # classic builder output, when an engine falls back to it
                for line in str(message["stream"]).splitlines():
                    if line.strip():
                        yield BuildEvent("log", step="", text=line)
        if error is not None:
            raise self._failure(error)

    def _vertex(self, vertex: buildkit.Vertex) -> Iterator[BuildEvent]:
        state = self.vertices.setdefault(vertex.digest, {"name": vertex.name, "started": False, "done": False})
        if vertex.name:
            state["name"] = vertex.name
        if vertex.error:
            state["error"] = vertex.error
        position = buildkit.step_position(state["name"])
        index, total = position if position else (None, None)
        if position is None:
            return
        if (vertex.started or vertex.cached) and not state["started"]:
            state["started"] = True
            yield BuildEvent("step", step=state["name"], text=state["name"], index=index, total=total)
        if (vertex.completed or vertex.cached) and not state["done"]:
            state["done"] = True
            yield BuildEvent("done", step=state["name"], index=index, total=total, cached=vertex.cached)

    def _log(self, log: buildkit.VertexLog) -> Iterator[BuildEvent]:
        data = self.partial.pop(log.vertex, b"") + log.data
        *complete, rest = data.split(b"\n")
        if rest:
            self.partial[log.vertex] = rest
        name = self.vertices.get(log.vertex, {}).get("name", "")
        tail = self.tails.setdefault(log.vertex, deque(maxlen=LOG_TAIL_LINES))
        for raw in complete:
            line = raw.decode("utf-8", "replace").rsplit("\r", 1)[-1].rstrip()
            tail.append(line)
            yield BuildEvent("log", step=name, text=line, stream="stderr" if log.stream == 2 else "stdout")

    def _failure(self, error: str) -> BuildError:
        failing = [d for d, v in self.vertices.items() if v.get("error") and "context canceled" not in v["error"]]
        digest = failing[-1] if failing else None
        step = self.vertices[digest]["name"] if digest else None
        tail = list(self.tails.get(digest, ())) if digest else []
        if digest and self.partial.get(digest):
            tail.append(self.partial[digest].decode("utf-8", "replace"))
        return BuildError(f"building image {self.tag} failed: {error}", step=step, log_tail=tail[-LOG_TAIL_LINES:])
