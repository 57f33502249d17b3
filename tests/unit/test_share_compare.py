"""reproduce's comparison (nbdime underneath): exact text, sanitizers in nbval's format, numeric tolerance,
images by content, errors by type and message, execution order."""

from __future__ import annotations

import base64
import copy

import nbformat
from nbformat.v4 import new_code_cell, new_notebook, new_output

from jupyter_containers.share.reproduce import compare_notebooks, read_sanitizers

PNG = base64.b64encode(b"\x89PNG fake image bytes" * 4).decode()


def _nb():
    return new_notebook(
        cells=[
            new_code_cell(
                "print(x)",
                execution_count=1,
                outputs=[new_output("stream", name="stdout", text="ran at 12:00:01 in 0x7f00aa\n")],
            ),
            new_code_cell(
                "x",
                execution_count=2,
                outputs=[
                    new_output("execute_result", data={"text/plain": "mean 0.30000000000000004"}, execution_count=2)
                ],
            ),
            new_code_cell(
                "img",
                execution_count=3,
                outputs=[new_output("display_data", data={"image/png": PNG, "application/json": {"v": [1.0, 2.0]}})],
            ),
            new_code_cell(
                "1/0",
                execution_count=4,
                outputs=[
                    new_output(
                        "error",
                        ename="ZeroDivisionError",
                        evalue="division by zero",
                        traceback=["\x1b[31m/home/a/x.py"],
                    )
                ],
            ),
        ]
    )


def test_identical_notebooks_match():
    nb = _nb()
    assert compare_notebooks(nb, copy.deepcopy(nb)) == ([], "")


def test_a_changed_stream_is_reported_with_its_cell_and_nbdime_text():
    old, new = _nb(), _nb()
    new.cells[0].outputs[0]["text"] = "ran at 12:00:01 in 0x7f00aa\nextra\n"
    cells, text = compare_notebooks(old, new)
    assert [c.index for c in cells] == [0] and cells[0].what == ["outputs differ"]
    assert "extra" in text


def test_sanitizer_files_in_nbval_format_ignore_patterns(tmp_path):
    old, new = _nb(), _nb()
    new.cells[0].outputs[0]["text"] = "ran at 13:14:15 in 0x55bb01\n"
    cfg = tmp_path / "sanitize.cfg"
    cfg.write_text(
        "[time]\nregex: \\d{2}:\\d{2}:\\d{2}\nreplace: TIME\n\n[address]\nregex: 0x[0-9a-f]+\nreplace: ADDR\n"
    )
    assert compare_notebooks(old, new)[0]
    assert compare_notebooks(old, new, sanitizers=read_sanitizers([cfg]))[0] == []


def test_numbers_in_text_and_data_match_within_the_tolerance_only():
    old, new = _nb(), _nb()
    new.cells[1].outputs[0]["data"]["text/plain"] = "mean 0.3000001"
    new.cells[2].outputs[0]["data"]["application/json"] = {"v": [1.0, 2.0000001]}
    assert [c.index for c in compare_notebooks(old, new)[0]] == [1, 2]
    assert compare_notebooks(old, new, rtol=1e-6)[0] == []


def test_images_by_content_errors_by_type_and_message_and_execution_order():
    old, new = _nb(), _nb()
    new.cells[2].outputs[0]["data"]["image/png"] = PNG[:20] + "\n" + PNG[20:]  # same bytes, wrapped
    new.cells[3].outputs[0]["traceback"] = ["another path, other colours"]
    assert compare_notebooks(old, new)[0] == []
    new.cells[3].outputs[0]["ename"] = "ValueError"
    assert [c.index for c in compare_notebooks(old, new)[0]] == [3]
    reordered = _nb()
    reordered.cells[0].execution_count, reordered.cells[1].execution_count = 2, 1
    cells = compare_notebooks(old, reordered)[0]
    assert any("execution order" in w for c in cells for w in c.what)
    nbformat.validate(new)
