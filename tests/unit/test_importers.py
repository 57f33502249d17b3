from __future__ import annotations

from pathlib import Path

import pytest

from jupyter_containers.errors import SpecError
from jupyter_containers.spec.importers import import_source, normalize_environment_name
from jupyter_containers.spec.model import Environment

REPO = Path(__file__).resolve().parents[2]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))
    return path


def fields_of(env: Environment) -> dict:
    return {"name": env.name, **env.to_dict()}


# ----------------------------------------------------------------------------------- requirements.txt


def test_requirements_txt_becomes_pip_entries(tmp_path):
    # given
    req = write(tmp_path / "proj" / "requirements.txt", "numpy==1.26.4\n-r base.txt\n")
    write(tmp_path / "proj" / "base.txt", "pandas>=2\n")

    # when
    result = import_source(req)

    # then
    assert result.environment.pip == ("numpy==1.26.4", "pandas>=2")
    assert result.environment.name == "proj"
    assert result.notes == ()


def test_requirements_txt_options_and_constraints_become_notes(tmp_path):
    # given
    req = write(
        tmp_path / "requirements-dev.txt",
        "--index-url https://pypi.example/simple\n--pre\n-c constraints.txt\nnumpy\n",
    )
    write(tmp_path / "constraints.txt", "numpy<2\n")

    # when
    result = import_source(req, name="dev")

    # then
    assert result.environment.pip == ("numpy",)
    assert (
        "--index-url https://pypi.example/simple in requirements-dev.txt was not imported: "
        "configure the index in the host's pip configuration; builds mirror it"
    ) in result.notes
    assert any(n.startswith("--pre in requirements-dev.txt was not imported") for n in result.notes)
    assert any("constraint 'numpy<2'" in n and "[environments.dev].pip" in n for n in result.notes)


def test_requirements_txt_hashes_are_dropped_with_a_note(tmp_path):
    # given
    req = write(tmp_path / "requirements.txt", "numpy==1.26.4 --hash=sha256:abc123\n")

    # when
    result = import_source(req, name="hashed")

    # then
    assert result.environment.pip == ("numpy==1.26.4",)
    assert any("--hash values of 1 requirement(s)" in n for n in result.notes)


def test_requirements_txt_errors_propagate_with_file_and_line(tmp_path):
    # given
    req = write(tmp_path / "requirements.txt", "numpy\n-e .\n")

    # when
    with pytest.raises(SpecError) as info:
        import_source(req)

    # then
    assert info.value.file == str(req.resolve())
    assert info.value.key == "line 2"


# ------------------------------------------------------------------------------------------------ names


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("My Project!", "my-project"), ("__data__science__", "data__science"), ("ÄÖÜ", "default"), ("x" * 80, "x" * 64)],
)
def test_names_from_sources_are_normalized(raw, expected):
    # when
    name = normalize_environment_name(raw)

    # then
    assert name == expected


def test_directory_name_is_normalized_into_the_environment_name(tmp_path):
    # given
    req = write(tmp_path / "My Cool_Project" / "requirements.txt", "numpy\n")

    # when
    result = import_source(req)

    # then
    assert result.environment.name == "my-cool_project"


def test_invalid_explicit_name_is_an_error_with_a_suggestion(tmp_path):
    # given
    req = write(tmp_path / "requirements.txt", "numpy\n")

    # when
    with pytest.raises(SpecError) as info:
        import_source(req, name="Bad Name")

    # then
    assert "'Bad Name' is not allowed" in str(info.value)
    assert "'bad-name'" in str(info.value)


# ------------------------------------------------------------------------------------------ environment.yml


@pytest.mark.parametrize(
    ("dependency", "expected"),
    [
        ("python=3.11", "3.11"),
        ("python==3.11.*", "3.11"),
        ("python=3.11.4", "3.11.4"),
        ("python=3.11.4=h955ad1f_0", "3.11.4"),
        ("python 3.10", "3.10"),
        ("conda-forge::python=3.12", "3.12"),
    ],
)
def test_environment_yml_python_pins(tmp_path, dependency, expected):
    # given
    yml = write(tmp_path / "environment.yml", f"name: demo\ndependencies:\n  - {dependency}\n")

    # when
    result = import_source(yml)

    # then
    assert result.environment.python == expected
    assert result.notes == ()


@pytest.mark.parametrize("dependency", ["python>=3.10", "python", "python=3"])
def test_environment_yml_python_without_a_minor_pin_is_a_note(tmp_path, dependency):
    # given
    yml = write(tmp_path / "environment.yml", f"dependencies:\n  - '{dependency}'\n")

    # when
    result = import_source(yml)

    # then
    assert result.environment.python is None
    assert len(result.notes) == 1
    assert repr(dependency) in result.notes[0]
    assert "was not mapped to python" in result.notes[0]


def test_environment_yml_pip_list_name_and_channels(tmp_path):
    # given
    yml = write(
        tmp_path / "environment.yml",
        "name: Vision Lab\n"
        "channels:\n  - conda-forge\n"
        "dependencies:\n"
        "  - python=3.11\n"
        "  - pip\n"
        "  - pip:\n"
        "    - torch==2.3.0\n"
        "    - -r requirements-extra.txt\n",
    )
    write(tmp_path / "requirements-extra.txt", "opencv-python-headless\n")

    # when
    result = import_source(yml)

    # then
    env = result.environment
    assert env.name == "vision-lab"
    assert env.python == "3.11"
    assert env.pip == ("torch==2.3.0", "opencv-python-headless")
    # the bare '- pip' entry is not silently dropped: every environment has pip, and the note says so
    assert result.notes == (
        "the 'pip' entry in environment.yml's dependencies was not imported: every environment has pip",
    )


def test_environment_yml_conda_packages_are_an_error_listing_them(tmp_path):
    # given
    yml = write(
        tmp_path / "environment.yml",
        "dependencies:\n  - python=3.11\n  - numpy\n  - conda-forge::scipy>=1.11\n  - pip\n",
    )

    # when
    with pytest.raises(SpecError) as info:
        import_source(yml)

    # then
    assert info.value.file == str(yml)
    assert info.value.key == "dependencies"
    assert "conda packages are not supported yet: numpy, scipy; list them under '- pip:'" in str(info.value)


def test_environment_yml_bad_pip_item_names_its_position(tmp_path):
    # given
    yml = write(tmp_path / "environment.yml", "dependencies:\n  - pip:\n    - numpy\n    - -e ./src\n")

    # when
    with pytest.raises(SpecError) as info:
        import_source(yml)

    # then
    assert info.value.key == "dependencies[0].pip[1]"
    assert "-e/--editable" in str(info.value)


def test_environment_yml_variables_become_env(tmp_path):
    # given
    yml = write(tmp_path / "environment.yml", "variables:\n  OMP_NUM_THREADS: 1\ndependencies: []\n")

    # when
    result = import_source(yml, name="vars")

    # then
    assert dict(result.environment.env) == {"OMP_NUM_THREADS": "1"}


def test_environment_yml_unknown_keys_are_notes(tmp_path):
    # given
    yml = write(tmp_path / "environment.yml", "prefix: /opt/conda/envs/x\ndependencies: []\n")

    # when
    result = import_source(yml, name="x")

    # then
    assert result.notes == ("'prefix' in environment.yml was not imported: it has no equivalent in a spec",)


def test_environment_yml_syntax_error_names_the_line(tmp_path):
    # given
    yml = write(tmp_path / "environment.yml", "dependencies:\n  - numpy\n bad: [\n")

    # when
    with pytest.raises(SpecError) as info:
        import_source(yml)

    # then
    assert info.value.file == str(yml)
    assert info.value.key is not None and info.value.key.startswith("line ")
    assert "invalid YAML" in str(info.value)


# ------------------------------------------------------------------------------------------- pyproject.toml


def test_pyproject_dependencies_and_name(tmp_path):
    # given
    pyproject = write(
        tmp_path / "pyproject.toml",
        '[project]\nname = "My_Pkg"\nrequires-python = "==3.11.*"\ndependencies = ["numpy>=1.26", "rich"]\n',
    )

    # when
    result = import_source(pyproject)

    # then
    env = result.environment
    assert env.name == "my_pkg"
    assert env.pip == ("numpy>=1.26", "rich")
    assert env.python == "3.11"
    assert any("the project 'My_Pkg' itself was not added" in n for n in result.notes)


@pytest.mark.parametrize(
    ("specifier", "expected"),
    [("==3.11.*", "3.11"), ("~=3.11.0", "3.11"), (">=3.11,<3.12", "3.11"), ("==3.12.4", "3.12.4")],
)
def test_pyproject_requires_python_pinning_a_minor_version(tmp_path, specifier, expected):
    # given
    pyproject = write(tmp_path / "pyproject.toml", f'[project]\nname = "p"\nrequires-python = "{specifier}"\n')

    # when
    result = import_source(pyproject)

    # then
    assert result.environment.python == expected


@pytest.mark.parametrize("specifier", [">=3.10", "~=3.11", "not a specifier"])
def test_pyproject_requires_python_range_is_a_note(tmp_path, specifier):
    # given
    pyproject = write(tmp_path / "pyproject.toml", f'[project]\nname = "p"\nrequires-python = "{specifier}"\n')

    # when
    result = import_source(pyproject)

    # then
    assert result.environment.python is None
    assert any(f"requires-python {specifier!r}" in n and "was not mapped" in n for n in result.notes)


def test_pyproject_without_dependencies_gives_an_empty_pip_list_and_a_note(tmp_path):
    # given
    pyproject = write(tmp_path / "pyproject.toml", '[project]\nname = "p"\nversion = "1"\n')

    # when
    result = import_source(pyproject)

    # then
    assert result.environment.pip == ()
    assert any("no dependencies were imported" in n for n in result.notes)


def test_pyproject_optional_dependencies_are_notes(tmp_path):
    # given
    pyproject = write(
        tmp_path / "pyproject.toml",
        '[project]\nname = "p"\ndependencies = []\n[project.optional-dependencies]\ntest = ["pytest", "ruff"]\n',
    )

    # when
    result = import_source(pyproject)

    # then
    assert any(n.startswith("optional dependencies [test] (2 requirement(s))") for n in result.notes)


def test_pyproject_invalid_dependency_names_its_key(tmp_path):
    # given
    pyproject = write(tmp_path / "pyproject.toml", '[project]\nname = "p"\ndependencies = ["ok", "bad req!!"]\n')

    # when
    with pytest.raises(SpecError) as info:
        import_source(pyproject)

    # then
    assert info.value.file == str(pyproject)
    assert info.value.key == "project.dependencies[1]"
    assert "'bad req!!'" in str(info.value)


# -------------------------------------------------------------------------------------------- binder folder


def make_binder(folder: Path) -> None:
    write(folder / "requirements.txt", "numpy==1.26.4\n")
    write(folder / "apt.txt", "# system libraries\nlibgl1\n\nffmpeg  # video\n")
    write(folder / "runtime.txt", "python-3.11\n")
    write(folder / "postBuild", '#!/bin/bash\nset -euo pipefail\necho "done" > /tmp/marker\n')


def test_binder_folder_imports_every_supported_file(tmp_path):
    # given
    repo = tmp_path / "analysis"
    make_binder(repo / "binder")

    # when
    result = import_source(repo)

    # then
    env = result.environment
    assert env.name == "analysis"
    assert env.pip == ("numpy==1.26.4",)
    assert env.apt == ("libgl1", "ffmpeg")
    assert env.python == "3.11"
    assert env.post_build == ('#!/bin/bash\nset -euo pipefail\necho "done" > /tmp/marker\n',)
    assert result.notes == ()


def test_dot_binder_folder_is_used(tmp_path):
    # given
    write(tmp_path / "repo" / ".binder" / "requirements.txt", "rich\n")

    # when
    result = import_source(tmp_path / "repo")

    # then
    assert result.environment.pip == ("rich",)


def test_directory_with_repo2docker_files_is_a_binder_folder(tmp_path):
    # given
    make_binder(tmp_path / "repo")

    # when
    result = import_source(tmp_path / "repo")

    # then
    assert result.environment.python == "3.11"
    assert result.environment.apt == ("libgl1", "ffmpeg")


def test_binder_folder_passed_directly_is_named_after_its_repository(tmp_path):
    # given
    make_binder(tmp_path / "myrepo" / "binder")

    # when
    result = import_source(tmp_path / "myrepo" / "binder")

    # then
    assert result.environment.name == "myrepo"


def test_binder_runtime_patch_version(tmp_path):
    # given
    write(tmp_path / "repo" / "runtime.txt", "python-3.11.4\n")

    # when
    result = import_source(tmp_path / "repo")

    # then
    assert result.environment.python == "3.11.4"


def test_binder_environment_yml_wins_over_requirements_txt_as_in_repo2docker(tmp_path):
    # given both files, as repo2docker's conda build pack sees them
    folder = tmp_path / "repo" / "binder"
    write(folder / "environment.yml", "name: ignored\ndependencies:\n  - python=3.10\n  - pip:\n    - pandas\n")
    write(folder / "requirements.txt", "numpy\n")

    # when
    result = import_source(tmp_path / "repo")

    # then only environment.yml is imported, and a note says why requirements.txt was not
    assert result.environment.name == "repo"
    assert result.environment.python == "3.10"
    assert result.environment.pip == ("pandas",)
    assert any(
        n.startswith("requirements.txt was not imported: environment.yml takes precedence, as in repo2docker")
        for n in result.notes
    ), result.notes


def test_binder_conflicting_python_versions_are_an_error(tmp_path):
    # given
    folder = tmp_path / "repo"
    write(folder / "environment.yml", "dependencies:\n  - python=3.10\n")
    write(folder / "runtime.txt", "python-3.11\n")

    # when
    with pytest.raises(SpecError) as info:
        import_source(folder)

    # then
    assert "3.10" in str(info.value) and "3.11" in str(info.value)


def test_binder_unsupported_files_are_notes(tmp_path):
    # given
    folder = tmp_path / "repo" / "binder"
    write(folder / "requirements.txt", "numpy\n")
    for name in ("install.R", "Dockerfile", "start", "default.nix"):
        write(folder / name, "x\n")

    # when
    result = import_source(tmp_path / "repo")

    # then
    for name in ("install.R", "Dockerfile", "start", "default.nix"):
        assert any(n.startswith(f"{name} was not imported") for n in result.notes), name


def test_root_files_shadowed_by_binder_folder_are_notes(tmp_path):
    # given
    write(tmp_path / "repo" / "binder" / "requirements.txt", "numpy\n")
    write(tmp_path / "repo" / "requirements.txt", "flask\n")

    # when
    result = import_source(tmp_path / "repo")

    # then
    assert result.environment.pip == ("numpy",)
    assert result.notes == ("requirements.txt in the repository root was not imported: binder/ takes precedence",)


def test_binder_invalid_apt_package_names_the_line(tmp_path):
    # given
    apt = write(tmp_path / "repo" / "apt.txt", "libgl1\n\nBad_Package\n")

    # when
    with pytest.raises(SpecError) as info:
        import_source(tmp_path / "repo")

    # then
    assert info.value.file == str(apt)
    assert info.value.key == "line 3"
    assert "'Bad_Package' is not a Debian package name" in str(info.value)


@pytest.mark.parametrize(("value", "expected"), [("r-4.1-2022-01-01", "R runtime"), ("python-2.7", "not supported")])
def test_binder_unsupported_runtime_is_an_error(tmp_path, value, expected):
    # given
    runtime = write(tmp_path / "repo" / "runtime.txt", f"{value}\n")

    # when
    with pytest.raises(SpecError) as info:
        import_source(tmp_path / "repo")

    # then
    assert info.value.file == str(runtime)
    assert info.value.key == "line 1"
    assert repr(value) in str(info.value)
    assert expected in str(info.value)


def test_empty_directory_is_an_error_listing_accepted_formats(tmp_path):
    # given
    folder = tmp_path / "empty"
    folder.mkdir()

    # when
    with pytest.raises(SpecError) as info:
        import_source(folder)

    # then
    assert "requirements*.txt" in str(info.value)
    assert "environment.yml" in str(info.value)
    assert "binder/" in str(info.value)


def test_unknown_file_is_an_error_listing_accepted_formats(tmp_path):
    # given
    other = write(tmp_path / "Gemfile", "gem 'rails'\n")

    # when
    with pytest.raises(SpecError) as info:
        import_source(other)

    # then
    assert info.value.file == str(other)
    assert "pyproject.toml" in str(info.value)


def test_repository_binder_folder_imports_cleanly():
    # given
    binder = REPO / "binder"
    assert (binder / "requirements.txt").is_file()

    # when
    result = import_source(binder)

    # then
    assert result.environment.name
    assert result.environment.python == "3.11"
    assert "numpy>=1.26" in result.environment.pip
    assert result.environment.post_build and "pip install" in result.environment.post_build[0]
    assert not [n for n in result.notes if "was not imported" in n]


# ------------------------------------------------------------- repository folders as repo2docker reads them


@pytest.mark.parametrize(
    ("files", "pip", "python"),
    [
        (
            {"pyproject.toml": '[project]\nname = "x"\nrequires-python = "==3.11.*"\ndependencies = ["rich>=13"]\n'},
            ("rich>=13",),
            "3.11",
        ),
        ({"environment.yaml": "dependencies:\n  - python=3.12\n  - pip:\n    - rich\n"}, ("rich",), "3.12"),
        (
            {"setup.py": "from setuptools import setup\nsetup(name='x', install_requires=['rich', 'six>=1'])\n"},
            ("rich", "six>=1"),
            None,
        ),
        (
            {
                "Pipfile": '[packages]\nrich = "*"\nsix = "==1.16.0"\n[dev-packages]\npytest = {version = ">=8"}\n'
                '[requires]\npython_version = "3.11"\n'
            },
            ("rich", "six==1.16.0", "pytest>=8"),
            "3.11",
        ),
        (
            {
                "Pipfile.lock": '{"_meta": {"requires": {"python_version": "3.11"}}, "default": {"rich": {"version": '
                '"==13.7.1", "hashes": ["sha256:00"]}}, "develop": {"pytest": {"version": "==8.2.0"}}}'
            },
            ("rich==13.7.1", "pytest==8.2.0"),
            "3.11",
        ),
    ],
    ids=["pyproject", "environment.yaml", "setup.py", "Pipfile", "Pipfile.lock"],
)
def test_a_folder_with_one_python_configuration_imports_it(tmp_path, files, pip, python):
    # given a repository whose only configuration is one of these files
    for name, text in files.items():
        write(tmp_path / "repo" / name, text)

    # when
    result = import_source(tmp_path / "repo")

    # then its packages are imported (not "holds nothing to import")
    assert result.environment.pip == pip
    assert result.environment.python == python


def test_setup_py_note_says_the_repository_itself_is_not_installed(tmp_path):
    write(tmp_path / "repo" / "setup.py", "from setuptools import setup\nsetup(name='x', install_requires=deps())\n")
    result = import_source(tmp_path / "repo")
    assert result.environment.pip == ()
    assert any("install_requires in setup.py (line 2) was not imported: it is computed" in n for n in result.notes)
    assert any("setup.py itself was not installed" in n and "%pip install -e /workspace" in n for n in result.notes)


def test_environment_yaml_notes_that_repo2docker_reads_only_environment_yml(tmp_path):
    write(tmp_path / "repo" / "environment.yaml", "dependencies:\n  - pip:\n    - rich\n")
    result = import_source(tmp_path / "repo")
    assert any("repo2docker (mybinder) reads only environment.yml" in n for n in result.notes)


def test_pipfile_lock_wins_over_pipfile_and_requirements_txt(tmp_path):
    # given
    write(tmp_path / "repo" / "Pipfile.lock", '{"default": {"rich": {"version": "==13.7.1"}}}')
    write(tmp_path / "repo" / "Pipfile", '[packages]\nrich = "*"\n')
    write(tmp_path / "repo" / "requirements.txt", "flask\n")

    # when
    result = import_source(tmp_path / "repo")

    # then
    assert result.environment.pip == ("rich==13.7.1",)
    assert any(n.startswith("Pipfile was not imported: Pipfile.lock takes precedence") for n in result.notes)
    assert any(n.startswith("requirements.txt was not imported: Pipfile.lock takes precedence") for n in result.notes)


def test_pipfile_local_paths_are_notes_not_requirements(tmp_path):
    write(tmp_path / "repo" / "Pipfile", '[packages]\nmine = {path = ".", editable = true}\nrich = "*"\n')
    result = import_source(tmp_path / "repo")
    assert result.environment.pip == ("rich",)
    assert any(n.startswith("mine (path = '.') in Pipfile was not imported") for n in result.notes)


def test_a_folder_with_only_a_start_script_names_it_and_what_to_do(tmp_path):
    # given
    write(tmp_path / "repo" / "start", '#!/bin/bash\nexport X=1\nexec "$@"\n')

    # when
    with pytest.raises(SpecError) as info:
        import_source(tmp_path / "repo")

    # then not "holds nothing to import": the file and the way forward are named
    message = str(info.value)
    assert "holds nothing" not in message
    assert "start: start scripts (run by repo2docker before every command) are not supported" in message
    assert "post_build" in message


def test_conda_r_packages_are_a_note_that_does_not_suggest_pip(tmp_path):
    # given
    yml = write(
        tmp_path / "env" / "environment.yml", "dependencies:\n  - r-base\n  - r-ggplot2\n  - pip:\n    - rich\n"
    )

    # when
    result = import_source(yml)

    # then
    assert result.environment.pip == ("rich",)
    note = next(n for n in result.notes if "r-base" in n)
    assert "the R packages r-base, r-ggplot2 in environment.yml were not imported" in note
    assert "pip" not in note
    assert 'apt = ["r-base"]' in note


def test_conda_only_packages_mixed_with_r_name_only_the_python_ones_for_pip(tmp_path):
    yml = write(tmp_path / "env" / "environment.yml", "dependencies:\n  - r-base\n  - numpy\n")
    with pytest.raises(SpecError) as info:
        import_source(yml)
    assert "conda packages are not supported yet: numpy;" in str(info.value)
    assert "r-base" not in str(info.value)


@pytest.mark.parametrize("value", ["python-3"])
def test_runtime_txt_any_python_3_is_accepted(tmp_path, value):
    write(tmp_path / "repo" / "runtime.txt", f"{value}\n")
    write(tmp_path / "repo" / "requirements.txt", "rich\n")
    result = import_source(tmp_path / "repo")
    assert result.environment.python is None
    assert any("any Python 3" in n for n in result.notes)


@pytest.mark.parametrize("value", ["python-2.7", "python-3.4", "python-3.7.9"])
def test_runtime_txt_below_the_supported_python_is_a_clear_error(tmp_path, value):
    # given
    runtime = write(tmp_path / "repo" / "runtime.txt", f"{value}\n")

    # when
    with pytest.raises(SpecError) as info:
        import_source(tmp_path / "repo")

    # then the file, line and value are named, with the minimum
    assert info.value.file == str(runtime)
    assert info.value.key == "line 1"
    assert repr(value) in str(info.value)
    assert "Python 3.8 or newer" in str(info.value)


def test_environment_yml_python_below_the_minimum_is_an_error(tmp_path):
    yml = write(tmp_path / "env" / "environment.yml", "dependencies:\n  - python=3.6\n")
    with pytest.raises(SpecError) as info:
        import_source(yml)
    assert "Python 3.8 or newer" in str(info.value) and "'python=3.6'" in str(info.value)
