"""Papermill's ways of passing parameters (-y, -b, --parameters-file, REST JSON) and how they are injected."""

from __future__ import annotations

import base64

import pytest
from nbformat.v4 import new_code_cell, new_notebook

from jupyter_containers.errors import RequestError
from jupyter_containers.jobs.parameters import (
    inject_parameters,
    parameter_warnings,
    parameters_source,
    parse_parameters,
    read_parameters_file,
    validate_parameters,
)


def test_yaml_base64_and_files_give_lists_and_dicts_merged_in_papermills_order(tmp_path):
    # given a parameters file, a base64 YAML text, a YAML text and -p/-r pairs that overlap
    params = tmp_path / "params.yaml"
    params.write_text("sizes: [1, 2]\ncfg:\n  depth: 3\n  names: [a, b]\nwhen: 2024-01-31\nn: 0\n")
    encoded = base64.b64encode(b"n: -1\nlabel: from-base64\n").decode()
    # when they are merged
    merged = parse_parameters(
        [("n", "5")], [("tag", "7")], base64_texts=[encoded], files=[params], yaml_texts=["label: from-yaml"]
    )
    # then structures stay structures, dates stay strings, and later sources win (-b, file, -y, -p, -r)
    assert merged == {
        "n": 5,
        "label": "from-yaml",
        "sizes": [1, 2],
        "cfg": {"depth": 3, "names": ["a", "b"]},
        "when": "2024-01-31",
        "tag": "7",
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"yaml_texts": ["[1, 2]"]}, "-y/--parameters-yaml: the YAML must be a mapping"),
        ({"yaml_texts": ["a: ["]}, "-y/--parameters-yaml: not valid YAML"),
        ({"yaml_texts": ["class: 1"]}, "'class' is not a Python variable name"),
        ({"base64_texts": ["not base64!"]}, "-b/--parameters-base64 'not base64!': not base64-encoded"),
        ({"files": ["/nonexistent/params.yaml"]}, "--parameters-file /nonexistent/params.yaml: no such file"),
    ],
)
def test_unusable_parameter_sources_are_refused_naming_the_option(kwargs, message):
    with pytest.raises(RequestError) as info:
        parse_parameters(**kwargs)
    assert message in str(info.value)


def test_nested_values_are_written_as_python_literals():
    # given values JSON or YAML can hold, with non-finite floats nested in a list
    source = parameters_source({"bounds": [0, float("inf"), float("nan")], "cfg": {"a": None, "b": [True]}})
    # then the injected cell is valid Python that gives them back
    assert source == "# Parameters\nbounds = [0, float('inf'), float('nan')]\ncfg = {'a': None, 'b': [True]}"
    scope: dict = {}
    exec(source, scope)
    assert scope["bounds"][1] == float("inf") and scope["cfg"] == {"a": None, "b": [True]}


def _nested(depth: int) -> list:
    value: list = [1]
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ([1, 2], "parameters: give a mapping of parameter names to values, not a list"),
        ({"a b": 1}, "parameter name 'a b' is not a Python variable name"),
        ({"x": {"k": {1, 2}}}, "parameters.x.k: a value of type set is not a parameter value"),
        ({"deep": _nested(40)}, "nested deeper than 32"),
        ({"big": ["x" * 1000] * 2000}, "over 1024 KiB"),
    ],
)
def test_rest_parameters_are_validated_with_the_path_of_the_bad_value(parameters, message):
    with pytest.raises(RequestError) as info:
        validate_parameters(parameters)
    assert message in str(info.value)


def test_a_yaml_alias_bomb_is_refused_by_size(tmp_path):
    # given a small file whose aliases would expand to millions of values
    levels = ["a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 7)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(levels))
    # then it is refused, not expanded
    with pytest.raises(RequestError, match="over 1024 KiB"):
        read_parameters_file(path)


def test_papermills_warnings_no_parameters_cell_and_unknown_names():
    # given a notebook without a parameters cell, and one whose parameters cell sets x and y
    bare = new_notebook(cells=[new_code_cell("print(1)")])
    tagged = new_notebook(cells=[new_code_cell("x = 1\ny: int = 2", metadata={"tags": ["parameters"]})])
    # then the first is warned about, the second only for a name it does not set, and nothing without parameters
    assert "has no cell tagged 'parameters'" in parameter_warnings(bare, {"x": 1})[0]
    assert parameter_warnings(tagged, {"x": 3, "z": 4}) == [
        "parameter 'z' is not set in the notebook's parameters cell (it sets x, y)"
    ]
    assert parameter_warnings(bare, {}) == []


def test_report_mode_hides_the_injected_cell_too():
    nb = new_notebook(cells=[new_code_cell("x = 1", metadata={"tags": ["parameters"]})])
    index = inject_parameters(nb, {"x": [1, 2]}, hidden=True)
    assert nb.cells[index].metadata["jupyter"] == {"source_hidden": True}
    assert nb.cells[index].source == "# Parameters\nx = [1, 2]"
