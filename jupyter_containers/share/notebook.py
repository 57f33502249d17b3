"""A notebook's run record (``metadata.jupyter_containers``) back to a spec and a lock.

The record holds the environment's normalized spec and its lock entry (see ``jobs/provenance.py``), so a
notebook alone is enough to recreate the environment: ``spec from-notebook`` writes both next to each other,
and ``build --locked`` then installs exactly the recorded versions.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import NotFoundError, RequestError, SpecError
from ..images.lock import LockEntry, read_lock, write_lock_entry
from ..jobs.provenance import RECORD_KEY


@dataclass(frozen=True)
class FromNotebookResult:
    environment: str
    spec_file: Path
    lock_file: Path
    notes: tuple[str, ...]


def read_notebook(path: Path) -> Any:
    import nbformat

    if not path.is_file():
        raise NotFoundError(f"no notebook {path}")
    try:
        return nbformat.read(str(path), as_version=4)
    except (ValueError, OSError) as exc:
        raise RequestError(f"{path} is not a readable notebook: {str(exc)[:200]}") from None


def recorded(nb: Any, path: Path, environment: str | None = None) -> dict[str, Any]:
    """The run record of ``environment`` (None: ``execute``'s, else the only one), checked enough to rebuild
    from; RequestError when the notebook has none (see share/metadata.py for the records a notebook holds)."""
    from .metadata import record_lookup

    return dict(record_lookup(nb.get("metadata") or {}, environment, path))


def lock_from_record(record: dict[str, Any], path: Path) -> LockEntry | None:
    raw = record.get("lock")
    if not raw:
        return None
    try:
        return LockEntry(
            spec_hash=str(raw["spec_hash"]),
            image=str(raw["image"]),
            image_id=str(raw["image_id"]),
            base=str(raw["base"]),
            base_image_id=str(raw["base_image_id"]),
            python=str(raw["python"]),
            packages=tuple(str(p) for p in raw.get("packages", ())),
            apt=tuple(str(p) for p in raw.get("apt", ())),
            builder=str(raw.get("builder", "")),
            digest=str(raw.get("digest", "")),
        )
    except (KeyError, TypeError) as exc:
        raise RequestError(f"{path}: metadata.{RECORD_KEY}.lock lacks {exc}") from None


def environment_from_record(record: dict[str, Any], spec_file: Path, name: str | None, notes: list[str]) -> Any:
    """The recorded environment, validated as a spec would be, as if it lived in ``spec_file``."""
    from ..spec.parse import spec_from_dict
    from ..spec.schema import ENVIRONMENT_SCHEMA

    table = {k: v for k, v in record["spec"].items() if k in ENVIRONMENT_SCHEMA["properties"]}
    if table.get("requirements"):
        notes.append(
            f"the recorded spec installs from {', '.join(table['requirements'])}, which the notebook does not carry: "
            "they were left out; 'build --locked' installs the recorded versions from the lock"
        )
        table.pop("requirements")
    if table.get("find_links"):
        notes.append(
            f"the recorded spec installs wheels from the folder(s) {', '.join(table['find_links'])}, which the "
            "notebook does not carry: they were left out; put the wheels in a folder next to the new spec and list "
            "it in find_links"
        )
        table.pop("find_links")
    if table.get("target"):
        # A target names an engine of the recording workspace's [targets] table, which the record does not carry
        # (it holds addresses and certificate paths of someone else's machine).
        notes.append(
            f"the notebook ran on target {table.pop('target')!r}, which is not part of the recreated environment: "
            "choose where it runs with --target (or add target = ... to the environment)"
        )
    env_name = name or str(record["environment"])
    try:
        spec = spec_from_dict({"environments": {env_name: table}}, spec_file)
    except SpecError as exc:
        raise RequestError(f"the recorded environment is not a valid spec: {exc}") from None
    return spec.environments[env_name]


def spec_from_notebook(
    notebook: Path,
    output: Path,
    *,
    name: str | None = None,
    force: bool = False,
    environment: str | None = None,
) -> FromNotebookResult:
    """Write the environment a notebook ran in to ``output`` (a spec file, added to) and its lock beside it.

    ``environment``: which of the recorded environments (None: ``execute``'s record, else the only one)."""
    from ..spec.writer import add_environment_to_file

    notebook = Path(notebook)
    output = Path(output).expanduser().resolve()
    record = recorded(read_notebook(notebook), notebook, environment)
    notes: list[str] = []
    env = environment_from_record(record, output, name, notes)
    lock = lock_from_record(record, notebook)
    lock_file = output.parent / "containers.lock"
    if lock is None:
        notes.append("the record has no lock: build the environment once to create one")
    elif not force and env.name in read_lock(lock_file) and read_lock(lock_file)[env.name] != lock:
        raise SpecError(
            f"{lock_file} already locks a different {env.name!r}; pass --force to replace it", file=lock_file
        )
    add_environment_to_file(output, replace(env, source=output), notes, force=force)
    if lock is not None:
        write_lock_entry(lock_file, env.name, lock)
    return FromNotebookResult(env.name, output, lock_file, tuple(notes))
