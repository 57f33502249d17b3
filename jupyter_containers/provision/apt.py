"""The host's apt: which Debian mirror it uses (air-gapped sites point apt at their own), and installing.

Both the engine (``docker.io``) and the offline base image (``debootstrap``, then the mirror it downloads
from) come from the host's package sources, so an air-gapped host needs nothing but its usual mirror.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import BackendError
from . import Log

DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
SOURCES_LIST = Path("/etc/apt/sources.list")
SOURCES_DIR = Path("/etc/apt/sources.list.d")
OS_RELEASE = Path("/etc/os-release")
PACKAGE_LISTS = Path("/var/lib/apt/lists")
_MIRROR_SCHEMES = ("http", "https", "ftp")


# ---------------------------------------------------------------------------------------------- host
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
    return PACKAGE_LISTS.is_dir() and any("Packages" in p.name for p in PACKAGE_LISTS.iterdir())


def apt_install(packages: list[str], log: Log, *, error: type[BackendError] = BackendError) -> None:
    """``apt-get install -y`` as root, refreshing package lists only when there are none or they are stale.

    Raises:
        ``error`` (BackendError by default): not root, or apt failed (with the last lines it printed).
    """
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
