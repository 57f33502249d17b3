"""What a person opening an output notebook sees first: where a failed run stopped, and (report mode) no code.

Markers follow papermill's, so that either tool refreshes the other's: a markdown cell at the top saying
where the run stopped, linking to an anchor cell placed just before the failing cell, both tagged
``papermill-error-cell-tag``. A new run removes the markers an earlier run left before it starts, so an
output notebook that is run again never shows a stale failure.
"""

from __future__ import annotations

import html
from typing import Any

#: papermill's tag for its error cells (kept, so that papermill and we refresh each other's markers).
ERROR_MARKER_TAG = "papermill-error-cell-tag"
#: The HTML id the top cell links to (papermill's, for the same reason).
ERROR_ANCHOR_ID = "papermill-error-cell"

_STYLE = 'style="color:red; font-family:Helvetica Neue, Helvetica, Arial, sans-serif; font-size:1.5em;"'


def remove_error_markers(nb: Any) -> int:
    """Remove the markers an earlier run (ours or papermill's) left; returns how many cells went."""
    before = len(nb.cells)
    nb.cells = [cell for cell in nb.cells if ERROR_MARKER_TAG not in (cell.get("metadata", {}).get("tags") or [])]
    return before - len(nb.cells)


def add_error_markers(nb: Any, cell_index: int | None, summary: str) -> None:
    """Mark where the run stopped: an anchor cell before cell ``cell_index`` and a top cell linking to it.

    ``summary`` says what happened (``ZeroDivisionError: division by zero``, ``timed out after 8s``). With no
    cell index (the kernel never ran a cell) only the top cell is added, without a link.
    """
    from nbformat.v4 import new_markdown_cell

    def marker(source: str) -> Any:
        cell = new_markdown_cell(source, metadata={"tags": [ERROR_MARKER_TAG]})
        if (nb.get("nbformat_minor") or 0) < 5:
            cell.pop("id", None)  # cell ids exist from nbformat 4.5 on
        return cell

    shown = html.escape(summary)
    if cell_index is None or not 0 <= cell_index < len(nb.cells):
        nb.cells.insert(0, marker(f"<span {_STYLE}>The run stopped before any cell ran: {shown}</span>"))
        return
    count = nb.cells[cell_index].get("execution_count")
    where = f"In [{count}]" if count else f"cell {cell_index + 1}"
    anchor = f'<span id="{ERROR_ANCHOR_ID}" {_STYLE}>The run stopped here, in the next cell: {shown}</span>'
    nb.cells.insert(cell_index, marker(anchor))
    nb.cells.insert(
        0, marker(f'<span {_STYLE}>The run stopped at <a href="#{ERROR_ANCHOR_ID}">{where}</a>: {shown}</span>')
    )


def hide_code(nb: Any) -> int:
    """Report mode (papermill's ``--report-mode``): collapse the source of every code cell
    (``metadata.jupyter.source_hidden``), keeping the outputs; returns how many cells were hidden."""
    hidden = 0
    for cell in nb.cells:
        if cell.get("cell_type") == "code":
            jupyter = dict(cell.metadata.get("jupyter") or {})
            jupyter["source_hidden"] = True
            cell.metadata["jupyter"] = jupyter
            hidden += 1
    return hidden
