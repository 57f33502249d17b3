"""Named targets: ``[targets.NAME]`` tables saying which Docker engine an environment runs on.

A target is an engine address (``ssh://``, ``tcp://`` with TLS files, ``unix://``) or a Docker CLI context,
plus how ``/workspace`` reaches it (``workspace``: ``sync`` for remote engines, ``mount`` for local ones, or
a path on the engine's host). ``ContainersManager.for_target(name)`` gives a manager whose backend talks to
it; without a target everything stays as configured (``c.DockerBackend.base_url``, ``DOCKER_HOST``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import SpecError
from .spec.model import Target

#: ``workspace`` values besides an absolute path.
WORKSPACE_MODES = ("sync", "mount")


def parse_targets(raw: Mapping[str, Any], path: Path, *, key_prefix: str = "") -> dict[str, Target]:
    """The ``[targets]`` table (already schema-checked) as :class:`Target` objects, TLS paths made absolute.

    Raises:
        SpecError: naming the key, when a target has neither or both of engine and context, or TLS files
            that do not exist.
    """
    out: dict[str, Target] = {}
    for name, table in raw.items():
        key = f"{key_prefix + '.' if key_prefix else ''}targets.{name}"
        engine, context = table.get("engine"), table.get("context")
        if bool(engine) == bool(context):
            raise SpecError(
                "a target needs exactly one of engine (an ssh://, tcp:// or unix:// address) and context "
                "(a Docker CLI context name)",
                file=path,
                key=key,
            )
        tls = dict(table.get("tls") or {})
        files: dict[str, str | None] = {}
        for field in ("ca", "cert", "key"):
            value = tls.get(field)
            if value is None:
                files[field] = None
                continue
            try:
                resolved = (path.parent / Path(value).expanduser()).resolve()
                found = resolved.is_file()
            except (OSError, RuntimeError, ValueError):  # a name too long, a symlink loop, a NUL
                resolved, found = Path(value), False
            if not found:
                raise SpecError(
                    f"TLS file {value!r} does not exist (looked for {resolved}); paths are relative to the spec file",
                    file=path,
                    key=f"{key}.tls.{field}",
                )
            files[field] = str(resolved)
        if bool(files["cert"]) != bool(files["key"]):
            raise SpecError("tls.cert and tls.key go together: set both or neither", file=path, key=f"{key}.tls")
        if tls and engine and not str(engine).startswith("tcp://"):
            raise SpecError(f"tls is for tcp:// engines, not {engine!r}", file=path, key=f"{key}.tls")
        out[name] = Target(
            name=name,
            engine=engine,
            context=context,
            kind=table.get("kind", "docker"),
            tls_ca=files["ca"],
            tls_cert=files["cert"],
            tls_key=files["key"],
            tls_verify=bool(tls.get("verify", True)),
            workspace=table.get("workspace"),
            kernel_address=table.get("kernel_address"),
            description=table.get("description"),
        )
    return out


def docker_config_dir() -> Path:
    return Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")


def resolve_context(name: str) -> dict[str, Any]:
    """A Docker CLI context (``docker context create NAME --docker host=…``) as backend settings.

    Returns ``{"base_url": …, "tls_ca"/"tls_cert"/"tls_key": path or None, "tls_verify": bool}``.

    Raises:
        SpecError: no such context (the message lists those that exist).
    """
    root = docker_config_dir() / "contexts"
    digest = hashlib.sha256(name.encode()).hexdigest()
    meta = root / "meta" / digest / "meta.json"
    try:
        endpoint = json.loads(meta.read_text())["Endpoints"]["docker"]
    except (OSError, ValueError, KeyError, TypeError):
        known = []
        for other in (root / "meta").glob("*/meta.json"):
            try:
                known.append(json.loads(other.read_text())["Name"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
        raise SpecError(
            f"no Docker context named {name!r} in {root} (contexts there: {', '.join(sorted(known)) or 'none'}); "
            "create it with 'docker context create NAME --docker host=ssh://HOST', or set engine instead"
        ) from None
    tls = root / "tls" / digest / "docker"
    found = {f: str(tls / f"{f}.pem") if (tls / f"{f}.pem").is_file() else None for f in ("ca", "cert", "key")}
    return {
        "base_url": str(endpoint.get("Host") or ""),
        "tls_ca": found["ca"],
        "tls_cert": found["cert"],
        "tls_key": found["key"],
        "tls_verify": not endpoint.get("SkipTLSVerify", False),
    }


def backend_settings(target: Target) -> dict[str, Any]:
    """The DockerBackend traits that point it at ``target`` (they override config for that backend only)."""
    if target.context:
        settings = resolve_context(target.context)
    else:
        settings = {
            "base_url": target.engine,
            "tls_ca": target.tls_ca,
            "tls_cert": target.tls_cert,
            "tls_key": target.tls_key,
            "tls_verify": target.tls_verify,
        }
    if target.kernel_address:
        settings["kernel_address"] = target.kernel_address
    return settings


def is_local_address(address: str) -> bool:
    return address.startswith(("unix://", "npipe://")) or address.startswith("/")


def workspace_mode(target: Target | None, address: str) -> str:
    """``mount``, ``sync`` or an absolute path on the engine's host: how /workspace reaches the container."""
    if target is not None and target.workspace:
        return target.workspace
    return "mount" if is_local_address(address) else "sync"


def describe(manager: Any, name: str | None) -> dict[str, Any]:
    """One line of ``jupyter-containers targets``: address, reachability, engine version, CPUs, memory, GPUs.

    Never raises for an engine failure: an unreachable target says why in ``error``.
    """
    from .errors import ContainersError

    row: dict[str, Any] = {"name": name or "(default)", "address": None, "reachable": False}
    try:
        routed = manager.for_target(name) if name else manager
        row["address"] = routed.backend.address
        row["workspace"] = routed.workspace_mode()
        info = routed.backend.engine_info()
    except ContainersError as exc:
        row["error"] = str(exc)
        return row
    row.update(
        reachable=True,
        version=info.version,
        cpus=info.cpus,
        memory=info.memory,
        gpus=info.gpu_summary,
        os=info.os,
        architecture=info.architecture,
    )
    return row
