"""A notebook's environment records: what they hold, how interactive work sends them, and whether they still match.

``metadata.jupyter_containers`` holds the run record ``execute`` writes (``jobs/provenance.py``) and, under
``environments.NAME``, one record per environment the notebook used interactively (a container kernel, a
``%%container`` cell): JupyterLab writes those into the open notebook's model when the kernel side sends them
(a comm, :data:`COMM_TARGET`), so nothing edits a notebook file behind its user's back and a notebook that
used several environments records them all. Every record has the same shape (:func:`environment_record`).

:func:`check_notebook` compares each record with the workspace (the notebook toolbar item: matches / spec
changed / missing) without asking the engine; :func:`restore_environment` writes a recorded environment back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import ConflictError, ContainersError, NotFoundError, RequestError, SpecError
from ..jobs.provenance import RECORD_KEY
from ..redact import redact_data

#: The comm a kernel opens to hand JupyterLab an environment record (data: the record); see labextension
#: src/metadata.ts, which writes it into ``metadata.jupyter_containers.environments.NAME``.
COMM_TARGET = "jupyter_containers.environment"
#: The same record as a MIME bundle (``display(..., raw=True)``), for front ends other than JupyterLab.
MIMETYPE = "application/vnd.jupyter-containers.environment+json"
ENVIRONMENTS_KEY = "environments"

MATCHES = "matches"
SPEC_CHANGED = "spec-changed"
MISSING = "missing"


def environment_record(
    manager: Any,
    name: str,
    *,
    image: str | None,
    image_id: str | None,
    resources: dict[str, Any] | None = None,
    target: str | None = None,
) -> dict[str, Any]:
    """The record of environment ``name`` as it runs now: the fields ``execute`` records (environment, spec,
    lock, image, image id, resources) plus the registry digest, the target and the builder's version.
    Credentials in URLs are redacted."""
    env = manager.environment(name)
    lock = manager.builder.lock_entry(env)
    return {
        "environment": name,
        "spec": redact_data(env.to_dict()),
        "spec_file": str(manager.spec_file()),
        "lock": redact_data(lock.to_toml()) if lock is not None else None,
        "image": image,
        "image_id": image_id,
        "digest": (lock.digest or None) if lock is not None else None,
        "resources": dict(resources or env.resources.to_dict()),
        "target": target or getattr(manager, "target", None) or env.target,
        "builder": __version__,
    }


def notebook_records(metadata: Any) -> dict[str, dict[str, Any]]:
    """Environment name → record, for every environment a notebook's metadata records (``execute``'s own record
    first; an interactive record of the same name does not replace it)."""
    ours = (metadata or {}).get(RECORD_KEY)
    if not isinstance(ours, dict):
        return {}
    found: dict[str, dict[str, Any]] = {}
    if isinstance(ours.get("spec"), dict) and ours.get("environment"):
        found[str(ours["environment"])] = dict(ours)
    for name, record in (ours.get(ENVIRONMENTS_KEY) or {}).items():
        if isinstance(record, dict) and isinstance(record.get("spec"), dict) and str(name) not in found:
            found[str(name)] = {**record, "environment": str(name)}
    return found


def _normal(value: Any) -> Any:
    """JSON-normal form (tuples are lists, keys sorted) with credentials redacted: what two sides compare by."""
    return json.loads(json.dumps(redact_data(value), sort_keys=True, default=str))


def _spec_table(table: dict[str, Any]) -> dict[str, Any]:
    from ..spec.schema import ENVIRONMENT_SCHEMA

    return {k: v for k, v in table.items() if k in ENVIRONMENT_SCHEMA["properties"]}


def _lock_versions(lock: dict[str, Any] | None) -> Any:
    """What a lock pins (a different digest or image name of the same build is still the same environment)."""
    if not lock:
        return None
    return {k: _normal(lock.get(k)) for k in ("spec_hash", "python", "packages", "apt", "base_image_id")}


@dataclass(frozen=True)
class EnvironmentCheck:
    name: str
    status: str
    recorded_lock: dict[str, Any] | None
    current_lock: dict[str, Any] | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "recorded_lock": self.recorded_lock,
            "current_lock": self.current_lock,
            "message": self.message,
        }


def check_notebook(notebook: Path, spec_file: Path | None) -> list[EnvironmentCheck]:
    """Each recorded environment of ``notebook`` against the workspace's ``spec_file`` (None: there is none).

    Reads files only (no engine): ``matches`` when the workspace's spec of the environment is the recorded one
    and its lock entry, if any, pins the same versions; ``spec-changed`` otherwise; ``missing`` when the
    workspace has no such environment.
    """
    from ..images.lock import read_lock
    from ..spec.parse import load_spec
    from .notebook import read_notebook

    nb = read_notebook(notebook)
    environments: dict[str, Any] = {}
    locks: dict[str, Any] = {}
    if spec_file is not None:
        spec = load_spec(spec_file)
        environments = dict(spec.environments)
        locks = read_lock(spec.lock_path)
    out = []
    for name, record in notebook_records(nb.metadata).items():
        recorded_lock = redact_data(dict(record["lock"])) if record.get("lock") else None
        current = locks.get(name)
        current_lock = redact_data(current.to_toml()) if current is not None else None
        env = environments.get(name)
        if env is None:
            where = str(spec_file) if spec_file is not None else "this workspace (it has no spec file)"
            out.append(EnvironmentCheck(name, MISSING, recorded_lock, None, f"no environment {name!r} in {where}"))
            continue
        if _normal(_spec_table(record["spec"])) != _normal(_spec_table(env.to_dict())):
            status, message = SPEC_CHANGED, f"the spec of {name!r} in {spec_file} differs from the recorded one"
        elif recorded_lock and current_lock and _lock_versions(recorded_lock) != _lock_versions(current_lock):
            status, message = SPEC_CHANGED, f"containers.lock pins other versions of {name!r} than the recorded ones"
        else:
            status, message = MATCHES, f"{name!r} is the recorded environment"
        out.append(EnvironmentCheck(name, status, recorded_lock, current_lock, message))
    return out


def restore_environment(notebook: Path, spec_file: Path, name: str, *, overwrite: bool = False) -> Any:
    """Write the recorded environment ``name`` of ``notebook`` into ``spec_file`` and its lock beside it (as
    ``spec from-notebook``). An identical environment already there is left as it is.

    Raises:
        NotFoundError: the notebook records no environment ``name``; ConflictError: a different one of that
        name is in the workspace and ``overwrite`` is false.
    """
    from ..images.lock import read_lock
    from .notebook import spec_from_notebook

    checks = {c.name: c for c in check_notebook(notebook, spec_file if spec_file.is_file() else None)}
    found = checks.get(name)
    if found is None:
        known = ", ".join(sorted(checks)) or "none"
        raise NotFoundError(f"{notebook.name} records no environment {name!r} (it records: {known})")
    if found.status == SPEC_CHANGED and not overwrite:
        raise ConflictError(
            f"{spec_file} already has a different environment {name!r} ({found.message}); restore it with "
            "overwrite to replace it"
        )
    if found.status == MATCHES:
        from .notebook import FromNotebookResult

        lock_file = spec_file.parent / "containers.lock"
        if found.recorded_lock and name not in read_lock(lock_file):
            return spec_from_notebook(notebook, spec_file, name=name, force=True, environment=name)
        return FromNotebookResult(name, spec_file, lock_file, ("the workspace already has the recorded environment",))
    try:
        return spec_from_notebook(notebook, spec_file, name=name, force=overwrite, environment=name)
    except SpecError as exc:
        if "already" in str(exc):
            raise ConflictError(str(exc)) from None
        raise


def record_lookup(metadata: Any, name: str | None, path: Path) -> dict[str, Any]:
    """One record: ``name``'s, else ``execute``'s own, else the only one; RequestError/NotFoundError otherwise."""
    records = notebook_records(metadata)
    if not records:
        raise RequestError(
            f"{path} carries no environment record (metadata.{RECORD_KEY}): run it once with "
            "'jupyter-containers execute NOTEBOOK --env ENV', or in JupyterLab with a container kernel or "
            "%%container cells, which record the environments they ran in"
        )
    if name is not None:
        if name not in records:
            raise NotFoundError(f"{path} records no environment {name!r} (it records: {', '.join(sorted(records))})")
        return records[name]
    ours = metadata.get(RECORD_KEY) or {}
    if ours.get("environment") in records:
        return records[str(ours["environment"])]
    if len(records) == 1:
        return next(iter(records.values()))
    raise RequestError(
        f"{path} records several environments ({', '.join(sorted(records))}); name one (--environment NAME)"
    )


def safe_environment_record(manager: Any, name: str, **kwargs: Any) -> dict[str, Any] | None:
    """:func:`environment_record`, or None when it cannot be made (the spec was edited into an invalid one):
    recording must never fail a cell."""
    try:
        return environment_record(manager, name, **kwargs)
    except (ContainersError, OSError, ValueError):
        return None


def with_record(metadata: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """``metadata`` with ``record`` put under ``jupyter_containers.environments.NAME`` (what the extension
    does in the browser; used by tests and non-browser front ends)."""
    ours = dict(metadata.get(RECORD_KEY) or {})
    environments = dict(ours.get(ENVIRONMENTS_KEY) or {})
    environments[record["environment"]] = record
    ours[ENVIRONMENTS_KEY] = environments
    return {**metadata, RECORD_KEY: ours}


__all__ = [
    "COMM_TARGET",
    "MIMETYPE",
    "EnvironmentCheck",
    "check_notebook",
    "environment_record",
    "notebook_records",
    "record_lookup",
    "restore_environment",
    "with_record",
]
