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
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any

from traitlets import Bool, Dict, Enum, Float, Int, List, Unicode

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
from ..units import format_duration, format_size, parse_size
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

if TYPE_CHECKING:  # imported where used: an unchanged build needs neither (5 ms of its start-up)
    from ..usage import GpuReader, UsageReader
    from . import buildkit

LOG_TAIL_LINES = 25
DEFAULT_SOCKET = "unix:///var/run/docker.sock"
_GPU_REFUSALS = ("could not select device driver", "nvidia-container-cli", "unknown or invalid runtime name: nvidia")
#: The GPU check starts a container with this command: it does not exist, so nothing ever runs in it.
GPU_PROBE_COMMAND = "/jupyter-containers-gpu-check-runs-nothing"
_MISSING_PROGRAM = ("no such file or directory", "executable file not found", "not found in $path")
#: Engine → (when, gpu, note) of its last GPU check, shared by every backend of this process.
_GPU_CHECKS: dict[str, tuple[float, bool | None, str]] = {}
_GPU_CHECKS_LOCK = threading.Lock()
#: What DockerBackend._inspect_image_directly returns when the SDK has to make the call.
_UNANSWERED = object()


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
    if resources is not None and resources.gpus and "error setting rlimit" in text:
        return EngineRefusedError(
            f"{doing}: the engine may not raise the ulimits of a GPU run ({text}); it lacks CAP_SYS_RESOURCE "
            "(a rootless or nested engine): lower them or turn them off with c.DockerBackend.gpu_ulimits "
            "(e.g. {'stack': 67108864}, or {})"
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
        import tarfile  # here: nothing else on the way to an unchanged build needs it

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

    def put_archive(self, directory: str, data: bytes | IO[bytes]) -> None:
        self._call(
            f"copying files into container {self.short_id}", self.backend.api.put_archive, self.id, directory, data
        )

    def get_archive(self, path: str) -> Iterator[bytes]:
        stream, _ = self._call(
            f"reading {path} from container {self.short_id}",
            self.backend.api.get_archive,
            self.id,
            path,
            chunk_size=1 << 20,
        )
        try:
            yield from stream
        except Exception as exc:  # noqa: BLE001 - the engine went away mid-stream, mapped to ours
            raise map_error(
                exc, f"reading {path} from container {self.short_id}", address=self.backend.address
            ) from None

    def published_ports(self) -> dict[int, int]:
        inspected = self._call(f"inspecting container {self.short_id}", self.backend.api.inspect_container, self.id)
        out: dict[int, int] = {}
        for key, bindings in ((inspected.get("NetworkSettings") or {}).get("Ports") or {}).items():
            for binding in bindings or []:
                if key.endswith("/tcp") and binding.get("HostPort"):
                    out[int(key.split("/")[0])] = int(binding["HostPort"])
                    break
        return out

    def exec_stream(self, command: Sequence[str]) -> Any:
        api = self.backend.api
        created = self._call(
            f"starting a process in container {self.short_id}",
            api.exec_create,
            self.id,
            list(command),
            stdin=True,
            stdout=True,
            stderr=True,
            tty=False,
        )
        raw = self._call(f"starting a process in container {self.short_id}", api.exec_start, created["Id"], socket=True)
        return _ExecSocket(raw)

    def get_file(self, path: str) -> bytes:
        stream, _ = self._call(
            f"reading {path} from container {self.short_id}", self.backend.api.get_archive, self.id, path
        )
        import tarfile

        buf = io.BytesIO(b"".join(stream))
        with tarfile.open(fileobj=buf) as tar:
            member = next((m for m in tar.getmembers() if m.isfile()), None)
            if member is None:
                raise NotFoundError(f"{path} in container {self.short_id} is not a file")
            extracted = tar.extractfile(member)
            return extracted.read() if extracted is not None else b""


class _ExecSocket:
    """The socket of an exec's upgraded connection. It keeps the SDK's object alive: once that (and its HTTP
    response) is collected, the connection is closed or handed back to the pool."""

    def __init__(self, raw: Any):
        self._raw = raw
        # The SDK hands a SocketIO for unix sockets and the TLS socket for https; the socket itself either way.
        self.sock = getattr(raw, "_sock", raw)
        self.sock.settimeout(None)
        import socket

        if self.sock.family in (socket.AF_INET, socket.AF_INET6):
            # Small frames (a kernel's messages) must not wait for Nagle's ACK: 40 ms per round trip otherwise.
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def fileno(self) -> int:
        return int(self.sock.fileno())

    def recv(self, size: int) -> bytes:
        return bytes(self.sock.recv(size))

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def pending(self) -> int:
        """Bytes a TLS socket has decrypted but not handed out yet (a select() does not see them)."""
        return int(getattr(self.sock, "pending", lambda: 0)())

    def close(self) -> None:
        try:
            self.sock.shutdown(2)  # SHUT_RDWR: the engine closes the process's stdin
        except OSError:
            pass
        self.sock.close()
        try:
            self._raw.close()
        except Exception:  # noqa: BLE001 - closing twice is fine
            pass


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

    # GPUs (docs/gpus.md).
    gpu_check = Bool(
        True,
        config=True,
        help="Tell whether the engine grants --gpus the way it decides it: create a container with a GPU "
        "DeviceRequest and a program that does not exist (nothing runs), start it, read the engine's answer, "
        "remove it. Cached per engine for gpu_check_seconds. Off: only the 'nvidia' runtime and CDI devices "
        "in 'docker info' count.",
    )
    gpu_check_seconds = Float(600.0, config=True, help="How long one engine's GPU check answer is reused.")
    gpu_fallback = Enum(
        ["error", "cpu"],
        "error",
        config=True,
        help='What a run that asks for gpus = "all" does on an engine that grants no GPUs (its GPU check says '
        "none): 'error' refuses it (GpuUnavailableError), 'cpu' runs it without GPUs and logs a warning, so one "
        "notebook runs on a laptop and on a GPU host unchanged (examples/train). Counts and device ids are always "
        "refused there: they name GPUs that must exist.",
    )
    gpu_shm_size = Unicode(
        "1g",
        config=True,
        help="/dev/shm size of runs that request GPUs when neither the spec nor the run sets shm_size (Docker's "
        "64 MB breaks PyTorch DataLoader workers); capped to the memory limit. Empty: Docker's default.",
    )
    gpu_driver_capabilities = Unicode(
        "compute,utility",
        config=True,
        help="NVIDIA_DRIVER_CAPABILITIES of runs that request GPUs, unless the run or the image sets it "
        "(compute: CUDA; utility: nvidia-smi and NVML). Empty: the toolkit's default.",
    )
    gpu_ulimits = Dict(
        {"memlock": -1, "stack": 64 << 20},
        config=True,
        help="ulimits (name → value, -1 unlimited) of runs that request GPUs: NVIDIA's recommendation for "
        "deep-learning containers (pinned memory, deep stacks). Empty: the engine's defaults.",
    )
    gpu_usage_command = List(
        Unicode(),
        config=True,
        help="Command that runs nvidia-smi on the engine's host, e.g. ['ssh', 'gpu-box', 'nvidia-smi'] (the "
        "query arguments are appended). Unset: NVML (pynvml) or nvidia-smi on this host for a local engine, "
        "'ssh HOST nvidia-smi' for an ssh:// engine, no GPU figures for other remote engines.",
    )
    gpu_usage_seconds = Float(2.0, config=True, help="How long one reading of the host's GPU figures is reused.")
    gpu_check_timeout = Int(30, config=True, help="Seconds the GPU check may take before it counts as unknown.")

    # Remote engines (docs/remote.md).
    connect_timeout = Float(
        10.0,
        config=True,
        help="Seconds to wait for a tcp:// engine (or an ssh:// engine's host) to accept a connection.",
    )
    ssh_command = List(
        Unicode(),
        ["ssh"],
        config=True,
        help="The OpenSSH client for ssh:// engines (it reads ~/.ssh/config: Include, Port, ProxyJump, agents).",
    )
    ssh_remote_socket = Unicode(
        "/var/run/docker.sock", config=True, help="The engine's socket on an ssh:// engine's host."
    )
    kernel_address = Unicode(
        None,
        allow_none=True,
        config=True,
        help="The address this machine reaches ports published by a tcp:// engine at (default: the engine's "
        "host name); kernels of an ssh:// engine are reached through the ssh connection instead.",
    )

    _api: Any = None
    _direct_version: str | None = None
    _tunnel: Any = None
    _usage_reader: UsageReader | None = None
    _stats_streams: _StatsStreams | None = None
    _gpu_reader: GpuReader | None = None
    _gpu_visible: dict[str, str | None] | None = None

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
                if self.address.startswith("ssh://"):
                    kwargs = {"base_url": self._ssh_tunnel().url}
                elif self.address.startswith("tcp://"):
                    self._check_connects()
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

    def _ssh_tunnel(self) -> Any:
        if self._tunnel is None:
            from ..ssh import SshTunnel

            self._tunnel = SshTunnel(
                self.address,
                remote_socket=self.ssh_remote_socket,
                ssh=self.ssh_command,
                connect_timeout=self.connect_timeout,
            )
        return self._tunnel

    def _check_connects(self) -> None:
        """A tcp:// engine that does not accept a connection is an error within connect_timeout, not after
        api_timeout (an unreachable host drops packets: a connect would wait minutes)."""
        import socket
        from urllib.parse import urlsplit

        parts = urlsplit(self.address)
        try:
            socket.create_connection((parts.hostname or "", parts.port or 2376), timeout=self.connect_timeout).close()
        except OSError as exc:
            raise EngineUnavailableError(
                f"no Docker engine accepts connections at {self.address} within {self.connect_timeout:g}s "
                f"({exc.__class__.__name__}: {exc}); check the host name and port, that dockerd listens there "
                "(dockerd -H tcp://0.0.0.0:2376 --tlsverify …) and that no firewall is in the way"
            ) from None

    def close(self) -> None:
        if self._api is not None:
            self._api.close()
            self._api = None
        if self._tunnel is not None:
            self._tunnel.close()
            self._tunnel = None

    def reach(self, host_port: int) -> tuple[str, int]:
        from urllib.parse import urlsplit

        if self.address.startswith("ssh://"):
            return "127.0.0.1", self._ssh_tunnel().forward(host_port)
        if self.is_local:
            return "127.0.0.1", host_port
        return self.kernel_address or urlsplit(self.address).hostname or "127.0.0.1", host_port

    def publish_address(self) -> str:
        return "0.0.0.0" if self.address.startswith("tcp://") else "127.0.0.1"

    def release(self, host_port: int) -> None:
        if self._tunnel is not None:
            for (_, remote), local in list(self._tunnel._forwards.items()):
                if remote == host_port:
                    self._tunnel.cancel(local)

    def create_volume(self, name: str, *, labels: Mapping[str, str]) -> None:
        self._call(f"creating volume {name}", self.api.create_volume, name, labels={**labels, MANAGED_LABEL: "true"})

    def remove_volume(self, name: str) -> None:
        try:
            self._call(f"removing volume {name}", self.api.remove_volume, name, force=True)
        except NotFoundError:
            pass

    def list_volumes(self, labels: Mapping[str, str] | None = None, *, unused: bool = False) -> list[str]:
        wanted = [MANAGED_LABEL, *(f"{k}={v}" for k, v in (labels or {}).items())]
        filters: dict[str, Any] = {"label": wanted, **({"dangling": True} if unused else {})}
        found = self._call("listing volumes", self.api.volumes, filters=filters)
        return sorted(v["Name"] for v in (found or {}).get("Volumes") or [])

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
        # Newer engines (API 1.50+) list the CDI devices they discovered; CDISpecDirs are only folders.
        cdi_devices = tuple(
            str(d["ID"])
            for d in info.get("DiscoveredDevices") or []
            if isinstance(d, dict) and d.get("ID") and str(d.get("Source", "cdi")) == "cdi"
        )
        gpu, support, note = self._gpu_support(info, runtimes, cdi_devices)
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
            cdi_devices=cdi_devices,
            gpu=gpu,
            gpu_support=support,
            gpu_note=note,
        )

    def _gpu_support(
        self, info: Mapping[str, Any], runtimes: Sequence[str], cdi_devices: Sequence[str]
    ) -> tuple[bool | None, tuple[str, ...], str]:
        """Whether ``--gpus`` works here, how, and a note. The NVIDIA Container Toolkit's hook on dockerd's
        PATH registers a *device driver*, which ``docker info`` does not list: only asking the engine tells."""
        support = []
        if any("nvidia" in r for r in runtimes):
            support.append("nvidia runtime")
        nvidia_cdi = [d for d in cdi_devices if d.startswith("nvidia.com/")]
        if nvidia_cdi:
            support.append(f"CDI: {', '.join(nvidia_cdi[:4])}{' …' if len(nvidia_cdi) > 4 else ''}")
        if not self.gpu_check:
            return (True if support else None), tuple(support), "" if support else "not checked (gpu_check off)"
        gpu, note = self._checked_gpus(str(info.get("ID") or ""))
        if gpu:
            support.insert(0, "nvidia device driver")
        return gpu, tuple(support), note

    def _checked_gpus(self, engine_id: str) -> tuple[bool | None, str]:
        key = f"{self.address}#{engine_id}"
        with _GPU_CHECKS_LOCK:
            cached = _GPU_CHECKS.get(key)
        if cached is not None and time.monotonic() - cached[0] < self.gpu_check_seconds:
            return cached[1], cached[2]
        gpu, note = self._check_gpus()
        with _GPU_CHECKS_LOCK:
            _GPU_CHECKS[key] = (time.monotonic(), gpu, note)
        return gpu, note

    def _check_gpus(self) -> tuple[bool | None, str]:
        """Start a container that asks for one GPU and whose program does not exist: an engine without a GPU
        device driver refuses the request before anything else; one with it gets as far as the missing program
        (the driver's hook has run by then). Nothing runs, and the container is removed."""
        import docker

        try:
            images = self._call("listing images for the GPU check", self.api.images)
        except ContainersError as exc:
            return None, f"the GPU check could not list images: {exc}"
        tagged = [i for i in images if any(t != "<none>:<none>" for t in i.get("RepoTags") or ())]
        if not tagged:
            return None, "no image on the engine to check with yet"
        image = next((t for i in tagged for t in i["RepoTags"] if t.startswith("jupyter-containers/")), None)
        image = image or next(t for t in tagged[0]["RepoTags"] if t != "<none>:<none>")
        container_id = None
        try:
            created = self._call(
                "creating the GPU check container",
                self.api.create_container,
                image,
                command=[GPU_PROBE_COMMAND],
                entrypoint=[],
                labels={MANAGED_LABEL: "true", "io.jupyter.containers.role": "gpu-check"},
                network_disabled=True,
                host_config=self.api.create_host_config(
                    network_mode="none",
                    device_requests=[docker.types.DeviceRequest(count=1, capabilities=[["gpu"]])],
                ),
            )
            container_id = created["Id"]
            self._call("starting the GPU check container", self.api.start, container_id)
        except ContainersError as exc:
            text = str(exc)
            lowered = text.lower()
            if "could not select device driver" in lowered:
                return False, ""
            if any(s in lowered for s in _GPU_REFUSALS):
                return False, f"the engine has the NVIDIA hook but it failed: {text[:300]}"
            if any(s in lowered for s in _MISSING_PROGRAM):
                return True, ""
            return None, f"the GPU check failed: {text[:300]}"
        finally:
            if container_id is not None:
                try:
                    self.remove_container(container_id)
                except ContainersError:
                    self.log.warning("could not remove the GPU check container %s", container_id[:12])
        return True, ""  # it started (an engine that ignores a missing program): the GPU was granted

    def run_defaults(self, resources: Resources) -> Resources:
        """``resources`` with the defaults of GPU runs filled in: a roomy /dev/shm (``gpu_shm_size``, capped
        to the memory limit) when GPUs are requested and nothing sets shm_size; without GPUs for ``gpus = "all"``
        on an engine that has none when ``gpu_fallback`` is 'cpu'."""
        from dataclasses import replace

        if resources.gpus == "all" and self.gpu_fallback == "cpu" and self.engine_info().gpu is False:
            self.log.warning(
                "gpus = all: the engine at %s grants no GPUs; running on CPU (c.DockerBackend.gpu_fallback = 'cpu')",
                self.address,
            )
            return replace(resources, gpus=None)
        if not resources.gpus or resources.shm_size is not None or not self.gpu_shm_size:
            return resources
        size = parse_size(self.gpu_shm_size)
        if resources.memory is not None:
            size = min(size, resources.memory)
        return replace(resources, shm_size=size)

    def _inspect_image(self, reference: str) -> dict | None:
        if self._api is None:
            found = self._inspect_image_directly(reference)
            if found is not _UNANSWERED:
                return found  # type: ignore[return-value]
        try:
            return self._call(f"inspecting image {reference}", self.api.inspect_image, reference)
        except NotFoundError:
            return None

    def _inspect_image_directly(self, reference: str) -> dict | None | object:
        """The requests the SDK makes for an image inspection (the engine's API version, then ``GET
        /vX/images/REF/json`` at it), sent over the local unix socket with nothing but ``socket``: importing
        docker-py and requests is most of an unchanged ``jupyter-containers build`` (about 0.13 s of 0.25 s
        here), which makes nothing but these calls, and even ``http.client`` (with the ``ssl`` and ``email``
        it imports) cost it 16 ms. The version is the ``Api-Version`` header of ``GET /_ping`` (the one the
        SDK reads from ``GET /version``, which makes the engine ask the OS and takes 5 ms). HTTP/1.0, so the
        engine answers without chunks and closes the connection at the end of its answer. ``_UNANSWERED``
        whenever the answer is anything but an image or "no such image" (another kind of engine address,
        TLS, an engine that does not answer, an error): the SDK's path then makes the call and reports any
        error as before."""
        import socket
        from urllib.parse import quote_plus

        address = self.address
        if not address.startswith("unix://") or self.tls_ca or self.tls_cert or self.tls_key:
            return _UNANSWERED
        path, timeout = address[len("unix://") :], self.api_timeout

        def get(url: str) -> tuple[int, dict[str, str], bytes]:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                sock.connect(path)
                sock.sendall(f"GET {url} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
            head, sep, body = b"".join(chunks).partition(b"\r\n\r\n")
            status_line, *lines = head.decode("latin-1").split("\r\n")
            protocol, _, rest = status_line.partition(" ")
            if not sep or not protocol.startswith("HTTP/"):
                raise ValueError(f"not an HTTP answer: {status_line[:80]!r}")
            headers = {}
            for line in lines:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            if "chunked" in headers.get("transfer-encoding", "").lower():
                raise ValueError("a chunked answer")
            if "content-length" in headers and int(headers["content-length"]) != len(body):
                raise ValueError("a truncated answer")
            return int(rest[:3]), headers, body

        try:
            if self._direct_version is None:
                status, headers, _ = get("/_ping")
                if status != 200 or not headers.get("api-version"):
                    return _UNANSWERED
                self._direct_version = headers["api-version"]
            status, _, body = get(f"/v{self._direct_version}/images/{quote_plus(reference, safe='/:')}/json")
            image = json.loads(body or b"null") if status == 200 else None
        except (OSError, ValueError):
            return _UNANSWERED
        if status == 200 and isinstance(image, dict):
            return image
        return None if status == 404 else _UNANSWERED

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

    # ------------------------------------------------------------------ save, load, registries (share/)
    def save_images(self, references: Sequence[str], out: IO[bytes]) -> int:
        for reference in references:
            if self.image_id(reference) is None:
                raise NotFoundError(f"no image {reference!r} on the engine to save; build or pull it first")
        api = self.api
        doing = f"saving {', '.join(references)}"

        def start() -> Any:
            response = api._get(api._url("/images/get"), params={"names": list(references)}, stream=True, timeout=None)
            api._raise_for_status(response)
            return response

        response = self._call(doing, start)
        written = 0
        try:
            for chunk in response.iter_content(1 << 20, False):
                out.write(chunk)
                written += len(chunk)
        except Exception as exc:  # noqa: BLE001 - the engine went away mid-stream, mapped to ours
            raise map_error(exc, doing, address=self.address) from None
        return written

    def load_images(self, stream: IO[bytes]) -> list[str]:
        api = self.api
        doing = "loading images"

        def start() -> Any:
            url = api._url("/images/load")
            response = api._post(url, data=stream, params={"quiet": "1"}, stream=True, timeout=None)
            api._raise_for_status(response)
            return response

        response = self._call(doing, start)
        loaded: list[str] = []
        try:
            for message in api._stream_helper(response, decode=True):
                if not isinstance(message, dict):
                    continue
                if message.get("error"):
                    raise EngineRefusedError(f"{doing}: {' '.join(str(message['error']).split())[:400]}")
                text = str(message.get("stream") or "").strip()
                if text.startswith("Loaded image ID: "):
                    loaded.append(text.removeprefix("Loaded image ID: "))
                elif text.startswith("Loaded image: "):
                    image_id = self.image_id(text.removeprefix("Loaded image: "))
                    if image_id:
                        loaded.append(image_id)
        except ContainersError:
            raise
        except Exception as exc:  # noqa: BLE001 - mapped to ours
            raise map_error(exc, doing, address=self.address) from None
        return list(dict.fromkeys(loaded))

    def repo_digests(self, reference: str) -> list[str]:
        image = self._inspect_image(reference)
        if image is None:
            raise NotFoundError(f"no image {reference!r} on the engine")
        return list(image.get("RepoDigests") or [])

    def image_created(self, reference: str) -> str | None:
        image = self._inspect_image(reference)
        return (str(image.get("Created") or "") or None) if image else None

    def reload_credentials(self) -> None:
        self._call("reading Docker's registry credentials", self.api.reload_config)

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
                docker.types.Mount(target=m.target, source=str(m.source), type=m.type, read_only=m.read_only)
                for m in request.mounts
            ],
        }
        if request.publish:
            options["ports"] = {f"{port}/tcp": (request.publish_address, None) for port in request.publish}
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
        r = self.run_defaults(r)
        if r.shm_size is not None:
            options["shm_size"] = r.shm_size
        if r.pids is not None:
            options["pids_limit"] = r.pids
        device_requests = gpu_device_requests(r)
        if device_requests:
            options["device_requests"] = device_requests
            if self.gpu_ulimits:
                options["ulimits"] = [
                    docker.types.Ulimit(name=str(name), soft=int(value), hard=int(value))
                    for name, value in sorted(self.gpu_ulimits.items())
                ]
            capabilities = "NVIDIA_DRIVER_CAPABILITIES"
            if self.gpu_driver_capabilities and capabilities not in options["environment"]:
                if capabilities not in self._image_environment(request.image):
                    options["environment"][capabilities] = self.gpu_driver_capabilities
        return options

    def _image_environment(self, reference: str) -> dict[str, str]:
        """The ENV of an image (a CUDA base image sets NVIDIA_DRIVER_CAPABILITIES itself); {} when unknown."""
        try:
            image = self._inspect_image(reference)
        except ContainersError:
            return {}
        env = ((image or {}).get("Config") or {}).get("Env") or []
        return dict(item.split("=", 1) for item in env if "=" in item)

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
            if _oom_killed(container, exit_code, request.resources.memory):
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
            from ..usage import UsageReader

            self._usage_reader = UsageReader()
        reader = self._usage_reader
        out: dict[str, Usage] = {}
        remote: list[str] = []
        for container_id in container_ids:
            figures = reader.usage(container_id) if self.is_local else None
            if figures is None:
                remote.append(container_id)
            else:
                out[container_id] = Usage(**figures)
        if remote:
            out.update(self._stats(remote))
        reader.forget(set(container_ids))
        self._add_gpu_usage(out)
        return out

    def _stats(self, container_ids: Sequence[str]) -> dict[str, Usage]:
        """``docker stats`` of a remote engine's containers, from one streaming sample per container kept in a
        background thread (what ``docker stats`` itself does): the engine answers a sample only after its
        one-second collection tick, one-shot or not, so asking per listing cost a second per container.

        The first listing of a container waits (up to ``STATS_FIRST_WAIT``) for its first sample; later ones
        answer at once with the latest. A stream ends with its container.
        """
        if self._stats_streams is None:
            self._stats_streams = _StatsStreams(self)
        return self._stats_streams.usage(container_ids)

    def _add_gpu_usage(self, out: dict[str, Usage]) -> None:
        """The engine host's GPU figures for each container that was given GPUs, mapped by its devices."""
        from dataclasses import replace

        from ..usage import visible_devices

        if self._gpu_visible is None:
            self._gpu_visible = {}
        known = self._gpu_visible
        for container_id in out:
            if container_id not in known:
                try:
                    found = self._call("inspecting a container", self.api.inspect_container, container_id)
                except ContainersError:
                    continue
                known[container_id] = _visible_devices_of(found)
        for gone in set(known) - set(out):
            del known[gone]
        wanted = {cid: value for cid, value in known.items() if value}
        if not wanted:
            return
        reader = self.gpu_reader()
        devices = reader.devices() if reader is not None else None
        if not devices:
            return
        for container_id, value in wanted.items():
            out[container_id] = replace(out[container_id], gpus=tuple(visible_devices(value, devices)))

    def gpu_reader(self) -> GpuReader | None:
        """Where this engine's host GPU figures come from (see ``gpu_usage_command``); None: nowhere."""
        if self._gpu_reader is None:
            command: list[str] | None = list(self.gpu_usage_command) or None
            if command is None and not self.is_local:
                command = _ssh_command(self.address)
                if command is None:
                    return None
            from ..usage import GpuReader

            self._gpu_reader = GpuReader(command, max_age=self.gpu_usage_seconds)
        return self._gpu_reader


#: Seconds a listing waits for the first ``docker stats`` sample of a container it has not seen before.
STATS_FIRST_WAIT = 2.5


class _StatsStreams:
    """One ``docker stats`` stream per remote container, each in a daemon thread keeping its latest sample."""

    def __init__(self, backend: DockerBackend):
        self.backend = backend
        self.latest: dict[str, Usage] = {}
        self.first: dict[str, threading.Event] = {}
        self.lock = threading.Lock()

    def usage(self, container_ids: Sequence[str]) -> dict[str, Usage]:
        waiting = []
        with self.lock:
            for container_id in container_ids:
                if container_id not in self.first:
                    self.first[container_id] = threading.Event()
                    threading.Thread(
                        target=self._follow, args=(container_id,), name=f"stats-{container_id[:12]}", daemon=True
                    ).start()
                waiting.append(self.first[container_id])
        deadline = time.monotonic() + STATS_FIRST_WAIT
        for event in waiting:
            event.wait(max(0.0, deadline - time.monotonic()))
        with self.lock:
            return {cid: self.latest[cid] for cid in container_ids if cid in self.latest}

    def _follow(self, container_id: str) -> None:
        try:
            stream = self.backend._call("reading usage", self.backend.api.stats, container_id, stream=True, decode=True)
            for stats in stream:
                usage = Usage(**_stats_usage(stats))
                with self.lock:
                    self.latest[container_id] = usage
                self.first[container_id].set()
        except Exception:  # noqa: BLE001 - the container went, or the engine: the stream just ends
            pass
        finally:
            with self.lock:
                self.latest.pop(container_id, None)
                event = self.first.pop(container_id, None)
            if event is not None:
                event.set()


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


def _visible_devices_of(inspected: Mapping[str, Any]) -> str | None:
    """``NVIDIA_VISIBLE_DEVICES`` as the engine gives it to a container: from its DeviceRequests (count N →
    ``0,…,N-1``, -1 → ``all``, ids as they are), else from its own environment (the ``nvidia`` runtime)."""
    for request in (inspected.get("HostConfig") or {}).get("DeviceRequests") or []:
        if not any("gpu" in caps for caps in request.get("Capabilities") or []):
            continue
        if request.get("DeviceIDs"):
            return ",".join(request["DeviceIDs"])
        count = int(request.get("Count") or 0)
        if count < 0:
            return "all"
        if count > 0:
            return ",".join(str(i) for i in range(count))
    for item in (inspected.get("Config") or {}).get("Env") or []:
        if item.startswith("NVIDIA_VISIBLE_DEVICES="):
            return item.split("=", 1)[1]
    return None


def _ssh_command(address: str) -> list[str] | None:
    """``ssh [-p PORT] [USER@]HOST nvidia-smi`` for an ``ssh://`` engine (the engine's host), else None."""
    from urllib.parse import urlsplit

    if not address.startswith("ssh://"):
        return None
    parts = urlsplit(address)
    if not parts.hostname:
        return None
    target = f"{parts.username}@{parts.hostname}" if parts.username else parts.hostname
    return ["ssh", *(["-p", str(parts.port)] if parts.port else []), "-o", "BatchMode=yes", target, "nvidia-smi"]


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
        from . import buildkit

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
        from . import buildkit  # (a module already loaded by events(): the lookup is a dict access)

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


def _oom_killed(container: Any, exit_code: int, memory_limit: int | None) -> bool:
    """Whether the engine says the container was killed for memory.

    dockerd marks ``OOMKilled`` when containerd's OOM event arrives, and the shim sends that event from a
    watch on the cgroup's ``memory.events``, independently of the exit event: on a loaded host ``wait``
    can return 137 before the flag is set (a test saw a plain exit 137). A SIGKILL exit of a container with
    a memory limit therefore asks again for up to 2 s before it counts as "killed for something else".
    """
    if exit_code == 0:
        return False
    if container.state().oom_killed:
        return True
    if exit_code != 137 or not memory_limit:
        return False
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        time.sleep(0.1)
        if container.state().oom_killed:
            return True
    return False
