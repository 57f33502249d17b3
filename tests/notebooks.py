"""Notebooks the tests write and read: code cells with tags, and what a cell printed."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook


def write_notebook(path: Path, *cells: str | tuple[str, list[str]]) -> Path:
    """A notebook of code cells; ``(source, tags)`` gives a cell tags."""
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    for cell in cells:
        source, tags = cell if isinstance(cell, tuple) else (cell, [])
        nb.cells.append(new_code_cell(source, metadata={"tags": tags} if tags else {}))
    nbformat.write(nb, path)
    path.chmod(0o644)
    return path


def stdout_of(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")
