"""Papermill-compatible notebook parameters: given as papermill takes them, injected as papermill injects them.

A cell tagged ``parameters`` holds the defaults; a run inserts an ``injected-parameters`` cell after it
(or replaces the one a previous run left), so a notebook parameterized by papermill or by us reads the same.
Values come from ``-p`` (typed like papermill), ``-r`` (strings), YAML (``-y``, base64 ``-b``, files) or a
REST body (JSON); lists and dicts are written as Python literals, and whatever cannot be one is refused
with the parameter's path (``parameters.cfg.sizes[2]``) instead of breaking the injected cell.
"""

from __future__ import annotations

import ast
import base64
import binascii
import keyword
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import RequestError

PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"
#: Deepest nesting of lists and dicts a parameter may have.
MAX_DEPTH = 32
#: Largest injected cell (characters); also bounds YAML aliases that would expand a small file hugely.
MAX_SOURCE = 1 << 20
#: Largest parameters file read (bytes).
MAX_FILE = 1 << 20


# ---------------------------------------------------------------------- from the command line
def parse_parameter_value(text: str) -> Any:
    """A ``-p NAME VALUE`` value typed as papermill types it: True/False/None, int, float, else the string."""
    if text == "True":
        return True
    if text == "False":
        return False
    if text == "None":
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def parse_parameters(
    typed: Iterable[tuple[str, str]] = (),
    raw: Iterable[tuple[str, str]] = (),
    *,
    base64_texts: Iterable[str] = (),
    files: Iterable[str | Path] = (),
    yaml_texts: Iterable[str] = (),
) -> dict[str, Any]:
    """All parameters of a command line, merged in papermill's order (a later source wins a name):
    ``-b`` base64 YAML, ``--parameters-file`` YAML files, ``-y`` YAML, ``-p`` (typed), ``-r`` (strings).

    Raises:
        RequestError: a YAML text, base64 text or file that cannot be read, or that is not a mapping.
    """
    out: dict[str, Any] = {}
    for text in base64_texts:
        try:
            decoded = base64.b64decode(text.encode("ascii"), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeError, ValueError):
            raise RequestError(
                f"-b/--parameters-base64 {_shorten(text)!r}: not base64-encoded UTF-8 text; "
                "encode the YAML with e.g. `base64 -w0 params.yaml`"
            ) from None
        out.update(load_yaml_parameters(decoded, source="-b/--parameters-base64"))
    for path in files:
        out.update(read_parameters_file(path))
    for text in yaml_texts:
        out.update(load_yaml_parameters(text, source="-y/--parameters-yaml"))
    for name, value in typed:
        out[name] = parse_parameter_value(value)
    for name, value in raw:
        out[name] = value
    return out


def read_parameters_file(path: str | Path) -> dict[str, Any]:
    """A YAML (or JSON) file of parameters, as papermill's ``-f/--parameters_file`` reads it.

    Raises:
        RequestError: the file does not exist, is too big, or is not a YAML mapping.
    """
    path = Path(path)
    source = f"--parameters-file {path}"
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_FILE + 1)
    except FileNotFoundError:
        raise RequestError(f"{source}: no such file; give the path of a YAML file of parameters") from None
    except OSError as exc:
        raise RequestError(f"{source}: cannot be read ({exc.strerror or exc})") from None
    if len(data) > MAX_FILE:
        raise RequestError(f"{source}: over {MAX_FILE >> 10} KiB; parameters are names and small values")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestError(f"{source}: not UTF-8 text; a parameters file is YAML") from None
    return load_yaml_parameters(text, source=source)


def load_yaml_parameters(text: str, *, source: str) -> dict[str, Any]:
    """A YAML mapping of parameters (empty text: none). Dates stay strings, as in papermill.

    Raises:
        RequestError: invalid YAML, or a document that is not a mapping of names to values.
    """
    import yaml

    try:
        data = yaml.load(text, Loader=_loader())
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise RequestError(f"{source}: not valid YAML ({detail})") from None
    except RecursionError:
        raise RequestError(f"{source}: nested too deeply; pass a flatter value") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RequestError(
            f"{source}: the YAML must be a mapping of names to values (e.g. 'sizes: [1, 2]'), not {_kind(data)}"
        )
    return validate_parameters(data, key=source)


_LOADER: Any = None


def _loader() -> Any:
    """PyYAML's SafeLoader without its timestamp resolver: ``2024-01-31`` stays a string, as papermill reads it
    (a ``date`` could not be written back as a plain literal)."""
    global _LOADER
    if _LOADER is None:
        import yaml

        class ParametersLoader(yaml.SafeLoader):
            pass

        ParametersLoader.yaml_implicit_resolvers = {
            first: [r for r in resolvers if r[0] != "tag:yaml.org,2002:timestamp"]
            for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
        }
        _LOADER = ParametersLoader
    return _LOADER


# ---------------------------------------------------------------------- validation
def check_parameter_names(parameters: Mapping[str, Any], *, key: str = "parameters") -> None:
    """Every name must be assignable in the injected cell.

    Raises:
        RequestError: a name is not a Python variable name (or is a keyword).
    """
    for name in parameters:
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
            raise RequestError(f"{key}: parameter name {name!r} is not a Python variable name; use e.g. 'size'")


def validate_parameters(parameters: Any, *, key: str = "parameters") -> dict[str, Any]:
    """Parameters from outside (a REST body, YAML): a mapping of Python names to values the injected cell can
    hold: None, booleans, numbers, strings, and lists and dicts of them (nested up to :data:`MAX_DEPTH`).

    Returns:
        The parameters as a plain dict.

    Raises:
        RequestError: naming the key path of the first bad name or value.
    """
    if not isinstance(parameters, Mapping):
        raise RequestError(f"{key}: give a mapping of parameter names to values, not {_kind(parameters)}")
    check_parameter_names(parameters, key=key)
    parameters_source(parameters, key=key)
    return dict(parameters)


# ---------------------------------------------------------------------- injection
def inject_parameters(nb: Any, parameters: Mapping[str, Any], *, hidden: bool = False) -> int:
    """Insert (or replace) the ``injected-parameters`` cell as papermill does; returns its index.

    Placement: replacing an existing injected cell (a re-run of an output notebook), else right after the
    first cell tagged ``parameters``, else at the top. ``hidden``: its code is collapsed (report mode).

    Raises:
        RequestError: a parameter name is not a Python variable name, or a value is not a literal.
    """
    from nbformat.v4 import new_code_cell

    check_parameter_names(parameters)
    metadata: dict[str, Any] = {"tags": [INJECTED_TAG]}
    if hidden:
        metadata["jupyter"] = {"source_hidden": True}
    cell = new_code_cell(parameters_source(parameters), metadata=metadata)
    if (nb.get("nbformat_minor") or 0) < 5:
        cell.pop("id", None)  # cell ids exist from nbformat 4.5 on
    injected = _tagged(nb, INJECTED_TAG)
    if injected is not None:
        nb.cells[injected] = cell
        return injected
    marker = _tagged(nb, PARAMETERS_TAG)
    index = 0 if marker is None else marker + 1
    nb.cells.insert(index, cell)
    return index


def parameters_source(parameters: Mapping[str, Any], *, key: str = "parameters") -> str:
    """The injected cell's code: ``# Parameters`` then one ``name = literal`` line per parameter.

    Raises:
        RequestError: a value that no Python literal writes (naming its path), or too big a cell.
    """
    writer = _LiteralWriter()
    lines = ["# Parameters"]
    for name, value in parameters.items():
        lines.append(f"{name} = {writer.literal(value, f'{key}.{name}', 0)}")
    return "\n".join(lines)


def parameter_warnings(nb: Any, parameters: Mapping[str, Any]) -> list[str]:
    """What papermill warns about before a parameterized run: no cell tagged ``parameters`` (the values then go
    to the top, before any default could be overridden), and names that the parameters cell does not set."""
    if not parameters:
        return []
    index = _tagged(nb, PARAMETERS_TAG)
    if index is None:
        return [
            "the notebook has no cell tagged 'parameters': the parameters were injected at the top; "
            "tag the cell that sets their defaults 'parameters' (cell toolbar > tags) so they override them"
        ]
    declared = _assigned_names(nb.cells[index].get("source", ""))
    if declared is None:
        return []
    unknown = [name for name in parameters if name not in declared]
    if not unknown:
        return []
    shown = ", ".join(sorted(declared)) or "nothing"
    return [f"parameter {name!r} is not set in the notebook's parameters cell (it sets {shown})" for name in unknown]


def _assigned_names(source: Any) -> set[str] | None:
    text = "".join(source) if isinstance(source, list) else str(source)
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return None  # magics or another language: nothing to compare with
    names: set[str] = set()
    for node in ast.walk(tree):
        targets: list[Any] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, ast.AnnAssign | ast.AugAssign):
            targets = [node.target]
        for target in targets:
            for leaf in ast.walk(target):
                if isinstance(leaf, ast.Name):
                    names.add(leaf.id)
    return names


class _LiteralWriter:
    """Python literals of parameter values, bounded in depth and in total size."""

    def __init__(self) -> None:
        self.size = 0

    def literal(self, value: Any, path: str, depth: int) -> str:
        if depth > MAX_DEPTH:
            raise RequestError(f"{path}: nested deeper than {MAX_DEPTH} levels; pass a flatter value")
        if value is None or isinstance(value, bool | int | str):
            return self._leaf(repr(value), path)
        if isinstance(value, float):
            return self._leaf(repr(value) if math.isfinite(value) else f"float({str(value)!r})", path)
        if isinstance(value, list | tuple | Mapping):
            self._leaf("", path)  # brackets: empty lists repeated by aliases count too
        if isinstance(value, list | tuple):
            items = [self.literal(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
            text = f"[{', '.join(items)}]"
        elif isinstance(value, Mapping):
            pairs = []
            for k, v in value.items():
                if not (k is None or isinstance(k, bool | int | float | str)):
                    raise RequestError(f"{path}: key {k!r} is not a string or a number; use string keys")
                shown = f"{path}.{k}" if isinstance(k, str) and k.isidentifier() else f"{path}[{k!r}]"
                pairs.append(f"{self.literal(k, shown, depth + 1)}: {self.literal(v, shown, depth + 1)}")
            text = "{" + ", ".join(pairs) + "}"
        else:
            raise RequestError(
                f"{path}: {_kind(value)} is not a parameter value; use null/None, a boolean, a number, a string, "
                "or a list or mapping of them"
            )
        return text

    def _leaf(self, text: str, path: str) -> str:
        # Counting the leaves bounds the cell, however often YAML aliases repeat one big value.
        self.size += len(text) + 2
        if self.size > MAX_SOURCE:
            raise RequestError(f"{path}: the parameters make a cell of over {MAX_SOURCE >> 10} KiB; pass less data")
        return text


def _tagged(nb: Any, tag: str) -> int | None:
    for index, cell in enumerate(nb.cells):
        if tag in (cell.get("metadata", {}).get("tags") or []):
            return index
    return None


def _kind(value: Any) -> str:
    names = {list: "a list", tuple: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}
    return names.get(type(value), f"a value of type {type(value).__name__}")


def _shorten(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
