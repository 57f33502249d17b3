"""Reading spec files: TOML → JSON-Schema validation → frozen :mod:`model` objects.

Validation errors are rewritten so that each names the file, the key path, the bad value and what is
allowed, because the raw jsonschema messages ("... is not valid under any of the given schemas") tell a
user nothing about what to type instead.
"""

from __future__ import annotations

import math
import os
import re
import reprlib
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import SpecError, SpecNotFoundError
from ..units import MAX_GPUS, MAX_PIDS, parse_cpus, parse_duration, parse_size
from .files import (
    check_nesting,
    check_path_text,
    confine,
    find_links_wheels,
    nesting_error,
    private_cache_folder,
    read_text,
    resolve_roots,
)
from .model import Environment, Resources, SpecFile
from .schema import ENV_NAME_HELP, ENV_NAME_PATTERN, MIN_PYTHON, MIN_PYTHON_TEXT, SPEC_SCHEMA

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

SPEC_FILENAME = "containers.toml"
PYPROJECT_TABLE = "tool.jupyter-containers"

#: Extra folders (besides the spec file's own) that referenced files may come from; see Builder.
AllowedRoots = Sequence[str | os.PathLike[str]]

_SHOW = reprlib.Repr()
_SHOW.maxstring = _SHOW.maxother = 80
_SHOW.maxlong = 40
_SHOW.maxlevel = 2
_SHOW.maxlist = _SHOW.maxtuple = _SHOW.maxdict = 6


def show(value: Any) -> str:
    """``repr(value)``, cut short: error messages quote what was written without echoing megabytes."""
    return _SHOW.repr(value)


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
    """Parse a TOML file (at most 1 MiB, nested at most 64 levels); every failure is a SpecError naming it."""
    try:
        text = read_text(path, bom=False)
    except FileNotFoundError:
        raise SpecNotFoundError(f"spec file {path} does not exist") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"invalid TOML: {exc}", file=path) from None
    except RecursionError:
        raise nesting_error(path) from None
    except ValueError as exc:  # e.g. an integer past Python's 4300-digit conversion limit
        raise SpecError(f"invalid TOML: {exc}", file=path) from None
    check_nesting(data, file=path)
    return data


def _pyproject_table(data: Mapping[str, Any]) -> Any:
    return data.get("tool", {}).get("jupyter-containers") if isinstance(data.get("tool"), dict) else None


def load_spec(path: Path | str | None = None, *, allowed_roots: AllowedRoots = ()) -> SpecFile:
    """Load and validate a spec file (``None``: find one in the current directory).

    Files the spec refers to must lie in the spec file's folder or in one of ``allowed_roots``.
    """
    if path:
        check_path_text(str(path), what="spec file")
    path = Path(path).resolve() if path else find_spec_file().resolve()
    data = read_toml(path)
    prefix = ""
    if path.name == "pyproject.toml":
        table = _pyproject_table(data)
        if table is None:
            raise SpecNotFoundError(f"no [{PYPROJECT_TABLE}] table; add one with an [environments] table", file=path)
        data, prefix = table, PYPROJECT_TABLE
    return spec_from_dict(data, path, key_prefix=prefix, allowed_roots=allowed_roots)


def spec_from_dict(
    data: Mapping[str, Any], path: Path, *, key_prefix: str = "", allowed_roots: AllowedRoots = ()
) -> SpecFile:
    """Validate an already-parsed document (as read from TOML, or sent as JSON to the REST API).

    ``path`` is where the spec lives: files it refers to (``requirements``) are relative to its folder and
    must lie inside it, or inside one of ``allowed_roots`` (none by default).
    """
    check_nesting(data, file=path)
    _check_strings(data, path, key_prefix)
    validate(data, path, key_prefix=key_prefix)
    roots = resolve_roots(Path(path).parent, allowed_roots)
    envs = {}
    for name, raw in data["environments"].items():
        key = _join(key_prefix, "environments." + _keypart(name))
        envs[name] = _environment(name, raw, path, key, roots)
    from ..targets import parse_targets

    targets = parse_targets(data.get("targets") or {}, path, key_prefix=key_prefix)
    for name, env in envs.items():
        if env.target is not None and env.target not in targets:
            known = ", ".join(sorted(targets)) or "none"
            raise SpecError(
                f"target {show(env.target)} is not defined{_did_you_mean(env.target, targets)}; add a "
                f"[targets.{env.target}] table with an engine (defined targets: {known})",
                file=path,
                key=_join(key_prefix, "environments." + _keypart(name) + ".target"),
            )
    return SpecFile(path=path, environments=envs, registry=data.get("registry"), targets=targets)


def load_environment(name: str, path: Path | str | None = None, *, allowed_roots: AllowedRoots = ()) -> Environment:
    """One environment by name, with a "did you mean" when the name is unknown."""
    spec = load_spec(path, allowed_roots=allowed_roots)
    try:
        return spec.environments[name]
    except KeyError:
        known = sorted(spec.environments)
        raise SpecNotFoundError(
            f"no environment named {show(name)}{_did_you_mean(name[:100], known)}; defined here: {', '.join(known)}",
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
        _VALIDATOR = _cached_validator() or fastjsonschema.compile(SPEC_SCHEMA)
    try:
        _VALIDATOR(data)
    except fastjsonschema.JsonSchemaValueException as error:
        key, message = _describe(error, data)
        raise SpecError(message, file=path, key=_join(key_prefix, key) or None) from None


def _cached_validator() -> Any:
    """fastjsonschema's validator for the spec schema, from the bytecode of the code it generates, kept in our
    cache folder under a hash of the schema, fastjsonschema's version and Python's; None when that cannot be
    (fastjsonschema then compiles it, as before).

    Generating and compiling that code (about 200 KB) cost every command 0.1-0.2 s of its start-up; the kept
    bytecode loads in milliseconds. It is loaded only from a folder of this user's that nobody else can write.
    Its regular expressions are compiled when a document first reaches them (:class:`_LazyPattern`): compiling
    all 16 at load took 2-14 ms of every command, and a spec without targets or a registry uses few of them.
    """
    import hashlib
    import json
    import marshal

    import fastjsonschema
    from fastjsonschema.ref_resolver import RefResolver

    folder = private_cache_folder("validators")
    if folder is None:
        return None
    try:
        schema = json.dumps(SPEC_SCHEMA, sort_keys=True)
        key = f"{fastjsonschema.VERSION}\n{sys.implementation.cache_tag}\nlazy patterns\n{schema}"
        path = folder / f"spec-schema-{hashlib.sha256(key.encode()).hexdigest()[:20]}.bytecode"
        if path.is_file():
            code = marshal.loads(path.read_bytes())
        else:
            code = compile(_lazy_patterns(fastjsonschema.compile_to_code(SPEC_SCHEMA)), _SCHEMA_CODE_NAME, "exec")
            partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            partial.write_bytes(marshal.dumps(code))
            os.replace(partial, path)
        namespace: dict[str, Any] = {"__name__": "_jupyter_containers_spec_schema", "_LazyPattern": _LazyPattern}
        exec(code, namespace)  # fastjsonschema's own generated code, run as fastjsonschema.compile runs it
        return namespace[RefResolver.from_schema(SPEC_SCHEMA).get_scope_name()]
    except (OSError, ValueError, EOFError, TypeError, KeyError, SyntaxError, ImportError):
        return None


_SCHEMA_CODE_NAME = "<jupyter-containers spec schema>"


def _lazy_patterns(code: str) -> str:
    """fastjsonschema's generated code with its table of compiled patterns (``REGEX_PATTERNS = {...:
    re.compile(...)}``, the only ``re.compile`` calls it makes) building :class:`_LazyPattern` objects instead."""
    start = code.find("REGEX_PATTERNS = {")
    end = code.find("\n}\n", start)
    if start < 0 or end < 0:
        return code  # another layout: its patterns are compiled at load, as before
    return code[:start] + code[start:end].replace("re.compile(", "_LazyPattern(") + code[end:]


class _LazyPattern:
    """A regular expression compiled when first used; the generated validator only calls ``search`` on it."""

    __slots__ = ("_args", "_compiled")

    def __init__(self, *args: Any):
        self._args = args
        self._compiled: re.Pattern[str] | None = None

    def _pattern(self) -> re.Pattern[str]:
        if self._compiled is None:
            self._compiled = re.compile(*self._args)
        return self._compiled

    def search(self, *args: Any) -> re.Match[str] | None:
        return self._pattern().search(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pattern(), name)


def _describe(error: Any, document: Any) -> tuple[str, str]:
    parts = _locate(error, document)
    key = _keypath(parts)
    instance, rule = error.value, error.rule
    definition = error.definition if isinstance(error.definition, dict) else _schema_at(parts)
    if rule == "additionalProperties" and isinstance(instance, dict):
        allowed = sorted(definition.get("properties", {}))
        unknown = sorted((str(k) for k in instance if k not in allowed), key=lambda k: (len(k) > 100, k))
        if unknown:
            hint = _did_you_mean(unknown[0][:100], allowed)
            return _join(key, _keypart(unknown[0])), (
                f"unknown key {show(unknown[0])}{hint}; allowed keys: {', '.join(allowed)}"
            )
    if rule == "propertyNames" and isinstance(instance, dict):
        pattern = str(definition.get("propertyNames", {}).get("pattern", ""))
        bad = next((k for k in instance if not re.fullmatch(pattern, str(k))), next(iter(instance), ""))
        if pattern == ENV_NAME_PATTERN:
            return _join(key, _keypart(str(bad))), f"environment name {show(bad)} is not allowed; use {ENV_NAME_HELP}"
        return key, (
            f"environment variable name {show(bad)} is not allowed; use letters, digits and '_', "
            "not starting with a digit"
        )
    if rule == "required" and isinstance(instance, dict):
        missing = [name for name in definition.get("required", []) if name not in instance]
        if missing == ["environments"] and not parts:
            return key, "missing table [environments]; define at least one environment, such as [environments.default]"
        return key, f"missing key(s) {', '.join(map(show, missing))}; add them"
    if rule == "minProperties" and parts == ["environments"]:
        return key, "no environment defined; add one, such as [environments.default]"
    if rule == "uniqueItems":
        return key, f"{show(instance)} lists a value twice; list each value once"
    description = _nearest_description(parts) or str(definition.get("description", ""))
    number = isinstance(instance, int | float) and not isinstance(instance, bool)
    bounds = _numeric_bounds(definition) if number else None
    if bounds is not None and not bounds[0] <= instance <= bounds[1]:
        low, high = bounds
        return key, f"{show(instance)} is out of range ({_number(low)} to {_number(high)}); expected {description}"
    quote = " (write it in quotes)" if number and bounds is None and _wants_string(definition) else ""
    return key, f"{show(instance)} is not allowed; expected {description or 'another value'}{quote}"


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else f"{value:g}"


def _numeric_bounds(schema: dict[str, Any]) -> tuple[float, float] | None:
    """The (minimum, maximum) of the first numeric option of ``schema``, if it has one."""
    for option in [schema, *schema.get("oneOf", [])]:
        if option.get("type") in ("integer", "number"):
            low = option.get("minimum", option.get("exclusiveMinimum", -math.inf))
            return float(low), float(option.get("maximum", math.inf))
    return None


def _locate(error: Any, document: Any) -> list[str | int]:
    """Where in ``document`` the failing value is.

    fastjsonschema names it with a dotted string ("data.environments.a.b.env"), which is ambiguous when a
    key holds a dot; so the document is searched for the very object it reports (and the schema it
    failed), preferring the place whose dotted name matches exactly.
    """
    name = error.name or "data"
    target = error.value
    definition = error.definition if isinstance(error.definition, dict) else None
    first: list[str | int] | None = None
    same_schema: list[str | int] | None = None
    stack: list[tuple[list[str | int], Any]] = [([], document)]
    while stack:
        parts, node = stack.pop()
        if node is target:
            if _dotted(parts) == name:
                return parts
            if first is None:
                first = parts
            if same_schema is None and definition is not None and _schema_at(parts) == definition:
                same_schema = parts
        if isinstance(node, dict):
            stack.extend((parts + [k], v) for k, v in reversed(list(node.items())))
        elif isinstance(node, list):
            stack.extend((parts + [i], v) for i, v in reversed(list(enumerate(node))))
    found = same_schema or first
    if found is not None:
        return found
    return _data_path(error.path[1:], document)[0]


def _dotted(parts: Iterable[str | int]) -> str:
    return "data" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)


def _data_path(raw: Iterable[str], document: Any) -> tuple[list[str | int], Any]:
    """fastjsonschema reports list indexes as strings; turn them back into ints by walking the data."""
    parts: list[str | int] = []
    node = document
    for part in raw:
        if isinstance(node, list):
            try:
                index = int(part)
            except ValueError:
                break
            parts.append(index)
            node = node[index] if 0 <= index < len(node) else None
        else:
            parts.append(part)
            node = node.get(part) if isinstance(node, dict) else None
    return parts, node


def _schema_at(parts: Iterable[str | int]) -> dict[str, Any]:
    node: dict[str, Any] = SPEC_SCHEMA
    for part in parts:
        if isinstance(part, int):
            items = node.get("items")
            if not isinstance(items, dict):  # an array inside oneOf
                items = next((o["items"] for o in node.get("oneOf", []) if isinstance(o.get("items"), dict)), {})
            node = items
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


def _environment(name: str, raw: Mapping[str, Any], path: Path, key: str, roots: Sequence[Path]) -> Environment:
    pip = tuple(raw.get("pip", ()))
    for i, requirement in enumerate(pip):
        check_requirement(requirement, file=path, key=f"{key}.pip[{i}]")
    requirements = tuple(raw.get("requirements", ()))
    for i, rel in enumerate(requirements):
        ref_key = f"{key}.requirements[{i}]"
        target = confine(rel, base=path.parent, roots=roots, file=path, key=ref_key)
        if not target.is_file():
            raise SpecError(
                f"requirements file {show(rel)} does not exist (looked for {target}); "
                "paths are relative to the spec file",
                file=path,
                key=ref_key,
            )
    find_links = tuple(raw.get("find_links", ()))
    for i, rel in enumerate(find_links):
        find_links_wheels(rel, base=path.parent, roots=roots, file=path, key=f"{key}.find_links[{i}]")
    if raw.get("python") is not None:
        check_python_version(raw["python"], file=path, key=f"{key}.python")
    return Environment(
        name=name,
        base=raw.get("base"),
        python=raw.get("python"),
        pip=pip,
        apt=tuple(raw.get("apt", ())),
        requirements=requirements,
        find_links=find_links,
        post_build=tuple(raw.get("post_build", ())),
        post_build_root=tuple(raw.get("post_build_root", ())),
        env=dict(raw.get("env", {})),
        resources=parse_resources(raw.get("resources", {}), file=path, key=f"{key}.resources"),
        description=raw.get("description"),
        source=path,
        target=raw.get("target"),
    )


def check_python_version(version: str, *, file: object = None, key: str | None = None, what: str = "Python") -> str:
    """``version`` ("3.X" or "3.X.Y") when it is at least :data:`MIN_PYTHON`; a SpecError naming it otherwise."""
    numbers = tuple(int(part) for part in version.split(".")[:2] if part.isdigit())
    if len(numbers) < 2 or numbers < MIN_PYTHON:
        raise SpecError(
            f"{what} {show(version)} is not supported: environments need {MIN_PYTHON_TEXT} or newer (their kernel, "
            f'ipykernel, needs it; uv cannot create older virtualenvs); ask for a newer one, such as "3.11"',
            file=file,
            key=key,
        )
    return version


#: A bare PEP 508 name, optionally with one or more plain release specifiers (``six``, ``numpy<2.4.6``,
#: ``pandas>=2.1,!=2.2.0``): a subset of what ``packaging.requirements.Requirement`` accepts, checked without
#: importing it (its import compiles about a hundred regular expressions: a third of an unchanged ``build``
#: command's own time). Anything else (extras, markers, URLs, spaces, wildcards, ``~=``) goes to packaging.
_PLAIN_REQUIREMENT_RE = re.compile(
    r"(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)(?:(?:==|!=|<=|>=|<|>)[0-9]+(?:\.[0-9]+)*(?:,(?!$)|$))*"
)


def plain_requirement_name(text: str) -> str | None:
    """The canonical name (as ``packaging.utils.canonicalize_name`` gives it) of a requirement of the
    :data:`_PLAIN_REQUIREMENT_RE` kind, else None: the caller asks packaging."""
    plain = _PLAIN_REQUIREMENT_RE.fullmatch(text)
    return re.sub(r"[-_.]+", "-", plain.group("name")).lower() if plain else None


def check_requirement(requirement: str, *, file: object = None, key: str | None = None) -> str:
    """A PEP 508 requirement as pip/uv accept it; options, editables and local paths are refused."""
    text = requirement.strip()
    if _PLAIN_REQUIREMENT_RE.fullmatch(text):
        return text
    from packaging.requirements import InvalidRequirement, Requirement

    if len(text.splitlines()) > 1 or "\0" in text:
        raise SpecError(
            f"{show(requirement)} holds a line break or NUL byte; write one requirement per entry", file=file, key=key
        )
    if text.startswith("-"):
        raise SpecError(
            f"{show(requirement)} is a pip option, not a requirement; list package requirements only "
            "(index settings come from the host's pip configuration, see docs/spec.md)",
            file=file,
            key=key,
        )
    if text.startswith((".", "/", "~")) or text.startswith("file:"):
        raise SpecError(
            f"{show(requirement)} is a local path, which does not exist inside the image; "
            "publish the package, refer to it by URL (name @ https://...), or install it in post_build",
            file=file,
            key=key,
        )
    try:
        Requirement(text)
    except InvalidRequirement as exc:
        reason = (str(exc).splitlines() or [""])[0][:200]  # its later lines repeat the whole text
        raise SpecError(f"{show(requirement)} is not a valid requirement: {reason}", file=file, key=key) from None
    return text


def parse_resources(raw: Mapping[str, Any], *, file: object = None, key: str | None = None) -> Resources:
    """Resources from spec/CLI/REST values in human units; each bad value names its key."""

    def conv(name: str, fn: Any) -> Any:
        if raw.get(name) is None:
            return None
        try:
            return fn(raw[name])
        except (TypeError, ValueError, OverflowError) as exc:
            raise SpecError(str(exc), file=file, key=_join(key or "", name) or None) from None

    def swap(value: Any) -> int:
        return -1 if value in (-1, "-1") else parse_size(value)

    def gpu_count(value: int, shown: Any) -> int:
        if not 0 <= value <= MAX_GPUS:
            raise ValueError(f"{show(shown)} is not a GPU count; use 0 to {MAX_GPUS}")
        return value

    def gpu_ids(ids: tuple[str, ...], shown: Any) -> tuple[str, ...]:
        bad = next((i for i in ids if not _GPU_ID_RE.fullmatch(i)), None) if ids else ""
        if bad is not None:
            which = f": {show(bad)} is none of them" if bad and len(ids) > 1 else ""
            raise ValueError(
                f"{show(shown)} is not a list of GPU device ids{which}; use indexes such as ['0', '2'], GPU UUIDs "
                "(GPU-…) or MIG device ids (MIG-…, or GPU:instance such as 0:1), as 'nvidia-smi -L' lists them"
            )
        return tuple(dict.fromkeys(ids))  # "0,0" asks for GPU 0 once

    def gpus(value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is not a GPU request; use a count, 'all' or device ids such as ['0', '2']")
        if isinstance(value, int):
            return gpu_count(value, value)
        if isinstance(value, list | tuple):
            return gpu_ids(tuple(str(v).strip() for v in value), value)
        text = str(value).strip()
        if text == "all":
            return "all"
        if text.isascii() and text.isdigit():
            return gpu_count(int(text) if len(text) < 12 else MAX_GPUS + 1, value)
        text = text.removeprefix("device=")
        ids = tuple(part.strip() for part in text.split(",") if part.strip())
        if not ids:
            raise ValueError(f"{show(value)} is not a GPU request; use a count, 'all' or device ids such as '0,2'")
        return gpu_ids(ids, value)

    def pids(value: Any) -> int:
        message = f"{show(value)} is not a process limit; use a whole number from 1 to {MAX_PIDS}, such as 512"
        if isinstance(value, bool):
            raise ValueError(message)
        if isinstance(value, int):
            number = value
        else:
            try:
                number_f = float(str(value).strip()) if not isinstance(value, float) else value
            except ValueError:
                raise ValueError(message) from None
            if not math.isfinite(number_f) or number_f != int(number_f):
                raise ValueError(message)
            number = int(number_f)
        if not 1 <= number <= MAX_PIDS:
            raise ValueError(message)
        return number

    def network(value: Any) -> bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("bridge", "true", "on", "yes", "default"):
            return True
        if text in ("none", "false", "off", "no"):
            return False
        raise ValueError(f"{value!r} is not a network setting; use 'bridge' (or true) or 'none' (or false)")

    def constraints(value: Any) -> tuple[str, ...]:
        items = [value] if isinstance(value, str) else list(value)
        out = []
        for item in items:
            text = str(item).strip()
            if not _CONSTRAINT_RE.fullmatch(text):
                raise ValueError(
                    f"{show(item)} is not a placement constraint; use KEY==VALUE or KEY!=VALUE with a Swarm key, "
                    "such as node.labels.gpu==a100 or node.role==worker"
                )
            out.append(text)
        return tuple(dict.fromkeys(out))

    return Resources(
        cpus=conv("cpus", parse_cpus),
        memory=conv("memory", parse_size),
        memory_swap=conv("memory_swap", swap),
        gpus=conv("gpus", gpus),
        shm_size=conv("shm_size", parse_size),
        pids=conv("pids", pids),
        timeout=conv("timeout", parse_duration),
        network=conv("network", network),
        constraints=conv("constraints", constraints),
    )


#: A GPU as NVIDIA_VISIBLE_DEVICES names it: an index, a MIG instance by indexes (0:1), a GPU UUID
#: (GPU-8-4-4-4-12 hex digits, prefixes too), a MIG device UUID (MIG-…, or the older MIG-GPU-…/gi/ci).
_HEX_GROUPS = r"[0-9A-Fa-f]{1,32}(?:-[0-9A-Fa-f]{1,32}){0,7}"
_GPU_ID_RE = re.compile(
    rf"\d{{1,4}}(?::\d{{1,4}})?|GPU-{_HEX_GROUPS}|MIG-{_HEX_GROUPS}|MIG-GPU-{_HEX_GROUPS}/\d{{1,4}}/\d{{1,4}}"
)
#: A Swarm placement constraint (backends/swarm.py checks the key further).
_CONSTRAINT_RE = re.compile(r"(?:node|engine)\.[A-Za-z0-9_.-]+\s*(?:==|!=)\s*\S.*")
_BARE_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")


def _keypart(key: Any) -> str:
    """A key as TOML writes it in a dotted path: bare when it can be, else quoted (so "a.b" stays one key)."""
    text = str(key)
    if _BARE_KEY_RE.fullmatch(text):
        return text
    if len(text) > 60:
        text = text[:57] + "..."
    escaped = "".join(ch if ch.isprintable() and ch not in '"\\' else _escape_char(ch) for ch in text)
    return f'"{escaped}"'


def _escape_char(ch: str) -> str:
    if ch in '"\\':
        return "\\" + ch
    code = ord(ch)
    return f"\\u{code:04X}" if code <= 0xFFFF else f"\\U{code:08X}"


def keypath(parts: Iterable[Any]) -> str:
    """``environments."a.b".env`` from ``["environments", "a.b", "env"]``: how errors name a key."""
    return _keypath(parts)


def environment_key(env: Environment, field: str, index: int) -> str:
    """How errors name entry ``index`` of ``env``'s list ``field`` (under ``tool.jupyter-containers`` when the
    spec is a pyproject.toml), for the files a spec refers to, which are checked again long after parsing."""
    table = [PYPROJECT_TABLE] if env.source is not None and env.source.name == "pyproject.toml" else []
    return ".".join([*table, keypath(["environments", env.name, field])]) + f"[{index}]"


def _keypath(parts: Iterable[Any]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{_keypart(part)}" if out else _keypart(part))
    return out


def _check_strings(data: Any, path: Path, key_prefix: str) -> None:
    """No NUL byte or lone surrogate (JSON can send one; UTF-8 cannot hold it) in any key or value."""
    stack: list[tuple[list[Any], Any]] = [([], data)]
    while stack:
        parts, node = stack.pop()
        texts: list[tuple[list[Any], Any]] = []
        if isinstance(node, dict):
            for k, v in node.items():
                texts.append((parts + [k], k))
                stack.append((parts + [k], v))
        elif isinstance(node, list):
            stack.extend((parts + [i], v) for i, v in enumerate(node))
        else:
            texts.append((parts, node))
        for where, text in texts:
            if not isinstance(text, str):
                continue
            problem = "a NUL byte" if "\0" in text else None
            if problem is None:
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError:
                    problem = "a lone surrogate (not a character)"
            if problem:
                raise SpecError(
                    f"{show(text)} contains {problem}; remove it",
                    file=path,
                    key=_join(key_prefix, _keypath(where)) or None,
                )


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix and key else (prefix or key)


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    import difflib  # here: only a misspelt name needs it

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
