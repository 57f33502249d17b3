"""A second, real Docker engine for tests: Docker-in-Docker on the main engine, reached over TCP+TLS and ssh.

Later tests of remote hosts, GPUs, engine failures and Swarm need an engine that is not the local socket.
:func:`start_second_engine` gives one (the ``second_engine`` fixture in ``tests/conftest.py`` shares it by the
whole session):

- the image ``jupyter-containers-test/dind:<hash of its build inputs>``, built once with the legacy builder
  ``FROM jupyter-containers/base:bookworm`` (Debian's ``docker.io``, ``openssh-server``, ``iptables``) plus
  stand-ins for the NVIDIA Container Toolkit and driver (see :data:`NVIDIA_HOOK` and :data:`NVIDIA_SMI`);
- a container with the Docker-in-Docker flags that work here (``--privileged`` does not), its
  ``/var/lib/docker`` on an anonymous volume (else the inner storage driver is vfs), ``/tmp``, ``/dev/shm`` and
  the host CA bundle mounted at the same paths (so host-path bind mounts of the core resolve in there too);
- inside it ``dockerd`` on its unix socket and on ``tcp://0.0.0.0:2376`` with ``--tlsverify`` (certificates
  made here with the ``openssl`` CLI), and ``sshd`` with a generated ed25519 key for root; both published on
  127.0.0.1 only, on random ports;
- the base image brought over once (``docker save`` streamed into ``docker load``).

Everything it creates is labelled as ours, as a test's, and with the owner pid: a crashed session's engine is
removed by the orphan cleanup (``jupyter-containers prune``, the test session's ``_cleanup``,
:func:`remove_orphaned_engines`), and stops by itself after ``lifetime`` seconds anyway.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DIND_REPOSITORY = "jupyter-containers-test/dind"
BASE_IMAGE = "jupyter-containers/base:bookworm"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
#: Marks the engine container and its volume (value: the role, "dind"); the other labels are the usual ones.
ENGINE_LABEL = "io.jupyter.containers.test-engine"
SSH_ALIAS = "second-engine"
#: The engine container's name, and the cgroup parent of its inner engine's containers, start so.
CGROUP_PREFIX = "jupyter-containers-test-engine-"
TLS_PORT = 2376
#: Changes whenever the recipe below changes meaning without changing its text (part of the image hash).
RECIPE_VERSION = "1"
#: Where the stand-in hook logs inside the engine container unless NVIDIA_HOOK_STANDIN_LOG says otherwise.
DEFAULT_HOOK_LOG = "/var/log/nvidia-container-runtime-hook.log"

# --------------------------------------------------------------------------------------------- image recipe
NVIDIA_HOOK = r"""#!/bin/sh
# Stand-in for nvidia-container-runtime-hook of the NVIDIA Container Toolkit, which cannot exist on a machine
# without an NVIDIA GPU and driver (tests/engines.py).
#
# dockerd registers its "nvidia" device driver at start when a program of this name is on its PATH. Then it
# accepts DeviceRequests with the "gpu" capability (docker run --gpus ...), gives the container
# NVIDIA_VISIBLE_DEVICES (--gpus 2 -> 0,1; device=1,3 -> 1,3; all -> all) and adds this program to the OCI
# spec as a prestart hook: runc calls it as "nvidia-container-runtime-hook prestart" with the container's
# OCI state JSON on stdin. The real hook would mount the devices and driver libraries into the container;
# this one only appends one line per call to a log, "<arguments><TAB><state JSON>", and exits 0.
log=${NVIDIA_HOOK_STANDIN_LOG:-/var/log/nvidia-container-runtime-hook.log}
state=$(cat | tr -d '\n')
printf '%s\t%s\n' "$*" "$state" >>"$log"
exit 0
"""

NVIDIA_SMI = r"""#!/usr/bin/python3
# Stand-in for nvidia-smi of the NVIDIA driver, which cannot exist on a machine without an NVIDIA GPU
# (tests/engines.py). Fixed figures for two GPUs, in nvidia-smi's CSV query format:
#
#   nvidia-smi --query-gpu=index,uuid,utilization.gpu,memory.used,memory.total --format=csv,noheader,nounits
#   0, GPU-00000000-0000-0000-0000-000000000000, 0, 0, 16384
#   1, GPU-00000000-0000-0000-0000-000000000001, 37, 1024, 16384
#
# Fields: index, uuid, name, pci.bus_id, driver_version, utilization.gpu [%], utilization.memory [%],
# memory.used [MiB], memory.total [MiB], memory.free [MiB], temperature.gpu. --query-compute-apps (fields
# pid, process_name, gpu_uuid, gpu_bus_id, used_memory [MiB], alias used_gpu_memory) lists no process.
# A test can replace either table: /etc/nvidia-smi-standin/gpus.csv and compute-apps.csv, a CSV file each
# whose first row names the fields (as above) and whose values carry no units. `nvidia-smi -L` lists the
# GPUs; without arguments a short summary is printed. Unknown fields fail as nvidia-smi does (exit 2).
import csv
import sys

GPUS = [
    {"index": "0", "uuid": "GPU-00000000-0000-0000-0000-000000000000", "name": "Stand-in GPU",
     "pci.bus_id": "00000000:00:04.0", "driver_version": "550.00", "utilization.gpu": "0",
     "utilization.memory": "0", "memory.used": "0", "memory.total": "16384", "memory.free": "16384",
     "temperature.gpu": "30"},
    {"index": "1", "uuid": "GPU-00000000-0000-0000-0000-000000000001", "name": "Stand-in GPU",
     "pci.bus_id": "00000000:00:05.0", "driver_version": "550.00", "utilization.gpu": "37",
     "utilization.memory": "6", "memory.used": "1024", "memory.total": "16384", "memory.free": "15360",
     "temperature.gpu": "41"},
]
APPS = []
UNITS = {"utilization.gpu": "%", "utilization.memory": "%", "memory.used": "MiB", "memory.total": "MiB",
         "memory.free": "MiB", "used_memory": "MiB", "used_gpu_memory": "MiB"}
OVERRIDES = "/etc/nvidia-smi-standin/"


def table(name, default):
    try:
        with open(OVERRIDES + name, newline="") as f:
            return [{k.strip(): (v or "").strip() for k, v in row.items()} for row in csv.DictReader(f)]
    except FileNotFoundError:
        return default


def query(rows, fields, fmt):
    options = set(fmt.split(","))
    unknown = [f for f in fields if rows and f not in rows[0] and f != "used_gpu_memory"]
    if unknown:
        print(f'Field "{unknown[0]}" is not a valid field to query.', file=sys.stderr)
        return 2
    if "noheader" not in options:
        print(", ".join(f + ("" if "nounits" in options or f not in UNITS else f" [{UNITS[f]}]") for f in fields))
    for row in rows:
        values = []
        for f in fields:
            value = row.get(f, row.get("used_memory", "")) if f == "used_gpu_memory" else row[f]
            values.append(value + ("" if "nounits" in options or f not in UNITS else " " + UNITS[f]))
        print(", ".join(values))
    return 0


def main(argv):
    gpus = table("gpus.csv", GPUS)
    options = dict(a[2:].split("=", 1) for a in argv if a.startswith("--") and "=" in a)
    fmt = options.get("format", "csv")
    if "query-gpu" in options:
        return query(gpus, options["query-gpu"].split(","), fmt)
    if "query-compute-apps" in options:
        apps = table("compute-apps.csv", APPS)
        fields = options["query-compute-apps"].split(",")
        return query(apps or [dict.fromkeys(fields, "")], fields, fmt) if apps else query([], fields, fmt)
    if argv[:1] in (["-L"], ["--list-gpus"]):
        for gpu in gpus:
            print(f"GPU {gpu['index']}: {gpu['name']} (UUID: {gpu['uuid']})")
        return 0
    print("NVIDIA-SMI stand-in (tests/engines.py): no NVIDIA driver on this machine")
    for gpu in gpus:
        print(f"GPU {gpu['index']} {gpu['uuid']} {gpu['utilization.gpu']}% {gpu['memory.used']}MiB / "
              f"{gpu['memory.total']}MiB")
    return 0


sys.exit(main(sys.argv[1:]))
"""

#: The inner engine's command line (the start script runs it; :meth:`SecondEngine.start_engine` again).
DOCKERD_COMMAND = (
    "dockerd --host unix:///var/run/docker.sock --host tcp://0.0.0.0:2376 \\\n"
    "  --tlsverify --tlscacert /etc/docker/tls/ca.pem --tlscert /etc/docker/tls/server-cert.pem \\\n"
    '  --tlskey /etc/docker/tls/server-key.pem --cgroup-parent "${SECOND_ENGINE_CGROUP_PARENT:-/second-engine}" \\\n'
    "  ${SECOND_ENGINE_DOCKERD_ARGS:-}"
)

START_SCRIPT = (
    r"""#!/bin/sh
# Entry point of the test engine container (tests/engines.py). The fixture has copied in, before the start,
# /root/.ssh/authorized_keys and /etc/docker/tls/{ca,server-cert,server-key}.pem.
# dockerd: the unix socket inside, tcp://0.0.0.0:2376 with --tlsverify outside (published on 127.0.0.1
# only); its containers' cgroups go under SECOND_ENGINE_CGROUP_PARENT (the host's cgroup tree is mounted).
# sshd: keys only. The container stops by itself after SECOND_ENGINE_LIFETIME seconds.
set -eu
chmod 700 /root/.ssh
ssh-keygen -A >/dev/null
"""
    + DOCKERD_COMMAND
    + r""" &
/usr/sbin/sshd -D -e -o PasswordAuthentication=no -o KbdInteractiveAuthentication=no \
  -o PermitRootLogin=prohibit-password &
exec sleep "${SECOND_ENGINE_LIFETIME:-21600}"
"""
)

DOCKERFILE = f"""FROM {BASE_IMAGE}
# The machine reaches Debian only through a TLS-intercepting proxy: its CA bundle first.
COPY ca-certificates.crt {CA_BUNDLE}
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker.io openssh-server iptables \\
 && rm -rf /var/lib/apt/lists/* \\
 && mkdir -p /run/sshd /root/.ssh /etc/docker/tls
COPY nvidia-container-runtime-hook nvidia-smi second-engine /usr/local/bin/
CMD ["/usr/local/bin/second-engine"]
"""


def image_context() -> dict[str, tuple[bytes, int]]:
    """The build context: file name → (content, mode)."""
    return {
        "Dockerfile": (DOCKERFILE.encode(), 0o644),
        "ca-certificates.crt": (Path(CA_BUNDLE).read_bytes(), 0o644),
        "nvidia-container-runtime-hook": (NVIDIA_HOOK.encode(), 0o755),
        "nvidia-smi": (NVIDIA_SMI.encode(), 0o755),
        "second-engine": (START_SCRIPT.encode(), 0o755),
    }


def image_tag(api: Any) -> str:
    """``jupyter-containers-test/dind:<hash>`` of the recipe, its files and the base image's id."""
    base = api.inspect_image(BASE_IMAGE)["Id"]
    digest = hashlib.sha256(f"{RECIPE_VERSION}\0{base}\0".encode())
    for name, (data, mode) in sorted(image_context().items()):
        digest.update(f"{name}\0{mode}\0{len(data)}\0".encode())
        digest.update(data)
    return f"{DIND_REPOSITORY}:{digest.hexdigest()[:16]}"


def image_labels() -> dict[str, str]:
    return {"io.jupyter.containers.managed": "true", "io.jupyter.containers.test": "true", ENGINE_LABEL: "image"}


def ensure_image(api: Any, *, on_log: Callable[[str], None] | None = None) -> str:
    """The engine image's tag, built (legacy builder, ~21 s) only when that tag does not exist yet.

    Older ``jupyter-containers-test/dind`` tags (an earlier recipe) are removed when nothing uses them.
    """
    import docker

    tag = image_tag(api)
    try:
        api.inspect_image(tag)
        return tag
    except docker.errors.ImageNotFound:
        pass
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, (data, mode) in image_context().items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 0
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    tail: list[str] = []
    error = None
    # api.build without version=2: the legacy builder (no buildx here); rm/forcerm leave no containers behind.
    for message in api.build(
        fileobj=buf, custom_context=True, tag=tag, rm=True, forcerm=True, pull=False, labels=image_labels(), decode=True
    ):
        line = str(message.get("stream") or "").rstrip()
        if line:
            tail = [*tail[-30:], line]
            if on_log:
                on_log(line)
        if message.get("error"):
            error = message.get("errorDetail", {}).get("message") or message["error"]
    if error is not None:
        raise RuntimeError(f"building {tag} failed: {error}\n" + "\n".join(tail))
    for image in api.images(name=DIND_REPOSITORY):
        for old in image.get("RepoTags") or ():
            if old.startswith(DIND_REPOSITORY + ":") and old != tag:
                try:
                    api.remove_image(old)
                except docker.errors.APIError:
                    pass  # a concurrent session's engine still runs on it
    return tag


# --------------------------------------------------------------------------------------------- credentials
@dataclass(frozen=True)
class TlsFiles:
    """PEM files of one TLS identity: the CA it trusts, its certificate and key."""

    ca: Path
    cert: Path
    key: Path


_OPENSSL_CA = """[req]
distinguished_name = dn
prompt = no
x509_extensions = ca
[dn]
CN = {cn}
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
"""

_OPENSSL_LEAF = """[req]
distinguished_name = dn
prompt = no
[dn]
CN = {cn}
[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = {usage}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
{san}
"""


def _openssl(folder: Path, *args: str) -> None:
    result = subprocess.run(["openssl", *args], cwd=folder, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {result.stderr.strip()}")


def make_ca(folder: Path, name: str = "ca", cn: str = "jupyter-containers test CA") -> tuple[Path, Path]:
    """A self-signed EC P-256 CA valid for 7 days: (certificate, key)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.cnf").write_text(_OPENSSL_CA.format(cn=cn))
    _openssl(
        folder, "req", "-x509", "-new", "-config", f"{name}.cnf", "-newkey", "ec", "-pkeyopt",
        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", f"{name}-key.pem", "-out", f"{name}.pem", "-days", "7",
    )  # fmt: skip
    return folder / f"{name}.pem", folder / f"{name}-key.pem"


def make_cert(
    folder: Path, name: str, ca: tuple[Path, Path], *, server: bool, cn: str = "localhost"
) -> tuple[Path, Path]:
    """A certificate signed by ``ca``: for a server (``localhost``, ``127.0.0.1``) or a client."""
    san = "subjectAltName = DNS:localhost,IP:127.0.0.1" if server else ""
    usage = "serverAuth" if server else "clientAuth"
    (folder / f"{name}.cnf").write_text(_OPENSSL_LEAF.format(cn=cn, usage=usage, san=san))
    _openssl(
        folder, "req", "-new", "-config", f"{name}.cnf", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", f"{name}-key.pem", "-out", f"{name}.csr",
    )  # fmt: skip
    _openssl(
        folder, "x509", "-req", "-in", f"{name}.csr", "-CA", str(ca[0]), "-CAkey", str(ca[1]), "-set_serial",
        "0x" + secrets.token_hex(8), "-days", "7", "-extfile", f"{name}.cnf", "-extensions", "leaf",
        "-out", f"{name}-cert.pem",
    )  # fmt: skip
    (folder / f"{name}-key.pem").chmod(0o600)
    return folder / f"{name}-cert.pem", folder / f"{name}-key.pem"


def make_tls(folder: Path) -> tuple[TlsFiles, TlsFiles]:
    """A fresh CA with a server certificate for the engine and a client certificate for us: (server, client).

    The client's files are also in ``folder/client`` as ``ca.pem``, ``cert.pem``, ``key.pem``: the layout
    ``DOCKER_CERT_PATH`` (docker CLI, docker SDK) expects.
    """
    ca = make_ca(folder)
    server = make_cert(folder, "server", ca, server=True)
    cert, key = make_cert(folder, "client", ca, server=False, cn="jupyter-containers tests")
    client = folder / "client"
    client.mkdir(exist_ok=True)
    for source, target in ((ca[0], "ca.pem"), (cert, "cert.pem"), (key, "key.pem")):
        shutil.copy(source, client / target)
    return TlsFiles(ca[0], *server), TlsFiles(client / "ca.pem", client / "cert.pem", client / "key.pem")


def make_foreign_client(folder: Path, trusted_ca: Path) -> TlsFiles:
    """A client certificate from another CA (the engine must refuse it), trusting the engine's real CA."""
    ca = make_ca(folder, "foreign-ca", cn="not the engine's CA")
    cert, key = make_cert(folder, "foreign-client", ca, server=False, cn="intruder")
    return TlsFiles(trusted_ca, cert, key)


def make_ssh_key(folder: Path) -> Path:
    """A passphrase-less ed25519 key pair; returns the private key (the public one is ``.pub`` beside it)."""
    key = folder / "id_ed25519"
    key.unlink(missing_ok=True)
    key.with_suffix(".pub").unlink(missing_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "jupyter-containers-tests", "-f", str(key)],
        check=True,
        capture_output=True,
    )
    return key


def tls_client(url: str, tls: TlsFiles, *, timeout: float = 300) -> Any:
    """A docker.APIClient for a ``tcp://`` engine with ``--tlsverify``.

    requests lets ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` (set on this machine) replace the TLS config's CA
    (docker/docker-py#2433), so the client starts each request's ``verify`` from its own (the engine's CA).
    """
    import docker

    class Client(docker.APIClient):
        def merge_environment_settings(self, url, proxies, stream, verify, cert):  # type: ignore[no-untyped-def]
            verify = self.verify if verify is None else verify
            return super().merge_environment_settings(url, proxies, stream, verify, cert)

    config = docker.tls.TLSConfig(client_cert=(str(tls.cert), str(tls.key)), ca_cert=str(tls.ca), verify=True)
    return Client(base_url=url, tls=config, version="auto", timeout=timeout)


# --------------------------------------------------------------------------------------------- the engine
@dataclass
class SecondEngine:
    """A running Docker-in-Docker engine; see the module docstring."""

    container_id: str
    name: str
    tls_url: str
    tls: TlsFiles
    ssh_port: int
    ssh_key: Path
    ssh_config: Path
    folder: Path
    hook_log: Path
    cgroup_parent: str
    main_api: Any
    #: Seconds each phase of the start took: image (build or look-up), credentials, start, images (loading).
    timings: dict[str, float]
    #: The engine's host name (a Swarm node's name).
    hostname: str = SSH_ALIAS

    def api(self, *, timeout: float = 300) -> Any:
        """A docker.APIClient to the inner engine over TCP+TLS (a new one per call)."""
        return tls_client(self.tls_url, self.tls, timeout=timeout)

    def docker_config(self) -> Any:
        """A traitlets Config that points jupyter_containers' DockerBackend at this engine (merge it into yours)."""
        from traitlets.config import Config

        return Config(
            {
                "DockerBackend": {
                    "base_url": self.tls_url,
                    "tls_ca": str(self.tls.ca),
                    "tls_cert": str(self.tls.cert),
                    "tls_key": str(self.tls.key),
                    "tls_verify": True,
                }
            }
        )

    # ---- the stand-in NVIDIA hook
    def hook_log_path(self) -> Path:
        """The host path of the stand-in hook's log (the session folder is under /tmp, mounted in there)."""
        return self.hook_log

    def hook_calls(self) -> list[dict[str, Any]]:
        """One entry per hook call: ``{"args": ["prestart"], "state": {OCI state: id, pid, bundle, ...}}``."""
        calls = []
        text = self.hook_log.read_text() if self.hook_log.exists() else ""
        for line in text.splitlines():
            args, _, state = line.partition("\t")
            try:
                parsed = json.loads(state) if state else {}
            except ValueError:
                parsed = {"raw": state}
            calls.append({"args": args.split(), "state": parsed})
        return calls

    # ---- ssh
    @property
    def ssh_url(self) -> str:
        """``ssh://second-engine``: resolvable by an ``ssh`` that reads :attr:`ssh_config` (see :meth:`ssh_env`)."""
        return f"ssh://{SSH_ALIAS}"

    def ssh_options(self) -> list[str]:
        """Options for ``ssh`` (and ``scp``): ``["-F", config]``; the host is then ``second-engine``."""
        return ["-F", str(self.ssh_config)]

    def ssh_command(self, *remote: str) -> list[str]:
        """``ssh -F <config> second-engine REMOTE...`` as an argument list."""
        return ["ssh", *self.ssh_options(), SSH_ALIAS, *remote]

    def ssh_env(self, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
        """An environment whose ``ssh`` is a wrapper adding ``-F <config>``.

        OpenSSH reads ``~/.ssh/config`` from the passwd entry's home (``$HOME`` does not move it), and neither
        the docker CLI (``DOCKER_HOST=ssh://…``) nor the docker SDK (``use_ssh_client=True``) passes ``-F``;
        both run ``ssh`` from ``PATH``. So, without touching ``~/.ssh``: ``PATH`` starts with a folder whose
        ``ssh`` runs ``/usr/bin/ssh -F <config> "$@"``.
        """
        return {**environ, "PATH": f"{self.folder / 'bin'}{os.pathsep}{environ.get('PATH', '')}"}

    def ssh(self, *remote: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command on the engine's host (the DinD container) over ssh."""
        return subprocess.run(self.ssh_command(*remote), capture_output=True, text=True, timeout=timeout, check=check)

    def address(self) -> str:
        """The engine container's address on the main engine's network: where ports the inner engine publishes
        are reached (``c.DockerBackend.kernel_address`` of remote kernels there)."""
        settings = self.main_api.inspect_container(self.container_id)["NetworkSettings"]
        return settings["IPAddress"] or next(iter(settings["Networks"].values()))["IPAddress"]

    # ---- the inner engine's own life: killed and started again, as a crash and a restart of dockerd
    def _exec(self, command: str, *, detach: bool = False) -> str:
        exec_id = self.main_api.exec_create(self.container_id, ["sh", "-c", command])["Id"]
        out = self.main_api.exec_start(exec_id, detach=detach)
        return "" if detach else out.decode("utf-8", "replace")

    def kill_engine(self, timeout: float = 30) -> None:
        """SIGKILL the inner dockerd (by the pid in its pid file), as an engine crash; returns once it no longer
        answers. Its containers go on running until :meth:`start_engine` (dockerd's restore, without
        live-restore, then stops them), as on a real host."""
        self._exec('kill -9 "$(cat /var/run/docker.pid)"')
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.api(timeout=2).version()
            except Exception:  # noqa: BLE001 - what we wait for: no answer
                return
            time.sleep(0.1)
        raise RuntimeError(f"the test engine {self.name} still answers {timeout:.0f} s after its dockerd was killed")

    def start_engine(self, timeout: float = 90) -> None:
        """Start the inner dockerd again (after :meth:`kill_engine`) and wait until it answers over TLS."""
        self._exec(f"rm -f /var/run/docker.pid; exec {DOCKERD_COMMAND} >/proc/1/fd/1 2>&1", detach=True)
        _wait_until_ready(self, timeout)

    # ---- diagnostics and teardown
    def logs(self, tail: int = 40) -> str:
        """The last lines of the engine container's output (dockerd and sshd)."""
        try:
            return self.main_api.logs(self.container_id, tail=tail).decode("utf-8", "replace")
        except Exception as exc:  # noqa: BLE001 - diagnostics only: the container may be gone already
            return f"(no log: {exc})"

    def close(self) -> None:
        """Remove the container with its volume, the inner engine's cgroups and the generated credentials."""
        remove_engine_container(self.main_api, self.container_id, self.cgroup_parent)
        shutil.rmtree(self.folder, ignore_errors=True)


def _mount(source: str, read_only: bool = False) -> Any:
    import docker

    return docker.types.Mount(target=source, source=source, type="bind", read_only=read_only)


def _archive(files: Mapping[str, tuple[bytes, int]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, (data, mode) in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def container_labels(role_value: str = "dind") -> dict[str, str]:
    """Ours, a test's, and whose: the owner pid/host let the orphan cleanup remove it after a crash."""
    from jupyter_containers.backends.base import labels, owner_labels

    # role "session": one of the roles the orphan cleanup (manager._orphaned) knows; not "run", which tests
    # expect to see none of once their runs are over.
    return {**labels(role="session", test="true", **owner_labels()), ENGINE_LABEL: role_value}


def _host_port(api: Any, container_id: str, port: int) -> int:
    bindings = api.inspect_container(container_id)["NetworkSettings"]["Ports"].get(f"{port}/tcp") or []
    for binding in bindings:
        if binding.get("HostIp") == "127.0.0.1" and binding.get("HostPort"):
            return int(binding["HostPort"])
    raise RuntimeError(f"the engine container publishes no 127.0.0.1 port for {port}: {bindings}")


def _write_ssh_files(folder: Path, key: Path, port: int) -> Path:
    config = folder / "ssh_config"
    config.write_text(
        f"""# Per-session ssh config of the test engine (tests/engines.py); use: ssh -F {config} {SSH_ALIAS} ...
Host {SSH_ALIAS}
  HostName 127.0.0.1
  Port {port}
  User root
  IdentityFile {key}
  IdentitiesOnly yes
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  LogLevel ERROR
  BatchMode yes
  ConnectTimeout 10
"""
    )
    bin_dir = folder / "bin"
    bin_dir.mkdir(exist_ok=True)
    wrapper = bin_dir / "ssh"
    others = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p != str(bin_dir))
    real_ssh = shutil.which("ssh", path=others) or "/usr/bin/ssh"
    wrapper.write_text(
        f'#!/bin/sh\n# ssh with the test engine config (tests/engines.py)\nexec {real_ssh} -F {config} "$@"\n'
    )
    wrapper.chmod(0o755)
    return config


def start_second_engine(
    main_api: Any,
    folder: Path,
    *,
    images: tuple[str, ...] = (BASE_IMAGE,),
    timeout: float = 90,
    lifetime: int = 6 * 3600,
    timings: dict[str, float] | None = None,
    hostname: str = SSH_ALIAS,
    dockerd_args: str = "",
    tls: tuple[TlsFiles, TlsFiles] | None = None,
) -> SecondEngine:
    """Build (if needed) and start the engine container, wait until the inner engine answers over TLS, and
    load ``images`` from the main engine into it. ``timings`` receives the seconds each phase took.

    ``hostname`` names the engine's host (Swarm nodes need distinct ones); ``dockerd_args`` are appended to the
    inner dockerd's command line (e.g. ``--node-generic-resource NVIDIA-GPU=gpu0``), on a restart too; ``tls``:
    the (server, client) files of :func:`make_tls` to use instead of new ones (a swarm's nodes share them).

    Raises RuntimeError naming what failed, with the container's log tail, after at most ``timeout`` seconds of
    waiting for the inner engine.
    """
    import docker

    timings = {} if timings is None else timings
    folder.mkdir(parents=True, exist_ok=True)
    remove_orphaned_engines(main_api)

    started = time.monotonic()
    tag = ensure_image(main_api)
    timings["image"] = time.monotonic() - started

    started = time.monotonic()
    server_tls, client_tls = tls or make_tls(folder / "tls")
    ssh_key = make_ssh_key(folder)
    hook_log = folder / "nvidia-container-runtime-hook.log"
    hook_log.touch()
    timings["credentials"] = time.monotonic() - started

    started = time.monotonic()
    suffix = f"{os.getpid()}-{secrets.token_hex(3)}"
    name = f"{CGROUP_PREFIX}{suffix}"
    cgroup_parent = f"/{name}"
    labels = container_labels()
    host_config = main_api.create_host_config(
        # Docker-in-Docker without --privileged (which fails here: no CAP_SYS_RESOURCE), as TOOLCHAIN.md says.
        cap_add=["ALL"],
        cap_drop=["SYS_RESOURCE"],
        security_opt=["seccomp=unconfined", "apparmor=unconfined"],
        device_cgroup_rules=["a *:* rwm"],
        mounts=[
            _mount("/sys/fs/cgroup"),
            # Host paths the core bind-mounts (workspaces under pytest's /tmp folders, kernel socket folders
            # under /dev/shm, the CA bundle) resolve to the same files on the inner engine.
            _mount("/tmp"),
            _mount("/dev/shm"),
            _mount(CA_BUNDLE, read_only=True),
            # An anonymous volume (overlay2 works on it; on the container's own overlay the inner driver is
            # vfs), labelled so that a dangling one left by a crash can be found.
            docker.types.Mount(target="/var/lib/docker", source=None, type="volume", labels=labels),
        ],
        port_bindings={TLS_PORT: ("127.0.0.1",), 22: ("127.0.0.1",)},
        init=True,
        auto_remove=True,  # when the lifetime is over, the container and its volume go by themselves
    )
    # `--security-opt systempaths=unconfined` is the CLI's spelling of these two (the API refuses it).
    host_config["MaskedPaths"], host_config["ReadonlyPaths"] = [], []
    created = main_api.create_container(
        tag,
        name=name,
        hostname=hostname,
        labels=labels,
        ports=[TLS_PORT, 22],
        environment={
            "SECOND_ENGINE_CGROUP_PARENT": cgroup_parent,
            "SECOND_ENGINE_LIFETIME": str(int(lifetime)),
            "NVIDIA_HOOK_STANDIN_LOG": str(hook_log),  # dockerd passes its environment to the hook
            "SECOND_ENGINE_DOCKERD_ARGS": dockerd_args,
        },
        host_config=host_config,
    )
    container_id = created["Id"]
    try:
        pub = ssh_key.with_suffix(".pub").read_bytes()
        main_api.put_archive(container_id, "/root/.ssh", _archive({"authorized_keys": (pub, 0o600)}))
        main_api.put_archive(
            container_id,
            "/etc/docker/tls",
            _archive(
                {
                    "ca.pem": (server_tls.ca.read_bytes(), 0o644),
                    "server-cert.pem": (server_tls.cert.read_bytes(), 0o644),
                    "server-key.pem": (server_tls.key.read_bytes(), 0o600),
                }
            ),
        )
        main_api.start(container_id)
        engine = SecondEngine(
            container_id=container_id,
            name=name,
            tls_url=f"tcp://127.0.0.1:{_host_port(main_api, container_id, TLS_PORT)}",
            tls=client_tls,
            ssh_port=_host_port(main_api, container_id, 22),
            ssh_key=ssh_key,
            ssh_config=folder / "ssh_config",
            folder=folder,
            hook_log=hook_log,
            cgroup_parent=cgroup_parent,
            main_api=main_api,
            timings=timings,
            hostname=hostname,
        )
        _write_ssh_files(folder, ssh_key, engine.ssh_port)
        _wait_until_ready(engine, timeout)
        timings["start"] = time.monotonic() - started

        started = time.monotonic()
        inner = engine.api()
        for image in images:
            load_image(main_api, inner, image)
        timings["images"] = time.monotonic() - started
    except BaseException:
        remove_engine_container(main_api, container_id, cgroup_parent)
        raise
    return engine


def _wait_until_ready(engine: SecondEngine, timeout: float) -> None:
    import docker

    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            state = engine.main_api.inspect_container(engine.container_id)["State"]
        except docker.errors.NotFound:
            raise RuntimeError(f"the test engine container {engine.name} went away while starting") from None
        if not state.get("Running"):
            raise RuntimeError(f"the test engine container {engine.name} stopped:\n{engine.logs()}")
        try:
            engine.api(timeout=5).version()
            return
        except Exception as exc:  # noqa: BLE001 - not up yet; the last error goes into the message
            last = exc
        time.sleep(0.2)
    raise RuntimeError(
        f"the test engine {engine.name} did not answer at {engine.tls_url} over TLS within {timeout:.0f} s "
        f"({last.__class__.__name__}: {str(last)[:300]}); its log ends with:\n{engine.logs()}"
    )


def load_image(source_api: Any, target_api: Any, reference: str) -> None:
    """``docker save`` on one engine streamed into ``docker load`` on another (no temporary file)."""
    chunks: Iterator[bytes] = source_api.get_image(reference)
    for message in target_api.load_image(chunks):
        if isinstance(message, dict) and message.get("error"):
            raise RuntimeError(f"loading {reference} into the test engine failed: {message['error']}")
    target_api.inspect_image(reference)  # raises when the load ended without the image


def remove_engine_container(api: Any, container_id: str, cgroup_parent: str | None = None) -> None:
    """Remove an engine container with its anonymous volume, then the empty cgroups its inner engine made."""
    import docker

    if cgroup_parent is None:
        try:
            env = api.inspect_container(container_id)["Config"].get("Env") or []
        except docker.errors.NotFound:
            env = []
        cgroup_parent = next((e.split("=", 1)[1] for e in env if e.startswith("SECOND_ENGINE_CGROUP_PARENT=")), None)
    try:
        api.remove_container(container_id, v=True, force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        if "already in progress" not in str(exc):
            raise
    _wait_gone(api, container_id)
    if cgroup_parent:
        remove_cgroups(cgroup_parent)


def _wait_gone(api: Any, container_id: str, timeout: float = 20) -> None:
    import docker

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            api.inspect_container(container_id)
        except docker.errors.NotFound:
            return
        time.sleep(0.1)


def remove_cgroups(cgroup_parent: str, root: Path = Path("/sys/fs/cgroup")) -> None:
    """Remove the (then empty) cgroup folders under ``cgroup_parent`` in every hierarchy, deepest first."""
    name = cgroup_parent.strip("/")
    if not name or "/" in name or not name.startswith(CGROUP_PREFIX):
        return  # only ever our own top-level folders
    for hierarchy in root.iterdir() if root.is_dir() else ():
        top = hierarchy / name
        if not top.is_dir():
            continue
        try:
            inner = [p for p in top.rglob("*") if p.is_dir()]
        except OSError:
            inner = []  # the kernel removed it (or a part of it) meanwhile
        for folder in sorted(inner, key=lambda p: len(p.parts), reverse=True):
            try:
                folder.rmdir()
            except OSError:
                pass
        try:
            top.rmdir()
        except OSError:
            pass  # still in use (a process of the inner engine lingers): left to the host


def remove_orphaned_engines(api: Any) -> list[str]:
    """Remove engine containers whose owner process on this host is gone, and dangling engine volumes."""
    from jupyter_containers.manager import owner_process_gone

    removed = []
    for container in api.containers(all=True, filters={"label": ENGINE_LABEL}):
        labels = container.get("Labels") or {}
        if owner_process_gone(labels):
            remove_engine_container(api, container["Id"])
            removed.append(container["Id"])
    for volume in (api.volumes(filters={"label": ENGINE_LABEL, "dangling": True}) or {}).get("Volumes") or []:
        try:
            api.remove_volume(volume["Name"])
            removed.append(volume["Name"])
        except Exception:  # noqa: BLE001 - a concurrent session removed it, or started using it
            pass
    # Cgroups of engines removed by someone else (`jupyter-containers prune`): named like their container.
    alive = {n.lstrip("/") for c in api.containers(all=True) for n in c.get("Names") or ()}
    for top in Path("/sys/fs/cgroup").glob(f"*/{CGROUP_PREFIX}*"):
        if top.name not in alive and time.time() - top.stat().st_mtime > 60:
            remove_cgroups("/" + top.name)
    return removed


# --------------------------------------------------------------------------------------------- a swarm
#: What each node of the test swarm advertises as GPUs: named generic resources (fake, two per node).
SWARM_GPU_KIND = "NVIDIA-GPU"


@dataclass
class EngineSwarm:
    """A real multi-node Docker Swarm: Docker-in-Docker engines, ``nodes[0]`` the manager, the others workers.

    Each node advertises ``gpus_per_node`` fake GPUs as named generic resources (``NVIDIA-GPU=gpu0`` …), so
    Swarm places GPU reservations and sets ``DOCKER_RESOURCE_NVIDIA_GPU`` in the task's container. The manager
    is reached by the tests over TCP+TLS (``nodes[0].tls_url``); ports the swarm publishes (the routing mesh)
    at ``nodes[0].address()``.
    """

    nodes: list[SecondEngine]
    #: Swarm node id → the engine of that node.
    node_ids: dict[str, SecondEngine]

    @property
    def manager(self) -> SecondEngine:
        return self.nodes[0]

    @property
    def workers(self) -> list[SecondEngine]:
        return self.nodes[1:]

    def by_hostname(self, hostname: str) -> SecondEngine:
        for node in self.nodes:
            if node.hostname == hostname:
                return node
        raise KeyError(hostname)

    def close(self) -> None:
        """Swarm mode off on every node (workers first), then the engines removed with their volumes."""
        from concurrent.futures import ThreadPoolExecutor

        for node in reversed(self.nodes):
            try:
                node.api(timeout=10).leave_swarm(force=True)
            except Exception:  # noqa: BLE001 - a node whose engine a test killed: its state goes with its volume
                pass
        with ThreadPoolExecutor(max(1, len(self.nodes))) as pool:
            list(pool.map(lambda node: node.close(), self.nodes))
        if self.nodes:
            shutil.rmtree(self.nodes[0].folder.parent / "tls", ignore_errors=True)


def start_swarm(
    main_api: Any,
    folder: Path,
    *,
    workers: int = 2,
    gpus_per_node: int = 2,
    timeout: float = 120,
    trust: Sequence[tuple[str, str]] = (),
) -> EngineSwarm:
    """Start ``1 + workers`` engines in parallel (each with ``gpus_per_node`` fake GPUs as generic resources),
    make the first a swarm manager on its bridge address and join the others as workers.

    ``trust``: ``(registry address, CA PEM)`` pairs each node's engine trusts (its own /etc/docker/certs.d), so
    every node pulls from a TLS registry on the bridge gateway. The base image is loaded on the manager only:
    workers pull what they run from the registry, as on a real swarm.
    """
    from concurrent.futures import ThreadPoolExecutor

    def one(index: int) -> SecondEngine:
        name = "manager" if index == 0 else f"worker{index}"
        args = " ".join(f"--node-generic-resource {SWARM_GPU_KIND}=gpu{g}" for g in range(gpus_per_node))
        return start_second_engine(
            main_api,
            folder / name,
            images=(BASE_IMAGE,) if index == 0 else (),
            timeout=timeout,
            hostname=name,
            dockerd_args=args,
            tls=shared_tls,
        )

    folder.mkdir(parents=True, exist_ok=True)
    shared_tls = make_tls(folder / "tls")

    with ThreadPoolExecutor(1 + workers) as pool:
        futures = [pool.submit(one, i) for i in range(1 + workers)]
    started: list[SecondEngine] = []
    errors = []
    for future in futures:
        try:
            started.append(future.result())
        except Exception as exc:  # noqa: BLE001 - collected: every started engine is removed below
            errors.append(exc)
    swarm = EngineSwarm(nodes=started, node_ids={})
    try:
        if errors:
            raise errors[0]
        for node in swarm.nodes:
            for address, ca in trust:
                target = f"/etc/docker/certs.d/{address}"
                node._exec(f"mkdir -p {target} && cat > {target}/ca.crt <<'EOF'\n{ca}EOF")
        manager = swarm.manager.api()
        advertise = swarm.manager.address()
        # Nodes report every second (Swarm's default: 5 s), so that a node whose engine died is `down` within a
        # few seconds: the tests that kill a worker wait that long, nothing else depends on it.
        heartbeat = manager.create_swarm_spec(dispatcher_heartbeat_period=1_000_000_000)
        manager.init_swarm(advertise_addr=advertise, listen_addr="0.0.0.0:2377", swarm_spec=heartbeat)
        token = manager.inspect_swarm()["JoinTokens"]["Worker"]
        for worker in swarm.workers:
            worker.api().join_swarm([f"{advertise}:2377"], token, listen_addr="0.0.0.0:2377")
        deadline = time.monotonic() + timeout
        while True:
            ready = [n for n in manager.nodes() if n["Status"]["State"] == "ready"]
            if len(ready) == len(swarm.nodes):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(ready)} of {len(swarm.nodes)} swarm nodes became ready: {ready}")
            time.sleep(0.2)
        for node in ready:
            swarm.node_ids[node["ID"]] = swarm.by_hostname(node["Description"]["Hostname"])
    except BaseException:
        swarm.close()
        raise
    return swarm


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.engines [FOLDER]``: one engine by hand, for development; Ctrl-C removes it."""
    import signal
    import sys

    from jupyter_containers.backends.docker import DockerBackend

    args = sys.argv[1:] if argv is None else argv
    folder = Path(args[0] if args else f"/tmp/second-engine-{os.getpid()}").resolve()
    print("starting the second engine (the first time builds its image, ~20 s) ...", flush=True)
    timings: dict[str, float] = {}
    engine = start_second_engine(DockerBackend(api_timeout=600).api, folder, timings=timings)
    shown = ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
    print(
        f"""{engine.name} is up ({shown}).
  docker CLI over TLS:  export DOCKER_HOST={engine.tls_url} DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH={engine.tls.ca.parent}
  ssh:                  ssh -F {engine.ssh_config} {SSH_ALIAS} docker info
  docker CLI over ssh:  PATH={folder / "bin"}:$PATH DOCKER_HOST={engine.ssh_url} docker info
  jupyter-containers:   c.DockerBackend.base_url = {engine.tls_url!r}
                        c.DockerBackend.tls_ca, tls_cert, tls_key = {str(engine.tls.ca)!r}, {str(engine.tls.cert)!r}, \
{str(engine.tls.key)!r}
  stand-in GPU hook log: {engine.hook_log}
Ctrl-C (or SIGTERM) removes it with its volume and {folder}.""",
        flush=True,
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            time.sleep(3600)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        engine.close()
        print(f"{engine.name} removed", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
