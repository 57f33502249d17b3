"""Tracebacks from a container kernel, as the notebook numbers its cells."""

from __future__ import annotations

from jupyter_containers.kernel.session import renumber_traceback


def test_the_container_kernels_cell_number_becomes_the_notebooks():
    lines = [
        "\x1b[0;31mZeroDivisionError\x1b[0m  Traceback (most recent call last)",
        "\x1b[36mCell\x1b[39m\x1b[36m \x1b[39m\x1b[32mIn[4]\x1b[39m\x1b[32m, line 4\x1b[39m",
        "Cell In[4], line 4",
        "Input In [4], in <cell line: 1>()",
        '  File "<ipython-input-4-0123abcd>", line 1',
        "Cell In[14], line 2",  # another cell's number: a function defined in an earlier cell
    ]
    assert renumber_traceback(lines, 4, 7)[1:] == [
        "\x1b[36mCell\x1b[39m\x1b[36m \x1b[39m\x1b[32mIn[7]\x1b[39m\x1b[32m, line 4\x1b[39m",
        "Cell In[7], line 4",
        "Input In [7], in <cell line: 1>()",
        '  File "<ipython-input-7-0123abcd>", line 1',
        "Cell In[14], line 2",
    ]
