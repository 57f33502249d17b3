"""Capturing the running interpreter's packages as an environment ("make an image of what I have").

Only what pip can install inside an image is pinned. Installs that point at the host (editable and
local-directory installs, local archives, local VCS clones) cannot be reproduced there, so each of them
becomes a note telling the user what to do instead of being pinned to something that would not resolve.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import json
import sys
from collections import deque
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from ..errors import SpecError
from .files import MAX_CODE_BYTES, check_path_text, decode_text, read_source
from .importers import ImportResult, _explicit_name
from .model import Environment

_PACKAGING_TOOLS = ("pip", "setuptools", "wheel", "distribute")
_LOCAL_HINT = (
    "its source does not exist inside the image; "
    "publish it, use a URL (name @ https://...), or install it in post_build"
)


def capture_environment(
    name: str = "captured", *, imported: bool = False, modules: Iterable[str] | None = None
) -> ImportResult:
    """Pin the packages of this interpreter so that an image can reproduce it.

    With ``imported``, only the distributions behind the imported ``modules`` (default: everything in
    ``sys.modules``) are kept, together with everything they depend on here, so that the pinned set is
    complete and pip has nothing left to choose.
    """

    env_name = _explicit_name(name)
    notes: list[str] = []
    installed = _installed(notes)
    if imported:
        wanted = set(modules) if modules is not None else set(sys.modules)
        selected = _closure(_distributions_for(wanted, installed, notes), installed, notes)
    else:
        tools = [canon for canon in _PACKAGING_TOOLS if canon in installed]
        if tools:
            listed = ", ".join(f"{installed[t].metadata['Name']} {installed[t].version}" for t in tools)
            notes.append(
                f"{listed} not pinned: the image's own packaging tools are used (as 'pip freeze' does); "
                "add them to pip if your code needs these versions"
            )
        selected = [canon for canon in installed if canon not in tools]
    pip = []
    for canon in sorted(selected):  # canonical names: lower-case and normalized already
        entry = _pin(canon, installed[canon], notes)
        if entry is not None:
            pip.append(entry)
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    return ImportResult(environment=Environment(name=env_name, python=python, pip=tuple(pip)), notes=tuple(notes))


def modules_from_files(paths: Iterable[Path]) -> set[str]:
    """Top-level modules imported by scripts and notebooks, so a capture can keep only what they use.

    Notebook cells that are not Python even after dropping ``%magic`` and ``!shell`` lines are ignored;
    a ``.py`` file that does not parse is an error, since its imports would otherwise go missing.
    """
    found: set[str] = set()
    for path in paths:
        check_path_text(str(path), what="file")
        path = Path(path)
        if path.suffix == ".ipynb":
            for source in _notebook_cells(path):
                try:
                    tree = ast.parse(_without_magics(source))
                except (SyntaxError, ValueError, RecursionError, MemoryError):
                    continue
                found |= _imports(tree)
        elif path.suffix == ".py":
            text = decode_text(_read_code(path), file=path)
            try:
                tree = ast.parse(text, filename=str(path))
            except SyntaxError as exc:
                raise SpecError(f"cannot parse it: {exc.msg}", file=path, key=f"line {exc.lineno}") from None
            except ValueError as exc:
                raise SpecError(f"cannot parse it: {exc}", file=path) from None
            except (RecursionError, MemoryError):
                raise SpecError("cannot parse it: it is nested too deeply", file=path) from None
            found |= _imports(tree)
        else:
            raise SpecError("is not a .py file or a .ipynb notebook; pass scripts and notebooks only", file=path)
    return found


# ----------------------------------------------------------------------------------------- distributions


def _installed(notes: list[str]) -> dict[str, importlib.metadata.Distribution]:
    # Canonical name -> distribution, the first on sys.path winning (as imports do).
    from packaging.utils import canonicalize_name

    out: dict[str, importlib.metadata.Distribution] = {}
    for dist in importlib.metadata.distributions():
        metadata = dist.metadata
        # PackageMetadata is an email.message.Message: .get exists, the typeshed protocol lacks it.
        raw = metadata.get("Name") if metadata is not None else None  # type: ignore[attr-defined]
        where = getattr(dist, "_path", None) or "an unknown location"
        if not raw:
            notes.append(f"a distribution with broken metadata (no name) at {where} was skipped; reinstall it")
            continue
        if not dist.version:
            notes.append(f"{raw} at {where} has no version in its metadata and was skipped; reinstall it")
            continue
        out.setdefault(canonicalize_name(raw), dist)
    return out


def _direct_url(dist: importlib.metadata.Distribution) -> dict[str, Any] | None:
    try:
        text = dist.read_text("direct_url.json")
    except OSError:
        return None
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _url_path(url: str) -> str:
    parsed = urlparse(url)
    if parsed.scheme != "file":
        return url
    path = unquote(parsed.path)
    if parsed.netloc and parsed.netloc != "localhost":
        path = f"//{parsed.netloc}{path}"
    return path


def _pin(canon: str, dist: importlib.metadata.Distribution, notes: list[str]) -> str | None:
    from packaging.version import InvalidVersion, Version

    display = f"{dist.metadata['Name']} {dist.version}"
    direct = _direct_url(dist)
    if direct is not None:
        url = str(direct.get("url", ""))
        is_file = url.lower().startswith("file:")
        if isinstance(direct.get("dir_info"), dict):
            kind = "editable install" if direct["dir_info"].get("editable") else "local install"
            notes.append(f"{kind} of {display} from {_url_path(url)} was not captured: {_LOCAL_HINT}")
            return None
        if isinstance(direct.get("vcs_info"), dict):
            if is_file:
                notes.append(
                    f"install of {display} from the local clone {_url_path(url)} was not captured: {_LOCAL_HINT}"
                )
                return None
            vcs = direct["vcs_info"]
            kind = str(vcs.get("vcs", "git"))
            ref = vcs.get("commit_id") or vcs.get("requested_revision")
            entry = f"{canon} @ {url if url.startswith(kind + '+') else f'{kind}+{url}'}"
            entry += f"@{ref}" if ref else ""
            if direct.get("subdirectory"):
                entry += f"#subdirectory={direct['subdirectory']}"
            return entry
        if isinstance(direct.get("archive_info"), dict):
            if is_file:
                notes.append(
                    f"install of {display} from the local file {_url_path(url)} was not captured: {_LOCAL_HINT}"
                )
                return None
            return f"{canon} @ {url}{_archive_fragment(direct['archive_info'], url)}"
    try:
        Version(dist.version)
    except InvalidVersion:
        return f"{canon}==={dist.version}"
    return f"{canon}=={dist.version}"


def _archive_fragment(info: Mapping[str, Any], url: str) -> str:
    if "#" in url:
        return ""
    hashes = info.get("hashes")
    if isinstance(hashes, dict) and hashes:
        algorithm = "sha256" if "sha256" in hashes else sorted(hashes)[0]
        return f"#{algorithm}={hashes[algorithm]}"
    legacy = info.get("hash")
    if isinstance(legacy, str) and "=" in legacy:
        return f"#{legacy}"
    return ""


def _local_roots(installed: Mapping[str, importlib.metadata.Distribution]) -> dict[str, Path]:
    # Source directories of editable and local-directory installs, which packages_distributions misses.
    roots = {}
    for canon, dist in installed.items():
        direct = _direct_url(dist)
        if direct and isinstance(direct.get("dir_info"), dict) and str(direct.get("url", "")).startswith("file:"):
            roots[canon] = Path(_url_path(str(direct["url"]))).resolve()
    return roots


def _belongs_to(location: Path, root: Path) -> bool:
    """Whether a module file lies in a local install's source tree, and not merely in a virtualenv that
    happens to sit inside that tree (``project/.venv`` inside an editable ``project``)."""
    if not location.is_relative_to(root):
        return False
    prefixes = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    return not any(location.is_relative_to(p) and not root.is_relative_to(p) for p in prefixes)


def _module_locations(module: str) -> list[Path] | None:
    loaded = sys.modules.get(module)
    spec = getattr(loaded, "__spec__", None) if loaded is not None else None
    if spec is None:
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            return None
    if spec is None:
        return None
    places = [spec.origin] if spec.origin and spec.origin not in ("built-in", "frozen") else []
    places += list(spec.submodule_search_locations or [])
    return [Path(p).resolve() for p in places]


def _distributions_for(
    modules: Iterable[str], installed: Mapping[str, importlib.metadata.Distribution], notes: list[str]
) -> list[str]:
    from packaging.utils import canonicalize_name

    stdlib = set(sys.stdlib_module_names) | set(sys.builtin_module_names) | {"__main__", "__mp_main__"}
    providers = importlib.metadata.packages_distributions()
    roots = _local_roots(installed)
    seeds: list[str] = []
    missing: list[str] = []
    local: list[str] = []
    for top in sorted({m.split(".")[0] for m in modules if m and not m.startswith(".")}):
        if top in stdlib:
            continue
        names: list[str] = [canonicalize_name(n) for n in providers.get(top, []) if n]
        names = [n for n in dict.fromkeys(names) if n in installed]
        if not names:
            locations = _module_locations(top)
            if locations is None:
                missing.append(top)
                continue
            names = [c for c, root in roots.items() if any(_belongs_to(loc, root) for loc in locations)]
            if not names:
                where = f" ({locations[0]})" if locations else ""
                local.append(f"{top}{where}")
                continue
        seeds.extend(n for n in names if n not in seeds)
    if missing:
        notes.append(
            f"imported but not installed here, so not captured: {', '.join(missing)}; "
            "add them to pip if they are needed"
        )
    if local:
        notes.append(
            f"modules not provided by any installed distribution (local code?) were not captured: {', '.join(local)}; "
            "publish them, or install them in post_build"
        )
    return seeds


def _closure(
    seeds: Iterable[str], installed: Mapping[str, importlib.metadata.Distribution], notes: list[str]
) -> list[str]:
    # ``seeds`` plus every installed distribution they require, markers and extras evaluated here.
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    done: dict[str, set[str]] = {}
    order: list[str] = []
    queue: deque[tuple[str, frozenset[str], str | None]] = deque((s, frozenset(), None) for s in seeds)
    reported: set[str] = set()
    while queue:
        canon, extras, parent = queue.popleft()
        if canon not in installed:
            if canon not in reported:
                reported.add(canon)
                notes.append(
                    f"{canon} (required by {parent}) is not installed here, so it was not pinned; "
                    "the build installs whichever version pip picks"
                )
            continue
        first = canon not in done
        new_extras = extras - done.get(canon, set())
        if not first and not new_extras:
            continue
        if first:
            order.append(canon)
        done.setdefault(canon, set()).update(extras)
        dist = installed[canon]
        for text in dist.requires or []:
            try:
                requirement = Requirement(text)
            except InvalidRequirement:
                notes.append(f"{dist.metadata['Name']} declares an invalid requirement {text!r}, which was ignored")
                continue
            if not _applies(requirement.marker, first=first, extras=new_extras):
                continue
            dep_extras = frozenset(canonicalize_name(e) for e in requirement.extras)
            queue.append((canonicalize_name(requirement.name), dep_extras, dist.metadata["Name"]))
    return order


def _applies(marker: Any, *, first: bool, extras: Iterable[str]) -> bool:
    if marker is None:
        return first
    if first and marker.evaluate({"extra": ""}):
        return True
    return any(marker.evaluate({"extra": extra}) for extra in extras)


# --------------------------------------------------------------------------------------------- notebooks


def _read_code(path: Path) -> bytes:
    try:
        return read_source(path, limit=MAX_CODE_BYTES)
    except FileNotFoundError:
        raise SpecError("the file does not exist; pass existing .py or .ipynb files", file=path) from None


def _notebook_cells(path: Path) -> list[str]:
    data = _read_code(path)
    try:
        notebook = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise SpecError(f"the notebook is not UTF-8 text ({exc.reason} at byte {exc.start})", file=path) from None
    except ValueError as exc:
        raise SpecError(f"the notebook is not valid JSON: {exc}", file=path) from None
    except RecursionError:
        raise SpecError("the notebook is nested too deeply to be a notebook", file=path) from None
    if not isinstance(notebook, dict):
        raise SpecError("is not a notebook (expected a JSON object with cells)", file=path)
    cells = _as_list(notebook.get("cells"))
    for sheet in _as_list(notebook.get("worksheets")):  # nbformat 3
        cells.extend(_as_list(sheet.get("cells")) if isinstance(sheet, dict) else [])
    sources = []
    for cell in cells:
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        source = cell.get("source", cell.get("input", ""))
        if isinstance(source, list):
            source = "".join(line for line in source if isinstance(line, str))
        sources.append(source if isinstance(source, str) else "")
    return sources


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else []


def _without_magics(source: str) -> str:
    lines = []
    for line in source.splitlines():
        stripped = line.lstrip()
        # Keep the indentation so that a magic inside a block leaves the block parseable.
        lines.append(line[: len(line) - len(stripped)] + "pass" if stripped.startswith(("%", "!")) else line)
    return "\n".join(lines)


def _imports(tree: ast.AST) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and node.args and _is_dynamic_import(node.func):
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and not arg.value.startswith("."):
                found.add(arg.value.split(".")[0])
    return found


def _is_dynamic_import(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id in ("__import__", "import_module")
    return isinstance(func, ast.Attribute) and func.attr == "import_module"
