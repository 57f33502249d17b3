"""Importers from formats people already have (requirements.txt, environment.yml, pyproject.toml, binder/).

This module only reads: it turns a source into an :class:`ImportResult` and never touches a spec file, so
that ``capture`` and the front ends can reuse the result; writing it into ``containers.toml`` is
:mod:`jupyter_containers.spec.writer`'s job.

An import must never silently lose part of the source: whatever has no equivalent in a spec is either an
error (when the result would not work without it) or a note shown to the user and written as a comment
above the imported table.

Every file read lies inside the folder imported from (the file's own folder, or the directory given):
a binder file or a ``-r`` include that is a symlink out of it, or a path leading out of it, is refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SpecError
from ..redact import HOW_TO, has_credentials, redact, strip_credentials
from .files import IMPORT_HINT, check_nesting, check_path_text, confine, nesting_error, read_text
from .model import Environment
from .parse import ENV_NAME_HELP, check_python_version, check_requirement, read_toml, show
from .requirements import RequirementsFile, parse_requirement_lines, read_requirements, split_hashes
from .schema import ENV_NAME_PATTERN, ENVIRONMENT_SCHEMA

APT_PATTERN: str = ENVIRONMENT_SCHEMA["properties"]["apt"]["items"]["pattern"]
_ENV_VAR_PATTERN: str = next(iter(ENVIRONMENT_SCHEMA["properties"]["env"]["propertyNames"].values()))
_PYTHON_PATTERN: str = ENVIRONMENT_SCHEMA["properties"]["python"]["pattern"]

#: Files of a repository (or its binder/ folder) that import, in repo2docker's order of precedence: a conda
#: environment file wins over Pipenv files, which win over requirements.txt/setup.py/pyproject.toml.
BINDER_FILES = (
    "environment.yml",
    "environment.yaml",
    "Pipfile.lock",
    "Pipfile",
    "requirements.txt",
    "pyproject.toml",
    "setup.py",
    "apt.txt",
    "runtime.txt",
    "postBuild",
)
_PYTHON_SOURCES = ("Pipfile.lock", "Pipfile", "requirements.txt", "pyproject.toml", "setup.py")
_R_ADVICE = (
    "environments are Python virtualenvs and container kernels are Python kernels; if a build step needs R, "
    'install it from Debian (apt = ["r-base"], R packages as r-cran-NAME) and run R code in post_build'
)
_UNSUPPORTED_BINDER_FILES = {
    "install.R": f"R packages are not supported: {_R_ADVICE}",
    "DESCRIPTION": f"R packages are not supported: {_R_ADVICE}",
    "Project.toml": "Julia environments are not supported; install Julia and its packages in post_build_root",
    "REQUIRE": "Julia environments are not supported; install Julia and its packages in post_build_root",
    "start": "start scripts (run by repo2docker before every command) are not supported; put what it prepares "
    "in post_build (build time), or run its commands at the start of the notebook",
    "default.nix": "Nix environments are not supported",
    "Dockerfile": "Dockerfiles are not supported (repo2docker would build only the Dockerfile and ignore the "
    "other files); express its steps as base, apt, pip, post_build_root and post_build",
}
ACCEPTED_HELP = (
    "a requirements file (requirements*.txt), a conda environment file (environment.yml/.yaml), a pyproject.toml, "
    "a Pipfile or Pipfile.lock, a setup.py, or a directory with a binder/ (or .binder/) folder or repo2docker "
    "files (environment.yml, Pipfile(.lock), requirements.txt, pyproject.toml, setup.py, apt.txt, runtime.txt, "
    "postBuild)"
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
    check_path_text(str(path), what="import source")
    path = Path(path)
    explicit = _explicit_name(name) if name is not None else None
    if not path.exists():
        raise SpecError(f"nothing to import: {path} does not exist; pass {ACCEPTED_HELP}", file=path)
    if path.is_dir():
        root = (path.resolve(),)
        folder, notes, binder_dir = _binder_folder(path)
        parts = _binder(folder, root, binder_dir=binder_dir)
        parts.notes[:0] = notes
        default = (path.resolve().parent if path.name in ("binder", ".binder") else path.resolve()).name
    else:
        lower = path.name.lower()
        root = (path.resolve().parent,)
        if lower == "pyproject.toml":
            parts = _pyproject(path)
        elif path.name == "Pipfile":
            parts = _pipfile(path)
        elif path.name == "Pipfile.lock":
            parts = _pipfile_lock(path)
        elif lower == "setup.py":
            parts = _setup_py(path)
        elif lower.endswith((".yml", ".yaml")):
            parts = _environment_yml(path, root)
        elif lower.endswith(".txt") and "requirements" in lower:
            parts = _requirements_txt(path, root)
        else:
            raise SpecError(f"cannot import this file; pass {ACCEPTED_HELP}", file=path)
        default = parts.name or path.resolve().parent.name
    env_name = explicit or normalize_environment_name(parts.name or default)
    pip = []
    for requirement in parts.pip:
        if has_credentials(requirement):
            # A spec is shared (git, notebooks, bundles): a token must not be copied into it.
            pip.append(strip_credentials(requirement))
            parts.notes.append(f"the credentials in {redact(requirement)!r} were not imported; {HOW_TO}")
        else:
            pip.append(requirement)
    environment = Environment(
        name=env_name,
        python=parts.python,
        pip=tuple(pip),
        apt=tuple(parts.apt),
        post_build=tuple(parts.post_build),
        env=parts.env,
    )
    renamed = tuple(redact(n.replace("[environments.NAME]", f"[environments.{env_name}]")) for n in parts.notes)
    return ImportResult(environment=environment, notes=renamed)


def normalize_environment_name(text: str) -> str:
    """A valid environment name derived from a project or directory name (``"default"`` if none is left)."""
    candidate = re.sub(r"[^a-z0-9._-]+", "-", text.strip().lower())
    candidate = re.sub(r"-{2,}", "-", candidate).strip("._-")[:64].strip("._-")
    return candidate if re.fullmatch(ENV_NAME_PATTERN, candidate) else "default"


def _explicit_name(name: str) -> str:
    if not re.fullmatch(ENV_NAME_PATTERN, name):
        suggestion = normalize_environment_name(name[:200])
        raise SpecError(f"environment name {show(name)} is not allowed; use {ENV_NAME_HELP}, such as {suggestion!r}")
    return name


# --------------------------------------------------------------------------------------- requirements.txt


def _requirements_txt(path: Path, roots: tuple[Path, ...]) -> _Parts:
    return _from_requirements(read_requirements(path, roots=roots, hint=IMPORT_HINT), label=path.name)


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


_YAML_LOADER: Any = None


def _yaml_loader() -> Any:
    """A SafeLoader that refuses aliases: ``*name`` lets a few hundred bytes expand into gigabytes
    ("billion laughs"), and no environment file needs one."""
    global _YAML_LOADER
    if _YAML_LOADER is None:
        import yaml

        class NoAliasLoader(yaml.SafeLoader):
            def compose_node(self, parent: Any, index: Any) -> Any:
                if self.check_event(yaml.AliasEvent):
                    event = self.peek_event()
                    raise yaml.composer.ComposerError(
                        None,
                        None,
                        f"found the alias *{str(event.anchor)[:40]}: YAML aliases (&anchor / *alias) are not "
                        "supported in environment files; write the values out",
                        event.start_mark,
                    )
                return super().compose_node(parent, index)

        _YAML_LOADER = NoAliasLoader
    return _YAML_LOADER


def load_yaml(path: Path) -> Any:
    """A YAML file (at most 1 MiB, no aliases, nested at most 64 levels) as Python data, or a SpecError."""
    import yaml

    try:
        text = read_text(path)
    except FileNotFoundError:
        raise SpecError("the file does not exist", file=path) from None
    try:
        loader = _yaml_loader()(text)
        try:
            data = loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        key = f"line {mark.line + 1}" if mark is not None else None
        raise SpecError(f"invalid YAML: {problem}", file=path, key=key) from None
    except RecursionError:
        raise nesting_error(path) from None
    check_nesting(data, file=path)
    return data


def _environment_yml(path: Path, roots: tuple[Path, ...]) -> _Parts:
    data = load_yaml(path)
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
                f"environment variable name {show(var)} is not allowed; use letters, digits and '_'",
                file=path,
                key=f"variables.{str(var)[:60]}",
            )
        if isinstance(value, dict | list):
            raise SpecError(
                f"{show(value)} is not a value; environment variables hold text", file=path, key=f"variables.{var}"
            )
        text = "" if value is None else str(value)
        if "\0" in text:
            raise SpecError("the value contains a NUL byte; remove it", file=path, key=f"variables.{var}")
        parts.env[str(var)] = text
    dependencies = data.get("dependencies") or []
    if not isinstance(dependencies, list):
        raise SpecError("expected a list of packages", file=path, key="dependencies")
    conda: list[str] = []
    for index, dep in enumerate(dependencies):
        if isinstance(dep, dict):
            _yml_pip(dep, path=path, index=index, parts=parts, roots=roots)
            continue
        if not isinstance(dep, str) or not dep.strip():
            raise SpecError(
                f"{show(dep)} is not a package; use 'name' or 'name=version'", file=path, key=f"dependencies[{index}]"
            )
        package, version = _conda_spec(dep)
        if package == "pip":
            parts.notes.append(
                f"the 'pip' entry in {path.name}'s dependencies was not imported: every environment has pip"
            )
            continue
        if package == "python":
            _yml_python(dep, version, path=path, parts=parts)
            continue
        if package not in conda:
            conda.append(package)
    r_packages = [p for p in conda if p == "r" or p.startswith("r-")]
    if r_packages:
        # Not "list them under - pip:": R packages are not on PyPI.
        parts.notes.append(f"the R packages {', '.join(r_packages)} in {path.name} were not imported: {_R_ADVICE}")
    conda = [p for p in conda if p not in r_packages]
    if conda:
        raise SpecError(
            f"conda packages are not supported yet: {', '.join(conda)}; "
            "list them under '- pip:' or in [environments.NAME].pip (the PyPI names, where they differ)",
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
    match = re.fullmatch(r"(?:==?)?\s*(\d+\.\d+(?:\.\d+)?)(?:\.?\*)?(?:(?:=|\s+)\S+)?", version)
    if match:
        check_python_version(match.group(1), file=path, key="dependencies", what=f"{dep.strip()!r}: Python")
    if match and re.fullmatch(_PYTHON_PATTERN, match.group(1)):
        parts.python, parts.python_from = match.group(1), path.name
    else:
        parts.notes.append(
            f"{dep.strip()!r} in {path.name} was not mapped to python: it does not pin a major.minor version; "
            'set python = "3.X" in [environments.NAME] to choose one'
        )


def _yml_pip(dep: dict[Any, Any], *, path: Path, index: int, parts: _Parts, roots: tuple[Path, ...]) -> None:
    if set(dep) != {"pip"} or not isinstance(dep["pip"], list | type(None)):
        raise SpecError(
            f"{show(dep)} is not a package; only a '- pip:' list may appear as a mapping",
            file=path,
            key=f"dependencies[{index}]",
        )
    items = dep["pip"] or []
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise SpecError(
                f"{show(item)} is not a requirement string", file=path, key=f"dependencies[{index}].pip[{i}]"
            )
    keys = [f"dependencies[{index}].pip[{i}]" for i in range(len(items))]
    parsed = parse_requirement_lines(items, file=path, keys=keys, roots=roots, hint=IMPORT_HINT)
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
    dynamic = project.get("dynamic", [])
    if not isinstance(dynamic, list):
        raise SpecError(
            f'{show(dynamic)} is not a list of field names, such as ["version"]', file=path, key="project.dynamic"
        )
    dependencies = project.get("dependencies")
    if dependencies is None:
        reason = (
            "they are dynamic (computed by the build backend)"
            if "dependencies" in dynamic
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
                raise SpecError(f"{show(requirement)} is not a requirement string", file=path, key=key)
            text = check_requirement(requirement, file=path, key=key)
            if text not in parts.pip:
                parts.pip.append(text)
    extras = project.get("optional-dependencies") or {}
    if not isinstance(extras, dict):
        raise SpecError(
            "expected a table of extra names to requirement lists", file=path, key="project.optional-dependencies"
        )
    if extras:
        for extra, reqs in extras.items():
            count = len(reqs) if isinstance(reqs, list) else 0
            parts.notes.append(
                f"optional dependencies [{str(extra)[:60]}] ({count} requirement(s)) in {path.name} were not imported; "
                "add the ones you need to [environments.NAME].pip"
            )
    if parts.name:
        parts.notes.append(
            f"the project {show(parts.name)} itself was not added, only its dependencies; publish it, use a URL "
            "(name @ https://...), or install it in post_build"
        )
    requires_python = project.get("requires-python")
    if requires_python is not None:
        version = _python_from_specifier(str(requires_python))
        if version:
            parts.python, parts.python_from = version, path.name
        else:
            parts.notes.append(
                f"requires-python {show(str(requires_python))} in {path.name} was not mapped to python: it does not "
                'pin one major.minor version; set python = "3.X" in [environments.NAME] to choose one'
            )
    return parts


def _python_from_specifier(text: str) -> str | None:
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    if len(text) > 200:
        return None  # no real requires-python is this long; the search below is per clause
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


def _binder_folder(path: Path) -> tuple[Path, list[str], bool]:
    """The folder to import from, notes on what it shadows, and whether it is a binder/ folder."""
    notes: list[str] = []
    for candidate in ("binder", ".binder"):
        folder = path / candidate
        if folder.is_dir():
            if candidate == "binder" and (path / ".binder").is_dir():
                notes.append(".binder/ was not imported: binder/ takes precedence (as in repo2docker)")
            for name in (*BINDER_FILES, *_UNSUPPORTED_BINDER_FILES):
                if (path / name).is_file():
                    notes.append(f"{name} in the repository root was not imported: {candidate}/ takes precedence")
            return folder, notes, True
    if any((path / name).is_file() for name in BINDER_FILES):
        return path, notes, False
    unsupported = [name for name in _UNSUPPORTED_BINDER_FILES if (path / name).is_file()]
    if unsupported:
        reasons = "; ".join(f"{name}: {_UNSUPPORTED_BINDER_FILES[name]}" for name in unsupported)
        raise SpecError(
            f"this directory holds only files that cannot be imported ({reasons}); write the environment in "
            f"containers.toml (see docs/spec.md), or pass {ACCEPTED_HELP}",
            file=path,
        )
    raise SpecError(f"this directory holds nothing to import; pass {ACCEPTED_HELP}", file=path)


def _binder(folder: Path, roots: tuple[Path, ...], *, binder_dir: bool = True) -> _Parts:
    parts = _Parts()
    found = [name for name in BINDER_FILES if (folder / name).is_file()]
    if not found and not any((folder / n).is_file() for n in _UNSUPPORTED_BINDER_FILES):
        raise SpecError(f"this folder holds none of {', '.join(BINDER_FILES)}; nothing to import", file=folder)

    def inside(name: str) -> Path:
        # A binder file that is a symlink out of the folder imported from is refused, not followed.
        return confine(name, base=folder, roots=roots, file=folder / name, key=None, what="file", hint=IMPORT_HINT)

    def skipped(name: str, winner: str) -> None:
        parts.notes.append(
            f"{name} was not imported: {winner} takes precedence, as in repo2docker (which ignores {name} when "
            f"{winner} is present); move what it lists into {winner}, or into [environments.NAME].pip"
        )

    # Python packages: one source, chosen as repo2docker chooses its build pack.
    conda_file = next((n for n in ("environment.yml", "environment.yaml") if n in found), None)
    pipenv_file = next((n for n in ("Pipfile.lock", "Pipfile") if n in found), None)
    if conda_file:
        if conda_file == "environment.yaml":
            parts.notes.append(
                "environment.yaml was imported, but repo2docker (mybinder) reads only environment.yml: rename it "
                "if the repository should also launch there"
            )
        elif "environment.yaml" in found:
            parts.notes.append("environment.yaml was not imported: environment.yml takes precedence")
        yml = _environment_yml(inside(conda_file), roots)
        yml.name = None  # the directory names a binder environment
        parts.merge(yml, file=folder)
        for name in _PYTHON_SOURCES:
            if name in found and (name != "setup.py" or not binder_dir):
                skipped(name, conda_file)
    elif pipenv_file:
        if pipenv_file == "Pipfile.lock":
            parts.merge(_pipfile_lock(inside("Pipfile.lock")), file=folder)
            if "Pipfile" in found:
                parts.notes.append(
                    "Pipfile was not imported: Pipfile.lock takes precedence (repo2docker installs the lock)"
                )
        else:
            parts.merge(_pipfile(inside("Pipfile")), file=folder)
        for name in ("requirements.txt", "pyproject.toml", "setup.py"):
            if name in found and (name != "setup.py" or not binder_dir):
                skipped(name, pipenv_file)
    else:
        if "requirements.txt" in found:
            parts.merge(_requirements_txt(inside("requirements.txt"), roots), file=folder)
        if "pyproject.toml" in found:
            project = _pyproject(inside("pyproject.toml"))
            project.name = None
            parts.merge(project, file=folder)
        if "setup.py" in found:
            if binder_dir:
                parts.notes.append("setup.py in binder/ was not imported: repo2docker ignores it there too")
            else:
                parts.merge(_setup_py(inside("setup.py")), file=folder)
    if "runtime.txt" in found:
        parts.merge(_runtime_txt(inside("runtime.txt")), file=folder)
    if "apt.txt" in found:
        parts.apt.extend(p for p in _apt_txt(inside("apt.txt")) if p not in parts.apt)
    if "postBuild" in found:
        script = _read_text(inside("postBuild"))
        if script.strip():
            parts.post_build.append(script)
        else:
            parts.notes.append("postBuild is empty and was skipped")
    for name, reason in _UNSUPPORTED_BINDER_FILES.items():
        if (folder / name).is_file():
            parts.notes.append(f"{name} was not imported: {reason}")
    return parts


# ------------------------------------------------------------------------------------ Pipfile, Pipfile.lock


def _pipfile(path: Path) -> _Parts:
    """``[packages]`` and ``[dev-packages]`` (repo2docker installs both, ``pipenv install --dev``)."""
    data = read_toml(path)
    parts = _Parts()
    for section in ("packages", "dev-packages"):
        table = data.get(section) or {}
        if not isinstance(table, dict):
            raise SpecError("expected a table of package names to versions", file=path, key=section)
        for name, value in table.items():
            _pipenv_package(str(name), value, path=path, key=f"{section}.{name}", parts=parts)
    _pipenv_python((data.get("requires") or {}), path=path, key="requires", parts=parts)
    for key in data:
        if key not in ("packages", "dev-packages", "requires", "source", "pipenv", "scripts"):
            parts.notes.append(f"[{str(key)[:60]}] in {path.name} was not imported: it has no equivalent in a spec")
    if data.get("source"):
        parts.notes.append(
            f"[[source]] in {path.name} was not imported: configure the index in the host's pip configuration; "
            "builds mirror it"
        )
    return parts


def _pipfile_lock(path: Path) -> _Parts:
    """The pinned ``default`` and ``develop`` packages of a Pipfile.lock (JSON)."""
    import json

    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise SpecError(f"invalid JSON: {exc.msg}", file=path, key=f"line {exc.lineno}") from None
    if not isinstance(data, dict):
        raise SpecError("expected the JSON object written by 'pipenv lock'", file=path)
    parts = _Parts()
    hashed = 0
    for section in ("default", "develop"):
        table = data.get(section) or {}
        if not isinstance(table, dict):
            raise SpecError("expected an object of package names to pins", file=path, key=section)
        for name, value in table.items():
            hashed += bool(isinstance(value, dict) and value.get("hashes"))
            _pipenv_package(str(name), value, path=path, key=f"{section}.{name}", parts=parts)
    meta = data.get("_meta")
    requires = meta.get("requires") if isinstance(meta, dict) else None
    _pipenv_python(requires or {}, path=path, key="_meta.requires", parts=parts)
    if hashed:
        parts.notes.append(
            f"the hashes of {hashed} package(s) in {path.name} were not imported: pip entries are plain "
            "requirements (containers.lock pins what the image holds)"
        )
    return parts


def _pipenv_package(name: str, value: Any, *, path: Path, key: str, parts: _Parts) -> None:
    extras = ""
    markers = ""
    if isinstance(value, str):
        version = value
    elif isinstance(value, dict):
        local = next((k for k in ("path", "file", "git", "hg", "svn", "bzr") if k in value), None)
        if local is not None:
            parts.notes.append(
                f"{name} ({local} = {show(value[local])}) in {path.name} was not imported: local paths and "
                "repositories do not exist inside the image; publish it, use a URL (name @ https://...), "
                "or install it in post_build"
            )
            return
        version = str(value.get("version", "*"))
        if isinstance(value.get("extras"), list) and value["extras"]:
            extras = "[" + ",".join(str(e) for e in value["extras"]) + "]"
        if value.get("markers"):
            markers = f"; {value['markers']}"
    else:
        raise SpecError(f"{show(value)} is not a version; use a string such as '>=1.0' or '*'", file=path, key=key)
    version = "" if version.strip() in ("*", "") else version.strip()
    if version and version[0].isdigit():
        version = f"=={version}"
    text = check_requirement(f"{name}{extras}{version}{markers}", file=path, key=key)
    if text not in parts.pip:
        parts.pip.append(text)


def _pipenv_python(requires: Any, *, path: Path, key: str, parts: _Parts) -> None:
    if not isinstance(requires, dict):
        return
    version = requires.get("python_full_version") or requires.get("python_version")
    if version is None:
        return
    text = str(version).strip()
    if not re.fullmatch(r"\d+(\.\d+){1,2}", text):
        parts.notes.append(
            f"{key}.python_version {show(text)} in {path.name} was not mapped to python; "
            'set python = "3.X" in [environments.NAME] to choose one'
        )
        return
    check_python_version(text, file=path, key=f"{key}.python_version")
    parts.python, parts.python_from = text, path.name


# ------------------------------------------------------------------------------------------------ setup.py


def _setup_py(path: Path) -> _Parts:
    """The literal ``install_requires`` and ``python_requires`` of ``setup(...)``, read without running it."""
    import ast

    text = _read_text(path)
    parts = _Parts()
    try:
        tree = ast.parse(text, filename=path.name)
    except (SyntaxError, ValueError, RecursionError) as exc:
        raise SpecError(f"cannot read setup.py: {exc}", file=path) from None
    call = next(
        (
            node
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and (getattr(node.func, "id", None) == "setup" or getattr(node.func, "attr", None) == "setup")
        ),
        None,
    )
    keywords = {kw.arg: kw.value for kw in call.keywords if kw.arg} if call is not None else {}
    requires = keywords.get("install_requires")
    if requires is None:
        parts.notes.append(f"{path.name}: no install_requires found; no dependencies were imported")
    else:
        try:
            values = ast.literal_eval(requires)
        except (ValueError, TypeError, SyntaxError, RecursionError):
            values = None
        if not isinstance(values, list | tuple) or not all(isinstance(v, str) for v in values):
            parts.notes.append(
                f"install_requires in {path.name} (line {requires.lineno}) was not imported: it is computed, not a "
                "list of strings; add its requirements to [environments.NAME].pip"
            )
        else:
            for i, requirement in enumerate(values):
                text = check_requirement(requirement, file=path, key=f"install_requires[{i}]")
                if text not in parts.pip:
                    parts.pip.append(text)
    python_requires = keywords.get("python_requires")
    if isinstance(python_requires, ast.Constant) and isinstance(python_requires.value, str):
        version = _python_from_specifier(python_requires.value)
        if version:
            parts.python, parts.python_from = version, path.name
    parts.notes.append(
        f"the package of {path.name} itself was not installed (repo2docker runs 'pip install .'): the repository "
        "is not in the image; it is mounted at /workspace when the environment runs, so run "
        "'%pip install -e /workspace' in the notebook, or publish it and add it to pip"
    )
    return parts


def _read_text(path: Path) -> str:
    try:
        return read_text(path, bom=False)
    except FileNotFoundError:
        raise SpecError("the file does not exist", file=path) from None


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
                    f"{show(package)} is not a Debian package name; use names such as libgl1 (optionally name=version)",
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
            f"runtime.txt holds more than one line ({show(lines[1][1])}); write only python-3.X",
            file=path,
            key=f"line {lines[1][0]}",
        )
    if value == "python-3":
        parts = _Parts()
        parts.notes.append(f"{path.name} asks for any Python 3 ({value}): the base image's python3 is used")
        return parts
    match = re.fullmatch(r"python-(\d+\.\d+(?:\.\d+)?)", value)
    if match:
        check_python_version(match.group(1), file=path, key=f"line {number}", what=f"runtime {show(value)}: Python")
        return _Parts(python=match.group(1), python_from=path.name)
    if value.lower().startswith("r-") or value.lower() == "r":
        raise SpecError(
            f"runtime {show(value)} is an R runtime, which is not supported ({_R_ADVICE}); "
            "write python-3.X here (or delete runtime.txt)",
            file=path,
            key=f"line {number}",
        )
    raise SpecError(
        f"runtime {show(value)} is not supported; write python-3, python-3.X or python-3.X.Y, such as python-3.11",
        file=path,
        key=f"line {number}",
    )
