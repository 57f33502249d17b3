"""The Docker Engine backend (local socket, ``DOCKER_HOST``, ssh:// or tcp+TLS), through the docker SDK.

The only module that imports ``docker`` (with its BuildKit helper): it hands the core typed results and
:class:`DockerContainer` handles, and maps every docker-py / requests exception to one of our errors in one
place (:func:`map_error`), so that front ends can map our errors to status codes once.

Builds go through the engine's own BuildKit (``POST /build?version=2``): it is the only builder on a
stock engine that supports cache mounts, which keep the uv cache warm across builds so that adding one
package costs seconds instead of a full reinstall.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from typing import IO, Any

from traitlets import Bool, Float, Unicode

from ..errors import (
    BuildError,
    ConflictError,
    ContainersError,
    EngineRefusedError,
    EngineUnavailableError,
    GpuUnavailableError,
    NotFoundError,
    OutOfMemoryError,
    RequestError,
    RunTimeoutError,
)
from ..redact import redact
from ..spec.model import Resources
from ..units import format_duration, format_size
from ..usage import UsageReader
from . import buildkit
from .base import (
    MANAGED_LABEL,
    BuildEvent,
    Container,
    ContainerBackend,
    ContainerInfo,
    ContainerState,
    EngineEvent,
    EngineInfo,
    ImageInfo,
    OutputCallback,
    ProgressCallback,
    RunRequest,
    RunResult,
    Usage,
)

LOG_TAIL_LINES = 25
DEFAULT_SOCKET = "unix:///var/run/docker.sock"
_GPU_REFUSALS = ("could not select device driver", "nvidia-container-cli", "unknown or invalid runtime name: nvidia")


def map_error(exc: BaseException, doing: str, *, address: str, resources: Resources | None = None) -> ContainersError:
    """The one translation of docker-py / requests failures into our errors (docker-py's own
    ``create_api_error_from_http_exception`` is the model): chosen from the response, worded for the user.
    """
    import docker
    import requests
    import urllib3

    if isinstance(exc, ContainersError):
        return exc
    text = " ".join(str(getattr(exc, "explanation", None) or exc).split())[:600]
    if resources is not None and resources.gpus and any(s in text for s in _GPU_REFUSALS):
        return GpuUnavailableError(
            f"GPUs were requested ({_describe_gpus(resources)}) but the Docker engine cannot provide them: "
            f"{text}. Install the NVIDIA Container Toolkit on the engine's host, run "
            "'nvidia-ctk runtime configure --runtime=docker' and restart dockerd; or run without --gpus"
        )
    if isinstance(exc, docker.errors.ImageNotFound):
        return NotFoundError(f"{doing}: {text}; build the environment first ('jupyter-containers build ENV')")
    if isinstance(exc, docker.errors.NotFound):
        return NotFoundError(f"{doing}: {text}")
    if isinstance(exc, docker.errors.APIError):
        status = getattr(exc, "status_code", None)
        if status == 409:
            return ConflictError(f"{doing}: {text}")
        return EngineRefusedError(f"{doing}: the Docker engine refused: {text}")
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return EngineUnavailableError(
            f"{doing}: the Docker engine at {address} did not answer in time ({text}); check that it is not "
            "overloaded, or raise c.DockerBackend.api_timeout"
        )
    if isinstance(exc, urllib3.exceptions.HTTPError):
        # Raised from a streamed answer (build output, logs, attach) that docker-py reads from the raw socket:
        # the engine closed the connection in the middle of it.
        return EngineUnavailableError(
            f"{doing}: the connection to the Docker engine at {address} broke ({text}); the engine stopped or "
            "restarted. Check it ('docker info') and try again"
        )
    if isinstance(exc, docker.errors.DockerException | requests.exceptions.RequestException | OSError):
        return EngineUnavailableError(_unreachable(address, exc))
    raise exc  # a bug of ours, not an engine failure: let it surface with its traceback


class DockerContainer(Container):
    """A container of one Docker engine, behind the engine-neutral :class:`Container` interface."""

    def __init__(self, backend: DockerBackend, container_id: str, resources: Resources | None = None):
        self.backend = backend
        self.id = container_id
        self.resources = resources

    def _call(self, doing: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return self.backend._call(doing, fn, *args, resources=self.resources, **kwargs)

    def start(self) -> None:
        self._call(f"starting container {self.short_id}", self.backend.api.start, self.id)

    def wait(self, timeout: float | None = None) -> int | None:
        import requests

        try:
            result = self.backend.api.wait(self.id, timeout=timeout)
        except requests.exceptions.ReadTimeout:
            return None
        except requests.exceptions.ConnectionError as exc:
            if timeout is not None:
                return None  # urllib3 reports a read timeout on a unix socket this way
            raise map_error(exc, f"waiting for container {self.short_id}", address=self.backend.address) from None
        except Exception as exc:  # noqa: BLE001 - mapped to ours
            mapped = map_error(exc, f"waiting for container {self.short_id}", address=self.backend.address)
            if isinstance(mapped, NotFoundError):
                return self.state().exit_code
            raise mapped from None
        return int(result.get("StatusCode", -1))

    def kill(self, signum: int = 9) -> None:
        try:
            self._call(f"signalling container {self.short_id}", self.backend.api.kill, self.id, signal=int(signum))
        except (NotFoundError, ConflictError):
            return  # gone, or not running (409): nothing to signal
        except EngineRefusedError as exc:
            if "is not running" not in str(exc):
                raise

    def state(self) -> ContainerState:
        try:
            state = self._call(f"inspecting container {self.short_id}", self.backend.api.inspect_container, self.id)[
                "State"
            ]
        except NotFoundError:
            return ContainerState("removed", exit_code=-1)
        return ContainerState(
            str(state.get("Status") or "unknown"),
            exit_code=state.get("ExitCode"),
            oom_killed=bool(state.get("OOMKilled")),
        )

    def logs(self, *, tail: int | None = None) -> str:
        data = self._call(
            f"reading the log of container {self.short_id}",
            self.backend.api.logs,
            self.id,
            stdout=True,
            stderr=True,
            tail="all" if tail is None else int(tail),
        )
        return data.decode("utf-8", "replace")

    def remove(self) -> None:
        self.backend.remove_container(self.id)

    def put_files(self, directory: str, files: Mapping[str, bytes]) -> None:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mode = 0o644
                info.mtime = int(time.time())
                tar.addfile(info, io.BytesIO(data))
        self._call(
            f"copying files into container {self.short_id}",
            self.backend.api.put_archive,
            self.id,
            directory,
            buf.getvalue(),
        )

    def get_file(self, path: str) -> bytes:
        stream, _ = self._call(
            f"reading {path} from container {self.short_id}", self.backend.api.get_archive, self.id, path
        )
        buf = io.BytesIO(b"".join(stream))
        with tarfile.open(fileobj=buf) as tar:
            member = next((m for m in tar.getmembers() if m.isfile()), None)
            if member is None:
                raise NotFoundError(f"{path} in container {self.short_id} is not a file")
            extracted = tar.extractfile(member)
            return extracted.read() if extracted is not None else b""


class DockerBackend(ContainerBackend):
    """Talks to one Docker engine. Nothing touches the engine until the first call."""

    kind = "docker"

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
    # TLS client settings for a tcp:// engine run with `dockerd --tlsverify` (a remote host; the test suite's
    # second engine). Any of them set: TLS with them. None set: as before (with base_url unset,
    # DOCKER_TLS_VERIFY / DOCKER_CERT_PATH still apply through docker.utils.kwargs_from_env()).
    tls_ca = Unicode(
        None, allow_none=True, config=True, help="CA certificate (PEM) that signed the engine's (dockerd --tlscacert)."
    )
    tls_cert = Unicode(None, allow_none=True, config=True, help="Client certificate (PEM), with tls_key.")
    tls_key = Unicode(None, allow_none=True, config=True, help="Private key (PEM) of tls_cert.")
    tls_verify = Bool(
        True, config=True, help="With TLS, verify the engine's certificate (against tls_ca, else the system's CAs)."
    )

    _api: Any = None
    _usage_reader: UsageReader | None = None

    # ------------------------------------------------------------------ connection
    @property
    def api(self) -> Any:
        """The low-level docker SDK client, created on first use (no engine access at import or construction).

        Only this module uses it: everything outside gets typed results and :class:`DockerContainer` handles.
        """
        if self._api is None:
            import docker

            try:
                kwargs: dict[str, Any] = (
                    {"base_url": self.base_url} if self.base_url else docker.utils.kwargs_from_env()
                )
                if self.tls_ca or self.tls_cert or self.tls_key:
                    if bool(self.tls_cert) != bool(self.tls_key):
                        raise RequestError("c.DockerBackend.tls_cert and tls_key go together: set both or neither")
                    kwargs["tls"] = docker.tls.TLSConfig(
                        client_cert=(self.tls_cert, self.tls_key) if self.tls_cert else None,
                        ca_cert=self.tls_ca or None,
                        verify=self.tls_verify,
                    )

                class APIClient(docker.APIClient):
                    # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE replace the TLS config's CA (docker-py
                    # #2433): each request's `verify` starts from the client's own (the engine's CA) instead.
                    def merge_environment_settings(self, url, proxies, stream, verify, cert):
                        verify = self.verify if verify is None else verify
                        return super().merge_environment_settings(url, proxies, stream, verify, cert)

                self._api = APIClient(version="auto", timeout=self.api_timeout, **kwargs)
            except RequestError:
                raise
            except Exception as exc:  # noqa: BLE001 - mapped to ours
                raise map_error(exc, "connecting to the Docker engine", address=self.address) from None
        return self._api

    @property
    def address(self) -> str:
        address = self.base_url or os.environ.get("DOCKER_HOST") or DEFAULT_SOCKET
        return "unix://" + address if address.startswith("/") else address

    @property
    def is_local(self) -> bool:
        return self.address.startswith(("unix://", "npipe://"))

    def _call(self, doing: str, fn: Any, *args: Any, resources: Resources | None = None, **kwargs: Any) -> Any:
        """Call the engine; every failure leaves as one of our errors (see :func:`map_error`)."""
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - mapped to ours
            raise map_error(exc, doing, address=self.address, resources=resources) from None

    # ------------------------------------------------------------------ engine and images
    def engine_info(self) -> EngineInfo:
        info = self._call("asking the engine for its state", self.api.info)
        version = self._call("asking the engine for its version", self.api.version)
        runtimes = tuple(sorted((info.get("Runtimes") or {}).keys()))
        return EngineInfo(
            kind=self.kind,
            version=version.get("Version"),
            api_version=version.get("ApiVersion"),
            address=self.address,
            os=info.get("OperatingSystem"),
            architecture=info.get("Architecture"),
            storage_driver=info.get("Driver"),
            cgroup_version=info.get("CgroupVersion"),
            cpus=info.get("NCPU"),
            memory=info.get("MemTotal"),
            runtimes=runtimes,
            gpu_runtimes=tuple(r for r in runtimes if "nvidia" in r),
            cdi_devices=tuple(
                str(d["ID"]) for d in info.get("CDISpecDirs", []) or [] if isinstance(d, dict) and d.get("ID")
            ),
        )

    def _inspect_image(self, reference: str) -> dict | None:
        try:
            return self._call(f"inspecting image {reference}", self.api.inspect_image, reference)
        except NotFoundError:
            return None

    def image_id(self, reference: str) -> str | None:
        image = self._inspect_image(reference)
        return image["Id"] if image else None

    def image_labels(self, reference: str) -> dict[str, str]:
        image = self._inspect_image(reference)
        if image is None:
            raise NotFoundError(f"no image {reference!r} on the engine")
        return (image.get("Config") or {}).get("Labels") or {}

    def list_images(self) -> list[ImageInfo]:
        images = self._call("listing images", self.api.images, filters={"label": MANAGED_LABEL})
        return [
            ImageInfo(
                id=image["Id"],
                tags=tuple(t for t in image.get("RepoTags") or () if t != "<none>:<none>"),
                labels=image.get("Labels") or {},
                size=image.get("Size"),
                created=image.get("Created"),
            )
            for image in images
        ]

    def remove_image(self, reference: str) -> None:
        try:
            self._call(f"removing image {reference}", self.api.remove_image, reference, force=False, noprune=False)
        except NotFoundError:
            pass

    def tag_image(self, image: str, reference: str) -> None:
        import docker

        repository, tag = docker.utils.parse_repository_tag(reference)
        self._call(f"tagging {image} as {reference}", self.api.tag, image, repository, tag or "latest", force=True)

    def pull(self, reference: str, *, on_progress: ProgressCallback | None = None) -> str:
        import docker

        repository, tag = docker.utils.parse_repository_tag(reference)
        doing = f"pulling {reference}"
        stream = self._call(doing, self.api.pull, repository, tag=tag or "latest", stream=True, decode=True)
        try:
            for event in stream:
                if isinstance(event, dict) and event.get("error"):
                    raise EngineRefusedError(f"{doing}: {' '.join(str(event['error']).split())[:400]}")
                if on_progress and isinstance(event, dict) and event.get("status"):
                    on_progress(" ".join(str(v) for v in (event.get("id"), event["status"]) if v))
        except ContainersError:
            raise
        except Exception as exc:  # noqa: BLE001 - mapped to ours
            raise map_error(exc, doing, address=self.address) from None
        image_id = self.image_id(reference)
        if image_id is None:
            raise EngineRefusedError(f"{doing}: the pull ended but the engine does not list {reference}")
        return image_id

    def push(self, reference: str, *, on_progress: ProgressCallback | None = None) -> str:
        import docker

        repository, tag = docker.utils.parse_repository_tag(reference)
        doing = f"pushing {reference}"
        stream = self._call(doing, self.api.push, repository, tag=tag or "latest", stream=True, decode=True)
        digest = ""
        try:
            for event in stream:
                if not isinstance(event, dict):
                    continue
                if event.get("error"):
                    raise EngineRefusedError(f"{doing}: {' '.join(str(event['error']).split())[:400]}")
                digest = (event.get("aux") or {}).get("Digest") or digest
                if on_progress and event.get("status"):
                    on_progress(" ".join(str(v) for v in (event.get("id"), event["status"]) if v))
        except ContainersError:
            raise
        except Exception as exc:  # noqa: BLE001 - mapped to ours
            raise map_error(exc, doing, address=self.address) from None
        return digest

    def import_image(self, stream: IO[bytes], *, changes: Sequence[str] = ()) -> str:
        saved = self.api.timeout
        self.api.timeout = max(saved or 0, 600)  # the engine answers only after unpacking the whole tar
        try:
            # A pipe goes chunked (stream_src); a seekable file has a length, and chunking it breaks the body.
            seekable = getattr(stream, "seekable", lambda: False)()
            response = self._call(
                "importing a root filesystem",
                self.api.import_image,
                src=stream,
                stream_src=not seekable,
                changes=list(changes),
            )
        finally:
            self.api.timeout = saved
        image_id = _imported_id(response)
        if image_id is None:
            raise EngineRefusedError(
                f"importing a root filesystem failed: the engine said {str(response).strip()[:300]!r}"
            )
        return image_id

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

        def start() -> Any:
            response = api.post(
                api._url("/build"),
                params=params,
                data=context,
                headers={"Content-Type": "application/x-tar"},
                stream=True,
                timeout=None,
            )
            api._raise_for_status(response)
            return response

        response = self._call(f"starting the build of {tag}", start)
        messages = api._stream_helper(response, decode=True)
        try:
            yield from _BuildStream(tag).events(messages)
        except BuildError:
            raise
        except Exception as exc:  # noqa: BLE001 - the engine went away mid-build
            raise map_error(exc, f"building {tag}", address=self.address) from None

    # ------------------------------------------------------------------ containers
    def container_options(self, request: RunRequest) -> dict[str, Any]:
        """The ``create_container`` arguments for a request: limits, non-root user, no privileges.

        Kept separate from :meth:`create` so the exact request sent to the engine is inspectable.
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
            raise RequestError("--memory-swap needs --memory: swap is limited together with memory")
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
        uid, gid = os.getuid(), os.getgid()
        return f"{uid}:{gid}" if uid != 0 and self.is_local else "1000:1000"

    def create(self, request: RunRequest) -> DockerContainer:
        # The high-level client's create() turns container_options' docker-run names into the API's host config.
        from docker.models.containers import _create_container_args

        args = _create_container_args({**self.container_options(request), "version": self.api._version})
        created = self._call(
            f"creating a container from {request.image}",
            self.api.create_container,
            resources=request.resources,
            **args,
        )
        return DockerContainer(self, created["Id"], request.resources)

    def container(self, container_id: str) -> DockerContainer:
        found = self._call(f"looking up container {container_id[:12]}", self.api.inspect_container, container_id)
        return DockerContainer(self, found["Id"])

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
            stream = container._call(
                f"attaching to container {container.short_id}",
                self.api.attach,
                container.id,
                stdout=True,
                stderr=True,
                stream=True,
                logs=False,
                demux=True,
            )
            pump = threading.Thread(target=self._pump, args=(container.id, stream, stdout, stderr), daemon=True)
            container.start()
            pump.start()
            timeout = request.resources.timeout
            exit_code = container.wait(timeout)
            if exit_code is None:
                container.kill()
                pump.join(5)
                raise RunTimeoutError(
                    f"the command ran longer than its {format_duration(timeout or 0)} timeout and was killed; "
                    "raise --timeout (or resources.timeout in the spec) if it needs longer",
                    exit_code=124,
                )
            pump.join(10)
            if container.state().oom_killed and exit_code != 0:
                limit = request.resources.memory
                raise OutOfMemoryError(
                    f"the container ran out of its {format_size(limit) if limit else 'memory'} memory limit and "
                    f"was killed (exit code {exit_code}); raise --memory (or resources.memory in the spec)",
                    exit_code=exit_code,
                )
            return RunResult(exit_code=exit_code, seconds=time.monotonic() - started, container_id=container.id)
        finally:
            self.remove_container(container.id)

    def _pump(
        self, container_id: str, stream: Any, stdout: OutputCallback | None, stderr: OutputCallback | None
    ) -> None:
        try:
            for out, err in stream:
                if out and stdout:
                    stdout(out)
                if err and stderr:
                    stderr(err)
        except Exception:
            self.log.debug("output stream of %s ended", container_id, exc_info=True)

    def list_containers(self, *, all: bool = False, labels: Mapping[str, str] | None = None) -> list[ContainerInfo]:
        wanted = [MANAGED_LABEL, *(f"{k}={v}" for k, v in (labels or {}).items())]
        containers = self._call("listing containers", self.api.containers, all=all, filters={"label": wanted})
        return [
            ContainerInfo(
                id=c["Id"],
                name=(c.get("Names") or ["/"])[0].lstrip("/"),
                image=c.get("Image") or "",
                state=c.get("State") or "",
                status=c.get("Status") or "",
                labels=c.get("Labels") or {},
                created=c.get("Created"),
                mounts=tuple(m.get("Source") for m in c.get("Mounts") or [] if m.get("Source")),
            )
            for c in containers
        ]

    def remove_container(self, container_id: str) -> None:
        try:
            self._call(f"removing container {container_id[:12]}", self.api.remove_container, container_id, force=True)
        except NotFoundError:
            pass
        except (ConflictError, EngineRefusedError) as exc:
            if "already in progress" not in str(exc):
                raise

    # ------------------------------------------------------------------ events
    def events(self, *, types: Sequence[str] = ("image", "container")) -> Iterator[EngineEvent]:
        # Subscribed here, at the call (not at the first next()): nothing that happens after it is missed.
        stream = self._call(
            "following the engine's events", self.api.events, decode=True, filters={"type": list(types)}
        )
        return self._decoded_events(stream)

    def _decoded_events(self, stream: Any) -> Iterator[EngineEvent]:
        try:
            for event in stream:
                if isinstance(event, dict):
                    yield EngineEvent(
                        type=str(event.get("Type") or ""),
                        action=str(event.get("Action") or event.get("status") or ""),
                        id=str((event.get("Actor") or {}).get("ID") or event.get("id") or ""),
                    )
        except Exception as exc:  # noqa: BLE001 - the engine went away: the stream ends, mapped to ours
            raise map_error(exc, "following the engine's events", address=self.address) from None

    # ------------------------------------------------------------------ usage
    def usage(self, container_ids: Sequence[str]) -> dict[str, Usage]:
        """From the cgroup files when the engine is local (< 1 ms each), else one ``docker stats`` sample
        per container (1-2 s each: the engine waits for a second sample)."""
        if self._usage_reader is None:
            self._usage_reader = UsageReader()
        reader = self._usage_reader
        out: dict[str, Usage] = {}
        for container_id in container_ids:
            figures = reader.usage(container_id) if self.is_local else None
            if figures is None:
                try:
                    figures = _stats_usage(self._call("reading usage", self.api.stats, container_id, stream=False))
                except ContainersError:
                    continue  # gone in the meantime
            out[container_id] = Usage(**figures)
        reader.forget(set(container_ids))
        return out


def _stats_usage(stats: Mapping[str, Any]) -> dict[str, Any]:
    cpu = stats.get("cpu_stats", {})
    pre = stats.get("precpu_stats", {})
    delta = cpu.get("cpu_usage", {}).get("total_usage", 0) - pre.get("cpu_usage", {}).get("total_usage", 0)
    system = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    cpus = cpu.get("online_cpus") or os.cpu_count() or 1
    memory = stats.get("memory_stats", {})
    return {
        "cpu_percent": (delta / system * cpus * 100) if system > 0 else None,
        "memory_used": memory.get("usage"),
        "memory_limit": memory.get("limit"),
        "pids": stats.get("pids_stats", {}).get("current"),
    }


def _imported_id(response: Any) -> str | None:
    """The image id in the engine's import answer (one or more JSON lines)."""
    text = response if isinstance(response, str) else json.dumps(response)
    image_id = None
    for line in text.splitlines():
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if isinstance(message, dict):
            if message.get("error"):
                return None
            status = str(message.get("status", ""))
            if status.startswith("sha256:"):
                image_id = status
    return image_id


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


def _unreachable(address: str, exc: BaseException) -> str:
    return (
        f"no Docker engine answers at {address} ({exc.__class__.__name__}: {str(exc)[:200]}); "
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
                        yield BuildEvent("log", step="", text=redact(line))
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
            line = redact(raw.decode("utf-8", "replace").rsplit("\r", 1)[-1].rstrip())
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
