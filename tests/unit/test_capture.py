from __future__ import annotations

import importlib.metadata
import json
import sys
from pathlib import Path

import pytest

from jupyter_containers.errors import SpecError
from jupyter_containers.spec.capture import capture_environment, modules_from_files

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def version_of(name: str) -> str:
    return importlib.metadata.version(name)


def fake_distribution(
    site: Path, name: str, version: str = "1.0", *, direct_url: dict | None = None, requires: tuple[str, ...] = ()
) -> None:
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {r}\n" for r in requires)
    (info / "METADATA").write_text(metadata)
    if direct_url is not None:
        (info / "direct_url.json").write_text(json.dumps(direct_url))


# ------------------------------------------------------------------------------------------ full capture


def test_full_capture_pins_every_installed_distribution():
    # when
    result = capture_environment()

    # then
    env = result.environment
    assert env.name == "captured"
    assert env.python == PYTHON
    assert f"pyyaml=={version_of('PyYAML')}" in env.pip
    assert f"attrs=={version_of('attrs')}" in env.pip
    assert f"pytest=={version_of('pytest')}" in env.pip


def test_full_capture_is_sorted_by_normalized_name():
    # when
    pip = capture_environment().environment.pip

    # then
    names = [entry.split("==")[0].split(" @ ")[0] for entry in pip]
    assert names == sorted(names)
    assert all(name == name.lower() for name in names)


def test_full_capture_leaves_out_packaging_tools_with_a_note():
    # when
    result = capture_environment()

    # then
    assert not [p for p in result.environment.pip if p.startswith("pip==")]
    assert any(f"pip {version_of('pip')}" in n and "not pinned" in n for n in result.notes)


def test_capture_uses_the_given_name():
    # when
    result = capture_environment("my-env")

    # then
    assert result.environment.name == "my-env"


def test_capture_rejects_an_invalid_name():
    # when
    with pytest.raises(SpecError) as info:
        capture_environment("Not Valid")

    # then
    assert "'Not Valid' is not allowed" in str(info.value)


# -------------------------------------------------------------------------------------- imported capture


def test_imported_capture_maps_modules_to_distributions():
    # when
    result = capture_environment(imported=True, modules=["yaml"])

    # then
    assert result.environment.pip == (f"pyyaml=={version_of('PyYAML')}",)


def test_imported_capture_includes_the_dependency_closure():
    # when
    pip = capture_environment(imported=True, modules=["jsonschema"]).environment.pip

    # then
    assert f"jsonschema=={version_of('jsonschema')}" in pip
    assert f"attrs=={version_of('attrs')}" in pip
    assert f"rpds-py=={version_of('rpds-py')}" in pip
    assert not [p for p in pip if p.startswith("pyyaml==")]


def test_imported_capture_leaves_out_dependencies_of_extras_not_requested():
    # when
    pip = capture_environment(imported=True, modules=["jsonschema"]).environment.pip

    # then: fqdn is only required by jsonschema[format] and [format-nongpl]
    assert not [p for p in pip if p.startswith("fqdn==")]


def test_imported_capture_follows_requested_extras():
    # given: jupyter-events requires jsonschema[format-nongpl], which requires fqdn
    requires = importlib.metadata.requires("jupyter-events") or []
    if not any("jsonschema[format-nongpl" in r.replace(" ", "") for r in requires):
        pytest.skip("the installed jupyter-events does not request jsonschema[format-nongpl]")

    # when
    pip = capture_environment(imported=True, modules=["jupyter_events"]).environment.pip

    # then
    assert f"fqdn=={version_of('fqdn')}" in pip


def test_imported_capture_ignores_the_standard_library():
    # when
    result = capture_environment(imported=True, modules=["os", "json.decoder", "sys", "__main__"])

    # then
    assert result.environment.pip == ()
    assert result.notes == ()


def test_imported_capture_notes_modules_that_are_not_installed():
    # when
    result = capture_environment(imported=True, modules=["surely_not_installed_module"])

    # then
    assert result.environment.pip == ()
    assert any("surely_not_installed_module" in n and "not installed" in n for n in result.notes)


def test_imported_capture_defaults_to_sys_modules():
    # when
    pip = capture_environment(imported=True).environment.pip

    # then
    assert f"pytest=={version_of('pytest')}" in pip


# ----------------------------------------------------------------------------------- PEP 610 direct URLs


def project_is_editable() -> bool:
    try:
        text = importlib.metadata.distribution("jupyter-containers").read_text("direct_url.json")
    except importlib.metadata.PackageNotFoundError:
        return False
    return bool(text) and json.loads(text).get("dir_info", {}).get("editable", False)


@pytest.mark.skipif(not project_is_editable(), reason="jupyter-containers is not installed editable here")
def test_editable_project_is_a_note_not_a_pin():
    # when
    result = capture_environment()

    # then
    assert not [p for p in result.environment.pip if p.startswith("jupyter-containers")]
    version = version_of("jupyter-containers")
    assert any(n.startswith(f"editable install of jupyter-containers {version} from ") for n in result.notes)
    assert any("install it in post_build" in n for n in result.notes if "jupyter-containers" in n)


@pytest.mark.skipif(not project_is_editable(), reason="jupyter-containers is not installed editable here")
def test_imported_editable_module_is_found_through_its_source_directory():
    # when
    result = capture_environment(imported=True, modules=["jupyter_containers"])

    # then
    assert any(n.startswith("editable install of jupyter-containers") for n in result.notes)
    assert f"pyyaml=={version_of('PyYAML')}" in result.environment.pip  # a dependency of the project


def test_vcs_install_is_pinned_to_its_commit(tmp_path, monkeypatch):
    # given
    fake_distribution(
        tmp_path,
        "jc-test-vcs",
        direct_url={
            "url": "https://github.com/example/tool.git",
            "vcs_info": {"vcs": "git", "commit_id": "0123abcd", "requested_revision": "main"},
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    # when
    pip = capture_environment().environment.pip

    # then
    assert "jc-test-vcs @ git+https://github.com/example/tool.git@0123abcd" in pip


def test_remote_archive_install_is_pinned_to_its_url_and_hash(tmp_path, monkeypatch):
    # given
    url = "https://example.org/jc_test_archive-1.0.tar.gz"
    fake_distribution(
        tmp_path, "jc-test-archive", direct_url={"url": url, "archive_info": {"hashes": {"sha256": "abc123"}}}
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    # when
    pip = capture_environment().environment.pip

    # then
    assert f"jc-test-archive @ {url}#sha256=abc123" in pip


@pytest.mark.parametrize(
    ("direct_url", "kind"),
    [
        ({"url": "file:///src/jc", "dir_info": {"editable": True}}, "editable install"),
        ({"url": "file:///src/jc", "dir_info": {}}, "local install"),
        ({"url": "file:///dist/jc.whl", "archive_info": {}}, "install"),
        ({"url": "file:///src/jc", "vcs_info": {"vcs": "git", "commit_id": "abc"}}, "install"),
    ],
)
def test_local_installs_are_notes_not_pins(tmp_path, monkeypatch, direct_url, kind):
    # given
    fake_distribution(tmp_path, "jc-test-local", "2.0", direct_url=direct_url)
    monkeypatch.syspath_prepend(str(tmp_path))

    # when
    result = capture_environment()

    # then
    assert not [p for p in result.environment.pip if p.startswith("jc-test-local")]
    location = direct_url["url"].removeprefix("file://")
    assert any(n.startswith(f"{kind} of jc-test-local 2.0 from ") and location in n for n in result.notes)


def test_imported_editable_without_module_mapping_is_found_by_location(tmp_path, monkeypatch):
    # given
    src = tmp_path / "src"
    (src / "jctesteditable").mkdir(parents=True)
    (src / "jctesteditable" / "__init__.py").write_text("")
    site = tmp_path / "site"
    fake_distribution(
        site,
        "jc-test-editable",
        "0.1",
        direct_url={"url": src.as_uri(), "dir_info": {"editable": True}},
        requires=("pyyaml",),
    )
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.syspath_prepend(str(src))

    # when
    result = capture_environment(imported=True, modules=["jctesteditable"])

    # then
    assert result.environment.pip == (f"pyyaml=={version_of('PyYAML')}",)
    assert any(n.startswith(f"editable install of jc-test-editable 0.1 from {src}") for n in result.notes)


def test_broken_distribution_is_skipped_with_a_note(tmp_path, monkeypatch):
    # given
    info = tmp_path / "broken-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nVersion: 1.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    # when
    result = capture_environment()

    # then
    assert any("broken metadata (no name)" in n and str(info) in n for n in result.notes)


# ------------------------------------------------------------------------------------ modules_from_files


def notebook(*cells: tuple[str, str]) -> str:
    return json.dumps(
        {
            "nbformat": 4,
            "nbformat_minor": 5,
            "metadata": {},
            "cells": [
                {"cell_type": kind, "metadata": {}, "source": source.splitlines(keepends=True)}
                for kind, source in cells
            ],
        }
    )


def test_modules_from_notebook_skip_magics_and_markdown(tmp_path):
    # given
    nb = tmp_path / "analysis.ipynb"
    nb.write_text(
        notebook(
            ("code", "%matplotlib inline\nimport numpy as np\nimport matplotlib.pyplot as plt\n"),
            ("markdown", "import notthis\n"),
            ("code", "!pip install rich\nfrom pandas import DataFrame\nfrom . import local\n"),
            ("code", "if True:\n    %time x = 1\n    import scipy.stats\n"),
            ("code", "x = !ls\nimport skipped_because_the_cell_does_not_parse\n"),
        )
    )

    # when
    modules = modules_from_files([nb])

    # then
    assert modules == {"numpy", "matplotlib", "pandas", "scipy"}


def test_modules_from_python_files(tmp_path):
    # given
    script = tmp_path / "train.py"
    script.write_text(
        "import os, json\nfrom sklearn.model_selection import train_test_split\n"
        "from .helpers import x\n\ndef f():\n    import torch\n"
        "importlib.import_module('yaml')\n"
    )

    # when
    modules = modules_from_files([script])

    # then
    assert modules == {"os", "json", "sklearn", "torch", "yaml"}


def test_python_file_that_does_not_parse_is_an_error(tmp_path):
    # given
    script = tmp_path / "broken.py"
    script.write_text("import numpy\nprint 'hello'\n")

    # when
    with pytest.raises(SpecError) as info:
        modules_from_files([script])

    # then
    assert info.value.file == str(script)
    assert info.value.key == "line 2"


def test_other_files_are_an_error(tmp_path):
    # given
    other = tmp_path / "notes.txt"
    other.write_text("import numpy\n")

    # when
    with pytest.raises(SpecError) as info:
        modules_from_files([other])

    # then
    assert info.value.file == str(other)
    assert ".ipynb" in str(info.value)


def test_notebook_modules_feed_an_imported_capture(tmp_path):
    # given
    nb = tmp_path / "n.ipynb"
    nb.write_text(notebook(("code", "%load_ext autoreload\nimport yaml\nimport os\n")))

    # when
    result = capture_environment(imported=True, modules=modules_from_files([nb]))

    # then
    assert result.environment.pip == (f"pyyaml=={version_of('PyYAML')}",)


def test_a_virtualenv_inside_an_editable_project_is_not_that_project():
    # given a project folder that holds both its sources and the virtualenv (project/.venv)
    from jupyter_containers.spec.capture import _belongs_to

    root = Path(sys.prefix).resolve().parent
    # then a module installed in the virtualenv does not belong to the project, its own sources do
    assert not _belongs_to(Path(sys.prefix).resolve() / "lib" / "site-packages" / "debugpy" / "x.py", root)
    assert _belongs_to(root / "mypkg" / "mod.py", root)
