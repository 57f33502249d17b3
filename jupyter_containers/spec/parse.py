"""Reading spec files: TOML → JSON-Schema validation → frozen :mod:`model` objects.

Validation errors are rewritten so that each names the file, the key path, the bad value and what is
allowed, because the raw jsonschema messages ("... is not valid under any of the given schemas") tell a
user nothing about what to type instead.
"""

from __future__ import annotations

import difflib
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import SpecError, SpecNotFoundError
from ..units import parse_cpus, parse_duration, parse_size
from .model import Environment, Resources, SpecFile
from .schema import ENV_NAME_HELP, SPEC_SCHEMA

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

SPEC_FILENAME = "containers.toml"
PYPROJECT_TABLE = "tool.jupyter-containers"


def find_spec_file(directory: Path | str | None = None) -> Path:
    """``containers.toml``, else a ``pyproject.toml`` with a ``[tool.jupyter-containers]`` table."""
    directory = Path(directory or Path.cwd())
    candidate = directory / SPEC_FILENAME
    if candidate.is_file():
        return candidate
    pyproject = directory / "pyproject.toml"
    if pyproject.is_file() and _pyproject_table(read_toml(pyproject)) is not None:
        return pyproject
    raise SpecNotFoundError(
        f"no {SPEC_FILENAME} (or pyproject.toml with a [{PYPROJECT_TABLE}] table) in {directory}; "
        "create one (see docs/spec.md), import one with 'jupyter-containers import requirements.txt', "
        "or pass -f/--file PATH"
    )


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; a syntax error becomes a SpecError carrying line and column."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise SpecNotFoundError(f"spec file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"invalid TOML: {exc}", file=path) from None
    except UnicodeDecodeError as exc:
        raise SpecError(f"the file is not UTF-8 text ({exc.reason} at byte {exc.start})", file=path) from None


def _pyproject_table(data: Mapping[str, Any]) -> Any:
    return data.get("tool", {}).get("jupyter-containers") if isinstance(data.get("tool"), dict) else None


def load_spec(path: Path | str | None = None) -> SpecFile:
    """Load and validate a spec file (``None``: find one in the current directory)."""
    path = Path(path).resolve() if path else find_spec_file().resolve()
    data = read_toml(path)
    prefix = ""
    if path.name == "pyproject.toml":
        table = _pyproject_table(data)
        if table is None:
            raise SpecNotFoundError(f"no [{PYPROJECT_TABLE}] table; add one with an [environments] table", file=path)
        data, prefix = table, PYPROJECT_TABLE
    return spec_from_dict(data, path, key_prefix=prefix)


def spec_from_dict(data: Mapping[str, Any], path: Path, *, key_prefix: str = "") -> SpecFile:
    """Validate an already-parsed document (as read from TOML, or sent as JSON to the REST API)."""
    validate(data, path, key_prefix=key_prefix)
    envs = {}
    for name, raw in data["environments"].items():
        key = _join(key_prefix, f"environments.{name}")
        envs[name] = _environment(name, raw, path, key)
    return SpecFile(path=path, environments=envs)


def load_environment(name: str, path: Path | str | None = None) -> Environment:
    """One environment by name, with a "did you mean" when the name is unknown."""
    spec = load_spec(path)
    try:
        return spec.environments[name]
    except KeyError:
        known = sorted(spec.environments)
        raise SpecNotFoundError(
            f"no environment named {name!r}{_did_you_mean(name, known)}; defined here: {', '.join(known)}",
            file=spec.path,
        ) from None


_VALIDATOR: Any = None


def validate(data: Any, path: Path | str, *, key_prefix: str = "") -> None:
    """Raise a SpecError for the first schema violation.

    fastjsonschema (compiled once per process) rather than jsonschema: importing jsonschema with its
    format checkers costs most of a second, which an unchanged ``build`` must not pay.
    """
    global _VALIDATOR
    import fastjsonschema

    if _VALIDATOR is None:
        _VALIDATOR = fastjsonschema.compile(SPEC_SCHEMA)
    try:
        _VALIDATOR(data)
    except fastjsonschema.JsonSchemaValueException as error:
        key, message = _describe(error, data)
        raise SpecError(message, file=path, key=_join(key_prefix, key) or None) from None


def _describe(error: Any, document: Any) -> tuple[str, str]:
    parts, node = _data_path(error.path[1:], document)
    key = _keypath(parts)
    instance, rule = error.value, error.rule
    schema = _schema_at(parts)
    if rule == "additionalProperties" and isinstance(instance, dict):
        allowed = sorted(schema.get("properties", {}))
        unknown = sorted(k for k in instance if k not in allowed)[0]
        hint = _did_you_mean(unknown, allowed)
        return _join(key, unknown), f"unknown key {unknown!r}{hint}; allowed keys: {', '.join(allowed)}"
    if rule == "propertyNames" and isinstance(instance, dict):
        pattern = re.compile(schema["propertyNames"]["pattern"])
        bad = next((k for k in instance if not pattern.match(k)), next(iter(instance), ""))
        if parts and parts[-1] == "env":
            return key, f"environment variable name {bad!r} is not allowed; use letters, digits and '_'"
        return _join(key, str(bad)), f"environment name {bad!r} is not allowed; use {ENV_NAME_HELP}"
    if rule == "required":
        return key, "missing table [environments]; define at least one environment, such as [environments.default]"
    if rule == "minProperties":
        return key, "no environment defined; add one, such as [environments.default]"
    if rule == "uniqueItems":
        return key, f"{instance!r} lists a value twice; list each value once"
    description = _nearest_description(parts)
    quote = " (write it in quotes)" if isinstance(instance, int | float) and _wants_string(schema) else ""
    return key, f"{instance!r} is not allowed; expected {description}{quote}"


def _data_path(raw: Iterable[str], document: Any) -> tuple[list[str | int], Any]:
    """fastjsonschema reports list indexes as strings; turn them back into ints by walking the data."""
    parts: list[str | int] = []
    node = document
    for part in raw:
        if isinstance(node, list):
            index = int(part)
            parts.append(index)
            node = node[index] if index < len(node) else None
        else:
            parts.append(part)
            node = node.get(part) if isinstance(node, dict) else None
    return parts, node


def _schema_at(parts: Iterable[str | int]) -> dict[str, Any]:
    node: dict[str, Any] = SPEC_SCHEMA
    for part in parts:
        if isinstance(part, int):
            node = node.get("items", {})
        elif part in node.get("properties", {}):
            node = node["properties"][part]
        elif isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]
        else:
            return {}
    return node


def _nearest_description(parts: list[str | int]) -> str:
    for end in range(len(parts), -1, -1):
        description = _schema_at(parts[:end]).get("description")
        if description:
            return description
    return ""


def _wants_string(schema: dict[str, Any]) -> bool:
    options = [schema, *schema.get("oneOf", [])]
    return any(option.get("type") == "string" for option in options)


def _environment(name: str, raw: Mapping[str, Any], path: Path, key: str) -> Environment:
    pip = tuple(raw.get("pip", ()))
    for i, requirement in enumerate(pip):
        check_requirement(requirement, file=path, key=f"{key}.pip[{i}]")
    requirements = tuple(raw.get("requirements", ()))
    for i, rel in enumerate(requirements):
        target = (path.parent / rel).resolve()
        if not target.is_file():
            raise SpecError(
                f"requirements file {rel!r} does not exist (looked for {target}); paths are relative to the spec file",
                file=path,
                key=f"{key}.requirements[{i}]",
            )
    return Environment(
        name=name,
        base=raw.get("base"),
        python=raw.get("python"),
        pip=pip,
        apt=tuple(raw.get("apt", ())),
        requirements=requirements,
        post_build=tuple(raw.get("post_build", ())),
        env=dict(raw.get("env", {})),
        resources=parse_resources(raw.get("resources", {}), file=path, key=f"{key}.resources"),
        description=raw.get("description"),
        source=path,
    )


def check_requirement(requirement: str, *, file: object = None, key: str | None = None) -> str:
    """A PEP 508 requirement as pip/uv accept it; options, editables and local paths are refused."""
    from packaging.requirements import InvalidRequirement, Requirement

    text = requirement.strip()
    if text.startswith("-"):
        raise SpecError(
            f"{requirement!r} is a pip option, not a requirement; list package requirements only "
            "(index settings come from the host's pip configuration, see docs/spec.md)",
            file=file,
            key=key,
        )
    if text.startswith((".", "/", "~")) or text.startswith("file:"):
        raise SpecError(
            f"{requirement!r} is a local path, which does not exist inside the image; "
            "publish the package, refer to it by URL (name @ https://...), or install it in post_build",
            file=file,
            key=key,
        )
    try:
        Requirement(text)
    except InvalidRequirement as exc:
        raise SpecError(f"{requirement!r} is not a valid requirement: {exc}", file=file, key=key) from None
    return text


def parse_resources(raw: Mapping[str, Any], *, file: object = None, key: str | None = None) -> Resources:
    """Resources from spec/CLI/REST values in human units; each bad value names its key."""

    def conv(name: str, fn: Any) -> Any:
        if raw.get(name) is None:
            return None
        try:
            return fn(raw[name])
        except ValueError as exc:
            raise SpecError(str(exc), file=file, key=_join(key or "", name) or None) from None

    def swap(value: Any) -> int:
        return -1 if value in (-1, "-1") else parse_size(value)

    def gpus(value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is not a GPU request; use a count, 'all' or device ids such as ['0', '2']")
        if isinstance(value, int):
            if value < 0:
                raise ValueError(f"{value!r} is not a GPU count; use 0 or more")
            return value
        if isinstance(value, list | tuple):
            ids = tuple(str(v).strip() for v in value)
            if not ids or any(not i for i in ids):
                raise ValueError(f"{value!r} is not a list of GPU device ids; use ids such as ['0', '2']")
            return ids
        text = str(value).strip()
        if text == "all":
            return "all"
        if text.isdigit():
            return int(text)
        text = text.removeprefix("device=")
        ids = tuple(part.strip() for part in text.split(",") if part.strip())
        if not ids:
            raise ValueError(f"{value!r} is not a GPU request; use a count, 'all' or device ids such as '0,2'")
        return ids

    def pids(value: Any) -> int:
        message = f"{value!r} is not a process limit; use a positive integer such as 512"
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(message) from None
        if isinstance(value, bool) or number < 1 or number != int(number):
            raise ValueError(message)
        return int(number)

    def network(value: Any) -> bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("bridge", "true", "on", "yes", "default"):
            return True
        if text in ("none", "false", "off", "no"):
            return False
        raise ValueError(f"{value!r} is not a network setting; use 'bridge' (or true) or 'none' (or false)")

    return Resources(
        cpus=conv("cpus", parse_cpus),
        memory=conv("memory", parse_size),
        memory_swap=conv("memory_swap", swap),
        gpus=conv("gpus", gpus),
        shm_size=conv("shm_size", parse_size),
        pids=conv("pids", pids),
        timeout=conv("timeout", parse_duration),
        network=conv("network", network),
    )


def _keypath(parts: Iterable[Any]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix and key else (prefix or key)


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
