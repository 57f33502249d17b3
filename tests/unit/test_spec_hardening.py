"""Regression tests for what fuzzing found in spec, import and CLI input: each case once failed with
another exception than a ContainersError, hung, or read a file outside the workspace.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from traitlets.config import Config

from jupyter_containers.cli import main
from jupyter_containers.errors import SpecError
from jupyter_containers.images.builder import Builder
from jupyter_containers.manager import ContainersManager
from jupyter_containers.spec.capture import modules_from_files
from jupyter_containers.spec.importers import import_source
from jupyter_containers.spec.model import Environment
from jupyter_containers.spec.parse import load_environment, load_spec, parse_resources, spec_from_dict
from jupyter_containers.spec.requirements import read_requirements
from jupyter_containers.spec.writer import add_environment_to_file
from jupyter_containers.units import parse_cpus, parse_duration, parse_size

SECRET = "root:TOPSECRET:0:0"


@pytest.fixture
def tree(tmp_path):
    """A workspace with a spec folder, and a folder beside it holding a secret."""
    workspace, outside = tmp_path / "ws", tmp_path / "outside"
    workspace.mkdir()
    outside.mkdir()
    (outside / "shadow").write_text(f"{SECRET}\n")
    (workspace / "requirements.txt").write_text("six\n")
    return workspace, outside


def spec(folder: Path, body: str) -> Path:
    path = folder / "containers.toml"
    path.write_text(body, encoding="utf-8")
    return path


def cli(argv, capsys) -> tuple[int, str]:
    status = main(argv)
    return status, capsys.readouterr().err


# ------------------------------------------------------------------ 1. references stay in the workspace
@pytest.mark.parametrize(
    "reference",
    ["../outside/shadow", "../../../../../../../../{outside}/shadow", "{outside}/shadow", "link", "dirlink/shadow"],
)
def test_a_requirements_reference_out_of_the_spec_folder_is_refused(tree, reference):
    # given a spec naming a file outside its folder (by .., absolute path, or a symlink)
    workspace, outside = tree
    os.symlink(outside / "shadow", workspace / "link")
    os.symlink(outside, workspace / "dirlink")
    reference = reference.format(outside=outside)
    path = spec(workspace, f'[environments.x]\nrequirements = ["requirements.txt", {json.dumps(reference)}]\n')
    # when it is loaded
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    # then the error names the reference and its key, and never the file's content
    message = str(caught.value)
    assert caught.value.key == "environments.x.requirements[1]"
    assert repr(reference)[:60] in message and "outside the folder" in message
    assert "allowed_reference_roots" in message
    assert SECRET not in message


def test_an_include_out_of_the_spec_folder_is_refused_when_building(tree):
    # given a requirements file inside the folder that includes one outside it
    workspace, _ = tree
    (workspace / "requirements.txt").write_text("six\n-r ../outside/shadow\n")
    env = load_environment("x", spec(workspace, '[environments.x]\nrequirements = ["requirements.txt"]\n'))
    # when the build reads the requirement files
    with pytest.raises(SpecError) as caught:
        Builder(inject_ca_bundle=False, inject_index=False)._inputs(env, "python:3.11-slim", False)
    # then the include is refused, naming the line that includes it
    assert "included file '../outside/shadow' is outside the folder" in str(caught.value)
    assert caught.value.key == "line 2" and SECRET not in str(caught.value)


def test_a_reference_swapped_for_a_symlink_after_loading_is_refused_when_building(tree):
    workspace, outside = tree
    env = load_environment("x", spec(workspace, '[environments.x]\nrequirements = ["requirements.txt"]\n'))
    (workspace / "requirements.txt").unlink()
    os.symlink(outside / "shadow", workspace / "requirements.txt")
    with pytest.raises(SpecError, match="outside the folder") as caught:
        Builder(inject_ca_bundle=False, inject_index=False)._inputs(env, "python:3.11-slim", False)
    assert caught.value.key == "environments.x.requirements[0]" and SECRET not in str(caught.value)


def test_allowed_reference_roots_admit_a_folder_outside(tree):
    # given a shared folder allowed by configuration
    workspace, outside = tree
    (outside / "shared.txt").write_text("numpy\n")
    path = spec(workspace, f'[environments.x]\nrequirements = ["{outside}/shared.txt"]\n')
    config = Config()
    config.Builder.allowed_reference_roots = [str(outside)]
    manager = ContainersManager(spec_path=path, config=config)
    # when the environment is loaded and its inputs read, then the file is used
    env = manager.environment("x")
    inputs, _, _ = manager.builder._inputs(env, "python:3.11-slim", False)
    assert "numpy" in inputs.requirements
    # and without the configuration it is refused
    with pytest.raises(SpecError, match="outside the folder"):
        ContainersManager(spec_path=path).environment("x")


def test_an_imported_binder_file_that_links_out_is_refused(tree):
    workspace, outside = tree
    (workspace / "binder").mkdir()
    os.symlink(outside / "shadow", workspace / "binder" / "apt.txt")
    with pytest.raises(SpecError, match="outside the folder") as caught:
        import_source(workspace)
    assert SECRET not in str(caught.value)


# ------------------------------------------------------------------------- 2. YAML bombs, large files
BILLION_LAUGHS = "\n".join(
    [
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
        *(
            f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]"
            for i in range(8)  # b .. i: 9**9 strings once expanded
        ),
        "name: *i",
        "dependencies: [python=3.11]",
    ]
)


def test_a_yaml_bomb_is_refused_at_once(tmp_path):
    # given a 600-byte environment.yml whose aliases expand to 9**9 strings
    path = tmp_path / "environment.yml"
    path.write_text(BILLION_LAUGHS)
    assert path.stat().st_size < 700
    # when it is imported, then it is refused, naming the file, in well under a second
    started = time.perf_counter()
    with pytest.raises(SpecError, match=r"environment.yml: line 2: invalid YAML: found the alias \*a"):
        import_source(path)
    assert time.perf_counter() - started < 2


@pytest.mark.parametrize("name", ["containers.toml", "requirements.txt", "environment.yml", "include"])
def test_files_larger_than_1_mib_are_refused_naming_the_file(tmp_path, name):
    big = "# " + "x" * (1 << 20) + "\n"
    if name == "include":
        (tmp_path / "big.txt").write_text(big)
        (tmp_path / "requirements.txt").write_text("-r big.txt\n")
        call, shown = (lambda: import_source(tmp_path / "requirements.txt")), "big.txt"
    else:
        (tmp_path / name).write_text(big if name != "containers.toml" else "[environments.x]\n" + big)
        call = (
            (lambda: load_spec(tmp_path / name))
            if name == "containers.toml"
            else lambda: import_source(tmp_path / name)
        )
        shown = name
    with pytest.raises(SpecError, match=rf"{shown}: is larger than 1 MiB"):
        call()


def test_a_fifo_include_is_refused_instead_of_blocking(tmp_path):
    os.mkfifo(tmp_path / "pipe.txt")
    (tmp_path / "requirements.txt").write_text("-r pipe.txt\n")
    with pytest.raises(SpecError, match="pipe.txt: is not a regular file"):
        import_source(tmp_path / "requirements.txt")


def test_a_diamond_of_includes_reads_each_file_once(tmp_path):
    # 30 files each including the next twice: 2**30 reads if nothing remembered what was read
    for i in range(30):
        (tmp_path / f"r{i}.txt").write_text(f"pkg{i}\n-r r{i + 1}.txt\n-r r{i + 1}.txt\n")
    (tmp_path / "r30.txt").write_text("last\n")
    parsed = read_requirements(tmp_path / "r0.txt")
    assert len(parsed.files) == 31 and parsed.requirements[-1] == "last"


# ------------------------------------------------------------------------------------- 3. deep nesting
def test_deeply_nested_toml_is_a_spec_error(tmp_path, capsys):
    path = spec(tmp_path, "[environments.x]\npip = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(SpecError, match="nested more than 64 levels"):
        load_spec(path)
    status, err = cli(["spec", "show", "x", "-f", str(path)], capsys)
    assert status == 1 and "nested more than 64 levels" in err and "Traceback" not in err


def test_deeply_nested_yaml_is_a_spec_error(tmp_path):
    path = tmp_path / "environment.yml"
    path.write_text("name: " + "[" * 20000 + "]" * 20000 + "\n")
    with pytest.raises(SpecError, match="environment.yml: the document is nested more than 64 levels"):
        import_source(path)


def test_deeply_nested_json_sent_to_the_rest_api_is_a_spec_error(tmp_path):
    doc: object = "x"
    for _ in range(3000):
        doc = [doc]
    with pytest.raises(SpecError, match="nested more than 64 levels"):
        spec_from_dict({"environments": {"x": {"pip": doc}}}, tmp_path / "containers.toml")


def test_a_deeply_nested_notebook_is_a_spec_error(tmp_path):
    path = tmp_path / "n.ipynb"
    path.write_text('{"cells": ' + "[" * 100000 + "]" * 100000 + "}")
    with pytest.raises(SpecError, match="n.ipynb"):
        modules_from_files([path])


# --------------------------------------------------------------------- 4. schema errors name the key
@pytest.mark.parametrize("seed", ["0", "1", "2", "3"])
def test_an_env_variable_error_in_an_environment_with_a_dot_names_the_key(tmp_path, seed):
    # given an environment whose name holds a dot and an invalid variable name (it failed with a KeyError,
    # depending on the hash seed)
    path = spec(tmp_path, '[environments."a.b"]\nenv = { "1X" = "v" }\n')
    code = (
        "import sys\nfrom jupyter_containers.errors import SpecError\n"
        "from jupyter_containers.spec.parse import load_spec\n"
        f"try:\n    load_spec({str(path)!r})\nexcept SpecError as exc:\n    print(exc)\n    sys.exit(0)\nsys.exit(3)\n"
    )
    # when it is loaded under several hash seeds
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": seed}
    )
    # then the error names the key path (quoted) and what is allowed
    assert done.returncode == 0, done.stderr
    assert "environments.\"a.b\".env: environment variable name '1X' is not allowed" in done.stdout
    assert "letters, digits and '_'" in done.stdout


@pytest.mark.parametrize(
    ("body", "key", "text"),
    [
        ('[environments."a.b"]\npips = []\n', 'environments."a.b".pips', "unknown key 'pips' (did you mean 'pip'?)"),
        ('[environments."a.b".resources]\ncpus = "x"\n', 'environments."a.b".resources.cpus', "expected a positive"),
        ('[environments."a.b"]\npip = [1]\n', 'environments."a.b".pip[0]', "expected a list of pip requirement"),
        ('[environments."A.B"]\n', 'environments."A.B"', "environment name 'A.B' is not allowed"),
        ('[environments."a.b".env]\nX = 5\n', 'environments."a.b".env.X', "5 is not allowed"),
        ("[environments.x.resources]\ngpus = [[1], [1]]\n", "environments.x.resources.gpus", "is not allowed"),
        ("[environments.x.resources]\nmemory = 0\n", "environments.x.resources.memory", "is out of range (1 to"),
        ("[environments.x.resources]\npids = 0\n", "environments.x.resources.pids", "is out of range (1 to 4194304)"),
    ],
)
def test_schema_errors_name_the_key_and_what_is_allowed(tmp_path, body, key, text):
    with pytest.raises(SpecError) as caught:
        load_spec(spec(tmp_path, body))
    assert caught.value.key == key
    assert text in str(caught.value)


# --------------------------------------------------------------- 5. NULs, types, folders, huge numbers
def test_nul_bytes_in_paths_are_spec_errors(tmp_path, capsys):
    (tmp_path / "requirements.txt").write_text("six\n")
    with pytest.raises(SpecError, match="contains a NUL byte"):
        load_spec(str(tmp_path / "containers.toml\0"))
    with pytest.raises(SpecError, match="contains a NUL byte") as caught:
        load_spec(spec(tmp_path, '[environments.x]\nrequirements = ["a\\u0000b"]\n'))
    assert caught.value.key == "environments.x.requirements[0]"
    with pytest.raises(SpecError, match="contains a NUL byte"):
        import_source(tmp_path / "requirements.txt\0")
    with pytest.raises(SpecError, match="contains a NUL byte"):
        add_environment_to_file(tmp_path / "out\0.toml", Environment(name="x"))


def test_paths_longer_than_file_systems_allow_are_spec_errors(tmp_path):
    """Found by the spec fuzzer: a 300-character requirements path was an OSError (ENAMETOOLONG)."""
    with pytest.raises(SpecError, match="longer than file systems allow") as caught:
        load_spec(spec(tmp_path, f'[environments.x]\nrequirements = ["{"a" * 300}.txt"]\n'))
    assert caught.value.key == "environments.x.requirements[0]"
    with pytest.raises(SpecError, match="longer than file systems allow"):
        load_spec(spec(tmp_path, f'[environments.x]\nrequirements = ["{"d/" * 2100}r.txt"]\n'))


@pytest.mark.parametrize(
    "argv",
    [
        ["spec", "show", "x", "-f", "a\0b"],
        ["import", "requirements.txt\0"],
        ["import", "requirements.txt", "-o", "o\0.toml"],
        ["run", "x", "-v", "data\0:/data", "--", "true"],
        ["run", "x", "-e", "A=\0", "--", "true"],
        ["run", "x", "--", "echo", "a\0"],
        ["execute", "n\0.ipynb", "--env", "x"],
    ],
)
def test_nul_bytes_in_arguments_are_usage_errors(tmp_path, monkeypatch, capsys, argv):
    monkeypatch.chdir(tmp_path)
    spec(tmp_path, "[environments.x]\n")
    status, err = cli(argv, capsys)
    assert status == 1 and "contains a NUL byte" in err


def test_a_non_list_dynamic_in_a_pyproject_is_a_spec_error(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "p"\ndynamic = 5\n')
    with pytest.raises(SpecError, match="is not a list of field names") as caught:
        import_source(tmp_path / "pyproject.toml")
    assert caught.value.key == "project.dynamic"


def test_import_into_a_missing_folder_says_it_does_not_exist(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "requirements.txt").write_text("six\n")
    status, err = cli(["import", "requirements.txt", "-o", "missing-dir/containers.toml"], capsys)
    assert status == 1 and "the folder missing-dir does not exist" in err


def test_import_into_a_folder_says_to_name_the_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "requirements.txt").write_text("six\n")
    status, err = cli(["import", "requirements.txt", "-o", str(tmp_path)], capsys)
    assert status == 1 and "is a folder" in err


@pytest.mark.parametrize(
    ("flag", "value", "text"),
    [
        ("--timeout", "9223372036854775807", "at most 366 days"),
        ("--timeout", "inf", "is not a duration"),
        ("--cpus", "1e300", "is over the largest allowed, 4096 CPUs"),
        ("--cpus", "0.001", "is below the smallest allowed, 0.01 CPUs"),
        ("--cpus", "inf", "is not a CPU count"),
        ("--memory", "0", "below the smallest allowed, 1 byte (0 would mean no limit)"),
        ("--memory", "2p", "larger than the largest size allowed, 1 PiB"),
        ("--shm-size", "9" * 5000, "larger than the largest size allowed"),
        ("--pids-limit", "99999999999", "from 1 to 4194304"),
        ("--pids-limit", "1e400", "from 1 to 4194304"),
        ("--gpus", "99999999999999999999", "use 0 to 1024"),
        ("--gpus", "device=0;rm", "is not a list of GPU device ids"),
    ],
)
def test_out_of_range_limits_are_named_before_any_engine_call(tmp_path, monkeypatch, capsys, flag, value, text):
    # given limits no engine accepts (or that Docker would read as "unlimited")
    monkeypatch.chdir(tmp_path)
    spec(tmp_path, "[environments.x]\n")
    # when a run asks for them, then the flag is named and no engine is asked
    status, err = cli(["run", "x", flag, value, "--", "true"], capsys)
    assert status == 1 and err.startswith(f"jupyter-containers: error: {flag}: ") and text in err
    assert "engine" not in err


def test_unlimited_swap_stays_allowed_in_a_spec():
    assert parse_resources({"memory": "1g", "memory_swap": -1}).memory_swap == -1


@pytest.mark.parametrize("value", [0, "0", "0k", -1, "-5"])
def test_zero_or_negative_sizes_never_mean_unlimited(value):
    with pytest.raises(ValueError, match="size"):
        parse_size(value)


@pytest.mark.parametrize(
    ("parse", "value"),
    [
        (parse_duration, "1" * 100000 + "x"),
        (parse_duration, "1h" + " " * 100000 + "x"),
        (parse_size, "1" + " " * 100000 + "x"),
        (parse_cpus, " " * 100000 + "x"),
    ],
)
def test_unit_parsing_is_linear_in_the_input(parse, value):
    started = time.perf_counter()
    with pytest.raises(ValueError):
        parse(value)
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize(
    "body",
    [
        '[environments.x.resources]\ntimeout = "' + "1" * 40 + '!"\n',  # once exponential in the schema pattern
        '[environments.x.resources]\nmemory = "1' + " " * 50000 + 'x"\n',  # once quadratic
    ],
)
def test_schema_patterns_do_not_backtrack(tmp_path, body):
    started = time.perf_counter()
    with pytest.raises(SpecError, match="is not allowed"):
        load_spec(spec(tmp_path, body))
    assert time.perf_counter() - started < 1


def test_a_long_run_of_spaces_in_a_requirements_file_is_fast(tmp_path):
    (tmp_path / "requirements.txt").write_text("six" + " " * 300000 + "# comment\n" + " " * 300000 + "\n")
    started = time.perf_counter()
    assert read_requirements(tmp_path / "requirements.txt").requirements == ("six",)
    assert time.perf_counter() - started < 1


def test_an_invalid_requirement_is_not_echoed_twice(tmp_path):
    (tmp_path / "requirements.txt").write_text("six" + " " * 5000 + "x\n")
    with pytest.raises(SpecError) as caught:
        read_requirements(tmp_path / "requirements.txt")
    assert len(str(caught.value)) < 500


def test_a_requirement_with_a_line_break_is_refused(tmp_path):
    path = spec(tmp_path, '[environments.x]\npip = ["six\\n-r /etc/passwd"]\n')
    with pytest.raises(SpecError, match="holds a line break") as caught:
        load_spec(path)
    assert caught.value.key == "environments.x.pip[0]"


def test_a_lone_surrogate_sent_as_json_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError, match="lone surrogate") as caught:
        spec_from_dict(json.loads('{"environments": {"x": {"env": {"A": "\\ud800"}}}}'), tmp_path / "c.toml")
    assert caught.value.key == "environments.x.env.A"


def test_a_control_character_in_an_import_note_still_writes_a_loadable_spec(tmp_path):
    # found by the fuzzer: the note naming an extra "\x08" became a TOML comment that no longer parsed
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "p"\n[project.optional-dependencies]\n"\\b" = []\n')
    result = import_source(tmp_path / "pyproject.toml")
    add_environment_to_file(tmp_path / "containers.toml", result.environment, result.notes)
    assert "p" in load_spec(tmp_path / "containers.toml").environments
    assert "\\x08" in (tmp_path / "containers.toml").read_text()


def test_a_missing_capture_source_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError, match="missing.py: the file does not exist"):
        modules_from_files([tmp_path / "missing.py"])
