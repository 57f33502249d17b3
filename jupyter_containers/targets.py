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
        if table.get("kind") == "kubernetes":
            out[name] = kubernetes_target(name, table, path, key)
            continue
        swarm = table.get("kind") == "swarm"
        misplaced = sorted(
            set(table) & (set(KUBERNETES_FIELDS) - {"registry"} - (set(SWARM_SHARED_FIELDS) if swarm else set()))
        )
        if misplaced:
            raise SpecError(
                f'{misplaced[0]} is for kind = "kubernetes" targets; add kind = "kubernetes" or remove it',
                file=path,
                key=f"{key}.{misplaced[0]}",
            )
        misplaced = sorted(set(table) & set(SWARM_FIELDS)) if not swarm else []
        if misplaced:
            raise SpecError(
                f'{misplaced[0]} is for kind = "swarm" targets; add kind = "swarm" or remove it',
                file=path,
                key=f"{key}.{misplaced[0]}",
            )
        if swarm:
            check_swarm_table(table, path, key)
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
            registry=table.get("registry"),  # every kind: build, push and pull on this target use it
            constraints=tuple(str(c).strip() for c in table.get("constraints") or ()),
            nodes=dict(table.get("nodes") or {}),
            generic_resource=table.get("generic_resource"),
            reschedule_on_node_failure=bool(table.get("reschedule_on_node_failure", False)),
        )
    return out


#: Fields only a ``kind = "swarm"`` target has, and those it shares with ``kind = "kubernetes"``.
SWARM_FIELDS = ("constraints", "nodes", "generic_resource", "reschedule_on_node_failure")
SWARM_SHARED_FIELDS = ("registry",)


def check_swarm_table(table: Mapping[str, Any], path: Path, key: str) -> None:
    """A ``kind = "swarm"`` table: its workspace is a folder every node has, a volume on each node synced through
    the engines of its ``nodes`` table (``sync``, the default with such a table), or none.

    Raises:
        SpecError: naming the key, for ``mount`` (one engine's host folder), or ``sync`` without a nodes table.
    """
    reschedule = table.get("reschedule_on_node_failure", False)
    if not isinstance(reschedule, bool):
        raise SpecError(
            f"reschedule_on_node_failure = {reschedule!r}: true or false",
            file=path,
            key=f"{key}.reschedule_on_node_failure",
        )
    if table.get("workspace") == "mount":
        raise SpecError(
            'workspace = "mount" needs a single engine on this machine; on a swarm, /workspace is an absolute path '
            'every node has (a shared folder), "sync" (a volume on each node, synced through the engines of the '
            "target's nodes table: the default with one), or nothing when workspace is not set and there is no "
            "nodes table",
            file=path,
            key=f"{key}.workspace",
        )
    if table.get("workspace") == "sync" and not table.get("nodes"):
        raise SpecError(
            'workspace = "sync" on a swarm syncs a volume on each node through that node\'s engine: add a '
            f'[{key}.nodes] table (node host name = "tcp://…" or "ssh://…") naming every node that may run tasks',
            file=path,
            key=f"{key}.workspace",
        )


#: Fields only a ``kind = "kubernetes"`` target has.
KUBERNETES_FIELDS = (
    "namespace",
    "registry",
    "builder",
    "node_selector",
    "tolerations",
    "affinity",
    "image_pull_secrets",
    "gpu_resource",
    "workspace_claim",
)


def kubernetes_target(name: str, table: Mapping[str, Any], path: Path, key: str) -> Target:
    """A ``kind = "kubernetes"`` table: ``context`` is a kubeconfig context (none: the current one), no engine.

    Raises:
        SpecError: naming the key, for an engine, TLS files or a workspace mode (a cluster has none of them).
    """
    for field, why in (
        ("engine", "a cluster is reached through its kubeconfig context (context = NAME), not an engine address"),
        ("tls", "the kubeconfig context carries the cluster's certificates"),
        ("kernel_address", "kernel channels go through the API server's port-forward"),
        ("workspace", "/workspace is the workspace_claim (a PersistentVolumeClaim) or an empty folder"),
    ):
        if field in table:
            raise SpecError(f'{field} is not for kind = "kubernetes" targets: {why}', file=path, key=f"{key}.{field}")
    if table.get("builder") == name:
        raise SpecError(
            "builder names a Docker target that builds the images, not this one", file=path, key=f"{key}.builder"
        )
    return Target(
        name=name,
        context=table.get("context"),
        kind="kubernetes",
        description=table.get("description"),
        namespace=table.get("namespace"),
        registry=table.get("registry"),
        builder=table.get("builder"),
        node_selector=dict(table.get("node_selector") or {}),
        tolerations=tuple(dict(t) for t in table.get("tolerations") or ()),
        affinity=dict(table.get("affinity") or {}),
        image_pull_secrets=tuple(table.get("image_pull_secrets") or ()),
        gpu_resource=table.get("gpu_resource"),
        workspace_claim=table.get("workspace_claim"),
    )


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


def backend_settings(target: Target, targets: Mapping[str, Target] | None = None) -> dict[str, Any]:
    """The DockerBackend traits that point it at ``target`` (they override config for that backend only);
    the KubernetesBackend's for a ``kind = "kubernetes"`` target (``targets``: the spec's, to find its builder).

    Raises:
        SpecError: a kubernetes target's builder names no Docker target of the spec file.
    """
    if target.kind == "kubernetes":
        return kubernetes_settings(target, targets or {})
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
    if target.kind == "swarm":
        settings["target_name"] = target.name
        settings["constraints"] = list(target.constraints)
        settings["node_engines"] = dict(target.nodes)
        if target.registry:
            settings["registry"] = target.registry
        if target.generic_resource:
            settings["gpu_resource"] = target.generic_resource
        if target.reschedule_on_node_failure:
            settings["reschedule_on_node_failure"] = True
    return settings


def kubernetes_settings(target: Target, targets: Mapping[str, Target]) -> dict[str, Any]:
    """The KubernetesBackend traits of a ``kind = "kubernetes"`` target (only those it sets: config fills the rest)."""
    settings: dict[str, Any] = {"context": target.context}
    for field in ("namespace", "registry", "gpu_resource"):
        if getattr(target, field):
            settings[field] = getattr(target, field)
    for field in ("node_selector", "affinity"):
        if getattr(target, field):
            settings[field] = dict(getattr(target, field))
    for field in ("tolerations", "image_pull_secrets"):
        if getattr(target, field):
            settings[field] = list(getattr(target, field))
    if target.builder:
        builder = targets.get(target.builder)
        if builder is None or builder.kind != "docker":
            known = ", ".join(sorted(n for n, t in targets.items() if t.kind == "docker")) or "none"
            raise SpecError(
                f"the builder {target.builder!r} of target {target.name!r} is no Docker target of the spec file "
                f"(Docker targets: {known})"
            )
        settings["builder_settings"] = backend_settings(builder)
    return settings


def is_local_address(address: str) -> bool:
    return address.startswith(("unix://", "npipe://")) or address.startswith("/")


def workspace_mode(target: Target | None, address: str) -> str:
    """``mount``, ``sync`` or an absolute path on the engine's host: how /workspace reaches the container."""
    if target is not None and target.kind == "kubernetes":
        return "claim" if target.workspace_claim else "none"
    if target is not None and target.workspace:
        return target.workspace
    if target is not None and target.kind == "swarm":
        # Tasks run on any node: no single engine's volume or this host's folder reaches them all, but each node's
        # own volume, synced through its engine once a task lands there, does (the nodes table names the engines).
        return "sync" if target.nodes else "none"
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
