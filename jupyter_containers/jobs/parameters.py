"""Papermill-compatible notebook parameters: typed like ``papermill -p``, injected as papermill injects them.

A cell tagged ``parameters`` holds the defaults; a run inserts an ``injected-parameters`` cell after it
(or replaces the one a previous run left), so a notebook parameterized by papermill or by us reads the same.
"""

from __future__ import annotations

import keyword
import math
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import RequestError

PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"


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


def parse_parameters(typed: Iterable[tuple[str, str]] = (), raw: Iterable[tuple[str, str]] = ()) -> dict[str, Any]:
    """``-p`` pairs (typed like papermill) and ``-r`` pairs (kept as strings), in the order given."""
    out: dict[str, Any] = {}
    for name, value in typed:
        out[name] = parse_parameter_value(value)
    for name, value in raw:
        out[name] = value
    return out


def check_parameter_names(parameters: Mapping[str, Any]) -> None:
    """Every name must be assignable in the injected cell.

    Raises:
        RequestError: a name is not a Python variable name (or is a keyword).
    """
    for name in parameters:
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
            raise RequestError(f"parameter name {name!r} is not a Python variable name; use e.g. 'size'")


def inject_parameters(nb: Any, parameters: Mapping[str, Any]) -> int:
    """Insert (or replace) the ``injected-parameters`` cell as papermill does; returns its index.

    Placement: replacing an existing injected cell (a re-run of an output notebook), else right after the
    first cell tagged ``parameters``, else at the top.

    Raises:
        RequestError: a parameter name is not a Python variable name.
    """
    from nbformat.v4 import new_code_cell

    check_parameter_names(parameters)
    source = "\n".join(["# Parameters", *(f"{name} = {_python_literal(v)}" for name, v in parameters.items())])
    cell = new_code_cell(source, metadata={"tags": [INJECTED_TAG]})
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


def _tagged(nb: Any, tag: str) -> int | None:
    for index, cell in enumerate(nb.cells):
        if tag in (cell.get("metadata", {}).get("tags") or []):
            return index
    return None


def _python_literal(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return f"float({str(value)!r})"
    return repr(value)
