"""Importers from formats people already have (requirements.txt, environment.yml, pyproject.toml, binder/).

An import must never silently lose part of the source: whatever has no equivalent in a spec is either an
error (when the result would not work without it) or a note shown to the user and written as a comment
above the imported table.
"""

from __future__ import annotations

import copy
import os
import re
import stat
import sys
import tempfile
from collections.abc import Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SpecError
from .model import Environment
from .parse import ENV_NAME_HELP, check_requirement, load_spec, read_toml, spec_from_dict
from .requirements import RequirementsFile, parse_requirement_lines, read_requirements, split_hashes
from .schema import ENV_NAME_PATTERN, ENVIRONMENT_SCHEMA

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

APT_PATTERN: str = ENVIRONMENT_SCHEMA["properties"]["apt"]["items"]["pattern"]
_ENV_VAR_PATTERN: str = next(iter(ENVIRONMENT_SCHEMA["properties"]["env"]["propertyNames"].values()))
_PYTHON_PATTERN: str = ENVIRONMENT_SCHEMA["properties"]["python"]["pattern"]

BINDER_FILES = ("environment.yml", "requirements.txt", "apt.txt", "runtime.txt", "postBuild")
_UNSUPPORTED_BINDER_FILES = {
    "install.R": "R packages are not supported; install them in post_build",
    "DESCRIPTION": "R packages are not supported; install them in post_build",
    "Project.toml": "Julia environments are not supported; install Julia and its packages in post_build",
    "REQUIRE": "Julia environments are not supported; install Julia and its packages in post_build",
    "start": "start scripts are not supported; run its commands in post_build or at the start of the notebook",
    "setup.py": "the repository itself is not installed; publish it, use a URL (name @ https://...), "
    "or install it in post_build",
    "Pipfile": "Pipenv files are not supported; run 'pipenv requirements > requirements.txt' and import that",
    "Pipfile.lock": "Pipenv files are not supported; run 'pipenv requirements > requirements.txt' and import that",
    "default.nix": "Nix environments are not supported",
    "Dockerfile": "Dockerfiles are not supported; express its steps as base, apt, pip and post_build",
}
ACCEPTED_HELP = (
    "a requirements file (requirements*.txt), a conda environment file (environment.yml), a pyproject.toml, "
    "or a directory with a binder/ (or .binder/) folder or repo2docker files "
    "(requirements.txt, apt.txt, runtime.txt, postBuild, environment.yml)"
)
_OPTION_ADVICE = {
    "--index-url": "configure the index in the host's pip configuration; builds mirror it",
    "--extra-index-url": "configure the index in the host's pip configuration; builds mirror it",
    "--find-links": "configure find-links in the host's pip configuration",
    "--pre": "pin the pre-release versions you need explicitly, such as name==2.0rc1",
    "--prefer-binary": "there is no equivalent setting; pip's defaults apply in the build",
    "--only-binary": "there is no equivalent setting; pip's defaults apply in the build",
    "--no-binary": "there is no equivalent setting; pip's defaults apply in the build",
}


@dataclass(frozen=True)
class ImportResult:
    """An imported environment plus a human note for everything that could not be carried over."""

    environment: Environment
    notes: tuple[str, ...] = ()


@dataclass
class _Parts:
    name: str | None = None
    python: str | None = None
    python_from: str | None = None
    pip: list[str] = field(default_factory=list)
    apt: list[str] = field(default_factory=list)
    post_build: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def merge(self, other: _Parts, *, file: Path) -> None:
        if other.python:
            if self.python and self.python != other.python:
                raise SpecError(
                    f"{self.python_from} asks for Python {self.python} but {other.python_from} for {other.python}; "
                    "make them agree",
                    file=file,
                )
            self.python, self.python_from = other.python, other.python_from
        self.pip.extend(p for p in other.pip if p not in self.pip)
        self.apt.extend(p for p in other.apt if p not in self.apt)
        self.post_build.extend(other.post_build)
        self.env.update(other.env)
        self.notes.extend(other.notes)


# --------------------------------------------------------------------------------------------- dispatch


def import_source(path: Path | str, *, name: str | None = None) -> ImportResult:
    """Turn an existing environment description into an :class:`Environment` (see :data:`ACCEPTED_HELP`)."""
    path = Path(path)
    explicit = _explicit_name(name) if name is not None else None
    if not path.exists():
        raise SpecError(f"nothing to import: {path} does not exist; pass {ACCEPTED_HELP}", file=path)
    if path.is_dir():
        folder, notes = _binder_folder(path)
        parts = _binder(folder)
        parts.notes[:0] = notes
        default = (path.resolve().parent if path.name in ("binder", ".binder") else path.resolve()).name
    else:
        lower = path.name.lower()
        if lower == "pyproject.toml":
            parts = _pyproject(path)
        elif lower.endswith((".yml", ".yaml")):
            parts = _environment_yml(path)
        elif lower.endswith(".txt") and "requirements" in lower:
            parts = _requirements_txt(path)
        else:
            raise SpecError(f"cannot import this file; pass {ACCEPTED_HELP}", file=path)
        default = parts.name or path.resolve().parent.name
    env_name = explicit or normalize_environment_name(parts.name or default)
    environment = Environment(
        name=env_name,
        python=parts.python,
        pip=tuple(parts.pip),
        apt=tuple(parts.apt),
        post_build=tuple(parts.post_build),
        env=parts.env,
    )
    notes = tuple(n.replace("[environments.NAME]", f"[environments.{env_name}]") for n in parts.notes)
    return ImportResult(environment=environment, notes=notes)


def normalize_environment_name(text: str) -> str:
    """A valid environment name derived from a project or directory name (``"default"`` if none is left)."""
    candidate = re.sub(r"[^a-z0-9._-]+", "-", text.strip().lower())
    candidate = re.sub(r"-{2,}", "-", candidate).strip("._-")[:64].strip("._-")
    return candidate if re.fullmatch(ENV_NAME_PATTERN, candidate) else "default"


def _explicit_name(name: str) -> str:
    if not re.fullmatch(ENV_NAME_PATTERN, name):
        suggestion = normalize_environment_name(name)
        raise SpecError(f"environment name {name!r} is not allowed; use {ENV_NAME_HELP}, such as {suggestion!r}")
    return name


# --------------------------------------------------------------------------------------- requirements.txt


def _requirements_txt(path: Path) -> _Parts:
    return _from_requirements(read_requirements(path), label=path.name)


def _from_requirements(parsed: RequirementsFile, *, label: str) -> _Parts:
    parts = _Parts()
    hashed = 0
    for requirement in parsed.requirements:
        plain, hashes = split_hashes(requirement)
        hashed += bool(hashes)
        if plain not in parts.pip:
            parts.pip.append(plain)
    if hashed:
        parts.notes.append(
            f"the --hash values of {hashed} requirement(s) in {label} were not imported: "
            "pip entries are plain requirements"
        )
    for constraint in parsed.constraints:
        parts.notes.append(
            f"constraint {split_hashes(constraint)[0]!r} in {label} was not imported: there is no constraints "
            "setting; add the pin to [environments.NAME].pip if the package must stay at that version"
        )
    for option in parsed.options:
        advice = _OPTION_ADVICE.get(option.split(" ", 1)[0], "there is no equivalent setting")
        parts.notes.append(f"{option} in {label} was not imported: {advice}")
    return parts


# ---------------------------------------------------------------------------------------- environment.yml


def _environment_yml(path: Path) -> _Parts:
    import yaml

    try:
        data = yaml.safe_load(path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise SpecError(f"the file is not UTF-8 text ({exc.reason} at byte {exc.start})", file=path) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        key = f"line {mark.line + 1}" if mark is not None else None
        raise SpecError(f"invalid YAML: {problem}", file=path, key=key) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpecError(
            "expected a mapping with name/channels/dependencies, as written by 'conda env export'", file=path
        )
    parts = _Parts(name=str(data["name"]) if data.get("name") else None)
    for key in data:
        if key not in ("name", "channels", "dependencies", "variables"):
            parts.notes.append(f"{key!r} in {path.name} was not imported: it has no equivalent in a spec")
    variables = data.get("variables") or {}
    if not isinstance(variables, dict):
        raise SpecError("expected a mapping of variable names to values", file=path, key="variables")
    for var, value in variables.items():
        if not re.fullmatch(_ENV_VAR_PATTERN, str(var)):
            raise SpecError(
                f"environment variable name {var!r} is not allowed; use letters, digits and '_'",
                file=path,
                key=f"variables.{var}",
            )
        parts.env[str(var)] = "" if value is None else str(value)
    dependencies = data.get("dependencies") or []
    if not isinstance(dependencies, list):
        raise SpecError("expected a list of packages", file=path, key="dependencies")
    conda: list[str] = []
    for index, dep in enumerate(dependencies):
        if isinstance(dep, dict):
            _yml_pip(dep, path=path, index=index, parts=parts)
            continue
        if not isinstance(dep, str) or not dep.strip():
            raise SpecError(
                f"{dep!r} is not a package; use 'name' or 'name=version'", file=path, key=f"dependencies[{index}]"
            )
        package, version = _conda_spec(dep)
        if package == "pip":
            continue
        if package == "python":
            _yml_python(dep, version, path=path, parts=parts)
            continue
        if package not in conda:
            conda.append(package)
    if conda:
        raise SpecError(
            f"conda packages are not supported yet: {', '.join(conda)}; "
            "list them under '- pip:' or in [environments.NAME].pip",
            file=path,
            key="dependencies",
        )
    return parts


def _conda_spec(dep: str) -> tuple[str, str]:
    text = dep.strip()
    if "::" in text:
        text = text.split("::", 1)[1]
    match = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", text)
    if not match:
        return text.lower(), ""
    return match.group(1).lower(), match.group(2).strip()


def _yml_python(dep: str, version: str, *, path: Path, parts: _Parts) -> None:
    # "=3.11", "==3.11.*", "3.11", "=3.11.4=h1234_0" (conda build string), "3.11*"
    match = re.fullmatch(r"(?:==?)?\s*(3\.\d+(?:\.\d+)?)(?:\.?\*)?(?:(?:=|\s+)\S+)?", version)
    if match and re.fullmatch(_PYTHON_PATTERN, match.group(1)):
        parts.python, parts.python_from = match.group(1), path.name
    else:
        parts.notes.append(
            f"{dep.strip()!r} in {path.name} was not mapped to python: it does not pin a major.minor version; "
            'set python = "3.X" in [environments.NAME] to choose one'
        )


def _yml_pip(dep: dict[Any, Any], *, path: Path, index: int, parts: _Parts) -> None:
    if set(dep) != {"pip"} or not isinstance(dep["pip"], list | type(None)):
        raise SpecError(
            f"{dep!r} is not a package; only a '- pip:' list may appear as a mapping",
            file=path,
            key=f"dependencies[{index}]",
        )
    items = dep["pip"] or []
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise SpecError(f"{item!r} is not a requirement string", file=path, key=f"dependencies[{index}].pip[{i}]")
    keys = [f"dependencies[{index}].pip[{i}]" for i in range(len(items))]
    parsed = parse_requirement_lines(items, file=path, keys=keys)
    sub = _from_requirements(parsed, label=path.name)
    parts.pip.extend(p for p in sub.pip if p not in parts.pip)
    parts.notes.extend(sub.notes)


# ----------------------------------------------------------------------------------------- pyproject.toml


def _pyproject(path: Path) -> _Parts:
    data = read_toml(path)
    project = data.get("project")
    if project is not None and not isinstance(project, dict):
        raise SpecError("[project] must be a table", file=path, key="project")
    project = project or {}
    parts = _Parts(name=str(project["name"]) if project.get("name") else None)
    dependencies = project.get("dependencies")
    if dependencies is None:
        reason = (
            "they are dynamic (computed by the build backend)"
            if "dependencies" in project.get("dynamic", ())
            else "there is no [project].dependencies"
        )
        parts.notes.append(f"{path.name}: no dependencies were imported ({reason}); the pip list is empty")
        poetry = data.get("tool", {}).get("poetry", {}) if isinstance(data.get("tool"), dict) else {}
        if isinstance(poetry, dict) and poetry.get("dependencies"):
            parts.notes.append(
                f"[tool.poetry.dependencies] in {path.name} was not imported: Poetry tables are not supported; "
                "run 'poetry export -f requirements.txt' and import that"
            )
    elif not isinstance(dependencies, list):
        raise SpecError("expected a list of requirement strings", file=path, key="project.dependencies")
    else:
        for i, requirement in enumerate(dependencies):
            key = f"project.dependencies[{i}]"
            if not isinstance(requirement, str):
                raise SpecError(f"{requirement!r} is not a requirement string", file=path, key=key)
            text = check_requirement(requirement, file=path, key=key)
            if text not in parts.pip:
                parts.pip.append(text)
    extras = project.get("optional-dependencies") or {}
    if isinstance(extras, dict):
        for extra, reqs in extras.items():
            count = len(reqs) if isinstance(reqs, list) else 0
            parts.notes.append(
                f"optional dependencies [{extra}] ({count} requirement(s)) in {path.name} were not imported; "
                "add the ones you need to [environments.NAME].pip"
            )
    if parts.name:
        parts.notes.append(
            f"the project {parts.name!r} itself was not added, only its dependencies; publish it, use a URL "
            "(name @ https://...), or install it in post_build"
        )
    requires_python = project.get("requires-python")
    if requires_python is not None:
        version = _python_from_specifier(str(requires_python))
        if version:
            parts.python, parts.python_from = version, path.name
        else:
            parts.notes.append(
                f"requires-python {str(requires_python)!r} in {path.name} was not mapped to python: it does not pin "
                'one major.minor version; set python = "3.X" in [environments.NAME] to choose one'
            )
    return parts


def _python_from_specifier(text: str) -> str | None:
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    try:
        specifiers = SpecifierSet(text)
    except InvalidSpecifier:
        return None
    exact = [s.version for s in specifiers if s.operator in ("==", "===") and "*" not in s.version]
    if len(specifiers) == 1 and exact and re.fullmatch(_PYTHON_PATTERN, exact[0]):
        return exact[0]
    # Otherwise: does the specifier admit exactly one 3.X series?
    minors = {minor for minor in range(0, 100) for patch in range(0, 60) if f"3.{minor}.{patch}" in specifiers}
    return f"3.{minors.pop()}" if len(minors) == 1 else None


# ------------------------------------------------------------------------------------------ binder folder


def _binder_folder(path: Path) -> tuple[Path, list[str]]:
    notes: list[str] = []
    for candidate in ("binder", ".binder"):
        folder = path / candidate
        if folder.is_dir():
            if candidate == "binder" and (path / ".binder").is_dir():
                notes.append(".binder/ was not imported: binder/ takes precedence (as in repo2docker)")
            for name in (*BINDER_FILES, *_UNSUPPORTED_BINDER_FILES):
                if (path / name).is_file():
                    notes.append(f"{name} in the repository root was not imported: {candidate}/ takes precedence")
            return folder, notes
    if any((path / name).is_file() for name in BINDER_FILES):
        return path, notes
    raise SpecError(f"this directory holds nothing to import; pass {ACCEPTED_HELP}", file=path)


def _binder(folder: Path) -> _Parts:
    parts = _Parts()
    found = [name for name in BINDER_FILES if (folder / name).is_file()]
    if not found and not any((folder / n).is_file() for n in _UNSUPPORTED_BINDER_FILES):
        raise SpecError(f"this folder holds none of {', '.join(BINDER_FILES)}; nothing to import", file=folder)
    if "environment.yml" in found:
        yml = _environment_yml(folder / "environment.yml")
        yml.name = None  # the directory names a binder environment
        parts.merge(yml, file=folder)
    if "requirements.txt" in found:
        parts.merge(_requirements_txt(folder / "requirements.txt"), file=folder)
    if "runtime.txt" in found:
        parts.merge(_runtime_txt(folder / "runtime.txt"), file=folder)
    if "apt.txt" in found:
        parts.apt.extend(p for p in _apt_txt(folder / "apt.txt") if p not in parts.apt)
    if "postBuild" in found:
        script = _read_text(folder / "postBuild")
        if script.strip():
            parts.post_build.append(script)
        else:
            parts.notes.append("postBuild is empty and was skipped")
    for name, reason in _UNSUPPORTED_BINDER_FILES.items():
        if (folder / name).is_file():
            parts.notes.append(f"{name} was not imported: {reason}")
    return parts


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"the file is not UTF-8 text ({exc.reason} at byte {exc.start})", file=path) from None


def _meaningful_lines(path: Path) -> Iterable[tuple[int, str]]:
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        text = line.partition("#")[0].strip()
        if text:
            yield number, text


def _apt_txt(path: Path) -> list[str]:
    packages: list[str] = []
    for number, line in _meaningful_lines(path):
        for package in line.split():
            if not re.fullmatch(APT_PATTERN, package):
                raise SpecError(
                    f"{package!r} is not a Debian package name; use names such as libgl1 (optionally name=version)",
                    file=path,
                    key=f"line {number}",
                )
            if package not in packages:
                packages.append(package)
    return packages


def _runtime_txt(path: Path) -> _Parts:
    lines = list(_meaningful_lines(path))
    if not lines:
        raise SpecError("runtime.txt is empty; write python-3.X (such as python-3.11) or delete the file", file=path)
    number, value = lines[0]
    if len(lines) > 1:
        raise SpecError(
            f"runtime.txt holds more than one line ({lines[1][1]!r}); write only python-3.X",
            file=path,
            key=f"line {lines[1][0]}",
        )
    match = re.fullmatch(r"python-(3\.\d+(?:\.\d+)?)", value)
    if match:
        return _Parts(python=match.group(1), python_from=path.name)
    if value.lower().startswith("r-") or value.lower() == "r":
        raise SpecError(
            f"runtime {value!r} is an R runtime, which is not supported; install R in post_build "
            "and write python-3.X here (or delete runtime.txt)",
            file=path,
            key=f"line {number}",
        )
    raise SpecError(
        f"runtime {value!r} is not supported; write python-3.X or python-3.X.Y, such as python-3.11",
        file=path,
        key=f"line {number}",
    )


# ------------------------------------------------------------------------------------------------ writing


def render_environment_toml(env: Environment, notes: Iterable[str] = ()) -> str:
    """The ``[environments.NAME]`` table for ``containers.toml``, with the import notes as comments above it,
    so that what was not carried over stays visible next to what was."""
    return _render(env, notes, ("environments",))


def _render(env: Environment, notes: Iterable[str], prefix: tuple[str, ...]) -> str:
    doc: dict[str, Any] = {}
    cursor = doc
    for part in prefix:
        cursor = cursor.setdefault(part, {})
    cursor[env.name] = env.to_dict()
    return _comments(notes) + _dumps(doc)


def _comments(notes: Iterable[str]) -> str:
    out = []
    for note in notes:
        for line in str(note).splitlines() or [""]:
            out.append(f"# {line}".rstrip() + "\n")
    return "".join(out)


def _dumps(doc: Mapping[str, Any]) -> str:
    import tomli_w

    text = tomli_w.dumps(doc, multiline_strings=True)
    if tomllib.loads(text) != doc:
        # Multi-line strings normalize "\r\n" to "\n"; escaped strings keep every character.
        text = tomli_w.dumps(doc)
    return text


def add_environment_to_file(path: Path, env: Environment, notes: Iterable[str] = (), *, force: bool = False) -> None:
    """Add ``env`` to a spec file, creating it if needed, and prove the result loads before keeping it.

    An existing file keeps its text and comments: the table is appended (or, with ``force``, the old table
    is cut out and the new one put in its place). When the old table cannot be cut out textually (for
    example it is written with dotted keys or inline tables), the whole file is re-rendered, which loses
    its comments; a comment at the top of the file then says so.
    """
    path = Path(path)
    if path.is_symlink():
        path = path.resolve()
    prefix = ("tool", "jupyter-containers", "environments") if path.name == "pyproject.toml" else ("environments",)
    notes = tuple(notes)
    rendered = _render(env, notes, prefix)
    if not path.exists():
        old_text = None
        new_text = rendered
        expected = tomllib.loads(rendered)
    else:
        old_text = _read_text(path)
        old = read_toml(path)
        expected = copy.deepcopy(old)
        cursor: Any = expected
        for depth, part in enumerate(prefix):
            if not isinstance(cursor, dict):
                raise SpecError("is not a table", file=path, key=".".join(prefix[:depth]))
            cursor = cursor.setdefault(part, {})
        if not isinstance(cursor, dict):
            raise SpecError(
                "is not a table; environments are tables such as [environments.default]",
                file=path,
                key=".".join(prefix),
            )
        exists = env.name in cursor
        if exists and not force:
            raise SpecError(
                f"environment {env.name!r} already exists; pass --name NAME to import under another name, "
                "or --force to replace it",
                file=path,
                key=".".join((*prefix, env.name)),
            )
        cursor[env.name] = env.to_dict()
        new_text = _replace_table(old_text, (*prefix, env.name), rendered) if exists else _append(old_text, rendered)
        if new_text is None or _loads_or_none(new_text) != expected:
            new_text = (
                "# re-written by jupyter-containers to replace an environment; earlier comments were not kept\n"
                + _comments(notes)
                + _dumps(expected)
            )
    _validate(expected, path, prefix)
    _atomic_write(path, new_text)
    try:
        load_spec(path)
    except Exception:
        if old_text is None:
            with suppress(FileNotFoundError):
                path.unlink()
        else:
            _atomic_write(path, old_text)
        raise


def _validate(document: Mapping[str, Any], path: Path, prefix: tuple[str, ...]) -> None:
    table: Any = document
    for part in prefix[:-1]:
        table = table[part]
    spec_from_dict(table, path.resolve(), key_prefix=".".join(prefix[:-1]))


def _loads_or_none(text: str) -> dict[str, Any] | None:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return None


def _append(old_text: str, rendered: str) -> str:
    if not old_text.strip():
        return rendered
    return old_text.rstrip("\n") + "\n\n" + rendered


def _header_key(line: str) -> tuple[str, ...] | None:
    if not line.lstrip().startswith("["):
        return None
    try:
        node: Any = tomllib.loads(line)
    except tomllib.TOMLDecodeError:
        return None
    key: list[str] = []
    while isinstance(node, dict) and len(node) == 1:
        name, node = next(iter(node.items()))
        key.append(name)
        if isinstance(node, list):
            break
    return tuple(key)


def _replace_table(text: str, key: tuple[str, ...], rendered: str) -> str | None:
    # Comment lines directly above the old table (earlier import notes) go with it. A line is a header only
    # if the text before it is complete TOML, which rules out header-like lines inside multi-line strings.
    # None when there was no such table.
    out: list[str] = []
    inserted = False
    skipping = False
    trailing: list[str] = []  # comment lines at the end of a skipped table belong to the next table
    lines = text.splitlines(keepends=True)
    for index, line in enumerate(lines):
        header = _header_key(line)
        if header is not None and _loads_or_none("".join(lines[:index])) is None:
            header = None  # a header-like line inside a multi-line string or array
        if header is not None:
            was_skipping, skipping = skipping, header[: len(key)] == key
            if skipping:
                while out and out[-1].lstrip().startswith("#"):
                    out.pop()
                if not inserted:
                    if out and out[-1].strip():
                        out.append("\n")
                    out.append(rendered if rendered.endswith("\n") else rendered + "\n")
                    out.append("\n")
                    inserted = True
            elif was_skipping:
                out.extend(trailing)
            trailing = []
        elif skipping:
            stripped = line.strip()
            if stripped.startswith("#"):
                trailing.append(line)
            elif stripped:
                trailing = []
        if not skipping:
            out.append(line)
    if not inserted:
        return None
    return "".join(out).rstrip("\n") + "\n"


def _umask() -> int:
    # Read, not set-and-restore: os.umask() changes it for every thread of the server meanwhile.
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(text.encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
        if path.exists():
            os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))
        else:
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
