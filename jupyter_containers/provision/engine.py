"""An engine that answers: the backend's own, else the local ``dockerd`` started, else ``docker.io`` installed.

Users should not have to know that a build needs a daemon: on a root-run Debian/Ubuntu host an engine
appears on demand. The address is the backend's (``c.DockerBackend.base_url``, else ``DOCKER_HOST``, else the
local socket), so setup prepares the very engine that builds and kernels then use.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from ..backends.base import ContainerBackend, EngineInfo
from ..errors import EngineUnavailableError
from ..images.lock import atomic_write
from ..paths import file_lock
from . import Log, log_tail, one_line
from .apt import apt_install, is_debian_like

#: The socket a plain ``dockerd`` listens on; any other local address is passed to it with ``-H``.
DEFAULT_SOCKET = "unix:///var/run/docker.sock"
DOCKERD_LOG = Path("/var/log/jupyter-containers-dockerd.log")
DOCKERD_PIDFILE = Path("/var/log/jupyter-containers-dockerd.pid")
DOCKERD_DEFAULT_PIDFILE = Path("/var/run/docker.pid")
#: dockerd's own configuration file; when there is none, the dockerd we start gets :data:`DOCKERD_CONFIG`.
DOCKERD_SYSTEM_CONFIG = Path("/etc/docker/daemon.json")
DOCKERD_CONFIG = Path("/etc/jupyter-containers/dockerd.json")
#: What BuildKit's garbage collector lets the build cache keep. Every spec edit leaves layers behind, and
#: dockerd 20.10 starts with no collector at all: a machine here reached 72 GB of cache and "no space left
#: on device". With a policy, BuildKit trims the least recently used records after builds.
BUILD_CACHE_KEEP = "10GB"


def ensure_engine(
    backend: ContainerBackend,
    *,
    start: bool = True,
    install: bool = True,
    log: Log = print,
    timeout: float = 60,
) -> EngineInfo:
    """The :class:`EngineInfo` of ``backend``'s engine, starting or installing a local one if we may.

    Anything we cannot do (remote address, not root, not Debian) ends in an error that says exactly how to
    get an engine. Nothing is ever killed.

    Raises:
        EngineUnavailableError: no engine answers and none could be started or installed.
    """
    address = backend.address
    info, why = _probe(backend)
    if info is not None:
        log(f"engine: Docker {info.version} (API {info.api_version}) answers at {address}")
        return info
    log(f"engine: none answers at {address} ({why})")

    refusal = _start_refusal(backend, start)
    if refusal is None and shutil.which("dockerd") is None:
        if not install:
            refusal = "dockerd is not installed and installing it was not allowed (--no-install / install=False)"
        elif not is_debian_like():
            refusal = "dockerd is not installed and automatic installation only knows Debian/Ubuntu (apt)"
        else:
            apt_install(["docker.io"], log, error=EngineUnavailableError)
            info, _ = _probe(backend)  # the package's init script may have started it already
            if info is not None:
                log(f"engine: Docker {info.version} answers at {address} after installing docker.io")
                return info
            if shutil.which("dockerd") is None:
                refusal = "docker.io was installed but no dockerd is on PATH"
    if refusal is None:
        return _start_dockerd(backend, log, timeout)
    raise EngineUnavailableError(_how_to_get_an_engine(address, why, refusal))


def _probe(backend: ContainerBackend) -> tuple[EngineInfo | None, str]:
    """``(engine info, "")`` if the engine answers, else ``(None, one-line reason)``."""
    try:
        return backend.engine_info(), ""
    except EngineUnavailableError as exc:
        # The backend's message is a whole "start one or set DOCKER_HOST" hint; the line we print (and quote
        # in our own hint) needs only what failed: the engine library's error it was raised from, if kept.
        return None, one_line(exc.__cause__ or exc.__context__ or exc)


def _start_refusal(backend: ContainerBackend, start: bool) -> str | None:
    """Why we must not start a local dockerd for ``backend``, or None if we may."""
    if not start:
        return "starting an engine was not allowed (start=False)"
    if backend.kind != "docker":
        return f"the {backend.kind!r} backend's engine is not a dockerd that could be started here"
    if not backend.is_local or not backend.address.startswith("unix://"):
        return f"{backend.address} is not a local socket, so there is nothing to start here"
    if os.geteuid() != 0:
        return "starting dockerd needs root and this process is not root"
    return None


def _start_dockerd(backend: ContainerBackend, log: Log, timeout: float) -> EngineInfo:
    """Start dockerd detached (or wait for one that is starting) until it answers at the backend's address."""
    address = backend.address
    with file_lock("jupyter-containers-dockerd-start"):
        info, _ = _probe(backend)
        if info is not None:  # another process started it while we waited for the lock
            log(f"engine: Docker {info.version} answers at {address}")
            return info
        proc: subprocess.Popen | None = None
        offset = DOCKERD_LOG.stat().st_size if DOCKERD_LOG.exists() else 0
        pid = _starting_dockerd_pid() if address == DEFAULT_SOCKET else None
        if pid is not None:
            log(f"engine: dockerd (PID {pid}) is already running; waiting up to {timeout:g} s for it to answer")
        else:
            cmd = ["dockerd"] if address == DEFAULT_SOCKET else ["dockerd", "-H", address]
            if not DOCKERD_SYSTEM_CONFIG.exists():
                cmd += ["--config-file", str(_write_dockerd_config())]
            log(f"engine: starting {' '.join(cmd)} (log: {DOCKERD_LOG}, pidfile: {DOCKERD_PIDFILE})")
            DOCKERD_LOG.parent.mkdir(parents=True, exist_ok=True)
            with open(DOCKERD_LOG, "ab") as out:
                proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    close_fds=True,
                )
            pid = proc.pid
            DOCKERD_PIDFILE.write_text(f"{pid}\n")
        started = time.monotonic()
        while True:
            info, why = _probe(backend)
            if info is not None:
                log(
                    f"engine: dockerd (PID {pid}) answers at {address} after {time.monotonic() - started:.1f} s "
                    f"(Docker {info.version}, API {info.api_version})"
                )
                return info
            exited = proc.poll() if proc is not None else (None if _pid_alive(pid) else "unknown")
            if exited is not None:
                raise EngineUnavailableError(
                    f"dockerd (PID {pid}) exited (code {exited}) before answering at {address}; "
                    f"last lines of {DOCKERD_LOG}:\n{log_tail(DOCKERD_LOG, offset)}"
                )
            if time.monotonic() - started > timeout:
                raise EngineUnavailableError(
                    f"dockerd (PID {pid}) did not answer at {address} within {timeout:g} s ({why}); it was left "
                    f"running. Last lines of {DOCKERD_LOG}:\n{log_tail(DOCKERD_LOG, offset)}"
                )
            time.sleep(0.25)


def _write_dockerd_config() -> Path:
    """Our dockerd configuration (a bounded build cache), written atomically; an administrator's own
    ``/etc/docker/daemon.json`` always wins, since we only pass this file when there is none."""
    config = {"builder": {"gc": {"enabled": True, "defaultKeepStorage": BUILD_CACHE_KEEP}}}
    DOCKERD_CONFIG.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(DOCKERD_CONFIG, json.dumps(config, indent=2) + "\n")
    return DOCKERD_CONFIG


def _starting_dockerd_pid() -> int | None:
    """The PID of a live dockerd from our pidfile or Docker's own, so that we never start a second one."""
    for pidfile in (DOCKERD_PIDFILE, DOCKERD_DEFAULT_PIDFILE):
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            continue
        if _pid_alive(pid):
            return pid
    return None


def _pid_alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "dockerd"
    except OSError:
        return False


def _how_to_get_an_engine(address: str, why: str, refusal: str) -> str:
    return (
        f"no Docker engine answers at {address} ({why}) and none could be provided automatically: {refusal}. "
        "To get one: install Docker Engine (https://docs.docker.com/engine/install/, or "
        "'sudo apt-get install docker.io' on Debian/Ubuntu); start it ('sudo systemctl start docker', or "
        "'sudo dockerd' where there is no systemd); or set DOCKER_HOST (or c.DockerBackend.base_url) to an "
        "engine that runs elsewhere, e.g. ssh://user@host or tcp://host:2376 with TLS."
    )
