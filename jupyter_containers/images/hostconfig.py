"""What the host knows about reaching package indexes, mirrored into builds.

Behind a corporate (TLS-intercepting) proxy the host's CA bundle, proxy variables and pip index settings
are what make downloads work; a build that ignores them fails with CERTIFICATE_VERIFY_FAILED. They are
injected at build time only (bind mounts and Docker's predefined proxy build args), never into layers.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY", "ALL_PROXY")
CA_CANDIDATES = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Alpine
    "/etc/pki/tls/certs/ca-bundle.crt",  # Fedora, RHEL
    "/etc/ssl/cert.pem",  # macOS, some BSDs
)


def find_ca_bundle(environ: Mapping[str, str] = os.environ) -> Path | None:
    """The CA bundle the host's own tools trust: ``SSL_CERT_FILE`` etc., else the distribution's file."""
    for variable in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT", "CURL_CA_BUNDLE"):
        value = environ.get(variable)
        if value and Path(value).is_file():
            return Path(value)
    for candidate in CA_CANDIDATES:
        if Path(candidate).is_file():
            return Path(candidate)
    return None


def proxy_build_args(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Docker's predefined proxy build args (upper and lower case), which stay out of image history."""
    args = {}
    for name in PROXY_VARIABLES:
        for variant in (name, name.lower()):
            if environ.get(variant):
                args[variant] = environ[variant]
    return args


def pip_config_files(environ: Mapping[str, str] = os.environ) -> list[Path]:
    """pip's configuration files in pip's own order (later files override earlier ones)."""
    if environ.get("PIP_CONFIG_FILE") == os.devnull:
        return []
    home = Path(environ.get("HOME", "~")).expanduser()
    xdg_dirs = environ.get("XDG_CONFIG_DIRS", "/etc/xdg").split(":")
    files = [Path(d) / "pip" / "pip.conf" for d in xdg_dirs] + [Path("/etc/pip.conf")]
    files += [home / ".pip" / "pip.conf", Path(environ.get("XDG_CONFIG_HOME", home / ".config")) / "pip" / "pip.conf"]
    if environ.get("VIRTUAL_ENV"):
        files.append(Path(environ["VIRTUAL_ENV"]) / "pip.conf")
    if environ.get("PIP_CONFIG_FILE"):
        files.append(Path(environ["PIP_CONFIG_FILE"]))
    return [f for f in files if f.is_file()]


def pip_index_settings(
    environ: Mapping[str, str] = os.environ, config_files: Iterable[Path] | None = None
) -> dict[str, object]:
    """uv settings (``index-url``, ``extra-index-url``, ``allow-insecure-host``) from pip's config and env.

    Only http(s) indexes are mirrored: a ``file://`` index or a local ``find-links`` folder exists on the
    host only, and would break the build inside the container.
    """
    parser = configparser.RawConfigParser()
    for path in config_files if config_files is not None else pip_config_files(environ):
        try:
            parser.read(path, encoding="utf-8")
        except (configparser.Error, UnicodeDecodeError):
            continue

    def value(key: str) -> str | None:
        env_value = environ.get("PIP_" + key.upper().replace("-", "_"))
        if env_value:
            return env_value
        for section in ("install", "global"):
            if parser.has_option(section, key):
                return parser.get(section, key)
        return None

    def urls(text: str | None) -> list[str]:
        return [u for u in (text or "").split() if u.startswith(("http://", "https://"))]

    settings: dict[str, object] = {}
    index = urls(value("index-url"))
    if index:
        settings["index-url"] = index[0]
    extra = urls(value("extra-index-url"))
    if extra:
        settings["extra-index-url"] = extra
    trusted = (value("trusted-host") or "").split()
    if trusted:
        settings["allow-insecure-host"] = trusted
    return settings
