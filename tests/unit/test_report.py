"""What an output notebook shows a reader: papermill's error markers and report mode."""

from __future__ import annotations

from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from jupyter_containers.jobs.report import ERROR_MARKER_TAG, add_error_markers, hide_code, remove_error_markers


def executed(*sources: str) -> dict:
    nb = new_notebook(cells=[new_code_cell(s, execution_count=i + 1) for i, s in enumerate(sources)])
    nb.cells.insert(0, new_markdown_cell("# Title"))
    return nb


def test_a_failure_adds_a_top_cell_linking_to_an_anchor_before_the_failing_cell():
    # given a run that failed in its third cell (In [2])
    nb = executed("x = 1", "1 / 0", "print(x)")
    # when the markers are added
    add_error_markers(nb, 2, "ZeroDivisionError: division by zero <b>")
    # then the top cell links to the anchor just before the failing cell, both tagged as papermill tags them
    tags = [c.metadata.get("tags") for c in nb.cells]
    assert tags == [[ERROR_MARKER_TAG], None, None, [ERROR_MARKER_TAG], None, None]
    assert 'href="#papermill-error-cell">In [2]</a>' in nb.cells[0].source
    assert "division by zero &lt;b&gt;" in nb.cells[0].source  # escaped
    assert 'id="papermill-error-cell"' in nb.cells[3].source
    assert nb.cells[4].source == "1 / 0"


def test_markers_of_an_earlier_run_are_removed_and_replaced():
    # given an output notebook that an earlier run marked as failing in "x = 1"
    nb = executed("x = 1", "y = 2")
    add_error_markers(nb, 1, "old failure")
    # when a new run removes them and fails elsewhere
    assert remove_error_markers(nb) == 2
    add_error_markers(nb, 2, "new failure")
    # then only the new markers are there
    marked = [c.source for c in nb.cells if ERROR_MARKER_TAG in (c.metadata.get("tags") or [])]
    assert len(marked) == 2 and all("new failure" in s for s in marked)


def test_a_run_that_stopped_before_any_cell_gets_a_top_cell_only():
    nb = executed("x = 1")
    add_error_markers(nb, None, "the kernel did not start")
    assert len(nb.cells) == 3 and "before any cell ran: the kernel did not start" in nb.cells[0].source


def test_report_mode_hides_code_cells_only_and_keeps_their_other_jupyter_metadata():
    nb = executed("x = 1", "y = 2")
    nb.cells[1].metadata["jupyter"] = {"outputs_hidden": False}
    assert hide_code(nb) == 2
    assert nb.cells[1].metadata["jupyter"] == {"outputs_hidden": False, "source_hidden": True}
    assert nb.cells[2].metadata["jupyter"] == {"source_hidden": True}
    assert "jupyter" not in nb.cells[0].metadata
