"""Get a container engine and a base image on machines where nothing can be pulled.

Air-gapped and registry-less hosts are common (CI sandboxes, locked-down clusters): ``docker pull`` fails
at once there, yet the Debian apt mirror usually answers. This module makes such a host usable without a
manual setup step:

* :func:`ensure_engine` finds an answering Docker engine, else starts the local ``dockerd`` (root only),
  else installs ``docker.io`` from apt (Debian/Ubuntu, root only), else explains how to get one.
* :func:`ensure_base_image` returns the project's default base: the named image when the engine has it or
  can pull it, else an image bootstrapped from Debian packages by :func:`bootstrap_base_image`
  (``debootstrap --variant=minbase``, imported with the docker SDK, verified, then tagged).

``python -m jupyter_containers.backends.bootstrap`` runs both and says what it did.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import BackendError, ContainersError, EngineUnavailableError
from ..paths import file_lock
from .base import LABEL_PREFIX, labels

Log = Callable[[str], None]

DEFAULT_SOCKET = "unix:///var/run/docker.sock"
DOCKERD_LOG = Path("/var/log/jupyter-containers-dockerd.log")
DOCKERD_PIDFILE = Path("/var/log/jupyter-containers-dockerd.pid")
DOCKERD_DEFAULT_PIDFILE = Path("/var/run/docker.pid")

DEFAULT_BASE = "python:3.11-slim"
OFFLINE_TAG = "jupyter-containers/base:bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
SOURCES_LIST = Path("/etc/apt/sources.list")
SOURCES_DIR = Path("/etc/apt/sources.list.d")
OS_RELEASE = Path("/etc/os-release")
WORK_DIR = Path("/var/tmp")
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates", "libstdc++6", "passwd")
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Suites without -updates / -security archives.
_ROLLING_SUITES = ("sid", "unstable", "experimental", "rc-buggy")
_MIRROR_SCHEMES = ("http", "https", "ftp")


# ---------------------------------------------------------------------------------------------- engine
def ensure_engine(
    base_url: str | None = None,
    *,
    start: bool = True,
    install: bool = True,
    log: Log = print,
    timeout: float = 60,
) -> dict:
    """Return ``APIClient.version()`` of an engine that answers, starting or installing one if we may.

    Users should not have to know that a build needs a daemon: on a root-run Debian/Ubuntu host an engine
    appears on demand. Anything we cannot do (remote address, not root, not Debian) ends in an
    :class:`EngineUnavailableError` that says exactly how to get an engine. Nothing is ever killed.
    """
    address = engine_address(base_url)
    info, why = _probe(base_url)
    if info is not None:
        log(f"engine: Docker {info.get('Version')} (API {info.get('ApiVersion')}) answers at {address}")
        return info
    log(f"engine: none answers at {address} ({why})")

    refusal = _start_refusal(address, start)
    if refusal is None and shutil.which("dockerd") is None:
        if not install:
            refusal = "dockerd is not installed and installing it was not allowed (--no-install / install=False)"
        elif not is_debian_like():
            refusal = "dockerd is not installed and automatic installation only knows Debian/Ubuntu (apt)"
        else:
            _apt_install(["docker.io"], log, error=EngineUnavailableError)
            info, _ = _probe(base_url)  # the package's init script may have started it already
            if info is not None:
                log(f"engine: Docker {info.get('Version')} answers at {address} after installing docker.io")
                return info
            if shutil.which("dockerd") is None:
                refusal = "docker.io was installed but no dockerd is on PATH"
    if refusal is None:
        return _start_dockerd(base_url, address, log, timeout)
    raise EngineUnavailableError(_how_to_get_an_engine(address, why, refusal))


def engine_address(base_url: str | None = None) -> str:
    """The address the docker SDK will use: ``base_url``, else ``DOCKER_HOST``, else the default socket."""
    address = base_url or os.environ.get("DOCKER_HOST") or DEFAULT_SOCKET
    if address.startswith("/"):
        address = "unix://" + address
    return address


def _probe(base_url: str | None, timeout: float = 10) -> tuple[dict | None, str]:
    """``(version info, "")`` if an engine answers, else ``(None, one-line reason)``."""
    import docker
    import requests

    api = None
    try:
        kwargs: dict[str, Any] = {"base_url": base_url} if base_url else docker.utils.kwargs_from_env()
        api = docker.APIClient(version="auto", timeout=timeout, **kwargs)
        return api.version(), ""
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
        return None, _one_line(exc)
    finally:
        if api is not None:
            api.close()


def _start_refusal(address: str, start: bool) -> str | None:
    """Why we must not start a local dockerd for ``address``, or None if we may."""
    if not start:
        return "starting an engine was not allowed (start=False)"
    if not address.startswith("unix://"):
        return f"{address} is not a local socket, so there is nothing to start here"
    if os.geteuid() != 0:
        return "starting dockerd needs root and this process is not root"
    return None


def _start_dockerd(base_url: str | None, address: str, log: Log, timeout: float) -> dict:
    """Start dockerd detached (or wait for one that is starting) until it answers at ``address``."""
    with file_lock("jupyter-containers-dockerd-start"):
        info, _ = _probe(base_url)
        if info is not None:  # another process started it while we waited for the lock
            log(f"engine: Docker {info.get('Version')} answers at {address}")
            return info
        proc: subprocess.Popen | None = None
        offset = DOCKERD_LOG.stat().st_size if DOCKERD_LOG.exists() else 0
        pid = _starting_dockerd_pid() if address == DEFAULT_SOCKET else None
        if pid is not None:
            log(f"engine: dockerd (PID {pid}) is already running; waiting up to {timeout:g} s for it to answer")
        else:
            cmd = ["dockerd"] if address == DEFAULT_SOCKET else ["dockerd", "-H", address]
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
            info, why = _probe(base_url, timeout=5)
            if info is not None:
                log(
                    f"engine: dockerd (PID {pid}) answers at {address} after {time.monotonic() - started:.1f} s "
                    f"(Docker {info.get('Version')}, API {info.get('ApiVersion')})"
                )
                return info
            exited = proc.poll() if proc is not None else (None if _pid_alive(pid) else "unknown")
            if exited is not None:
                raise EngineUnavailableError(
                    f"dockerd (PID {pid}) exited (code {exited}) before answering at {address}; "
                    f"last lines of {DOCKERD_LOG}:\n{_log_tail(DOCKERD_LOG, offset)}"
                )
            if time.monotonic() - started > timeout:
                raise EngineUnavailableError(
                    f"dockerd (PID {pid}) did not answer at {address} within {timeout:g} s ({why}); it was left "
                    f"running. Last lines of {DOCKERD_LOG}:\n{_log_tail(DOCKERD_LOG, offset)}"
                )
            time.sleep(0.25)


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


def _log_tail(path: Path, offset: int = 0, lines: int = 15) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            text = fh.read().decode(errors="replace")
    except OSError as exc:
        return f"    (cannot read it: {exc})"
    tail = text.splitlines()[-lines:] or ["(empty)"]
    return "\n".join("    " + line for line in tail)


def _how_to_get_an_engine(address: str, why: str, refusal: str) -> str:
    return (
        f"no Docker engine answers at {address} ({why}) and none could be provided automatically: {refusal}. "
        "To get one: install Docker Engine (https://docs.docker.com/engine/install/, or "
        "'sudo apt-get install docker.io' on Debian/Ubuntu); start it ('sudo systemctl start docker', or "
        "'sudo dockerd' where there is no systemd); or set DOCKER_HOST (or c.DockerBackend.base_url) to an "
        "engine that runs elsewhere, e.g. ssh://user@host or tcp://host:2376 with TLS."
    )


# ---------------------------------------------------------------------------------------------- apt
def is_debian_like(os_release: str | Path = OS_RELEASE) -> bool:
    """True on Debian, Ubuntu and their derivatives, where we know how to install packages (apt)."""
    fields = _read_os_release(os_release)
    ids = {fields.get("ID", "")} | set(fields.get("ID_LIKE", "").split())
    return bool(ids & {"debian", "ubuntu"}) and shutil.which("apt-get") is not None


def _read_os_release(path: str | Path) -> dict[str, str]:
    fields = {}
    try:
        text = Path(path).read_text()
    except OSError:
        return {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.startswith("#"):
            fields[key.strip()] = value.strip().strip("\"'")
    return fields


def _have_package_lists() -> bool:
    lists = Path("/var/lib/apt/lists")
    return lists.is_dir() and any("Packages" in p.name for p in lists.iterdir())


def _apt_install(packages: list[str], log: Log, *, error: type[BackendError] = BackendError) -> None:
    """``apt-get install -y`` as root, refreshing package lists only when there are none or they are stale."""
    if os.geteuid() != 0:
        raise error(f"installing {' '.join(packages)} needs root; run 'sudo apt-get install {' '.join(packages)}'")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    updated = False

    def run(cmd: list[str]) -> subprocess.CompletedProcess:
        log(f"apt: {' '.join(cmd)}")
        return subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)

    def fail(cmd: list[str], result: subprocess.CompletedProcess) -> BackendError:
        tail = (result.stdout + result.stderr).strip().splitlines()[-15:]
        return error(
            f"'{' '.join(cmd)}' failed (exit {result.returncode}):\n" + "\n".join("    " + line for line in tail)
        )

    update = ["apt-get", "update"]
    if not _have_package_lists():
        result = run(update)
        if result.returncode:
            raise fail(update, result)
        updated = True
    install = ["apt-get", "install", "-y", *packages]
    result = run(install)
    if result.returncode and not updated:  # stale lists: the .debs they name are gone from the mirror
        log("apt: install failed; refreshing the package lists and retrying once")
        result = run(update)
        if result.returncode:
            raise fail(update, result)
        result = run(install)
    if result.returncode:
        raise fail(install, result)


# ---------------------------------------------------------------------------------------------- mirrors
def read_apt_sources(
    *, sources_list: str | Path = SOURCES_LIST, sources_dir: str | Path = SOURCES_DIR
) -> list[dict[str, list[str]]]:
    """The host's enabled ``deb`` sources in apt's order: deb822 ``*.sources`` first, then one-line files.

    Each entry is ``{"uris": [...], "suites": [...], "components": [...]}``.
    """
    entries: list[dict[str, list[str]]] = []
    directory = Path(sources_dir)
    for path in sorted(directory.glob("*.sources")) if directory.is_dir() else []:
        entries.extend(_parse_deb822(_read(path)))
    one_line = [Path(sources_list)] + (sorted(directory.glob("*.list")) if directory.is_dir() else [])
    for path in one_line:
        entries.extend(_parse_one_line(_read(path)))
    return entries


def detect_mirror(
    suite: str | None = "bookworm",
    *,
    sources_list: str | Path = SOURCES_LIST,
    sources_dir: str | Path = SOURCES_DIR,
) -> str:
    """The Debian mirror the host already uses (air-gapped sites point apt at their own), else deb.debian.org.

    Prefers an http(s)/ftp source that carries ``suite`` with component ``main`` (so that a third-party
    repository listed first, e.g. download.docker.com, is not taken), then any such ``main`` source that is
    not a security archive. Ubuntu archives are skipped: they do not carry Debian suites.
    """
    candidates = [
        (uri, entry)
        for entry in read_apt_sources(sources_list=sources_list, sources_dir=sources_dir)
        for uri in entry["uris"][:1]
        if _usable_mirror(uri) and "main" in entry["components"] and "ubuntu" not in uri.lower()
    ]
    for uri, entry in candidates:
        if suite and suite in entry["suites"]:
            return uri.rstrip("/")
    for uri, entry in candidates:
        if not _is_security(uri, entry["suites"]):
            return uri.rstrip("/")
    return DEFAULT_MIRROR


def detect_security_mirror(
    suite: str | None = "bookworm",
    *,
    sources_list: str | Path = SOURCES_LIST,
    sources_dir: str | Path = SOURCES_DIR,
) -> str:
    """The host's Debian security archive if it lists one, else http://deb.debian.org/debian-security."""
    for entry in read_apt_sources(sources_list=sources_list, sources_dir=sources_dir):
        for uri in entry["uris"][:1]:
            if _usable_mirror(uri) and "ubuntu" not in uri.lower() and _is_security(uri, entry["suites"]):
                if not suite or any(
                    s.startswith(f"{suite}-security") or s == f"{suite}/updates" for s in entry["suites"]
                ):
                    return uri.rstrip("/")
    return DEFAULT_SECURITY_MIRROR


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return ""


def _usable_mirror(uri: str) -> bool:
    return urlsplit(uri).scheme in _MIRROR_SCHEMES and bool(urlsplit(uri).netloc)


def _is_security(uri: str, suites: Iterable[str]) -> bool:
    return "security" in urlsplit(uri).path or any(s.endswith("-security") or s.endswith("/updates") for s in suites)


def _parse_deb822(text: str) -> list[dict[str, list[str]]]:
    entries = []
    stanzas: list[dict[str, str]] = [{}]
    key = None
    for raw in text.splitlines():
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if stanzas[-1]:
                stanzas.append({})
            key = None
            continue
        if raw[0] in " \t" and key:  # continuation line
            stanzas[-1][key] += " " + raw.strip()
            continue
        name, sep, value = raw.partition(":")
        if sep:
            key = name.strip().lower()
            stanzas[-1][key] = value.strip()
    for stanza in stanzas:
        if "deb" not in stanza.get("types", "").split():
            continue
        if stanza.get("enabled", "yes").strip().lower() in ("no", "false", "0"):
            continue
        entries.append(
            {
                "uris": stanza.get("uris", "").split(),
                "suites": stanza.get("suites", "").split(),
                "components": stanza.get("components", "").split(),
            }
        )
    return [e for e in entries if e["uris"]]


def _parse_one_line(text: str) -> list[dict[str, list[str]]]:
    entries = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        words = line.split()
        if not words or words[0] != "deb":
            continue
        words = words[1:]
        if words and words[0].startswith("["):  # options: [arch=amd64 signed-by=...]
            while words and not words[0].endswith("]"):
                words.pop(0)
            words = words[1:]
        if len(words) >= 2:
            entries.append({"uris": [words[0]], "suites": [words[1]], "components": words[2:]})
    return entries


# ---------------------------------------------------------------------------------------------- images
def ensure_base_image(
    name: str,
    *,
    client: Any = None,
    offline_tag: str = OFFLINE_TAG,
    allow_pull: bool = True,
    allow_bootstrap: bool = True,
    log: Log = print,
) -> str:
    """The image reference to use as the project's default base, pulling or bootstrapping it if needed.

    Hot path (the engine has ``name`` or ``offline_tag``): two image inspections, no registry access, so a
    machine without a registry never waits for a pull again once its base exists.
    """
    api = _api(client)
    if _image_id(api, name):
        return name
    if _image_id(api, offline_tag):
        return offline_tag
    if allow_pull:
        log(f"base: {name} is not on the engine; pulling it")
        failure = _pull(api, name)
        if failure is None and _image_id(api, name):
            log(f"base: pulled {name}")
            return name
        log(f"base: cannot pull {name}: {failure or 'the engine does not list it after the pull'}")
    if allow_bootstrap:
        with file_lock(f"jupyter-containers-bootstrap:{offline_tag}"):
            if _image_id(api, offline_tag):  # another process bootstrapped it while we waited
                return offline_tag
            log(f"base: bootstrapping {offline_tag} from Debian packages (debootstrap, about a minute, once)")
            bootstrap_base_image(offline_tag, client=api, log=log)
        return offline_tag
    raise BackendError(
        f"no base image: {name!r} is not on the engine and could not be pulled, and bootstrapping "
        f"{offline_tag!r} offline was not allowed. Provide one: 'docker pull {name}' where a registry answers, "
        f"'docker load -i image.tar' of an image saved elsewhere (tag it {name} or {offline_tag}), or allow "
        "the offline bootstrap (c.Builder.bootstrap_offline_base = True, or "
        "'python -m jupyter_containers.backends.bootstrap' as root)."
    )


def bootstrap_base_image(
    tag: str,
    *,
    client: Any = None,
    suite: str = "bookworm",
    mirror: str | None = None,
    log: Log = print,
) -> str:
    """Build ``tag`` from Debian packages with debootstrap and return its image id; no registry needed.

    The result has python3 + venv, apt and a dpkg database (so specs with apt packages work), and the
    distribution's own CA certificates: proxy CA bundles are injected at build time, never baked in. The
    image is tagged only after a container has checked it, so ``tag`` never points at a broken image.
    """
    api = _api(client)
    if os.geteuid() != 0:
        raise BackendError(
            "bootstrapping a base image runs debootstrap, which needs root; run "
            "'sudo python -m jupyter_containers.backends.bootstrap', or provide a base image "
            "('docker pull python:3.11-slim' or 'docker load')"
        )
    debootstrap = _ensure_debootstrap(log)
    mirror = (mirror or detect_mirror(suite)).rstrip("/")
    security = detect_security_mirror(suite)
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="jupyter-containers-bootstrap-", dir=WORK_DIR))
    try:
        rootfs = tmp / "rootfs"
        _debootstrap(debootstrap, suite, rootfs, mirror, tmp / "debootstrap.out", log)
        _prepare_rootfs(rootfs, suite, mirror, security)
        image_id = _import_rootfs(api, rootfs, suite, tmp / "tar.err", log)
    finally:
        _remove_tree(tmp)
    _verify(api, image_id, log)
    _tag(api, image_id, tag, log)
    log(f"base: {tag} is ready ({image_id[:19]}) after {time.monotonic() - started:.0f} s")
    return image_id


def _api(client: Any) -> Any:
    """A low-level ``docker.APIClient`` from a DockerClient, an APIClient or the environment."""
    if client is not None:
        return getattr(client, "api", client)
    import docker

    try:
        return docker.APIClient(version="auto", **docker.utils.kwargs_from_env())
    except docker.errors.DockerException as exc:
        raise EngineUnavailableError(
            f"no Docker engine answers at {engine_address()} ({_one_line(exc)}); "
            "run 'python -m jupyter_containers.backends.bootstrap' as root to start or install one, "
            "or set DOCKER_HOST"
        ) from None


def _image_id(api: Any, reference: str) -> str | None:
    import docker

    try:
        return api.inspect_image(reference)["Id"]
    except docker.errors.ImageNotFound:
        return None
    except docker.errors.APIError as exc:
        raise BackendError(f"cannot inspect image {reference!r}: {_one_line(exc)}") from None


def _pull(api: Any, reference: str) -> str | None:
    """Pull ``reference``; None on success, else why it failed in one line."""
    import docker
    import requests

    repository, tag = docker.utils.parse_repository_tag(reference)
    try:
        for event in api.pull(repository, tag=tag or "latest", stream=True, decode=True):
            if isinstance(event, dict) and event.get("error"):
                return _one_line(event["error"])
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
        return _one_line(getattr(exc, "explanation", None) or exc)
    return None


def _ensure_debootstrap(log: Log) -> str:
    found = shutil.which("debootstrap")
    if found:
        return found
    if not is_debian_like():
        raise BackendError(
            "debootstrap is not installed and only Debian/Ubuntu can install it automatically; install "
            "debootstrap, or provide a base image ('docker pull python:3.11-slim' or 'docker load')"
        )
    packages = ["debootstrap"]
    if not Path("/usr/share/keyrings/debian-archive-keyring.gpg").exists():
        packages.append("debian-archive-keyring")  # Ubuntu hosts: to verify Debian's Release files
    _apt_install(packages, log)
    found = shutil.which("debootstrap") or ("/usr/sbin/debootstrap" if Path("/usr/sbin/debootstrap").exists() else "")
    if not found:
        raise BackendError("debootstrap was installed but is not on PATH (add /usr/sbin to PATH)")
    return found


def _debootstrap(debootstrap: str, suite: str, rootfs: Path, mirror: str, output: Path, log: Log) -> None:
    cmd = [debootstrap, "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", suite, str(rootfs), mirror]
    log(f"base: {' '.join(cmd)}")
    started = time.monotonic()
    with open(output, "wb") as out:
        code = subprocess.call(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    if code:
        detail = _log_tail(output, lines=12)
        inner = rootfs / "debootstrap" / "debootstrap.log"
        if inner.exists():
            detail += f"\n  last lines of {inner.name}:\n" + _log_tail(inner, lines=12)
        raise BackendError(f"debootstrap of {suite} from {mirror} failed (exit {code}):\n{detail}")
    log(f"base: debootstrap finished in {time.monotonic() - started:.0f} s")


def _prepare_rootfs(rootfs: Path, suite: str, mirror: str, security: str) -> None:
    """Complete apt sources for later ``apt-get update``; no downloaded .debs or lists in the image."""
    lines = [f"deb {mirror} {suite} main"]
    if suite not in _ROLLING_SUITES:
        lines += [f"deb {mirror} {suite}-updates main", f"deb {security} {suite}-security main"]
    (rootfs / "etc/apt/sources.list").write_text("\n".join(lines) + "\n")
    for deb in (rootfs / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()
    for binary in (rootfs / "var/cache/apt").glob("*.bin"):
        binary.unlink()
    lists = rootfs / "var/lib/apt/lists"
    for entry in lists.iterdir() if lists.is_dir() else []:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _import_rootfs(api: Any, rootfs: Path, suite: str, tar_err: Path, log: Log) -> str:
    """Stream ``rootfs`` as a tar into the engine (never held in memory) and return the untagged image id."""
    changes = [
        f"ENV PATH={IMAGE_PATH}",
        "ENV LANG=C.UTF-8",
        'CMD ["/bin/bash"]',
        *(f"LABEL {key}={value}" for key, value in base_labels(suite).items()),
    ]
    cmd = [
        "tar",
        "--numeric-owner",
        "-C",
        str(rootfs),
        "--exclude=./dev/*",
        "--exclude=./proc/*",
        "--exclude=./sys/*",
        "-c",
        ".",
    ]
    log("base: importing the root filesystem into the engine")
    started = time.monotonic()
    saved_timeout = api.timeout
    with open(tar_err, "wb") as err:
        tar = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
    try:
        api.timeout = max(saved_timeout or 0, 600)  # the engine answers only after unpacking ~250 MB
        response = api.import_image(src=tar.stdout, stream_src=True, changes=changes)
    except Exception:
        tar.kill()  # our own tar child only
        raise
    finally:
        api.timeout = saved_timeout
        if tar.stdout:
            tar.stdout.close()
        code = tar.wait()
    image_id = _imported_id(response)
    if code or not image_id:
        if image_id:
            _remove_image(api, image_id)
        raise BackendError(
            f"importing the bootstrapped root filesystem failed (tar exit {code}, engine said "
            f"{str(response).strip()[:300]!r}):\n{_log_tail(tar_err, lines=10)}"
        )
    log(f"base: imported {image_id[:19]} in {time.monotonic() - started:.0f} s")
    return image_id


def base_labels(suite: str) -> dict[str, str]:
    """The labels of a bootstrapped base image (``kind=base`` lets tools list and prune it like ours)."""
    return {**labels(kind="base"), f"{LABEL_PREFIX}.base.suite": suite}


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


def _verify(api: Any, image_id: str, log: Log) -> None:
    """Run the checks a build relies on in a throwaway container; on failure remove the image and raise."""
    script = (
        "set -e; python3 -c 'import venv, ssl, sqlite3, sys; print(sys.version.split()[0])'; "
        "apt-get --version | head -n 1; dpkg -s python3 >/dev/null"
    )
    import docker
    import requests

    container = None
    try:
        container = api.create_container(
            image_id,
            command=["/bin/sh", "-c", script],
            labels=labels(kind="bootstrap-check"),
            host_config=api.create_host_config(network_mode="none"),
        )
        api.start(container)
        code = api.wait(container, timeout=120)["StatusCode"]
        output = api.logs(container, stdout=True, stderr=True).decode(errors="replace").strip()
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        code, output = -1, f"could not run the check: {_one_line(exc)}"
    finally:
        if container is not None:
            try:
                api.remove_container(container, force=True)
            except docker.errors.APIError:
                pass
    if code:
        _remove_image(api, image_id)
        raise BackendError(
            f"the bootstrapped base image failed its check (exit {code}) and was removed; output:\n{output}"
        )
    log(f"base: verified: Python {' / '.join(output.splitlines())}")


def _tag(api: Any, image_id: str, reference: str, log: Log) -> None:
    """Point ``reference`` at ``image_id`` in one call; drop the image it replaces if it was our old base."""
    import docker

    repository, tag = docker.utils.parse_repository_tag(reference)
    tag = tag or "latest"
    previous = _image_id(api, f"{repository}:{tag}")
    api.tag(image_id, repository, tag, force=True)
    log(f"base: tagged {image_id[:19]} as {repository}:{tag}")
    if previous and previous != image_id:
        old_labels = (api.inspect_image(previous).get("Config") or {}).get("Labels") or {}
        if old_labels.get(f"{LABEL_PREFIX}.kind") == "base":
            try:
                api.remove_image(previous)
                log(f"base: removed the previous base image {previous[:19]}")
            except docker.errors.APIError:  # still used by environment images or containers: keep it
                log(f"base: kept the previous base image {previous[:19]} (still in use)")


def _remove_image(api: Any, image_id: str) -> None:
    import docker

    try:
        api.remove_image(image_id, force=True)
    except docker.errors.APIError:
        pass


def _remove_tree(path: Path) -> None:
    """Remove the scratch directory; unmount anything debootstrap left mounted inside first (never follow)."""
    root = str(path.resolve())
    mounts = []
    try:
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if point == root or point.startswith(root + "/"):
                mounts.append(point)
    except OSError:
        pass
    for point in sorted(mounts, key=len, reverse=True):
        subprocess.call(["umount", "-l", point], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shutil.rmtree(path, ignore_errors=True)


def _one_line(value: object, limit: int = 240) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    """Make this host ready to build: an engine that answers and a default base image on it."""
    parser = argparse.ArgumentParser(
        prog="python -m jupyter_containers.backends.bootstrap",
        description="Ensure a Docker engine answers (start or install it if needed) and a base image exists "
        "on it (pull it, else bootstrap one from Debian packages).",
    )
    parser.add_argument(
        "--base", default=DEFAULT_BASE, help=f"base image to use when present or pullable ({DEFAULT_BASE})"
    )
    parser.add_argument("--offline-tag", default=OFFLINE_TAG, help=f"tag of the bootstrapped base ({OFFLINE_TAG})")
    parser.add_argument("--no-install", action="store_true", help="never install docker.io with apt")
    parser.add_argument("--no-pull", action="store_true", help="do not try to pull --base")
    parser.add_argument(
        "--rebootstrap", action="store_true", help="bootstrap --offline-tag again even if it exists (e.g. for updates)"
    )
    parser.add_argument("--suite", default="bookworm", help="Debian suite for --rebootstrap (bookworm)")
    parser.add_argument("--mirror", default=None, help="Debian mirror for --rebootstrap (default: the host's)")
    args = parser.parse_args(argv)

    def say(text: str) -> None:
        print(text, flush=True)

    try:
        info = ensure_engine(install=not args.no_install, log=say)
        api = _api(None)
        if args.rebootstrap:
            bootstrap_base_image(args.offline_tag, client=api, suite=args.suite, mirror=args.mirror, log=say)
            reference = args.offline_tag
        else:
            reference = ensure_base_image(
                args.base, client=api, offline_tag=args.offline_tag, allow_pull=not args.no_pull, log=say
            )
        image_id = _image_id(api, reference) or "?"
    except ContainersError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    say(f"ready: Docker {info.get('Version')} at {engine_address()}; default base {reference} ({image_id[:19]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
