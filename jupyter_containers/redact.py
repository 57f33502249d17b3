"""Credentials never leave through us: URLs with a user or token are shown with ``***`` in their place.

Index URLs and direct references (``pkg @ https://user:token@host/pkg.tar.gz``) are the usual way a
credential ends up in a requirements file. Whatever we write or print — specs, locks, notebook metadata,
build logs, error messages, REST answers — goes through :func:`redact` first; the secure ways to give
credentials are pip's own configuration, ``~/.netrc`` and environment variables injected at build time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# scheme://userinfo@ — userinfo is everything up to the @ that has no /, whitespace, or another @ in it.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]{0,30}://)(?P<userinfo>[^/\s@]{1,1024})@")

HOW_TO = (
    "put credentials in pip's configuration ('pip config set global.index-url …' on the host, which builds "
    "mirror), in ~/.netrc, or in environment variables injected at build time, never in a spec"
)


def has_credentials(text: str) -> bool:
    return bool(_USERINFO.search(text))


def redact(text: str) -> str:
    """``https://alice:s3cr3t@host/simple`` → ``https://***@host/simple``; other text unchanged."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}***@", text)


def strip_credentials(text: str) -> str:
    """The URL without its user and token (for a reference that can work with credentials from netrc)."""
    return _USERINFO.sub(lambda m: m["scheme"], text)


def redact_data(value: Any) -> Any:
    """:func:`redact` applied to every string in a JSON-like structure (dicts, lists, tuples)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {redact_data(k): redact_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_data(v) for v in value)
    return value
