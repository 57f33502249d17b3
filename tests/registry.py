"""Real container registries for tests: Debian's ``docker-registry`` (distribution 2.8), one process each.

- :func:`start_plain_registry`: plain HTTP on ``127.0.0.1`` (Docker treats 127.0.0.0/8 as an insecure registry
  by default, so the main engine pushes to it as is). Loopback only: nothing unencrypted leaves the host.
- :func:`start_tls_registry`: htpasswd auth behind TLS with a CA generated here, listening on the main engine's
  bridge gateway (e.g. ``172.17.0.1``): the only address both the main engine and a container on its bridge
  (the second engine of ``tests/engines.py``) reach. Authenticated and encrypted, as every non-loopback
  listener of ours must be. The main engine trusts the CA through ``/etc/docker/certs.d/HOST:PORT/ca.crt``,
  created here and removed by :meth:`Registry.close` (dockerd reads that folder on each push/pull).

Credentials for the engine go in a private Docker config folder (``DOCKER_CONFIG``), never ``~/.docker``.
Each registry stores its data in its own temporary folder and is stopped by its pid.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from . import engines

REGISTRY_BINARY = "/usr/bin/docker-registry"
CERTS_D = Path("/etc/docker/certs.d")

_CONFIG = """version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {data}
  delete:
    enabled: true
http:
  addr: {host}:{port}
{tls}{auth}"""


@dataclass
class Registry:
    """One running registry: ``.address`` is ``HOST:PORT``; ``.repository(name)`` a ``HOST:PORT/name`` to push to."""

    host: str
    port: int
    folder: Path
    process: subprocess.Popen[bytes]
    user: str | None = None
    password: str | None = None
    ca: Path | None = None
    certs_d: Path | None = None
    created_certs_root: bool = False
    _closed: bool = field(default=False, repr=False)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def repository(self, name: str = "team") -> str:
        return f"{self.address}/{name}"

    def docker_config(self, folder: Path, *, password: str | None = None) -> Path:
        """A Docker config folder (for ``DOCKER_CONFIG``) logged in to this registry (with ``password``, else the
        right one); the folder is returned."""
        folder.mkdir(parents=True, exist_ok=True)
        auths = {}
        if self.user is not None:
            token = base64.b64encode(f"{self.user}:{password or self.password}".encode()).decode()
            auths[self.address] = {"auth": token}
        (folder / "config.json").write_text(json.dumps({"auths": auths}))
        (folder / "config.json").chmod(0o600)
        return folder

    def tags(self, repository: str) -> list[str]:
        """The registry's own answer (its HTTP API), to check what a push really stored."""
        url = f"{'https' if self.ca else 'http'}://{self.address}/v2/{repository}/tags/list"
        request = urllib.request.Request(url)
        if self.user is not None:
            token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        context = ssl.create_default_context(cafile=str(self.ca)) if self.ca else None
        try:
            with urllib.request.urlopen(request, timeout=10, context=context) as response:
                return sorted(json.load(response).get("tags") or [])
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return []
            raise

    def log(self) -> str:
        path = self.folder / "registry.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        if self.certs_d is not None:
            shutil.rmtree(self.certs_d, ignore_errors=True)
            if self.created_certs_root:
                for folder in (CERTS_D, CERTS_D.parent):
                    try:
                        folder.rmdir()  # only when empty: another trusted registry's folder stays
                    except OSError:
                        break
        shutil.rmtree(self.folder / "data", ignore_errors=True)


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _start(folder: Path, host: str, *, tls: str = "", auth: str = "", scheme: str = "http", ca: Path | None = None):
    if not Path(REGISTRY_BINARY).is_file():
        raise RuntimeError(f"{REGISTRY_BINARY} is missing: run 'bash scripts/setup.sh' (it installs docker-registry)")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data").mkdir(exist_ok=True)
    for _attempt in range(5):
        port = free_port(host)
        config = folder / "config.yml"
        config.write_text(_CONFIG.format(data=folder / "data", host=host, port=port, tls=tls, auth=auth))
        log = open(folder / "registry.log", "ab")
        process = subprocess.Popen(
            [REGISTRY_BINARY, "serve", str(config)], stdout=log, stderr=log, stdin=subprocess.DEVNULL
        )
        log.close()
        context = ssl.create_default_context(cafile=str(ca)) if ca else None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and process.poll() is None:
            try:
                urllib.request.urlopen(f"{scheme}://{host}:{port}/v2/", timeout=2, context=context).close()
                return port, process
            except urllib.error.HTTPError as exc:
                if exc.code == 401:
                    return port, process  # it answers, and wants credentials
            except OSError:
                pass
            time.sleep(0.1)
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            process.wait(10)
    raise RuntimeError(f"docker-registry did not start: {(folder / 'registry.log').read_text()[-2000:]}")


def start_plain_registry(folder: Path) -> Registry:
    port, process = _start(folder, "127.0.0.1")
    return Registry("127.0.0.1", port, folder, process)


def bridge_gateway(api) -> str:
    """The main engine's default bridge gateway (the host's address on docker0)."""
    network = api.inspect_network("bridge")
    return network["IPAM"]["Config"][0]["Gateway"]


def start_tls_registry(folder: Path, host: str, *, user: str = "colleague") -> Registry:
    import bcrypt

    password = secrets.token_urlsafe(12)
    tls_folder = folder / "tls"
    ca = engines.make_ca(tls_folder, cn="jupyter-containers test registry CA")
    (tls_folder / "server.cnf").write_text(
        engines._OPENSSL_LEAF.format(
            cn=host, usage="serverAuth", san=f"subjectAltName = IP:{host},IP:127.0.0.1,DNS:localhost"
        )
    )
    engines._openssl(
        tls_folder, "req", "-new", "-config", "server.cnf", "-newkey", "ec", "-pkeyopt",
        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "server-key.pem", "-out", "server.csr",
    )  # fmt: skip
    engines._openssl(
        tls_folder, "x509", "-req", "-in", "server.csr", "-CA", str(ca[0]), "-CAkey", str(ca[1]), "-set_serial",
        "0x" + secrets.token_hex(8), "-days", "7", "-extfile", "server.cnf", "-extensions", "leaf",
        "-out", "server-cert.pem",
    )  # fmt: skip
    htpasswd = folder / "htpasswd"
    htpasswd.write_text(f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(5)).decode()}\n")
    tls = f"  tls:\n    certificate: {tls_folder / 'server-cert.pem'}\n    key: {tls_folder / 'server-key.pem'}\n"
    auth = f"auth:\n  htpasswd:\n    realm: jupyter-containers-test\n    path: {htpasswd}\n"
    port, process = _start(folder, host, tls=tls, auth=auth, scheme="https", ca=ca[0])
    registry = Registry(host, port, folder, process, user=user, password=password, ca=ca[0])
    certs_d = CERTS_D / registry.address
    registry.created_certs_root = not CERTS_D.exists()
    certs_d.mkdir(parents=True, exist_ok=True)
    shutil.copy(ca[0], certs_d / "ca.crt")
    registry.certs_d = certs_d
    return registry


def trust_in_engine(engine: engines.SecondEngine, registry: Registry) -> None:
    """Make the second engine trust ``registry``'s CA (its own /etc/docker/certs.d, inside its container)."""
    assert registry.ca is not None
    ca = registry.ca.read_text()
    folder = f"/etc/docker/certs.d/{registry.address}"
    engine._exec(f"mkdir -p {folder} && cat > {folder}/ca.crt <<'EOF'\n{ca}EOF")
