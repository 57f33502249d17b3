"""Spec parsing and the error messages users see for bad input."""

from pathlib import Path

import pytest

from jupyter_containers.errors import SpecError, SpecNotFoundError
from jupyter_containers.spec.parse import find_spec_file, load_environment, load_spec, parse_resources

FULL = """
[environments.vision]
description = "image models"
base = "python:3.11-slim"
python = "3.11"
pip = ["numpy>=1.26", "pandas"]
apt = ["libgl1"]
requirements = ["requirements.txt"]
post_build = ["python -c 'import numpy'"]
env = { PYTHONHASHSEED = "0" }

[environments.vision.resources]
cpus = 2
memory = "4GiB"
memory_swap = -1
gpus = 1
shm_size = "1g"
pids = 512
timeout = "30m"
network = true

[environments.tiny]
pip = []
"""


def write(tmp_path: Path, text: str, name: str = "containers.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_full_example_parses_into_normalized_values(tmp_path):
    # given the complete example of docs/spec.md
    (tmp_path / "requirements.txt").write_text("six\n")
    spec = load_spec(write(tmp_path, FULL))
    # then units are converted and lists are tuples
    env = spec.environments["vision"]
    assert env.pip == ("numpy>=1.26", "pandas")
    assert env.apt == ("libgl1",)
    assert env.env == {"PYTHONHASHSEED": "0"}
    r = env.resources
    assert (r.cpus, r.memory, r.memory_swap, r.gpus, r.shm_size, r.pids, r.timeout, r.network) == (
        2.0,
        4 * 2**30,
        -1,
        1,
        2**30,
        512,
        1800.0,
        True,
    )
    assert list(spec.environments) == ["vision", "tiny"]


def test_docs_example_is_valid(tmp_path):
    # given the complete example of docs/spec.md (its first toml block)
    text = (Path(__file__).parents[2] / "docs" / "spec.md").read_text()
    block = text.split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "requirements.txt").write_text("six\n")
    # then it parses, with every field set
    env = load_spec(write(tmp_path, block)).environments["vision"]
    assert env.base and env.python and env.pip and env.apt and env.requirements and env.post_build and env.env
    assert None not in env.resources.to_dict().values() and len(env.resources.to_dict()) == 8


def test_pyproject_table(tmp_path):
    write(
        tmp_path,
        '[project]\nname = "x"\n[tool.jupyter-containers.environments.main]\npip = ["six"]\n',
        "pyproject.toml",
    )
    assert find_spec_file(tmp_path).name == "pyproject.toml"
    assert load_environment("main", tmp_path / "pyproject.toml").pip == ("six",)


def test_pyproject_errors_carry_the_table_prefix(tmp_path):
    path = write(tmp_path, "[tool.jupyter-containers.environments.main]\npips = []\n", "pyproject.toml")
    with pytest.raises(SpecError, match=r"tool\.jupyter-containers\.environments\.main\.pips: unknown key"):
        load_spec(path)


def test_no_spec_file_says_how_to_make_one(tmp_path):
    with pytest.raises(SpecNotFoundError, match="jupyter-containers import requirements.txt"):
        find_spec_file(tmp_path)


def test_unknown_environment_suggests_the_closest(tmp_path):
    path = write(tmp_path, FULL.replace('requirements = ["requirements.txt"]\n', ""))
    with pytest.raises(SpecNotFoundError, match=r"no environment named 'visoin' \(did you mean 'vision'\?\)"):
        load_environment("visoin", path)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('pips = ["x"]', "environments.x.pips: unknown key 'pips' (did you mean 'pip'?); allowed keys: apt"),
        (
            'resources = { memory = "4 gigs" }',
            "environments.x.resources.memory: '4 gigs' is not allowed; expected a "
            "number of bytes or a size such as '512m'",
        ),
        ("resources = { cpuz = 2 }", "environments.x.resources.cpuz: unknown key 'cpuz' (did you mean 'cpus'?)"),
        (
            'resources = { gpus = "most" }',
            "environments.x.resources.gpus: 'most' is not allowed; expected a number "
            'of GPUs, "all", or a list of device ids',
        ),
        (
            "python = 3.11",
            'environments.x.python: 3.11 is not allowed; expected a Python version such as "3.11" '
            'or "3.11.9" (write it in quotes)',
        ),
        ('apt = ["Lib GL"]', "environments.x.apt[0]: 'Lib GL' is not allowed; expected a list of Debian package"),
        ('pip = ["-e ."]', "environments.x.pip[0]: '-e .' is a pip option, not a requirement"),
        ('pip = ["./mypkg"]', "environments.x.pip[0]: './mypkg' is a local path, which does not exist inside"),
        ('pip = ["numpy>>1"]', "environments.x.pip[0]: 'numpy>>1' is not a valid requirement"),
        ('env = { "A-B" = "1" }', "environments.x.env: environment variable name 'A-B' is not allowed"),
        (
            'requirements = ["missing.txt"]',
            "environments.x.requirements[0]: requirements file 'missing.txt' does not exist",
        ),
        (
            "resources = { pids = 0 }",
            "environments.x.resources.pids: 0 is out of range (1 to 4194304); expected the maximum number of processes",
        ),
        (
            'resources = { timeout = "soon" }',
            "environments.x.resources.timeout: 'soon' is not allowed; expected seconds or a duration",
        ),
    ],
)
def test_errors_name_file_key_value_and_what_is_allowed(tmp_path, body, expected):
    path = write(tmp_path, f"[environments.x]\n{body}\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(info.value).startswith(f"{path}: ")
    assert expected in str(info.value)


def test_environment_name_must_be_image_safe(tmp_path):
    path = write(tmp_path, "[environments.Vision]\n")
    with pytest.raises(SpecError, match="environments.Vision: environment name 'Vision' is not allowed; use lower"):
        load_spec(path)


def test_toml_syntax_error_gives_line_and_column(tmp_path):
    path = write(tmp_path, '[environments.x]\npip = ["a",\nbase = 3\n')
    with pytest.raises(SpecError, match=r"invalid TOML: .*\(at line 3, column \d+\)"):
        load_spec(path)


def test_missing_environments_table(tmp_path):
    with pytest.raises(SpecError, match=r"missing table \[environments\]"):
        load_spec(write(tmp_path, 'title = "x"\n'))


@pytest.mark.parametrize(
    ("raw", "field", "value"),
    [
        ({"gpus": "all"}, "gpus", "all"),
        ({"gpus": "0,2"}, "gpus", ("0", "2")),
        ({"gpus": ["1"]}, "gpus", ("1",)),
        ({"gpus": "device=3"}, "gpus", ("3",)),
        ({"gpus": "2"}, "gpus", 2),
        ({"network": "none"}, "network", False),
        ({"network": "bridge"}, "network", True),
        ({"memory_swap": "-1"}, "memory_swap", -1),
    ],
)
def test_resource_forms_from_the_command_line(raw, field, value):
    assert getattr(parse_resources(raw), field) == value


def test_resources_merge_per_run_overrides():
    spec = parse_resources({"cpus": 2, "memory": "4g", "network": False})
    merged = spec.merged(parse_resources({"memory": "1g"}))
    assert (merged.cpus, merged.memory, merged.network) == (2.0, 2**30, False)
    assert merged.describe() == "2 CPUs, 1 GiB, no network"


def test_post_build_root_is_a_list_of_root_steps(tmp_path):
    # given
    spec = write(tmp_path, '[environments.x]\npost_build = ["echo user"]\npost_build_root = ["apt-get --version"]\n')

    # when
    env = load_spec(spec).environments["x"]

    # then
    assert env.post_build == ("echo user",)
    assert env.post_build_root == ("apt-get --version",)
    assert env.to_dict()["post_build_root"] == ["apt-get --version"]


def test_post_build_root_must_hold_strings(tmp_path):
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, "[environments.x]\npost_build_root = [1]\n"))
    assert "environments.x.post_build_root[0]" in str(info.value)


@pytest.mark.parametrize("version", ["3.7", "3.4", "3.0.1"])
def test_python_below_the_minimum_is_refused_when_the_spec_is_read(tmp_path, version):
    # given
    spec = write(tmp_path, f'[environments.x]\npython = "{version}"\n')

    # when
    with pytest.raises(SpecError) as info:
        load_spec(spec)

    # then file, key, value and the minimum are named, before any build
    assert info.value.key == "environments.x.python"
    assert f"Python '{version}' is not supported" in str(info.value)
    assert "Python 3.8 or newer" in str(info.value)


@pytest.mark.parametrize(
    "text",
    [
        "six",
        "numpy<2.4.6",
        "pandas>=2.1,!=2.2.0",
        "a-b.c_d",
        "numpy<=2.0.0.1",
        "numpy==1.2,",
        "numpy==1.*",
        "numpy[extra]",
        "numpy>=1 ; python_version<'3.12'",
        "numpy>=1.2<3",
        "numpy~=1",
        "numpy==1.",
        "numpy>=",
        "numpy<>1",
        "x-",
    ],
)
def test_the_plain_requirement_shortcut_agrees_with_packaging(text):
    """Requirements the shortcut accepts without importing packaging are exactly ones packaging accepts, and
    everything else gets packaging's verdict and message, as before."""
    from packaging.requirements import InvalidRequirement, Requirement

    from jupyter_containers.spec.parse import _PLAIN_REQUIREMENT_RE, check_requirement

    try:
        Requirement(text)
        valid = True
    except InvalidRequirement:
        valid = False
    if _PLAIN_REQUIREMENT_RE.fullmatch(text):
        assert valid
    if valid:
        assert check_requirement(text) == text
    else:
        with pytest.raises(SpecError, match="is not a valid requirement"):
            check_requirement(text, key="pip[0]")


@pytest.mark.parametrize("text", ["ipykernel", "IPyKernel==7.1.0", "ipy_kernel<8", "Foo.Bar-baz>=1,<2", "six"])
def test_plain_requirement_names_are_packagings_canonical_names(text):
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    from jupyter_containers.spec.parse import plain_requirement_name

    assert plain_requirement_name(text) == canonicalize_name(Requirement(text).name)


@pytest.mark.parametrize(
    ("lines", "brings"),
    [
        (["six", "numpy<2"], False),
        (["six", "IPyKernel==7.1.0"], True),
        (["ipykernel >= 6 ; python_version > '3'"], True),  # not plain: packaging's path
        (["-r other.txt", "ipykernel==7.1.0 --hash=sha256:00"], True),
        (["ipykernel-extras==1", "not a requirement"], False),
    ],
)
def test_whether_the_requirements_bring_ipykernel(lines, brings):
    from jupyter_containers.images.builder import _brings_ipykernel

    assert _brings_ipykernel(lines) is brings
