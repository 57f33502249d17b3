"""The project's default base image, even where no registry answers.

:func:`ensure_base_image` returns the named image when the engine has it or can pull it, else an image
bootstrapped from Debian packages by :func:`bootstrap_base_image` (``debootstrap --variant=minbase``,
imported through the backend, verified in a throwaway container, then tagged).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from ..backends.base import LABEL_PREFIX, ContainerBackend, RunRequest, labels, owner_labels
from ..errors import BackendError, ConflictError, ContainersError, EngineRefusedError, NotFoundError
from ..paths import file_lock
from ..spec.model import Resources
from . import Log, log_tail, one_line
from .apt import apt_install, detect_mirror, detect_security_mirror, is_debian_like

DEFAULT_BASE = "python:3.11-slim"
OFFLINE_TAG = "jupyter-containers/base:bookworm"
WORK_DIR = Path("/var/tmp")
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates", "libstdc++6", "passwd")
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
VERIFY_TIMEOUT = 120
# Suites without -updates / -security archives.
_ROLLING_SUITES = ("sid", "unstable", "experimental", "rc-buggy")


def ensure_base_image(
    name: str,
    *,
    backend: ContainerBackend,
    offline_tag: str = OFFLINE_TAG,
    allow_pull: bool = True,
    allow_bootstrap: bool = True,
    source: ContainerBackend | None = None,
    log: Log = print,
) -> str:
    """The image reference to use as the project's default base, pulling, sending or bootstrapping it if needed.

    ``source``: another engine (this machine's, when ``backend`` is a remote target's) whose copy of ``name``
    or ``offline_tag`` is sent over (``docker save`` there, ``docker load`` here, through both engines' APIs)
    when the engine lacks both and cannot pull ``name``: the same image, byte for byte, with no registry.

    Hot path (the engine has ``name`` or ``offline_tag``): two image inspections, no registry access, so a
    machine without a registry never waits for a pull again once its base exists.

    Raises:
        BackendError: no base could be found, pulled or (where allowed) bootstrapped; the message says how
            to provide one.
    """
    if backend.image_id(name):
        return name
    if backend.image_id(offline_tag):
        return offline_tag
    if allow_pull:
        log(f"base: {name} is not on the engine; pulling it")
        try:
            backend.pull(name)
        except (NotFoundError, BackendError) as exc:  # no registry, no such image, engine refused: all the same here
            log(f"base: cannot pull {name}: {one_line(exc)}")
        else:
            log(f"base: pulled {name}")
            return name
    if source is not None and source.address != backend.address:
        sent = send_image(source, backend, [name, offline_tag], log=log)
        if sent is not None:
            return sent
    if allow_bootstrap:
        with file_lock(f"jupyter-containers-bootstrap:{offline_tag}"):
            if backend.image_id(offline_tag):  # another process bootstrapped it while we waited
                return offline_tag
            log(f"base: bootstrapping {offline_tag} from Debian packages (debootstrap, about a minute, once)")
            bootstrap_base_image(offline_tag, backend=backend, log=log)
        return offline_tag
    raise BackendError(
        f"no base image: {name!r} is not on the engine and could not be pulled, and bootstrapping "
        f"{offline_tag!r} offline was not allowed. Provide one: 'docker pull {name}' where a registry answers, "
        f"'docker load -i image.tar' of an image saved elsewhere (tag it {name} or {offline_tag}), or allow "
        "the offline bootstrap (c.Builder.bootstrap_offline_base = True, or 'jupyter-containers setup' as root)."
    )


def send_image(
    source: ContainerBackend, target: ContainerBackend, candidates: list[str], *, log: Log = print
) -> str | None:
    """Copy the first of ``candidates`` that ``source`` has onto ``target`` (save there, load here, through a
    temporary file: an engine's load needs the whole stream); None when ``source`` has none of them."""
    try:
        reference = next((c for c in candidates if source.image_id(c)), None)
    except ContainersError as exc:
        log(f"base: cannot look at {source.address} for a base image to send: {one_line(exc)}")
        return None
    if reference is None:
        return None
    log(f"base: sending {reference} from {source.address} to {target.address}")
    started = time.monotonic()
    with tempfile.TemporaryFile(dir=WORK_DIR if WORK_DIR.is_dir() else None) as fh:
        size = source.save_images([reference], fh)
        fh.seek(0)
        target.load_images(fh)
    if not target.image_id(reference):
        raise BackendError(f"sent {reference} to {target.address}, but the engine there does not have it afterwards")
    log(f"base: sent {reference} ({size / 2**20:.0f} MiB in {time.monotonic() - started:.1f} s)")
    return reference


def bootstrap_base_image(
    tag: str,
    *,
    backend: ContainerBackend,
    suite: str = "bookworm",
    mirror: str | None = None,
    log: Log = print,
) -> str:
    """Build ``tag`` from Debian packages with debootstrap and return its image id; no registry needed.

    The result has python3 + venv, apt and a dpkg database (so specs with apt packages work), and the
    distribution's own CA certificates: proxy CA bundles are injected at build time, never baked in. The
    image is tagged only after a container has checked it, so ``tag`` never points at a broken image.

    Raises:
        BackendError: not root, debootstrap failed, or the import or the check failed (the message quotes
            the output); EngineUnavailableError when the engine went away.
    """
    if os.geteuid() != 0:
        raise BackendError(
            "bootstrapping a base image runs debootstrap, which needs root; run 'sudo jupyter-containers setup', "
            "or provide a base image ('docker pull python:3.11-slim' or 'docker load')"
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
        image_id = _import_rootfs(backend, rootfs, suite, tmp / "tar.err", log)
    finally:
        _remove_tree(tmp)
    _verify(backend, image_id, log)
    _tag(backend, image_id, tag, log)
    log(f"base: {tag} is ready ({image_id[:19]}) after {time.monotonic() - started:.0f} s")
    return image_id


def base_labels(suite: str) -> dict[str, str]:
    """The labels of a bootstrapped base image (``kind=base`` lets tools list and prune it like ours)."""
    return {**labels(kind="base"), f"{LABEL_PREFIX}.base.suite": suite}


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
    apt_install(packages, log)
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
        detail = log_tail(output, lines=12)
        inner = rootfs / "debootstrap" / "debootstrap.log"
        if inner.exists():
            detail += f"\n  last lines of {inner.name}:\n" + log_tail(inner, lines=12)
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


def _import_rootfs(backend: ContainerBackend, rootfs: Path, suite: str, tar_err: Path, log: Log) -> str:
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
    image_id: str | None = None
    refusal: EngineRefusedError | None = None
    with open(tar_err, "wb") as err:
        tar = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
    try:
        assert tar.stdout is not None  # stdout=PIPE above
        image_id = backend.import_image(tar.stdout, changes=changes)  # waits while the engine unpacks ~250 MB
    except EngineRefusedError as exc:  # the engine answered without an image id
        refusal = exc
    except BaseException:
        tar.kill()  # our own tar child only
        raise
    finally:
        if tar.stdout:
            tar.stdout.close()
        code = tar.wait()
    if code or image_id is None:
        if image_id is not None:
            _remove_image(backend, image_id)
        said = one_line(refusal, 300) if refusal is not None else f"the engine made {image_id}"
        raise BackendError(
            f"importing the bootstrapped root filesystem failed (tar exit {code}; {said}):\n"
            f"{log_tail(tar_err, lines=10)}"
        )
    log(f"base: imported {image_id[:19]} in {time.monotonic() - started:.0f} s")
    return image_id


def _verify(backend: ContainerBackend, image_id: str, log: Log) -> None:
    """Run the checks a build relies on in a throwaway container; on failure remove the image and raise.

    The container runs as the backend's non-root user with no network: the checks only read (python3
    imports, ``apt-get --version``, the dpkg database), none of them needs root.
    """
    script = (
        "set -e; python3 -c 'import venv, ssl, sqlite3, sys; print(sys.version.split()[0])'; "
        "apt-get --version | head -n 1; dpkg -s python3 >/dev/null"
    )
    chunks: list[bytes] = []
    request = RunRequest(
        image=image_id,
        command=["/bin/sh", "-c", script],
        resources=Resources(network=False, timeout=VERIFY_TIMEOUT),
        labels=labels(kind="bootstrap-check", **owner_labels()),
    )
    try:
        code = backend.run(request, stdout=chunks.append, stderr=chunks.append).exit_code
        output = b"".join(chunks).decode(errors="replace").strip()
    except ContainersError as exc:  # timed out, or the engine failed to run it
        code, output = getattr(exc, "exit_code", None) or -1, f"could not run the check: {one_line(exc)}"
    if code:
        _remove_image(backend, image_id)
        raise BackendError(
            f"the bootstrapped base image failed its check (exit {code}) and was removed; output:\n{output}"
        )
    log(f"base: verified: Python {' / '.join(output.splitlines())}")


def _tag(backend: ContainerBackend, image_id: str, reference: str, log: Log) -> None:
    """Point ``reference`` at ``image_id`` in one call; drop the image it replaces if it was our old base."""
    reference = _with_tag(reference)
    previous = backend.image_id(reference)
    backend.tag_image(image_id, reference)
    log(f"base: tagged {image_id[:19]} as {reference}")
    if previous and previous != image_id:
        try:
            old_labels = backend.image_labels(previous)
        except NotFoundError:
            return
        if old_labels.get(f"{LABEL_PREFIX}.kind") == "base":
            try:
                backend.remove_image(previous)
                log(f"base: removed the previous base image {previous[:19]}")
            except (ConflictError, EngineRefusedError):  # still used by environment images or containers: keep it
                log(f"base: kept the previous base image {previous[:19]} (still in use)")


def _with_tag(reference: str) -> str:
    """``repo`` → ``repo:latest``; ``repo:tag``, ``host:5000/repo:tag`` and digests unchanged."""
    if "@" in reference or ":" in reference.rsplit("/", 1)[-1]:
        return reference
    return f"{reference}:latest"


def _remove_image(backend: ContainerBackend, image_id: str, attempts: int = 3) -> None:
    """Remove an image nothing may use (it is untagged and unverified); best effort, never raises.

    Retries briefly on a conflict: the check container can still be on its way out when its removal was
    already in progress in the engine.
    """
    for attempt in range(attempts):
        try:
            backend.remove_image(image_id)
            return
        except ConflictError:
            if attempt + 1 < attempts:
                time.sleep(0.5)
        except ContainersError:
            return


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
