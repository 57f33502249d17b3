"""The sidebar's "Add package…": check a package (and version) against the index, then add it to an
environment's ``pip`` list in the spec file, keeping the file's comments and layout.

What users reach for after ``%pip install`` fails in a container kernel: the environment is the place a
package belongs, so that every kernel, session and job gets it. The check asks the index's JSON API
(PyPI's ``/pypi/NAME/json``, ``c.ContainersService.package_index``) before anything is written, so a typo
gives a clear error at once instead of a failed build a minute later. urllib uses the host's proxy
settings (``https_proxy``, ``no_proxy``) as pip and uv do.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from ..errors import ConflictError, RequestError

#: A distribution name as PEP 508 allows it.
NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
#: Seconds the index gets to answer.
TIMEOUT = 15.0


def requirement(package: Any, version: Any) -> tuple[str, SpecifierSet | None, str]:
    """The checked name, specifier and requirement text (``six``, ``six==1.16.0``, ``numpy>=2``)."""
    if not isinstance(package, str) or not NAME.match(package.strip()):
        raise RequestError(f"package: {package!r} is not a package name (letters, digits, '.', '-', '_'; e.g. 'numpy')")
    name = package.strip()
    if version in (None, ""):
        return name, None, name
    if not isinstance(version, str):
        raise RequestError(f"version: {version!r} must be a string such as '1.2.3' or '>=1.2'")
    text = version.strip()
    if text[:1].isdigit():
        try:
            Version(text)
        except InvalidVersion:
            raise RequestError(f"version: {text!r} is not a version (e.g. '1.2.3') or a specifier ('>=1.2')") from None
        text = f"=={text}"
    try:
        spec = SpecifierSet(text)
    except InvalidSpecifier:
        raise RequestError(f"version: {version!r} is not a version (e.g. '1.2.3') or a specifier ('>=1.2')") from None
    return name, spec, f"{name}{spec}"


def check_on_index(index: str, name: str, spec: SpecifierSet | None) -> str:
    """The project's name as the index spells it, once it has the package (and a release matching ``spec``);
    else a :class:`RequestError` naming the package, version and index. An empty ``index`` skips the check."""
    if not index:
        return name
    url = f"{index.rstrip('/')}/{urllib.parse.quote(canonicalize_name(name))}/json"
    request = urllib.request.Request(url, headers={"Accept": "application/json", "User-Agent": "jupyter-containers"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            data = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise RequestError(f"package: no package named {name!r} on {index}") from None
        raise RequestError(f"package: the index {index} answered {exc.code} {exc.reason} for {name!r}") from None
    except (OSError, ValueError) as exc:
        raise RequestError(
            f"package: could not ask the index {index} about {name!r} ({exc}); check the proxy settings, or set "
            "c.ContainersService.package_index (empty: no check)"
        ) from None
    releases = [r for r, files in (data.get("releases") or {}).items() if files != []]
    if spec is not None:
        matching = [r for r in releases if _matches(spec, r)]
        if not matching:
            latest = (data.get("info") or {}).get("version")
            raise RequestError(
                f"version: {name} has no release matching {str(spec)!r} on {index}"
                + (f" (the latest is {latest})" if latest else "")
            )
    return str((data.get("info") or {}).get("name") or name)


def _matches(spec: SpecifierSet, release: str) -> bool:
    try:
        return Version(release) in spec
    except InvalidVersion:
        return False


def add_to_spec(spec_file: Path, table: tuple[str, ...], environment: str, name: str, text: str) -> str:
    """Put ``text`` in the environment's ``pip`` list (replacing an entry for the same package), keeping the
    rest of the file as written; returns the file's old contents (to put back if the result does not parse)."""
    import tomlkit
    from tomlkit.exceptions import TOMLKitError

    old = spec_file.read_text()
    try:
        document = tomlkit.parse(old)
    except TOMLKitError as exc:
        raise RequestError(f"{spec_file}: cannot be edited, it is not valid TOML ({exc})") from None
    node: Any = document
    for key in (*table, "environments", environment):
        node = node.get(key) if hasattr(node, "get") else None
        if node is None:
            raise ConflictError(
                f"{spec_file}: environment {environment!r} has no table of its own here; add the package "
                "where its packages are listed"
            )
    pip = node.get("pip")
    if pip is None:
        node["pip"] = tomlkit.array()
        node["pip"].append(text)
    else:
        wanted = canonicalize_name(name)
        for index, entry in enumerate(list(pip)):
            head = re.split(r"[\s\[<>=!~;@]", str(entry), maxsplit=1)[0]
            if canonicalize_name(head) == wanted:
                if str(entry) == text:
                    raise ConflictError(f"{spec_file}: environment {environment!r} already has {text!r}")
                pip[index] = text
                break
        else:
            pip.append(text)
    spec_file.write_text(tomlkit.dumps(document))
    return old
